"""Notebook 03's settings (issue 20, item 2): its loop (``teaching.learner.train_simclr``) for a few minutes per
setting, scored by the kNN monitor on a validation split carved from the training images (never the test set).

The 50,000 CIFAR-10 training images are split class by class (``data.validation_split``, 10 %, seed 0); each run
pre-trains on the first ``--subset`` of the 45,000 others, and its monitor is 2,000 of them (the memory bank)
voting for 2,000 validation images. The number that matters is the gain over epoch 0 (the same encoder at random
init, same monitor), and the minutes it took. ``--pieces learner`` runs the learner's per-image torchvision
augmentation (``augment.reference_transform`` stands in for notebook 01's answer, crops of 8-100 % of the area) instead of the batched one.

    python benchmarks/sweep_learner_loop.py --minutes 4 --grid "tau=0.2" "tau=0.2,width=16" ...

Prints one line per setting: epochs, steps, seconds, kNN at random init -> final, the gain, the load.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from simclr_lib.augment import reference_transform
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import load_dataset, validation_split
from simclr_lib.loss import nt_xent
from simclr_lib.teaching import learner

KEYS = dict(tau="temperature", lr="lr", width="small_width", batch="batch_size", subset="subset",
            scale="min_scale", warmup="warmup_epochs")


def parse(text: str) -> dict:
    """``"tau=0.2,width=16"`` -> config overrides."""
    out = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=")
        out[KEYS[k]] = float(v) if "." in v else int(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--grid", nargs="+", default=[""])
    ap.add_argument("--pieces", choices=("reference", "learner"), default="reference")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    train = load_dataset("cifar10", "train", os.environ.get("SIMCLR_DATA_DIR"), progress=False)
    pool, val = validation_split(train, fraction=0.1, seed=0)
    monitor = (pool.subset(2000), val.subset(2000))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, pieces={args.pieces}, "
          f"{args.minutes} min each")
    for text in args.grid:
        cfg = SimCLRConfig.quick(**dict(dict(epochs=100, subset=10000, seed=args.seed), **parse(text)))
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
        images = pool.subset(cfg.subset).images
        transform = reference_transform(cfg.image_size, cfg.color_strength)  # App. A's crop, as notebook 01 asks
        views = ((lambda b, g: learner.per_image_views(transform, b, 2)) if args.pieces == "learner" else None)
        pieces = learner.collect(cfg, torch.device("cpu"), learner.reference_step, folder=learner.FOLDER / "none")
        if views is not None:
            pieces.make_views = views
        pieces.loss_fn = nt_xent
        t0, load0 = time.perf_counter(), os.getloadavg()[0]
        hist = learner.train_simclr(model, images, pieces, cfg, monitor, args.minutes)
        sec = time.perf_counter() - t0
        a, b = hist[0]["knn_top1"], hist[-1]["knn_top1"]
        print(f"{text or 'quick preset':32s} epochs {len(hist) - 1:3d} steps {hist[-1]['step']:4d} {sec:5.0f} s "
              f"kNN {a:.1%} -> {b:.1%} (+{100 * (b - a):.1f}) load {load0:.2f}->{os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
