"""Checkpoints: written atomically, loaded with ``weights_only=True``, enough state to resume bit-exactly.

A checkpoint is a plain dict of tensors and Python primitives::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "rng": {"torch": ByteTensor, "cuda": [...], "augment": ByteTensor, "ranks": [one such dict per process]},
     "epoch": int, "step": int,
     "config": dict, "history": [dict, ...], "version": str}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch

from .runtime import atomic_torch_save


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename): an interrupted write loses nothing."""
    return atomic_torch_save(state, path)


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or unreadable file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train first (python -m simclr_lib pretrain --out DIR)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise RuntimeError(f"checkpoint {path} could not be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                           "delete it or point to another run") from None


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
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval(), cfg
