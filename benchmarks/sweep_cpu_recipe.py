"""The CPU recipe sweep (issue 11, item 3): one change at a time from the quick preset, scored on a validation split.

The 50,000 CIFAR-10 training images are split class by class (``data.validation_split``, 10 %, seed 0) into
45,000 and a 5,000-image validation split. Every run pre-trains on the first ``--subset`` images of the 45,000
(or all of them) for the same number of images seen (``--images``; so the same number of steps at one batch
size) with one change from ``SimCLRConfig.quick()``, then scores its frozen h on the validation split: a linear
probe (C = 1) fitted on the first 10,000 of the 45,000 with their labels, and a cosine kNN (k = 200, T = 0.1)
over the same 10,000. The test set is not touched. Each encoder shape's random-init score is printed beside it.

    python benchmarks/sweep_cpu_recipe.py --out runs/sweep_cpu            # every variant, seed 0
    python benchmarks/sweep_cpu_recipe.py --only base tau0.5 --seeds 1 2  # a subset, other seeds
    python benchmarks/sweep_cpu_recipe.py --out runs/sweep_cpu_long --subset 0 --images 225000 \
        --only crop0.2 tau0.1+crop0.2                                     # 5 epochs of all 45,000

Prints one Markdown row per run (val probe, val kNN, final loss, training seconds, views/s) and writes
``<out>/results.json``; runs already in it are skipped, so an interrupted sweep continues.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import load_dataset, validation_split
from simclr_lib.data.images import ImageData
from simclr_lib.evaluate import features, knn_accuracy, linear_probe
from simclr_lib.train import pretrain

# one change from SimCLRConfig.quick() each (tau 0.2, lr 2.0 at batch 256, LARS, min crop 0.08, grey p 0.2,
# small encoder of width 32 and depth 2); "subset": None trains on all 45,000 non-validation images
VARIANTS: dict[str, dict] = {
    "base": {},
    "tau0.5": dict(temperature=0.5),
    "tau0.1": dict(temperature=0.1),
    "crop0.2": dict(min_scale=0.2),
    "gray0.1": dict(gray_p=0.1),
    "batch512": dict(batch_size=512, lr=2.0 * math.sqrt(2)),  # the paper's square-root rule from lr 2.0 at 256
    "sgd": dict(optimizer="sgd", lr=0.06, weight_decay=5e-4),  # lightly's CIFAR-10 SGD: 0.06 * B/256, wd 5e-4
    "all45k": dict(subset=None),
    "width64": dict(small_width=64),
    "depth3": dict(small_depth=3),
    "tau0.1+crop0.2": dict(temperature=0.1, min_scale=0.2),
    "lr1.2": dict(lr=1.2),  # the paper's square-root rule at batch 256: 0.075 * sqrt(256)
}


def score(model: torch.nn.Module, probe_train: ImageData, val: ImageData) -> tuple[float, float]:
    """(linear-probe top-1, kNN top-1) of the frozen h on the validation split."""
    ftr, fval = features(model, probe_train.images), features(model, val.images)
    probe = linear_probe(ftr, probe_train.labels, fval, val.labels, C=1.0)["top1"]
    return probe, knn_accuracy(ftr, probe_train.labels, fval, val.labels, k=200)


def run(name: str, seed: int, pool: ImageData, probe_train: ImageData, val: ImageData, args) -> dict:
    """Pre-train one variant for ``args.images`` images seen and score it."""
    change = dict(VARIANTS[name])
    subset = change.pop("subset", args.subset or None)  # --subset 0: all 45,000
    data = pool if subset is None else pool.subset(subset)
    epochs = max(1, round(args.images / len(data)))
    cfg = SimCLRConfig.quick(seed=seed, device="cpu", progress=False, tensorboard=False, knn_every=0,
                             epochs=epochs, warmup_epochs=10_000 / len(data), checkpoint_every=epochs,
                             out_dir=str(Path(args.out) / f"{name}-seed{seed}"), **change)
    t0 = time.perf_counter()
    res = pretrain(cfg, data=data, monitor=None, overwrite=True)
    seconds = time.perf_counter() - t0
    probe, knn = score(res.model, probe_train, val)
    return dict(name=name, seed=seed, change=VARIANTS[name], epochs=epochs, images=len(data), val_probe=probe,
                val_knn=knn, final_loss=res.history[-1]["loss"], train_seconds=seconds,
                views_per_s=statistics.median(r["views_per_s"] for r in res.history))


def random_init(name: str, probe_train: ImageData, val: ImageData) -> tuple[float, float]:
    """The same encoder shape at random init (seed 0), scored the same way."""
    torch.manual_seed(0)
    change = {k: v for k, v in VARIANTS[name].items() if k in ("small_width", "small_depth")}
    return score(build_model(SimCLRConfig.quick(device="cpu", **change)), probe_train, val)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/sweep_cpu")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--subset", type=int, default=10_000, help="pre-training images of the subset variants (0: all 45,000)")
    p.add_argument("--images", type=int, default=100_000, help="images seen per run (epochs x images)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset("cifar10", "train", progress=False)
    pool, val = validation_split(train, fraction=0.1, seed=0)
    probe_train = pool.subset(10_000)
    print(f"pool {len(pool)}, validation {len(val)}, probe on {len(probe_train)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    path = out / "results.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    baselines: dict[str, tuple[float, float]] = {}
    for seed in args.seeds:
        for name in args.only:
            shape = tuple(sorted((k, v) for k, v in VARIANTS[name].items() if k in ("small_width", "small_depth")))
            if str(shape) not in baselines:
                baselines[str(shape)] = random_init(name, probe_train, val)
            if any(r["name"] == name and r["seed"] == seed for r in rows):
                continue
            r = run(name, seed, pool, probe_train, val, args)
            r["random_probe"], r["random_knn"] = baselines[str(shape)]
            rows.append(r)
            print(f"| {name} | {seed} | {r['epochs']} x {r['images']} | {100 * r['val_probe']:.2f} % "
                  f"({100 * r['random_probe']:.2f}) | {100 * r['val_knn']:.2f} % ({100 * r['random_knn']:.2f}) | "
                  f"{r['final_loss']:.3f} | {r['train_seconds']:.0f} s | {r['views_per_s']:.0f} |", flush=True)
            path.write_text(json.dumps(dict(rows=rows, torch=torch.__version__), indent=2))


if __name__ == "__main__":
    main()
