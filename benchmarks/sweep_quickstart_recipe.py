"""The quickstart's recipe for its time budget (issue 19, item 2): each variant trains for the same minutes, scored
on a validation split.

The quickstart trains for a fixed time, not a fixed number of images, so its recipe is chosen at equal time: a
smaller encoder or batch makes more steps in the same minutes. The 50,000 CIFAR-10 training images are split class
by class (``data.validation_split``, 10 %, seed 0) into 45,000 and a 5,000-image validation split. Every variant
pre-trains on the first ``subset`` of the 45,000 (or all of them) for ``--minutes`` of training on a
``runs.budget.TimeBudget`` (the quickstart's planner; warm-up of 10,000 images, cosine to the end of the time), with
the changes of ``VARIANTS`` from ``SimCLRConfig.quick()``. Its frozen h is scored on the validation split with the
quickstart's probe (linear, C = 1, fitted on the first 10,000 of the 45,000 with their labels), and with C chosen
from ``C_GRID`` on a held-out 20 % of those 10,000. The test set is not touched. Each encoder shape's random-init
score is printed beside it, with the load average at the start and end of each run.

    python benchmarks/sweep_quickstart_recipe.py --minutes 8.2 --out runs/sweep_qs          # every variant, seed 0
    python benchmarks/sweep_quickstart_recipe.py --minutes 8.2 --only w16-b64 --seeds 1      # another seed
    python benchmarks/sweep_quickstart_recipe.py --only w16-b64-crop0.2 --all-labels --out runs/sweep_qs_labels
    python benchmarks/sweep_quickstart_recipe.py --only w16-b64-f512 w16-b64-crop0.2 w16-b64-f1024 --all-labels \
        --out runs/sweep_qs_feat                                                 # a wider h (small_feat_dim)
    python benchmarks/sweep_quickstart_recipe.py --only w16-b64-f512 w16-b64-crop0.2 --out runs/sweep_qs_feat \
        --rescore-C 0.1 0.3 1   # the all-labels probe at these C, from each finished run's last checkpoint
    python benchmarks/sweep_quickstart_recipe.py --only w16-b64-f1024 f1024-lr1 f1024-tau0.2 f1024-lr4 --epochs 4 \
        --all-labels --all-labels-C 0.01 --out runs/sweep_qs_opt  # the 1,024-d h's optimisation settings, equal steps

Prints one Markdown row per run and writes ``<out>/results.json``; runs already in it are skipped.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import load_dataset, validation_split
from simclr_lib.data.images import ImageData
from simclr_lib.evaluate import features, linear_probe
from simclr_lib.runs.checkpoint import load_checkpoint, model_from_checkpoint
from simclr_lib.train import pretrain

C_GRID = (0.01, 0.1, 1.0, 10.0)
WARMUP_IMAGES = 10_000
# changes from SimCLRConfig.quick() (width 32, batch 256, 10,000 images, tau 0.1, lr 2.0, smallest crop 20 %);
# "subset": None trains on all 45,000 non-validation images
F1024 = dict(small_width=16, batch_size=64, subset=None, small_feat_dim=1024)  # h widened to 1,024 (the quickstart's)
VARIANTS: dict[str, dict] = {
    "quick": {},
    "w16-b64": dict(small_width=16, batch_size=64, subset=None, min_scale=0.08),  # notebook 03's recipe
    "w16-b64-crop0.2": dict(small_width=16, batch_size=64, subset=None),
    "w16-b128-crop0.2": dict(small_width=16, batch_size=128, subset=None),
    "w32-b128-crop0.2": dict(batch_size=128, subset=None),
    "w16-b64-10k": dict(small_width=16, batch_size=64),
    "w16-b64-crop0.35": dict(small_width=16, batch_size=64, subset=None, min_scale=0.35),
    "w16-b32-crop0.2": dict(small_width=16, batch_size=32, subset=None, lr=2.0 / 2 ** 0.5),  # sqrt rule from b64
    "w24-b64-crop0.2": dict(small_width=24, batch_size=64, subset=None),
    # h widened by a 1x1 conv after the last stage (small_feat_dim; 128 channels before it)
    "w16-b64-f512": dict(small_width=16, batch_size=64, subset=None, small_feat_dim=512),
    "w16-b64-f1024": F1024,
    "w16-b64-f2048": dict(small_width=16, batch_size=64, subset=None, small_feat_dim=2048),
    # the chosen 1,024-d h (config.QUICKSTART_RECIPE) with one optimisation setting changed
    "f1024-tau0.2": dict(F1024, temperature=0.2),
    "f1024-tau0.5": dict(F1024, temperature=0.5),
    "f1024-tau0.2-lr1": dict(F1024, temperature=0.2, lr=1.0),
    "f1024-lr1": dict(F1024, lr=1.0),
    "f1024-lr4": dict(F1024, lr=4.0),
    "f1024-wd1e-4": dict(F1024, weight_decay=1e-4),
    # views of 24 px for pre-training (view_size; the probe still sees the 32 px images): 0.60x the step's time
    "f1024-view24": dict(F1024, view_size=24),
    "f1024-view24-tau0.2": dict(F1024, view_size=24, temperature=0.2),
}
SHAPE_KEYS = ("small_width", "small_depth", "small_feat_dim")


def load() -> float | None:
    """The 1-minute load average."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def score(model: torch.nn.Module, probe_train: ImageData | None, val: ImageData,
          all_labels: ImageData | None = None, all_labels_C: float = 1.0) -> dict:
    """Validation top-1 of the frozen h: the quickstart's probe (C = 1) and the probe with C chosen on the train;
    with ``all_labels`` also the probe fitted on all of them (e.g. the 45,000) at ``all_labels_C``, with what each
    probe cost."""
    t0 = time.perf_counter()
    fval, out = features(model, val.images), {}
    if probe_train is not None:
        ftr = features(model, probe_train.images)
        fixed = linear_probe(ftr, probe_train.labels, fval, val.labels, C=1.0)
        seconds = time.perf_counter() - t0
        chosen = linear_probe(ftr, probe_train.labels, fval, val.labels, C=list(C_GRID))
        out = dict(val_probe=fixed["top1"], val_probe_chosen_C=chosen["top1"], chosen_C=chosen["C"],
                   probe_seconds=seconds)
    if all_labels is not None:
        t0 = time.perf_counter()
        fall = features(model, all_labels.images)
        wide = linear_probe(fall, all_labels.labels, fval, val.labels, C=all_labels_C)  # fval: computed above
        out.update(val_probe_all_labels=wide["top1"], all_labels=len(all_labels), all_labels_C=all_labels_C,
                   all_labels_probe_seconds=time.perf_counter() - t0, all_labels_iterations=wide["iterations"])
    return out


