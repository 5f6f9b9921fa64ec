"""Command line: ``python -m simclr_lib {pretrain,linear-eval,knn,embed,quickstart} --help``.

Invalid values exit with status 2 and one line on stderr, never a traceback; Ctrl-C and SIGTERM end in one line
that says what was kept and what to do next (:mod:`.interrupts`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Optional, Sequence

from simclr_lib.cli.interrupts import interrupted, sigterm_as_interrupt
from simclr_lib.config import CHOICES, SimCLRConfig, field_comments
from simclr_lib.runs.lock import holds_run

CLI_EXCLUDED = ("extra",)  # SimCLRConfig fields without a flag (free-form notes: set them in Python)
FLAG_NAMES = {"out_dir": "--out"}  # flags not spelt like their field


def _pretrain_flags() -> dict[str, tuple[str, type, str]]:
    """flag -> (config field, type, help) for every ``SimCLRConfig`` field but ``CLI_EXCLUDED``.

    The flag is the field's name with ``-`` for ``_`` (or ``FLAG_NAMES``'), the type its annotation's
    (``Optional[...]`` unwrapped), the help its trailing comment in config.py.
    """
    hints, comments, flags = typing.get_type_hints(SimCLRConfig), field_comments(), {}
    for f in dataclasses.fields(SimCLRConfig):
        if f.name in CLI_EXCLUDED:
            continue
        typ = hints[f.name]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if typing.get_origin(typ) in (typing.Union, types.UnionType) and len(args) == 1:
            typ = args[0]
        if typ not in (bool, int, float, str):
            raise TypeError(f"SimCLRConfig.{f.name}: {typ} has no command-line form; add it to CLI_EXCLUDED")
        flags[FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))] = (f.name, typ, comments.get(f.name, ""))
    return flags


PRETRAIN_FLAGS = _pretrain_flags()  # flag -> (config field, type, help)
PRESETS = {"default": SimCLRConfig, "smoke": SimCLRConfig.smoke, "quick": SimCLRConfig.quick, "cpu": SimCLRConfig.cpu}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default: argparse's, or for pretrain's flags (whose parser default is None:
    unset) the ``SimCLRConfig()`` default kept on the action as ``shown_default``. None and False are not shown."""

    def _get_help_string(self, action: argparse.Action) -> str:
        """The help of ``action`` with ``(default: ...)`` appended where there is one to show."""
        text = action.help or ""
        default = getattr(action, "shown_default", action.default)
        if not action.option_strings or default is None or default is False or default is argparse.SUPPRESS:
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _config_defaults() -> dict[str, object]:
    """Each ``SimCLRConfig`` field's default (None where it has none or follows the data set)."""
    return {f.name: None if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(SimCLRConfig)}


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    """``pretrain``: one flag per ``SimCLRConfig`` field (help: its comment in config.py), preset, resume, overwrite."""
    pre = sub.add_parser("pretrain", help="pre-train a SimCLR model", formatter_class=_HelpFormatter)
    defaults = _config_defaults()
    for flag, (field, typ, help_) in PRETRAIN_FLAGS.items():  # unset (None): the preset's / data set's default
        help_ = help_.replace("%", "%%")
        if typ is bool:  # --blur / --no-blur
            action = pre.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:  # a value outside CHOICES is refused by SimCLRConfig.validate, naming the allowed ones
            choices = CHOICES.get(field)
            action = pre.add_argument(flag, type=typ, help=help_,
                                      metavar="{%s}" % ",".join(choices) if choices else None)
        action.shown_default = defaults[field]  # type: ignore[attr-defined]  (read by _HelpFormatter)
    pre.add_argument("--preset", choices=list(PRESETS), default="default",
                     help="start from SimCLRConfig(), .smoke(), .quick() or .cpu() (the shipped encoder's "
                          "1.5-hour CPU run); flags override")
    pre.add_argument("--resume", action="store_true",
                     help="continue the run in --out with its own settings (config.json); only --epochs (to extend "
                          "it), --device and output options may be given")
    pre.add_argument("--overwrite", action="store_true", help="replace the run already in --out (only the files a "
                     "run writes are removed; anything else there stays)")


