"""``pretrain(cfg)``: the SimCLR training loop (paper Sec. 2, Algorithm 1) wiring data, augment, model, loss, optim.

uint8 images live on the training device; each step draws a batch, augments it there into ``n_views`` views
(:class:`~simclr_lib.augment.SimCLRAugment`, per-sample parameters), normalises, embeds (h, z) under autocast,
gathers z across ranks (torchrun) and minimises NT-Xent with LARS (or SGD/Adam/AdamW) under a per-step warm-up +
cosine schedule. Checkpoints are atomic and hold every state needed to resume bit-exactly on CPU; a NaN/inf loss
stops the run and keeps the last good checkpoint.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from . import __version__
from .augment import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, SimCLRAugment, normalize
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import SimCLRConfig
from .data import ImageData, load_dataset
from .distributed import gather_views, init_from_env, is_distributed, world
from .loss import contrastive_accuracy, nt_xent
from .models import SimCLRModel, build_model
from .optim import build_optimizer, build_scheduler
from .runtime import (atomic_write_text, autocast_context, make_grad_scaler, resolve_device, resolve_precision,
                      seed_everything)

LOG_EVERY = 10  # steps between host syncs for the progress bar, TensorBoard and the NaN check
RESUME_MUST_MATCH = ("dataset", "subset", "arch", "cifar_stem", "proj_hidden_dim", "proj_out_dim", "proj_layers",
                     "batch_size", "n_views", "optimizer", "image_size")


@dataclass
class PretrainResult:
    model: SimCLRModel  # the trained model (unwrapped from DDP/compile), in train mode on the training device
    config: SimCLRConfig
    history: list[dict] = field(default_factory=list)  # one record per epoch
    metrics: dict = field(default_factory=dict)  # what metrics.json holds
    out_dir: Optional[Path] = None
    checkpoint: Optional[Path] = None


def normalization(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std used to normalise views: ImageNet statistics for STL-10, CIFAR-10's otherwise."""
    return (IMAGENET_MEAN, IMAGENET_STD) if dataset == "stl10" else (CIFAR10_MEAN, CIFAR10_STD)


def load_pretrain_data(cfg: SimCLRConfig) -> ImageData:
    """The pre-training images of ``cfg`` (STL-10: train + unlabeled), the first ``cfg.subset`` of them."""
    split = "train+unlabeled" if cfg.dataset == "stl10" else "train"
    return load_dataset(cfg.dataset, split, cfg.data_dir, folder=cfg.folder, subset=cfg.subset,
                        download=cfg.download, image_size=cfg.image_size, progress=cfg.progress)


def labelled_splits(cfg: SimCLRConfig, n_train: int, n_test: int) -> tuple[ImageData, ImageData]:
    """The first ``n_train`` / ``n_test`` labelled images of the train / test split of ``cfg.dataset``."""
    from .data import SHAPES_SIZES

    kw = dict(data_dir=cfg.data_dir, download=cfg.download, image_size=cfg.image_size, progress=cfg.progress)
    if cfg.dataset == "shapes":  # generated: draw only what is needed
        return (load_dataset("shapes", "train", subset=min(n_train, SHAPES_SIZES["train"]), **kw),
                load_dataset("shapes", "test", subset=min(n_test, SHAPES_SIZES["test"]), **kw))
    train, test = load_dataset(cfg.dataset, "train", **kw), load_dataset(cfg.dataset, "test", **kw)
    return train.subset(min(len(train), n_train)), test.subset(min(len(test), n_test))


def load_monitor_data(cfg: SimCLRConfig) -> Optional[tuple[ImageData, ImageData]]:
    """Labelled (train, test) images for the kNN monitor, at most ``cfg.knn_subset`` each; None for folders."""
    if cfg.dataset == "folder" or cfg.knn_every <= 0:
        return None
    return labelled_splits(cfg, cfg.knn_subset, cfg.knn_subset)


def knn_monitor(model: SimCLRModel, monitor: tuple[ImageData, ImageData], cfg: SimCLRConfig,
                device: torch.device) -> float:
    """kNN top-1 (cosine, k = cfg.knn_k) of encoder features h on the monitor's test images."""
    from .evaluate import extract_features, knn_accuracy

    mean, std = normalization(cfg.dataset)
    train, test = monitor
    fx = [extract_features(model.encoder, d.images, mean, std, device=device) for d in (train, test)]
    return knn_accuracy(fx[0], train.labels, fx[1], test.labels, k=min(cfg.knn_k, len(train)))


