"""Which images a run uses: ``load_dataset`` (the one entry point, by name), the pre-training / labelled / monitor
splits of a config, the class-balanced validation split, and each epoch's shuffle order on the device.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional, Union

import torch

from simclr_lib.data.files import _load_folder
from simclr_lib.data.images import (DATASETS, SHAPES_SIZES, SPLITS, ImageData, PathLike, resize, resolve_cache_dir,
                                    resolve_data_dir)
from simclr_lib.data.releases import _download, _load_cifar_folder, _locate, _read_cifar_batches, _read_stl10, available
from simclr_lib.data.shapes import make_shapes


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
    if name == "folder":  # only the first ``subset`` files are decoded
        root = Path(folder).expanduser()
        data = _load_folder(root, f"folder/{root.resolve().name}", image_size, limit=subset, **opts)
    else:
        kind, where = _locate(name, data_dir, split, download)
        if kind == "folder":
            data = _load_cifar_folder(where, split, image_size, limit=subset, **opts)
        else:
            reader = _read_cifar_batches if name == "cifar10" else _read_stl10
            data = reader(where, split)
            if image_size is not None:
                data = replace(data, images=resize(data.images, (image_size, image_size)))
    if subset is None or (skip_corrupt and len(data) < subset):  # skipped files leave fewer than asked for
        return data
    return data.subset(subset)


# --- what a run uses ---------------------------------------------------------------------------------------------








def epoch_order(n: int, batch_size: int, epoch: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """This process's image indices for every step of one epoch, built on ``device``: no copy per step.

    One process: a permutation drawn on ``device`` by a generator seeded with ``seed + epoch`` (on the CPU it is
    ``DistributedSampler``'s order). Several processes: ``DistributedSampler``'s order (the same on every process,
    each taking every ``world_size``-th image), copied to the device once per epoch. The last partial batch is
    dropped.

    Shape:
        -> (n // batch_size, batch_size // world_size) int64.
    """
    steps, local = n // batch_size, batch_size // world_size
    if world_size == 1:
        dev = torch.device(device)
        g = None if dev.type == "meta" else torch.Generator(device=dev).manual_seed(seed + epoch)  # meta: no RNG
        return torch.randperm(n, generator=g, device=dev)[:steps * local].view(steps, local)
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                                  seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)[:steps * local]  # steps*local, this rank's images
    return order.view(steps, local).to(device)


def find_dataset(data_dir: Optional[PathLike], download: bool = False) -> tuple[str, str]:
    """``("cifar10", "")`` when the data dir holds both its splits (or they can be downloaded), else
    ``("shapes", why)``: the embedded set needs no file, and ``why`` says exactly what is missing.

    Checks file names only: a corrupt image does not switch data sets; it is named when it is decoded.
    """
    ok, why = available("cifar10", data_dir)
    if not ok and download:
        where = resolve_data_dir(data_dir)
        err = _download("cifar10", where, "train") or _download("cifar10", where, "test")
        ok, why = available("cifar10", data_dir)
        why = f"{why}; download failed ({err})" if err and not ok else why
    return ("cifar10", "") if ok else ("shapes", why)
