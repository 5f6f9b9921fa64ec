"""The offline quickstart: pre-train, compare with random init by logistic regression, draw a t-SNE.

On a fresh machine with no internet and no GPU: CIFAR-10 if the data dir has it, else the embedded ``shapes``
set, with ``SimCLRConfig.quick()``'s data and model. It runs on a time budget (``minutes``, 10 by default): after
loading the data it measures the random-init baseline (features, probe, t-SNE: the trained model's share costs
as much) and the real training step on this device, plans the epochs that fit (or, when fewer than
``MIN_EPOCHS`` fit, a smaller subset), and a :class:`Deadline` callback stops training early when the machine
slows down, so a slower machine trains fewer epochs instead of taking longer. ``epochs=`` trains exactly that
many epochs with no budget. Measurements in docs/results.md.
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
from simclr_lib.config import SimCLRConfig, labelled_splits, load_monitor_data, load_pretrain_data
from simclr_lib.data import ImageData, epoch_order, find_dataset
from simclr_lib.embed import tsne
from simclr_lib.evaluate import evaluate_frozen, random_init_model
from simclr_lib.runs.lock import prepare_out_dir
from simclr_lib.runtime import atomic_write_text
from simclr_lib.teaching.plots import save_figure, side_by_side
from simclr_lib.train import pretrain

DEFAULT_MINUTES = 10.0  # the budget when neither minutes nor epochs is given (the smoke preset has none)
MIN_EPOCHS = 3  # when fewer epochs of the whole subset fit, train this many epochs of fewer images
CALIBRATION_SECONDS = 0.5  # the step is timed for at least this long (at least 3 steps, at most 50)
PROBE_MARGIN = 1.5  # the trained features' L-BFGS may need more iterations than the random-init baseline's
KNN_EVALS = 4  # kNN monitor evaluations of a budgeted run, plus the one at its end
CHECKPOINTS = 20  # about this many checkpoints in a budgeted run (every epoch in a short one)
MAX_SLOWDOWN = 3.0  # the deadline scales the post-training reserve by the step's slowdown, at most this much
SLACK = 0.03  # share of the budget kept free (start-up, figure, metrics.json); at least 1 s


def probe(model, train: ImageData, test: ImageData) -> tuple[dict, torch.Tensor]:
    """Linear-probe top-1 of the model's frozen h; returns the result dict and the test features."""
    scores = evaluate_frozen(model, train, test, scores=("probe",))
    return scores["probe_h_result"], scores["test_features_h"]


@dataclass
class Side:
    """One side of the comparison (random init or trained): its probe, t-SNE map, and what they cost."""
    result: dict
    xy: np.ndarray
    seconds: float  # features + probe fit + t-SNE
    feature_seconds_per_image: float  # the eval forward of one image on the device

    @staticmethod
    def measure(model, train: ImageData, test: ImageData, n_plot: int) -> "Side":
        t0 = time.perf_counter()
        result, fte = probe(model, train, test)
        feature_s = time.perf_counter() - t0 - result["seconds"]
        xy = tsne(fte[:n_plot])
        return Side(result, xy, time.perf_counter() - t0, feature_s / (len(train) + len(test)))

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
        T.save_run(run, 0)
        return s_per_step, time.perf_counter() - t1, setup_s


@dataclass
class Plan:
    budget_s: float
    seconds_per_step: float  # measured
    epochs: int
    images: int  # pre-training images (the preset's subset, or fewer when few epochs fit)
    steps_per_epoch: int
    reserve_s: float  # the budget kept for everything but the epochs (kNN monitor, set-up, probes, t-SNE, slack)
    post_s: float  # of it: the trained model's features, probe and t-SNE (the baseline's, with a margin)
    slack_s: float  # of it: kept free for start-up, the figure, metrics.json and small misestimates
    epoch_extra_s: float  # the most an epoch's end can add (kNN monitor + checkpoint)

    def line(self) -> str:
        r = self.reserve_s
        return (f"quickstart: {self.seconds_per_step:.3g} s/step measured -> {self.epochs} epochs of "
                f"{self.steps_per_epoch} steps on {self.images} images to fit {self.budget_s / 60:g} min "
                f"(probe + t-SNE + kNN monitor reserved: {f'{r / 60:.1f} min' if r >= 60 else f'{r:.0f} s'})")


