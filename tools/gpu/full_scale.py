"""Full scale on a GPU, one prepared command: tests, throughput, the 100-epoch run, notebooks, weights, speedrun.

    python tools/gpu/full_scale.py --out runs/gpu [--stages a,b,c,f,e03,d] [--max-minutes 8.5] [--export $OUT]
    python tools/gpu/full_scale.py --out /tmp/dry --dry-run          # every stage on the CPU at toy size (CI)

Stages, in this order; each writes ``<out>/stages/<stage>.json`` (date, device, versions, git commit, command,
status, results, notes), and one whose JSON exists is skipped (``--redo`` runs it again). a: ``pytest -m cuda``.
b: views/s of the training step (tools/gpu/throughput.py). c: the paper's CIFAR-10 recipe, 100 epochs, then
``evaluate.evaluate_frozen`` on 50k / 10k images beside ``random_init_model``. f: c's model as a bf16 checkpoint
``simclr_lib.pretrained`` loads. e03-e06: notebooks 03-06 at SIMCLR_MODE=full (c's checkpoint seeds notebook
03's run). d: the speedrun to 90 % kNN top-1. ``--set-b/c/d KEY=VALUE`` change b's plan and c's, d's configs.
Pre-training stops within ``--max-minutes`` with a checkpoint, b after a variant; the same command continues.
The state travels between calls (tools/gpu/carry.py): ``--export $OUT`` brings back what a call wrote, ``--state
.gpu_state`` carries it in. Exit status: 0 when every requested stage has its JSON, 3 when some are still to do.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from unittest import mock

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

import carry  # noqa: E402
from simclr_lib.config import SimCLRConfig, labelled_splits  # noqa: E402
from simclr_lib.data import available  # noqa: E402
from simclr_lib.evaluate import evaluate_frozen, random_init_model  # noqa: E402
from simclr_lib.runs.checkpoint import RESUME_MUST_MATCH, load_checkpoint, model_from_checkpoint  # noqa: E402
from simclr_lib.runs.checkpoint import save_checkpoint  # noqa: E402
from simclr_lib.runs.paths import RunPaths  # noqa: E402
from simclr_lib.runs.registry import pretrained  # noqa: E402
from simclr_lib.runtime import atomic_write_text  # noqa: E402
from simclr_lib.train import pretrain  # noqa: E402

STAGES = ("a", "b", "c", "f", "e03", "e04", "e05", "e06", "d")  # run order: f right after c, the long d last
NOTEBOOKS = {"e03": "03_training_loop_lars", "e04": "04_linear_evaluation", "e05": "05_tsne_embeddings",
             "e06": "06_experiments"}
GPU_MINUTES = {"a": 2, "b": 1, "c": 1, "d": 1, "e03": 5, "e04": 8, "e05": 4, "e06": 9, "f": 0.5}  # to start
EVAL_RESERVE_S = 90.0  # seconds kept for stage c's evaluation (evaluate_frozen on the GPU)
TARGETS = dict(views_per_s=50_000, linear_top1=0.86, pretrain_seconds=300, knn_top1=0.90, speedrun_seconds=1200)
ANCHOR = "dkobak/simclr-cifar10 on an A100: 11.9 s/epoch; 100 epochs -> 85.6 % linear probe in 20 min"
C_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]  # the probe's C, chosen on a class-balanced 20 % of the train images
RECIPE = dict(dataset="cifar10", arch="resnet18", cifar_stem=True, batch_size=512, optimizer="lars", lr=None,
              lr_scaling="sqrt", color_strength=0.5, blur=False, warmup_epochs=10, knn_every=10, knn_k=200)
C_RECIPE = dict(RECIPE, epochs=100, temperature=0.5, knn_subset=10_000, checkpoint_every=5)  # App. B.9
D_RECIPE = dict(RECIPE, epochs=400, temperature=0.2, knn_subset=50_000, checkpoint_every=10)  # a first guess
DRY_RECIPE = dict(dataset="shapes", subset=256, arch="small", batch_size=64, epochs=1, warmup_epochs=0, knn_every=1,
                  knn_k=20, knn_subset=256, checkpoint_every=1, device="cpu")
B_PLAN = dict(arch="resnet18", batches=[512, 1024], steps=30, warmup=5, matmul_n=8192)  # and every variant
B_DRY_PLAN = dict(arch="small", batches=[32], variants=["fp32 (tf32)"], steps=3, warmup=1, matmul_n=256)


@dataclass
class Ctx:
    """One invocation: its options, output folder, device, time budget and the command that started it."""
    args: argparse.Namespace
    out: Path
    dry: bool
    device: torch.device
    deadline: float  # time.perf_counter() value at which this call's budget ends
    wall_start: float  # time.time() at the start (files written since then are exported)
    command: str
    data: dict = field(default_factory=dict)
    ran: int = 0  # stages (or parts of b) run in this call

    def left(self) -> float:
        """Seconds of this call's budget left."""
        return self.deadline - time.perf_counter()

    def record(self, kind: str, name: str) -> Path:
        """Stage ``name``'s JSON: ``kind`` "stages" (its result) or "progress" (its state between calls)."""
        return self.out / kind / f"{name}.json"

    def is_done(self, name: str) -> bool:
        """Its JSON exists, in this mode (dry run or not); on the GPU not skipped (for want of jupyter)."""
        rec = read_json(self.record("stages", name))
        return rec is not None and bool(rec.get("dry_run")) == self.dry and (self.dry or rec["status"] != "skipped")


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_text(json.dumps(obj, indent=2, default=str), path)