def _add_eval(sub: argparse._SubParsersAction, name: str, help_: str) -> None:
    """``linear-eval``, ``knn``, ``embed``: a checkpoint, the labelled data, and the command's own options."""
    e = sub.add_parser(name, help=help_, formatter_class=_HelpFormatter)
    e.add_argument("--checkpoint", required=True, help="a run directory or its checkpoints/last.pt")
    e.add_argument("--data-dir", help="data directory (default: $SIMCLR_DATA_DIR, else ./data)")
    e.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (CUDA, then MPS, then CPU)")
    e.add_argument("--train-subset", type=int, default=10000, help="labelled train images used")
    e.add_argument("--test-subset", type=int, default=10000, help="test images used")
    e.add_argument("--random-init", action="store_true", help="evaluate the same encoder untrained")
    e.add_argument("--out", help="write the result (JSON, or the figure for embed) here")
    e.add_argument("--folder", help="labelled train images <dir>/<class>/<image> (default: a folder run's own "
                                    "folder); without --test-folder a class-balanced 20%% is held out as test")
    e.add_argument("--test-folder", help="labelled test images <dir>/<class>/<image>, classes matched by name "
                                         "to --folder's")
    e.add_argument("--download", action="store_true", help="download a missing CIFAR-10 / STL-10")
    e.add_argument("--skip-corrupt", action="store_true", help="skip images that cannot be decoded")
    if name == "linear-eval":
        e.add_argument("--backend", choices=["torch", "sklearn", "both"], default="torch",
                       help="logistic regression by torch L-BFGS, by scikit-learn, or both")
    if name == "knn":
        e.add_argument("--k", type=int, default=200,
                       help="neighbours that vote (cosine similarity, votes weighted by exp(sim / 0.1))")
    if name == "embed":
        e.add_argument("--method", choices=["tsne", "pca"], default="tsne", help="2-D map of the test features")
        e.add_argument("--projector", help="also export a TensorBoard projector log to this directory")


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    """``quickstart``: pre-train, probe against random init and t-SNE, within a time budget."""
    q = sub.add_parser("quickstart", help="offline pre-train + probe vs random init + t-SNE, within --minutes (10)",
                       formatter_class=_HelpFormatter)
    q.add_argument("--out", default="runs/quickstart", help="the run folder (checkpoint, metrics.json, tsne.png)")
    q.add_argument("--data-dir", help="where CIFAR-10 is looked for (default: $SIMCLR_DATA_DIR, else ./data)")
    q.add_argument("--device", default="auto", help="cpu, cuda, mps, or auto (CUDA, then MPS, then CPU)")
    q.add_argument("--download", action="store_true", help="download CIFAR-10 (170 MB) into --data-dir when it is "
                   "not there (needs internet; without it the quickstart studies the embedded shapes set)")
    q.add_argument("--dataset", choices=["cifar10", "shapes"], help="default: cifar10 if found, else shapes")
    q.add_argument("--minutes", type=float, help="time budget of the whole run: steps planned from the measured step time, "
                   "re-planned as it trains; the LR cosine ends with the time (default 10; --smoke: none)")
    q.add_argument("--epochs", type=int, help="train exactly this many epochs, with no time budget")
    q.add_argument("--seed", type=int, default=0, help="seed of the pre-training and of the random-init baseline")
    q.add_argument("--smoke", action="store_true", help="seconds-long version (tests)")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier quickstart run in --out")


