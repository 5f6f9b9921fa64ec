"""Data sets by name as one uint8 tensor ``(N, 3, H, W)`` plus labels: CIFAR-10, STL-10, your folder, ``shapes``.

The whole set lives in memory as uint8 (airbench habit); augmentations then run on the batch. Decoding a JPEG
folder is the slow part, so the decoded tensor is cached on disk (atomically, keyed on a BLAKE2 hash of the files'
names and bytes) and the second load reads and hashes the files and then does one ``torch.load``; the cache is
optional: a cache that cannot be written only warns. ``shapes`` is a generated, labelled set that needs no file and
no internet; colour and area are drawn independently of the class, so colour statistics do not give the class:
the teaching case for the paper's colour-shortcut argument (Chen et al. 2020, Sec. 3, Fig. 6).
"""
from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import pickle
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from .runtime import atomic_torch_save

PathLike = Union[str, Path]
DATASETS = ("cifar10", "stl10", "folder", "shapes")
SPLITS = {"cifar10": ("train", "test"), "stl10": ("train", "test", "unlabeled", "train+unlabeled"),
          "shapes": ("train", "test"), "folder": ()}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
SHAPE_CLASSES = ["circle", "square", "triangle", "cross", "ring", "star", "crescent", "heart"]
SHAPES_SIZES = {"train": 10_000, "test": 2_000}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
CACHE_VERSION = 2  # 2: keyed on the files' content (1: names, sizes and mtimes)
_CHUNK = 1024  # files read and decoded per batch (one progress-bar step)
_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


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
    from_cache: bool = False  # True when the images came from the on-disk decode cache

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
    """``data_dir`` if given, else ``$SIMCLR_DATA_DIR``, else ``<cwd>/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("SIMCLR_DATA_DIR")
    return Path(env).expanduser() if env else Path.cwd() / "data"


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


# --- decoding files of any mode to RGB uint8 ------------------------------------------------------------------------
class CorruptImageError(ValueError):
    """An image file that cannot be decoded."""


def _corrupt_msg(path: str, reason: str) -> str:
    return (f"cannot decode image {path} ({reason}); fix or delete it, or pass skip_corrupt=True to skip it "
            f"(--skip-corrupt on the command line)")


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` from any PIL mode: 16/32-bit grey is rescaled, transparency goes over white."""
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grey 0..65535 (float: 0..1 or 0..255)
        a = np.asarray(im).astype(np.float64)
        scale = 1 / 257 if im.mode != "F" else (255.0 if a.max(initial=0) <= 1 else 1.0)
        return np.repeat(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
        alpha = rgba[..., 3:] / 255.0
        return np.rint(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.asarray(im.convert("RGB"))


def _fit(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop to the aspect ratio of ``size`` and resize (bicubic, antialiased). Shape: (3,h,w) -> (3,H,W)."""
    if tuple(img.shape[1:]) == size:
        return img
    out = ImageOps.fit(Image.fromarray(img.permute(1, 2, 0).numpy()), (size[1], size[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(out)).permute(2, 0, 1)


def _decode_pil(raw: bytes, path: str, skip_corrupt: bool) -> Optional[torch.Tensor]:
    """Decode one file with PIL (None if it is corrupt and ``skip_corrupt``). Shape: -> (3, h, w) uint8."""
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return torch.from_numpy(_pil_to_rgb(im).copy()).permute(2, 0, 1)
    except _DECODE_ERRORS as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if not skip_corrupt:
            raise CorruptImageError(_corrupt_msg(path, reason)) from None
        warnings.warn(f"skipping corrupt image {path} ({reason})", stacklevel=2)
        return None


def _decode_chunk(raws: list[bytes], paths: list[str], skip_corrupt: bool) -> list[Optional[torch.Tensor]]:
    """JPEGs in one libjpeg-turbo batch (about 8x faster than PIL on 32 px files); other files and failures: PIL."""
    out: list[Optional[torch.Tensor]] = [None] * len(raws)
    jpeg = [i for i, r in enumerate(raws) if r[:3] == b"\xff\xd8\xff"]
    if jpeg:
        datas = [torch.frombuffer(bytearray(raws[i]), dtype=torch.uint8) for i in jpeg]
        try:
            with warnings.catch_warnings():  # torchvision >= 0.29 flags its decoders as deprecated (-> torchcodec)
                warnings.simplefilter("ignore", DeprecationWarning)
                from torchvision.io import ImageReadMode, decode_jpeg

                for i, img in zip(jpeg, decode_jpeg(datas, mode=ImageReadMode.RGB, apply_exif_orientation=True)):
                    out[i] = img
        except (RuntimeError, ImportError, TypeError):  # a bad file spoils the batch (PIL names it); old torchvision
            pass
    return [img if img is not None else _decode_pil(raws[i], paths[i], skip_corrupt) for i, img in enumerate(out)]


def _common_size(files: list[str], skip_corrupt: bool, progress: bool) -> tuple[int, int]:
    """The native (H, W) if every file has it, else 32x32 (reads headers only)."""
    sizes = set()
    for path in tqdm(files, desc="reading image sizes", disable=not progress, leave=False):
        try:
            with Image.open(path) as im:
                turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation by 90 degrees
                sizes.add((im.width, im.height) if turned else (im.height, im.width))
        except _DECODE_ERRORS as exc:
            if not skip_corrupt:
                raise CorruptImageError(_corrupt_msg(path, " ".join(str(exc).split()))) from None
    size = sizes.pop() if len(sizes) == 1 else (32, 32)
    if max(size) > 256:
        warnings.warn(f"keeping the native size {size[0]}x{size[1]}; pass --image-size (image_size= in Python) "
                      f"to shrink", stacklevel=3)
    return size


def _decode_files(files: list[str], size: tuple[int, int], skip_corrupt: bool = False, progress: bool = True,
                  desc: str = "decoding", key: Optional[_ContentKey] = None) -> tuple[torch.Tensor, list[int]]:
    """Decode ``files`` into one tensor resized to ``size``; returns it and the indices of skipped files.

    ``key`` is fed the bytes decoded, so a cache entry's key always describes the content it holds.

    Shape:
        -> (N - skipped, 3, H, W) uint8.
    """
    images = torch.empty((len(files), 3, *size), dtype=torch.uint8)
    skipped: list[int] = []
    with tqdm(total=len(files), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(files), _CHUNK):
            paths = files[start:start + _CHUNK]
            raws = _read_raw(paths)
            if key is not None:
                key.update(paths, raws)
            for j, img in enumerate(_decode_chunk(raws, paths, skip_corrupt)):
                if img is None:
                    skipped.append(start + j)
                else:
                    images[start + j] = _fit(img, size)  # (3, H, W)
            bar.update(len(paths))
    if skipped:
        keep = torch.ones(len(files), dtype=torch.bool)
        keep[skipped] = False
        images = images[keep].contiguous()
    return images, skipped


# --- image folders, with the on-disk uint8 cache --------------------------------------------------------------------
def _image_files(folder: str, recursive: bool) -> list[str]:
    """Image files under ``folder`` in sorted order (hidden files and other extensions ignored)."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        files += [os.path.join(root, n) for n in sorted(names)
                  if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
    return files


def _class_dirs(root: Path) -> list[str]:
    """The class folders of ``root`` (sorted, hidden ones ignored)."""
    return sorted(d for d in os.listdir(root) if not d.startswith(".") and (root / d).is_dir())


def _extra_classes(root: Path, ref_root: Path) -> str:
    """Why ``root``'s classes cannot take their labels from ``ref_root``'s (both ``<dir>/<class>/``), or ''."""
    extra = sorted(set(_class_dirs(root)) - set(_class_dirs(ref_root)))
    if not extra:
        return ""
    return (f"{root} has class folder(s) {', '.join(extra)} that {ref_root} lacks, so its labels cannot follow "
            f"the train split's; add them to {ref_root.name} or remove them from {root.name}")


def _list_folder(root: Path, classes: Optional[list[str]] = None) -> tuple[list[str], Optional[list[int]], list[str]]:
    """Files, labels and classes of ``root/<class>/**/<image>``, classes interleaved; a flat ``root/<image>`` has no
    labels. ``classes`` (another split's class list) labels each folder by its name in that list."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; pass a directory laid out as "
                                f"<dir>/<class>/<image> (or <dir>/<image> for unlabelled images)")
    class_dirs = _class_dirs(root)
    if not class_dirs:
        files = _image_files(str(root), recursive=False)
        if not files:
            raise FileNotFoundError(f"no images in {root}; expected {root}/<class>/<image> or {root}/<image> "
                                    f"with one of the extensions {' '.join(IMAGE_EXTENSIONS)}")
        return files, None, []
    classes = class_dirs if classes is None else classes
    files, labels = [], []
    for d in class_dirs:
        found = _image_files(str(root / d), recursive=True)
        if not found:
            raise FileNotFoundError(f"class folder {root / d} holds no images ({' '.join(IMAGE_EXTENSIONS)}); "
                                    f"add some or remove the folder")
        files += found
        labels += [classes.index(d)] * len(found)
    order = _interleave(labels)
    return [files[i] for i in order], [labels[i] for i in order], list(classes)


def _interleave(labels: list[int]) -> list[int]:
    """Round-robin order over classes (1st of each class, then 2nd of each, ...), each class keeping its order.

    A class-sorted folder read as is would make "the first N images" a few classes only (the first 10,000
    CIFAR-10 JPEGs are all airplanes and automobiles); interleaved, every prefix is as class-balanced as it can be.
    """
    seen: dict[int, int] = {}
    rank = []
    for y in labels:
        rank.append(seen.get(y, 0))
        seen[y] = rank[-1] + 1
    return sorted(range(len(labels)), key=lambda i: (rank[i], labels[i]))


def _read_raw(paths: list[str]) -> list[bytes]:
    raws = []
    for p in paths:
        with open(p, "rb") as f:
            raws.append(f.read())
    return raws


class _ContentKey:
    """The cache key: BLAKE2b over every file's name (relative to the root), length and bytes.

    Content, not names, sizes and mtimes: a file replaced by one of the same size with its mtime preserved
    (``cp -p``, ``rsync -t``, ``tar x``) changes the key. Costs one read of the files (see ``_signature``).
    """

    def __init__(self, root: Path) -> None:
        self._h = hashlib.blake2b(f"simclr_lib cache v{CACHE_VERSION}".encode(), digest_size=20)
        self._skip = len(str(root))

    def update(self, paths: list[str], raws: list[bytes]) -> None:
        for p, raw in zip(paths, raws):
            self._h.update(f"{p[self._skip:]}\0{len(raw)}\0".encode())
            self._h.update(raw)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _signature(root: Path, files: list[str], progress: bool = False) -> str:
    """The content key of ``files`` (read in chunks): the cache is rebuilt when any name or byte changes."""
    key = _ContentKey(root)
    for start in tqdm(range(0, len(files), _CHUNK), desc="checking the cache", disable=not progress, leave=False):
        paths = files[start:start + _CHUNK]
        key.update(paths, _read_raw(paths))
    return key.hexdigest()


def _read_cache(path: Path, key: str) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, weights_only=True)
    except Exception as exc:  # a damaged cache is rebuilt, never fatal
        warnings.warn(f"ignoring unreadable cache {path} ({type(exc).__name__}); rebuilding it", stacklevel=3)
        return None
    return obj if isinstance(obj, dict) and obj.get("key") == key and {"images", "skipped"} <= obj.keys() else None


def _write_cache(path: Path, obj: dict) -> None:
    """Save the decoded set; any failure (read-only folder, full disk, ...) only warns: the cache is optional."""
    try:
        atomic_torch_save(obj, path)
    except Exception as exc:  # OSError, or torch.save's RuntimeError on a full disk
        reason = " ".join(str(getattr(exc, "strerror", None) or exc).split())[:200]
        warnings.warn(f"could not write the decode cache in {path.parent} ({type(exc).__name__}: {reason}); "
                      f"continuing without it; set SIMCLR_CACHE_DIR to a writable directory", stacklevel=3)


def _decode_to_cache(root: Path, files: list[str], name: str, image_size: Optional[int], skip_corrupt: bool,
                     path: Optional[Path], progress: bool) -> dict:
    """Decode ``files``; with a cache ``path``, save them there under the key of the bytes decoded."""
    size = (image_size, image_size) if image_size else _common_size(files, skip_corrupt, progress)
    key = _ContentKey(root) if path is not None else None
    images, skipped = _decode_files(files, size, skip_corrupt, progress, desc=f"decoding {name}", key=key)
    if len(images) == 0:
        raise CorruptImageError(f"none of the {len(files)} images in {root} could be decoded (e.g. {files[0]})")
    entry = {"key": key.hexdigest() if key is not None else "", "images": images, "skipped": skipped}
    if path is not None:
        _write_cache(path, entry)
    return entry


def _load_folder(root: Path, name: str, image_size: Optional[int], skip_corrupt: bool, cache: bool,
                 cache_dir: Path, progress: bool, classes: Optional[list[str]] = None) -> ImageData:
    """Decode an image folder once, then serve it from ``cache_dir`` while its files' content stays unchanged.

    ``classes``: another split's class list, to label this folder's classes by name (see ``_list_folder``).
    """
    files, labels, classes = _list_folder(root, classes)
    tag = hashlib.sha1(f"{root.resolve()}|{image_size}".encode()).hexdigest()[:10]
    path = cache_dir / f"{name.replace('/', '_')}_{image_size or 'native'}px_{tag}.pt"
    hit = _read_cache(path, _signature(root, files, progress)) if cache and path.is_file() else None
    from_cache = hit is not None
    if hit is None:
        hit = _decode_to_cache(root, files, name, image_size, skip_corrupt, path if cache else None, progress)
    elif hit["skipped"]:
        bad = files[hit["skipped"][0]]
        if not skip_corrupt:
            raise CorruptImageError(_corrupt_msg(bad, f"recorded in the cache {path}"))
        warnings.warn(f"skipping {len(hit['skipped'])} corrupt image(s) in {root}, e.g. {bad}", stacklevel=3)
    label_t = None
    if labels is not None:
        label_t = torch.tensor(labels, dtype=torch.int64)
        if hit["skipped"]:
            keep = torch.ones(len(files), dtype=torch.bool)
            keep[hit["skipped"]] = False
            label_t = label_t[keep]
    return ImageData(hit["images"], label_t, classes, name, from_cache=from_cache)


# --- CIFAR-10 and STL-10 binary releases (already uint8: no cache needed) -------------------------------------------
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_NUMPY_GLOBALS = {("_reconstruct", "multiarray"), ("scalar", "multiarray"), ("_frombuffer", "numeric")}
_PICKLE_ALLOWED = ({(f"numpy{core}.{mod}", name) for core in (".core", "._core") for name, mod in _NUMPY_GLOBALS}
                   | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: py3 protocol-2 bytes
                   | {(b, t) for b in ("builtins", "__builtin__") for t in ("bytes", "bytearray", "str", "int",
                                                                            "float", "list", "dict", "tuple")})


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a callable that no CIFAR-10 batch holds."""


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what CIFAR-10 batches hold (dicts, lists, bytes, str, numpy arrays) and nothing else: a planted
    file cannot run code, since every other global (``os.system``, ``builtins.eval``, ...) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    """One CIFAR python batch (a Python 2 pickle), with str keys, unpickled through an allow-list."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the CIFAR-10 folder is incomplete (re-download it)")
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise ValueError(f"refusing to unpickle {path}: it calls {exc}, which no CIFAR-10 batch holds (a planted or "
                         f"foreign file?); nothing was run; replace it with the genuine file") from None
    except Exception as exc:  # truncated or not a pickle at all
        reason = " ".join(str(exc).split())[:200]
        raise ValueError(f"cannot read the CIFAR-10 batch {path} ({type(exc).__name__}: {reason}); "
                         f"re-download cifar-10-batches-py") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} holds a {type(d).__name__}, not a CIFAR-10 batch dict; re-download it")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _read_cifar_batches(root: Path, split: str) -> ImageData:
    """``cifar-10-batches-py``: rows of 3072 bytes, the 1024 R then G then B values of a row-major 32x32 image."""
    batches = [_unpickle(root / n) for n in CIFAR10_BATCHES[split]]
    images = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
    labels = torch.tensor([int(y) for b in batches for y in b["labels"]], dtype=torch.int64)
    classes = CIFAR10_CLASSES
    if (root / "batches.meta").is_file():
        classes = [c.decode() if isinstance(c, bytes) else c for c in _unpickle(root / "batches.meta")["label_names"]]
    return ImageData(torch.from_numpy(images).contiguous(), labels, list(classes), f"cifar10/{split}")


def _read_stl10(root: Path, split: str) -> ImageData:
    """``stl10_binary``: ``<part>_X.bin`` holds 3x96x96 bytes per image in column-major order; ``_y.bin`` 1..10."""
    parts, images, labels = split.split("+"), [], []
    for part in parts:
        x_file = root / f"{part}_X.bin"
        if not x_file.is_file():
            raise FileNotFoundError(f"{x_file} is missing; the STL-10 folder is incomplete (re-download it)")
        images.append(torch.from_numpy(np.fromfile(x_file, dtype=np.uint8)).view(-1, 3, 96, 96).transpose(2, 3))
        if part != "unlabeled":
            labels.append(torch.from_numpy(np.fromfile(root / f"{part}_y.bin", dtype=np.uint8)).long() - 1)
    names = root / "class_names.txt"
    classes = names.read_text().split() if names.is_file() else STL10_CLASSES
    label_t = None if "unlabeled" in parts else torch.cat(labels)  # labels only where every image has one
    return ImageData(torch.cat(images).contiguous(), label_t, classes, f"stl10/{split}")


def _resized(data: ImageData, image_size: Optional[int]) -> ImageData:
    """Resize a whole uint8 set (bicubic, antialiased, in chunks). Shape: (N,3,h,w) -> (N,3,S,S)."""
    if image_size is None or tuple(data.images.shape[2:]) == (image_size, image_size):
        return data
    out = torch.empty((len(data), 3, image_size, image_size), dtype=torch.uint8)
    for i in range(0, len(data), 2048):
        x = F.interpolate(data.images[i:i + 2048].float(), size=(image_size, image_size), mode="bicubic",
                          antialias=True, align_corners=False)
        out[i:i + 2048] = x.round().clamp(0, 255).to(torch.uint8)
    return replace(data, images=out)


def _download(dataset: str, data_dir: Path, split: str) -> Optional[str]:
    """Download with torchvision; None on success, else the reason in one line."""
    try:
        import torchvision.datasets as tvd

        data_dir.mkdir(parents=True, exist_ok=True)
        if dataset == "cifar10":
            tvd.CIFAR10(str(data_dir), train=split == "train", download=True)
        else:
            tvd.STL10(str(data_dir), split=split, download=True)
    except Exception as exc:  # no internet, read-only dir, bad checksum: all reported the same way
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def _locate(dataset: str, data_dir: Path, split: str, download: bool) -> tuple[str, Path]:
    """``("binary", dir)`` or ``("folder", dir)``: the binary release, the image-folder layout, a download."""
    binary = data_dir / ("cifar-10-batches-py" if dataset == "cifar10" else "stl10_binary")
    layout = data_dir / dataset / split
    if binary.is_dir():
        return "binary", binary
    if dataset == "cifar10" and layout.is_dir():
        return "folder", layout
    fix = "pass --download (download=True in Python) or --data-dir, or set SIMCLR_DATA_DIR"
    if download:
        err = _download(dataset, data_dir, split)
        if err is None:
            return "binary", binary
        fix = f"download=True failed ({err}); put the files there or set SIMCLR_DATA_DIR"
    looked = f"{binary.name}/" + (f" and {dataset}/{split}/<class>/" if dataset == "cifar10" else "")
    pretty = {"cifar10": "CIFAR-10", "stl10": "STL-10"}[dataset]
    raise FileNotFoundError(f"{pretty} not found in {data_dir} (looked for {looked}); {fix}")


def _load_cifar_folder(root: Path, split: str, image_size: Optional[int], **opts) -> ImageData:
    """``cifar10/<split>/<class>/``; a split other than train takes its labels from the train split's class list
    (matched by name), so a split missing a class keeps the others' labels; a class train lacks is an error."""
    train = root.parent / "train"
    classes = None
    if split != "train" and train.is_dir() and root.is_dir():
        problem = _extra_classes(root, train)
        if problem:
            raise FileNotFoundError(problem)
        classes = _class_dirs(train)
    return _load_folder(root, f"cifar10/{split}", image_size or 32, classes=classes, **opts)


# --- labelled folders for evaluation: a test folder mapped by class name, or a held-out split ----------------------
HOLDOUT_FRACTION = 0.2  # of each class, held out as test images when no test folder is given


def _labelled_root(folder: PathLike, flag: str) -> Path:
    """``folder`` as a Path, checked to be a ``<dir>/<class>/<image>`` folder (one-line error naming ``flag``)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} ({flag}) does not exist; pass --folder (the labelled train "
                                f"images) and --test-folder laid out as <dir>/<class>/<image>")
    if not _class_dirs(root):
        raise ValueError(f"image folder {root} ({flag}) has no class subfolders, so its images have no labels to "
                         f"evaluate with; pass --folder (and --test-folder) laid out as <dir>/<class>/<image>")
    return root


def _hold_out(data: ImageData, fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Split labelled ``data`` into (train, test): a seeded ``fraction`` of each class (rounded, at least one of
    every class with two or more images, never all of them) is test; both keep ``data``'s order."""
    g = torch.Generator().manual_seed(seed)
    is_test = torch.zeros(len(data), dtype=torch.bool)
    for c in range(data.num_classes):
        idx = (data.labels == c).nonzero().flatten()
        if len(idx) >= 2:
            n = min(max(round(fraction * len(idx)), 1), len(idx) - 1)
            is_test[idx[torch.randperm(len(idx), generator=g)[:n]]] = True
    if not is_test.any():
        raise ValueError(f"{data.name} has too few images per class to hold out a test split; pass --test-folder")

    def part(mask: torch.Tensor, what: str) -> ImageData:
        return replace(data, images=data.images[mask].contiguous(), labels=data.labels[mask],
                       name=f"{data.name}[held-out {what}]")
    return part(~is_test, "train"), part(is_test, "test")


def folder_eval_splits(folder: PathLike, test_folder: Optional[PathLike] = None, *, data_dir: Optional[PathLike] = None,
                       holdout: float = HOLDOUT_FRACTION, seed: int = 0, image_size: Optional[int] = None,
                       skip_corrupt: bool = False, cache: bool = True,
                       progress: bool = True) -> tuple[ImageData, ImageData, Optional[dict]]:
    """Labelled train and test images from image folders, to evaluate an encoder (probe, kNN, t-SNE).

    ``test_folder``'s classes are labelled by name with ``folder``'s class list (a class that ``folder`` lacks is a
    one-line error naming it). Without ``test_folder``, a class-balanced, seeded ``holdout`` fraction of ``folder``
    is held out as the test images, so nothing is tested on the images the probe was fitted on.

    Returns:
        (train, test, held_out): ``held_out`` describes the split (from, fraction, seed, train_images, test_images),
        None when the test images come from ``test_folder``.
    """
    root = _labelled_root(folder, "--folder")
    test_root = _labelled_root(test_folder, "--test-folder") if test_folder is not None else None
    if test_root is not None and _extra_classes(test_root, root):
        raise ValueError(_extra_classes(test_root, root))
    opts = dict(skip_corrupt=skip_corrupt, cache=cache, cache_dir=resolve_cache_dir(data_dir), progress=progress)
    train = _load_folder(root, f"folder/{root.resolve().name}", image_size, **opts)
    if test_root is None:
        train, test = _hold_out(train, holdout, seed)
        return train, test, {"from": str(root), "fraction": holdout, "seed": seed, "train_images": len(train),
                             "test_images": len(test)}
    side = image_size or (train.images.shape[-1] if train.images.shape[-1] == train.images.shape[-2] else None)
    test = _load_folder(test_root, f"folder/{test_root.resolve().name}", side, classes=train.classes, **opts)
    return train, test, None


# --- is a data set there? (file names only: nothing is decoded) -----------------------------------------------------
def _has_image(folder: Path) -> bool:
    for _, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS) for n in names):
            return True
    return False


def _folder_problem(root: Path, flat_ok: bool = False) -> str:
    """Why ``root`` is not an image folder ``<class>/<image>`` (or, if ``flat_ok``, ``<image>``), or ''.

    File names only: nothing is opened.
    """
    if not root.is_dir():
        return f"{root} is missing"
    class_dirs = _class_dirs(root)
    if not class_dirs:
        if flat_ok and _has_image(root):
            return ""
        return f"{root} has no class folders (expected {root}/<class>/<image>)"
    empty = [d for d in class_dirs if not _has_image(root / d)]
    return f"class folder {root / empty[0]} holds no images" if empty else ""


def _binary_files(name: str, split: str) -> list[str]:
    if name == "cifar10":
        return CIFAR10_BATCHES[split]
    return [f"{p}_{x}.bin" for p in split.split("+") for x in ("X", "y") if x == "X" or p != "unlabeled"]


def available(name: str, data_dir: Optional[PathLike] = None,
              splits: Sequence[str] = ("train", "test")) -> tuple[bool, str]:
    """Whether ``load_dataset(name, split, data_dir)`` finds its files for every split in ``splits``.

    Only names are checked, nothing is decoded: a corrupt image is reported when it is decoded, by name.

    Args:
        name: ``cifar10``, ``stl10``, ``shapes`` (always there) or ``folder`` (``data_dir`` is the folder).
        data_dir: as for ``load_dataset``; None: ``$SIMCLR_DATA_DIR``, else ``./data``.
        splits: the splits that will be used.

    Returns:
        ``(True, "")``, or ``(False, why)`` with the exact file or folder that is missing, in one line.
    """
    name = name.lower()
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown; choose one of {', '.join(DATASETS)}")
    bad = [s for s in splits if name in ("cifar10", "stl10") and s not in SPLITS[name]]
    if bad:
        raise ValueError(f"split {bad[0]!r} does not exist for {name}; choose one of {', '.join(SPLITS[name])}")
    if name == "shapes":
        return True, ""
    data_dir = resolve_data_dir(data_dir)
    if name == "folder":
        problem = _folder_problem(data_dir, flat_ok=True)
        return not problem, problem
    binary = data_dir / ("cifar-10-batches-py" if name == "cifar10" else "stl10_binary")
    if binary.is_dir():  # load_dataset reads the binary release whenever its folder is there
        missing = list(dict.fromkeys(f for s in splits for f in _binary_files(name, s) if not (binary / f).is_file()))
        return not missing, f"{binary} lacks {', '.join(missing)}" if missing else ""
    if name == "stl10":
        return False, f"stl10_binary/ missing under {data_dir}"
    return _cifar_folder_available(data_dir, splits)


def _cifar_folder_available(data_dir: Path, splits: Sequence[str]) -> tuple[bool, str]:
    for split in splits:
        root = data_dir / "cifar10" / split
        if not root.is_dir():
            return False, f"cifar10/{split} missing under {data_dir} (and no cifar-10-batches-py/ there)"
        problem = _folder_problem(root)
        train = data_dir / "cifar10" / "train"
        if not problem and split != "train" and train.is_dir():
            problem = _extra_classes(root, train)
        if problem:
            return False, problem
    return True, ""


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


# --- the one entry point --------------------------------------------------------------------------------------------
def load_dataset(name: str, split: str = "train", data_dir: Optional[PathLike] = None, *,
                 folder: Optional[PathLike] = None, subset: Optional[int] = None, download: bool = False,
                 image_size: Optional[int] = None, skip_corrupt: bool = False, cache: bool = True,
                 progress: bool = True) -> ImageData:
    """Load a data set by name as uint8 images (+ labels where they exist).

    Args:
        name: ``cifar10``, ``stl10``, ``folder`` (with ``folder=``) or ``shapes`` (no file, no internet).
        split: cifar10, shapes: train, test; stl10: train, test, unlabeled, train+unlabeled; folder: ignored.
        data_dir: where data sets live; None: ``$SIMCLR_DATA_DIR``, else ``./data``.
        folder: an ImageFolder directory ``<dir>/<class>/<image>`` (or ``<dir>/<image>``, unlabelled).
        subset: keep only the first ``subset`` images.
        download: let torchvision download a missing CIFAR-10 / STL-10.
        image_size: resize to ``image_size`` squared (None: native; a folder of mixed sizes becomes 32).
        skip_corrupt: skip undecodable files with a warning instead of failing.
        cache: cache decoded folders in ``$SIMCLR_CACHE_DIR``, else ``<data_dir>/cache``, else ``~/.cache/simclr_lib``.
        progress: show tqdm progress bars.

    Shape:
        images: (N, 3, H, W) uint8; labels: (N,) int64, or None for STL-10's unlabelled splits and flat folders.
    """
    name = name.lower()
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown; choose one of {', '.join(DATASETS)}")
    if name != "folder" and split not in SPLITS[name]:
        raise ValueError(f"split {split!r} does not exist for {name}; choose one of {', '.join(SPLITS[name])}")
    if (subset is not None and subset < 1) or (image_size is not None and image_size < 1):
        raise ValueError(f"subset={subset} and image_size={image_size} must be positive integers or None")
    if (folder is None) == (name == "folder"):
        raise ValueError(f"folder= goes with name='folder' and only with it (got name={name!r}, folder={folder!r})")
    if name == "shapes":
        if subset is not None and subset > SHAPES_SIZES[split]:
            raise ValueError(f"subset={subset} is out of range for shapes/{split} with {SHAPES_SIZES[split]} images")
        return make_shapes(subset or SHAPES_SIZES[split], size=image_size or 32, split=split, progress=progress)
    data_dir = resolve_data_dir(data_dir)
    opts = dict(skip_corrupt=skip_corrupt, cache=cache, cache_dir=resolve_cache_dir(data_dir), progress=progress)
    if name == "folder":
        root = Path(folder).expanduser()
        data = _load_folder(root, f"folder/{root.resolve().name}", image_size, **opts)
    else:
        kind, where = _locate(name, data_dir, split, download)
        if kind == "folder":
            data = _load_cifar_folder(where, split, image_size, **opts)
        else:
            reader = _read_cifar_batches if name == "cifar10" else _read_stl10
            data = _resized(reader(where, split), image_size)
    return data.subset(subset) if subset is not None else data
