"""The offline quickstart: pre-train, compare with random init by logistic regression, draw a t-SNE.

On a fresh machine with no internet and no GPU: CIFAR-10 if the data dir has it, else the embedded ``shapes`` set, with
``SimCLRConfig.quick()`` and ``config.QUICKSTART_RECIPE`` (the width-16 encoder with its h widened to 1,024 by a 1x1
conv, at batch 64 on all training images, pre-trained on 24 px views: chosen at equal time on a validation split;
the probes see the 32 px images). It runs on a time budget
(``minutes``, 10 by default): after loading the data it measures the random-init baseline (features, probe, t-SNE: the
trained model's share costs as much) and the real training step on this device, prints the plan that fits, and
pre-trains with ``cfg.minutes`` (``runs.budget``): the run re-plans its last step from the measured step time at every
logging sync and its warm-up + cosine follows the time used, so a machine that slows down trains fewer steps and one
that speeds up more, each ending inside the budget with its cosine complete. ``epochs=`` trains exactly that many epochs
with no budget. The probes (trained and random init) fit all the labelled training images and score all the test images,
as the paper's linear evaluation does (45,000 labels gave +1.3 points over 10,000 on the validation split for 6 s more),
with ``config.QUICKSTART_PROBE_C`` (C = 1 in the smoke run). Measurements in docs/results.md.
"""
from __future__ import annotations

import importlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from simclr_lib import train as T
from simclr_lib.augment import make_views
from simclr_lib.config import (QUICKSTART_PROBE_C, QUICKSTART_RECIPE, SimCLRConfig, labelled_splits, load_monitor_data,
                               load_pretrain_data)
from simclr_lib.data import ImageData, epoch_order, find_dataset
from simclr_lib.embed import tsne
from simclr_lib.evaluate import evaluate_frozen, features, random_init_model
from simclr_lib.runs.budget import MARGIN_STEPS, TimeBudget
from simclr_lib.runs.checkpoint import save_run
from simclr_lib.runs.lock import prepare_out_dir
from simclr_lib.runs.recorder import LOG_EVERY
from simclr_lib.runtime import atomic_write_text
from simclr_lib.teaching.plots import save_figure, side_by_side
from simclr_lib.train import pretrain

DEFAULT_MINUTES = 10.0  # the budget when neither minutes nor epochs is given (the smoke preset has none)
MIN_STEPS = 2 * LOG_EVERY  # a budget that fits fewer training steps is too short (the plan needs measurements)
CALIBRATION_SECONDS = 0.5  # the step is timed for at least this long (at least 3 steps, at most 50)
PROBE_MARGIN = 1.5  # the trained features' L-BFGS may need more iterations than the random-init baseline's
KNN_EVALS = 4  # kNN monitor evaluations of a budgeted run, plus the one at its end
CHECKPOINTS = 20  # about this many checkpoints in a budgeted run (every epoch in a short one)
MAX_SLOWDOWN = 3.0  # the post-training reserve is scaled by the step's slowdown, at most this much
MAX_SPEEDUP = 10.0  # a machine that speeds up may train up to this many times the planned epochs (cfg.epochs)
WARMUP_SHARE = 0.1  # the warm-up is at most this share of the planned steps
SLACK = 0.03  # share of the budget kept free (start-up, figure, metrics.json); at least MIN_SLACK_S
MIN_SLACK_S = 0.5
RETIME_IMAGES = (256, 1024)  # the baseline's eval forward is timed again on these many images (untimed, timed)


def probe(model, train: ImageData, test: ImageData, C: float = 1.0) -> tuple[dict, torch.Tensor]:
    """Linear-probe top-1 of the model's frozen h (inverse regularisation ``C``); returns the result dict and the
    test features."""
    scores = evaluate_frozen(model, train, test, scores=("probe",), C=C)
    return scores["probe_h_result"], scores["test_features_h"]