def _parser() -> argparse.ArgumentParser:
    """The command line: pretrain, linear-eval, knn, embed, quickstart; each with --debug and every default shown."""
    p = _Parser(prog="python -m simclr_lib", description="SimCLR, step by step", formatter_class=_HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_pretrain(sub)
    for name, help_ in (("linear-eval", "logistic regression on frozen features"), ("knn", "kNN accuracy"),
                        ("embed", "t-SNE/PCA figure and TensorBoard projector export")):
        _add_eval(sub, name, help_)
    _add_quickstart(sub)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="show the traceback of an error (or SIMCLR_DEBUG=1)")
    return p


def _given(args) -> dict:
    """The config fields set by flags on the command line (unset flags are None)."""
    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in PRETRAIN_FLAGS.items()}
    return {k: v for k, v in given.items() if v is not None}


def _read_config(path: Path) -> dict:
    """A run's config.json as a dict; a file that is not one is a one-line error naming it."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # not JSON, not UTF-8, unreadable
        why = e.strerror if isinstance(e, OSError) else f"not valid JSON: {_one_line(e)}"
        raise ValueError(f"cannot read the run's settings from {path} ({why}); restore it, or delete it to resume "
                         "with the settings its checkpoint holds") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} holds a JSON {type(saved).__name__}, not a run's settings; restore it, or delete "
                         "it to resume with the settings its checkpoint holds")
    return {k: v for k, v in saved.items() if k not in ("version", "changes")}


def run_config(out: Path) -> SimCLRConfig:
    """The settings of the run in ``out``: its config.json, else its checkpoint's config (errors name the file)."""
    from simclr_lib.runs.checkpoint import load_checkpoint

    path, ckpt = out / "config.json", out / "checkpoints" / "last.pt"
    if path.is_file():
        saved = _read_config(path)
    elif ckpt.is_file():
        path, saved = ckpt, load_checkpoint(ckpt)["config"]
    else:
        raise FileNotFoundError(f"no run to resume in {out} (no config.json, no checkpoints/last.pt); "
                                "start it without --resume")
    try:
        return SimCLRConfig.from_dict(saved)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {_one_line(e)}") from None


def _resume_config(args, given: dict) -> SimCLRConfig:
    """The run's own config; flags may only change what ``RESUME_MAY_CHANGE`` allows (one line otherwise)."""
    from simclr_lib.train import RESUME_MAY_CHANGE

    if args.preset != "default":
        raise ValueError("--preset cannot be combined with --resume: a resumed run keeps its own settings")
    base = run_config(Path(given.get("out_dir", SimCLRConfig.out_dir)))
    fields = {field: flag for flag, (field, _, _) in PRETRAIN_FLAGS.items()}
    for field, value in given.items():
        if field not in RESUME_MAY_CHANGE and value != getattr(base, field):
            raise ValueError(f"{fields.get(field, field)} cannot change when resuming (the run has {field}="
                             f"{getattr(base, field)!r}): drop it, or start a new run with another --out")
    return base.replace(**given)


def _pretrain(args: argparse.Namespace) -> dict:
    """Pre-train (or ``--resume``) as the flags say; says where the run was written."""
    from simclr_lib.train import pretrain

    given, resume = _given(args), args.resume
    if resume:
        cfg = _resume_config(args, given)
        resume = holds_run(cfg.out_dir) is not None
        if not resume and os.environ.get("RANK", "0") == "0":
            print(f"note: the run in {cfg.out_dir} never wrote a checkpoint (it was stopped in its first epoch), so "
                  "there is nothing to resume: starting it afresh with its own settings", file=sys.stderr)
    else:
        preset = PRESETS[args.preset]
        if args.preset != "default" and given.get("dataset") == "folder":
            given.setdefault("subset", None)  # the preset's image count is for CIFAR-10; a folder uses all of its own
        cfg = preset(**given)
    args.out_dir = cfg.out_dir  # for the line an interrupt ends with
    metrics = pretrain(cfg, resume=resume, overwrite=args.overwrite).metrics
    if os.environ.get("RANK", "0") == "0":
        out = Path(cfg.out_dir)
        print(f"run written to {out}: config.json, metrics.json, checkpoints/last.pt"
              + (f", TensorBoard events (tensorboard --logdir {out})" if cfg.tensorboard else ""), file=sys.stderr)
    return metrics


