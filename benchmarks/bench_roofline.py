"""The CPU roofline of the SimCLR training step: achieved GFLOP/s against this CPU's matmul ceiling.

The baseline step is ``SimCLRConfig.quick()``'s (the ``small`` encoder, batch 256 images = 512 views of 32 px, LARS,
precision "auto", channels_last), built by ``train.setup_run`` on random uint8 images; the "quickstart recipe" variants
are the step `python -m simclr_lib quickstart` trains (``config.QUICKSTART_RECIPE``: width 16, h of 1,024, batch 64,
views of 24 px).
Its FLOPs (model forward + backward and the NT-Xent matmuls) are counted with
``torch.utils.flop_counter.FlopCounterMode``; the ceiling is a large square ``torch.matmul`` in fp32 and in bf16,
measured in the same run. Each step is split into augmentation (``make_views``), forward, loss (``nt_xent``), backward
and optimiser step (+ schedule), timed with ``perf_counter`` (the CPU runs synchronously). Variants (channels_last off,
bf16, 1 thread, batch 512, oneDNN off, torch.compile) take turns with the baseline every repetition, so load on a shared
machine hits them alike; the ratio column is baseline step time / variant step time per view (> 1: faster).
``torch.profiler`` then names the ops that dominate the baseline step.

    python benchmarks/bench_roofline.py --out runs/roofline.json
    python benchmarks/bench_roofline.py --variants baseline "channels_last off" "1 thread" "batch 512" compile \
        --reps 5 --out runs/roofline2.json          # the table in docs/results.md ("The CPU roofline")
    python benchmarks/bench_roofline.py --variants baseline "1 thread" "quickstart recipe" \
        "quickstart recipe, 1 thread" --reps 7 --out runs/roofline_idle.json    # idle machine, the quickstart's step
    python benchmarks/bench_roofline.py --variants baseline "quickstart recipe, 32 px views" "quickstart recipe" \
        --reps 7 --out runs/roofline_views.json           # the quickstart's 24 px views against 32 px ones

torch.compile compiles from cold caches unless ``--warm-compile-cache`` (the compile seconds of a first run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from simclr_lib.augment import make_views
from simclr_lib.config import QUICKSTART_RECIPE, SimCLRConfig
from simclr_lib.data import ImageData
from simclr_lib.loss import nt_xent
from simclr_lib.runtime import autocast_context, native_bf16
from simclr_lib.train import Run, setup_run, train_step

PHASES = ("augment", "forward", "loss", "backward", "optimizer")
# Profiler op names -> what they are in the step (self CPU time is summed per category).
OP_CATEGORIES = {
    "conv forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::thnn_conv2d",
                     "aten::_slow_conv2d_forward", "aten::convolution"),
    "conv backward": ("aten::convolution_backward", "aten::_slow_conv2d_backward"),
    "BatchNorm fwd+bwd": ("aten::native_batch_norm", "aten::native_batch_norm_backward",
                          "aten::_native_batch_norm_legit", "aten::_batch_norm_with_update",
                          "aten::batch_norm_backward"),
    "ReLU fwd+bwd": ("aten::clamp_min_", "aten::relu_", "aten::threshold_backward", "aten::relu"),
    "matmul (head, loss)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "dtype conversions": ("aten::to", "aten::_to_copy", "aten::copy_"),
    "compiled kernels": ("CompiledFunction", "CompiledFunctionBackward", "Torch-Compiled Region"),
}


@dataclass
class Variant:
    """One way to run the step: config overrides, and the thread count / oneDNN switch around each step."""
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    threads: Optional[int] = None  # None: leave torch's setting alone
    mkldnn: bool = True
    max_reps: Optional[int] = None  # time only the first rounds (for forms that take many seconds a step)


QUICKSTART_RECIPE_SHAPE = {k: v for k, v in QUICKSTART_RECIPE.items()
                           if k in ("small_width", "small_feat_dim", "view_size", "batch_size")}
VARIANTS = {v.name: v for v in (
    Variant("baseline"),
    Variant("channels_last off", dict(channels_last=False)),
    Variant("bf16 autocast", dict(precision="bf16"), max_reps=2),
    Variant("fp32", dict(precision="fp32")),
    Variant("1 thread", threads=1),
    Variant("batch 512", dict(batch_size=512)),
    Variant("batch 128", dict(batch_size=128)),
    Variant("oneDNN off", mkldnn=False, max_reps=2),
    Variant("compile", dict(compile=True)),
    Variant("quickstart recipe", dict(QUICKSTART_RECIPE_SHAPE)),  # what `python -m simclr_lib quickstart` trains
    Variant("quickstart recipe, 1 thread", dict(QUICKSTART_RECIPE_SHAPE), threads=1),
    Variant("quickstart recipe, 32 px views", dict(QUICKSTART_RECIPE_SHAPE, view_size=None)),  # before view_size
)}
DEFAULT_VARIANTS = ("baseline", "channels_last off", "bf16 autocast", "1 thread", "batch 512", "compile")


def quick_config(**overrides: Any) -> SimCLRConfig:
    """The quickstart's config on the CPU, with no monitor, logging or progress bar."""
    return SimCLRConfig.quick(device="cpu", knn_every=0, progress=False, tensorboard=False, **overrides)


