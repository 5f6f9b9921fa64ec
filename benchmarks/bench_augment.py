"""Augmentation throughput: SimCLRAugment (whole batch) vs the per-image torchvision pipeline, in views/s.

Both make the paper's views (App. A): 32 px with colour strength 0.5 and no blur (CIFAR-10 recipe), 96 px with
strength 1.0 and blur (STL-10 recipe), two views per image, from uint8 images of that size. The per-image
pipeline is timed on uint8 CHW tensors (what ``augment_backend="per_image"`` runs) and on PIL images (the
classic DataLoader path). Medians of ``--repeats`` timings after one warm-up; speed-ups are measured in the same
run. CUDA rows are added whenever a GPU is present (the per-image baselines stay on the CPU).

    python benchmarks/bench_augment.py                       # 32 and 96 px, 1 and 2 threads
    python benchmarks/bench_augment.py --sizes 32 --repeats 9
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torchvision.transforms.functional as TF

from simclr_lib.augment import SimCLRAugment, augment_per_image, reference_transform

RECIPES = {32: dict(strength=0.5, blur=False), 96: dict(strength=1.0, blur=True)}


def median_seconds(fn: Callable[[], object], repeats: int, sync: bool = False) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(size: int, threads: int, args: argparse.Namespace) -> dict[str, float]:
    """views/s of each pipeline at one image size and thread count."""
    torch.set_num_threads(threads)
    recipe = RECIPES.get(size, RECIPES[96])
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8, generator=g)
    n_ref = max(8, args.ref_images * 32 * 32 // size ** 2)  # fewer images at 96 px keeps the run short
    x_ref = x[:n_ref]
    pil = [TF.to_pil_image(im) for im in x_ref]
    ref = reference_transform(size, recipe["strength"], recipe["blur"])
    aug = SimCLRAugment(size, recipe["strength"], recipe["blur"])
    gen = torch.Generator().manual_seed(1)
    out = {"SimCLRAugment": 2 * args.batch / median_seconds(lambda: aug.views(x, 2, gen), args.repeats),
           "per-image, uint8 tensors": 2 * n_ref / median_seconds(lambda: augment_per_image(x_ref, 2, ref),
                                                                  args.repeats),
           "per-image, PIL": 2 * n_ref / median_seconds(
               lambda: torch.cat([torch.stack([ref(im) for im in pil]) for _ in range(2)]), args.repeats)}
    return out


def measure_cuda(size: int, args: argparse.Namespace) -> float:
    recipe = RECIPES.get(size, RECIPES[96])
    x = torch.randint(0, 256, (args.cuda_batch, 3, size, size), dtype=torch.uint8, device="cuda")
    aug = SimCLRAugment(size, recipe["strength"], recipe["blur"])
    gen = torch.Generator(device="cuda").manual_seed(1)
    return 2 * args.cuda_batch / median_seconds(lambda: aug.views(x, 2, gen), args.repeats, sync=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 96], help="output side (32: CIFAR, 96: STL-10)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch.set_num_threads values")
    p.add_argument("--batch", type=int, default=512, help="images per SimCLRAugment call (2 views each)")
    p.add_argument("--ref-images", type=int, default=128, help="images per per-image call at 32 px (scaled by area)")
    p.add_argument("--cuda-batch", type=int, default=1024, help="images per call on CUDA")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (the median is reported)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {args.repeats} repeats, medians; speed-up = SimCLRAugment views/s "
          "divided by that row's views/s, both measured in this run\n")
    print("| size (recipe) | device | threads | pipeline | views/s | SimCLRAugment speed-up |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        recipe = RECIPES.get(size, RECIPES[96])
        label = f"{size} px (s={recipe['strength']}, blur {'on' if recipe['blur'] else 'off'})"
        for threads in args.threads:
            res = measure(size, threads, args)
            for name, vps in res.items():
                ratio = "—" if name == "SimCLRAugment" else f"{res['SimCLRAugment'] / vps:.1f}x"
                print(f"| {label} | cpu | {threads} | {name} | {vps:,.0f} | {ratio} |", flush=True)
        if torch.cuda.is_available():
            vps = measure_cuda(size, args)
            print(f"| {label} | cuda | — | SimCLRAugment | {vps:,.0f} | "
                  f"{vps / res['per-image, uint8 tensors']:.0f}x vs per-image uint8 on {threads} CPU threads |")


if __name__ == "__main__":
    main()