def run(name: str, seed: int, pool: ImageData, probe_train: ImageData, val: ImageData, args) -> dict:
    """Pre-train one variant for ``args.minutes`` of training and score it."""
    change = dict(VARIANTS[name])
    subset = change.pop("subset", 10_000)
    data = pool if subset is None else pool.subset(subset)
    length = dict(epochs=1000, minutes=args.minutes) if args.epochs is None else dict(epochs=args.epochs)
    cfg = SimCLRConfig.quick(seed=seed, device="cpu", progress=False, tensorboard=False, knn_every=0, **length,
                             warmup_epochs=WARMUP_IMAGES / len(data), checkpoint_every=1000,
                             out_dir=str(Path(args.out) / f"{name}-seed{seed}"), **change)
    load0, t0 = load(), time.perf_counter()
    res = pretrain(cfg, data=data, monitor=None, overwrite=True)
    seconds = time.perf_counter() - t0
    steps = res.metrics.get("step", 0)
    return dict(name=name, seed=seed, change=VARIANTS[name], images=len(data), steps=steps,
                epochs=steps * cfg.batch_size / len(data), train_seconds=seconds, final_loss=res.history[-1]["loss"],
                load=[load0, load()],
                **score(res.model, probe_train, val, pool if args.all_labels else None, args.all_labels_C))


def random_model(change: dict) -> torch.nn.Module:
    """A variant's encoder shape at random init (seed 0)."""
    torch.manual_seed(0)
    return build_model(SimCLRConfig.quick(device="cpu", **shape(change)))


def shape(change: dict) -> dict:
    """The encoder-shape settings of a variant (what its random-init score depends on)."""
    return {k: v for k, v in change.items() if k in SHAPE_KEYS}


def random_init(change: dict, probe_train: ImageData | None, val: ImageData, all_labels: ImageData | None = None,
                all_labels_C: float = 1.0, rows: tuple = ()) -> dict:
    """The same encoder shape at random init (seed 0), scored the same way; reused from a row of ``rows`` with the
    same shape and every probe asked for here (random init does not depend on the optimisation settings)."""
    wide_C = None if all_labels is None else all_labels_C
    for r in rows:
        had = r["random"]
        had_C = had.get("all_labels_C", 1.0) if "all_labels" in had else None
        if shape(r["change"]) == shape(change) and had_C == wide_C and (probe_train is None or "val_probe" in had):
            return dict(had, reused_from=r["name"])
    return score(random_model(change), probe_train, val, all_labels, all_labels_C)


