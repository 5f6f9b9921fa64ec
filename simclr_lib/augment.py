"""SimCLR data augmentation (Chen et al. 2020, Sec. 3 and Appendix A), per image and on a whole batch.

The paper's family of views: random resized crop (area fraction U(0.08, 1), aspect ratio log-U(3/4, 4/3)) with a
horizontal flip, colour distortion (``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)`` with p=0.8, then greyscale with
p=0.2) and Gaussian blur (p=0.5, sigma U(0.1, 2), kernel 10% of the side; off for CIFAR-10, App. B.9).

* :func:`reference_transform` + :func:`augment_per_image`: torchvision, one image at a time (the baseline).
* :class:`SimCLRAugment`: the same distribution on a ``(B, 3, H, W)`` batch on its own device, every sample
  with its own random parameters, no Python loop over samples and no host sync. The batched ops below take
  per-sample parameters explicitly, so each one can be shown (and tested against torchvision) alone.

Views come out as float32 in [0, 1]; :func:`normalize` is a separate, explicit step.

Fidelity to torchvision on float images (tests/test_augment.py): colour ops, greyscale, flip and blur agree to
float rounding (<= 2e-6); the crop equals ``resized_crop(..., antialias=False)``, which is torchvision's default
antialiased resize whenever the box is no larger than the output (always, for 32 px CIFAR and 96 px STL-10
views); the crop boxes are drawn as torchvision draws them. torchvision on uint8 rounds after every op (and
truncates after each blend, darkening by ~0.5/255 per op); the batched pipeline stays in float throughout.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the 50k CIFAR-10 training images
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-channel std of the same pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel. Shape: (B, C, H, W) float -> (B, C, H, W)."""
    if not x.is_floating_point():
        raise ValueError(f"normalize expects float images in [0, 1], got {x.dtype}; call to_float(x) first")
    m = _constant(tuple(map(float, mean)), x.dtype, x.device).view(1, -1, 1, 1)
    s = _constant(tuple(map(float, std)), x.dtype, x.device).view(1, -1, 1, 1)
    return (x - m) / s