def load_average() -> float:
    """The 1-minute load average (how busy the shared machine was)."""
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def machine_info() -> dict[str, Any]:
    """CPU model, its bf16/AVX-512 flags, torch version and threads."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        lscpu = ""
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return dict(cpu=fields.get("Model name", platform.processor()).strip(), cpus=os.cpu_count(),
                family_model=f"{fields.get('CPU family', '?').strip()}/{fields.get('Model', '?').strip()}",
                avx512f="avx512f" in flags, avx512_bf16="avx512_bf16" in flags, amx="amx_tile" in flags,
                native_bf16=native_bf16(torch.device("cpu")), torch=torch.__version__,
                threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                capability=torch.backends.cpu.get_cpu_capability())


@contextlib.contextmanager
def variant_context(variant: Variant) -> Iterator[None]:
    """Apply the variant's thread count and oneDNN switch for the duration of a step."""
    before = torch.get_num_threads()
    if variant.threads:
        torch.set_num_threads(variant.threads)
    try:
        with torch.backends.mkldnn.flags(enabled=variant.mkldnn):
            yield
    finally:
        torch.set_num_threads(before)


def _time_matmul(a: torch.Tensor, b: torch.Tensor) -> float:
    t0 = time.perf_counter()
    torch.matmul(a, b)
    return time.perf_counter() - t0