@dataclass
class Side:
    """One side of the comparison (random init or trained): its probe, t-SNE map, and what they cost."""
    result: dict
    xy: np.ndarray
    seconds: float  # features + probe fit + t-SNE
    feature_seconds_per_image: float  # the eval forward of one image on the device

    @staticmethod
    def measure(model, train: ImageData, test: ImageData, n_plot: int, C: float = 1.0) -> "Side":
        t0 = time.perf_counter()
        result, fte = probe(model, train, test, C)
        feature_s = time.perf_counter() - t0 - result["seconds"]
        xy = tsne(fte[:n_plot])
        return Side(result, xy, time.perf_counter() - t0, feature_s / (len(train) + len(test)))

    def at_speed_now(self, model: torch.nn.Module, images: torch.Tensor) -> "Side":
        """This side's costs at the device's speed now: the eval forward is timed again on a few images and, if
        the machine was busier when this side was measured (another process holding a core), its seconds are
        scaled down by the ratio; never up (a slowdown while training scales the reserve by itself)."""
        warm, timed = RETIME_IMAGES
        if len(images) < warm + timed:
            return self
        features(model, images[:warm])  # untimed: first-call allocations
        t0 = time.perf_counter()
        features(model, images[warm:warm + timed])
        r = min(1.0, (time.perf_counter() - t0) / timed / self.feature_seconds_per_image)
        return Side(dict(self.result, seconds=r * self.result["seconds"]), self.xy, r * self.seconds,
                    r * self.feature_seconds_per_image)

    def record(self) -> dict:
        """What this side cost, as metrics.json records it (the plan's reserve is set from the random-init side)."""
        return dict(seconds=self.seconds, probe_seconds=self.result["seconds"],
                    probe_iterations=self.result["iterations"], feature_seconds_per_image=self.feature_seconds_per_image)

    def post_seconds(self) -> float:
        """The trained side's expected cost, this side's with a margin on the probe fit."""
        return self.seconds + (PROBE_MARGIN - 1) * self.result["seconds"]


def calibrate(cfg: SimCLRConfig, data: ImageData) -> tuple[float, float, float]:
    """Seconds per real training step on ``cfg``'s device (after one warm-up step), per checkpoint write, and
    for setting up a run.

    A throw-away run of ``train.setup_run`` (same model, optimiser, precision, augmentation), so the
    measured step is the one ``pretrain`` runs; the checkpoint goes to a temporary folder.
    """
    with tempfile.TemporaryDirectory() as tmp:
        t_setup = time.perf_counter()
        if cfg.tensorboard:
            importlib.import_module("torch.utils.tensorboard")  # imported here, pretrain's import is then free
        run = T.setup_run(cfg.replace(knn_every=0, tensorboard=False, progress=False, out_dir=tmp), data)
        setup_s = time.perf_counter() - t_setup
        order = epoch_order(len(run.images), cfg.batch_size, 0, cfg.seed, device=run.images.device)

        def step(i: int) -> torch.Tensor:
            views = make_views(run.images[order[i % len(order)]], run.augment, cfg.n_views, run.generator,
                               cfg.channels_last)
            return T.train_step(run.model, views, run.optimizer, run.scaler, cfg.temperature, cfg.n_views,
                                run.dtype, run.scheduler)[0]

        step(0).item()  # warm-up: first-call allocations, kernel selection
        n, t0 = 0, time.perf_counter()
        while n < 3 or (n < 50 and time.perf_counter() - t0 < CALIBRATION_SECONDS):
            loss, n = step(n + 1), n + 1
            if n >= 3:
                loss.item()  # wait for the device before reading the clock
        s_per_step = (time.perf_counter() - t0) / n
        t1 = time.perf_counter()
        save_run(run, 0)
        return s_per_step, time.perf_counter() - t1, setup_s


