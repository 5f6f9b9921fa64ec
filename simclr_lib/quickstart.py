"""The offline quickstart: pre-train, compare with random init by logistic regression, draw a t-SNE.

On a fresh machine with no internet and no GPU: CIFAR-10 if the data dir has it, else the embedded ``shapes``
set; ``SimCLRConfig.quick()`` sized to finish in about 7 minutes on 2 CPU cores (see docs/results.md).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch

from .config import SimCLRConfig
from .data import ImageData, find_dataset, labelled_splits
from .models import build_model
from .runtime import atomic_write_text, resolve_device, seed_everything
from .train import pretrain


def probe(model, train: ImageData, test: ImageData, backend: str = "torch") -> tuple[dict, torch.Tensor]:
    """Linear-probe top-1 of the model's frozen h; returns the result dict and the test features."""
    from .evaluate import features, linear_probe

    ftr, fte = features(model, train.images), features(model, test.images)
    return linear_probe(ftr, train.labels, fte, test.labels, backend=backend), fte


def run_quickstart(out_dir: str = "runs/quickstart", data_dir: Optional[str] = None, device: str = "auto",
                   smoke: bool = False, dataset: Optional[str] = None, epochs: Optional[int] = None,
                   n_probe_train: int = 10000, n_probe_test: int = 10000, progress: bool = True,
                   seed: int = 0, overwrite: bool = False) -> dict:
    """Pre-train, probe trained vs random init, save ``metrics.json`` and ``tsne.png`` under ``out_dir``."""
    from .embed import tsne
    from .plots import save_figure, side_by_side

    t0 = time.perf_counter()
    name, why = (dataset, "") if dataset else find_dataset(data_dir)
    print(f"quickstart: pre-training on {name}" + (f" (CIFAR-10 not usable: {why}; using the embedded shapes set)"
                                                    if why else ""), flush=True)
    preset = SimCLRConfig.smoke if smoke else SimCLRConfig.quick
    overrides = dict(dataset=name, data_dir=data_dir, device=device, out_dir=out_dir, progress=progress, seed=seed)
    if epochs is not None:
        overrides["epochs"] = epochs
    cfg = preset(**overrides)
    if smoke:
        n_probe_train, n_probe_test = 256, 256
    result = pretrain(cfg, overwrite=overwrite)
    dev = resolve_device(device)
    train, test = labelled_splits(cfg, n_probe_train, n_probe_test)
    seed_everything(cfg.seed)
    random_model = build_model(cfg).to(dev)  # the same architecture, never trained
    trained, f_trained = probe(result.model, train, test)
    random, f_random = probe(random_model, train, test)
    n_plot = min(len(test), 1000 if not smoke else 200)
    xy_r, xy_t = tsne(f_random[:n_plot]), tsne(f_trained[:n_plot])
    fig = side_by_side(xy_r, xy_t, test.labels[:n_plot], test.classes,
                       titles=(f"random init: probe {random['top1']:.1%}", f"SimCLR: probe {trained['top1']:.1%}"))
    fig_path = save_figure(fig, Path(out_dir) / "tsne.png")
    metrics = dict(dataset=name, linear_probe_top1=trained["top1"], random_init_probe_top1=random["top1"],
                   gain_points=100 * (trained["top1"] - random["top1"]), knn_top1=result.metrics.get("knn_top1"),
                   pretrain_seconds=result.metrics["total_seconds"], total_seconds=time.perf_counter() - t0,
                   probe_train_images=len(train), probe_test_images=len(test), config=cfg.to_dict(),
                   tsne_figure=str(fig_path), history=result.history)
    atomic_write_text(json.dumps(metrics, indent=2), Path(out_dir) / "metrics.json")
    print(f"quickstart: linear probe {trained['top1']:.1%} (random init {random['top1']:.1%}, "
          f"+{metrics['gain_points']:.1f} points) in {metrics['total_seconds'] / 60:.1f} min; "
          f"figure {fig_path}, metrics {Path(out_dir) / 'metrics.json'}", flush=True)
    return metrics