def read_json(path: Path) -> Optional[dict]:
    """The JSON object at ``path``, or None when the file does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def meta(ctx: Ctx) -> dict:
    """The fields every stage JSON carries; the commit from git, or on the GPU machine (no .git) from the stamp
    tools/gpu/prepare.sh wrote."""
    try:
        git = [subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
               for a in (["rev-parse", "HEAD"], ["status", "--porcelain", "-uno"])]
        commit = dict(git_commit=git[0], git_dirty=bool(git[1]))
    except (OSError, subprocess.SubprocessError):
        commit = read_json(ROOT / ".gpu_data" / "git_commit.json") or dict(git_commit="unknown", git_dirty=None)
    device = (torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else
              f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")
    return dict(date=utc_now(), device=device, torch=torch.__version__, cuda=torch.version.cuda,
                python=platform.python_version(), **commit, command=ctx.command, dry_run=ctx.dry, data=ctx.data)


def outcome(status: str, results: dict, *notes: str) -> dict:
    """What a stage function returns: its status, results and notes (the driver adds the metadata)."""
    return dict(status=status, results=results, notes=list(notes))


def overrides(ctx: Ctx, name: str) -> dict[str, Any]:
    """Stage ``name``'s ``--set-<name> KEY=VALUE`` options (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for key, sep, value in (item.partition("=") for item in getattr(ctx.args, f"set_{name}")):
        if not sep:
            raise SystemExit(f"--set-{name} takes KEY=VALUE, got {key!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


# --- stages a and b: the CUDA tests, the throughput of the training step -----------------------------------------
def stage_a(ctx: Ctx) -> dict:
    """``pytest -m cuda`` in a subprocess: its summary counts and output tail (exit 5: no CUDA test found)."""
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py" if ctx.dry else "tests/", "-o",
           "addopts=", "-q", "-rfE", "-p", "no:cacheprovider"]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(120.0, ctx.left()))
        rc, text = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = None, f"timed out after {exc.timeout:.0f} s\n{exc.stdout or ''}"
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text[-500:])}
    status = {0: "passed", 5: "no_tests"}.get(rc, "timeout" if rc is None else "failed")  # type: ignore[arg-type]
    return outcome(status, dict(pytest_command=shlex.join(cmd), returncode=rc, counts=counts, output_tail=text[-4000:],
                                failed_tests=re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)))