@dataclass
class Plan:
    """The quickstart's plan in time: what the calibration says fits; ``pretrain`` re-plans it while it trains."""
    budget_s: float
    seconds_per_step: float  # measured (calibrated)
    train_s: float  # pretrain's share (``cfg.minutes``): training, its kNN monitor and checkpoints, and post_s
    steps: int  # optimiser steps planned at the calibrated speed (the first plan; re-planned every LOG_EVERY steps)
    images: int  # pre-training images
    steps_per_epoch: int
    reserve_s: float  # kept from the time left for everything but training (post_s, pretrain's set-up, slack)
    post_s: float  # of it: the trained model's features, probe and t-SNE (the baseline's, with a margin)
    slack_s: float  # of it: kept free for start-up, the figure, metrics.json and small misestimates
    epoch_end_s: float  # an epoch end with the kNN monitor and a checkpoint

    @property
    def epochs(self) -> float:
        """The planned steps in epochs."""
        return self.steps / self.steps_per_epoch

    def line(self) -> str:
        """The plan line the quickstart prints before training."""
        r = self.reserve_s
        return (f"quickstart: {self.seconds_per_step:.3g} s/step measured -> {self.steps} steps planned "
                f"(~{self.epochs:.1f} epochs of {self.steps_per_epoch} steps on {self.images} images) to fit "
                f"{self.budget_s / 60:g} min, re-planned every {LOG_EVERY} steps from the measured step time; the "
                f"LR cosine ends with the time (probe + t-SNE + set-up reserved: "
                f"{f'{r / 60:.1f} min' if r >= 60 else f'{r:.0f} s'})")

    def budget(self) -> TimeBudget:
        """The ``TimeBudget`` ``pretrain`` trains on: the post-training work kept free, scaled by any slowdown."""
        return TimeBudget(after_s=self.post_s, reference_step_s=self.seconds_per_step,
                          epoch_end_s=self.epoch_end_s, max_slowdown=MAX_SLOWDOWN)


def make_plan(cfg: SimCLRConfig, budget_s: float, elapsed_s: float, calibration: tuple[float, float, float],
              n_images: int, baseline: Side, n_monitor: int) -> Plan:
    """The steps that fit ``budget_s`` after ``elapsed_s``, the set-up, the post-training work (measured on the
    baseline), the kNN monitor and checkpoints; a one-line ``ValueError`` naming ``--minutes`` if too few do."""
    s_per_step, checkpoint_s, setup_s = calibration
    knn_s = baseline.feature_seconds_per_image * n_monitor  # one kNN monitor evaluation: the eval forward
    post_s, slack_s = baseline.post_seconds(), max(MIN_SLACK_S, SLACK * budget_s)
    train_s = budget_s - elapsed_s - setup_s - slack_s
    spe, end_s = n_images // cfg.batch_size, knn_s + checkpoint_s
    steps = math.floor((train_s - post_s - end_s - MARGIN_STEPS * s_per_step) / (s_per_step + end_s / spe))
    reserve_s = setup_s + slack_s + post_s
    if steps < MIN_STEPS:
        need = elapsed_s + reserve_s + end_s + (MIN_STEPS + MARGIN_STEPS) * (s_per_step + end_s / spe)
        raise ValueError(f"--minutes {budget_s / 60:g} is too short on this machine: data, calibration, probes "
                         f"and t-SNE take ~{(elapsed_s + reserve_s) / 60:.2g} min and a step "
                         f"{s_per_step:.3g} s; give --minutes {math.ceil(need / 6) / 10:g} or more "
                         "(or --epochs N to train without a budget)")
    return Plan(budget_s, s_per_step, train_s, steps, n_images, spe, reserve_s, post_s, slack_s, end_s)


