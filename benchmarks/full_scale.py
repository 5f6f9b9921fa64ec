"""Full scale on a GPU, one prepared command: tests, throughput, 100-epoch run, speedrun, notebooks, weights.

    python benchmarks/full_scale.py --out runs/gpu [--stages a,b,c,d,e,f] [--max-minutes 8] [--export $OUT]
    python benchmarks/full_scale.py --out /tmp/dry --dry-run          # every stage on the CPU at toy size

Stages (each writes ``<out>/stages/<stage>.json`` with the date, device, torch version, git commit and the exact
command before the next one starts; a stage whose JSON exists is skipped, ``--redo`` runs it again):

  a    ``pytest -m cuda tests/ -o addopts=""``: the CUDA tests, their counts and the output's tail.
  b    views/s of the full training step (augment on the device + forward + backward + LARS), ResNet-18 CIFAR
       stem, batch 512 and 1024: fp32 (tf32), bf16, bf16 + channels_last, + torch.compile, + CUDA graphs; the
       augmentation's share of the step; model TFLOP/s against a bf16 matmul timed on the same GPU.
  c    the paper's CIFAR-10 recipe (ResNet-18, batch 512, LARS, tau 0.5, sqrt LR rule, colour 0.5, no blur, 10
       warm-up epochs, 100 epochs), then a linear probe (C chosen on a class-balanced 20 % of the training images)
       and kNN (k = 200, cosine) on the 10,000 test images, with the random-init encoder beside it.
  d    the speedrun: ResNet-18 to 90 % kNN top-1 (k = 200, full test set) in the least training time; the recipe
       is set with ``--set-d KEY=VALUE`` (any SimCLRConfig field), kNN every ``knn_every`` epochs.
  e    notebooks 03-06 at SIMCLR_MODE=full through nbclient (one sub-stage each: e03 e04 e05 e06); stage c's
       checkpoint is put where notebook 03 looks for the series' run, so it is not trained twice.
  f    stage c's weights in bf16, cut into parts of at most 16 MiB, with the config and the metrics.

They run in the order a b c f e03 e04 e05 e06 d (f needs c; the long speedrun goes last).
Pre-training (c, d) and the throughput table (b) resume where they stopped: ``--max-minutes`` is this call's
budget, and a stage that would overrun it stops cleanly at a checkpoint; run the same command again. Between
calls on a fresh machine the state travels: ``--export $OUT`` brings back what this call wrote,
``benchmarks/gpu/collect.py`` files it, and ``--state .gpu_state`` carries it into the next call (docs/gpu.md).
Exit status: 0 when every requested stage has its JSON, 3 when some are still to do.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks" / "gpu"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import torch  # noqa: E402

import artifacts  # noqa: E402

if TYPE_CHECKING:
    from simclr_lib.config import SimCLRConfig

STAGES = ("a", "b", "c", "f", "e03", "e04", "e05", "e06", "d")  # run order: f right after c, the long d last
NOTEBOOKS = {"e03": "03_training_loop_lars", "e04": "04_linear_evaluation", "e05": "05_tsne_embeddings",
             "e06": "06_experiments"}
GPU_MINUTES = {"a": 2, "b": 6, "c": 7, "d": 20, "e03": 5, "e04": 8, "e05": 4, "e06": 9, "f": 0.5}  # estimates
RESUMABLE = ("b", "c", "d")
EVAL_RESERVE_S = 90  # GPU seconds kept for stage c's evaluation after its last epoch
TARGETS = dict(views_per_s=50_000, linear_top1=0.86, pretrain_seconds=300, knn_top1=0.90, speedrun_seconds=1200)
ANCHOR = "dkobak/simclr-cifar10 on an A100: 11.9 s/epoch; 100 epochs -> 85.6 % linear probe in 20 min"
RANDOM_INIT_SEED = 12345


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


# --------------------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------------------
def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git_commit() -> dict:
    """HEAD and whether tracked files differ from it; on the GPU machine (no .git) the stamp prepare.sh wrote."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=20,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return dict(git_commit=sha, git_dirty=bool(dirty), git_source="git")
    except (OSError, subprocess.SubprocessError):
        stamp = ROOT / ".gpu_data" / "git_commit.json"
        if stamp.is_file():
            return dict(json.loads(stamp.read_text()), git_source=".gpu_data/git_commit.json (prepare.sh)")
        return dict(git_commit="unknown", git_dirty=None, git_source="none")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture, cores and torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def meta(ctx: Ctx) -> dict:
    """The fields every stage JSON carries."""
    return dict(date=utc_now(), device=device_name(ctx.device), torch=torch.__version__, cuda=torch.version.cuda,
                python=platform.python_version(), **git_commit(), command=ctx.command, dry_run=ctx.dry,
                data=ctx.data)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    from simclr_lib.runtime import atomic_write_text

    atomic_write_text(json.dumps(obj, indent=2, default=str), path)