def _make_model(cfg: SimCLRConfig, device: torch.device, local_rank: Optional[int]):
    """Build the model on the device; SyncBatchNorm + DDP under torchrun; optional channels_last/compile.

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


def _check_resume(ckpt: dict, cfg: SimCLRConfig, path: Path) -> None:
    saved = ckpt["config"]
    diff = [k for k in RESUME_MUST_MATCH if saved.get(k) != getattr(cfg, k)]
    if diff:
        k = diff[0]
        raise ValueError(f"cannot resume from {path}: {k}={saved.get(k)!r} there but {getattr(cfg, k)!r} now; "
                         "use the run's own settings or a new --out")


def _views(images: torch.Tensor, idx: torch.Tensor, cfg: SimCLRConfig, augment, generator,
           device: torch.device) -> torch.Tensor:
    """Augmented, normalised views of ``images[idx]``. Shape: (B,) -> (n_views*B, 3, S, S), view-major."""
    x = images[idx.to(images.device)]  # B x 3 x H x W uint8
    if cfg.augment_backend == "batched":
        views = augment.views(x.to(device, non_blocking=True), cfg.n_views, generator=generator)
    else:
        from .augment import augment_per_image

        views = augment_per_image(x.cpu(), cfg.n_views, augment).to(device, non_blocking=True)
    mean, std = normalization(cfg.dataset)
    views = normalize(views, mean, std)
    if cfg.channels_last:
        views = views.contiguous(memory_format=torch.channels_last)
    return views


def _save(path: Path, core: SimCLRModel, opt, sched, scaler, gen, epoch: int, step: int, cfg: SimCLRConfig,
          history: list[dict]) -> Path:
    state = dict(model=core.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                 scaler=scaler.state_dict() if scaler is not None else None, rng=rng_state(gen), epoch=epoch,
                 step=step, config=cfg.to_dict(), history=history, version=__version__)
    return save_checkpoint(state, path)


def pretrain(cfg: SimCLRConfig, *, data: Optional[ImageData] = None,
             monitor: Optional[tuple[ImageData, ImageData]] = None, resume: Union[bool, str, Path] = False,
             callbacks: Sequence[Callable[[dict], Any]] = (), augment: Optional[Any] = None) -> PretrainResult:
    """Pre-train a SimCLR model (paper Algorithm 1) as ``cfg`` says; see the module docstring.

    Args:
        cfg: the run's configuration.
        data: pre-training images (default: ``load_pretrain_data(cfg)``).
        monitor: labelled (train, test) images for the kNN monitor (default: ``load_monitor_data(cfg)``).
        resume: True to continue from ``<out_dir>/checkpoints/last.pt``, or a checkpoint path.
        callbacks: called with each epoch's record after its checkpoint; a truthy return stops the run.
        augment: replaces the augmentation built from ``cfg`` (a SimCLRAugment for the batched backend, e.g. one
            with only some ``ops`` for the ablation of Fig. 5; a per-image transform for ``per_image``).

    Returns:
        PretrainResult with the model, per-epoch history and final metrics; ``out_dir`` holds config.json,
        metrics.json, TensorBoard events and checkpoints/last.pt.
    """
    device = resolve_device(cfg.device)
    local_rank = init_from_env(device)
    if local_rank is not None and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    rank, world_size = world()
    seed_everything(cfg.seed)
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoints" / "last.pt"

    data = data if data is not None else load_pretrain_data(cfg)
    if len(data) < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the dataset ({len(data)} images); "
                         "lower --batch-size or use more data")
    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes {world_size}")
    if monitor is None and cfg.knn_every > 0:
        monitor = load_monitor_data(cfg)
    images = data.images.to(device) if device.type != "cpu" else data.images  # uint8 on the device (airbench)

    model, core = _make_model(cfg, device, local_rank)
    opt = build_optimizer(core, cfg.optimizer, cfg.peak_lr(), cfg.weight_decay, cfg.momentum, cfg.lars_eta)
    steps_per_epoch = len(data) // cfg.batch_size  # the last partial batch is dropped
    total_steps = cfg.epochs * steps_per_epoch
    sched = build_scheduler(opt, total_steps, round(cfg.warmup_epochs * steps_per_epoch))
    dtype = resolve_precision(cfg.precision, device)
    scaler = make_grad_scaler(device, dtype)
    if augment is not None:
        augment = augment.to(device) if isinstance(augment, torch.nn.Module) else augment
    elif cfg.augment_backend == "batched":
        augment = SimCLRAugment(cfg.image_size, cfg.color_strength, cfg.blur, cfg.min_scale).to(device)
    else:
        from .augment import reference_transform

        augment = reference_transform(cfg.image_size, cfg.color_strength, cfg.blur, cfg.min_scale)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
    sampler = torch.utils.data.DistributedSampler(range(len(data)), num_replicas=world_size, rank=rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=True)
    local_batch = cfg.batch_size // world_size

    start_epoch, step, history = 0, 0, []
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else ckpt_path
        ckpt = load_checkpoint(path, map_location=device)
        _check_resume(ckpt, cfg, path)
        core.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt["scaler"] is not None:
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"], gen)
        start_epoch, step, history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])

    main = rank == 0
    writer = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(dict(cfg.to_dict(), version=__version__), indent=2), out / "config.json")
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out))
    bar = tqdm(total=total_steps, initial=step, disable=not (cfg.progress and main), desc="pretrain",
               unit="step", dynamic_ncols=True)
    model.train()
    last_good = ckpt_path if resume else None
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)  # this rank's images, reshuffled every epoch
        loss_sum = torch.zeros((), device=device)
        t0 = time.perf_counter()
        for i in range(steps_per_epoch):
            idx = order[i * local_batch:(i + 1) * local_batch]
            views = _views(images, idx, cfg, augment, gen, device)  # V*b x 3 x S x S
            with autocast_context(device, dtype):
                _, z = model(views)  # z: V*b x out_dim
            z_all, rows = gather_views(z, cfg.n_views) if is_distributed() else (z, None)
            loss = nt_xent(z_all, cfg.temperature, cfg.n_views, anchors=rows)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            step += 1
            loss_sum += loss.detach()
            if (i + 1) % LOG_EVERY == 0 or i + 1 == steps_per_epoch:  # the only host syncs of the step loop
                value = loss.item()
                if not torch.isfinite(loss_sum):
                    bar.close()
                    where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written"
                    raise FloatingPointError(f"loss became {value} at epoch {epoch + 1}, step {step}: training "
                                             f"stopped and {where}; lower the learning rate or use precision=fp32")
                lr = opt.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.3g}", epoch=epoch + 1)
                if writer is not None:
                    acc = contrastive_accuracy(z_all.detach(), cfg.n_views)
                    writer.add_scalar("train/loss", value, step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("train/contrastive_top1", acc["top1"], step)
                    writer.add_scalar("train/contrastive_top5", acc["top5"], step)
            bar.update(1)
        seconds = time.perf_counter() - t0
        record = dict(epoch=epoch + 1, step=step, loss=(loss_sum / steps_per_epoch).item(),
                      lr=opt.param_groups[0]["lr"], seconds=seconds,
                      views_per_s=steps_per_epoch * cfg.batch_size * cfg.n_views / seconds)
        record.update({f"contrastive_{k}": v for k, v in contrastive_accuracy(z_all.detach(), cfg.n_views).items()})
        if monitor is not None and main and ((epoch + 1) % cfg.knn_every == 0 or epoch + 1 == cfg.epochs):
            record["knn_top1"] = knn_monitor(core, monitor, cfg, device)
        history.append(record)
        if writer is not None:
            for k in ("views_per_s", "knn_top1"):
                if k in record:
                    writer.add_scalar(f"train/{k}", record[k], step)
            writer.flush()
        if main and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
            last_good = _save(ckpt_path, core, opt, sched, scaler, gen, epoch + 1, step, cfg, history)
        if any([cb(record) for cb in callbacks]):
            break
    bar.close()
    if writer is not None:
        writer.close()
    final = history[-1] if history else {}
    metrics = dict(final, epochs_run=len(history), total_seconds=sum(r["seconds"] for r in history),
                   device=str(device), world_size=world_size, version=__version__, seed=cfg.seed)
    if main:
        atomic_write_text(json.dumps(dict(metrics=metrics, history=history), indent=2), out / "metrics.json")
    return PretrainResult(model=core, config=cfg, history=history, metrics=metrics, out_dir=out,
                          checkpoint=ckpt_path if main else None)