def _budget(cfg: SimCLRConfig, minutes: float, t0: float, data: ImageData, baseline: Side,
            monitor, model: Optional[torch.nn.Module] = None) -> tuple[SimCLRConfig, Plan]:
    """Calibrate, plan, print the plan line; the config of a run planned in time.

    ``cfg.minutes`` is pretrain's share of the budget; ``cfg.epochs`` only caps the run (``MAX_SPEEDUP`` times the
    plan), the kNN monitor and checkpoint cadence follow the plan, the warm-up is at most ``WARMUP_SHARE`` of it.
    """
    if not minutes > 0:
        raise ValueError(f"--minutes {minutes:g} must be > 0")
    calibration = calibrate(cfg, data)
    if model is not None:  # the baseline's costs at the speed the step was calibrated at
        baseline = baseline.at_speed_now(model, data.images)
    n_monitor = sum(len(d) for d in monitor) if monitor else 0
    plan = make_plan(cfg, 60 * minutes, time.perf_counter() - t0, calibration, len(data), baseline, n_monitor)
    print(plan.line(), flush=True)
    epochs = math.ceil(plan.epochs)
    cfg = cfg.replace(minutes=plan.train_s / 60, epochs=max(1, math.ceil(MAX_SPEEDUP * plan.epochs)),
                      warmup_epochs=min(cfg.warmup_epochs, WARMUP_SHARE * plan.epochs),
                      knn_every=max(1, math.ceil(epochs / KNN_EVALS)) if cfg.knn_every > 0 else 0,
                      checkpoint_every=max(1, math.ceil(epochs / CHECKPOINTS)))
    return cfg, plan


def budget_minutes(smoke: bool, epochs: Optional[int], minutes: Optional[float]) -> Optional[float]:
    """The run's budget: none with explicit ``epochs`` (they override it) or for ``smoke`` without ``minutes``."""
    if epochs is not None or (smoke and minutes is None):
        return None
    return DEFAULT_MINUTES if minutes is None else minutes


def quickstart_config(name: str, smoke: bool, epochs: Optional[int], **overrides) -> SimCLRConfig:
    """The quickstart's pre-training: ``SimCLRConfig.quick()`` with ``QUICKSTART_RECIPE`` (chosen at equal time on
    a validation split), or the smoke preset; ``epochs`` replaces the preset's (the budget's cap otherwise)."""
    if smoke:
        return SimCLRConfig.smoke(dataset=name, **overrides, **({} if epochs is None else dict(epochs=epochs)))
    return SimCLRConfig.quick(**{**QUICKSTART_RECIPE, "dataset": name, **overrides,
                                 **({} if epochs is None else dict(epochs=epochs))})


def run_quickstart(out_dir: str = "runs/quickstart", data_dir: Optional[str] = None, device: str = "auto",
                   smoke: bool = False, dataset: Optional[str] = None, epochs: Optional[int] = None,
                   n_probe_train: Optional[int] = None, n_probe_test: Optional[int] = None, progress: bool = True,
                   seed: int = 0, overwrite: bool = False, minutes: Optional[float] = None,
                   download: bool = False) -> dict:
    """Pre-train, probe trained vs random init, save ``metrics.json`` and ``tsne.png`` under ``out_dir``.

    ``minutes``: the time budget of the whole run (default ``DEFAULT_MINUTES``; none for ``smoke``); ``epochs``
    trains exactly that many epochs instead, with no budget. ``download``: fetch a missing CIFAR-10 first.
    ``n_probe_train`` / ``n_probe_test``: the labelled images of the probe (None: all of the train / test split, the
    paper's linear evaluation, Sec. 3; 256 each for ``smoke``).
    """
    t0, load = time.perf_counter(), load_average()
    name, why = (dataset, "") if dataset else find_dataset(data_dir, download)
    print(f"quickstart: pre-training on {name}" + (f" (CIFAR-10 not usable: {why}; using the embedded shapes set"
                                                    + ("" if download else "; --download fetches CIFAR-10 where "
                                                       "there is internet") + ")" if why else ""), flush=True)
    cfg = quickstart_config(name, smoke, epochs, data_dir=data_dir, device=device, out_dir=out_dir, progress=progress,
                  seed=seed, download=download)
    minutes = budget_minutes(smoke, epochs, minutes)
    prepare_out_dir(Path(out_dir), False, overwrite, resumable=False)  # refuse a run there before spending time
    if smoke:
        n_probe_train, n_probe_test = 256, 256
    data, monitor = load_pretrain_data(cfg), load_monitor_data(cfg)
    train, test = labelled_splits(cfg, n_probe_train, n_probe_test)
    random_model = random_init_model(cfg, device=device)  # the same architecture, never trained
    n_plot = min(len(test), 1000 if not smoke else 200)
    C = 1.0 if smoke else QUICKSTART_PROBE_C  # the same probe for both sides
    random = Side.measure(random_model, train, test, n_plot, C)
    plan = budget = None
    if minutes is not None:
        cfg, plan = _budget(cfg, minutes, t0, data, random, monitor, random_model)
        budget = plan.budget()
    result = pretrain(cfg, data=data, monitor=monitor, overwrite=overwrite, budget=budget)
    trained = Side.measure(result.model, train, test, n_plot, C)
    schedule = dict(result.metrics["budget"], replans=budget.log) if budget else None
    return _report(cfg, name, t0, result, random, trained, test, n_plot, plan, load, schedule)


