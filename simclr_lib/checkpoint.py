"""Checkpoints: written atomically, loaded with ``weights_only=True``, enough state to resume bit-exactly.

A checkpoint is a plain dict of tensors and Python primitives::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "rng": {"torch": ByteTensor, "cuda": [...], "augment": ByteTensor, "ranks": [one such dict per process]},
     "epoch": int, "step": int,
     "config": dict, "history": [dict, ...], "version": str}
"""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .runtime import atomic_torch_save


CHECKPOINT_KEYS = ("model", "config", "epoch", "step")  # what every simclr_lib checkpoint holds


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename): an interrupted write loses nothing.

    A full disk is one clear error that names the checkpoint that was kept (torch reports it as
    ``[enforce fail at inline_container.cc] unexpected pos``).
    """
    path = Path(path)
    try:
        return atomic_torch_save(state, path)
    except (OSError, RuntimeError) as e:
        if not _no_space(e):
            raise
        kept = f"the previous checkpoint {path} is intact" if path.is_file() else "no checkpoint was written"
        raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}: {kept}; free some space, "
                                    "then continue with --resume") from None


def _no_space(e: BaseException) -> bool:
    text = str(e)
    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "unexpected pos" in text \
        or "No space left" in text or "file write failed" in text


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
    return ckpt


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Union[str, Path] = "") -> None:
    """``model.load_state_dict(state)``, with a one-line error that says what does not fit."""
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

    from .distributed import is_distributed, world

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


def load_pretrained(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu"):
    """Rebuild the ``SimCLRModel`` of a run from its checkpoint (config + weights), in eval mode.

    Returns:
        (model, config) — the model on ``map_location``, the run's ``SimCLRConfig``.
    """
    from .config import SimCLRConfig
    from .models import build_model

    ckpt = load_checkpoint(path, map_location)
    cfg = SimCLRConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    load_weights(model, ckpt["model"], path)
    return model.to(map_location).eval(), cfg
