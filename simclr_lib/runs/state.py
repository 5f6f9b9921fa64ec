"""``Run``: everything ``train.setup_run`` builds for one pre-training run, as the run machinery sees it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from simclr_lib.config import SimCLRConfig
from simclr_lib.data import ImageData
from simclr_lib.models import SimCLRModel
from simclr_lib.runs.paths import RunPaths


@dataclass
class Run:
    """One pre-training run (one per process under torchrun): the model, its optimiser and data, and progress."""
    cfg: SimCLRConfig
    device: torch.device
    rank: int
    world_size: int
    images: torch.Tensor  # N x 3 x H x W uint8, on the training device (on the CPU for CPU runs)
    model: torch.nn.Module  # what the step calls (DDP- and compile-wrapped)
    core: SimCLRModel  # the unwrapped model (what checkpoints hold)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: "torch.amp.GradScaler"  # enabled for fp16 only
    dtype: Optional[torch.dtype]  # autocast dtype (None: fp32)
    augment: Any
    generator: torch.Generator  # this process's augmentation generator, on the training device
    steps_per_epoch: int
    monitor: Optional[tuple[ImageData, ImageData]] = None
    start_epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def main(self) -> bool:
        """The process that writes the run folder (rank 0)."""
        return self.rank == 0

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.cfg.out_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.paths.checkpoint
