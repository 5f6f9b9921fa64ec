"""The paper's controlled experiments, small: settings changed one at a time from one base configuration, each
pre-trained with two or more seeds and scored on a validation split carved from the training images.

Taught in notebook 06. An experiment is a set of named settings (:data:`EFFECTS`: the augmentation composition and
the colour strength, Fig. 5 / Table 1; the temperature, Table 5 / App. B.9; and the batch size, Fig. 9: :func:`settings`). Every run is
scored on both h and z = g(h) (Sec. 4.2). :func:`run_settings` pre-trains each setting with each seed
(:func:`~simclr_lib.train.pretrain`), then fits a linear probe and a cosine kNN classifier on labelled training
images and scores them on the validation split (:func:`evaluate_run`): the test set is never touched, so naming a
setting "best" is an honest choice. :func:`summarize` gives the mean and the spread over seeds,
:func:`effect` the size of a difference and whether the seeds separate it, and
:func:`simclr_lib.teaching.plots.effect_bars` draws them beside the random-init line. ``benchmarks/sweep_experiments.py``
runs the same settings at the longer :data:`SCALES` ``"long"`` and writes the JSON that notebook 06 plots beside
its own quick run.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from tqdm.auto import tqdm

from simclr_lib.augment import SimCLRAugment
from simclr_lib.config import SERIES_RECIPE, SimCLRConfig
from simclr_lib.data import ImageData, load_dataset, validation_split
from simclr_lib.evaluate import evaluate_frozen, random_init_model
from simclr_lib.teaching.plots import label as _label  # how a value is written in run-folder names
from simclr_lib.teaching.plots import summarize  # noqa: F401  (mean and spread over seeds; notebook 06 uses ex.summarize)
from simclr_lib.train import pretrain

Evaluate = Callable[[Any, SimCLRConfig, "ExperimentData"], dict]

# Each experiment: setting name -> changes from the base config ("ops": the augmentation ops of both views; a
# batch size without an "lr" scales the base peak LR by the paper's square-root rule, App. B.1). The batch sizes
# depend on the scale (:attr:`Scale.batch_sizes`): :func:`settings` gives every experiment's settings at a scale.
LONG_SWEEP = "docs/sweeps/experiments_long.json"  # benchmarks/sweep_experiments.py at SCALES["long"], committed
EFFECTS: dict[str, dict[str, dict[str, Any]]] = {
    "augmentation": {  # Fig. 5 (single ops vs the crop + colour pair) and Table 1 (colour strength s)
        "crop + flip": dict(ops=("crop", "flip")),
        "colour": dict(ops=("jitter", "grayscale")),
        "crop + colour, s = 0.5": dict(color_strength=0.5),
        "crop + colour, s = 1": dict(color_strength=1.0),
    },
    "temperature": {"τ = 0.1": dict(temperature=0.1), "τ = 0.5": dict(temperature=0.5),
                    "τ = 1": dict(temperature=1.0)},  # Table 5, App. B.9
}
SECTIONS = ("augmentation", "temperature", "batch size")  # the batch size: Sec. 5.2, Fig. 9


@dataclass(frozen=True)
class Scale:
    """How big one experiment run is: images, length (epochs, or minutes with epochs as a cap), encoder and recipe,
    seeds, and the batch sizes of the batch-size experiment (one row of :data:`SCALES`)."""

    n_pretrain: int  # pre-training images, from the training part of the split
    n_train: int  # labelled training images the probe and the kNN classifier are fitted on
    epochs: int  # the run's length, or its cap when ``minutes`` is set
    minutes: Optional[float] = None  # time budget of each run (runs.budget): every setting gets the same compute
    arch: str = "small"
    batch_size: int = 256
    batch_sizes: tuple[int, ...] = (128, 256, 512)  # the batch-size experiment (one of them is the base's)
    warmup_epochs: float = 1.0
    seeds: tuple[int, ...] = (0, 1)
    subset: Optional[int] = None  # training images loaded before the split (None: all)
    recipe: tuple[tuple[str, Any], ...] = ()  # config fields that differ from ``SimCLRConfig.quick``


SCALES: dict[str, Scale] = {
    "smoke": Scale(n_pretrain=512, n_train=256, epochs=1, batch_size=64, batch_sizes=(64, 128, 256), subset=640),
    # the notebook's default on a CPU: notebook 03's recipe (notebook.SERIES_QUICK), 45 seconds of training per run
    "quick": Scale(n_pretrain=10_000, n_train=5_000, epochs=100, minutes=0.75, batch_size=64,
                   batch_sizes=(64, 128, 256), warmup_epochs=0.5, recipe=tuple(SERIES_RECIPE.items())),
    # benchmarks/sweep_experiments.py: the committed longer sweep (the quick preset, 30 epochs, ~5 min per run)
    "long": Scale(n_pretrain=10_000, n_train=10_000, epochs=30),
    # the default on a GPU: ResNet-18 for the same 45 seconds per run (not measured: no GPU was lent)
    "full": Scale(n_pretrain=45_000, n_train=45_000, epochs=100, minutes=0.75, arch="resnet18", batch_size=256,
                  batch_sizes=(256, 512, 1024), warmup_epochs=0.5),
    # asked for on purpose (SIMCLR_MODE=paper): ResNet-18, 100 epochs per run on all 45,000 images, hours per run
    "paper": Scale(n_pretrain=45_000, n_train=45_000, epochs=100, arch="resnet18", batch_size=512,
                   batch_sizes=(256, 512, 1024), warmup_epochs=10, recipe=(("temperature", 0.5),)),
}


def settings(section: str, scale: Scale) -> dict[str, dict[str, Any]]:
    """The settings of one experiment (:data:`SECTIONS`) at ``scale``: :data:`EFFECTS`, or the batch sizes of
    ``scale`` named by their value. Taught in notebook 06."""
    if section == "batch size":
        return {str(b): dict(batch_size=b) for b in scale.batch_sizes}
    if section not in EFFECTS:
        raise ValueError(f"unknown experiment {section!r}; choose one of {', '.join(SECTIONS)}")
    return EFFECTS[section]


@dataclass
class ExperimentData:
    pretrain: ImageData  # images for pre-training (labels unused)
    train: ImageData  # labelled images the probe / kNN classifier is fitted on
    val: ImageData  # labelled validation images they are scored on (held out of the training images)


def load_experiment_data(dataset: str, data_dir: Optional[str], scale: Scale, val_fraction: float = 0.1,
                         split_seed: int = 0) -> ExperimentData:
    """A class-balanced, seeded validation split of the training images (``data.validation_split``); the
    first ``scale.n_pretrain`` / ``scale.n_train`` images of the rest pre-train / fit the classifiers."""
    train = load_dataset(dataset, "train", data_dir, subset=scale.subset, progress=False)
    pool, val = validation_split(train, fraction=val_fraction, seed=split_seed)
    return ExperimentData(pool.subset(scale.n_pretrain), pool.subset(scale.n_train), val)


def experiment_config(scale: Scale, **overrides: Any) -> SimCLRConfig:
    """The base configuration every setting changes: the quick preset (``SimCLRConfig.quick``, chosen on a
    validation split) with ``scale``'s recipe, length and encoder, without monitoring, TensorBoard or a progress
    bar per run. A scale with ``minutes`` plans every run in time (the cosine follows the time used)."""
    base = dict(subset=None, arch=scale.arch, batch_size=scale.batch_size, epochs=scale.epochs,
                minutes=scale.minutes, warmup_epochs=min(scale.warmup_epochs, scale.epochs), knn_every=0,
                checkpoint_every=scale.epochs, progress=False, tensorboard=False)
    return SimCLRConfig.quick(**{**base, **dict(scale.recipe), **overrides})


def evaluate_run(model: Any, cfg: SimCLRConfig, data: ExperimentData, spaces: Sequence[str] = ("h", "z"),
                 knn_k: int = 200, C: float = 1.0) -> dict:
    """kNN (cosine, k = ``knn_k``) and linear-probe (fixed ``C``) top-1 in % on the validation split, for the
    frozen features h and z = g(h) (Sec. 4.2) of ``model``.

    Shape: returns ``{"knn_h": float, "probe_h": float, "knn_z": ..., "probe_z": ...}`` for each of ``spaces``.
    """
    scores = evaluate_frozen(model, data.train, data.val, spaces, knn_k=knn_k, C=C)
    return {f"{s}_{space}": 100 * scores[f"{s}_{space}"] for space in spaces for s in ("knn", "probe")}


def setting_config(base: SimCLRConfig, changes: Mapping[str, Any]) -> tuple[SimCLRConfig, Optional[tuple]]:
    """The config of one setting and its augmentation ops (None: the config's own). A new batch size without a
    new ``lr`` scales the base peak LR by sqrt(B / B_base) (App. B.1's square-root rule)."""
    changes = dict(changes)
    ops = changes.pop("ops", None)
    if "batch_size" in changes and "lr" not in changes:
        changes["lr"] = base.peak_lr() * math.sqrt(changes["batch_size"] / base.batch_size)
    return base.replace(**changes), (tuple(ops) if ops is not None else None)


def run_name(base: SimCLRConfig, cfg: SimCLRConfig, ops: Optional[tuple]) -> str:
    """``field=value_..._seedK`` for the fields where ``cfg`` differs from ``base`` ("base" if none): two settings
    with the same effective config (e.g. the base's own temperature) share one run."""
    ref, mine = base.to_dict(), cfg.to_dict()
    diff = [f"{k}={_label(v)}" for k, v in sorted(mine.items()) if k not in ("seed", "out_dir") and ref[k] != v]
    diff += [f"ops={_label(ops)}"] if ops is not None else []
    return "_".join(diff or ["base"]) + f"_seed{cfg.seed}"


def run_one(cfg: SimCLRConfig, data: ExperimentData, ops: Optional[Sequence[str]] = None,
            evaluate: Evaluate = evaluate_run) -> dict:
    """One pre-training run (with only ``ops`` if given) and its evaluation; seconds include both."""
    t0 = time.perf_counter()
    res = pretrain(cfg, data=data.pretrain, augment=None if ops is None else SimCLRAugment.from_config(cfg, ops),
                   overwrite=True)  # an experiment's run is recomputed, never resumed: it replaces its own folder
    t1 = time.perf_counter()
    scores = evaluate(res.model, cfg, data)
    return dict(loss=res.history[-1]["loss"], steps=res.history[-1]["step"], **scores,
                train_seconds=t1 - t0, seconds=time.perf_counter() - t0)


def run_settings(base: SimCLRConfig, settings: Mapping[str, Mapping[str, Any]], data: ExperimentData,
                 seeds: Sequence[int] = (0, 1), evaluate: Evaluate = evaluate_run, cache: Optional[dict] = None,
                 progress: bool = True) -> list[dict]:
    """Pre-train and score every setting with every seed. Taught in notebook 06.

    Each run writes to ``<base.out_dir>/<run_name>``. ``cache`` (a dict kept across calls) maps run names to their
    results, so a setting equal to one already run (the base config appears in every experiment) is not rerun.

    Returns:
        one row per (setting, seed): ``setting``, ``seed``, ``run``, the scores of ``evaluate``, the final
        ``loss``, the optimiser ``steps`` and the ``seconds``.
    """
    cache = {} if cache is None else cache
    rows, jobs = [], [(name, seed) for name in settings for seed in seeds]
    for name, seed in tqdm(jobs, desc="runs", disable=not progress, leave=False):
        cfg, ops = setting_config(base.replace(seed=seed), settings[name])
        key = run_name(base, cfg, ops)
        if key not in cache:
            cache[key] = run_one(cfg.replace(out_dir=str(Path(base.out_dir) / key)), data, ops, evaluate)
        rows.append(dict(setting=name, seed=seed, run=key, **cache[key]))
    return rows


def planned_runs(base: SimCLRConfig, scale: Scale, sections: Sequence[str] = SECTIONS) -> list[str]:
    """The distinct runs (:func:`run_name`) that :func:`run_settings` makes for ``sections`` at ``scale``: a setting
    equal to the base (in every experiment) is one run per seed."""
    names = [run_name(base, *setting_config(base.replace(seed=seed), changes)) for section in sections
             for changes in settings(section, scale).values() for seed in scale.seeds]
    return list(dict.fromkeys(names))


def random_init(base: SimCLRConfig, data: ExperimentData, seeds: Sequence[int] = (0, 1),
                evaluate: Evaluate = evaluate_run) -> list[dict]:
    """The same encoder never trained, one row per seed of its initialisation: every experiment's floor."""
    rows = []
    for seed in seeds:
        rows.append(dict(setting="random init", seed=seed, **evaluate(random_init_model(base, seed), base, data)))
    return rows


def effect(rows: Sequence[Mapping[str, Any]], a: str, b: str, value: str) -> dict:
    """How much setting ``a`` beats setting ``b`` on ``value``: the difference of the seed means in points, and
    whether the seeds separate them (every seed of the winner above every seed of the other)."""
    s = {r["setting"]: r for r in summarize(rows, value)}
    diff = s[a]["mean"] - s[b]["mean"]
    separated = s[a]["lo"] > s[b]["hi"] if diff > 0 else s[b]["lo"] > s[a]["hi"]
    return dict(diff=diff, separated=separated)


def describe(rows: Sequence[Mapping[str, Any]], a: str, b: str, value: str = "probe_h") -> str:
    """One line on :func:`effect`: ``"a - b = +1.2 points (seeds separate)"`` or ``"... (within seed spread)"``."""
    e = effect(rows, a, b, value)
    return f"{a} − {b}: {e['diff']:+.1f} points ({'seeds separate' if e['separated'] else 'within seed spread'})"


def load_sweep(relpath: str = LONG_SWEEP, data_dir: Optional[str] = None) -> Optional[dict]:
    """A committed sweep of ``benchmarks/sweep_experiments.py`` (JSON: ``scale``, ``random_init`` rows,
    ``sections``: experiment -> rows, ``command``, ``date``, ``machine``, ``torch``): read in place in a clone,
    downloaded from the repository elsewhere (Colab); None, with one line saying why, when neither works."""
    from simclr_lib.data import resolve_data_dir
    from simclr_lib.runs.registry import RAW_BASE, REPO_ROOT, fetch

    path = REPO_ROOT / relpath
    if not path.is_file():
        try:
            path = fetch(RAW_BASE + relpath, resolve_data_dir(data_dir) / "sweeps" / Path(relpath).name,
                         progress=False)
        except OSError as e:
            print(f"no longer sweep to show: {e}")
            return None
    return json.loads(path.read_text())
