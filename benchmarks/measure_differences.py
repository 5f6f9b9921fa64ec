"""Measure every deliberate difference between simclr_lib and google-research/simclr (docs/differences.md).

One number per difference, seeded, CPU only, well under a minute on 2 cores:

1. loss scale: NT-Xent as the paper's mean over 2N anchors vs the reference's ``loss_a + loss_b`` (2x), and what
   one LARS step does with L vs 2L (adapted weights: same step; biases/BN: twice the step);
2. projection head without a final BatchNorm (parameter counts with and without ``last_bn``);
3. residual BN scales not zero-initialised (fraction of ResNet-18 BN scales at 0);
4. warm-up ``(step + 1) / W`` vs the reference's ``step / W`` (first learning rates for W = 10);
5. the crop sampler: torchvision's RandomResizedCrop (uniform area) vs TensorFlow's
   ``sample_distorted_bounding_box`` (uniform height), re-implemented below in numpy from a reading of the C++
   kernel (mean crop-area fraction at 32x32);
6. brightness: multiplicative factor (torchvision, SimCLRv2 code) vs additive delta (SimCLRv1 code).

    python benchmarks/measure_differences.py [--draws 200000] [--size 32] [--seed 0]

The reference implementations here (``reference_contrastive_loss``, ``reference_warmup``,
``tf_sample_distorted_bounding_box``, ``additive_brightness``) are written from reading the reference sources; the
file and function each one follows is named in its docstring.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from simclr_lib.augment import SimCLRAugment, color_jitter
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import CIFAR10_MEAN, CIFAR10_STD
from simclr_lib.loss import nt_xent
from simclr_lib.models import ProjectionHead
from simclr_lib.optim import build_optimizer, build_scheduler


# --- 1. loss scale -------------------------------------------------------------------------------------------
def reference_contrastive_loss(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """google-research/simclr ``objective.py`` ``add_contrastive_loss`` (one replica): ``loss_a + loss_b``.

    The first half of the rows are the first views, the second half the second views (as in simclr_lib). Each of
    loss_a, loss_b is a cross-entropy averaged over the N anchors of one view, so the sum is twice the paper's
    mean over 2N anchors. Shape: (2N, D) -> scalar.
    """
    z = F.normalize(z.double(), dim=1)
    a, b = z.chunk(2)
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    aa = (a @ a.T / temperature).masked_fill(eye, float("-inf"))  # self-similarity removed
    bb = (b @ b.T / temperature).masked_fill(eye, float("-inf"))
    ab, ba = a @ b.T / temperature, b @ a.T / temperature
    target = torch.arange(n)  # the positive of anchor i sits in column i of [ab | aa]
    loss_a = F.cross_entropy(torch.cat([ab, aa], 1), target)
    loss_b = F.cross_entropy(torch.cat([ba, bb], 1), target)
    return loss_a + loss_b


def _lars_step(model: nn.Module, x: torch.Tensor, scale: float, weight_decay: float,
               lr: float = 1.0) -> dict[str, torch.Tensor]:
    """One LARS step (simclr_lib.optim.build_optimizer) on ``scale * nt_xent``; returns each parameter's update."""
    m = copy.deepcopy(model)
    opt = build_optimizer(m, "lars", lr=lr, weight_decay=weight_decay)
    before = {k: p.detach().clone() for k, p in m.named_parameters()}
    _, z = m(x)
    (scale * nt_xent(z, 0.5)).backward()
    opt.step()
    return {k: before[k] - p.detach() for k, p in m.named_parameters() if p.requires_grad}


