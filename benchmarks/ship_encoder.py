"""Ship a finished CPU pre-training run as the committed encoder ``weights/<name>.pt`` (issue 11, item 4).

The run is made with one command (resumable: add ``--resume`` after an interruption)::

    python -m simclr_lib pretrain --preset cpu --out runs/small-cifar10
    python benchmarks/ship_encoder.py --run runs/small-cifar10 --name small-cifar10

This script writes, under ``weights/``: ``<name>.pt`` (encoder + head weights in fp32, config, epoch, step and
the whole training history; no optimiser state), ``<name>.config.json``, ``<name>.metrics.json`` (history,
evaluation, timings, machine) and ``<name>.sha256``; and ``docs/<name>_tsne.png``. The evaluation, for the
trained encoder and the same encoder at random init (seed of the run): a linear probe on the frozen h of all
50,000 training images with C chosen on a class-balanced held-out 20 % of them (``evaluate.select_C``), refitted
on all 50,000 and scored once on the 10,000 test images; a cosine kNN (k = 200, T = 0.1) of the test images
against the 50,000 training images; t-SNE maps of 5,000 test images. Prints the registry entry to paste into
``simclr_lib/pretrained.py``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from simclr_lib import __version__
from simclr_lib.config import build_model
from simclr_lib.data import load_dataset
from simclr_lib.embed import tsne
from simclr_lib.evaluate import features, knn_accuracy, linear_probe
from simclr_lib.runs.checkpoint import load_checkpoint, save_checkpoint
from simclr_lib.runs.registry import file_sha256
from simclr_lib.runs.registry import pretrained as load_model
from simclr_lib.runtime import atomic_write_text
from simclr_lib.teaching.plots import save_figure, scatter_by_class

PROBE_CS = (0.01, 0.1, 1.0)  # chosen on a held-out 20 % of the training labels (as notebook 04)
TSNE_IMAGES = 5000


def evaluate(model: torch.nn.Module, train, test) -> dict:
    """Probe (C on held-out training labels) and kNN of one encoder's frozen h; test features for t-SNE."""
    t0 = time.perf_counter()
    ftr, fte = features(model, train.images), features(model, test.images)
    probe = linear_probe(ftr, train.labels, fte, test.labels, C=PROBE_CS)
    knn = knn_accuracy(ftr, train.labels, fte, test.labels, k=200)
    return dict(probe_top1=probe["top1"], probe_C=probe["C"], probe_C_val_top1=probe["C_val_top1"],
                knn200_top1=knn, seconds=time.perf_counter() - t0), fte


def tsne_figure(trained: torch.Tensor, random: torch.Tensor, test, path: Path) -> Path:
    """Side-by-side t-SNE maps of the first TSNE_IMAGES test images: random init vs trained."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    for ax, f, title in ((axes[0], random, "random init"), (axes[1], trained, "shipped encoder")):
        xy = tsne(f[:TSNE_IMAGES])
        scatter_by_class(xy, test.labels[:TSNE_IMAGES], test.classes, ax=ax, title=f"t-SNE of h: {title}",
                         legend=ax is axes[1])
    return save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/small-cifar10")
    p.add_argument("--name", default="small-cifar10")
    p.add_argument("--weights", default="weights")
    p.add_argument("--command", default="python -m simclr_lib pretrain --preset cpu --out runs/small-cifar10")
    args = p.parse_args()
    ckpt = load_checkpoint(Path(args.run) / "checkpoints" / "last.pt")
    model, cfg, _ = load_model(Path(args.run) / "checkpoints" / "last.pt")
    if ckpt["epoch"] != cfg.epochs:
        raise SystemExit(f"{args.run} has trained {ckpt['epoch']} of {cfg.epochs} epochs; finish it with --resume")
    out = Path(args.weights)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{args.name}.pt"
    save_checkpoint(dict(model=model.state_dict(), config=cfg.to_dict(), epoch=ckpt["epoch"], step=ckpt["step"],
                         history=ckpt["history"], version=ckpt.get("version", __version__)), weights)
    sha = file_sha256(weights)
    train, test = (load_dataset(cfg.dataset, split, cfg.data_dir, progress=False) for split in ("train", "test"))
    trained, fte = evaluate(model, train, test)
    torch.manual_seed(cfg.seed)
    random, fte_random = evaluate(build_model(cfg).eval(), train, test)
    figure = tsne_figure(fte, fte_random, test, Path("docs") / f"{args.name}_tsne.png")
    history = ckpt["history"]
    metrics = dict(name=args.name, sha256=sha, bytes=weights.stat().st_size, command=args.command,
                   date=datetime.date.today().isoformat(), torch=torch.__version__, simclr_lib=__version__,
                   machine=f"{platform.machine()}, {torch.get_num_threads()} threads", epochs=ckpt["epoch"],
                   train_seconds=sum(r["seconds"] for r in history), trained=trained, random_init=random,
                   tsne=str(figure), history=history)
    atomic_write_text(json.dumps(metrics, indent=2), out / f"{args.name}.metrics.json")
    atomic_write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n", out / f"{args.name}.config.json")
    atomic_write_text(f"{sha}  {weights.name}\n", out / f"{args.name}.sha256")
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    print(f'REGISTRY["{args.name}"] = Entry("{weights.as_posix()}", "{sha}", ...)')


if __name__ == "__main__":
    main()
