"""Stage b of ``tools/gpu/full_scale.py``: views/s of the full SimCLR training step, and what bounds it.

The step is the library's: ``train.setup_run`` builds the run (model, LARS, schedule, augmentation on the device)
from a config whose precision, ``channels_last`` and ``compile`` make the variant; ``make_views`` + ``train_step``
are what ``pretrain`` runs per batch. Timed with CUDA events (``perf_counter`` on a CPU) after warm-up steps that
hold compilation; model FLOPs (``FlopCounterMode``) against a bf16 matrix product on the same device.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Union

import torch

from simclr_lib.augment import make_views
from simclr_lib.config import SimCLRConfig
from simclr_lib.data import ImageData
from simclr_lib.loss import nt_xent
from simclr_lib.train import setup_run, train_step

VARIANTS: dict[str, dict[str, Any]] = {  # SimCLRConfig fields; "mode": torch.compile's mode instead of cfg.compile
    "fp32 (tf32)": dict(precision="fp32", channels_last=False),
    "bf16": dict(precision="bf16", channels_last=False),
    "bf16+channels_last": dict(precision="bf16"),
    "bf16+channels_last+compile": dict(precision="bf16", compile=True),
    "bf16+channels_last+compile+cudagraphs": dict(precision="bf16", mode="reduce-overhead"),
}
Mark = Union[float, "torch.cuda.Event"]


def mark(device: torch.device) -> Mark:
    """A point in time: an event recorded on the current CUDA stream (no host sync), or the host clock on a CPU."""
    if device.type != "cuda":
        return time.perf_counter()
    (event := torch.cuda.Event(enable_timing=True)).record()
    return event


def seconds(a: Mark, b: Mark) -> float:
    """Seconds from mark ``a`` to mark ``b`` (waits for the GPU)."""
    if isinstance(a, float):
        return float(b) - a  # type: ignore[arg-type]
    torch.cuda.synchronize()
    return a.elapsed_time(b) / 1e3  # type: ignore[union-attr,arg-type]


def make_step(arch: str, batch: int, variant: str, device: torch.device) -> tuple[Any, Callable, Callable]:
    """``(run, augment(i) -> views, train(views) -> loss)`` of one variant, on 4 batches of random images."""
    spec = dict(VARIANTS[variant])
    mode = spec.pop("mode", None)
    cfg = SimCLRConfig(arch=arch, batch_size=batch, device=device.type, color_strength=0.5, blur=False,
                       min_scale=0.08, knn_every=0, progress=False, tensorboard=False, **spec)
    images = torch.randint(0, 256, (4 * batch, 3, 32, 32), dtype=torch.uint8)
    run = setup_run(cfg, ImageData(images, torch.zeros(4 * batch, dtype=torch.int64), ["random"], "random"))
    if mode:
        run.model = torch.compile(run.core, mode=mode)

    def augment(i: int) -> torch.Tensor:
        """Two views of the i-th batch (of 4 that cycle), as the training loop makes them."""
        return make_views(run.images[(i % 4) * batch:(i % 4 + 1) * batch], run.augment, 2, run.generator,
                          cfg.channels_last)

    def train(views: torch.Tensor) -> torch.Tensor:
        """The library's training step: forward, NT-Xent, backward, LARS step; the loss, detached."""
        return train_step(run.model, views, run.optimizer, run.scaler, cfg.temperature, 2, run.dtype,
                          run.scheduler)[0]

    return run, augment, train


def measure_variant(arch: str, batch: int, variant: str, device: torch.device, steps: int, warmup: int) -> dict:
    """Views/s, step and augmentation time (medians over ``steps`` after ``warmup``), peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _, augment, train = make_step(arch, batch, variant, device)
    t0 = time.perf_counter()
    for i in range(warmup):
        train(augment(i))
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_s, marks = time.perf_counter() - t0, []
    for i in range(warmup, warmup + steps):
        a = mark(device)
        views = augment(i)
        b = mark(device)
        train(views)
        marks.append((a, b, mark(device)))
    step = statistics.median(seconds(a, c) for a, _, c in marks)
    aug = statistics.median(seconds(a, b) for a, b, _ in marks)
    res = dict(views_per_s=2 * batch * steps / seconds(marks[0][0], marks[-1][2]), step_ms_median=1e3 * step,
               aug_ms_median=1e3 * aug, aug_share=aug / step, warmup_s=warm_s, steps=steps, warmup=warmup)
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def step_flops(arch: str, batch: int, device: torch.device) -> int:
    """Model FLOPs of one training step (forward + NT-Xent + backward), counted on an eager fp32 step."""
    from torch.utils.flop_counter import FlopCounterMode

    run, augment, _ = make_step(arch, batch, "fp32 (tf32)", device)
    views = augment(0)
    with FlopCounterMode(display=False) as counter:
        nt_xent(run.core(views)[1], run.cfg.temperature).backward()
    return int(counter.get_total_flops())


def matmul_ceiling(device: torch.device, n: int = 8192, reps: int = 20) -> dict:
    """TFLOP/s of an ``n x n x n`` bf16 matrix product (random data, after 3 warm-up products)."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start = mark(device)
    for _ in range(reps):
        a @ b
    return dict(n=n, reps=reps, dtype="bfloat16", tflops=2 * n**3 * reps / seconds(start, mark(device)) / 1e12)
