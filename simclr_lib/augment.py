"""SimCLR data augmentation (Chen et al. 2020, Sec. 3 and Appendix A), per image and on a whole batch.

The paper's family of views: random resized crop (area fraction U(0.08, 1), aspect ratio log-U(3/4, 4/3)) with a
horizontal flip, colour distortion (``ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)`` with p=0.8, then greyscale with
p=0.2) and Gaussian blur (p=0.5, sigma U(0.1, 2), kernel 10% of the side; off for CIFAR-10, App. B.9).

* :func:`reference_transform` + :func:`augment_per_image`: torchvision, one image at a time (the baseline).
* :class:`SimCLRAugment`: the same distribution on a ``(B, 3, H, W)`` batch on its own device, every sample
  with its own random parameters, no Python loop over samples and no host sync. The batched ops
  (``augment_ops``, re-exported here) take per-sample parameters explicitly, so each one can be shown (and tested
  against torchvision) alone.

Views come out as float32 in [0, 1]; the encoder normalises them itself (``models.Normalize``).
:func:`make_views` is the training loop's one call: a batch of uint8 images in, the views of the step out.

Fidelity to torchvision on float images (tests/test_augment.py): colour ops, greyscale, flip and blur agree to
float rounding (<= 2e-6); the crop equals ``resized_crop(..., antialias=False)``, which is torchvision's default
antialiased resize whenever the box is no larger than the output (always, for 32 px CIFAR and 96 px STL-10
views); the crop boxes are drawn as torchvision draws them. torchvision on uint8 rounds after every op (and
truncates after each blend, darkening by ~0.5/255 per op); the batched pipeline stays in float throughout.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from simclr_lib.augment_ops import (  # noqa: F401
    _NEUTRAL,
    OPS,
    _check_settings,
    _constant,
    adjust_hue,
    blur_kernel_size,
    color_jitter,
    gaussian_blur,
    grayscale,
    hflip,
    resized_crop,
    rgb_to_grayscale,
    sample_crop_boxes,
    to_float,
)


# --- per-image reference (torchvision) -----------------------------------------------------------------------
class _ToFloat:
    """PIL image or uint8/float CHW tensor -> float32 CHW tensor in [0, 1]."""

    def __call__(self, img: Any) -> Tensor:
        import torchvision.transforms.functional as TF

        return TF.convert_image_dtype(img, torch.float32) if isinstance(img, Tensor) else TF.to_tensor(img)


def reference_transform(size: int = 32, strength: float = 0.5, blur: bool = False,
                        min_scale: float = 0.08) -> Callable[[Any], Tensor]:
    """The paper's per-image augmentation (App. A) with torchvision; works on PIL images and CHW tensors.

    Taught in notebook 01, as the reference the batched ``SimCLRAugment`` is tested against (not a training path).

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

    Taught in notebook 01.
    """
    if n_views < 1:
        raise ValueError(f"n_views={n_views} must be >= 1")
    transform = transform or reference_transform()
    return torch.cat([torch.stack([transform(img) for img in images]) for _ in range(n_views)])


# --- the batched pipeline --------------------------------------------------------------------------------------
class SimCLRAugment(torch.nn.Module):
    """The paper's augmentation (App. A) on a whole batch, each sample with its own random parameters.

    Same distribution as :func:`reference_transform`; runs on ``x.device`` (CPU or GPU), never syncs with the
    host, and is reproducible with a ``torch.Generator`` on that device. ``size`` is the output side, ``strength``
    the colour strength s (0.5 for CIFAR-10, 1.0 for ImageNet), ``blur`` switches the Gaussian blur on.
    ``ops`` keeps only some of :data:`OPS` (crop, flip, jitter, grayscale, blur) for every call, e.g. the
    augmentation ablation of Sec. 3 / Fig. 5; without "crop" the whole image is resized. The random parameters are
    drawn the same way whatever ``ops`` says, so the default (all of OPS) is the full pipeline, bit for bit.

    Taught in notebook 00 (used in 01, 02, 03, 05).
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

    @classmethod
    def from_config(cls, cfg: Any, ops: Optional[Sequence[str]] = None) -> "SimCLRAugment":
        """The augmentation a ``SimCLRConfig`` describes (size, colour strength, blur, crop scale, greyscale p);
        with ``ops``, only those ops, blur included exactly when listed (the ablation of Fig. 5). The one place a
        config becomes an augmentation: the training loop, the experiments and the notebooks call it. The views
        are ``cfg.view_size`` pixels where it is set (pre-training on smaller views), else ``cfg.image_size``."""
        size = cfg.view_size or cfg.image_size
        if ops is None:
            return cls(size, cfg.color_strength, cfg.blur, cfg.min_scale, gray_p=cfg.gray_p)
        return cls(size, cfg.color_strength, "blur" in ops, cfg.min_scale, gray_p=cfg.gray_p, ops=ops)

    def extra_repr(self) -> str:
        ops = "" if self.ops == OPS else f", ops={self.ops}"
        return f"size={self.size}, strength={self.strength}, blur={self.blur_on}, scale={self.scale}{ops}"

    def sample_params(self, n: int, height: int, width: int, device: Optional[torch.device] = None,
                      generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Draw every random choice for ``n`` samples of ``height`` x ``width`` (all tensors on ``device``).

        Taught in notebook 01.

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



def make_views(images: Tensor, augment: "SimCLRAugment", n_views: int = 2,
               generator: Optional[torch.Generator] = None, channels_last: bool = False) -> Tensor:
    """The views of one training step: ``n_views`` augmented views of every image, in one batched pass on the
    images' device (Algorithm 1, lines 3-6). Taught in notebook 03.

    Shape:
        images: (B, 3, H, W) uint8 -> (n_views * B, 3, S, S) float32 in [0, 1], view-major.
    """
    views = augment.views(images, n_views, generator=generator)  # V*B x 3 x S x S
    return views.contiguous(memory_format=torch.channels_last) if channels_last else views


def color_distortion(x: Tensor, strength: float = 0.5, generator: Optional[torch.Generator] = None) -> Tensor:
    """The paper's ``color_distortion(image, s)`` (App. A): jitter with p=0.8, then greyscale with p=0.2, on a
    batch at its own size. Shape: (B, 3, H, W) -> (B, 3, H, W) float32 in [0, 1].

    Taught in notebook 01.
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
