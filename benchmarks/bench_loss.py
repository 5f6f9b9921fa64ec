"""NT-Xent forward+backward: simclr_lib.nt_xent vs the two seed forms, time and peak memory.

Each (form, N) runs in a fresh subprocess so its peak resident memory (CPU) or peak allocated memory (CUDA) is
its own. Prints medians and the speed-up of ours over each seed form measured in the same run.

    python benchmarks/bench_loss.py                 # N = 256, 1024, 2048, D = 128, CPU
    python benchmarks/bench_loss.py --device cuda
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time, torch, torch.nn.functional as F
from simclr_lib.loss import nt_xent
from simclr_lib.teaching.popular_repos import spijkervet_nt_xent, sthalles_info_nce
form, n, d, repeats, device, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
torch.set_num_threads(threads)
fns = {"ours": lambda z: nt_xent(z, 0.5),
       "sthalles": lambda z: F.cross_entropy(*sthalles_info_nce(z, n, 2, 0.5)),
       "spijkervet": lambda z: spijkervet_nt_xent(z, 0.5)}
z0 = torch.randn(2 * n, d, device=device)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for r in range(repeats + 2):
    z = z0.clone().requires_grad_()
    if device == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    fns[form](z).backward()
    if device == "cuda": torch.cuda.synchronize()
    if r > 1: times.append(time.perf_counter() - t)  # two warm-up runs
peak = (torch.cuda.max_memory_allocated() if device == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) * 1024)
print(json.dumps(dict(median_s=statistics.median(times), peak_bytes=peak)))
"""


def run(form: str, n: int, args) -> dict:
    est = (2 * n) ** 2 * args.dim * 4 * 3  # the broadcast form keeps ~3 such tensors for backward
    if form == "spijkervet" and est > args.max_broadcast_gb * 2**30:
        return dict(skipped=f"needs ~{est / 2**30:.0f} GB (O(N^2 D)); raise --max-broadcast-gb to try")
    repeats = 1 if form == "spijkervet" and n >= 1024 else args.repeats
    out = subprocess.run([sys.executable, "-c", CHILD, form, str(n), str(args.dim), str(repeats), args.device,
                          str(args.threads)], capture_output=True, text=True)
    if out.returncode != 0:
        return dict(skipped=f"failed: {out.stderr.strip().splitlines()[-1][:80]}")
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-broadcast-gb", type=float, default=16.0)
    args = p.parse_args()
    print(f"| N | form | fwd+bwd median (ms) | peak memory (MB) | ours is faster by |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        res = {f: run(f, n, args) for f in ("ours", "sthalles", "spijkervet")}
        for form, r in res.items():
            if "skipped" in r:
                print(f"| {n} | {form} | {r['skipped']} | | |")
                continue
            ratio = r["median_s"] / res["ours"]["median_s"]
            print(f"| {n} | {form} | {1e3 * r['median_s']:.1f} | {r['peak_bytes'] / 2**20:.0f} | "
                  f"{'—' if form == 'ours' else f'{ratio:.1f}x'} |")


if __name__ == "__main__":
    main()