def read_json(path: Path) -> Optional[dict]:
    """The JSON object at ``path``, or None when the file does not exist."""
    return json.loads(path.read_text()) if path.is_file() else None


def stage_path(ctx: Ctx, name: str) -> Path:
    """Where stage ``name`` writes its record."""
    return ctx.out / "stages" / f"{name}.json"


def progress_path(ctx: Ctx, name: str) -> Path:
    """Where a resumable stage keeps its progress between calls."""
    return ctx.out / "progress" / f"{name}.json"


def is_done(ctx: Ctx, name: str) -> bool:
    """A stage is done when its JSON exists, was made in the same mode (dry run or not) and, on the GPU, was not
    skipped (a notebook skipped for want of jupyter runs once the wheels are carried)."""
    rec = read_json(stage_path(ctx, name))
    return rec is not None and bool(rec.get("dry_run")) == ctx.dry and (ctx.dry or rec.get("status") != "skipped")


def outcome(status: str, results: dict, notes: Optional[list[str]] = None) -> dict:
    """What a stage function returns: its status, results and notes (the driver adds the metadata)."""
    return dict(status=status, results=results, notes=notes or [])


# --------------------------------------------------------------------------------------------------------------
# Stage a: the CUDA tests
# --------------------------------------------------------------------------------------------------------------
def child_env(ctx: Ctx, **extra: str) -> dict[str, str]:
    """The environment for subprocesses: the repository importable, the data dir set."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def junit_counts(path: Path) -> dict:
    """tests / failures / errors / skipped / time summed over a JUnit XML report's test suites."""
    import xml.etree.ElementTree as ET

    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
    counts["time_s"] = sum(float(s.get("time", 0)) for s in suites)
    counts["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    return counts


def stage_a(ctx: Ctx) -> dict:
    """``pytest -m cuda tests/`` in a subprocess; pytest's exit 5 means no CUDA-marked test was collected."""
    junit = ctx.out / "a" / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
           f"--junitxml={junit}"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=child_env(ctx), capture_output=True, text=True,
                           timeout=max(120.0, ctx.left()))
        rc, text = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = None, f"timed out after {exc.timeout:.0f} s\n{exc.stdout or ''}"
    status = {0: "passed", 5: "no_tests"}.get(rc, "timeout" if rc is None else "failed")
    res = dict(pytest_command=shlex.join(cmd), returncode=rc, seconds=time.perf_counter() - t0,
               counts=junit_counts(junit), output_tail=text[-4000:])
    notes = ["pytest exit 5: no test carries the cuda marker (tests/test_cuda.py missing?)"] if rc == 5 else []
    return outcome(status, res, notes)


# --------------------------------------------------------------------------------------------------------------
# Stage b: throughput of the full training step
# --------------------------------------------------------------------------------------------------------------
def b_plan(ctx: Ctx) -> dict:
    """What stage b measures: toy sizes in a dry run, else ``--b-batches`` x ``--b-variants`` for ResNet-18."""
    import throughput

    a = ctx.args
    if ctx.dry:
        return dict(arch="small", batches=[32], variants=["fp32 (tf32)", "bf16"], steps=3, warmup=1, matmul_n=256)
    variants = list(throughput.VARIANTS) if a.b_variants == "all" else a.b_variants.split(",")
    return dict(arch="resnet18", batches=[int(b) for b in a.b_batches.split(",")], variants=variants,
                steps=a.b_steps, warmup=a.b_warmup, matmul_n=a.b_matmul_n)


def b_row(ctx: Ctx, plan: dict, batch: int, variant: str, flops: int, ceiling: float) -> dict:
    """Measure one (batch, variant); a failure is recorded in the row, not raised."""
    import throughput

    try:
        r = throughput.measure_variant(plan["arch"], batch, variant, ctx.device, plan["steps"], plan["warmup"])
        tflops = flops * r["views_per_s"] / (2 * batch) / 1e12
        r.update(model_tflops=tflops, share_of_matmul_ceiling=tflops / ceiling)
    except Exception as exc:  # an unsupported variant (compile, CUDA graphs) must not stop the others
        r = dict(error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}")
    finally:
        throughput.release(ctx.device)
    return dict(batch=batch, variant=variant, **r)


def b_table(rows: list[dict]) -> list[str]:
    """The rows as Markdown lines."""
    lines = ["| batch | variant | views/s | step ms | augmentation share | model TFLOP/s | of bf16 matmul |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['variant']} | failed: {r['error'][:80]} | | | | |")
        else:
            lines.append(f"| {r['batch']} | {r['variant']} | {r['views_per_s']:,.0f} | {r['step_ms_median']:.1f} | "
                         f"{r['aug_share']:.0%} | {r['model_tflops']:.1f} | {r['share_of_matmul_ceiling']:.1%} |")
    return lines


