"""Checkpoints: written atomically, loaded with ``weights_only=True``, enough state to resume bit-exactly.

A checkpoint is a plain dict of tensors and Python primitives::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "rng": {"torch": ByteTensor, "cuda": [...], "augment": ByteTensor, "ranks": [one such dict per process]},
     "epoch": int, "step": int,
     "config": dict, "history": [dict, ...], "version": str}
"""
from __future__ import annotations

import errno
import json
import sys
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
import torch.distributed as dist

from simclr_lib import __version__
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.distributed import is_distributed
from simclr_lib.runs.state import Run
from simclr_lib.runtime import atomic_torch_save, atomic_write_text

# A resumed run keeps its own settings; only these may differ from the checkpoint's config (epochs only upwards:
# the cosine is re-planned over the longer run). Everything else must match.
RESUME_MAY_CHANGE = ("epochs", "out_dir", "device", "progress", "tensorboard", "checkpoint_every", "knn_every",
                     "knn_k", "knn_subset", "download", "skip_corrupt", "compile", "extra")
RESUME_MUST_MATCH = tuple(f.name for f in fields(SimCLRConfig) if f.name not in RESUME_MAY_CHANGE)
RECORDED_CHANGES = ("epochs", "checkpoint_every", "knn_every")  # written to config.json when a resume changes them
CHECKPOINT_KEYS = ("model", "config", "epoch", "step")  # what every simclr_lib checkpoint holds
NORMALIZE_BUFFERS = ("normalize.mean", "normalize.std")  # absent from checkpoints older than 0.2


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename): an interrupted write loses nothing.

    torch reports an exception raised by the file's write as ``[enforce fail at inline_container.cc] unexpected
    pos``, the real one as its context: Ctrl-C (or SIGTERM) there is raised again as the interrupt it was, a full
    disk is one clear error that names the checkpoint that was kept, any other cause is said as itself.
    """
    path = Path(path)
    try:
        return atomic_torch_save(state, path)
    except (OSError, RuntimeError) as e:
        cause = _write_cause(e)
        if not isinstance(cause, Exception):  # KeyboardInterrupt, SystemExit: the run was stopped, not the disk
            raise cause from None
        kept = f"the previous checkpoint {path} is intact" if path.is_file() else "no checkpoint was written"
        if _no_space(e):
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}: {kept}; free some "
                                        "space, then continue with --resume") from None
        if isinstance(cause, OSError) and cause is not e:
            raise OSError(cause.errno, f"could not write {path} ({cause.strerror or cause}): {kept}") from None
        raise


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and the exceptions it was raised while handling, innermost last (at most 10)."""
    chain = [e]
    while len(chain) < 10 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


def _write_cause(e: BaseException) -> BaseException:
    """What made a write fail: an interrupt anywhere in the chain, else the innermost exception."""
    chain = _chain(e)
    return next((c for c in chain if not isinstance(c, Exception)), chain[-1])


def _no_space(e: BaseException) -> bool:
    """A full disk: ENOSPC anywhere in the chain, or torch's short-write report with nothing behind it."""
    chain = _chain(e)
    if any((isinstance(c, OSError) and c.errno == errno.ENOSPC) or "No space left" in str(c) for c in chain):
        return True
    return len(chain) == 1 and ("unexpected pos" in str(e) or "file write failed" in str(e))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing, unreadable or foreign file is a one-line error.

    Files holding Python objects (a pickled model, an optimiser object) are refused, never unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (python -m simclr_lib pretrain --out DIR)")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle protocol before refusing the file
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holds objects a weights-only load refuses
        why = ("it holds Python objects that a safe (weights-only) load refuses"
               if "Weights only load failed" in str(e) else f"{type(e).__name__}: {_first_line(e)}")
        raise ValueError(f"{path} is not a readable simclr_lib checkpoint ({why}); point to a run directory or "
                         "its checkpoints/last.pt") from None
    if not isinstance(ckpt, dict) or not set(CHECKPOINT_KEYS) <= set(ckpt):
        what = f"a dict with keys {sorted(map(str, ckpt))[:3]}..." if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a simclr_lib checkpoint (it holds {what}, not the keys "
                         f"{', '.join(CHECKPOINT_KEYS)}); point to a run directory or its checkpoints/last.pt")
    check_finite(ckpt, path)
    return ckpt


