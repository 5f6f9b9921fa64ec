"""Views/s of a full SimCLR training step (augment + forward + backward + LARS step), and augmentation's share.

ResNet-18 with the CIFAR stem at batch 256 and 512 (and the small CPU encoder), on CPU and on CUDA when
present, with and without torch.compile, channels_last and bf16. Each configuration: warm-up steps, then the
median of timed steps. The ratio column compares with the fp32, eager, contiguous baseline measured in the same
run on the same device.

    python benchmarks/bench_train.py                       # CPU: small + resnet18 at batch 256
    python benchmarks/bench_train.py --device cuda --batch 256 512 --variants all
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from simclr_lib.augment import SimCLRAugment, make_views
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.optim import build_optimizer
from simclr_lib.runtime import make_grad_scaler
from simclr_lib.train import train_step

VARIANTS = {  # name -> (channels_last, dtype, compile)
    "fp32": (False, None, False),
    "channels_last": (True, None, False),
    "bf16": (False, torch.bfloat16, False),
    "bf16+channels_last": (True, torch.bfloat16, False),
    "bf16+channels_last+compile": (True, torch.bfloat16, True),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(arch: str, batch: int, variant: str, device: torch.device, steps: int, warmup: int) -> dict:
    channels_last, dtype, compile_ = VARIANTS[variant]
    cfg = SimCLRConfig(arch=arch, batch_size=batch)
    model = build_model(cfg).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, "lars", cfg.peak_lr(), cfg.weight_decay)
    step_model = torch.compile(model) if compile_ else model
    aug = SimCLRAugment(32, 0.5).to(device)
    scaler = make_grad_scaler(device, dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch * 4, 3, 32, 32), dtype=torch.uint8, device=device)
    step_t, aug_t = [], []
    for s in range(warmup + steps):
        x = images[(s % 4) * batch:(s % 4 + 1) * batch]
        _sync(device)
        t0 = time.perf_counter()
        views = make_views(x, aug, 2, gen, channels_last)  # the training loop's own calls
        _sync(device)
        t1 = time.perf_counter()
        train_step(step_model, views, opt, scaler, cfg.temperature, 2, dtype)
        _sync(device)
        if s >= warmup:
            step_t.append(time.perf_counter() - t0)
            aug_t.append(t1 - t0)
    med = statistics.median(step_t)
    return dict(views_per_s=2 * batch / med, step_ms=1e3 * med, aug_share=statistics.median(aug_t) / med)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--archs", nargs="+", default=["small", "resnet18"])
    p.add_argument("--batch", type=int, nargs="+", default=[256])
    p.add_argument("--variants", nargs="+", default=["fp32"], help=f"any of {list(VARIANTS)} or 'all'")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0: torch's default)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = list(VARIANTS) if args.variants == ["all"] else args.variants
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}")
    print("| encoder | batch | variant | views/s | step (ms) | augmentation share | vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs:
        for batch in args.batch:
            base = None
            for v in variants:
                r = measure(arch, batch, v, device, args.steps, args.warmup)
                base = base or r["views_per_s"]
                print(f"| {arch} | {batch} | {v} | {r['views_per_s']:.0f} | {r['step_ms']:.1f} | "
                      f"{r['aug_share']:.0%} | {r['views_per_s'] / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