def load_average() -> Optional[list[float]]:
    """The 1, 5 and 15-minute load averages of ``/proc/loadavg`` (None where there is none)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def _plan_record(plan: Optional[Plan]) -> Optional[dict]:
    """The plan as metrics.json records it (None without a budget)."""
    if plan is None:
        return None
    return dict(line=plan.line(), seconds_per_step=plan.seconds_per_step, steps=plan.steps, epochs=plan.epochs,
                steps_per_epoch=plan.steps_per_epoch, train_seconds=plan.train_s, reserved_seconds=plan.reserve_s,
                post_seconds=plan.post_s, slack_seconds=plan.slack_s, epoch_end_seconds=plan.epoch_end_s)


def _report(cfg: SimCLRConfig, name: str, t0: float, result, random: Side, trained: Side, test: ImageData,
            n_plot: int, plan: Optional[Plan], load: Optional[list[float]], schedule: Optional[dict]) -> dict:
    """The figure, metrics.json (the plan, what was run, the schedule's re-plans, the load at start and end) and
    the closing line."""
    r, t = random.result["top1"], trained.result["top1"]
    fig = side_by_side(random.xy, trained.xy, test.labels[:n_plot], test.classes,
                       titles=(f"random init: probe {r:.1%}", f"SimCLR: probe {t:.1%}"))
    fig_path = save_figure(fig, Path(cfg.out_dir) / "tsne.png")
    m, steps = result.metrics, result.metrics.get("step", 0)
    epochs = m["budget"]["epochs"] if "budget" in m else m["epochs_run"]
    metrics = dict(dataset=name, linear_probe_top1=t, random_init_probe_top1=r, gain_points=100 * (t - r),
                   knn_top1=m.get("knn_top1"), budget_minutes=plan.budget_s / 60 if plan else None,
                   plan=_plan_record(plan), planned_epochs=round(plan.epochs, 3) if plan else cfg.epochs,
                   steps_run=steps, epochs_run=m["epochs_run"], epochs=epochs, final_lr=m.get("lr"),
                   seconds_per_step=plan.seconds_per_step if plan else None,
                   trained_seconds_per_step=m["total_seconds"] / max(1, steps), schedule=schedule,
                   pretrain_images=cfg.subset, pretrain_seconds=m["total_seconds"],
                   load_average=dict(start=load, end=load_average()), total_seconds=time.perf_counter() - t0,
                   probe_train_images=trained.result["n_train"], probe_test_images=len(test),
                   probe_C=trained.result["C"], sides=dict(random=random.record(), trained=trained.record()),
                   config=cfg.to_dict(),
                   tsne_figure=str(fig_path), history=result.history)
    atomic_write_text(json.dumps(metrics, indent=2), Path(cfg.out_dir) / "metrics.json")
    print(f"quickstart: linear probe {t:.1%} (random init {r:.1%}, {metrics['gain_points']:+.1f} points) after "
          f"{steps} steps ({epochs:.3g} epochs) in {metrics['total_seconds'] / 60:.1f} min; figure {fig_path}, "
          f"metrics {Path(cfg.out_dir) / 'metrics.json'}", flush=True)
    return metrics