def _check_output_file(path: Optional[str], flag: str, *, directory: bool = False) -> None:
    """Refuse, before any computation, an output ``path`` that cannot be written, in one line naming ``flag``:
    an existing directory (with ``directory``: an existing non-directory), a path below a file, a read-only folder."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.exists() and p.is_dir() != directory:
        raise ValueError(f"{flag} {path} is {'not a directory' if directory else 'a directory'}; "
                         f"pass a {'folder' if directory else 'file'} path")
    parent = p if p.is_dir() else p.parent
    while not parent.exists() and parent != parent.parent:  # the folders to be created: check the first that exists
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path} is below {parent}, which is a file, not a folder; pick another path")
    if not (os.access(parent, os.W_OK) and parent.stat().st_mode & 0o222):
        raise ValueError(f"{flag} {path} cannot be written: the folder {parent} is read-only; pick another path")


def _eval_data(args, cfg: SimCLRConfig):
    """Labelled (train, test) images and notes for the result: with --folder / --test-folder, or for a folder run
    (its own folder), image folders, a held-out split when there is no test folder; else the run's data set."""
    from simclr_lib.config import labelled_splits
    from simclr_lib.data import folder_eval_splits

    folder = args.folder or (cfg.folder if cfg.dataset == "folder" else None)
    if folder is None and args.test_folder is None:
        return (*labelled_splits(cfg, args.train_subset, args.test_subset), {})
    if folder is None:
        raise ValueError(f"--test-folder needs --folder, the labelled train images <dir>/<class>/<image> "
                         f"(the run was pre-trained on {cfg.dataset})")
    train, test, held = folder_eval_splits(folder, args.test_folder, data_dir=cfg.data_dir, seed=cfg.seed,
                                           image_size=cfg.image_size, skip_corrupt=cfg.skip_corrupt, progress=False)
    if held is not None:
        print(f"note: no --test-folder: testing on a class-balanced held-out {held['fraction']:.0%} of {folder} "
              f"(seed {held['seed']}; {held['train_images']} train / {held['test_images']} test images), "
              f"not on the training images", file=sys.stderr)
    notes = {"held_out_split": held} if held is not None else {}
    return train.subset(min(len(train), args.train_subset)), test.subset(min(len(test), args.test_subset)), notes


def _features(args):
    """Encoder (trained or random init) features of the labelled train/test images, and notes for the result."""

    from simclr_lib.evaluate import features, random_init_model
    from simclr_lib.runs.registry import pretrained
    from simclr_lib.runtime import resolve_device

    device = resolve_device(args.device)
    model, cfg, _ = pretrained(args.checkpoint, map_location=device, progress=False)
    cfg = cfg.replace(progress=False, download=cfg.download or args.download,
                      skip_corrupt=cfg.skip_corrupt or args.skip_corrupt)
    if args.data_dir:
        cfg = cfg.replace(data_dir=args.data_dir)
    if args.random_init:
        model = random_init_model(cfg, device=device)
    train, test, notes = _eval_data(args, cfg)
    ftr, fte = (features(model, d.images) for d in (train, test))
    return ftr, train, fte, test, notes


def _write(result: dict, out: Optional[str]) -> None:
    """Write ``result`` as JSON to ``out`` (if given) atomically: a crash never leaves half a file. Called after
    the result was printed, so a failure (a full disk) loses nothing: one line says so."""
    if not out:
        return
    from simclr_lib.runtime import atomic_write_text

    try:
        atomic_write_text(json.dumps(result, indent=2, default=str), Path(out).expanduser())
    except OSError as e:
        raise ValueError(f"could not write --out {out} ({e.strerror or _one_line(e)}); the result is printed "
                         "above") from None


