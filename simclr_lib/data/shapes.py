"""``shapes``: a generated, labelled set that needs no file and no internet. Colour and area are drawn independently
of the class, so colour statistics do not give the class: the teaching case for the paper's colour-shortcut
argument (Chen et al. 2020, Sec. 3, Fig. 6).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from simclr_lib.data.images import SHAPE_CLASSES, SPLITS, ImageData

# --- shapes: a generated, labelled set where colour does not give the class (paper Fig. 6) --------------------------
_SUPERSAMPLE = 3  # 3x3 samples per pixel: anti-aliased edges
_N_PARAMS = 17  # uniform numbers per image, turned into nuisance factors by _shape_params


def _star(u: torch.Tensor, v: torch.Tensor, points: int, inner: float) -> torch.Tensor:
    """Inside test of a star with ``points`` tips at radius 1 and notches at radius ``inner``.

    ``inner = cos(pi / points)`` puts every notch on the straight line between two tips: the regular polygon.
    """
    sector = 2 * math.pi / points
    t = torch.atan2(v, u).remainder(sector)
    psi = torch.minimum(t, sector - t)  # folded angle: a tip at 0, a notch at sector / 2
    r = torch.sqrt(u * u + v * v)
    qx, qy = r * torch.cos(psi), r * torch.sin(psi)
    dx, dy = inner * math.cos(sector / 2) - 1.0, inner * math.sin(sector / 2)  # edge from tip (1, 0) to notch
    return dx * qy - dy * (qx - 1.0) >= 0  # on the origin's side of the edge


def _heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    x, y = 1.2 * u, 0.15 - 1.2 * v
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0  # the classic heart curve, pointing down


SHAPE_FNS = {  # unit shapes on (u, v), each inside the unit disc (about), in SHAPE_CLASSES order
    "circle": lambda u, v: u * u + v * v <= 1,
    "square": lambda u, v: _star(u, v, 4, math.cos(math.pi / 4)),
    "triangle": lambda u, v: _star(u, v, 3, math.cos(math.pi / 3)),
    "cross": lambda u, v: ((u.abs() <= 0.3) & (v.abs() <= 1)) | ((v.abs() <= 0.3) & (u.abs() <= 1)),
    "ring": lambda u, v: (u * u + v * v <= 1) & (u * u + v * v >= 0.55 ** 2),
    "star": lambda u, v: _star(u, v, 5, 0.42),
    "crescent": lambda u, v: (u * u + v * v <= 1) & ((u - 0.45) ** 2 + v * v > 0.8 ** 2),
    "heart": _heart,
}


@functools.lru_cache(maxsize=1)
def _unit_geometry(grid: int = 801) -> tuple[torch.Tensor, torch.Tensor]:
    """Area and outer radius of every unit shape, measured on a fine grid over [-1.3, 1.3]^2."""
    g = torch.linspace(-1.3, 1.3, grid)
    u, v = g[None, :].expand(grid, grid), g[:, None].expand(grid, grid)
    masks = [SHAPE_FNS[c](u, v) for c in SHAPE_CLASSES]
    areas = torch.stack([m.float().mean() * 2.6 ** 2 for m in masks])
    return areas, torch.stack([torch.sqrt(u[m] ** 2 + v[m] ** 2).max() for m in masks])


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Shape: (n,), (n,), (n,) -> (n, 3), all in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + 6 * h[:, None]).remainder(6)
    return v[:, None] * (1 - s[:, None] * torch.minimum(k, 4 - k).clamp(0, 1))


def _shape_params(p: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Nuisance factors from uniforms ``p: (n, 17)``, all drawn independently of the class. The scale is set so that
    the shape's *area* (7-22 % of the image) is class-independent too: colour histograms cannot give the class."""
    areas, radii = _unit_geometry()
    scale = torch.sqrt(4 * (0.07 + 0.15 * p[:, 0]) / areas[labels])  # the image is [-1, 1]^2, area 4
    room = (0.95 - scale * radii[labels]).clamp(min=0)  # keep the shape inside the image
    bg_v, fg_v = p[:, 7], (p[:, 7] + 0.3 + 0.4 * p[:, 6]).remainder(1)  # brightness values >= 0.3 apart
    fg = _hsv_to_rgb(p[:, 4], 0.25 + 0.75 * p[:, 5], 0.15 + 0.85 * fg_v)
    return {"scale": scale, "cx": room * (2 * p[:, 1] - 1), "cy": room * (2 * p[:, 2] - 1),
            "rot": 2 * math.pi * p[:, 3], "fg": fg, "bg": _hsv_to_rgb(p[:, 8], 0.8 * p[:, 9], 0.15 + 0.85 * bg_v),
            "fg2": torch.where(fg_v[:, None] > 0.5, 0.45 * fg, 0.45 + 0.55 * fg),  # the stripes' second colour
            "texture": (3 * p[:, 10]).long(),  # 0 plain, 1 stripes, 2 speckles
            "stripe_angle": 2 * math.pi * p[:, 11], "stripe_freq": 2.5 + 3.5 * p[:, 12],
            "stripe_phase": 2 * math.pi * p[:, 13], "grad_angle": 2 * math.pi * p[:, 14],
            "grad_amp": 0.3 * p[:, 15], "sigma": 0.06 * p[:, 16]}


