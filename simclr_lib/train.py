"""``pretrain(cfg)``: the SimCLR training loop (paper Sec. 2, Algorithm 1), in one readable function.

:func:`train_step` is one optimiser step (embed both views -> gather across processes -> NT-Xent -> backward ->
LARS step -> schedule). :func:`setup_run` builds what a run needs (device, data on the device, model, optimiser,
schedule, scaler, augmentation). :func:`pretrain` is the loop: for each epoch, an order of the images, and for each
batch, views = augment(batch) -> train_step; after each epoch, the kNN monitor and a checkpoint. What makes it
safe for long runs sits behind two calls: ``open_run`` (one writer per run folder, the checks before anything is
written) and ``Recorder`` (health checks, progress bar, TensorBoard, history, checkpoints, metrics.json), in
:mod:`simclr_lib.runs`.

uint8 images live on the training device and each epoch's order is built there once, so the step loop holds
no host sync but the recorder's logging ones every ``LOG_EVERY`` steps. Checkpoints hold every state needed to
resume bit-exactly, every process's augmentation generator included.

Taught in notebook 03.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch

from simclr_lib.augment import SimCLRAugment, make_views
from simclr_lib.config import SimCLRConfig, build_model, load_monitor_data, load_pretrain_data
from simclr_lib.data import ImageData, epoch_order
from simclr_lib.distributed import gather_views, init_from_env, is_distributed, world
from simclr_lib.loss import nt_xent
from simclr_lib.models import SimCLRModel
from simclr_lib.optim import build_optimizer, build_scheduler, optimizer_step
from simclr_lib.runs.budget import TimeBudget, time_scheduler
from simclr_lib.runs.checkpoint import RESUME_MAY_CHANGE, RESUME_MUST_MATCH, resume_run  # noqa: F401 (training API)
from simclr_lib.runs.lock import open_run
from simclr_lib.runs.paths import checkpoint_file
from simclr_lib.runs.recorder import LOG_EVERY, Recorder  # noqa: F401 (LOG_EVERY: taught in notebook 03)
from simclr_lib.runs.state import Run
from simclr_lib.runtime import autocast_context, make_grad_scaler, resolve_device, resolve_precision, seed_everything


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns. Taught in notebook 03."""
    model: SimCLRModel  # the trained model (unwrapped from DDP/compile), in train mode on the training device
    config: SimCLRConfig
    history: list[dict] = field(default_factory=list)  # one record per epoch
    metrics: dict = field(default_factory=dict)  # what metrics.json holds
    out_dir: Optional[Path] = None
    checkpoint: Optional[Path] = None


