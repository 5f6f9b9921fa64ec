"""``pretrain(cfg)``: the SimCLR training loop (paper Sec. 2, Algorithm 1) wiring data, augment, model, loss, optim.

Split as nanoGPT splits its loop: :func:`setup_run` builds everything a run needs (device, process group, data on
the device, model, optimiser, schedule, scaler, augmentation, generator, resume); :func:`train_step` is one
optimiser step (forward -> gather -> NT-Xent -> backward -> step); :func:`pretrain` runs the epochs and does the
end-of-epoch work (record, kNN monitor, TensorBoard, checkpoint).

uint8 images live on the training device and each epoch's order is built there once, so the step loop holds
no host sync but the logging ones every ``LOG_EVERY`` steps. Checkpoints are atomic and hold every state needed
to resume bit-exactly, every process's augmentation generator included; a NaN/inf loss stops the run and keeps
the last good checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from . import __version__
from .augment import SimCLRAugment, make_views
from .checkpoint import RESUME_MAY_CHANGE, RESUME_MUST_MATCH  # noqa: F401 (part of the training API)
from .checkpoint import resume_run, save_run, write_config
from .config import SimCLRConfig
from .data import ImageData, epoch_order, load_monitor_data, load_pretrain_data
from .distributed import gather_views, init_from_env, is_distributed, world
from .loss import contrastive_accuracy, nt_xent
from .models import SimCLRModel, build_model
from .optim import build_optimizer, build_scheduler, optimizer_step
from .runlock import RunLock, clear_run, prepare_out_dir, remove_stale_temp_files
from .runtime import (atomic_write_text, autocast_context, make_grad_scaler, resolve_device, resolve_precision,
                      seed_everything)

LOG_EVERY = 10  # steps between host syncs for the progress bar, TensorBoard and the health check
MAX_PARAM_NORM = 1e8  # a weight norm above this is divergence, even while the loss stays finite


@dataclass
class PretrainResult:
    model: SimCLRModel  # the trained model (unwrapped from DDP/compile), in train mode on the training device
    config: SimCLRConfig
    history: list[dict] = field(default_factory=list)  # one record per epoch
    metrics: dict = field(default_factory=dict)  # what metrics.json holds
    out_dir: Optional[Path] = None
    checkpoint: Optional[Path] = None


@dataclass
class Run:
    """Everything :func:`setup_run` builds for one pre-training run (one per process under torchrun)."""
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
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.cfg.out_dir) / "checkpoints" / "last.pt"


def knn_monitor(model: SimCLRModel, monitor: tuple[ImageData, ImageData], cfg: SimCLRConfig) -> float:
    """kNN top-1 (cosine, k = cfg.knn_k) of the frozen features h on the monitor's test images."""
    from .evaluate import features, knn_accuracy

    train, test = monitor
    fx = [features(model, d.images) for d in (train, test)]
    return knn_accuracy(fx[0], train.labels, fx[1], test.labels, k=min(cfg.knn_k, len(train)))


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


def setup_run(cfg: SimCLRConfig, data: Optional[ImageData] = None,
              monitor: Optional[tuple[ImageData, ImageData]] = None, augment: Optional[Any] = None) -> Run:
    """Set up a run: device and process group, data on the device, model, optimiser, schedule, scaler, augment."""
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
    sched = build_scheduler(opt, cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch))
    dtype = resolve_precision(cfg.precision, device)
    images = data.images.to(device)  # uint8 on the device (airbench); a no-op on the CPU
    return Run(cfg=cfg, device=device, rank=rank, world_size=world_size, images=images, model=model, core=core,
               optimizer=opt, scheduler=sched, scaler=make_grad_scaler(device, dtype), dtype=dtype,
               augment=_make_augment(cfg, device, augment),
               generator=torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank),
               steps_per_epoch=steps_per_epoch, monitor=monitor)


