"""Checkpoints: written atomically, loaded with ``weights_only=True``, enough state to resume bit-exactly.

A checkpoint is a plain dict of tensors and Python primitives::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "rng": {"torch": ByteTensor, "cuda": [...], "augment": ByteTensor}, "epoch": int, "step": int,
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
    """Every random-number state the training loop draws from."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], augment_generator: Optional[torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if augment_generator is not None and "augment" in state:
        augment_generator.set_state(state["augment"])


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