def b_row(ctx: Ctx, plan: dict, batch: int, variant: str, flops: int, ceiling: float) -> dict:
    """Measure one (batch, variant); a failure (compile, CUDA graphs) is recorded in the row, not raised."""
    import throughput

    try:
        r = throughput.measure_variant(plan["arch"], batch, variant, ctx.device, plan["steps"], plan["warmup"])
        tflops = flops * r["views_per_s"] / (2 * batch) / 1e12
        r.update(model_tflops=tflops, share_of_matmul_ceiling=tflops / ceiling)
    except Exception as exc:  # noqa: BLE001
        r = dict(error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}")
    finally:  # free what the variant left: compiled graphs, cached GPU memory
        torch._dynamo.reset()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return dict(batch=batch, variant=variant, **r)


def stage_b(ctx: Ctx) -> Optional[dict]:
    """Throughput table (``B_PLAN``, ``--set-b``); resumable per (batch, variant) through ``progress/b.json``.

    Returns:
        The stage's outcome, or None when the budget ran out first.
    """
    import throughput

    plan = dict(B_DRY_PLAN if ctx.dry else dict(B_PLAN, variants=list(throughput.VARIANTS)), **overrides(ctx, "b"))
    plan["variants"] = plan["variants"].split(",") if isinstance(plan["variants"], str) else plan["variants"]
    path = ctx.record("progress", "b")
    prog = read_json(path) or dict(rows=[], flops={}, ceiling=None)
    prog["ceiling"] = prog["ceiling"] or throughput.matmul_ceiling(ctx.device, n=plan["matmul_n"])
    for batch, v in ((b, v) for b in plan["batches"] for v in plan["variants"]):
        if any(r["batch"] == batch and r["variant"] == v for r in prog["rows"]):
            continue
        if ctx.ran and not ctx.dry and ctx.left() < (120 if "compile" in v else 30):
            return None
        print(f"  b: batch {batch}, {v}", flush=True)
        if str(batch) not in prog["flops"]:
            prog["flops"][str(batch)] = throughput.step_flops(plan["arch"], batch, ctx.device)
        prog["rows"].append(b_row(ctx, plan, batch, v, prog["flops"][str(batch)], prog["ceiling"]["tflops"]))
        ctx.ran += 1
        write_json(path, prog)
    ok = [r for r in prog["rows"] if "error" not in r]
    best = max(ok, key=lambda r: r["views_per_s"]) if ok else None
    table = ["| batch | variant | views/s | step ms | augmentation share | model TFLOP/s | of bf16 matmul |",
             "|---|---|---|---|---|---|---|"] + [
        f"| {r['batch']} | {r['variant']} | failed: {r['error'][:80]} | | | | |" if "error" in r else
        f"| {r['batch']} | {r['variant']} | {r['views_per_s']:,.0f} | {r['step_ms_median']:.1f} | {r['aug_share']:.0%}"
        f" | {r['model_tflops']:.1f} | {r['share_of_matmul_ceiling']:.1%} |" for r in prog["rows"]]
    res = dict(plan, matmul_ceiling=prog["ceiling"], flops_per_step=prog["flops"], rows=prog["rows"], table=table,
               best=best, target_met=bool(best and best["views_per_s"] >= TARGETS["views_per_s"]))
    return outcome("ok" if ok else "failed", res, *["dry run: the small encoder, batch 32, on the CPU"] * ctx.dry)


# --- pre-training within the call's budget (stages c and d) -----------------------------------------------------
def stage_config(ctx: Ctx, name: str) -> SimCLRConfig:
    """Stage ``name``'s SimCLRConfig: the toy one in a dry run, else its recipe; then ``--set-<name>``."""
    recipe = DRY_RECIPE if ctx.dry else dict(C_RECIPE if name == "c" else D_RECIPE, data_dir=ctx.data["data_dir"],
                                             device=ctx.device.type)
    return SimCLRConfig(**{**recipe, "progress": False, "tensorboard": False, "seed": 0,
                           "out_dir": str(ctx.out / name / "run"), **overrides(ctx, name)})


