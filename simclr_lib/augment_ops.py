"""The batched augmentation ops of SimCLR (App. A), each with explicit per-sample parameters: crop boxes drawn as
torchvision draws them, one ``grid_sample`` resized crop, flip, greyscale, colour jitter with per-sample op order
(hue fused), Gaussian blur. No Python loop over samples and no host sync; ``augment.SimCLRAugment`` draws the
parameters and chains them. Each op is tested against torchvision alone (tests/test_augment.py).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
OPS = ("crop", "flip", "jitter", "grayscale", "blur")
_HUE_OFFSETS = (-3.0, -5.0, -7.0)  # R, G, B: HSV->RGB as V - C * clamp(||6h + offset| - 3| - 1, 0, 1), 6h in [0, 6)
_NEUTRAL = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing


def to_float(x: Tensor) -> Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; a floating tensor is returned as float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {x.dtype}; convert them first")
    return x.float()


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small constant tensor, copied to ``device`` once (a host-to-GPU copy every step would sync)."""
    return torch.tensor(values, dtype=dtype, device=device)


def blur_kernel_size(size: int) -> int:
    """Odd kernel side of about 10% of the image side (App. A): 3 at 32 px, 9 at 96 px, 23 at 224 px."""
    k = max(int(0.1 * size), 1)
    return k if k % 2 == 1 else k + 1


