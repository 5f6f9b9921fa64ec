"""Command line: ``python -m simclr_lib {pretrain,linear-eval,knn,embed,quickstart} --help``.

Invalid values exit with status 2 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import ARCHS, DATASETS, OPTIMIZERS, PRECISIONS, SimCLRConfig

PRETRAIN_FLAGS = {  # flag -> (config field, type, help)
    "--dataset": ("dataset", str, f"one of {', '.join(DATASETS)}"),
    "--data-dir": ("data_dir", str, "data directory (default: $SIMCLR_DATA_DIR, else ./data)"),
    "--folder": ("folder", str, "ImageFolder path for --dataset folder"),
    "--subset": ("subset", int, "use only the first N training images"),
    "--image-size": ("image_size", int, "side of the views (default: the data set's, 32 CIFAR-10, 96 STL-10)"),
    "--arch": ("arch", str, f"encoder: one of {', '.join(ARCHS)}"),
    "--cifar-stem": ("cifar_stem", bool, "3x3 stride-1 stem without max-pool (default: CIFAR-10 yes, STL-10 no)"),
    "--zero-init-residual": ("zero_init_residual", bool, "zero the last BN scale of each residual block"),
    "--proj-last-bn": ("proj_last_bn", bool, "BatchNorm after the head's last layer (SimCLR v1 code)"),
    "--batch-size": ("batch_size", int, "images per step (global, over all processes)"),
    "--epochs": ("epochs", int, "passes over the training images"),
    "--lr": ("lr", float, "peak learning rate (default: from the LR scaling rule)"),
    "--optimizer": ("optimizer", str, f"one of {', '.join(OPTIMIZERS)}"),
    "--temperature": ("temperature", float, "NT-Xent temperature tau > 0"),
    "--weight-decay": ("weight_decay", float, "weight decay"),
    "--warmup-epochs": ("warmup_epochs", float, "linear warm-up epochs"),
    "--n-views": ("n_views", int, "views per image"),
    "--color-strength": ("color_strength", float, "colour-jitter strength s (default: 0.5 CIFAR-10, 1.0 STL-10)"),
    "--blur": ("blur", bool, "Gaussian blur p=0.5 (default: off for CIFAR-10, on for STL-10)"),
    "--min-scale": ("min_scale", float, "smallest crop area fraction (paper: 0.08)"),
    "--precision": ("precision", str, f"one of {', '.join(PRECISIONS)}"),
    "--seed": ("seed", int, "random seed"),
    "--device": ("device", str, "auto, cpu, cuda, cuda:N, mps"),
    "--out": ("out_dir", str, "run directory (config.json, metrics.json, TensorBoard, checkpoints/)"),
    "--checkpoint-every": ("checkpoint_every", int, "epochs between checkpoints"),
    "--knn-every": ("knn_every", int, "epochs between kNN monitor evaluations (0: off)"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m simclr_lib", description="SimCLR, step by step")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    pre = sub.add_parser("pretrain", help="pre-train a SimCLR model")
    for flag, (_, typ, help_) in PRETRAIN_FLAGS.items():
        if typ is bool:  # --blur / --no-blur; unset: the data set's default
            pre.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            pre.add_argument(flag, type=typ, help=help_)
    pre.add_argument("--preset", choices=["default", "smoke", "quick"], default="default",
                     help="start from SimCLRConfig(), .smoke() or .quick(); flags override")
    pre.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    pre.add_argument("--compile", action="store_true", help="torch.compile the model")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    for name, help_ in (("linear-eval", "logistic regression on frozen features"), ("knn", "kNN accuracy"),
                        ("embed", "t-SNE/PCA figure and TensorBoard projector export")):
        e = sub.add_parser(name, help=help_)
        e.add_argument("--checkpoint", required=True, help="a run directory or its checkpoints/last.pt")
        e.add_argument("--data-dir", help="data directory")
        e.add_argument("--device", default="auto")
        e.add_argument("--train-subset", type=int, default=10000, help="labelled train images used")
        e.add_argument("--test-subset", type=int, default=10000, help="test images used")
        e.add_argument("--random-init", action="store_true", help="evaluate the same encoder untrained")
        e.add_argument("--out", help="write the result (JSON, or the figure for embed) here")
        if name == "linear-eval":
            e.add_argument("--backend", choices=["torch", "sklearn", "both"], default="torch")
        if name == "knn":
            e.add_argument("--k", type=int, default=200)
        if name == "embed":
            e.add_argument("--method", choices=["tsne", "pca"], default="tsne")
            e.add_argument("--projector", help="also export a TensorBoard projector log to this directory")
    q = sub.add_parser("quickstart", help="offline pre-train + probe vs random init + t-SNE (~7 min on 2 CPU cores)")
    q.add_argument("--out", default="runs/quickstart")
    q.add_argument("--data-dir")
    q.add_argument("--device", default="auto")
    q.add_argument("--dataset", choices=["cifar10", "shapes"], help="default: cifar10 if found, else shapes")
    q.add_argument("--epochs", type=int, help="override the quick preset's epochs")
    q.add_argument("--seed", type=int, default=0, help="seed of the pre-training and of the random-init baseline")
    q.add_argument("--smoke", action="store_true", help="seconds-long version (tests)")
    return p


def _pretrain(args) -> dict:
    from .train import pretrain

    preset = {"default": SimCLRConfig, "smoke": SimCLRConfig.smoke, "quick": SimCLRConfig.quick}[args.preset]
    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in PRETRAIN_FLAGS.items()
                 if getattr(args, flag[2:].replace("-", "_")) is not None}
    overrides.update(compile=args.compile or None, progress=False if args.no_progress else None)
    cfg = preset(**{k: v for k, v in overrides.items() if v is not None})
    return pretrain(cfg, resume=args.resume).metrics


def _features(args):
    """Encoder (trained or random init), labelled train/test features, the run's config."""
    import torch

    from .checkpoint import load_pretrained
    from .evaluate import extract_features
    from .models import build_model
    from .runtime import resolve_device
    from .train import labelled_splits, normalization

    path = Path(args.checkpoint)
    path = path / "checkpoints" / "last.pt" if path.is_dir() else path
    device = resolve_device(args.device)
    model, cfg = load_pretrained(path, map_location=device)
    if args.data_dir:
        cfg = cfg.replace(data_dir=args.data_dir)
    if args.random_init:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg).to(device)
    train, test = labelled_splits(cfg.replace(progress=False), args.train_subset, args.test_subset)
    mean, std = normalization(cfg.dataset)
    ftr, fte = (extract_features(model.encoder, d.images, mean, std, device=device) for d in (train, test))
    return ftr, train, fte, test