def reached(history: list[dict], target: Optional[float]) -> Optional[dict]:
    """The first epoch record whose kNN top-1 reaches ``target``."""
    return next((h for h in history if h.get("knn_top1", -1.0) >= target), None) if target is not None else None


def budget_stop(ctx: Ctx, cfg: SimCLRConfig, reserve_s: float) -> Callable[[dict], bool]:
    """A ``pretrain`` callback: stop after an epoch (``pretrain`` checkpoints it) when one more, as long as the
    longest so far with its end (kNN monitor, checkpoint), and ``reserve_s`` would overrun this call's budget.

    The library's time budget (``SimCLRConfig.minutes``) re-plans the cosine to end in time; a fixed recipe spread
    over several calls needs only to stop and resume.
    """
    clock = [time.perf_counter(), 0.0]  # the last epoch's end, the longest epoch (the first holds the set-up)

    def stop(record: dict) -> bool:
        """True (stop) when one more epoch and the reserve would overrun the budget."""
        now = time.perf_counter()
        clock[:] = [now, max(clock[1], now - clock[0])]
        return record["epoch"] < cfg.epochs and ctx.left() < clock[1] + reserve_s

    return stop


def latest(ctx: Ctx, name: str) -> tuple[Path, int]:
    """The further-along checkpoint of stage ``name``'s run and its epoch (-1: none): the run's own (a warm
    machine) or the portable one carried from an earlier call."""
    found = [(load_checkpoint(p)["epoch"] if p.is_file() else -1, i, p) for i, p in
             enumerate((ctx.out / "portable" / f"{name}.pt", RunPaths(ctx.out / name / "run").checkpoint))]
    epoch, _, path = max(found)
    return path, epoch


def pretrain_budgeted(ctx: Ctx, name: str, cfg: SimCLRConfig,
                      target: Optional[float] = None) -> tuple[Optional[torch.nn.Module], dict]:
    """Train, or continue, stage ``name``'s run within the budget, until ``cfg.epochs`` or kNN top-1 ``target``.

    Returns:
        The model (None while unfinished) and the progress record (calls, history, portable resumes).
    """
    path = ctx.record("progress", name)
    prog = read_json(path) or dict(calls=[], portable_resumes=[])
    source, start = latest(ctx, name)
    prog["portable_resumes"] += [start] if start > 0 and source.parent.name == "portable" else []
    t0, history = time.perf_counter(), load_checkpoint(source)["history"] if start > 0 else []
    if start >= cfg.epochs or reached(history, target):
        model, _, info = pretrained(source, map_location=ctx.device)
        history, stopped = info["history"], "already trained"
    else:
        stop = budget_stop(ctx, cfg, 0.0 if ctx.dry else EVAL_RESERVE_S if target is None else 30.0)
        result = pretrain(cfg, resume=source if start > 0 else False,
                          callbacks=[stop, lambda r: reached([r], target) is not None])
        model, history = result.model, result.history
        stopped = "target" if reached(history, target) else "budget" if history[-1]["epoch"] < cfg.epochs else "done"
    finished = history[-1]["epoch"] >= cfg.epochs or reached(history, target) is not None
    prog["calls"].append(dict(date=utc_now(), from_epoch=max(start, 0), to_epoch=history[-1]["epoch"],
                              wall_s=time.perf_counter() - t0, stopped=stopped, command=ctx.command))
    prog["history"] = history
    if (not finished or name == "c") and RunPaths(cfg.out_dir).checkpoint.is_file():  # f, e03-e06 need c's
        prog["portable"] = carry.save_portable(RunPaths(cfg.out_dir).checkpoint, ctx.out / "portable" / f"{name}.pt")
    write_json(path, prog)
    return (model if finished else None), prog