def rescore(rows: list[dict], out: Path, pool: ImageData, val: ImageData, Cs: list[float]) -> None:
    """The all-labels probe at each C, for each finished run (its last checkpoint) and its random init."""
    for r in rows:
        path = out / f"{r['name']}-seed{r['seed']}" / "checkpoints" / "last.pt"
        trained, _ = model_from_checkpoint(load_checkpoint(path), path)
        for side, model in (("trained", trained), ("random", random_model(r["change"]))):
            fall, fval = features(model, pool.images), features(model, val.images)
            for C in Cs:
                res = linear_probe(fall, pool.labels, fval, val.labels, C=C, max_iter=3000)
                r.setdefault("rescore", []).append(dict(side=side, C=C, top1=res["top1"], iterations=res["iterations"],
                                                        seconds=res["seconds"]))
                print(f"| {r['name']} | {r['seed']} | {side} | C {C:g} | {100 * res['top1']:.2f} % | "
                      f"{res['iterations']} iterations, {res['seconds']:.0f} s |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/sweep_qs")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--minutes", type=float, default=8.2, help="training minutes per run (the quickstart's share)")
    p.add_argument("--epochs", type=int, default=None,
                   help="train this many epochs instead of --minutes: equal steps, for settings that do not change "
                        "the step's cost (tau, lr, weight decay), compared on a machine whose speed drifts")
    p.add_argument("--all-labels", action="store_true",
                   help="also score the probe fitted on all 45,000 labels (the paper's protocol), with its cost")
    p.add_argument("--all-labels-C", type=float, default=1.0,
                   help="C of the all-labels probe (the quickstart's: config.QUICKSTART_PROBE_C, 0.01 for a 1,024-d h)")
    p.add_argument("--no-10k-probe", action="store_true",
                   help="with --all-labels: skip the probes fitted on 10,000 labels (the all-labels probe only)")
    p.add_argument("--rescore-C", type=float, nargs="+", default=None,
                   help="train nothing: score the finished runs of --only with the all-labels probe at these C")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool, val = validation_split(load_dataset("cifar10", "train", progress=False), fraction=0.1, seed=0)
    probe_train = None if args.no_10k_probe and args.all_labels else pool.subset(10_000)
    length = f"{args.minutes} min" if args.epochs is None else f"{args.epochs} epochs"
    print(f"pool {len(pool)}, validation {len(val)}, probe on {len(probe_train or pool)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {length} per run", flush=True)
    path = out / "results.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    if args.rescore_C:
        done = [r for r in rows if r["name"] in args.only and r["seed"] in args.seeds]
        rescore(done, out, pool, val, args.rescore_C)
        kept = json.loads((out / "rescore.json").read_text())["rows"] if (out / "rescore.json").exists() else []
        kept = [k for k in kept if not any(k["name"] == r["name"] and k["seed"] == r["seed"] for r in done)]
        (out / "rescore.json").write_text(json.dumps(dict(rows=kept + done, torch=torch.__version__), indent=2))
        return
    for seed in args.seeds:
        for name in args.only:
            if any(r["name"] == name and r["seed"] == seed for r in rows):
                continue
            r = run(name, seed, pool, probe_train, val, args)
            r["random"] = random_init(VARIANTS[name], probe_train, val, pool if args.all_labels else None,
                                      args.all_labels_C, rows)
            rows.append(r)
            ten_k = "" if probe_train is None else (
                f"{100 * r['val_probe']:.2f} % ({100 * r['random']['val_probe']:.2f}) | "
                f"{100 * r['val_probe_chosen_C']:.2f} % (C {r['chosen_C']:g}; random "
                f"{100 * r['random']['val_probe_chosen_C']:.2f}) | ")
            print(f"| {name} | {seed} | {r['steps']} steps, {r['epochs']:.1f} x {r['images']} | {ten_k}"
                  f"{r['final_loss']:.3f} | {r['train_seconds']:.0f} s | load {r['load'][0]}-{r['load'][1]} |",
                  flush=True)
            if args.all_labels:
                print(f"  probe on all {r['all_labels']} labels (C {args.all_labels_C:g}): "
                      f"{100 * r['val_probe_all_labels']:.2f} % (random "
                      f"{100 * r['random']['val_probe_all_labels']:.2f}), {r['all_labels_probe_seconds']:.0f} s",
                      flush=True)
            meta = dict(torch=torch.__version__, minutes=args.minutes, epochs=args.epochs)
            path.write_text(json.dumps(dict(rows=rows, **meta), indent=2))


if __name__ == "__main__":
    main()