def _write(result: dict, out: Optional[str]) -> dict:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result


def _linear_eval(args) -> dict:
    from .evaluate import linear_probe

    ftr, train, fte, test = _features(args)
    backends = ["torch", "sklearn"] if args.backend == "both" else [args.backend]
    return _write({b: linear_probe(ftr, train.labels, fte, test.labels, backend=b) for b in backends}, args.out)


def _knn(args) -> dict:
    from .evaluate import knn_accuracy

    ftr, train, fte, test = _features(args)
    return _write(dict(knn_top1=knn_accuracy(ftr, train.labels, fte, test.labels, k=args.k), k=args.k), args.out)


def _embed(args) -> dict:
    from .embed import export_projector, pca, save_figure, scatter_by_class, tsne

    _, _, fte, test = _features(args)
    xy = tsne(fte) if args.method == "tsne" else pca(fte)
    fig = scatter_by_class(xy, test.labels, test.classes, title=f"{args.method} of {len(test)} test embeddings")
    result = dict(figure=str(save_figure(fig, args.out or f"{args.method}.png")))
    if args.projector:
        result["projector"] = str(export_projector(args.projector, fte, test.labels, test.classes, test.images))
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "quickstart":
            from .quickstart import run_quickstart

            run_quickstart(args.out, args.data_dir, args.device, smoke=args.smoke, dataset=args.dataset,
                           epochs=args.epochs, seed=args.seed)
            return 0
        run = {"pretrain": _pretrain, "linear-eval": _linear_eval, "knn": _knn, "embed": _embed}[args.command]
        result = run(args)
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 prints
            print(json.dumps(result, indent=2, default=str))
        return 0
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        print(f"python -m simclr_lib {args.command}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
