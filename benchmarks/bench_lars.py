"""LARS step time on ResNet-18 (CIFAR stem) parameters: ours vs the Spijkervet-style port vs torch SGD.

The seed port syncs with the host once per parameter (``.item()``); ours keeps every norm and trust ratio on the
device. Prints medians and ratios measured in the same run.

    python benchmarks/bench_lars.py [--device cuda] [--repeats 30]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from simclr_lib.optim import LARS, param_groups
from simclr_lib.teaching.popular_repos import SpijkervetLARS


def _setup(make_opt, device: str):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).to(device)
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return make_opt(net)


def time_steps(forms: dict, device: str, repeats: int) -> dict[str, float]:
    """Median step time of each optimiser; the forms take turns every repeat, so load on a shared machine hits
    all of them alike."""
    opts = {k: _setup(f, device) for k, f in forms.items()}
    times: dict[str, list[float]] = {k: [] for k in forms}
    for r in range(repeats + 3):
        for k, opt in opts.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            opt.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if r >= 3:  # warm-up steps create the momentum buffers
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    forms = {
        "simclr_lib LARS": lambda net: LARS(param_groups(net, 1e-6), lr=0.1, weight_decay=1e-6),
        "Spijkervet-style LARS": lambda net: SpijkervetLARS(net.parameters(), lr=0.1),
        "torch SGD (momentum)": lambda net: torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
    }
    res = time_steps(forms, args.device, args.repeats)
    ours = res["simclr_lib LARS"]
    print(f"ResNet-18 ({sum(1 for _ in torchvision.models.resnet18().parameters())} tensors), {args.device}")
    print("| optimiser | step median (ms) | its time / simclr_lib LARS time |")
    print("|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {1e3 * v:.2f} | {v / ours:.2f} |")


if __name__ == "__main__":
    main()