def training_summary(cfg: SimCLRConfig, prog: dict, target: Optional[float] = None) -> dict:
    """Training seconds (the epochs' step loops, up to the target), views/s and the kNN curve of a finished run."""
    history, hit = prog["history"], reached(prog["history"], target)
    upto = [h for h in history if hit is None or h["epoch"] <= hit["epoch"]]
    train_s = sum(h["seconds"] for h in upto)
    return dict(epochs_run=len(history), train_seconds=train_s, peak_lr=cfg.peak_lr(),
                views_per_s=sum(h["seconds"] * h["views_per_s"] for h in upto) / max(train_s, 1e-9),
                wall_seconds=sum(c["wall_s"] for c in prog["calls"]), final_loss=history[-1]["loss"],
                knn_curve=[[h["epoch"], h["knn_top1"]] for h in history if "knn_top1" in h], calls=prog["calls"],
                resumed_from_portable_at=prog["portable_resumes"])


def frozen_scores(model: torch.nn.Module, splits: tuple, dry: bool) -> dict:
    """``evaluate_frozen`` on h: the linear probe (C chosen from ``C_GRID``) and kNN (k = 200), as fractions."""
    t0 = time.perf_counter()
    s = evaluate_frozen(model, *splits, C=[0.1, 1.0] if dry else C_GRID, device=next(model.parameters()).device)
    p = s["probe_h_result"]
    return dict(linear_top1=s["probe_h"], linear_train_top1=p["train_top1"], C=p["C"], C_val_top1=p.get(
        "C_val_top1"), probe_iterations=p["iterations"], knn_top1=s["knn_h"], knn="k=200, cosine, votes exp(cos/0.1)",
        n_train=len(splits[0]), n_test=len(splits[1]), seconds=time.perf_counter() - t0)


def stage_c(ctx: Ctx) -> Optional[dict]:
    """Pre-train with the paper's CIFAR-10 recipe (App. B.9), then evaluate it and the random-init model."""
    cfg = stage_config(ctx, "c")
    model, prog = pretrain_budgeted(ctx, "c", cfg)
    if model is None or (ctx.ran and not ctx.dry and ctx.left() < EVAL_RESERVE_S):
        return None
    splits = labelled_splits(cfg, *((512, 256) if ctx.dry else (50_000, 10_000)))
    trained = frozen_scores(model.to(ctx.device), splits, ctx.dry)
    baseline = frozen_scores(random_init_model(cfg, device=ctx.device), splits, ctx.dry)
    summary = training_summary(cfg, prog)
    return outcome("ok", dict(
        config=cfg.to_dict(), training=summary, trained=trained, random_init=baseline, anchor=ANCHOR,
        gain_points=100 * (trained["linear_top1"] - baseline["linear_top1"]),
        target_met=dict(linear=trained["linear_top1"] >= TARGETS["linear_top1"],
                        time=summary["train_seconds"] <= TARGETS["pretrain_seconds"])),
        "train_seconds: the epochs' step loops; wall_seconds: the pre-training calls", *[
            f"resumed from a portable checkpoint (bf16, LARS momentum restarted: not bit-exact) at epochs "
            f"{prog['portable_resumes']}"] * bool(prog["portable_resumes"]))


def stage_d(ctx: Ctx) -> Optional[dict]:
    """Train the speedrun recipe until kNN top-1 (k=200, all 10k test images) reaches the target, or to the end."""
    cfg, target = stage_config(ctx, "d"), ctx.args.target_knn
    model, prog = pretrain_budgeted(ctx, "d", cfg, target=target)
    if model is None:
        return None
    hit, summary = reached(prog["history"], target), training_summary(cfg, prog, target)
    return outcome("ok", dict(
        config=cfg.to_dict(), target_knn=target, reached=hit is not None, epoch_reached=hit and hit["epoch"],
        knn_at_target=hit and hit["knn_top1"], time_to_target_train_s=hit and summary["train_seconds"],
        training=summary, target_met=bool(hit and summary["train_seconds"] <= TARGETS["speedrun_seconds"])),
        "kNN: the first knn_subset train images (50,000 = all) against all test images; the time to target sums "
        "the epochs' step loops up to it")


