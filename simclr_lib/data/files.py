"""Image files to uint8 tensors: decoding any PIL mode to RGB, image folders (classes interleaved so the first N
images are class-balanced), and the on-disk decode cache keyed on the files' content (BLAKE2b of names and bytes;
a cache that cannot be written only warns).
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from simclr_lib.data.images import ImageData, resize
from simclr_lib.runtime import atomic_torch_save

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
CACHE_VERSION = 2  # 2: keyed on the files' content (1: names, sizes and mtimes)
_CHUNK = 1024  # files read and decoded per batch (one progress-bar step)
_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)

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
                    images[start + j] = resize(img[None], size)[0]  # (3, H, W)
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
    """The class folders of ``root`` (sorted, hidden ones ignored; a symlink back into ``root`` skipped, warned)."""
    return sorted(d for d in os.listdir(root) if not d.startswith(".") and (root / d).is_dir()
                  and not _aliased(root, d))


def _aliased(root: Path, name: str) -> bool:
    """Whether ``root/name`` is a symlink to ``root`` itself, above it or inside it (``loop -> .``, ``cats2 ->
    cats``): read as a class, it would hold images that are already there (every image twice, for ``loop``)."""
    link = root / name
    if not link.is_symlink():
        return False
    target, base = link.resolve(), root.resolve()
    if not (target == base or base.is_relative_to(target) or target.is_relative_to(base)):
        return False  # a class folder kept elsewhere: a class like any other
    warnings.warn(f"skipping {link} -> {os.readlink(link)}: a symlink to {target}, which is {root} or in it, is "
                  "not a class of its own", stacklevel=2)
    return True


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
                 cache_dir: Path, progress: bool, classes: Optional[list[str]] = None,
                 limit: Optional[int] = None) -> ImageData:
    """Decode an image folder once, then serve it from ``cache_dir`` while its files' content stays unchanged.

    ``classes``: another split's class list, to label this folder's classes by name (see ``_list_folder``).
    ``limit``: only the first ``limit`` files (class-interleaved, so class-balanced) are read and decoded.
    """
    files, labels, classes = _list_folder(root, classes)
    if limit is not None and limit < len(files):
        files, labels = files[:limit], None if labels is None else labels[:limit]
    tag = hashlib.sha1(f"{root.resolve()}|{image_size}|{len(files)}".encode()).hexdigest()[:10]
    path = cache_dir / f"{name.replace('/', '_')}_{image_size or 'native'}px_{tag}.pt"
    hit = _read_cache(path, _signature(root, files, progress)) if cache and path.is_file() else None
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
    return ImageData(hit["images"], label_t, classes, name)