def _linear_eval(args) -> dict:
    """Logistic-regression probe on frozen features (``--backend torch``, ``sklearn`` or ``both``)."""
    from simclr_lib.evaluate import linear_probe

    _check_output_file(args.out, "--out")
    ftr, train, fte, test, notes = _features(args)
    backends = ["torch", "sklearn"] if args.backend == "both" else [args.backend]
    result = {b: linear_probe(ftr, train.labels, fte, test.labels, backend=b) for b in backends}
    return {**result, **notes}  # printed, then written to --out by main


def _knn(args) -> dict:
    """kNN top-1 accuracy of the test features against the train features."""
    from simclr_lib.evaluate import knn_accuracy

    _check_output_file(args.out, "--out")
    ftr, train, fte, test, notes = _features(args)
    return dict(knn_top1=knn_accuracy(ftr, train.labels, fte, test.labels, k=args.k), k=args.k, **notes)


def _embed(args) -> dict:
    """t-SNE / PCA figure of the test features, and optionally a TensorBoard projector log."""
    from simclr_lib.embed import export_projector, pca, tsne
    from simclr_lib.teaching.plots import figure_format, save_figure, scatter_by_class

    out = args.out or f"{args.method}.png"
    _check_output_file(out, "--out")
    if figure_format(out) is None:
        raise ValueError(f"--out {out}: matplotlib cannot write {Path(out).suffix} figures; use .png, .pdf or .svg")
    _check_output_file(args.projector, "--projector", directory=True)
    _, _, fte, test, notes = _features(args)
    xy = tsne(fte) if args.method == "tsne" else pca(fte)
    fig = scatter_by_class(xy, test.labels, test.classes, title=f"{args.method} of {len(test)} test embeddings")
    result = dict(figure=str(save_figure(fig, out)), **notes)
    if args.projector:
        result["projector"] = str(export_projector(args.projector, fte, test.labels, test.classes, test.images))
    return result


def _one_line(e: BaseException) -> str:
    """An exception as one line: its message's first line; the type too where the message alone is unclear."""
    lines = str(e).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    if isinstance(e, (ValueError, FileNotFoundError, FloatingPointError, OSError)):
        return text
    return f"{type(e).__name__}: {text} (run again with --debug or SIMCLR_DEBUG=1 for the traceback)"


def _debug(args: argparse.Namespace) -> bool:
    """--debug, else ``SIMCLR_DEBUG`` read as yes/no (1/yes/true/on, 0/no/false/off; else a one-line error)."""
    from simclr_lib.teaching.notebook import env_flag

    return bool(getattr(args, "debug", False) or env_flag("SIMCLR_DEBUG", "to show the traceback of an error",
                                                          "(or leave it unset) for one line"))


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; print its result (JSON) before writing it to --out."""
    if args.command == "quickstart":
        from simclr_lib.cli.quickstart import run_quickstart

        run_quickstart(args.out, args.data_dir, args.device, smoke=args.smoke, dataset=args.dataset,
                       epochs=args.epochs, seed=args.seed, overwrite=args.overwrite, minutes=args.minutes,
                       download=args.download)
        return 0
    run = {"pretrain": _pretrain, "linear-eval": _linear_eval, "knn": _knn, "embed": _embed}[args.command]
    result = run(args)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 prints
        print(json.dumps(result, indent=2, default=str), flush=True)
    if args.command in ("linear-eval", "knn"):
        _write(result, args.out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; every failure ends in one line on stderr and exit 2 (a traceback only with --debug);
    Ctrl-C and SIGTERM end in one line that says what was kept (exit 130 and 143)."""
    args = _parser().parse_args(argv)
    debug = False
    try:
        with sigterm_as_interrupt():
            debug = _debug(args)
            return _run(args)
    except KeyboardInterrupt as e:
        return interrupted(args, e)
    except Exception as e:  # noqa: BLE001 - the CLI's promise: one line, exit 2
        if debug:
            raise
        print(f"python -m simclr_lib {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