def _float_tensors(obj: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Every floating-point tensor in nested dicts / lists, with its dotted name."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield name, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _float_tensors(v, f"{name}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _float_tensors(v, f"{name}.{i}")


def check_finite(ckpt: dict[str, Any], path: Union[str, Path]) -> None:
    """Refuse, in one line naming ``path``, a checkpoint whose weights or optimiser state hold NaN or inf: it would
    evaluate to chance and resume into NaN, silently."""
    bad = [n for part in ("model", "optimizer") for n, t in _float_tensors(ckpt.get(part), part)
           if not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{path} is damaged: {len(bad)} of its tensors hold NaN or infinite values (e.g. "
                         f"{bad[0]}), so it can be neither evaluated nor resumed; train again (--overwrite) or use "
                         "another checkpoint")


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Union[str, Path] = "") -> None:
    """``model.load_state_dict(state)``, with a one-line error that says what does not fit.

    Checkpoints written before encoders normalised their own input lack the ``normalize`` buffers; those keep the
    values the model was built with (its data set's statistics, ``data.STATS``), which are the ones used then.
    """
    missing = set(model.state_dict()) - set(state)
    if missing and all(k.endswith(NORMALIZE_BUFFERS) for k in missing):
        state = dict(state, **{k: model.state_dict()[k] for k in missing})
    try:
        model.load_state_dict(state)
    except RuntimeError:
        own = model.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"shape of {shapes[0]}: {tuple(state[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)}"
                 if shapes else ""]
        detail = "; ".join(p for p in parts if p)
        raise ValueError(f"the weights in {path} do not fit the model its config describes: {detail}; it was "
                         "made by another architecture or version") from None


def rng_state(augment_generator: Optional[torch.Generator]) -> dict[str, Any]:
    """Every random-number state this process's training loop draws from (CPU byte tensors)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def gather_rng_states(augment_generator: Optional[torch.Generator]) -> list[dict[str, Any]]:
    """``rng_state`` of every process, in rank order (a collective under torchrun; one entry otherwise)."""
    import torch.distributed as dist

    from simclr_lib.distributed import is_distributed, world

    state = rng_state(augment_generator)
    if not is_distributed():
        return [state]
    states: list[Any] = [None] * world()[1]
    dist.all_gather_object(states, state)
    return [{k: _to_cpu(v) for k, v in s.items()} for s in states]


def rng_state_of_rank(saved: dict[str, Any], rank: int, world_size: int, path: Union[str, Path] = "") -> dict:
    """This process's states from a checkpoint's ``rng`` entry (``ranks`` holds one per process).

    A run saved by W processes resumes with W processes: each must continue its own augmentation stream.
    """
    ranks = saved.get("ranks", [saved])
    if len(ranks) != world_size:
        raise ValueError(f"cannot resume from {path}: it was written by {len(ranks)} process(es) but "
                         f"{world_size} run now; resume with --nproc_per_node {len(ranks)}")
    return ranks[rank]


def _to_cpu(value: Any) -> Any:
    """RNG states must be CPU byte tensors: ``map_location`` or a gather may have put them elsewhere."""
    if isinstance(value, torch.Tensor):
        return value.to("cpu", torch.uint8)
    if isinstance(value, (list, tuple)):
        return [_to_cpu(v) for v in value]
    return value


def set_rng_state(state: dict[str, Any], augment_generator: Optional[torch.Generator]) -> None:
    """Restore what :func:`rng_state` saved (the states are moved to the CPU first, as torch requires)."""
    torch.set_rng_state(_to_cpu(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(_to_cpu(state["cuda"]))
    if augment_generator is not None and "augment" in state:
        augment_generator.set_state(_to_cpu(state["augment"]))


def model_from_checkpoint(ckpt: dict, path: Union[str, Path], map_location: Union[str, torch.device] = "cpu"):
    """The model of a checkpoint dict already read from ``path`` (named in errors), rebuilt from its config.

    Returns:
        (model, config) — the model on ``map_location``, in eval mode, and the run's ``SimCLRConfig``.
    """
    cfg = SimCLRConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    load_weights(model, ckpt["model"], path)
    return model.to(map_location).eval(), cfg


# --- a run's checkpoint: save every process's state, resume the run as it was --------------------------------------
def _check_resume(ckpt: dict, cfg: SimCLRConfig, path: Path) -> None:
    """The run continues as it was: every setting but ``RESUME_MAY_CHANGE`` must equal the checkpoint's."""
    saved = SimCLRConfig.from_dict(ckpt["config"]).to_dict()  # fields added since then take their defaults
    now = cfg.to_dict()
    diff = [k for k in RESUME_MUST_MATCH if saved[k] != now[k]]
    if diff:
        k = diff[0]
        raise ValueError(f"cannot resume from {path}: {k}={saved[k]!r} there but {now[k]!r} now; a resumed run "
                         f"keeps its own settings (only {', '.join(RESUME_MAY_CHANGE[:-1])} may change): drop that "
                         "setting, or start a new run with another --out")
    if cfg.epochs < ckpt["epoch"]:
        raise ValueError(f"cannot resume from {path} with epochs={cfg.epochs}: it has already trained "
                         f"{ckpt['epoch']} epochs; give --epochs {ckpt['epoch']} or more")