# --- stages e03-e06 and f: the notebooks at full scale, the trained weights -------------------------------------
def seed_series_checkpoint(ctx: Ctx) -> str:
    """Put stage c's checkpoint where the notebooks look for the series' full run, when its settings are those
    a resume of it must keep (``RESUME_MUST_MATCH``); says what it did."""
    from simclr_lib.teaching import notebook

    s = notebook.setup(smoke=False, mode="full", data_dir=ctx.data.get("data_dir"))
    src, epoch = latest(ctx, "c")
    if s.checkpoint.is_file() or not ctx.is_done("c"):
        return f"present at {s.checkpoint}" if s.checkpoint.is_file() else "stage c not done: notebook 03 trains"
    want = notebook.series_config(s).to_dict()
    have = SimCLRConfig.from_dict(load_checkpoint(src)["config"]).to_dict()
    diff = [k for k in RESUME_MUST_MATCH if want[k] != have[k]]
    if diff:
        return f"not seeded: series_config(full) differs from stage c in {diff}; notebook 03 trains its own model"
    s.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, s.checkpoint)
    return f"seeded from stage c's checkpoint (epoch {epoch}) at {s.checkpoint}"


def execute_notebook(ctx: Ctx, src: Path, dest: Path) -> dict:
    """Run the notebook through nbclient (a dry run keeps only the cells up to ``setup(``) and store it."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(src, as_version=4)
    if ctx.dry:
        nb.cells = nb.cells[:1 + next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "setup(" in
                                      c.source)]
    timeout = 300 if ctx.dry else int(max(120.0, ctx.left()))
    t0, status, error = time.perf_counter(), "ok", None
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(src.parent)}}).execute()
    except (CellTimeoutError, DeadKernelError, CellExecutionError) as exc:
        status, error = "timeout" if isinstance(exc, CellTimeoutError) else "failed", " ".join(str(exc).split())[-3000:]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    code = [c for c in nb.cells if c.cell_type == "code"]
    return dict(status=status, error=error, seconds=time.perf_counter() - t0, cell_timeout_s=timeout,
                code_cells=len(code), executed=sum(c.get("execution_count") is not None for c in code),
                stored=str(dest.relative_to(ctx.out)))


def stage_e(ctx: Ctx, name: str) -> dict:
    """One notebook at full scale (dry run: its head in smoke mode), stored with its outputs under ``e/``."""
    missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
    if missing:
        return outcome("skipped", dict(notebook=NOTEBOOKS[name]), f"{missing} not importable: carry the wheels")
    mode = "smoke" if ctx.dry else "full"
    seeded = "dry run: not seeded" if ctx.dry else seed_series_checkpoint(ctx)
    env = dict(SIMCLR_MODE=mode, SIMCLR_SMOKE="1" if ctx.dry else "0", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    with mock.patch.dict(os.environ, env):  # the kernel inherits them
        r = execute_notebook(ctx, ROOT / "notebooks" / f"{NOTEBOOKS[name]}.ipynb",
                             ctx.out / "e" / f"{NOTEBOOKS[name]}.{mode}.ipynb")
    return outcome(r.pop("status"), dict(notebook=NOTEBOOKS[name], mode=mode, **r), f"series checkpoint: {seeded}",
                   *["dry run: the cells up to setup() in smoke mode (CI runs whole notebooks with nbval)"] * ctx.dry)


def stage_f(ctx: Ctx) -> dict:
    """Stage c's model as a bf16 simclr_lib checkpoint (config, history, metrics), reloaded by ``pretrained``."""
    src, epoch = latest(ctx, "c")
    if epoch < 0:
        return outcome("failed", {}, "stage c has no checkpoint: run stage c first")
    ckpt, dest = load_checkpoint(src), ctx.out / "f" / "weights_bf16.pt"
    metrics = dict((read_json(ctx.record("stages", "c")) or {}).get("results", {}).get("trained", {}), epochs=epoch)
    save_checkpoint(dict({k: ckpt.get(k) for k in ("config", "epoch", "step", "history", "version")},
                         model=carry.bf16(ckpt["model"]), metrics=metrics), dest)
    back, cfg, info = pretrained(dest)
    x = torch.rand(8, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        h0, h1 = model_from_checkpoint(ckpt, src)[0].encoder(x), back.encoder(x)
    return outcome("ok", dict(
        file="f/weights_bf16.pt", bytes=dest.stat().st_size, sha256=info["sha256"], epoch=epoch, metrics=metrics,
        n_params=sum(p.numel() for p in back.parameters()), config=cfg.to_dict(),
        reload_max_rel_diff_h=float((h0 - h1).abs().max() / h0.abs().max().clamp_min(1e-12)),
        load="model, cfg, info = simclr_lib.pretrained('runs/gpu_results/f/weights_bf16.pt')"))


# --- the driver -------------------------------------------------------------------------------------------------
def stage_list(spec: str) -> list[str]:
    """``"a,c,e"`` -> ordered stage names (``e`` means e03..e06)."""
    names = [s for item in spec.split(",") if item.strip()
             for s in ([n for n in STAGES if n.startswith("e0")] if item.strip() == "e" else [item.strip()])]
    bad = [s for s in names if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown stage {bad[0]!r}; choose from {', '.join(STAGES)} (e = e03..e06)")
    return [s for s in STAGES if s in names]


def prepare_data(ctx: Ctx) -> dict:
    """Dry run: generated ``shapes``. Else CIFAR-10 from the pack (written once under ``<out>/data``) or the data
    dir; ``SIMCLR_DATA_DIR`` is set for every subprocess and notebook."""
    if ctx.dry:
        return dict(dataset="shapes", data_dir=None, source="generated (dry run)")
    pack, report = ctx.args.data_pack, None
    if pack.is_file():
        data_dir, report = ctx.out / "data", carry.unpack(pack, ctx.out / "data")
    else:
        data_dir = Path(os.environ.get("SIMCLR_DATA_DIR", ROOT / "data"))
        ok, why = available("cifar10", data_dir)
        if not ok:
            raise SystemExit(f"no CIFAR-10: no pack at {pack} and {why}; run tools/gpu/prepare.sh, carry .gpu_data")
    os.environ["SIMCLR_DATA_DIR"] = str(data_dir)
    return dict(dataset="cifar10", data_dir=str(data_dir), unpack=report)


def run_stage(ctx: Ctx, name: str) -> bool:
    """Run one stage and write its JSON; False when it stopped unfinished (the budget ran out)."""
    fns: dict[str, Callable[[Ctx], Optional[dict]]] = dict(a=stage_a, b=stage_b, c=stage_c, d=stage_d, f=stage_f)
    print(f"== stage {name} ({ctx.left() / 60:.1f} min of budget left)", flush=True)
    t0 = time.perf_counter()
    try:
        res = fns[name](ctx) if name in fns else stage_e(ctx, name)
    except Exception as exc:  # noqa: BLE001 (recorded: one broken stage must not hide the others' results)
        res = outcome("failed", {}, f"{type(exc).__name__}: {exc}", traceback.format_exc()[-4000:])
    ctx.ran += 1
    if res is None:
        print(f"   stage {name} stopped at the budget; run the same command again to continue", flush=True)
        return False
    write_json(ctx.record("stages", name), dict(stage=name, **meta(ctx), **res,
                                                wall_seconds_this_call=time.perf_counter() - t0))
    print(f"   stage {name}: {res['status']} -> {ctx.record('stages', name)}", flush=True)
    return True


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="results folder (runs/gpu on the GPU machine)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated, e.g. a,b,c or e (= e03..e06)")
    p.add_argument("--redo", default="", help="stages to run again although their JSON exists")
    p.add_argument("--dry-run", action="store_true", help="every stage on the CPU at toy size (CI)")
    p.add_argument("--max-minutes", type=float, default=8.0, help="this call's budget (a device call: 10 min)")
    p.add_argument("--data-pack", type=Path, default=ROOT / ".gpu_data" / "cifar10_jpeg.npz")
    p.add_argument("--state", type=Path, default=None, help="carried state from earlier calls (.gpu_state)")
    p.add_argument("--export", type=Path, default=None, help="copy what this call wrote there ($OUT)")
    for s, what in (("b", "B_PLAN: batches, variants, steps, warmup, matmul_n"), ("c", "SimCLRConfig"),
                    ("d", "SimCLRConfig")):
        p.add_argument(f"--set-{s}", action="append", default=[], metavar="KEY=VALUE", help=f"stage {s}: {what}")
    p.add_argument("--target-knn", type=float, default=TARGETS["knn_top1"], help="stage d's kNN top-1 target")
    p.add_argument("--device", default="cuda", help="'cpu' only to rehearse the real stages on a CPU machine")
    args = p.parse_args(argv)
    for key in ("out", "state", "export", "data_pack"):  # relative to where the command was typed
        if getattr(args, key) is not None:
            setattr(args, key, getattr(args, key).resolve())
    return args


def make_ctx(args: argparse.Namespace) -> Ctx:
    """Device (CPU in a dry run; else CUDA, with tf32 and cuDNN autotuning), budget and output folder."""
    device = torch.device("cpu" if args.dry_run else args.device)
    if args.dry_run:
        torch.set_num_threads(1)  # toy-sized ops: a second thread only spins against CI's other jobs
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this command is for a GPU machine (use --dry-run on a CPU)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    return Ctx(args=args, out=args.out, dry=args.dry_run, device=device, command=shlex.join([sys.executable,
               *sys.argv]), deadline=time.perf_counter() + 60 * args.max_minutes, wall_start=time.time() - 1)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the requested stages in order until done or out of budget; export; 0 if all done, else 3.

    The first stage of a call always starts, a later one only if ``GPU_MINUTES`` of it are left.
    """
    args = parse_args(argv)
    os.chdir(ROOT)  # the notebooks' helpers find the repository from the working directory
    ctx = make_ctx(args)
    imported = carry.import_state(args.state, ctx.out)
    if imported:
        print(f"imported from {args.state}: {', '.join(imported)}", flush=True)
    ctx.data = prepare_data(ctx)
    wanted, redo = stage_list(args.stages), stage_list(args.redo)
    if "b" in redo:
        ctx.record("progress", "b").unlink(missing_ok=True)  # measure every variant again
    for name in wanted:
        if ctx.is_done(name) and name not in redo:
            print(f"== stage {name}: done earlier, skipped ({ctx.record('stages', name)})", flush=True)
            continue
        going_on = (ctx.dry or not ctx.ran or ctx.left() >= 60 * GPU_MINUTES[name]) and run_stage(ctx, name)
        if args.export:  # after every stage: a call killed later still brings this much back
            carry.export(ctx.out, args.export, ctx.wall_start)
        if not going_on:
            break
    pending = [s for s in wanted if not ctx.is_done(s)]
    if args.export:
        m = carry.export(ctx.out, args.export, ctx.wall_start)
        print(f"exported {len(m['files'])} files in {len(m['parts'])} part(s) to {args.export}; left out (over "
              f"the limit): {m['dropped_over_limit'] or 'none'}")
    print("ALL DONE" if not pending else f"PENDING: {' '.join(pending)} (run the same command again)", flush=True)
    return 0 if not pending else 3


if __name__ == "__main__":
    sys.exit(main())
