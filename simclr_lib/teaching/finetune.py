"""End-to-end training on labels: the supervised baseline and the fine-tuned SimCLR encoder (paper Table 8).

:func:`train_supervised` trains a *copy* of an encoder plus a new linear classifier with SGD + cosine, random crop
(zero padding) + flip drawn on the device, and the library's one optimiser step (``optim.optimizer_step``); with
a freshly built encoder it is the supervised baseline, :func:`fine_tune` passes a pre-trained one.
:func:`supervised_fraction_sweep` trains that baseline on each class-balanced label fraction that
``evaluate.label_fraction_sweep`` probes, at equal compute (the same number of training images seen).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from simclr_lib.augment import to_float
from simclr_lib.data import ImageData, balanced_indices
from simclr_lib.evaluate import DeviceLike, features
from simclr_lib.optim import build_optimizer, build_scheduler, optimizer_step
from simclr_lib.runtime import autocast_context, make_grad_scaler, resolve_device, resolve_precision


def crop_flip_at(images: torch.Tensor, pad: int, off_y: torch.Tensor, off_x: torch.Tensor,
                 flip: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``pad``, crop the original size at ``(off_y, off_x)``, mirror where ``flip``: one gather.

    Shape:
        images: (B, C, H, W); off_y, off_x: (B,) in 0..2*pad; flip: (B,) bool -> (B, C, H, W).
    """
    b, _, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad))  # B x C x (H+2p) x (W+2p)
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = off_y.to(dev)[:, None] + ar_h  # B x H
    cols = off_x.to(dev)[:, None] + torch.where(flip.to(dev)[:, None], w - 1 - ar_w, ar_w)  # B x W
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # B x H x W x C
    return out.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(images: torch.Tensor, pad: int = 4, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip (p = 0.5), per image, on the images' device.

    Shape:
        images: (B, C, H, W) -> (B, C, H, W).
    """
    b, dev = len(images), images.device
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=dev)  # drawn on the device: no copy
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    return crop_flip_at(images, pad, off[0], off[1], flip)


def _check_labelled(data: ImageData, name: str) -> None:
    if data.labels is None or len(data) < 2:
        raise ValueError(f"{name} set {data.name!r} needs labels and >= 2 images; use a labelled split (e.g. 'train')")


def images_per_epoch(n: int, batch_size: int) -> int:
    """The images one epoch of :func:`train_supervised` trains on: whole batches only, the last partial batch
    dropped (all ``n`` images when they fill less than one batch).

    Shape:
        two ints -> an int <= n.

    Taught in notebook 04 (equal compute across label fractions).
    """
    return min(n, max(1, n // batch_size) * batch_size)


def _train_epoch(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, opt, sched, scaler,
                 batch_size: int, pad: Optional[int], amp, gen: torch.Generator, bar) -> dict:
    """One pass in random order, dropping the last partial batch (all images if fewer than one batch)."""
    n, dev = len(x_all), x_all.device
    perm, steps = torch.randperm(n, generator=gen, device=dev), max(1, n // batch_size)  # on the device
    loss_sum, correct, seen = torch.zeros((), device=dev), torch.zeros((), device=dev), 0
    for s in range(steps):
        idx = perm[s * batch_size:(s + 1) * batch_size]
        xb = x_all[idx] if pad is None else random_crop_flip(x_all[idx], pad, gen)  # B x 3 x H x W uint8
        with autocast_context(dev, amp):
            logits = model(to_float(xb)).float()  # B x K; the encoder normalises its input
        loss = F.cross_entropy(logits, y_all[idx])
        optimizer_step(loss, opt, scaler, sched)  # the scaler is enabled for fp16 only
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y_all[idx]).sum()
        seen += len(idx)
        bar.update(1)
    return dict(loss=loss_sum.item() / seen, train_top1=correct.item() / seen)


def _top1(model: nn.Module, test: ImageData, dev: torch.device, amp: Optional[torch.dtype]) -> float:
    """Test top-1 of an encoder + classifier, in eval mode (``features`` restores the train mode after)."""
    logits = features(model, test.images, device=dev, autocast_dtype=amp)  # M x K
    return (logits.argmax(1) == test.labels.cpu()).float().mean().item()


def train_supervised(encoder: nn.Module, feat_dim: int, train: ImageData, test: ImageData, epochs: int = 30,
                     batch_size: int = 256, lr: float = 0.1, device: DeviceLike = "auto", weight_decay: float = 5e-4,
                     momentum: float = 0.9, augment: bool = True, pad: int = 4, precision: str = "auto",
                     seed: int = 0, progress: bool = True, mode: str = "supervised", eval_every: int = 0) -> dict:
    """Train a *copy* of ``encoder`` plus a new linear classifier end to end on labelled images.

    SGD with momentum (no decay on biases/BatchNorm), per-step cosine decay to 0, random crop (zero padding
    ``pad``) + flip on the device when ``augment``; the encoder normalises its [0, 1] input itself. With a freshly built encoder this is the
    supervised baseline; :func:`fine_tune` passes a pre-trained one (paper Table 8). The caller's encoder is
    never modified. ``eval_every=k`` also scores the test set after every k-th epoch (``test_top1`` in the
    history: notebook 04's accuracy-over-epochs curves).

    Returns:
        dict with ``top1`` (test), ``train_top1`` and ``loss`` (last epoch), ``history`` (per epoch),
        ``seconds``, ``images_per_s``, ``epochs``, ``images_seen`` (training images, counted with repeats),
        ``mode`` and ``model`` (the trained encoder + classifier).
    """
    _check_labelled(train, "train"), _check_labelled(test, "test")
    if epochs < 1 or batch_size < 2 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 2, lr > 0 (got {epochs}, {batch_size}, {lr})")
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = nn.Linear(feat_dim, int(max(train.labels.max(), test.labels.max())) + 1)
    model = nn.Sequential(copy.deepcopy(encoder), nn.Flatten(1), clf).to(dev).train()
    opt = build_optimizer(model, "sgd", lr, weight_decay, momentum)
    steps = max(1, len(train) // batch_size)
    sched, amp = build_scheduler(opt, epochs * steps, 0), resolve_precision(precision, dev)
    x_all, y_all, gen = train.images.to(dev), train.labels.to(dev), torch.Generator(dev).manual_seed(seed)
    scaler, history, t0 = make_grad_scaler(dev, amp), [], time.perf_counter()
    with tqdm(total=epochs * steps, desc=mode, disable=not progress) as bar:
        for epoch in range(epochs):
            rec = _train_epoch(model, x_all, y_all, opt, sched, scaler, batch_size,
                               pad if augment else None, amp, gen, bar)
            if eval_every and (epoch + 1) % eval_every == 0:
                rec["test_top1"] = _top1(model, test, dev, amp)
            history.append(dict(epoch=epoch + 1, lr=opt.param_groups[0]["lr"], **rec))
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_top1']:.3f}")
    seconds, seen = time.perf_counter() - t0, epochs * images_per_epoch(len(train), batch_size)
    return dict(top1=_top1(model, test, dev, amp), train_top1=rec["train_top1"], loss=rec["loss"], history=history,
                seconds=seconds, epochs=epochs, images_seen=seen, mode=mode, images_per_s=seen / seconds, model=model)


def fine_tune(encoder: nn.Module, feat_dim: int, train: ImageData, test: ImageData, epochs: int = 30,
              batch_size: int = 256, lr: float = 0.05, **kwargs) -> dict:
    """Fine-tune a copy of a pre-trained encoder with a new linear classifier (paper Table 8, "fine-tuned").

    :func:`train_supervised` with a smaller default peak learning rate; same keyword arguments and result.
    """
    return train_supervised(encoder, feat_dim, train, test, epochs, batch_size, lr, mode="fine_tune", **kwargs)


def labelled_subset(train: ImageData, fraction: float, seed: int = 0) -> ImageData:
    """The class-balanced ``fraction`` of ``train`` (``data.balanced_indices``): the very labels that
    ``evaluate.label_fraction_sweep`` probes with at that fraction and the same ``seed``.

    Shape:
        N images -> about fraction * N images (rounded per class), in ``train``'s order.

    Taught in notebook 04.
    """
    _check_labelled(train, "train")
    idx = balanced_indices(train.labels, fraction=fraction, seed=seed)
    return replace(train, images=train.images[idx], labels=train.labels[idx])


def supervised_fraction_sweep(encoder: nn.Module, feat_dim: int, train: ImageData, test: ImageData,
                              fractions: Sequence[float], images_seen: int, batch_size: int = 256, seed: int = 0,
                              curve_fraction: Optional[float] = None, **kwargs) -> list[dict]:
    """Supervised training from scratch on each label fraction, at equal compute: a copy of the untrained
    ``encoder`` (the same initial weights every time) plus a linear classifier, trained with
    :func:`train_supervised` on :func:`labelled_subset` (the labels the probe of that fraction sees) for
    ``ceil(images_seen / images_per_epoch)`` epochs, so every fraction sees about ``images_seen`` images
    (exactly, when each subset is a whole number of batches). The run at ``curve_fraction`` also scores the test
    set after every epoch (``test_top1`` in its ``history``).

    Returns:
        one dict per fraction: ``fraction``, ``n_labels`` and :func:`train_supervised`'s keys but ``model``.

    Shape:
        train: N labelled images, test: M -> len(fractions) dicts.

    Taught in notebook 04.
    """
    if images_seen < 1:
        raise ValueError(f"images_seen={images_seen} must be >= 1")
    rows = []
    for fraction in fractions:
        part = labelled_subset(train, fraction, seed)
        epochs = math.ceil(images_seen / images_per_epoch(len(part), batch_size))
        res = train_supervised(encoder, feat_dim, part, test, epochs, batch_size, seed=seed,
                               eval_every=int(fraction == curve_fraction), **kwargs)
        res.pop("model")
        rows.append(dict(fraction=fraction, n_labels=len(part), **res))
    return rows