def param_norm(model: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all parameters together, on the device (no sync). Shape: -> ()."""
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def _diverged(run: Run, what: str, epoch: int, last_good: Optional[Path]) -> FloatingPointError:
    """A one-line stop message naming the settings of this run that are likely to blame."""
    cfg = run.cfg
    causes = [f"temperature={cfg.temperature} is low (logits grow as 1/tau; try >= 0.1)"] if cfg.temperature < 0.1 else []
    if cfg.weight_decay > 1e-3:
        causes.append(f"weight_decay={cfg.weight_decay} is high (the paper uses 1e-6 with LARS)")
    if run.dtype is torch.float16:
        causes.append("fp16 overflow (use --precision bf16 or fp32)")
    causes.append(f"the peak learning rate {cfg.peak_lr():.3g} (try half)")
    where = f"the last good checkpoint {last_good} was kept" if last_good else "no checkpoint was written"
    return FloatingPointError(f"{what} at epoch {epoch + 1}, step {run.step}: training stopped and {where}; "
                              f"likely causes: {'; '.join(causes)}")


def _log_step(run: Run, loss: torch.Tensor, loss_sum: torch.Tensor, z_all: torch.Tensor, epoch: int, bar,
              writer, last_good: Optional[Path]) -> None:
    """The logging sync (one ``tolist``): health check of loss and weights, progress bar, TensorBoard."""
    value, total, norm = torch.stack([loss.float(), loss_sum.float(), param_norm(run.core)]).tolist()
    if not math.isfinite(total) or not math.isfinite(norm) or norm > MAX_PARAM_NORM:
        bar.close()
        what = f"loss became {value}" if not math.isfinite(total) else f"the weights diverged (norm {norm:.3g})"
        raise _diverged(run, what, epoch, last_good)
    lr = run.optimizer.param_groups[0]["lr"]
    bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.3g}", epoch=epoch + 1)
    if writer is not None:
        acc = contrastive_accuracy(z_all, run.cfg.n_views)
        writer.add_scalar("train/loss", value, run.step)
        writer.add_scalar("train/lr", lr, run.step)
        writer.add_scalar("train/contrastive_top1", acc["top1"], run.step)
        writer.add_scalar("train/contrastive_top5", acc["top5"], run.step)


def _step_loop(run: Run, order: torch.Tensor, log: Callable[..., None], bar=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The steps of one epoch, device work only: ``log(loss, loss_sum, z_all)`` every ``LOG_EVERY`` steps and
    at the last one is the only place that may sync with the host.

    Shape:
        order: (steps, local batch) on the images' device -> loss_sum (), z_all of the last step.
    """
    cfg = run.cfg
    loss_sum = torch.zeros((), device=run.device)
    for i in range(len(order)):
        views = make_views(run.images[order[i]], run.augment, cfg.n_views, run.generator,
                           cfg.channels_last)  # V*b x 3 x S x S in [0, 1], on the device
        loss, z_all = train_step(run.model, views, run.optimizer, run.scaler, cfg.temperature, cfg.n_views,
                                 run.dtype, run.scheduler)
        run.step += 1
        loss_sum += loss
        if (i + 1) % LOG_EVERY == 0 or i + 1 == len(order):  # the only host syncs of the step loop
            log(loss, loss_sum, z_all)
        if bar is not None:
            bar.update(1)
    return loss_sum, z_all


def train_epoch(run: Run, epoch: int, bar, writer=None, last_good: Optional[Path] = None) -> dict:
    """One pass over the data in this epoch's order; returns the epoch's record (loss, lr, speed, accuracy)."""
    cfg = run.cfg
    order = epoch_order(len(run.images), cfg.batch_size, epoch, cfg.seed, run.rank, run.world_size,
                        run.images.device)  # steps x local batch, on the device: one copy per epoch
    t0 = time.perf_counter()
    loss_sum, z_all = _step_loop(run, order, lambda *a: _log_step(run, *a, epoch, bar, writer, last_good), bar)
    seconds = time.perf_counter() - t0
    record = dict(epoch=epoch + 1, step=run.step, loss=(loss_sum / run.steps_per_epoch).item(),
                  lr=run.optimizer.param_groups[0]["lr"], seconds=seconds,
                  views_per_s=run.steps_per_epoch * cfg.batch_size * cfg.n_views / seconds)
    record.update({f"contrastive_{k}": v for k, v in contrastive_accuracy(z_all, cfg.n_views).items()})
    return record


def _end_epoch(run: Run, record: dict, writer, last_good: Optional[Path]) -> Optional[Path]:
    """kNN monitor (when due), history, TensorBoard, checkpoint (when due); returns the last good checkpoint."""
    cfg, epoch = run.cfg, record["epoch"]
    if run.monitor is not None and run.main and (epoch % cfg.knn_every == 0 or epoch == cfg.epochs):
        record["knn_top1"] = knn_monitor(run.core, run.monitor, cfg)
    run.history.append(record)
    if writer is not None:
        for k in ("views_per_s", "knn_top1"):
            if k in record:
                writer.add_scalar(f"train/{k}", record[k], run.step)
        writer.flush()
    if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
        norm = param_norm(run.core).item()
        if not math.isfinite(norm) or norm > MAX_PARAM_NORM:  # never replace a good checkpoint with a bad one
            raise _diverged(run, f"the weights diverged (norm {norm:.3g})", epoch - 1, last_good)
        return save_run(run, epoch)
    return last_good


def _open_outputs(run: Run, resumed: bool):
    """config.json and the TensorBoard writer (main process only); returns the writer or None."""
    if not run.main:
        return None
    write_config(run, resumed)
    if not run.cfg.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    # a resumed run drops the events a dead run wrote after its checkpoint: every step after run.step (the
    # checkpoint's own last logged step stays; purge_step=run.step would drop it too)
    return SummaryWriter(str(run.cfg.out_dir), purge_step=run.step + 1 if resumed else None)


def _finish(run: Run) -> PretrainResult:
    """metrics.json (main process) and the result."""
    history = run.history
    final = history[-1] if history else {}
    metrics = dict(final, epochs_run=len(history), total_seconds=sum(r["seconds"] for r in history),
                   device=str(run.device), world_size=run.world_size, version=__version__, seed=run.cfg.seed)
    out = Path(run.cfg.out_dir)
    if run.main:
        atomic_write_text(json.dumps(dict(metrics=metrics, history=history), indent=2), out / "metrics.json")
    return PretrainResult(model=run.core, config=run.cfg, history=history, metrics=metrics, out_dir=out,
                          checkpoint=run.checkpoint_path if run.main else None)


def pretrain(cfg: SimCLRConfig, *, data: Optional[ImageData] = None,
             monitor: Optional[tuple[ImageData, ImageData]] = None, resume: Union[bool, str, Path] = False,
             callbacks: Sequence[Callable[[dict], Any]] = (), augment: Optional[Any] = None,
             overwrite: bool = False) -> PretrainResult:
    """Pre-train a SimCLR model (paper Algorithm 1) as ``cfg`` says; see the module docstring.

    Args:
        cfg: the run's configuration.
        data: pre-training images (default: ``load_pretrain_data(cfg)``).
        monitor: labelled (train, test) images for the kNN monitor (default: ``load_monitor_data(cfg)``).
        resume: True to continue from ``<out_dir>/checkpoints/last.pt``, or a checkpoint path; the run keeps
            its settings (``RESUME_MAY_CHANGE`` lists what ``cfg`` may change, e.g. more epochs).
        callbacks: called with each epoch's record after its checkpoint; a truthy return stops the run.
        augment: a SimCLRAugment to use instead of the one built from ``cfg`` (e.g. one with only some ``ops``, for
            the ablation of Fig. 5).
        overwrite: replace a run already in ``cfg.out_dir`` (without it, a fresh run there is refused).

    Returns:
        PretrainResult with the model, per-epoch history and final metrics; ``out_dir`` holds config.json,
        metrics.json, TensorBoard events and checkpoints/last.pt.
    """
    out, main = Path(cfg.out_dir), int(os.environ.get("RANK", "0")) == 0  # one writer: the main process
    if main:
        prepare_out_dir(out, bool(resume), overwrite)
    with RunLock(out) if main else contextlib.nullcontext():
        if main:
            if overwrite and not resume:
                clear_run(out)
            remove_stale_temp_files(out)
        run = setup_run(cfg, data, monitor, augment)
        last_good = None
        if resume:
            last_good = Path(resume) if not isinstance(resume, bool) else run.checkpoint_path
            resume_run(run, last_good)
        _train(run, callbacks, last_good, bool(resume))
        return _finish(run)


def _train(run: Run, callbacks: Sequence[Callable[[dict], Any]], last_good: Optional[Path], resumed: bool) -> None:
    """The epochs from ``run.start_epoch``: train, then the end-of-epoch work; callbacks may stop the run."""
    writer = _open_outputs(run, resumed)
    bar = tqdm(total=run.cfg.epochs * run.steps_per_epoch, initial=run.step, desc="pretrain", unit="step",
               disable=not (run.cfg.progress and run.main), dynamic_ncols=True)
    run.model.train()
    try:
        for epoch in range(run.start_epoch, run.cfg.epochs):
            record = train_epoch(run, epoch, bar, writer, last_good)
            last_good = _end_epoch(run, record, writer, last_good)
            if any([cb(record) for cb in callbacks]):  # stopped early: the checkpoint holds this epoch
                if record["epoch"] % run.cfg.checkpoint_every and record["epoch"] != run.cfg.epochs:
                    save_run(run, record["epoch"])
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