def _replan(run: Run, old_epochs: int) -> None:
    """A run extended (or shortened) to ``cfg.epochs``: the cosine now ends there; say so once."""
    lam = run.scheduler.lr_lambdas[0]
    for group, base in zip(run.optimizer.param_groups, run.scheduler.base_lrs):
        before, group["lr"] = group["lr"], base * lam(run.step)
    if run.main:
        print(f"resuming with epochs={run.cfg.epochs} instead of {old_epochs}: the warm-up + cosine schedule is "
              f"re-planned to reach 0 at step {run.cfg.epochs * run.steps_per_epoch} (lr at step {run.step}: "
              f"{before:.4g} -> {group['lr']:.4g})", file=sys.stderr, flush=True)


def resume_run(run: Run, path: Path) -> None:
    """Load a checkpoint into ``run``: weights, optimiser, schedule, scaler, this process's RNG states, progress.

    The file is read onto the CPU (RNG states must be CPU byte tensors); ``load_state_dict`` then copies each
    tensor to the device of the parameter or buffer it fills.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    _check_resume(ckpt, run.cfg, path)
    load_weights(run.core, ckpt["model"], path)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.scaler.is_enabled() and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(rng_state_of_rank(ckpt["rng"], run.rank, run.world_size, path), run.generator)
    run.start_epoch, run.step, run.history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
    budget = getattr(run.scheduler, "budget", None)  # a run with a time budget: its state came with the schedule's
    if budget is not None and budget.done(run.step):  # it made its planned steps: nothing is left to train
        run.start_epoch = run.cfg.epochs
    if run.cfg.epochs != ckpt["config"]["epochs"] and budget is None:  # (a budget's epochs are only a cap)
        _replan(run, ckpt["config"]["epochs"])


def save_run(run: Run, epoch: int) -> Optional[Path]:
    """Write ``checkpoints/last.pt`` atomically (the main process), with every process's RNG states.

    A collective under torchrun: every process calls it; all wait until the file is complete.
    """
    rng = gather_rng_states(run.generator)  # one state dict per process
    path = None
    if run.main:
        state = dict(model=run.core.state_dict(), optimizer=run.optimizer.state_dict(),
                     scheduler=run.scheduler.state_dict(),
                     scaler=run.scaler.state_dict() if run.scaler.is_enabled() else None,
                     rng=dict(rng[0], ranks=rng) if len(rng) > 1 else rng[0], epoch=epoch, step=run.step,
                     config=run.cfg.to_dict(), history=run.history, version=__version__)
        path = save_checkpoint(state, run.checkpoint_path)
    if is_distributed():
        dist.barrier()  # no process reads the checkpoint before it is complete
    return path


def write_config(run: Run, resumed: bool) -> None:
    """config.json: written by a new run; a resume rewrites it only to record an allowed change."""
    path = Path(run.cfg.out_dir) / "config.json"
    now = dict(run.cfg.to_dict(), version=__version__)
    if resumed and path.is_file():
        old = json.loads(path.read_text())
        changed = {k: [old.get(k), now[k]] for k in RECORDED_CHANGES if old.get(k) != now[k]}
        if not changed:
            return
        now["changes"] = old.get("changes", []) + [dict(at_epoch=run.start_epoch, **changed)]
    atomic_write_text(json.dumps(now, indent=2), path)
