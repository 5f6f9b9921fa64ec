"""Small-scale versions of the paper's findings: grids of short pre-training runs, each probed on frozen features.

One experiment is :func:`run_grid` over a few settings (batch size x epochs, Fig. 9; temperature, Table 5 / B.9;
colour strength, Table 1; pairs of augmentations, Fig. 5; the projection head, Sec. 4.2 / Fig. 8): every setting
is a short :func:`~simclr_lib.train.pretrain` run on a small subset, then a kNN classifier and a linear probe on
frozen encoder features h (and, if asked, on z = g(h)). Each row records the setting, the accuracies and the
seconds it took, so a notebook can show a table (:func:`simclr_lib.plots.markdown_table`) or a figure
(:func:`simclr_lib.plots.heatmap`, :func:`~simclr_lib.plots.grouped_bars`, :func:`~simclr_lib.plots.line_plot`).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from .augment import SimCLRAugment
from .config import SimCLRConfig
from .data import ImageData, load_dataset, resize
from .evaluate import features, knn_accuracy, linear_probe
from .plots import label as _label  # how a setting is written in run-folder names
from .train import pretrain

Evaluate = Callable[[Any, SimCLRConfig, "ExperimentData"], dict]


@dataclass
class ExperimentData:
    pretrain: ImageData  # images for pre-training (labels unused)
    train: ImageData  # labelled images the probe / kNN classifier is fitted on
    test: ImageData  # labelled images it is scored on


def load_experiment_data(dataset: str, data_dir: Optional[str], n_pretrain: int, n_train: int, n_test: int,
                         image_size: Optional[int] = None) -> ExperimentData:
    """The first ``n_pretrain`` / ``n_train`` train images and the first ``n_test`` test images, at ``image_size``."""
    train = load_dataset(dataset, "train", data_dir, subset=max(n_pretrain, n_train), progress=False)
    test = load_dataset(dataset, "test", data_dir, subset=n_test, progress=False)
    if image_size is not None:  # smaller images for the quick experiments
        train, test = (replace(d, images=resize(d.images, (image_size, image_size)), name=f"{d.name}@{image_size}px")
                       for d in (train, test))
    return ExperimentData(train.subset(n_pretrain), train.subset(n_train), test)


def evaluate_run(model: Any, cfg: SimCLRConfig, data: ExperimentData, spaces: Sequence[str] = ("h",),
                 probe: bool = True, knn_k: int = 20, **probe_kwargs: Any) -> dict:
    """kNN (cosine, k = ``knn_k``) and linear-probe top-1 (in %) on frozen features h or z = g(h) (Sec. 4.2);
    ``probe_kwargs`` go to :func:`~simclr_lib.evaluate.linear_probe` (e.g. ``tol=1e-3`` for a faster fit).

    Shape: returns ``{"knn_h": float, "probe_h": float, ...}`` for each of ``spaces``.
    """
    feats = {space: [features(model, d.images, space) for d in (data.train, data.test)] for space in spaces}
    out = {}
    for space in spaces:
        (tr, te), ytr, yte = feats[space], data.train.labels, data.test.labels
        out[f"knn_{space}"] = 100 * knn_accuracy(tr, ytr, te, yte, k=min(knn_k, len(tr)))
        if probe:
            out[f"probe_{space}"] = 100 * linear_probe(tr, ytr, te, yte, **probe_kwargs)["top1"]
    return out


def run_one(cfg: SimCLRConfig, data: ExperimentData, ops: Optional[Sequence[str]] = None,
            evaluate: Evaluate = evaluate_run) -> dict:
    """One pre-training run (with only ``ops`` if given) and its evaluation; seconds include both."""
    t0 = time.perf_counter()
    res = pretrain(cfg, data=data.pretrain, augment=None if ops is None else SimCLRAugment.from_config(cfg, ops),
                   overwrite=True)  # a grid's run is recomputed, never resumed: it replaces its own folder
    t1 = time.perf_counter()
    scores = evaluate(res.model, cfg, data)
    return dict(loss=res.history[-1]["loss"], steps=res.history[-1]["step"], **scores,
                train_seconds=t1 - t0, seconds=time.perf_counter() - t0)


def run_grid(base_cfg: SimCLRConfig, grid: dict[str, Sequence[Any]], data: ExperimentData,
             evaluate: Evaluate = evaluate_run, progress: bool = True) -> list[dict]:
    """One run per combination of ``grid`` values (config fields, plus ``"ops"`` for the augmentation ops).

    Taught in notebook 06.

    Each run writes to ``<base_cfg.out_dir>/<key=value_...>``. Returns one row per run: the setting, the scores of
    ``evaluate``, the final loss, the optimiser steps and the seconds.
    """
    keys, rows = list(grid), []
    combos = list(itertools.product(*grid.values()))
    for values in tqdm(combos, desc="runs", disable=not progress, leave=False):
        setting = dict(zip(keys, values))
        changes = {k: v for k, v in setting.items() if k != "ops"}
        name = "_".join(f"{k}={_label(v)}" for k, v in setting.items())
        ops = tuple(setting["ops"]) if "ops" in setting else None
        cfg = base_cfg.replace(**changes, out_dir=str(Path(base_cfg.out_dir) / name),
                               extra=dict(base_cfg.extra, **({"ops": list(ops)} if ops is not None else {})))
        rows.append(dict(setting, **run_one(cfg, data, ops, evaluate)))
    return rows


def augmentation_pairs(ops: Sequence[str]) -> list[tuple[str, ...]]:
    """Every single op and every unordered pair of ``ops`` (Fig. 5's diagonal and off-diagonal cells)."""
    return [(op,) for op in ops] + [tuple(p) for p in itertools.combinations(ops, 2)]


def pair_matrix(rows: Sequence[dict], ops: Sequence[str], value: str) -> np.ndarray:
    """Fig. 5's table: cell (i, j) = ``value`` of the run with ops i and j (i == j: op i alone), symmetric, with a
    last column holding each row's mean over its cells. Shape: -> (len(ops), len(ops) + 1)."""
    k = len(ops)
    m = np.full((k, k + 1), np.nan)
    for r in rows:
        idx = [ops.index(op) for op in r["ops"]]
        i, j = (idx[0], idx[0]) if len(idx) == 1 else idx
        m[i, j] = m[j, i] = r[value]
    m[:, k] = np.nanmean(m[:, :k], axis=1)
    return m
