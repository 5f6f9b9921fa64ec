"""CPU bf16 autocast vs fp32: accuracy on a validation split carved from the training images, and training speed.

The quickstart's pre-training (``SimCLRConfig.quick()``: the small encoder, the first 10,000 CIFAR-10 training
images, 17 epochs) is run with ``precision="fp32"`` and ``precision="bf16"`` for each seed; each encoder's frozen
h is scored by a linear probe fitted on 15,000 labelled training images and evaluated on a class-balanced,
seeded validation split of 5,000 other training images (``data.validation_split``). The test set is not touched.
Prints one row per run and the median per precision, with the same-run speed ratio.

    python benchmarks/bench_cpu_bf16.py --seeds 0 1 2 --out runs/bench_bf16
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from simclr_lib.config import SimCLRConfig
from simclr_lib.data import load_dataset, validation_split
from simclr_lib.evaluate import features, linear_probe
from simclr_lib.runtime import native_bf16
from simclr_lib.train import pretrain


def run(precision: str, seed: int, probe_train, val, out: Path) -> dict:
    """One quick pre-training at ``precision``; probe top-1 on the validation split and the training speed."""
    cfg = SimCLRConfig.quick(precision=precision, seed=seed, device="cpu", progress=False, tensorboard=False,
                             knn_every=0, out_dir=str(out / f"{precision}-seed{seed}"))
    t0 = time.perf_counter()
    res = pretrain(cfg, overwrite=True)
    seconds = time.perf_counter() - t0
    ftr, fval = features(res.model, probe_train.images), features(res.model, val.images)
    probe = linear_probe(ftr, probe_train.labels, fval, val.labels)
    views_per_s = statistics.median(r["views_per_s"] for r in res.history)
    return dict(precision=precision, seed=seed, val_top1=probe["top1"], final_loss=res.history[-1]["loss"],
                train_seconds=seconds, views_per_s=views_per_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench_bf16")
    args = p.parse_args()
    out = Path(args.out)
    labelled = load_dataset("cifar10", "train", subset=20_000, progress=False)
    probe_train, val = validation_split(labelled, fraction=0.25, seed=0)
    print(f"CPU native bf16: {native_bf16(torch.device('cpu'))}; probe on {len(probe_train)} train images, "
          f"validation split of {len(val)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for seed in args.seeds:
        for precision in ("fp32", "bf16"):
            rows.append(run(precision, seed, probe_train, val, out))
            r = rows[-1]
            print(f"| {precision} | {seed} | {100 * r['val_top1']:.2f} % | {r['final_loss']:.3f} | "
                  f"{r['views_per_s']:.0f} | {r['train_seconds']:.0f} s |", flush=True)
    med = {pr: {k: statistics.median(r[k] for r in rows if r["precision"] == pr)
                for k in ("val_top1", "views_per_s", "train_seconds")} for pr in ("fp32", "bf16")}
    print(f"median val top-1: fp32 {100 * med['fp32']['val_top1']:.2f} %, bf16 {100 * med['bf16']['val_top1']:.2f} %; "
          f"training views/s bf16 / fp32 = {med['bf16']['views_per_s'] / med['fp32']['views_per_s']:.2f}x")
    (out / "results.json").write_text(json.dumps(dict(rows=rows, median=med), indent=2))


if __name__ == "__main__":
    main()
