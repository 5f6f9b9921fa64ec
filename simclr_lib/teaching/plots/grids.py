"""Figures of notebook 06: the rows of an experiment (:func:`simclr_lib.teaching.experiments.run_settings`) as bars at the
mean over seeds, with every seed shown, beside the random-init floor, on an axis from zero.
"""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from simclr_lib.teaching.plots.core import figure

#: How a score column of an experiment row is named in legends.
SCORE_NAMES = {"probe_h": "linear probe on h", "knn_h": "kNN on h", "probe_z": "linear probe on z",
               "knn_z": "kNN on z"}


def summarize(rows: Sequence[Mapping[str, Any]], value: str) -> list[dict]:
    """Mean, lowest and highest ``value`` over the seeds of each setting, in the order settings first appear.

    Shape: returns one ``{"setting", "mean", "lo", "hi", "values"}`` dict per setting.
    """
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(float(r[value]))
    return [dict(setting=k, mean=statistics.fmean(v), lo=min(v), hi=max(v), values=v) for k, v in groups.items()]


def effect_bars(panels: Mapping[str, Sequence[Mapping[str, Any]]], values: Sequence[str] = ("probe_h",),
                floor: Optional[Mapping[str, Any]] = None, title: str = "",
                ylabel: str = "top-1 on the validation split (%)") -> Figure:
    """One panel per source of rows (e.g. the quick run and a longer sweep), one group of bars per setting.

    Each bar is the mean over seeds of one score (``values``, side by side), its whisker spans the lowest to the
    highest seed and a dot marks every seed; a dashed line per score marks ``floor`` (the random-init score:
    ``{score: value}`` for every panel, or ``{panel: {score: value}}`` when the panels' protocols differ, e.g. a
    sweep whose probe was fitted on other labels). The y axis starts at zero and is shared, so panels compare at a
    glance.

    Shape: each panel's rows need ``setting``, ``seed`` and every column of ``values``.
    """
    fig, axes = figure(1, len(panels), size=(2.2 + 1.1 * sum(len({r["setting"] for r in rows}) for rows in
                                                              panels.values()) * len(values) / 1.4, 4.2),
                       sharey=True, squeeze=False, title=title or None)
    colours = [f"C{i}" for i in range(len(values))]
    width = 0.8 / len(values)
    top, bars, floors = 0.0, {}, {}
    per_panel = bool(floor) and all(isinstance(f, Mapping) for f in floor.values())
    for ax, (name, rows) in zip(axes[0], panels.items()):
        here = (floor.get(name) if per_panel else floor) or {}  # this panel's random-init scores
        for k, (value, colour) in enumerate(zip(values, colours)):
            summary = summarize(rows, value)
            x = np.arange(len(summary)) + (k - (len(values) - 1) / 2) * width
            means = np.array([s["mean"] for s in summary])
            err = np.array([[s["mean"] - s["lo"], s["hi"] - s["mean"]] for s in summary]).T
            bars[value] = ax.bar(x, means, width, yerr=err, capsize=3, color=colour, alpha=0.75)
            for xi, s in zip(x, summary):
                ax.plot([xi] * len(s["values"]), s["values"], "k.", markersize=4)
                ax.text(xi, s["hi"] + 1, f"{s['mean']:.1f}", ha="center", va="bottom", fontsize="x-small")
            if value in here:
                floors[value] = ax.axhline(here[value], color=colour, linestyle="--", linewidth=1)
            top = max(top, max(s["hi"] for s in summary), here.get(value, 0))
        ax.set_xticks(range(len(summary)), [s["setting"] for s in summary], rotation=20, ha="right")
        ax.set_title(name, fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylim(0, top + 8)
    axes[0][0].set_ylabel(ylabel)
    name = lambda v: SCORE_NAMES.get(v, v)  # noqa: E731
    handles = [(bars[v], name(v)) for v in values] + [(floors[v], f"random init ({name(v)})") for v in floors]
    fig.legend(*zip(*handles), loc="outside lower center", ncol=min(4, len(handles)), fontsize="small")
    return fig