@functools.lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small constant tensor, copied to ``device`` once (a host-to-GPU copy every step would sync)."""
    return torch.tensor(values, dtype=dtype, device=device)


def blur_kernel_size(size: int) -> int:
    """Odd kernel side of about 10% of the image side (App. A): 3 at 32 px, 9 at 96 px, 23 at 224 px."""
    k = max(int(0.1 * size), 1)
    return k if k % 2 == 1 else k + 1


# --- per-image reference (torchvision) -----------------------------------------------------------------------
class _ToFloat:
    """PIL image or uint8/float CHW tensor -> float32 CHW tensor in [0, 1]."""

    def __call__(self, img: Any) -> Tensor:
        import torchvision.transforms.functional as TF

        return TF.convert_image_dtype(img, torch.float32) if isinstance(img, Tensor) else TF.to_tensor(img)


def reference_transform(size: int = 32, strength: float = 0.5, blur: bool = False,
                        min_scale: float = 0.08) -> Callable[[Any], Tensor]:
    """The paper's per-image augmentation (App. A) with torchvision; works on PIL images and CHW tensors.

    Shape: one image (3, H, W) or PIL -> (3, size, size) float32 in [0, 1].
    """
    import torchvision.transforms as T

    _check_settings(size, strength, min_scale, 1.0)
    s = strength
    ops = [T.RandomResizedCrop(size, scale=(min_scale, 1.0), ratio=(3 / 4, 4 / 3)), T.RandomHorizontalFlip(),
           T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8), T.RandomGrayscale(p=0.2)]
    if blur:
        ops.append(T.RandomApply([T.GaussianBlur(blur_kernel_size(size), sigma=(0.1, 2.0))], p=0.5))
    return T.Compose(ops + [_ToFloat()])


def augment_per_image(images: Tensor, n_views: int = 2, transform: Optional[Callable] = None) -> Tensor:
    """Loop over samples with a per-image ``transform`` (default: :func:`reference_transform`).

    Shape: (B, 3, H, W) -> (n_views * B, 3, S, S), view-major (all first views, then all second views, ...).
    """
    if n_views < 1:
        raise ValueError(f"n_views={n_views} must be >= 1")
    transform = transform or reference_transform()
    return torch.cat([torch.stack([transform(img) for img in images]) for _ in range(n_views)])


# --- batched ops with explicit per-sample parameters ---------------------------------------------------------
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


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with black. Shape: (B, 3, H, W), (B,) -> (B, 3, H, W)."""
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the mean of the image's greyscale. Shape: (B, 3, H, W), (B,) -> (B, 3, H, W)."""
    return _blend(x, rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's greyscale. Shape: (B, 3, H, W), (B,) -> (B, 3, H, W)."""
    return _blend(x, rgb_to_grayscale(x), factor)


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


# --- the batched pipeline --------------------------------------------------------------------------------------
class SimCLRAugment(torch.nn.Module):
    """The paper's augmentation (App. A) on a whole batch, each sample with its own random parameters.

    Same distribution as :func:`reference_transform`; runs on ``x.device`` (CPU or GPU), never syncs with the
    host, and is reproducible with a ``torch.Generator`` on that device. ``size`` is the output side, ``strength``
    the colour strength s (0.5 for CIFAR-10, 1.0 for ImageNet), ``blur`` switches the Gaussian blur on.
    ``ops`` keeps only some of :data:`OPS` (crop, flip, jitter, grayscale, blur) for every call, e.g. the
    augmentation ablation of Sec. 3 / Fig. 5; without "crop" the whole image is resized. The random parameters are
    drawn the same way whatever ``ops`` says, so the default (all of OPS) is the full pipeline, bit for bit.
    """

    cpu_block_pixels: int = 128 * 32 * 32  # pixels per block on CPU (cache blocking; no effect on the result)

    def __init__(self, size: int = 32, strength: float = 0.5, blur: bool = False, min_scale: float = 0.08,
                 max_scale: float = 1.0, ratio: Sequence[float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter_p: float = 0.8, gray_p: float = 0.2, blur_p: float = 0.5,
                 blur_sigma: Sequence[float] = (0.1, 2.0), ops: Sequence[str] = OPS) -> None:
        super().__init__()
        _check_settings(size, strength, min_scale, max_scale)
        self.ops = _check_ops(ops)
        if not 0 < ratio[0] <= ratio[1] or not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"ratio={ratio} and blur_sigma={blur_sigma} must be (low, high) with 0 < low <= high")
        for name, p in dict(flip_p=flip_p, jitter_p=jitter_p, gray_p=gray_p, blur_p=blur_p).items():
            if not 0 <= p <= 1:
                raise ValueError(f"{name}={p} must be a probability in [0, 1]")
        self.size, self.strength, self.blur_on = size, strength, blur
        self.scale, self.ratio = (min_scale, max_scale), (float(ratio[0]), float(ratio[1]))
        self.flip_p, self.jitter_p, self.gray_p, self.blur_p = flip_p, jitter_p, gray_p, blur_p
        self.blur_sigma, self.kernel_size = (float(blur_sigma[0]), float(blur_sigma[1])), blur_kernel_size(size)
        b = 0.8 * strength  # brightness, contrast, saturation ranges, then hue (torchvision's ColorJitter)
        self.jitter_low = (max(0.0, 1 - b), max(0.0, 1 - b), max(0.0, 1 - b), -0.2 * strength)
        self.jitter_high = (1 + b, 1 + b, 1 + b, 0.2 * strength)

    def extra_repr(self) -> str:
        ops = "" if self.ops == OPS else f", ops={self.ops}"
        return f"size={self.size}, strength={self.strength}, blur={self.blur_on}, scale={self.scale}{ops}"

    def sample_params(self, n: int, height: int, width: int, device: Optional[torch.device] = None,
                      generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Draw every random choice for ``n`` samples of ``height`` x ``width`` (all tensors on ``device``).

        Keys: box (n, 4) top/left/h/w, area (n,) crop area fraction, flip, jitter, gray, blur (n,) bool,
        factors (n, 4) brightness/contrast/saturation/hue (neutral where jitter is False), order (n, 4), sigma (n,).
        """
        def rand(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, device=device)

        box = sample_crop_boxes(n, height, width, self.scale, self.ratio, generator, device)
        flip, jitter = rand(n) < self.flip_p, rand(n) < self.jitter_p
        low, high = (_constant(v, torch.float32, device) for v in (self.jitter_low, self.jitter_high))
        factors = low + (high - low) * rand(n, 4)  # n x 4
        factors = torch.where(jitter[:, None], factors, _constant(_NEUTRAL, torch.float32, device))
        order = rand(n, 4).argsort(dim=1)  # n x 4, a uniform random permutation per sample
        gray = rand(n) < self.gray_p
        blur = (rand(n) < self.blur_p) & self.blur_on
        sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * rand(n)
        area = box[:, 2] * box[:, 3] / (height * width)
        return dict(box=box, area=area, flip=flip, jitter=jitter, factors=factors, order=order, gray=gray,
                    blur=blur, sigma=sigma)

    def apply(self, x: Tensor, params: dict[str, Tensor], ops: Optional[Sequence[str]] = None) -> Tensor:
        """Apply the listed ``ops`` (a subset of OPS, in the paper's order; None: this module's ``ops``) with the
        given parameters; without "crop" the whole image is resized. Shape: (B, 3, H, W) uint8 or float -> (B, 3, size, size) float32.

        On CPU the batch goes through in blocks of ``cpu_block_pixels`` pixels (128 images at 32 px) so the
        intermediates stay in cache (~1.6x faster); every op is per sample, so the result is the same.
        """
        ops = self.ops if ops is None else _check_ops(ops)
        b, _, height, width = _check_batch(x).shape
        n = max(1, self.cpu_block_pixels // max(height * width, self.size ** 2))  # samples per block
        if x.device.type != "cpu" or b <= n:
            return self._apply_block(x, params, ops)
        blocks = [self._apply_block(x[i:i + n], {k: v[i:i + n] for k, v in params.items()}, ops)
                  for i in range(0, b, n)]
        return torch.cat(blocks)

    def _apply_block(self, x: Tensor, params: dict[str, Tensor], ops: Sequence[str]) -> Tensor:
        x = to_float(x)  # B x 3 x H x W in [0, 1]
        b, _, height, width = x.shape
        full = _constant((0.0, 0.0, float(height), float(width)), torch.float32, x.device).expand(b, 4)
        box = params["box"] if "crop" in ops else full
        flip = params["flip"] if "flip" in ops else None
        if "crop" in ops or (height, width) != (self.size, self.size):
            x = resized_crop(x, box, self.size, flip)  # B x 3 x S x S
        elif flip is not None:
            x = hflip(x, flip)
        if "jitter" in ops:
            x = color_jitter(x, params["factors"], params["order"])
        if "grayscale" in ops:
            x = grayscale(x, params["gray"])
        if "blur" in ops and self.blur_on:
            x = gaussian_blur(x, params["sigma"], self.kernel_size, params["blur"])
        return x

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None, return_params: bool = False,
                ops: Optional[Sequence[str]] = None) -> Any:
        """One random view of each image. Shape: (B, 3, H, W) -> (B, 3, size, size) float32 in [0, 1].

        With ``return_params=True`` returns ``(views, params)`` (see :meth:`sample_params`).
        """
        _check_batch(x)
        _check_generator(generator, x.device)
        params = self.sample_params(x.shape[0], x.shape[2], x.shape[3], x.device, generator)
        out = self.apply(x, params, ops)
        return (out, params) if return_params else out

    def views(self, x: Tensor, n_views: int = 2, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n_views`` independent views of each image in one batched pass.

        Shape: (B, 3, H, W) -> (n_views * B, 3, size, size), view-major (as ``torch.cat([v1, v2, ...])``).
        """
        if n_views < 1:
            raise ValueError(f"n_views={n_views} must be >= 1")
        return self.forward(_check_batch(x).repeat(n_views, 1, 1, 1), generator)

    # one random op at a time, with this module's probabilities (for showing each augmentation alone)
    def crop(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.forward(x, generator, ops=("crop",))

    def flip(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.forward(x, generator, ops=("flip",))

    def jitter(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.forward(x, generator, ops=("jitter",))

    def grayscale(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.forward(x, generator, ops=("grayscale",))

    def blur(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.forward(x, generator, ops=("blur",))


def color_distortion(x: Tensor, strength: float = 0.5, generator: Optional[torch.Generator] = None) -> Tensor:
    """The paper's ``color_distortion(image, s)`` (App. A): jitter with p=0.8, then greyscale with p=0.2, on a
    batch at its own size. Shape: (B, 3, H, W) -> (B, 3, H, W) float32 in [0, 1].
    """
    x = to_float(_check_batch(x))  # B x 3 x H x W
    _check_generator(generator, x.device)
    params = SimCLRAugment(strength=strength).sample_params(x.shape[0], *x.shape[2:], x.device, generator)
    return grayscale(color_jitter(x, params["factors"], params["order"]), params["gray"])


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """``ops`` as a tuple in the order of OPS; unknown names raise."""
    if isinstance(ops, str):
        raise ValueError(f"ops={ops!r} must be a sequence of names such as ('crop', 'jitter'), not one string")
    unknown = set(ops) - set(OPS)
    if unknown:
        raise ValueError(f"unknown ops {sorted(unknown)}; choose from {', '.join(OPS)}")
    return tuple(op for op in OPS if op in ops)


def _check_batch(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a (B, 3, H, W) image batch, got {shape}; use x.unsqueeze(0) for one image")
    return x


def _check_generator(generator: Optional[torch.Generator], device: torch.device) -> None:
    """A generator must live on the images' device, index included (a ``cuda:1`` generator cannot draw for
    ``cuda:0`` images)."""
    if generator is None:
        return
    g, d = generator.device, torch.device(device)
    if g.type != d.type or (g.index is not None and d.index is not None and g.index != d.index):
        raise ValueError(f"generator is on {g} but the images are on {d}; "
                         f"make it with torch.Generator(device=x.device)")