def stage_b(ctx: Ctx) -> Optional[dict]:
    """Throughput table; resumable per (batch, variant) through ``progress/b.json``. None: not finished."""
    import throughput

    plan = b_plan(ctx)
    prog = read_json(progress_path(ctx, "b")) or dict(rows=[], flops={}, ceiling=None)
    if prog["ceiling"] is None:
        prog["ceiling"] = throughput.matmul_ceiling(ctx.device, n=plan["matmul_n"])
    for batch in plan["batches"]:
        if str(batch) not in prog["flops"]:
            prog["flops"][str(batch)] = throughput.step_flops(plan["arch"], batch, ctx.device)
        for v in plan["variants"]:
            if any(r["batch"] == batch and r["variant"] == v for r in prog["rows"]):
                continue
            need = 120 if "compile" in v else 30
            if ctx.ran and not ctx.dry and ctx.left() < need:
                write_json(progress_path(ctx, "b"), prog)
                return None
            print(f"  b: batch {batch}, {v}", flush=True)
            prog["rows"].append(b_row(ctx, plan, batch, v, prog["flops"][str(batch)], prog["ceiling"]["tflops"]))
            ctx.ran += 1
            write_json(progress_path(ctx, "b"), prog)
    ok = [r for r in prog["rows"] if "error" not in r]
    best = max(ok, key=lambda r: r["views_per_s"]) if ok else None
    res = dict(plan, matmul_ceiling=prog["ceiling"], flops_per_step=prog["flops"], rows=prog["rows"],
               table=b_table(prog["rows"]), best=best, target_views_per_s=TARGETS["views_per_s"],
               target_met=bool(best and best["views_per_s"] >= TARGETS["views_per_s"]))
    notes = ["dry run: the small encoder at batch 32 on the CPU, two variants (compile and CUDA graphs are GPU-only "
             "here)"] if ctx.dry else []
    return outcome("ok" if ok else "failed", res, notes)