class _Tiny(nn.Module):
    """A tiny conv encoder + simclr_lib ProjectionHead: conv weights and linear weights are LARS-adapted, the conv
    bias, the BN scales/shifts and the head's last bias are excluded (ndim <= 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # weight (adapted) + bias (excluded)
        self.bn = nn.BatchNorm2d(8)
        self.head = ProjectionHead(8, 16, 4)  # Linear(no bias) -> BN -> ReLU -> Linear(+bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return h, self.head(h)


def measure_loss_scale(seed: int = 0, weight_decay: float = 1e-6) -> dict[str, float]:
    """nt_xent vs the reference sum, and one LARS step on L vs 2L (update-norm ratios per parameter kind)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2 * 16, 32, generator=g)
    ours, ref = nt_xent(z, 0.5).double(), reference_contrastive_loss(z, 0.5)

    torch.manual_seed(seed)
    model = _Tiny()
    x = torch.randn(2 * 8, 3, 8, 8, generator=g)
    adapted = [k for k, p in model.named_parameters() if p.ndim > 1]
    excluded = [k for k, p in model.named_parameters() if p.ndim <= 1]

    def norm(upd: dict, keys: list[str]) -> float:
        return float(torch.cat([upd[k].flatten() for k in keys]).norm())

    u1 = _lars_step(model, x, 1.0, weight_decay)  # simclr_lib: the mean over 2N anchors
    u2 = _lars_step(model, x, 2.0, weight_decay)  # the reference: loss_a + loss_b = 2x
    per_layer = [float(u2[k].norm() / u1[k].norm()) for k in adapted]
    flat1 = torch.cat([u1[k].flatten() for k in adapted])
    flat2 = torch.cat([u2[k].flatten() for k in adapted])
    # weight decay: trust * (2g + wd w) has the direction of (g + wd/2 w), so the reference's step equals ours
    # with half the weight decay
    u_half = _lars_step(model, x, 1.0, weight_decay / 2)
    equiv = max(float((u2[k] - u_half[k]).abs().max()) for k in adapted)
    # how big the decay term is next to the gradient (why the direction change is invisible at wd = 1e-6)
    m = copy.deepcopy(model)
    nt_xent(m(x)[1], 0.5).backward()
    share = max(float(weight_decay * p.detach().norm() / p.grad.norm()) for k, p in m.named_parameters()
                if k in adapted)
    return dict(ours=float(ours), ref=float(ref), ref_over_ours=float(ref / ours),
                adapted_ratio=norm(u2, adapted) / norm(u1, adapted),
                adapted_layer_min=min(per_layer), adapted_layer_max=max(per_layer),
                excluded_ratio=norm(u2, excluded) / norm(u1, excluded),
                adapted_cos=float(F.cosine_similarity(flat1, flat2, dim=0)),
                half_wd_max_diff=equiv, wd_share=share, n_adapted=len(adapted), n_excluded=len(excluded))


# --- 2. projection head ----------------------------------------------------------------------------------------
def _counts(module: nn.Module) -> tuple[int, int, int]:
    params = list(module.parameters())
    return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params),
            sum(b.numel() for b in module.buffers() if b.is_floating_point()))


def measure_head(feat_dim: int = 512) -> dict[str, object]:
    """Parameter counts of the paper-default head with and without the reference's final BN (scale, no centre)."""
    plain, bn = ProjectionHead(feat_dim), ProjectionHead(feat_dim, last_bn=True)
    out = dict(plain=_counts(plain), last_bn=_counts(bn), config_flag=None)
    if hasattr(SimCLRConfig(), "proj_last_bn"):  # build_model honours the config field once it exists
        head = build_model(SimCLRConfig(arch="small", proj_last_bn=True)).head
        out["config_flag"] = isinstance(list(head.modules())[-1], nn.BatchNorm1d)
    return out