def _coverage(labels: torch.Tensor, q: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Fraction of each pixel inside the shape, from ``_SUPERSAMPLE^2`` samples. Shape: -> (n, 1, size, size)."""
    hi = size * _SUPERSAMPLE
    g = (torch.arange(hi, dtype=torch.float32) + 0.5) / hi * 2 - 1  # sample centres in [-1, 1]
    cov = torch.empty(len(labels), 1, size, size)
    for k in labels.unique().tolist():
        idx = (labels == k).nonzero().squeeze(1)
        dx = g[None, None, :] - q["cx"][idx, None, None]  # (b, 1, hi)
        dy = g[None, :, None] - q["cy"][idx, None, None]  # (b, hi, 1)
        c, s, sc = (t[idx, None, None] for t in (torch.cos(q["rot"]), torch.sin(q["rot"]), q["scale"]))
        mask = SHAPE_FNS[SHAPE_CLASSES[k]]((c * dx + s * dy) / sc, (c * dy - s * dx) / sc)  # (b, hi, hi)
        cov[idx] = F.avg_pool2d(mask.unsqueeze(1).float(), _SUPERSAMPLE)
    return cov


def _render_shapes(labels: torch.Tensor, p: torch.Tensor, noise: torch.Tensor, size: int) -> torch.Tensor:
    """Background gradient, textured anti-aliased shape, pixel noise.

    Shape:
        labels (n,), p (n, 17), noise (n, 1, S, S) -> (n, 3, S, S) uint8.
    """
    raw = _shape_params(p, labels)
    q = {k: t.reshape(len(t), -1, 1, 1) for k, t in raw.items()}  # every factor as (n, c, 1, 1)
    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    x, y = g[None, None, None, :], g[None, None, :, None]  # (1, 1, 1, S), (1, 1, S, 1)
    along = lambda a: x * torch.cos(a) + y * torch.sin(a)  # noqa: E731  coordinate along angle a: (n, 1, S, S)
    stripes = torch.sigmoid(4 * torch.sin(math.pi * q["stripe_freq"] * along(q["stripe_angle"]) + q["stripe_phase"]))
    fg = (q["fg"] + (q["texture"] == 1) * stripes * (q["fg2"] - q["fg"])
          + (q["texture"] == 2) * 0.35 * noise)  # (n, 3, S, S)
    bg = q["bg"] + q["grad_amp"] * along(q["grad_angle"])  # (n, 3, S, S)
    cov = _coverage(labels, raw, size)  # (n, 1, S, S)
    img = bg + cov * (fg - bg) + q["sigma"] * noise
    return (img * 255).round().clamp(0, 255).to(torch.uint8)


def _generator(seed: int, split: str, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, SPLITS["shapes"].index(split), stream]).generate_state(2)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


def make_shapes(n: int, size: int = 32, seed: int = 0, num_classes: int = 8, *, split: str = "train",
                progress: bool = False) -> ImageData:
    """``n`` images of ``num_classes`` shapes (circle, square, ...) with random colour, area, position, rotation,
    texture, background and noise, deterministic in ``(seed, split)``; image ``i`` does not depend on ``n``.

    Shape:
        images: (n, 3, size, size) uint8; labels: (n,) int64, every run of ``num_classes`` labels a permutation.
    """
    if split not in SPLITS["shapes"]:
        raise ValueError(f"split {split!r} does not exist for shapes; choose one of {', '.join(SPLITS['shapes'])}")
    if not 2 <= num_classes <= len(SHAPE_CLASSES) or n < 1 or size < 4:
        raise ValueError(f"make_shapes(n={n}, size={size}, num_classes={num_classes}) needs n >= 1, size >= 4 "
                         f"and 2 <= num_classes <= {len(SHAPE_CLASSES)}")
    blocks = torch.rand(-(-n // num_classes), num_classes, generator=_generator(seed, split, 0))
    labels = blocks.argsort(dim=1).flatten()[:n]  # balanced: each block of num_classes labels is a permutation
    p = torch.rand(n, _N_PARAMS, generator=_generator(seed, split, 1))  # row i depends on (seed, split, i) only
    noise_gen, images = _generator(seed, split, 2), torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in tqdm(range(0, n, 500), desc="drawing shapes", disable=not progress):
        j = min(i + 500, n)
        noise = torch.rand(j - i, 1, size, size, generator=noise_gen) - 0.5  # uniform, drawn in image order
        images[i:j] = _render_shapes(labels[i:j], p[i:j], noise, size)
    return ImageData(images, labels, SHAPE_CLASSES[:num_classes], f"shapes/{split}")