# --------------------------------------------------------------------------------------------------------------
# Pre-training with a time budget (stages c and d)
# --------------------------------------------------------------------------------------------------------------
def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["epochs=300", "temperature=0.2", "lr=null"]`` -> typed overrides (JSON values, else strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set-c/--set-d take KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def base_config(ctx: Ctx, name: str, **recipe: Any) -> "SimCLRConfig":
    """A SimCLRConfig for stage ``name``: the toy one in a dry run, else ``recipe``; then ``--set-<name>``."""
    from simclr_lib.config import SimCLRConfig

    common = dict(progress=False, tensorboard=False, out_dir=str(ctx.out / name / "run"), seed=0)
    if ctx.dry:
        toy = dict(dataset="shapes", subset=256, arch="small", batch_size=64, epochs=1, warmup_epochs=0,
                   knn_every=1, knn_k=20, knn_subset=256, checkpoint_every=1, device="cpu")
        cfg = dict(toy, **common)
    else:
        cfg = dict(dict(dataset="cifar10", data_dir=ctx.data.get("data_dir"), device=ctx.device.type), **recipe,
                   **common)
    cfg.update(parse_sets(getattr(ctx.args, f"set_{name}")))
    return SimCLRConfig(**cfg)


def c_config(ctx: Ctx) -> "SimCLRConfig":
    """The paper's CIFAR-10 recipe (App. B.9), spelled out."""
    return base_config(ctx, "c", arch="resnet18", cifar_stem=True, batch_size=512, epochs=100, optimizer="lars",
                       lr=None, lr_scaling="sqrt", temperature=0.5, color_strength=0.5, blur=False,
                       warmup_epochs=10, knn_every=10, knn_k=200, knn_subset=10_000, checkpoint_every=5)


def d_config(ctx: Ctx) -> "SimCLRConfig":
    """The speedrun's default recipe (a first guess to tune with --set-d: its kNN curve is recorded)."""
    return base_config(ctx, "d", arch="resnet18", cifar_stem=True, batch_size=512, epochs=400, optimizer="lars",
                       lr=None, lr_scaling="sqrt", temperature=0.2, color_strength=0.5, blur=False,
                       warmup_epochs=10, knn_every=10, knn_k=200, knn_subset=50_000, checkpoint_every=10)


def reached(history: list[dict], target: Optional[float]) -> Optional[dict]:
    """The first epoch record whose kNN top-1 reaches ``target``."""
    if target is None:
        return None
    return next((h for h in history if h.get("knn_top1", -1.0) >= target), None)


def budget_callback(ctx: Ctx, cfg, target: Optional[float], walls: list[float], reserve: float) -> tuple[Callable, dict]:
    """A pretrain callback: stop at the target, or at a checkpoint epoch when the next ones would overrun."""
    state: dict[str, Any] = dict(last=time.perf_counter(), stopped=None)

    def callback(record: dict) -> bool:
        """Record the epoch's wall time; True stops pretrain() after this epoch."""
        now = time.perf_counter()
        walls.append(now - state["last"])
        state["last"] = now
        if target is not None and record.get("knn_top1", -1.0) >= target:
            state["stopped"] = "target"
            return True
        at_ckpt = record["epoch"] % cfg.checkpoint_every == 0
        need = cfg.checkpoint_every * max(walls[-3:]) * 1.2 + reserve
        if at_ckpt and record["epoch"] < cfg.epochs and ctx.left() < need:
            state["stopped"] = "budget"
            return True
        return False

    return callback, state


def load_trained(ckpt: Path, device: Any) -> tuple[Any, Any, list[dict]]:
    """The model (eval mode), its SimCLRConfig and the history stored in a checkpoint."""
    from simclr_lib.runs.checkpoint import load_checkpoint
    from simclr_lib.runs.registry import pretrained as load_model

    model, cfg, _ = load_model(ckpt, map_location=device)
    return model, cfg, load_checkpoint(ckpt)["history"]


def ckpt_history(ckpt: Path) -> list[dict]:
    """The per-epoch history stored in a checkpoint ([] when there is none)."""
    from simclr_lib.runs.checkpoint import load_checkpoint

    return load_checkpoint(ckpt)["history"] if ckpt.is_file() else []


def pretrain_budgeted(ctx: Ctx, name: str, cfg, target: Optional[float] = None,
                      keep_portable: bool = False) -> tuple[Optional[Any], dict]:
    """Train (or resume) within the budget. Returns (model or None if unfinished, progress record)."""
    from simclr_lib.train import pretrain

    ckpt = Path(cfg.out_dir) / "checkpoints" / "last.pt"
    portable = ctx.out / "portable" / f"{name}.pt"
    prog = read_json(progress_path(ctx, name)) or dict(calls=[], portable_resumes=[], epoch_walls=[])
    restored = artifacts.restore_portable(portable, ckpt)
    if restored is not None:
        prog["portable_resumes"].append(restored)
    start = artifacts.checkpoint_epoch(ckpt)
    t0 = time.perf_counter()
    if start >= cfg.epochs or reached(ckpt_history(ckpt), target):
        model, _, history = load_trained(ckpt, ctx.device)
        stopped = "already trained"
    else:
        reserve = 0.0 if ctx.dry else (EVAL_RESERVE_S if target is None else 30.0)
        cb, state = budget_callback(ctx, cfg, target, prog["epoch_walls"], reserve)
        result = pretrain(cfg, resume=start > 0, callbacks=[cb])
        model, history, stopped = result.model, result.history, state["stopped"] or "done"
    finished = (history and history[-1]["epoch"] >= cfg.epochs) or reached(history, target) is not None
    prog["calls"].append(dict(date=utc_now(), from_epoch=max(start, 0), to_epoch=history[-1]["epoch"] if history
                              else 0, wall_s=time.perf_counter() - t0, stopped=stopped, command=ctx.command))
    prog["history"] = history
    if not finished or keep_portable:
        prog["portable"] = artifacts.save_portable(ckpt, portable) if ckpt.is_file() else None
    write_json(progress_path(ctx, name), prog)
    return (model if finished else None), prog


def training_summary(cfg, prog: dict, target: Optional[float] = None) -> dict:
    """Training seconds (epoch loops only), views/s and the kNN monitor curve of a finished run."""
    history = prog["history"]
    hit = reached(history, target)
    upto = [h for h in history if hit is None or h["epoch"] <= hit["epoch"]]
    train_s = sum(h["seconds"] for h in upto)
    views = sum(h["seconds"] * h["views_per_s"] for h in upto)
    walls = prog["epoch_walls"][:len(upto)]
    return dict(epochs_run=len(history), train_seconds=train_s, views_per_s=views / max(train_s, 1e-9),
                wall_seconds_epochs=sum(walls), knn_curve=[[h["epoch"], h["knn_top1"]] for h in history
                                                           if "knn_top1" in h],
                final_loss=history[-1]["loss"], calls=prog["calls"], resumed_from_portable_at=prog[
                    "portable_resumes"], peak_lr=cfg.peak_lr())


# --------------------------------------------------------------------------------------------------------------
# Stage c: the 100-epoch run, linear probe, kNN, random-init baseline
# --------------------------------------------------------------------------------------------------------------
def evaluate_frozen(encoder: torch.nn.Module, cfg: "SimCLRConfig", ctx: Ctx, splits: tuple) -> dict:
    """Linear probe (C chosen on a class-balanced 20 % of the train images) and kNN (k=200, cosine) on h."""
    from simclr_lib.evaluate import features, knn_accuracy, linear_probe, module_device

    train, test = splits
    dev = module_device(encoder)
    t0 = time.perf_counter()
    ftr, fte = (features(encoder, d.images, batch_size=1024) for d in (train, test))
    t1 = time.perf_counter()
    cs = (0.1, 1.0) if ctx.dry else (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    probe = linear_probe(ftr, train.labels, fte, test.labels, backend="torch", C=list(cs), device=dev,
                         max_iter=100 if ctx.dry else 1000)
    t2 = time.perf_counter()
    k = min(200, len(ftr))
    knn = knn_accuracy(ftr, train.labels, fte, test.labels, k=k, device=dev)
    return dict(linear_top1=probe["top1"], linear_train_top1=probe["train_top1"], C=probe["C"],
                C_val_top1=probe.get("C_val_top1"), probe_iterations=probe["iterations"],
                val_split="class-balanced 20 % of the training images (simclr_lib.evaluate.select_C), then refit "
                          "on all training images", knn_top1=knn, knn=f"k={k}, cosine, votes exp(cos/0.1)",
                n_train=len(train), n_test=len(test), feat_dim=ftr.shape[1], extract_s=t1 - t0, probe_s=t2 - t1,
                knn_s=time.perf_counter() - t2)


def random_encoder(cfg, device: torch.device) -> torch.nn.Module:
    """The same architecture at random init (seeded), on ``device``."""
    from simclr_lib.config import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        model = build_model(cfg)
    return model.encoder.to(device)


def stage_c(ctx: Ctx) -> Optional[dict]:
    """Pre-train with the paper's CIFAR-10 recipe, then evaluate it and the random-init encoder."""
    cfg = c_config(ctx)
    model, prog = pretrain_budgeted(ctx, "c", cfg, keep_portable=True)
    if model is None:
        return None
    if ctx.ran and not ctx.dry and ctx.left() < EVAL_RESERVE_S and prog["calls"][-1]["stopped"] == "already trained":
        return None
    from simclr_lib.config import labelled_splits

    model = model.to(ctx.device)
    splits = labelled_splits(cfg, *((512, 256) if ctx.dry else (50_000, 10_000)))
    trained = evaluate_frozen(model.encoder, cfg, ctx, splits)
    baseline = evaluate_frozen(random_encoder(cfg, ctx.device), cfg, ctx, splits)
    summary = training_summary(cfg, prog)
    res = dict(config=cfg.to_dict(), training=summary, trained=trained, random_init=baseline,
               gain_points=100 * (trained["linear_top1"] - baseline["linear_top1"]),
               targets=dict(linear_top1=TARGETS["linear_top1"], pretrain_seconds=TARGETS["pretrain_seconds"]),
               target_met=dict(linear=trained["linear_top1"] >= TARGETS["linear_top1"],
                               time=summary["train_seconds"] <= TARGETS["pretrain_seconds"]), anchor=ANCHOR)
    notes = ["train_seconds sums the epochs' step loops (kNN monitor and checkpoints excluded); "
             "wall_seconds_epochs includes them"]
    if prog["portable_resumes"]:
        notes.append(f"resumed on a fresh machine from a bf16 portable checkpoint at epochs {prog['portable_resumes']}"
                     " (weights rounded to bf16 once, LARS momentum restarted): not bit-exact")
    return outcome("ok", res, notes)


# --------------------------------------------------------------------------------------------------------------
# Stage d: the speedrun to 90 % kNN
# --------------------------------------------------------------------------------------------------------------
def stage_d(ctx: Ctx) -> Optional[dict]:
    """Train the speedrun recipe until kNN top-1 (k=200, all 10k test images) reaches the target, or to the end."""
    cfg = d_config(ctx)
    target = ctx.args.target_knn
    model, prog = pretrain_budgeted(ctx, "d", cfg, target=target)
    if model is None:
        return None
    hit = reached(prog["history"], target)
    summary = training_summary(cfg, prog, target)
    res = dict(config=cfg.to_dict(), target_knn=target, reached=hit is not None,
               epoch_reached=hit["epoch"] if hit else None, knn_at_target=hit["knn_top1"] if hit else None,
               time_to_target_train_s=summary["train_seconds"] if hit else None,
               time_to_target_wall_s=summary["wall_seconds_epochs"] if hit else None, training=summary,
               target_seconds=TARGETS["speedrun_seconds"],
               target_met=bool(hit and summary["train_seconds"] <= TARGETS["speedrun_seconds"]))
    notes = ["kNN on the encoder's h: the first knn_subset training images as the memory bank (50,000 = all), all "
             "test images; the time to target counts the epochs' step loops up to that epoch (wall adds the kNN "
             "evaluations and checkpoints; the first epoch of each call also holds its set-up)"]
    return outcome("ok", res, notes)


# --------------------------------------------------------------------------------------------------------------
# Stage e: the notebooks at full scale
# --------------------------------------------------------------------------------------------------------------
def jupyter_missing() -> Optional[str]:
    """Why notebooks cannot be executed here (None when nbclient, nbformat and ipykernel import)."""
    import importlib.util

    missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
    return f"not importable: {', '.join(missing)} (carry the wheels: benchmarks/gpu/prepare_wheels.sh)" \
        if missing else None


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables inside the block (the notebook kernel inherits them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


COMPARED_FIELDS_IGNORED = ("out_dir", "data_dir", "checkpoint_every", "progress", "tensorboard", "knn_every",
                           "knn_k", "knn_subset", "extra", "device", "compile")


def seed_series_checkpoint(ctx: Ctx) -> str:
    """Put stage c's checkpoint where the notebooks look for the series' full run, when the recipes agree."""
    from simclr_lib.teaching import notebook

    s = notebook.setup(smoke=False, mode="full", data_dir=ctx.data.get("data_dir"))
    if s.checkpoint.is_file():
        return f"present at {s.checkpoint}"
    ckpt = ctx.out / "c" / "run" / "checkpoints" / "last.pt"
    artifacts.restore_portable(ctx.out / "portable" / "c.pt", ckpt)
    if artifacts.checkpoint_epoch(ckpt) < 0:
        return "absent (stage c has no checkpoint): notebook 03 trains the series' model itself"
    from simclr_lib.runs.checkpoint import load_checkpoint

    want, have = notebook.series_config(s).to_dict(), load_checkpoint(ckpt)["config"]  # what c really trained
    diff = [k for k in want if k not in COMPARED_FIELDS_IGNORED and want[k] != have.get(k)]
    if diff:
        return f"not seeded: series_config(full) differs from stage c in {diff}; notebook 03 trains its own model"
    s.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ckpt, s.checkpoint)
    return f"seeded from stage c's checkpoint (epoch {artifacts.checkpoint_epoch(ckpt)}) at {s.checkpoint}"


def notebook_outputs(nb) -> list[str]:
    """The text each executed code cell printed, in order (capped)."""
    texts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text = o.get("text") or o.get("data", {}).get("text/plain") or ""
            if o.get("name") != "stderr" and text:
                texts.append(text if isinstance(text, str) else "".join(text))
    return [t[:2000] for t in texts][:200]


def execute_notebook(ctx: Ctx, name: str, src: Path, dest: Path) -> dict:
    """Run the notebook through nbclient (a dry run keeps only the cells up to ``setup(``) and store it."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(src, as_version=4)
    if ctx.dry:
        head = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "setup(" in c.source)
        nb.cells = nb.cells[:head + 1]
    timeout = 300 if ctx.dry else int(max(120.0, ctx.left()))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(src.parent)}})
    t0, status, error = time.perf_counter(), "ok", None
    try:
        client.execute()
    except (CellTimeoutError, DeadKernelError, CellExecutionError) as exc:
        status = "timeout" if isinstance(exc, CellTimeoutError) else "failed"
        error = " ".join(str(exc).split())[-3000:]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    executed = sum(1 for c in nb.cells if c.cell_type == "code" and c.get("execution_count") is not None)
    return dict(status=status, error=error, seconds=time.perf_counter() - t0, cell_timeout_s=timeout,
                code_cells=sum(c.cell_type == "code" for c in nb.cells), executed=executed,
                outputs=notebook_outputs(nb), stored=str(dest.relative_to(ctx.out)))


def stage_e(ctx: Ctx, name: str) -> dict:
    """One notebook at full scale (dry run: its head in smoke mode), stored with its outputs under ``e/``."""
    why = jupyter_missing()
    if why:
        return outcome("skipped", dict(notebook=NOTEBOOKS[name]), [f"not executed: {why}"])
    mode = "smoke" if ctx.dry else "full"
    seeded = "dry run: not seeded" if ctx.dry else seed_series_checkpoint(ctx)
    env = dict(SIMCLR_MODE=mode, SIMCLR_SMOKE="1" if ctx.dry else "0",
               PYTHONPATH=child_env(ctx)["PYTHONPATH"])
    if ctx.data.get("data_dir"):
        env["SIMCLR_DATA_DIR"] = str(ctx.data["data_dir"])
    src = ROOT / "notebooks" / f"{NOTEBOOKS[name]}.ipynb"
    with environ(**env):
        r = execute_notebook(ctx, name, src, ctx.out / "e" / f"{NOTEBOOKS[name]}.{mode}.ipynb")
    notes = [f"series checkpoint: {seeded}"]
    if ctx.dry:
        notes.append("dry run: only the cells up to setup() ran, in smoke mode (CI runs whole notebooks with nbval)")
    return outcome(r.pop("status"), dict(notebook=NOTEBOOKS[name], mode=mode, **r), notes)


# --------------------------------------------------------------------------------------------------------------
# Stage f: the trained weights in bf16
# --------------------------------------------------------------------------------------------------------------
def stage_f(ctx: Ctx) -> dict:
    """Stage c's model as bf16, in parts of at most 16 MiB, with config and metrics; reloaded to check it."""
    from simclr_lib.config import build_model

    ckpt = ctx.out / "c" / "run" / "checkpoints" / "last.pt"
    artifacts.restore_portable(ctx.out / "portable" / "c.pt", ckpt)
    if not ckpt.is_file():
        return outcome("failed", {}, ["stage c has no checkpoint: run stage c first"])
    model, cfg, history = load_trained(ckpt, "cpu")
    c_rec = read_json(stage_path(ctx, "c")) or {}
    metrics = dict(c_rec.get("results", {}).get("trained", {}), epochs=history[-1]["epoch"])
    obj = dict(model=artifacts.bf16_state(model.state_dict()), config=cfg.to_dict(), metrics=metrics,
               format="simclr_lib SimCLRModel state_dict, floating tensors in bf16")
    part = int(0.25 * artifacts.MiB) if ctx.dry else 16 * artifacts.MiB
    info = artifacts.save_parts(obj, ctx.out / "f", "weights_bf16.pt", part_bytes=part)
    back = build_model(cfg)
    back.load_state_dict({k: v.float() if v.is_floating_point() else v
                          for k, v in artifacts.load_parts(ctx.out / "f", "weights_bf16.pt")["model"].items()})
    x = torch.randn(8, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        h0, h1 = model.eval().encoder(x), back.eval().encoder(x)
    info.update(n_params=sum(p.numel() for p in back.parameters()), reload_max_rel_diff_h=float(
        ((h0 - h1).abs().max() / h0.abs().max().clamp_min(1e-12))), load=(
        "obj = artifacts.load_parts(folder, 'weights_bf16.pt'); model = build_model(SimCLRConfig(**obj['config'])); "
        "model.load_state_dict({k: v.float() for k, v in obj['model'].items()})"))
    write_json(ctx.out / "f" / "weights.json", dict(info, config=cfg.to_dict(), metrics=metrics))
    return outcome("ok", info, ["the parts are in f/; benchmarks/gpu/collect.py joins them"])


# --------------------------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------------------------
def stage_list(spec: str) -> list[str]:
    """``"a,c,e"`` -> ordered stage names (``e`` means e03..e06)."""
    names = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        expanded = [s for s in STAGES if s.startswith(item)] if item == "e" else [item]
        bad = [s for s in expanded if s not in STAGES]
        if bad:
            raise SystemExit(f"unknown stage {bad[0]!r}; choose from {', '.join(STAGES)} (e = e03..e06)")
        names += [s for s in expanded if s not in names]
    return [s for s in STAGES if s in names]


def prepare_data(ctx: Ctx) -> dict:
    """Dry run: generated ``shapes``. Else CIFAR-10 from the pack (unpacked once under ``<out>/data``) or the
    data dir; ``SIMCLR_DATA_DIR`` is set for every subprocess and notebook."""
    import pack_data

    if ctx.dry:
        return dict(dataset="shapes", data_dir=None, source="generated (dry run)")
    pack = Path(ctx.args.data_pack)
    if pack.is_file():
        report = pack_data.unpack(pack, ctx.out / "data")
        data_dir = ctx.out / "data"
    else:
        data_dir, report = Path(os.environ.get("SIMCLR_DATA_DIR", ROOT / "data")), None
        if not ((data_dir / "cifar-10-batches-py").is_dir() or (data_dir / "cifar10" / "train").is_dir()):
            raise SystemExit(f"no CIFAR-10: neither the pack {pack} nor {data_dir}/cifar-10-batches-py or "
                             f"{data_dir}/cifar10/train; run benchmarks/gpu/prepare.sh and carry .gpu_data")
    os.environ["SIMCLR_DATA_DIR"] = str(data_dir)
    return dict(dataset="cifar10", data_dir=str(data_dir), unpack=report)


def run_stage(ctx: Ctx, name: str) -> bool:
    """Run one stage and write its JSON; False when it stopped unfinished (the budget ran out)."""
    fns: dict[str, Callable[[Ctx], Optional[dict]]] = dict(a=stage_a, b=stage_b, c=stage_c, d=stage_d, f=stage_f)
    fn = fns.get(name) or (lambda c: stage_e(c, name))
    print(f"== stage {name} ({ctx.left() / 60:.1f} min of budget left)", flush=True)
    t0 = time.perf_counter()
    try:
        res = fn(ctx)
    except Exception as exc:  # recorded, so that one broken stage does not hide the others' results
        res = outcome("failed", {}, [f"{type(exc).__name__}: {exc}", traceback.format_exc()[-4000:]])
    ctx.ran += 1
    if res is None:
        print(f"   stage {name} stopped at the budget; run the same command again to continue", flush=True)
        return False
    rec = dict(stage=name, **meta(ctx), wall_seconds_this_call=time.perf_counter() - t0, **res)
    write_json(stage_path(ctx, name), rec)
    print(f"   stage {name}: {res['status']} -> {stage_path(ctx, name)}", flush=True)
    return True


def may_start(ctx: Ctx, name: str) -> bool:
    """The first stage of a call always starts; later ones only if their estimate fits in what is left."""
    if ctx.dry or ctx.ran == 0:
        return True
    need = 60.0 if name in RESUMABLE else 60.0 * GPU_MINUTES[name]
    return ctx.left() >= need


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="results folder (runs/gpu on the GPU machine)")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated, e.g. a,b,c or e (= e03..e06)")
    p.add_argument("--redo", default="", help="stages to run again although their JSON exists")
    p.add_argument("--dry-run", action="store_true", help="every stage on the CPU at toy size (CI)")
    p.add_argument("--max-minutes", type=float, default=8.0, help="this call's budget (a device call: 10 min)")
    p.add_argument("--data-pack", default=str(ROOT / ".gpu_data" / "cifar10_jpeg.npz"))
    p.add_argument("--state", type=Path, default=None, help="carried state from earlier calls (.gpu_state)")
    p.add_argument("--export", type=Path, default=None, help="copy what this call wrote there ($OUT)")
    p.add_argument("--set-c", action="append", default=[], metavar="KEY=VALUE", help="stage c config override")
    p.add_argument("--set-d", action="append", default=[], metavar="KEY=VALUE", help="speedrun recipe override")
    p.add_argument("--target-knn", type=float, default=TARGETS["knn_top1"])
    p.add_argument("--b-batches", default="512,1024")
    p.add_argument("--b-variants", default="all", help="'all' or comma-separated names of throughput.VARIANTS")
    p.add_argument("--b-steps", type=int, default=30)
    p.add_argument("--b-warmup", type=int, default=5)
    p.add_argument("--b-matmul-n", type=int, default=8192, help="side of the bf16 matmul that sets the ceiling")
    p.add_argument("--device", default="cuda", help="cuda; 'cpu' only to rehearse the real stages with small "
                   "--set-c/--set-d overrides on a machine without a GPU")
    return p.parse_args(argv)


def make_ctx(args: argparse.Namespace) -> Ctx:
    """Device (CPU in a dry run; else CUDA, with tf32 and cuDNN autotuning), budget and output folder."""
    device = torch.device("cpu" if args.dry_run else args.device)
    if args.dry_run:
        torch.set_num_threads(1)  # toy-sized ops: a second thread only spins against CI's other jobs
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this command is for a GPU machine (use --dry-run on a CPU)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    return Ctx(args=args, out=args.out.resolve(), dry=args.dry_run, device=device,
               deadline=time.perf_counter() + 60 * args.max_minutes, wall_start=time.time() - 1,
               command=shlex.join([sys.executable, *sys.argv]))


def export(ctx: Ctx) -> Optional[dict]:
    """Copy what this call wrote to ``--export`` (replacing the previous export of this call)."""
    if ctx.args.export is None:
        return None
    for old in ctx.args.export.glob("export.tar.*"):
        old.unlink()
    return artifacts.export(ctx.out, ctx.args.export, ctx.wall_start)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the requested stages in order until done or out of budget; export; 0 if all done, else 3."""
    args = parse_args(argv)
    for key in ("out", "state", "export"):  # relative to where the command was typed, before the chdir
        if getattr(args, key) is not None:
            setattr(args, key, Path(getattr(args, key)).resolve())
    args.data_pack = str(Path(args.data_pack).resolve())
    os.chdir(ROOT)  # the notebooks' helpers find the repository from the working directory
    ctx = make_ctx(args)
    imported = artifacts.import_state(args.state, ctx.out)
    if imported:
        print(f"imported from {args.state}: {', '.join(imported)}", flush=True)
    ctx.data = prepare_data(ctx)
    wanted, redo = stage_list(args.stages), set(stage_list(args.redo)) if args.redo else set()
    if "b" in redo:
        progress_path(ctx, "b").unlink(missing_ok=True)  # measure every variant again
    for name in wanted:
        if is_done(ctx, name) and name not in redo:
            print(f"== stage {name}: done earlier, skipped ({stage_path(ctx, name)})", flush=True)
            continue
        going_on = may_start(ctx, name) and run_stage(ctx, name)
        export(ctx)  # after every stage: a call killed later still brings this much back
        if not going_on:
            break
    pending = [s for s in wanted if not is_done(ctx, s)]
    m = export(ctx)
    if m is not None:
        print(f"exported {len(m['files'])} files in {len(m['parts'])} part(s) to {args.export}"
              + (f"; left out (over the limit): {m['dropped_over_limit']}" if m["dropped_over_limit"] else ""))
    print("ALL DONE" if not pending else f"PENDING: {' '.join(pending)} (run the same command again)", flush=True)
    return 0 if not pending else 3


if __name__ == "__main__":
    sys.exit(main())
