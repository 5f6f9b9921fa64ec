"""Data sets by name as one uint8 tensor ``(N, 3, H, W)`` plus labels: CIFAR-10, STL-10, your folder, ``shapes``.

The whole set lives in memory as uint8 (airbench habit); augmentations then run on the batch. Decoding a JPEG
folder is the slow part, so the decoded tensor is cached on disk (atomically, keyed on a BLAKE2 hash of the files'
names and bytes); a cache that cannot be written only warns.

* ``images``: :class:`ImageData`, the data sets' names, splits and normalisation statistics (``STATS``), where data
  and caches live, the one :func:`resize`, the class-balanced :func:`validation_split`.
* ``files``: image files and folders to uint8, the decode cache.
* ``releases``: CIFAR-10 / STL-10 as published (allow-list unpickling), downloads, labelled folders for
  evaluation, :func:`available` (file names only).
* ``shapes``: the generated ``shapes`` set (the colour-shortcut teaching case, paper Sec. 3, Fig. 6).
* ``select``: :func:`load_dataset`, the one entry point, and what a run uses: :func:`load_pretrain_data`,
  :func:`labelled_splits`, :func:`load_monitor_data`, :func:`epoch_order`, :func:`find_dataset`.
"""
from simclr_lib.data.files import CorruptImageError
from simclr_lib.data.images import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, DATASETS, IMAGENET_MEAN, IMAGENET_STD,
                                    SHAPE_CLASSES, SHAPES_SIZES, SPLITS, STATS, STL10_CLASSES, ImageData,
                                    balanced_indices, resize, resolve_cache_dir, resolve_data_dir, validation_split)
from simclr_lib.data.releases import HOLDOUT_FRACTION, available, folder_eval_splits
from simclr_lib.data.select import epoch_order, find_dataset, load_dataset
from simclr_lib.data.shapes import make_shapes

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "HOLDOUT_FRACTION", "IMAGENET_MEAN",
           "IMAGENET_STD", "SHAPE_CLASSES", "SHAPES_SIZES", "SPLITS", "STATS", "STL10_CLASSES", "CorruptImageError",
           "ImageData", "available", "balanced_indices", "epoch_order", "find_dataset", "folder_eval_splits", 
           "load_dataset", "make_shapes", "resize", "resolve_cache_dir",
           "resolve_data_dir", "validation_split"]