def sample_crop_boxes(n: int, height: int, width: int, scale: Sequence[float] = (0.08, 1.0),
                      ratio: Sequence[float] = (3 / 4, 4 / 3), generator: Optional[torch.Generator] = None,
                      device: Optional[torch.device] = None, attempts: int = 10) -> Tensor:
    """torchvision's RandomResizedCrop box sampling, vectorised: ``attempts`` candidates per sample, the first
    that fits wins, else the central-crop fallback.

    Shape: -> (n, 4) float32 rows ``(top, left, h, w)`` holding integers.
    """
    u = torch.rand(n, attempts, 2, generator=generator, device=device)  # n x A x 2
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])  # n x A
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])  # n x A
    w, h = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()  # n x A
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.float().argmax(dim=1, keepdim=True)  # n x 1, index of the first valid candidate
    fh, fw = _fallback_crop(height, width, ratio)
    found = ok.any(dim=1)  # n
    h = torch.where(found, h.gather(1, first).squeeze(1), float(fh))  # n
    w = torch.where(found, w.gather(1, first).squeeze(1), float(fw))
    off = torch.rand(n, 2, generator=generator, device=device)  # n x 2
    top = torch.minimum(torch.floor(off[:, 0] * (height - h + 1)), height - h)
    left = torch.minimum(torch.floor(off[:, 1] * (width - w + 1)), width - w)
    top = torch.where(found, top, float((height - fh) // 2))
    left = torch.where(found, left, float((width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1)


def _fallback_crop(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def _source_coords(start: Tensor, length: Tensor, size: int) -> Tensor:
    """Bilinear, align_corners=False source pixel of each output pixel, clamped to the box. Shape: (B,) -> (B, S)."""
    o = (torch.arange(size, device=start.device, dtype=torch.float32) + 0.5) / size  # S
    c = start[:, None] + o * length[:, None] - 0.5  # B x S
    return torch.minimum(torch.maximum(c, start[:, None]), (start + length - 1)[:, None])


def resized_crop(x: Tensor, boxes: Tensor, size: int, flip: Optional[Tensor] = None) -> Tensor:
    """Crop each sample's box and resize it to ``size`` (bilinear, like torchvision's ``resized_crop`` without
    antialiasing: identical when upsampling), mirrored where ``flip`` is True. One ``grid_sample`` call.

    Shape: x (B, C, H, W) float, boxes (B, 4) (top, left, h, w), flip (B,) bool -> (B, C, size, size).
    """
    b, _, height, width = x.shape
    top, left, h, w = boxes.to(torch.float32).unbind(1)
    ys, xs = _source_coords(top, h, size), _source_coords(left, w, size)  # B x S each
    if flip is not None:
        xs = torch.where(flip[:, None], xs.flip(1), xs)
    gx, gy = (2 * xs + 1) / width - 1, (2 * ys + 1) / height - 1  # normalised to [-1, 1]
    grid = torch.stack([gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def hflip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror the samples where ``mask`` is True. Shape: (B, C, H, W), (B,) bool -> (B, C, H, W)."""
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma. Shape: (B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(1)


def grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Greyscale (3 equal channels) where ``mask`` is True. Shape: (B, 3, H, W), (B,) bool -> (B, 3, H, W)."""
    m = mask.to(x.dtype).view(-1, 1, 1, 1)  # exact: x * 1 + 0 or x * 0 + gray
    return torch.addcmul(rgb_to_grayscale(x).mul_(m), x, 1 - m)


def _blend(x: Tensor, ref: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``(f * x + (1 - f) * ref).clamp(0, 1)`` with a per-sample f; ref broadcasts to x."""
    f = factor.to(x.dtype).view(-1, 1, 1, 1)  # B x 1 x 1 x 1
    return torch.addcmul(ref * (1 - f), f, x).clamp_(0, 1)


def _step(a: Tensor) -> Tensor:
    """1.0 where a > 0, else 0.0 (in place; sign/clamp vectorise better than a comparison on CPU)."""
    return a.sign_().clamp_(min=0)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate the HSV hue by ``factor`` turns (in [-0.5, 0.5]), fused: V = max and V*S = max - min are kept,
    the hue is found with two branch-free compare-and-swaps (max/min) and the HSV->RGB step is a triangle wave.
    Same result as torchvision's ``adjust_hue`` up to float rounding. Shape: (B, 3, H, W), (B,) -> (B, 3, H, W).
    """
    r, g, b = x.unbind(1)  # B x H x W each
    s1 = _step(b - g)  # 1 where g < b: swap g, b
    g1, b1 = torch.maximum(g, b), torch.minimum(g, b)
    s2 = _step(g1 - r)  # 1 where r < g1: swap r, g1
    vmax, g2 = torch.maximum(r, g1), torch.minimum(r, g1)
    chroma = vmax - torch.minimum(g2, b1)
    sector = s2.mul_(2 * s1 - 1 / 3).sub_(s1)  # -s1 + s2 * (2 s1 - 1/3)
    h6 = (g2 - b1).div_(chroma.clamp(min=1e-30).mul_(6)).add_(sector).abs_().mul_(6)  # hue * 6, in [0, 6]
    h6 = h6.add_(6 * factor.to(x.dtype).view(-1, 1, 1))  # shifted, in [-3, 9]
    h6 = h6.sub_(torch.floor(h6 / 6).mul_(6))  # wrapped to [0, 6)
    off = _constant(_HUE_OFFSETS, x.dtype, x.device).view(1, 3, 1, 1)
    w = (h6.unsqueeze(1) + off).abs_().sub_(3).abs_().sub_(1).clamp_(0, 1)  # B x 3 x H x W
    return torch.addcmul(vmax.unsqueeze(1), chroma.unsqueeze(1), w, value=-1)


def _blend_round(x: Tensor, op: Tensor, factors: Tensor, active: Tensor) -> Tensor:
    """Each sample applies brightness (op 0), contrast (1) or saturation (2), or nothing where not ``active``."""
    f = torch.where(active, factors.gather(1, op[:, None]).squeeze(1), torch.ones_like(factors[:, 0]))  # B
    gray = rgb_to_grayscale(x)  # B x 1 x H x W
    is_c, is_s = (op == 1).to(x.dtype).view(-1, 1, 1, 1), (op == 2).to(x.dtype).view(-1, 1, 1, 1)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)  # B x 1 x 1 x 1
    ref = gray.mul_(is_s).add_(mean * is_c)  # B x 1 x H x W: 0 (brightness), the mean (contrast) or grey (sat.)
    return _blend(x, ref, f)


def color_jitter(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """torchvision's ColorJitter with per-sample factors and per-sample op order, no loop over samples.

    ``factors[:, k]`` are the brightness, contrast, saturation and hue factors (1, 1, 1, 0 do nothing);
    ``order[b]`` is a permutation of (0, 1, 2, 3) in that numbering. Each sample's hue sits at some position p:
    three rounds apply its non-hue ops before p (identity after), one hue pass, then three rounds after p.
    Shape: (B, 3, H, W), factors (B, 4), order (B, 4) -> (B, 3, H, W).
    """
    is_hue = (order == 3).float()  # B x 4
    hue_pos = is_hue.argmax(dim=1)  # B
    rest = order.gather(1, is_hue.argsort(dim=1, stable=True)[:, :3])  # B x 3, non-hue ops in their order
    for k in range(3):
        x = _blend_round(x, rest[:, k], factors, k < hue_pos)
    x = adjust_hue(x, factors[:, 3])
    for k in range(3):
        x = _blend_round(x, rest[:, k], factors, k >= hue_pos)
    return x


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int, mask: Optional[Tensor] = None) -> Tensor:
    """Separable Gaussian blur with reflect padding and a per-sample sigma (identity where ``mask`` is False).

    Shape: x (B, C, H, W), sigma (B,), mask (B,) bool -> (B, C, H, W).
    """
    b, c, height, width = x.shape
    p = kernel_size // 2
    if kernel_size % 2 != 1 or p >= min(height, width):
        raise ValueError(f"kernel_size={kernel_size} must be odd and smaller than twice the image side {height}")
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - p  # k taps: -p .. p
    kern = torch.exp(-0.5 * (t / sigma.to(x.dtype)[:, None]) ** 2)  # B x k
    kern = kern / kern.sum(dim=1, keepdim=True)
    if mask is not None:  # a delta kernel leaves the sample exactly as it is
        kern = torch.where(mask[:, None], kern, (t == 0).to(x.dtype))
    kern = kern[:, None, :].expand(b, c, kernel_size).reshape(b * c, kernel_size)  # B*C x k
    xp = F.pad(x, [p, p, p, p], mode="reflect").reshape(1, b * c, height + 2 * p, width + 2 * p)
    y = F.conv2d(xp, kern.view(b * c, 1, kernel_size, 1), groups=b * c)  # rows
    y = F.conv2d(y, kern.view(b * c, 1, 1, kernel_size), groups=b * c)  # columns
    return y.view(b, c, height, width).clamp_(0.0, 1.0)  # a convex combination, up to float rounding


def _check_settings(size: int, strength: float, min_scale: float, max_scale: float) -> None:
    if size < 1:
        raise ValueError(f"size={size} must be >= 1")
    if not 0 <= strength <= 2.5:
        raise ValueError(f"strength={strength} must be in [0, 2.5] (hue 0.2*s must stay <= 0.5)")
    if not 0 < min_scale <= max_scale <= 1:
        raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale}, max_scale={max_scale}")