def matmul_operands(dtypes: tuple[torch.dtype, ...], max_n: int = 4096,
                    target_s: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Two square n x n operands per dtype for the ceiling (a large square ``torch.matmul``).

    n is the largest power of two times 512, up to ``max_n``, whose matmul takes at most about ``target_s`` at the
    rate of a 512 probe (a CPU that emulates bf16 would otherwise spend minutes on one large matmul).
    """
    mats = {}
    for dt in dtypes:
        a, b = torch.randn(512, 512).to(dt), torch.randn(512, 512).to(dt)
        rate = 2 * 512**3 / min(_time_matmul(a, b) for _ in range(3))
        n = 512
        while n * 2 <= max_n and 2 * (2 * n) ** 3 / rate <= target_s:
            n *= 2
        mats[_name(dt)] = (torch.randn(n, n).to(dt), torch.randn(n, n).to(dt))
        _time_matmul(*mats[_name(dt)])  # warm-up
    return mats


def matmul_gflops(a: torch.Tensor, b: torch.Tensor) -> float:
    """GFLOP/s of one ``a @ b`` of square operands."""
    return 2 * a.shape[0] ** 3 / _time_matmul(a, b) / 1e9


def copy_bandwidth(mib: int = 64, reps: int = 5) -> float:
    """Median GB/s of ``torch.add(x, y, out=z)`` on fp32 tensors of ``mib`` MiB (2 reads + 1 write)."""
    x, y, z = (torch.rand(mib * 2**18) for _ in range(3))
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        torch.add(x, y, out=z)
        times.append(time.perf_counter() - t0)
    return 3 * x.numel() * 4 / statistics.median(times[1:]) / 1e9


def _name(dtype: Optional[torch.dtype]) -> str:
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def build(variant: Variant, images: torch.Tensor, batch_size: Optional[int] = None) -> Run:
    """The variant's run, built by the library's own ``setup_run`` on the first 4 batches of ``images``."""
    cfg = quick_config(**{**variant.overrides, **({"batch_size": batch_size} if batch_size else {})})
    return setup_run(cfg, ImageData(images[:4 * cfg.batch_size], None, [], "random-uint8"))


def batch_of(run: Run, step: int) -> torch.Tensor:
    """The ``step``-th batch of images (cycling through the run's images)."""
    b = run.cfg.batch_size
    k = step % (len(run.images) // b)
    return run.images[k * b:(k + 1) * b]


def phased_step(run: Run, x: torch.Tensor) -> dict[str, float]:
    """One training step split into its phases, each timed (seconds); the same calls as ``train.train_step``."""
    cfg, t = run.cfg, [time.perf_counter()]
    views = make_views(x, run.augment, cfg.n_views, run.generator, cfg.channels_last)
    t.append(time.perf_counter())
    with autocast_context(views.device, run.dtype):
        _, z = run.model(views)
    t.append(time.perf_counter())
    loss = nt_xent(z, cfg.temperature, cfg.n_views)
    t.append(time.perf_counter())
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    t.append(time.perf_counter())
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    t.append(time.perf_counter())
    return {p: t[i + 1] - t[i] for i, p in enumerate(PHASES)}


def library_step(run: Run, x: torch.Tensor) -> float:
    """Seconds of ``make_views`` + ``train.train_step`` exactly as the training loop calls them."""
    cfg, t0 = run.cfg, time.perf_counter()
    views = make_views(x, run.augment, cfg.n_views, run.generator, cfg.channels_last)
    train_step(run.model, views, run.optimizer, run.scaler, cfg.temperature, cfg.n_views, run.dtype, run.scheduler)
    return time.perf_counter() - t0


def count_flops(run: Run) -> dict[str, float]:
    """FLOPs of one step's model forward, loss (forward + backward) and model backward (no optimiser step)."""
    cfg = run.cfg
    views = make_views(batch_of(run, 0), run.augment, cfg.n_views, run.generator, cfg.channels_last)
    counts = {}
    with FlopCounterMode(display=False) as fc:
        with autocast_context(views.device, run.dtype):
            _, z = run.model(views)
    counts["forward"] = fc.get_total_flops()
    z_leaf = z.detach().requires_grad_()
    with FlopCounterMode(display=False) as fc:
        nt_xent(z_leaf, cfg.temperature, cfg.n_views).backward()
    counts["loss"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        z.backward(z_leaf.grad)
    counts["backward"] = fc.get_total_flops()
    run.optimizer.zero_grad(set_to_none=True)
    return counts


def warm_up(run: Run, variant: Variant, steps: int) -> list[float]:
    """Seconds of the first ``steps`` steps (one more for a compiled model: its first step compiles)."""
    times = []
    for s in range(steps + int(run.cfg.compile)):
        with variant_context(variant):
            times.append(library_step(run, batch_of(run, s)))
    return times


def _round(runs: dict[str, Run], variants: list[Variant], out: dict[str, dict[str, Any]], r: int,
           mats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """One round: each variant's phased step (and the baseline through ``train_step``), then the ceilings."""
    for v in variants:
        if v.max_reps is not None and r >= v.max_reps:
            continue
        run, rec = runs[v.name], out[v.name]
        with variant_context(v):
            rec["phases"].append(phased_step(run, batch_of(run, r)))
            if v.name == "baseline":
                rec["library"].append(library_step(run, batch_of(run, r + 1)))
        rec["load"].append(load_average())
    for dt, (a, b) in mats.items():
        out["ceiling"][dt].append(matmul_gflops(a, b))
    with variant_context(Variant("1 thread", threads=1)):
        out["ceiling"]["float32, 1 thread"].append(matmul_gflops(*mats["float32"]))


def measure(variants: list[Variant], images: torch.Tensor, reps: int, warmup: int,
            mats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, dict[str, Any]]:
    """Build every variant, warm it up, then time ``reps`` rounds in which the variants and the matmul ceilings
    take turns (every round also times the baseline through ``train.train_step`` itself, undecomposed)."""
    runs = {v.name: build(v, images) for v in variants}
    out = {v.name: dict(warmup_s=warm_up(runs[v.name], v, warmup), phases=[], library=[], load=[]) for v in variants}
    out["ceiling"] = {dt: [] for dt in (*mats, "float32, 1 thread")}
    for r in range(reps):
        _round(runs, variants, out, r, mats)
    flops: dict[tuple, dict[str, float]] = {}  # per batch, encoder shape, view size: dtype, layout, threads change none
    for v in variants:
        run = runs[v.name]
        shape = (run.cfg.batch_size, run.cfg.small_width, run.cfg.small_feat_dim, run.cfg.view_size)
        if shape not in flops:
            fp32 = Variant("fp32", dict(precision="fp32", small_width=run.cfg.small_width,
                                        small_feat_dim=run.cfg.small_feat_dim, view_size=run.cfg.view_size))
            flops[shape] = count_flops(build(fp32, images, run.cfg.batch_size))
        out[v.name].update(flops=flops[shape], views=run.cfg.n_views * run.cfg.batch_size,
                           dtype=_name(run.dtype), threads=v.threads or torch.get_num_threads())
    return out


def summarise(name: str, rec: dict[str, Any], ceiling: dict[str, list[float]],
              base: Optional[dict[str, Any]]) -> dict[str, Any]:
    """Medians, shares of the step, achieved GFLOP/s and the share of the matmul ceiling of its dtype (paired
    with the ceiling measured in the same round)."""
    steps = [sum(p.values()) for p in rec["phases"]]
    step = statistics.median(steps)
    phases = {p: statistics.median(x[p] for x in rec["phases"]) for p in PHASES}
    flops = sum(rec["flops"].values())
    key = rec["dtype"] if rec["dtype"] == "bfloat16" or rec["threads"] != 1 else "float32, 1 thread"
    row = dict(variant=name, dtype=rec["dtype"], views=rec["views"], reps=len(steps), step_s=step,
               views_per_s=rec["views"] / step, gflop_per_step=flops / 1e9, gflops=flops / step / 1e9,
               model_gflops=flops / (phases["forward"] + phases["loss"] + phases["backward"]) / 1e9,
               ceiling_share=statistics.median(flops / t / 1e9 / c for t, c in zip(steps, ceiling[key])), ceiling_key=key,
               shares={p: phases[p] / sum(phases.values()) for p in PHASES}, phase_s=phases,
               load=statistics.median(rec["load"]), warmup_s=rec["warmup_s"], flops=rec["flops"])
    if rec["library"]:
        row["library_step_s"] = statistics.median(rec["library"])
    if base is not None:  # per-view ratio of step times, paired round by round
        pairs = [(sum(b.values()) / base["views"]) / (sum(v.values()) / rec["views"])
                 for b, v in zip(base["phases"], rec["phases"])]
        row["speedup_vs_baseline"] = statistics.median(pairs)
    return row


def compile_payback(rows: dict[str, dict[str, Any]], budget_s: float) -> Optional[dict[str, float]]:
    """Compile seconds (first step minus a compiled step) and the steps each form fits in ``budget_s``."""
    if "compile" not in rows or "baseline" not in rows:
        return None
    comp, base = rows["compile"], rows["baseline"]
    compile_s = comp["warmup_s"][0] - comp["step_s"]
    saved = base["step_s"] - comp["step_s"]
    return dict(compile_s=compile_s, saved_per_step_s=saved,
                break_even_steps=compile_s / saved if saved > 0 else float("inf"),
                steps_in_budget_eager=budget_s / base["step_s"],
                steps_in_budget_compiled=max(0.0, budget_s - compile_s) / comp["step_s"])


def profile_ops(variant: Variant, images: torch.Tensor, steps: int, top: int) -> dict[str, Any]:
    """Self CPU time of the ops of ``train.train_step`` (forward, loss, backward, optimiser; the views are made
    outside the profiler) over ``steps`` steps: per category, the top ops by shape, and each conv layer's rate."""
    run = build(variant, images)
    cfg = run.cfg
    views = [make_views(batch_of(run, s), run.augment, cfg.n_views, run.generator, cfg.channels_last)
             for s in range(steps + 1)]
    layers = conv_layers(run.core, views[0])
    with variant_context(variant):
        train_step(run.model, views[0], run.optimizer, run.scaler, cfg.temperature, cfg.n_views, run.dtype)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for v in views[1:]:
                train_step(run.model, v, run.optimizer, run.scaler, cfg.temperature, cfg.n_views, run.dtype)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    cats = {c: sum(e.self_cpu_time_total for e in events if e.key in names) / total
            for c, names in OP_CATEGORIES.items()}
    cats["other (LARS, loss, elementwise)"] = 1 - sum(cats.values())
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return dict(step_ms=total / 1e3 / steps, categories=cats, conv_layers=conv_rates(events, layers, steps),
                top_ops=[dict(op=e.key, shapes=str(e.input_shapes)[:90], share=e.self_cpu_time_total / total,
                              ms_per_step=e.self_cpu_time_total / 1e3 / steps, calls=e.count // steps) for e in ops])


def conv_layers(model: torch.nn.Module, views: torch.Tensor) -> list[dict[str, Any]]:
    """Per conv layer: input, weight and output shapes and forward GFLOP (read with the profiler's shapes)."""
    rows = []

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
        rows.append(dict(input=list(inp[0].shape), weight=list(mod.weight.shape), output=list(out.shape),
                         gflop_fwd=2 * out.numel() * k / 1e9))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(views)
    for h in handles:
        h.remove()
    return rows


def conv_rates(events: Any, layers: list[dict[str, Any]], steps: int) -> list[dict[str, Any]]:
    """Each conv layer's forward and backward ms per step and GFLOP/s, from the profiler's shapes. The backward
    of the first layer computes the weight gradient only (the views need none): 1x its forward FLOPs, else 2x."""
    rows = []
    for i, layer in enumerate(layers):
        fwd = [e for e in events if e.key == "aten::mkldnn_convolution"
               and e.input_shapes[:2] == [layer["input"], layer["weight"]]]
        bwd = [e for e in events if e.key == "aten::convolution_backward"
               and e.input_shapes[1:3] == [layer["input"], layer["weight"]]]
        f_ms = sum(e.self_cpu_time_total for e in fwd) / 1e3 / steps
        b_ms = sum(e.self_cpu_time_total for e in bwd) / 1e3 / steps
        g = layer["gflop_fwd"]
        rows.append(dict(layer, fwd_ms=f_ms, bwd_ms=b_ms, fwd_gflops=g / f_ms * 1e3 if f_ms else None,
                         bwd_gflops=g * (1 if i == 0 else 2) / b_ms * 1e3 if b_ms else None))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = ["| variant | dtype | views | step (ms) | views/s | GFLOP/step | GFLOP/s (whole step) | share of "
             "ceiling | GFLOP/s (fwd+loss+bwd only) | " + " | ".join(PHASES) + " | per-view speed vs baseline | load |",
             "|---|---|---|---|---|---|---|---|---|" + "---|" * len(PHASES) + "---|---|"]
    for r in rows:
        shares = " | ".join(f"{100 * r['shares'][p]:.0f} %" for p in PHASES)
        speed = f"{r['speedup_vs_baseline']:.2f}x" if "speedup_vs_baseline" in r else "—"
        lines.append(f"| {r['variant']} | {r['dtype']} | {r['views']} | {1e3 * r['step_s']:.0f} | "
                     f"{r['views_per_s']:.0f} | {r['gflop_per_step']:.1f} | {r['gflops']:.1f} | "
                     f"{100 * r['ceiling_share']:.0f} % | {r['model_gflops']:.1f} | {shares} | {speed} | "
                     f"{r['load']:.1f} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), help=f"any of {list(VARIANTS)}")
    p.add_argument("--reps", type=int, default=5, help="timed rounds (the variants take turns in each)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant (+1 to compile)")
    p.add_argument("--profile-steps", type=int, default=2, help="profiled baseline steps (0: no profile)")
    p.add_argument("--budget", type=float, default=600.0, help="seconds of training for the compile payback")
    p.add_argument("--warm-compile-cache", action="store_true",
                   help="let torch.compile reuse its on-disk caches (default: compile from scratch, as a first run)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if "baseline" not in args.variants:
        args.variants.insert(0, "baseline")
    info, cfg = machine_info(), quick_config()
    if "compile" in args.variants and not args.warm_compile_cache:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True  # the compile seconds of a first run on this machine
    print(f"{info['cpu']} (family/model {info['family_model']}), {info['threads']} threads, torch {info['torch']}, "
          f"AVX-512 {info['avx512f']}, AVX512-BF16 {info['avx512_bf16']}, AMX {info['amx']} -> precision "
          f"'{cfg.precision}' runs {'bf16' if info['native_bf16'] else 'fp32'}; load {load_average():.2f}", flush=True)
    mats = matmul_operands((torch.float32, torch.bfloat16))
    images = torch.randint(0, 256, (4 * 512, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    t0, load0 = time.perf_counter(), load_average()
    recs = measure([VARIANTS[n] for n in args.variants], images, args.reps, args.warmup, mats)
    rows = {n: summarise(n, recs[n], recs["ceiling"], None if n == "baseline" else recs["baseline"])
            for n in args.variants}
    ceiling = {dt: dict(n=mats[dt.split(",")[0]][0].shape[0], gflops=statistics.median(v))
               for dt, v in recs["ceiling"].items()}
    print("matmul ceiling (median of the rounds): " + ", ".join(
        f"{k} {v['gflops']:.1f} GFLOP/s (n={v['n']})" for k, v in ceiling.items()) +
        f"; memory bandwidth (fp32 add, 64 MiB): {copy_bandwidth():.1f} GB/s")
    print(f"measured in {time.perf_counter() - t0:.0f} s, load {load0:.2f} -> {load_average():.2f}\n\n"
          f"{markdown(list(rows.values()))}\n", flush=True)
    result = dict(date=time.strftime("%Y-%m-%d"), machine=info, config=cfg.to_dict(), ceiling=ceiling,
                  rows=rows, compile=compile_payback(rows, args.budget), command=" ".join(sys.argv))
    _report_extras(result, rows)
    if args.profile_steps:
        result["profile"] = profile_ops(VARIANTS["baseline"], images, args.profile_steps, top=15)
        _print_profile(result["profile"])
    result["load_end"] = load_average()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))


def _report_extras(result: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
    """Print the undecomposed baseline step and the compile payback."""
    base = rows["baseline"]
    if "library_step_s" in base:
        print(f"baseline through train.train_step itself: {1e3 * base['library_step_s']:.0f} ms "
              f"(phased: {1e3 * base['step_s']:.0f} ms)")
    pay = result["compile"]
    if pay:
        print(f"torch.compile: {pay['compile_s']:.0f} s to compile, {1e3 * pay['saved_per_step_s']:.0f} ms saved per "
              f"step, break-even after {pay['break_even_steps']:.0f} steps; steps in the budget: "
              f"{pay['steps_in_budget_eager']:.0f} eager vs {pay['steps_in_budget_compiled']:.0f} compiled", flush=True)


def _print_profile(prof: dict[str, Any]) -> None:
    """Print the profiler's categories and top ops."""
    print(f"\nprofile of the baseline train_step, views made outside ({prof['step_ms']:.0f} ms/step of self CPU time "
          "under the profiler):")
    print("| category | share of self CPU time |\n|---|---|")
    for c, s in sorted(prof["categories"].items(), key=lambda kv: -kv[1]):
        print(f"| {c} | {100 * s:.1f} % |")
    print("\n| op | input shapes | ms/step | share |\n|---|---|---|---|")
    for o in prof["top_ops"]:
        print(f"| {o['op']} | {o['shapes']} | {o['ms_per_step']:.0f} | {100 * o['share']:.1f} % |")
    print("\n| conv layer (input -> output) | GFLOP fwd | fwd ms | fwd GFLOP/s | bwd ms | bwd GFLOP/s |\n|---|---|---|---|---|---|")
    for c in prof["conv_layers"]:
        rate = lambda g: f"{g:.1f}" if g else "—"
        print(f"| {c['input'][1:]} -> {c['output'][1:]} | {c['gflop_fwd']:.2f} | {c['fwd_ms']:.0f} | "
              f"{rate(c['fwd_gflops'])} | {c['bwd_ms']:.0f} | {rate(c['bwd_gflops'])} |")


if __name__ == "__main__":
    main()