# --- 3. zero-initialised residual BN ------------------------------------------------------------------------
def bn_zero_fraction(model: nn.Module) -> tuple[float, int, int]:
    """(fraction of BN scale entries that are 0, BN layers whose scale is all 0, BN layers)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None]
    zeros = sum(int((m.weight == 0).sum()) for m in bns)
    total = sum(m.weight.numel() for m in bns)
    return zeros / total, sum(bool((m.weight == 0).all()) for m in bns), len(bns)


def measure_zero_init() -> dict[str, object]:
    torch.manual_seed(0)
    out = dict(torchvision_default=bn_zero_fraction(torchvision.models.resnet18()),
               torchvision_zero_init=bn_zero_fraction(torchvision.models.resnet18(zero_init_residual=True)),
               simclr_lib_default=bn_zero_fraction(build_model(SimCLRConfig(arch="resnet18")).encoder),
               simclr_lib_flag=None)
    if hasattr(SimCLRConfig(), "zero_init_residual"):
        model = build_model(SimCLRConfig(arch="resnet18", zero_init_residual=True))
        out["simclr_lib_flag"] = bn_zero_fraction(model.encoder)
    return out


# --- 4. warm-up ------------------------------------------------------------------------------------------------
def reference_warmup(step: int, total_steps: int, warmup_steps: int, peak: float = 1.0) -> float:
    """google-research/simclr ``model_util.py`` ``learning_rate_schedule`` (``tf2/model.py``
    ``WarmUpAndCosineDecay`` is the same): ``step / W * peak`` while ``step < W``, then cosine decay to 0."""
    if warmup_steps and step < warmup_steps:
        return step / warmup_steps * peak
    progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def ours_warmup(n_steps: int, total_steps: int, warmup_steps: int, peak: float = 1.0) -> list[float]:
    """The learning rate each of the first ``n_steps`` optimiser steps uses with simclr_lib's build_scheduler."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = build_scheduler(opt, total_steps, warmup_steps)
    lrs = []
    for _ in range(n_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def measure_warmup(warmup_steps: int = 10, total_steps: int = 100) -> dict[str, list[float]]:
    ours = ours_warmup(warmup_steps + 1, total_steps, warmup_steps)
    ref = [reference_warmup(s, total_steps, warmup_steps) for s in range(warmup_steps + 1)]
    return dict(ours=ours, ref=ref)


# --- 5. crop sampler -------------------------------------------------------------------------------------------
def _lrintf(x: np.ndarray) -> np.ndarray:
    """C's lrintf in the default rounding mode: round half to even, to an integer."""
    return np.rint(x).astype(np.int64)


def _generate_random_crop(rng: np.random.Generator, width: int, height: int, min_area: np.float32,
                          max_area: np.float32, aspect: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One attempt of TensorFlow's ``GenerateRandomCrop`` per entry of ``aspect`` (float32 arithmetic, as in
    tensorflow/core/kernels/image/sample_distorted_bounding_box_op.cc): the crop HEIGHT is an integer drawn
    uniformly between the heights of the minimum-area and maximum-area boxes of that aspect ratio; the width is
    round(height * aspect). Returns (h, w, ok)."""
    f32 = np.float32
    h = _lrintf(np.sqrt(min_area / aspect))  # float32 division and sqrt
    max_h = _lrintf(np.sqrt(max_area / aspect))
    too_wide = _lrintf(max_h.astype(f32) * aspect) > width
    # the largest max_h with round(max_h * aspect) <= width: (width + 0.5 - 1e-7) / aspect in double, truncated
    alt = np.floor((width + 0.5 - float(f32(1e-7))) / aspect.astype(np.float64)).astype(np.int64)
    alt = np.where(_lrintf(alt.astype(f32) * aspect) > width, alt - 1, alt)
    max_h = np.minimum(np.where(too_wide, alt, max_h), height)
    h = np.minimum(h, max_h)
    h = h + rng.integers(0, np.maximum(max_h - h, 0) + 1)  # uniform in the closed range [h, max_h]
    w = _lrintf(h.astype(f32) * aspect)
    area = (w * h).astype(f32)
    small = area < min_area  # rounding left it too small: one row taller
    h = np.where(small, h + 1, h)
    w = np.where(small, _lrintf(h.astype(f32) * aspect), w)
    area = np.where(small, (w * h).astype(f32), area)
    big = area > max_area  # too big: one row shorter
    h = np.where(big, h - 1, h)
    w = np.where(big, _lrintf(h.astype(f32) * aspect), w)
    area = np.where(big, (w * h).astype(f32), area)
    ok = ~((area < min_area) | (area > max_area) | (w > width) | (h > height) | (w <= 0) | (h <= 0))
    return h, w, ok


def tf_sample_distorted_bounding_box(n: int, height: int, width: int, rng: np.random.Generator,
                                     area_range: tuple[float, float] = (0.08, 1.0),
                                     aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
                                     min_object_covered: float = 0.1,
                                     max_attempts: int = 100) -> np.ndarray:
    """``n`` draws of ``tf.image.sample_distorted_bounding_box`` with the whole image as the only box, the call of
    google-research/simclr ``data_util.py`` ``crop_and_resize`` / ``distorted_bounding_box_crop``.

    Per attempt: aspect ratio (width / height) uniform in ``aspect_ratio_range`` (linear, not log), one
    :func:`_generate_random_crop`, then the crop must cover >= ``min_object_covered`` of the image (the box is the
    whole image, so crops under 10% of its area are rejected although ``area_range`` starts at 0.08). Offsets are
    uniform in [0, H - h) and [0, W - w). After ``max_attempts`` failures the whole image is returned.
    Attempts run as vectorised rounds over the draws still without a crop (same distribution).

    Shape: -> (n, 4) int64 rows (top, left, h, w).
    """
    f32 = np.float32
    min_area = f32(f32(area_range[0]) * f32(width)) * f32(height)  # float * int * int in float32
    max_area = f32(f32(area_range[1]) * f32(width)) * f32(height)
    lo, hi = f32(aspect_ratio_range[0]), f32(aspect_ratio_range[1])
    image_area = f32(width * height)
    out = np.tile(np.array([0, 0, height, width], dtype=np.int64), (n, 1))  # fallback: the whole image
    todo = np.arange(n)
    for _ in range(max_attempts):
        if todo.size == 0:
            break
        aspect = rng.random(todo.size, dtype=np.float32) * (hi - lo) + lo
        h, w, ok = _generate_random_crop(rng, width, height, min_area, max_area, aspect)
        crop_area = (w * h).astype(f32)
        ok &= (crop_area >= 1) & (crop_area / image_area >= f32(min_object_covered))
        top = np.where(h < height, rng.integers(0, np.maximum(height - h, 1)), 0)
        left = np.where(w < width, rng.integers(0, np.maximum(width - w, 1)), 0)
        out[todo[ok]] = np.stack([top, left, h, w], 1)[ok]
        todo = todo[~ok]
    return out


def torchvision_boxes(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` draws of torchvision's ``RandomResizedCrop.get_params`` (scale (0.08, 1), ratio (3/4, 4/3))."""
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(seed)
    img = torch.empty(3, size, size)
    return np.array([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])


def measure_crop(draws: int = 200_000, size: int = 32, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean crop-area fraction (and spread) of torchvision, simclr_lib's batched sampler and TF's sampler."""
    def stats(h: np.ndarray, w: np.ndarray) -> dict[str, float]:
        a = h.astype(np.float64) * w / (size * size)
        return dict(mean=float(a.mean()), sem=float(a.std() / math.sqrt(a.size)), median=float(np.median(a)),
                    below_010=float((a < 0.1).mean()), whole=float((a == 1).mean()),
                    log_aspect=float(np.log(w / h).mean()))

    tv = torchvision_boxes(draws, size, seed)
    gen = torch.Generator().manual_seed(seed)
    ours = SimCLRAugment(size=size).sample_params(draws, size, size, generator=gen)["box"].numpy()
    tf = tf_sample_distorted_bounding_box(draws, size, size, np.random.default_rng(seed))
    tf0 = tf_sample_distorted_bounding_box(draws, size, size, np.random.default_rng(seed), min_object_covered=0.0)
    return {"torchvision RandomResizedCrop": stats(tv[:, 2], tv[:, 3]),
            "simclr_lib SimCLRAugment": stats(ours[:, 2], ours[:, 3]),
            "TF sample_distorted_bounding_box": stats(tf[:, 2], tf[:, 3]),
            "TF, min_object_covered=0": stats(tf0[:, 2], tf0[:, 3])}


# --- 6. brightness ---------------------------------------------------------------------------------------------
def additive_brightness(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """SimCLRv1's ``tf.image.random_brightness`` with the clip of ``color_jitter_rand``: ``clip(x + delta, 0, 1)``,
    delta uniform in [-0.8 s, 0.8 s) per image (data_util.py at the first commit; ``impl='simclrv1'`` later)."""
    return (x + delta.view(-1, 1, 1, 1)).clamp(0, 1)


def measure_brightness(strength: float = 0.5, n: int = 2000, size: int = 32, seed: int = 0) -> dict:
    """Mean |pixel change| of the brightness op alone: additive (v1 code) vs multiplicative (torchvision, v2 code),
    on uniform-[0, 1] pixels and on pixels with CIFAR-10's per-channel mean/std (Gaussian, clipped)."""
    g = torch.Generator().manual_seed(seed)
    b = 0.8 * strength
    delta = (torch.rand(n, generator=g) * 2 - 1) * b  # [-b, b)
    low = max(0.0, 1 - b)
    factor = low + (1 + b - low) * torch.rand(n, generator=g)  # [max(0, 1-b), 1+b], torchvision's ColorJitter
    images = {"uniform [0,1]": torch.rand(n, 3, size, size, generator=g),
              "CIFAR-10 mean/std": (torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1) + torch.tensor(CIFAR10_STD).view(
                  1, 3, 1, 1) * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)}
    out = {}
    for name, x in images.items():
        only_brightness = torch.stack([factor, *torch.ones(2, n), torch.zeros(n)], 1)  # n x 4: (f, 1, 1, 0)
        jittered = color_jitter(x, only_brightness, torch.arange(4).expand(n, 4))  # the pipeline's op, alone
        add, mul = additive_brightness(x, delta) - x, jittered - x
        dark = x < 0.1
        out[name] = dict(additive=float(add.abs().mean()), multiplicative=float(mul.abs().mean()),
                         additive_dark=float(add[dark].abs().mean()), multiplicative_dark=float(mul[dark].abs().mean()))
    return out


# --- report ----------------------------------------------------------------------------------------------------
def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=200_000, help="crop boxes drawn per sampler")
    p.add_argument("--size", type=int, default=32, help="image side for the crop samplers")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []  # difference, quantity, reference, simclr_lib

    ls = measure_loss_scale(args.seed)
    rows += [("1 loss scale", "contrastive loss, same z (2N=32, tau 0.5)", f"{ls['ref']:.6f}", f"{ls['ours']:.6f}"),
             ("", "reference / simclr_lib", f"{ls['ref_over_ours']:.6f}", ""),
             ("", f"LARS step, 2L vs L: update-norm ratio, {ls['n_adapted']} adapted weights",
              f"{ls['adapted_ratio']:.6f} (per layer {ls['adapted_layer_min']:.6f}-{ls['adapted_layer_max']:.6f})",
              "1 (ref.)"),
             ("", f"LARS step, 2L vs L: update-norm ratio, {ls['n_excluded']} excluded (bias, BN)",
              f"{ls['excluded_ratio']:.6f}", "1 (ref.)"),
             ("", "adapted-update cosine, 2L vs L (wd 1e-6)", f"{ls['adapted_cos']:.9f}", ""),
             ("", "max abs(update(2L, wd) - update(L, wd/2)), adapted", f"{ls['half_wd_max_diff']:.2e}", ""),
             ("", "largest norm(wd w) / norm(g) over adapted layers (wd 1e-6)", "", f"{ls['wd_share']:.2e}")]

    hd = measure_head()
    (tp, tt, tb), (bp, bt, bb) = hd["plain"], hd["last_bn"]
    rows += [("2 head last BN", "trainable / all params / buffers, 512->512->128",
              f"{bp:,} / {bt:,} / {bb:,} (last_bn=True)", f"{tp:,} / {tt:,} / {tb:,}"),
             ("", "difference (last_bn - default)", f"{bp - tp:+,} / {bt - tt:+,} / {bb - tb:+,}", "")]
    if hd["config_flag"] is not None:
        rows.append(("", "build_model(proj_last_bn=True) ends in BatchNorm1d", str(hd["config_flag"]), ""))

    zi = measure_zero_init()

    def zfmt(t):
        return f"{t[0]:.3f} ({t[1]}/{t[2]} layers)"
    rows += [("3 zero-init BN", "ResNet-18 BN scales at 0: torchvision zero_init_residual True / False",
              zfmt(zi["torchvision_zero_init"]), zfmt(zi["torchvision_default"])),
             ("", "simclr_lib build_model(resnet18) encoder, default", "", zfmt(zi["simclr_lib_default"]))]
    if zi["simclr_lib_flag"] is not None:
        rows.append(("", "simclr_lib build_model(zero_init_residual=True)", "", zfmt(zi["simclr_lib_flag"])))

    wu = measure_warmup(10)
    rows += [("4 warm-up", "lr / peak at steps 0, 1, 2 (W = 10)", ", ".join(f"{v:.1f}" for v in wu["ref"][:3]),
              ", ".join(f"{v:.1f}" for v in wu["ours"][:3])),
             ("", "lr / peak at steps 9, 10", ", ".join(f"{v:.1f}" for v in wu["ref"][9:11]),
              ", ".join(f"{v:.1f}" for v in wu["ours"][9:11])),
             ("", "sum of lr / peak over the warm-up (steps 0-9)", f"{sum(wu['ref'][:10]):.1f}",
              f"{sum(wu['ours'][:10]):.1f}")]

    cr = measure_crop(args.draws, args.size, args.seed)
    tf, tv = cr["TF sample_distorted_bounding_box"], cr["torchvision RandomResizedCrop"]
    for name, s in cr.items():
        ref_side = name.startswith("TF")
        text = (f"{s['mean']:.4f} +- {s['sem']:.4f} (median {s['median']:.3f}, <0.1: {s['below_010']:.3f}, "
                f"whole: {s['whole']:.4f}, E log(w/h) {s['log_aspect']:+.3f})")
        rows.append(("5 crop" if name == next(iter(cr)) else "", f"mean area fraction, {args.size}px, "
                     f"{args.draws:,} draws: {name}", text if ref_side else "", "" if ref_side else text))
    rows.append(("", "TF mean / torchvision mean", f"{tf['mean'] / tv['mean']:.3f}", ""))

    br = measure_brightness(0.5)
    for i, (name, s) in enumerate(br.items()):
        rows += [("6 brightness" if i == 0 else "", f"mean abs pixel change, s=0.5, {name}",
                  f"{s['additive']:.4f} (v1 additive)", f"{s['multiplicative']:.4f} (multiplicative = v2)"),
                 ("", f"... on pixels < 0.1, {name}", f"{s['additive_dark']:.4f}", f"{s['multiplicative_dark']:.4f}")]

    header = ("difference", "quantity", "google-research/simclr", "simclr_lib")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    print(f"\n({time.perf_counter() - t0:.1f} s; torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"numpy {np.__version__}, seed {args.seed})")


if __name__ == "__main__":
    main()
