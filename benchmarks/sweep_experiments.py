"""Notebook 06's experiments at a longer scale (issue 12, item 4): the same settings, seeds and validation split.

Effects that need long training (the temperature optimum, the batch-size gain) cannot show in the quick run's six
epochs; this runs :data:`simclr_lib.teaching.experiments.EFFECTS` at ``SCALES["long"]`` (30 epochs of 10,000 CIFAR-10
training images, the small encoder, two seeds) and writes every run to one JSON file as soon as it finishes, so an
interrupted sweep continues where it stopped. Notebook 06 plots the file beside its own run.

    python benchmarks/sweep_experiments.py --sections temperature "batch size"     # what docs/sweeps holds
    python benchmarks/sweep_experiments.py --scale quick --json /tmp/quick.json    # the notebook's own scale

The test set is never touched: probe (C = 1) and kNN (k = 200) are fitted on 10,000 labelled training images and
scored on the 5,000-image validation split held out of the training images.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from simclr_lib.teaching import experiments as ex


class SavedRuns(dict):
    """Run name -> result, written to the JSON file after every new run."""

    def __init__(self, path: Path, doc: dict):
        super().__init__(doc.get("runs", {}))
        self.path, self.doc = path, doc

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.save()

    def save(self) -> None:
        self.doc["runs"] = dict(self)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, ensure_ascii=False))
        os.replace(tmp, self.path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="long", choices=list(ex.SCALES))
    p.add_argument("--sections", nargs="+", default=list(ex.SECTIONS), choices=list(ex.SECTIONS))
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="results file (default: docs/sweeps/experiments_<scale>.json)")
    p.add_argument("--out", default=None, help="run folders (default: runs/sweep_experiments/<scale>)")
    args = p.parse_args()
    scale = ex.SCALES[args.scale]
    path = Path(args.json or f"docs/sweeps/experiments_{args.scale}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {}
    if doc and doc.get("scale") != asdict(scale):
        raise SystemExit(f"{path} holds a sweep at another scale; pass a new --json or delete it")
    doc.update(scale=asdict(scale), dataset=args.dataset, torch=torch.__version__, date=time.strftime("%Y-%m-%d"),
               machine=f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads",
               command="python " + " ".join(a if " " not in a else repr(a) for a in sys.argv))
    data = ex.load_experiment_data(args.dataset, args.data_dir, scale)
    base = ex.experiment_config(scale, dataset=args.dataset, data_dir=args.data_dir,
                                out_dir=args.out or f"runs/sweep_experiments/{args.scale}")
    runs = SavedRuns(path, doc)
    if "random_init" not in doc:
        doc["random_init"] = ex.random_init(base, data, scale.seeds)
        runs.save()
    print(f"{len(data.pretrain)} pre-training images, {len(data.train)} labelled, {len(data.val)} validation; "
          f"{scale.epochs} epochs, seeds {scale.seeds} -> {path}", flush=True)
    sections = doc.setdefault("sections", {})
    for name in args.sections:
        t0 = time.perf_counter()
        sections[name] = ex.run_settings(base, ex.settings(name, scale), data, scale.seeds, cache=runs)
        runs.save()
        summary = ", ".join(f"{s['setting']} {s['mean']:.1f} ({s['lo']:.1f}-{s['hi']:.1f})"
                            for s in ex.summarize(sections[name], "probe_h"))
        print(f"{name} ({time.perf_counter() - t0:.0f} s): probe on h {summary}", flush=True)


if __name__ == "__main__":
    main()
