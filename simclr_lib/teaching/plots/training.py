"""Figures of notebooks 03-04: loss/accuracy curves, LR schedules, LARS trust ratios, label fractions.

The single-panel plots draw into the ``ax=`` they are given (a panel of a larger figure) or a new Figure, and
return the Figure.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

from simclr_lib.teaching.plots.core import figure


def plot_history(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """A pre-training run's per-epoch records (``PretrainResult.history``, ``teaching.learner.train_simclr``):
    NT-Xent loss, contrastive top-1/top-5 when recorded, and the kNN monitor with its y-axis from 0 and, when the
    history starts with epoch 0 (the encoder at random init, same monitor), that floor drawn across (Sec. 2, B.9).

    Shape:
        history: E records with ``epoch`` and some of ``loss``, ``contrastive_top1/top5``, ``knn_top1``.
    """
    if not history:
        raise ValueError("history is empty: train at least one epoch first")
    contrastive = any("contrastive_top1" in r for r in history)
    fig, axes = figure(1, 3 if contrastive else 2, (13 if contrastive else 10, 3.6), title=title or None)
    trained = [r for r in history if "loss" in r]
    axes[0].plot([r["epoch"] for r in trained], [r["loss"] for r in trained], "o-")
    axes[0].set(xlabel="epoch", ylabel="NT-Xent loss", title="loss")
    if contrastive:
        for k in ("contrastive_top1", "contrastive_top5"):
            axes[1].plot([r["epoch"] for r in trained], [100 * r[k] for r in trained], "o-", label=k.split("_")[1])
        axes[1].set(xlabel="epoch", ylabel="% of anchors (last batch)", title="contrastive accuracy")
        axes[1].legend()
    ax, knn = axes[-1], [(r["epoch"], 100 * r["knn_top1"]) for r in history if "knn_top1" in r]
    if knn:
        ax.plot(*zip(*knn), "s-", color="C2", label="kNN top-1")
        if knn[0][0] == 0:
            ax.axhline(knn[0][1], color="0.4", ls="--", label=f"random init (epoch 0): {knn[0][1]:.1f} %")
            ax.legend(loc="lower right")
        ax.set_ylim(0, max(v for _, v in knn) * 1.15)
    ax.set(xlabel="epoch", ylabel="top-1 %", title="kNN monitor (frozen h)")
    for a in axes:
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    return fig


def compare_runs(runs: Mapping[str, Sequence[Mapping[str, float]]], title: str = "") -> Figure:
    """Several pre-training runs against their cumulative training time (log scale, so a 4-minute run and a
    1.5-hour run both show): NT-Xent loss and the kNN monitor (Sec. 2, B.9).

    The losses of runs with different temperatures or batch sizes are not on one scale (the chance level is
    log(2B - 1), and tau scales the logits); the kNN monitors of runs with different k or image counts neither.
    Name the runs with their settings.

    Shape:
        runs: name -> E records with ``seconds``, ``loss`` and sometimes ``knn_top1`` (``PretrainResult.history``).
    """
    if not runs or not all(runs.values()):
        raise ValueError("compare_runs needs at least one run, each with at least one epoch of history")
    fig, axes = figure(1, 2, (12, 3.8), title=title or None)
    for name, history in runs.items():
        minutes, total = [], 0.0
        for r in history:
            total += r["seconds"]
            minutes.append(total / 60)
        axes[0].plot(minutes, [r["loss"] for r in history], ".-", label=name)
        knn = [(m, 100 * r["knn_top1"]) for m, r in zip(minutes, history) if r.get("knn_top1") is not None]
        if knn:
            axes[1].plot(*zip(*knn), "s-", label=name)
    axes[0].set(xlabel="training time (minutes, log scale)", ylabel="NT-Xent loss (epoch mean)", title="loss")
    axes[1].set(xlabel="training time (minutes, log scale)", ylabel="top-1 %", title="kNN monitor (frozen h)",
                ylim=(0, 100))
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=1, fontsize="small")
    return fig


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str], title: str = "",
                     ax: Optional[Axes] = None) -> Figure:
    """Row-normalised confusion matrix (% of each true class predicted as each class), annotated.

    Shape:
        y_true, y_pred: (N,) class indices in 0..len(classes)-1.
    """
    import numpy as np

    t, p = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    k = len(classes)
    if t.shape != p.shape or t.size == 0 or min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k:
        raise ValueError(f"y_true and y_pred must be equally long, non-empty class indices below {k}")
    counts = np.zeros((k, k))
    np.add.at(counts, (t, p), 1)
    pct = 100 * counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = figure(size=(6.5, 5.5), ax=ax)
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if pct[i, j] > 50 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right"), ax.set_yticks(range(k), classes)
    ax.set(xlabel="predicted", ylabel="true class", title=title or "confusion matrix (% of each true class)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def plot_curves(curves: Mapping[str, Sequence[float]], xlabel: str = "step", ylabel: str = "loss",
                title: str = "", logy: bool = False, x: Optional[Sequence[float]] = None,
                ax: Optional[Axes] = None) -> Figure:
    """One line per named sequence (e.g. the loss of LARS, SGD and Adam on the same batch).

    Shape:
        curves: {label: (T,) values}; the x axis is ``x`` (T,) or 1..T.
    """
    fig, ax = figure(ax=ax)
    for name, ys in curves.items():
        xs = list(x) if x is not None else range(1, len(ys) + 1)
        ax.plot(xs, list(ys), "o-" if len(ys) <= 30 else "-", ms=3, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_schedules(schedules: Mapping[str, Sequence[float]], steps_per_epoch: int, title: str = "",
                   ax: Optional[Axes] = None) -> Figure:
    """Learning-rate multipliers per step, with the x axis in epochs (paper Sec. B.1: warm-up, then cosine).

    Shape:
        schedules: {label: (T,) multipliers of the peak learning rate}.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} must be >= 1")
    fig, ax = figure(ax=ax)
    for i, (name, ys) in enumerate(schedules.items()):
        ax.plot([s / steps_per_epoch for s in range(len(ys))], list(ys), lw=2, ls=("-", "--", ":")[i % 3],
                label=name)
    ax.set(xlabel="epoch", ylabel="learning rate / peak", title=title, ylim=(-0.03, 1.05))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_trust_ratios(ratios: Mapping[str, float], title: str = "LARS trust ratio per layer",
                      ax: Optional[Axes] = None) -> Figure:
    """Bars of ``eta * ||w|| / ||g + wd w||`` per layer (:func:`~simclr_lib.optim.trust_ratios`), log scale.

    Shape:
        ratios: {parameter name: ratio}, one bar each in the given order.
    """
    if not ratios:
        raise ValueError("no trust ratios to plot: call loss.backward() before trust_ratios()")
    fig, ax = figure(size=(max(6.0, 0.55 * len(ratios) + 2), 4), ax=ax)
    names = list(ratios)
    ax.bar(range(len(names)), [ratios[n] for n in names], color="C0")
    ax.set_xticks(range(len(names)), [n.replace(".weight", "") for n in names], rotation=45, ha="right",
                  fontsize=8)
    ax.set_yscale("log")
    ax.set(ylabel="trust ratio (multiplies lr)", title=title)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_label_fractions(sweeps: Mapping[str, Sequence[Mapping[str, float]]], title: str = "",
                         ax: Optional[Axes] = None) -> Figure:
    """Test top-1 against the number of labels (log x), one line per method (cf. paper Table 7): the linear probe
    on frozen features (solid, circles) and end-to-end training (rows with ``epochs``: dashed, squares), e.g.
    supervised from scratch at each fraction beside the probes of the SimCLR and the random-init encoder.

    Shape:
        sweeps: {label: rows of :func:`~simclr_lib.evaluate.label_fraction_sweep` or
        :func:`~simclr_lib.teaching.finetune.supervised_fraction_sweep`, each with n_labels, top1}.

    Taught in notebook 04.
    """
    fig, ax = figure(ax=ax)
    for name, rows in sweeps.items():
        style = "s--" if rows and all("epochs" in r for r in rows) else "o-"
        ax.plot([r["n_labels"] for r in rows], [100 * r["top1"] for r in rows], style, label=name)
    ax.set_xscale("log")
    ticks = sorted({r["n_labels"] for rows in sweeps.values() for r in rows})
    ax.set_xticks(ticks, [f"{n:,}" for n in ticks], minor=False)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="labelled training images (log scale)", ylabel="test top-1 %", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
