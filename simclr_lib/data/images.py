"""Images in memory (``ImageData``: uint8 ``(N, 3, H, W)`` + labels), the data sets' names and statistics, where
data and caches live, and the one resize function.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from simclr_lib.runtime import project_root

PathLike = Union[str, Path]
DATASETS = ("cifar10", "stl10", "folder", "shapes")
SPLITS = {"cifar10": ("train", "test"), "stl10": ("train", "test", "unlabeled", "train+unlabeled"),
          "shapes": ("train", "test"), "folder": ()}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
SHAPE_CLASSES = ["circle", "square", "triangle", "cross", "ring", "star", "crescent", "heart"]
SHAPES_SIZES = {"train": 10_000, "test": 2_000}
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the 50k CIFAR-10 training images
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-channel std of the same pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The statistics each data set's encoder normalises its [0, 1] views with (``models``): one table, one place.
STATS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "shapes": (CIFAR10_MEAN, CIFAR10_STD),
         "folder": (CIFAR10_MEAN, CIFAR10_STD), "stl10": (IMAGENET_MEAN, IMAGENET_STD)}


@dataclass
class ImageData:
    """A whole data set in memory.

    Shape:
        images: (N, 3, H, W) uint8, contiguous; labels: (N,) int64, or None for unlabelled images.
    """

    images: torch.Tensor
    labels: Optional[torch.Tensor]
    classes: list[str]
    name: str  # e.g. "cifar10/train"

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N,3,H,W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != (len(self),)):
            raise ValueError(f"labels must be int64 of shape ({len(self)},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, n: int) -> "ImageData":
        """The first ``n`` images (copied, so the full tensor can be freed)."""
        if not 1 <= n <= len(self):
            raise ValueError(f"subset={n} is out of range for {self.name} with {len(self)} images; use 1..{len(self)}")
        labels = None if self.labels is None else self.labels[:n].clone()
        return replace(self, images=self.images[:n].clone(), labels=labels)

    def to(self, device: Union[str, torch.device]) -> "ImageData":
        labels = None if self.labels is None else self.labels.to(device)
        return replace(self, images=self.images.to(device), labels=labels)


# --- where things live ----------------------------------------------------------------------------------------------
def resolve_data_dir(data_dir: Optional[PathLike] = None) -> Path:
    """``data_dir`` if given, else ``$SIMCLR_DATA_DIR``, else ``<project root>/data`` (:func:`runtime.project_root`:
    the clone's ``data/`` from the root or from ``notebooks/``; ``<cwd>/data`` outside a clone). The one default of
    the data directory: runs, notebooks, the CLI and the weights cache all ask it."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("SIMCLR_DATA_DIR")
    return Path(env).expanduser() if env else project_root() / "data"


def _writable(path: Path) -> bool:
    """Writable for us *and* not marked read-only (root ignores permission bits; we respect them)."""
    try:
        return path.is_dir() and os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def resolve_cache_dir(data_dir: Optional[PathLike] = None) -> Path:
    """``$SIMCLR_CACHE_DIR``, else ``<data_dir>/cache`` if the data dir is writable, else ``~/.cache/simclr_lib``."""
    env = os.environ.get("SIMCLR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    data_dir = resolve_data_dir(data_dir)
    cache = data_dir / "cache"
    if _writable(cache) or (not cache.exists() and _writable(data_dir)):
        return cache
    return Path.home() / ".cache" / "simclr_lib"


# --- one resize function, one validation split ----------------------------------------------------------------------
def resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Centre-crop to the aspect ratio of ``size`` and resize (bicubic, antialiased, in chunks): the one resize
    of the package (decoded files, binary releases, the experiments' smaller images).

    Shape:
        images: (N, 3, h, w) uint8 -> (N, 3, H, W) uint8 with (H, W) = size.
    """
    out_h, out_w = int(size[0]), int(size[1])
    n, _, h, w = images.shape
    if (h, w) == (out_h, out_w):
        return images
    scale = min(h / out_h, w / out_w)  # the largest box of the target's aspect ratio inside the image
    ch, cw = round(out_h * scale), round(out_w * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    out = torch.empty((n, 3, out_h, out_w), dtype=torch.uint8)
    for i in range(0, n, 2048):
        x = images[i:i + 2048, :, top:top + ch, left:left + cw].float()
        x = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=True, align_corners=False)
        out[i:i + 2048] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def balanced_indices(labels: torch.Tensor, per_class: Optional[int] = None, fraction: Optional[float] = None,
                     seed: int = 0, keep_one_out: bool = False) -> torch.Tensor:
    """Indices of a class-balanced random subset: ``per_class`` images of each class, or ``fraction`` of each
    class (at least one). With ``keep_one_out``, a held-out part: never every image of a class, and nothing of a
    class with fewer than two. The one class-balanced selection (label fractions, C's held-out part,
    :func:`validation_split`). Shape: labels (N,) -> (n,) int64, sorted.

    Taught in notebook 04.
    """
    if (per_class is None) == (fraction is None) or (fraction is not None and not 0 < fraction <= 1) \
            or (per_class is not None and per_class < 1):
        raise ValueError(f"give exactly one of per_class >= 1 or 0 < fraction <= 1 (got {per_class}, {fraction})")
    g, labels = torch.Generator().manual_seed(seed), torch.as_tensor(labels).cpu()
    chosen = [torch.zeros(0, dtype=torch.int64)]
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        if keep_one_out and len(idx) < 2:
            continue
        n = per_class if per_class is not None else max(1, round(fraction * len(idx)))
        n = min(n, len(idx) - 1) if keep_one_out else n
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(chosen).sort().values


def validation_split(data: ImageData, fraction: float = 0.1, seed: int = 0,
                     names: Sequence[str] = ("train", "validation")) -> tuple[ImageData, ImageData]:
    """Split labelled ``data`` class by class: a seeded ``fraction`` of each class (rounded, at least one of every
    class with two or more images, never all of them) is held out; both parts keep ``data``'s order.

    Every choice of a setting (a probe's C, a recipe) is made on the held-out part of the *training* images; the
    test set is touched only for the number reported.

    Shape:
        data: N images -> (N - M images, M images).
    """
    if data.labels is None:
        raise ValueError(f"{data.name} has no labels; a class-balanced split needs a labelled folder or split")
    held = torch.zeros(len(data), dtype=torch.bool)
    held[balanced_indices(data.labels, fraction=fraction, seed=seed, keep_one_out=True)] = True
    if not held.any():
        raise ValueError(f"{data.name} has too few images per class to hold out a split; pass --test-folder")

    def part(mask: torch.Tensor, what: str) -> ImageData:
        return replace(data, images=data.images[mask].contiguous(), labels=data.labels[mask],
                       name=f"{data.name}[{what}]")
    return part(~held, names[0]), part(held, names[1])