def plan_epochs(train_s: float, s_per_step: float, n_images: int, batch_size: int, checkpoint_s: float = 0.0,
                min_epochs: int = MIN_EPOCHS) -> tuple[int, int]:
    """The (epochs, images) that train in ``train_s`` seconds: all ``n_images`` for as many epochs as fit; when
    fewer than ``min_epochs`` fit, ``min_epochs`` epochs of the first images that do (whole batches); (0, 0) when
    not even that fits. An epoch costs its steps and a checkpoint (at most ``CHECKPOINTS`` of them)."""
    train_s = max(train_s, 0.0)

    def fit(steps: int) -> int:  # epochs of this many steps
        n = int(train_s / (steps * s_per_step + checkpoint_s))
        return n if n <= CHECKPOINTS else int((train_s - CHECKPOINTS * checkpoint_s) / (steps * s_per_step))

    steps = n_images // batch_size
    if fit(steps) >= min_epochs:
        return fit(steps), n_images
    steps = min(steps - 1, int((train_s / min_epochs - checkpoint_s) / s_per_step))
    return (min_epochs, steps * batch_size) if steps >= 1 else (0, 0)


def make_plan(cfg: SimCLRConfig, budget_s: float, elapsed_s: float, calibration: tuple[float, float, float],
              n_images: int, baseline: Side, n_monitor: int) -> Plan:
    """The epochs (and images) that fit ``budget_s`` after ``elapsed_s``, the post-training work (measured on the
    baseline), the kNN monitor, set-up and checkpoints; a one-line ``ValueError`` naming ``--minutes`` if none do."""
    s_per_step, checkpoint_s, setup_s = calibration
    knn_s = baseline.feature_seconds_per_image * n_monitor  # one kNN monitor evaluation: the eval forward
    post_s, slack_s = baseline.post_seconds(), max(1.0, SLACK * budget_s)
    reserve_s = post_s + slack_s + setup_s + (KNN_EVALS + 1) * knn_s
    epochs, images = plan_epochs(budget_s - elapsed_s - reserve_s, s_per_step, n_images, cfg.batch_size,
                                 checkpoint_s)
    if epochs == 0:
        need = elapsed_s + reserve_s + MIN_EPOCHS * ((n_images // cfg.batch_size) * s_per_step + checkpoint_s)
        raise ValueError(f"--minutes {budget_s / 60:g} is too short on this machine: data, calibration, probes, "
                         f"t-SNE and kNN monitor take ~{(elapsed_s + reserve_s) / 60:.2g} min and a step "
                         f"{s_per_step:.3g} s; give --minutes {math.ceil(need / 6) / 10:g} or more "
                         "(or --epochs N to train without a budget)")
    return Plan(budget_s, s_per_step, epochs, images, images // cfg.batch_size, reserve_s, post_s, slack_s,
                knn_s + checkpoint_s)


class Deadline:
    """``pretrain`` callback: stop after an epoch when the next one and the work after training would end past
    ``deadline`` (a ``time.perf_counter`` value), e.g. because the machine slowed down since the calibration."""

    def __init__(self, plan: Plan, deadline: float):
        self.plan, self.deadline, self.stopped_after = plan, deadline, None

    def __call__(self, record: dict) -> bool:
        p = self.plan
        if record["epoch"] >= p.epochs:
            return False
        step_s = record["seconds"] / p.steps_per_epoch
        slower = min(max(1.0, step_s / p.seconds_per_step), MAX_SLOWDOWN)  # a loaded CPU slows the probes too
        after = record["seconds"] + p.epoch_extra_s + slower * p.post_s + p.slack_s / 2  # half the slack may go
        if time.perf_counter() + after <= self.deadline:
            return False
        self.stopped_after = record["epoch"]
        print(f"quickstart: stopping after epoch {record['epoch']} of {p.epochs} to finish within "
              f"{p.budget_s / 60:g} min: a step now takes {step_s:.3g} s (measured {p.seconds_per_step:.3g} s)",
              flush=True)
        return True


def _budget(cfg: SimCLRConfig, minutes: float, t0: float, data: ImageData, baseline: Side,
            monitor) -> tuple[SimCLRConfig, ImageData, Plan, Deadline]:
    """Calibrate, plan, print the plan line; the config (epochs, subset, kNN and checkpoint cadence) and data."""
    if not minutes > 0:
        raise ValueError(f"--minutes {minutes:g} must be > 0")
    calibration = calibrate(cfg, data)
    n_monitor = sum(len(d) for d in monitor) if monitor else 0
    plan = make_plan(cfg, 60 * minutes, time.perf_counter() - t0, calibration, len(data), baseline, n_monitor)
    print(plan.line(), flush=True)
    if plan.images < len(data):
        data = data.subset(plan.images)
    cfg = cfg.replace(epochs=plan.epochs, subset=plan.images,  # the LR schedule is planned for these epochs
                      knn_every=max(1, math.ceil(plan.epochs / KNN_EVALS)) if cfg.knn_every > 0 else 0,
                      checkpoint_every=max(1, math.ceil(plan.epochs / CHECKPOINTS)))
    return cfg, data, plan, Deadline(plan, t0 + plan.budget_s)


def budget_minutes(smoke: bool, epochs: Optional[int], minutes: Optional[float]) -> Optional[float]:
    """The run's budget: none with explicit ``epochs`` (they override it) or for ``smoke`` without ``minutes``."""
    if epochs is not None or (smoke and minutes is None):
        return None
    return DEFAULT_MINUTES if minutes is None else minutes


def _config(name: str, smoke: bool, epochs: Optional[int], **overrides) -> SimCLRConfig:
    preset = SimCLRConfig.smoke if smoke else SimCLRConfig.quick
    return preset(dataset=name, **overrides, **({} if epochs is None else dict(epochs=epochs)))


def run_quickstart(out_dir: str = "runs/quickstart", data_dir: Optional[str] = None, device: str = "auto",
                   smoke: bool = False, dataset: Optional[str] = None, epochs: Optional[int] = None,
                   n_probe_train: int = 10000, n_probe_test: int = 10000, progress: bool = True,
                   seed: int = 0, overwrite: bool = False, minutes: Optional[float] = None,
                   download: bool = False) -> dict:
    """Pre-train, probe trained vs random init, save ``metrics.json`` and ``tsne.png`` under ``out_dir``.

    ``minutes``: the time budget of the whole run (default ``DEFAULT_MINUTES``; none for ``smoke``); ``epochs``
    trains exactly that many epochs instead, with no budget. ``download``: fetch a missing CIFAR-10 first.
    """
    t0 = time.perf_counter()
    name, why = (dataset, "") if dataset else find_dataset(data_dir, download)
    print(f"quickstart: pre-training on {name}" + (f" (CIFAR-10 not usable: {why}; using the embedded shapes set"
                                                    + ("" if download else "; --download fetches CIFAR-10 where "
                                                       "there is internet") + ")" if why else ""), flush=True)
    cfg = _config(name, smoke, epochs, data_dir=data_dir, device=device, out_dir=out_dir, progress=progress,
                  seed=seed, download=download)
    minutes = budget_minutes(smoke, epochs, minutes)
    prepare_out_dir(Path(out_dir), False, overwrite, resumable=False)  # refuse a run there before spending time
    if smoke:
        n_probe_train, n_probe_test = 256, 256
    data, monitor = load_pretrain_data(cfg), load_monitor_data(cfg)
    train, test = labelled_splits(cfg, n_probe_train, n_probe_test)
    random_model = random_init_model(cfg, device=device)  # the same architecture, never trained
    n_plot = min(len(test), 1000 if not smoke else 200)
    random = Side.measure(random_model, train, test, n_plot)
    plan = deadline = None
    if minutes is not None:
        cfg, data, plan, deadline = _budget(cfg, minutes, t0, data, random, monitor)
    result = pretrain(cfg, data=data, monitor=monitor, callbacks=[deadline] if deadline else [], overwrite=overwrite)
    trained = Side.measure(result.model, train, test, n_plot)
    return _report(cfg, name, t0, result, random, trained, test, n_plot, plan, deadline)


def _report(cfg: SimCLRConfig, name: str, t0: float, result, random: Side, trained: Side, test: ImageData,
            n_plot: int, plan: Optional[Plan], deadline: Optional[Deadline]) -> dict:
    """The figure, metrics.json and the closing line."""
    r, t = random.result["top1"], trained.result["top1"]
    fig = side_by_side(random.xy, trained.xy, test.labels[:n_plot], test.classes,
                       titles=(f"random init: probe {r:.1%}", f"SimCLR: probe {t:.1%}"))
    fig_path = save_figure(fig, Path(cfg.out_dir) / "tsne.png")
    m = result.metrics
    metrics = dict(dataset=name, linear_probe_top1=t, random_init_probe_top1=r, gain_points=100 * (t - r),
                   knn_top1=m.get("knn_top1"), budget_minutes=plan.budget_s / 60 if plan else None,
                   planned_epochs=cfg.epochs, epochs_run=m["epochs_run"],
                   seconds_per_step=plan.seconds_per_step if plan else None,
                   trained_seconds_per_step=m["total_seconds"] / max(1, m.get("step", 0)),
                   deadline_stop=bool(deadline and deadline.stopped_after), pretrain_images=cfg.subset,
                   reserved_seconds=plan.reserve_s if plan else None,
                   pretrain_seconds=m["total_seconds"], total_seconds=time.perf_counter() - t0,
                   probe_train_images=trained.result["n_train"], probe_test_images=len(test), config=cfg.to_dict(),
                   tsne_figure=str(fig_path), history=result.history)
    atomic_write_text(json.dumps(metrics, indent=2), Path(cfg.out_dir) / "metrics.json")
    n = m["epochs_run"]
    print(f"quickstart: linear probe {t:.1%} (random init {r:.1%}, {metrics['gain_points']:+.1f} points) after "
          f"{n} epoch{'s' if n != 1 else ''} in {metrics['total_seconds'] / 60:.1f} min; figure {fig_path}, "
          f"metrics {Path(cfg.out_dir) / 'metrics.json'}", flush=True)
    return metrics
