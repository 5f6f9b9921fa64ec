"""Stage b of ``benchmarks/full_scale.py``: views/s of the full SimCLR training step, and what bounds it.

One step is what ``simclr_lib.train.pretrain`` does per batch: the batched augmentation ``SimCLRAugment`` on the
device (two views), normalisation, encoder + head forward under autocast, NT-Xent, backward and a LARS step. Each
variant is timed with CUDA events around the augmentation and around the whole step (``perf_counter`` on a CPU),
after warm-up steps that are not counted (they hold torch.compile's compilation). Model FLOPs per step are counted
once with ``torch.utils.flop_counter.FlopCounterMode`` (fp32, eager: the count does not depend on the variant), and
set against a bf16 matrix product timed on the same device.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Optional

import torch

from simclr_lib.augment import SimCLRAugment, make_views
from simclr_lib.config import SimCLRConfig
from simclr_lib.loss import nt_xent
from simclr_lib.config import build_model
from simclr_lib.optim import build_optimizer
from simclr_lib.runtime import make_grad_scaler
from simclr_lib.train import train_step

# name -> (channels_last, autocast dtype, torch.compile mode or None)
VARIANTS: dict[str, tuple[bool, Optional[torch.dtype], Optional[str]]] = {
    "fp32 (tf32)": (False, None, None),
    "bf16": (False, torch.bfloat16, None),
    "bf16+channels_last": (True, torch.bfloat16, None),
    "bf16+channels_last+compile": (True, torch.bfloat16, "default"),
    "bf16+channels_last+compile+cudagraphs": (True, torch.bfloat16, "reduce-overhead"),
}


class StepTimer:
    """Marks points of a step: CUDA events on a GPU (read after one synchronize), ``perf_counter`` on a CPU."""

    def __init__(self, device: torch.device) -> None:
        """Events on CUDA devices, host clock elsewhere."""
        self.cuda = device.type == "cuda"
        self.marks: list[list] = []

    def mark(self) -> object:
        """Record a point in the step (an event on the current stream, or the host time)."""
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def seconds(self, a: object, b: object) -> float:
        """Seconds from mark ``a`` to mark ``b`` (call after the last step)."""
        if self.cuda:
            torch.cuda.synchronize()
            return a.elapsed_time(b) / 1e3  # type: ignore[union-attr]
        return float(b) - float(a)  # type: ignore[arg-type]


def _setup(arch: str, batch: int, variant: str, device: torch.device) -> tuple:
    """Model (+ compiled form), LARS, augmentation, generator and uint8 images for one variant."""
    channels_last, _, mode = VARIANTS[variant]
    cfg = SimCLRConfig(arch=arch, batch_size=batch)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, "lars", cfg.peak_lr(), cfg.weight_decay, cfg.momentum, cfg.lars_eta)
    step_model = torch.compile(model, mode=mode) if mode else model
    aug = SimCLRAugment(32, 0.5, False, 0.08).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (4 * batch, 3, 32, 32), dtype=torch.uint8, device=device)
    return cfg, model, step_model, opt, aug, gen, images


def make_step(arch: str, batch: int, variant: str, device: torch.device) -> tuple[Callable, Callable]:
    """``(augment(i) -> views, train(views) -> loss)`` closures of one variant's training step."""
    cfg, _, step_model, opt, aug, gen, images = _setup(arch, batch, variant, device)
    channels_last, dtype, _ = VARIANTS[variant]

    scaler = make_grad_scaler(device, dtype)

    def augment(i: int) -> torch.Tensor:
        """Two views of the i-th batch (of 4 that cycle), as the training loop makes them."""
        return make_views(images[(i % 4) * batch:(i % 4 + 1) * batch], aug, 2, gen, channels_last)

    def train(views: torch.Tensor) -> torch.Tensor:
        """The library's training step: forward, NT-Xent, backward and LARS step; the loss, detached."""
        return train_step(step_model, views, opt, scaler, cfg.temperature, 2, dtype)[0]

    return augment, train


def measure_variant(arch: str, batch: int, variant: str, device: torch.device, steps: int, warmup: int) -> dict:
    """Views/s, step and augmentation time (medians over ``steps`` after ``warmup``), peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    augment, train = make_step(arch, batch, variant, device)
    t0 = time.perf_counter()
    for i in range(warmup):
        train(augment(i))
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    timer, marks = StepTimer(device), []
    for i in range(warmup, warmup + steps):
        a = timer.mark()
        views = augment(i)
        b = timer.mark()
        train(views)
        marks.append((a, b, timer.mark()))
    step = [timer.seconds(a, c) for a, _, c in marks]
    aug = [timer.seconds(a, b) for a, b, _ in marks]
    span = timer.seconds(marks[0][0], marks[-1][2])
    res = dict(views_per_s=2 * batch * steps / span, step_ms_median=1e3 * statistics.median(step),
               aug_ms_median=1e3 * statistics.median(aug), aug_share=statistics.median(aug) / statistics.median(step),
               warmup_s=warm_s, steps=steps, warmup=warmup)
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return res


def step_flops(arch: str, batch: int, device: torch.device) -> int:
    """Model FLOPs of one training step (forward + NT-Xent + backward), counted on an eager fp32 step."""
    from torch.utils.flop_counter import FlopCounterMode

    augment, _ = make_step(arch, batch, "fp32 (tf32)", device)
    cfg = SimCLRConfig(arch=arch, batch_size=batch)
    model = build_model(cfg).to(device)
    views = augment(0)
    with FlopCounterMode(display=False) as counter:
        _, z = model(views)
        nt_xent(z, cfg.temperature).backward()
    return int(counter.get_total_flops())


def matmul_ceiling(device: torch.device, n: int = 8192, reps: int = 20, dtype: torch.dtype = torch.bfloat16) -> dict:
    """TFLOP/s of an ``n x n x n`` matrix product in ``dtype`` (random data, after 3 warm-up products)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    timer = StepTimer(device)
    start = timer.mark()
    for _ in range(reps):
        a @ b
    seconds = timer.seconds(start, timer.mark())
    return dict(n=n, reps=reps, dtype=str(dtype).replace("torch.", ""), tflops=2 * n**3 * reps / seconds / 1e12)


def release(device: torch.device) -> None:
    """Free what a variant left: compiled graphs and cached GPU memory."""
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