def train_step(model: torch.nn.Module, views: torch.Tensor, optimizer: torch.optim.Optimizer,
               scaler: "torch.amp.GradScaler", temperature: float = 0.5, n_views: int = 2,
               dtype: Optional[torch.dtype] = None, scheduler: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SimCLR optimiser step (paper Algorithm 1): embed, gather across processes, NT-Xent, backward, step.

    Taught in notebook 03; the benchmark (``benchmarks/bench_train.py``) and notebook 03's optimiser race call it.
    The scaler is a ``torch.amp.GradScaler`` that is enabled for fp16 only (``runtime.make_grad_scaler``); a
    disabled one passes the loss and the step through unchanged. No host sync (an enabled fp16 scaler checks for
    inf gradients on the host: one sync per step, the price of fp16).

    Shape:
        views: (n_views * B, 3, S, S) -> loss (), z_all (n_views * B * world_size, out_dim), both detached.
    """
    with autocast_context(views.device, dtype):
        _, z = model(views)  # z: V*B x out_dim; the encoder normalises the [0, 1] views itself
    z_all, rows = gather_views(z, n_views) if is_distributed() else (z, None)
    loss = nt_xent(z_all, temperature, n_views, anchors=rows)  # float32 (autocast off inside)
    optimizer_step(loss, optimizer, scaler, scheduler)  # backward, step through the scaler, schedule
    return loss.detach(), z_all.detach()

def _init_process(cfg: SimCLRConfig) -> tuple[torch.device, Optional[int]]:
    """The training device and the local rank (None outside torchrun); each CUDA process gets its own GPU."""
    device = resolve_device(cfg.device)
    local_rank = init_from_env(device)
    if local_rank is not None and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device, local_rank

def _check_data(cfg: SimCLRConfig, n: int, world_size: int) -> None:
    if n < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the dataset ({n} images); "
                         "lower --batch-size or use more data")
    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes {world_size}")

def _make_augment(cfg: SimCLRConfig, device: torch.device, augment: Optional[SimCLRAugment]) -> SimCLRAugment:
    if augment is not None and not isinstance(augment, SimCLRAugment):
        raise ValueError(f"augment must be a SimCLRAugment (e.g. one with only some ops), not {type(augment).__name__}")
    return (augment or SimCLRAugment.from_config(cfg)).to(device)

def _make_model(cfg: SimCLRConfig, device: torch.device, local_rank: Optional[int]):
    """Build the model on the device; SyncBatchNorm + DDP under torchrun; optional channels_last/compile.

    Under torchrun on CUDA, BatchNorm statistics are global (SyncBatchNorm, the paper's "global BN", Sec. 2.2);
    gloo processes on a CPU keep per-process BatchNorm (SyncBatchNorm has no CPU kernel).

    Returns (model to call, the unwrapped SimCLRModel).
    """
    model = build_model(cfg).to(device)
    if cfg.channels_last:  # NHWC: faster convolutions on CUDA and on CPU (oneDNN), see benchmarks/bench_train.py
        model = model.to(memory_format=torch.channels_last)
    core = model
    if is_distributed():
        if device.type == "cuda":
            model = core = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    return model, core

def setup_run(cfg: SimCLRConfig, data: Optional[ImageData] = None,
              monitor: Optional[tuple[ImageData, ImageData]] = None, augment: Optional[Any] = None,
              budget: Optional[TimeBudget] = None) -> Run:
    """Set up a run: device and process group, data on the device, model, optimiser, schedule, scaler, augment.

    Taught in notebook 03.
    """
    device, local_rank = _init_process(cfg)
    rank, world_size = world()
    seed_everything(cfg.seed)
    data = data if data is not None else load_pretrain_data(cfg)
    if cfg.image_size is None:  # folder data: the defaults follow its image size
        cfg = cfg.for_image_size(data.images.shape[-1])
    _check_data(cfg, len(data), world_size)
    if monitor is None and cfg.knn_every > 0:
        monitor = load_monitor_data(cfg)
    model, core = _make_model(cfg, device, local_rank)
    opt = build_optimizer(core, cfg.optimizer, cfg.peak_lr(), cfg.weight_decay, cfg.momentum, cfg.lars_eta)
    steps_per_epoch = len(data) // cfg.batch_size  # the last partial batch is dropped
    sched = (build_scheduler(opt, cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch))
             if cfg.minutes is None and budget is None else time_scheduler(opt, cfg, steps_per_epoch, device, budget))
    dtype = resolve_precision(cfg.precision, device)
    images = data.images.to(device)  # uint8 on the device (airbench); a no-op on the CPU
    return Run(cfg=cfg, device=device, rank=rank, world_size=world_size, images=images, model=model, core=core,
               optimizer=opt, scheduler=sched, scaler=make_grad_scaler(device, dtype), dtype=dtype,
               augment=_make_augment(cfg, device, augment),
               generator=torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank),
               steps_per_epoch=steps_per_epoch, monitor=monitor)


def pretrain(cfg: SimCLRConfig, *, data: Optional[ImageData] = None,
             monitor: Optional[tuple[ImageData, ImageData]] = None, resume: Union[bool, str, Path] = False,
             callbacks: Sequence[Callable[[dict], Any]] = (), augment: Optional[SimCLRAugment] = None,
             overwrite: bool = False, budget: Optional[TimeBudget] = None) -> PretrainResult:
    """Pre-train a SimCLR model (paper Algorithm 1) as ``cfg`` says.

    Taught in notebook 03, where the learner's own augmentation, loss and step run the same loop.

    Args:
        cfg: the run's configuration.
        data: pre-training images (default: ``load_pretrain_data(cfg)``).
        monitor: labelled (train, test) images for the kNN monitor (default: ``load_monitor_data(cfg)``).
        resume: True to continue from ``<out_dir>/checkpoints/last.pt``, or a checkpoint path; the run keeps
            its settings (``RESUME_MAY_CHANGE`` lists what ``cfg`` may change, e.g. more epochs).
        callbacks: called with each epoch's record after its checkpoint; a truthy return stops the run (the
            epoch it stopped at is checkpointed).
        augment: a SimCLRAugment to use instead of the one built from ``cfg`` (e.g. one with only some ``ops``, for
            the ablation of Fig. 5).
        overwrite: replace a run already in ``cfg.out_dir`` (without it, a fresh run there is refused).
        budget: the clock and plan of a run with ``cfg.minutes`` (default: a ``runs.budget.TimeBudget()``): its
            cosine follows the time used and it stops when its re-planned steps are done.

    Returns:
        PretrainResult with the model, per-epoch history and final metrics; ``out_dir`` holds config.json,
        metrics.json, TensorBoard events and checkpoints/last.pt.

    Shape: one epoch is ``len(data) // cfg.batch_size`` steps of ``cfg.n_views * cfg.batch_size`` views.
    """
    main = int(os.environ.get("RANK", "0")) == 0  # one writer per run folder: the main process
    with open_run(cfg.out_dir, bool(resume), overwrite, writer=main):  # checks, the lock, --overwrite
        run = setup_run(cfg, data, monitor, augment, budget)
        kept = checkpoint_file(cfg.out_dir if resume is True else resume) if resume else None
        if kept is not None:
            resume_run(run, kept)  # weights, optimiser, schedule, every random state, the step
        cfg = run.cfg
        run.model.train()
        with Recorder(run, resumed=kept is not None, kept=kept) as rec:
            for epoch in range(run.start_epoch, cfg.epochs):
                order = epoch_order(len(run.images), cfg.batch_size, epoch, cfg.seed, run.rank, run.world_size,
                                    run.images.device)  # steps x local batch, on the device
                rec.start_epoch(epoch)
                for batch in order:
                    views = make_views(run.images[batch], run.augment, cfg.n_views, run.generator,
                                       cfg.channels_last)  # V*b x 3 x S x S in [0, 1], on the device
                    loss, z_all = train_step(run.model, views, run.optimizer, run.scaler, cfg.temperature,
                                             cfg.n_views, run.dtype, run.scheduler)
                    rec.step(loss, z_all)  # syncs with the host every LOG_EVERY steps only
                    if rec.done:  # a run with a time budget made its planned steps (runs/budget.py)
                        break
                record = rec.end_epoch()  # kNN monitor, history, TensorBoard, checkpoint
                if any([cb(record) for cb in callbacks]) or rec.done:
                    rec.stop(record)
                    break
            metrics = rec.finish()  # metrics.json
    return PretrainResult(model=run.core, config=cfg, history=run.history, metrics=metrics,
                          out_dir=Path(cfg.out_dir), checkpoint=run.checkpoint_path if run.main else None)
