"""CIFAR-10 and STL-10 as published (binary releases, unpickled through an allow-list), the CIFAR-10 image-folder
layout, downloads, labelled folders for evaluation, and ``available``: is a data set there (file names only)?
"""
from __future__ import annotations

import os
import pickle
import tarfile
import urllib.parse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from simclr_lib.data.files import IMAGE_EXTENSIONS, _class_dirs, _extra_classes, _load_folder
from simclr_lib.data.images import (CIFAR10_CLASSES, DATASETS, SPLITS, STL10_CLASSES, ImageData, PathLike,
                                    resolve_cache_dir, resolve_data_dir, validation_split)
from simclr_lib.runtime import atomic_write_bytes

# --- CIFAR-10 and STL-10 binary releases (already uint8: no cache needed) -------------------------------------------
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # the release torchvision downloads too
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
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


def _download(dataset: str, data_dir: Path, split: str) -> Optional[str]:
    """Download CIFAR-10 (:func:`_download_cifar10`) or STL-10 (torchvision); None on success, else why in one line."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if dataset == "cifar10":
            _download_cifar10(data_dir)
        else:
            import torchvision.datasets as tvd

            tvd.STL10(str(data_dir), split=split, download=True)
    except Exception as exc:  # no internet, read-only dir, bad checksum: all reported the same way
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def _download_cifar10(data_dir: Path) -> None:
    """``CIFAR10_URL`` (md5-checked against ``CIFAR10_MD5``) unpacked to ``data_dir/cifar-10-batches-py``: only
    the batch files, by name, are written; nothing to do when every batch is there already."""
    from torchvision.datasets.utils import download_url

    binary = data_dir / "cifar-10-batches-py"
    batches = [name for names in CIFAR10_BATCHES.values() for name in names]
    if all((binary / name).is_file() for name in batches):
        return
    archive = data_dir / Path(urllib.parse.urlparse(CIFAR10_URL).path).name
    download_url(CIFAR10_URL, str(data_dir), archive.name, md5=CIFAR10_MD5)
    wanted = {f"{binary.name}/{name}" for name in [*batches, "batches.meta"]}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name in wanted:
                atomic_write_bytes(tar.extractfile(member).read(), binary / Path(member.name).name)
    missing = [name for name in batches if not (binary / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{CIFAR10_URL} holds no {binary.name}/{missing[0]}")
    archive.unlink()


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
        train, test = validation_split(train, holdout, seed, names=("held-out train", "held-out test"))
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
