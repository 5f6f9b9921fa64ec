"""Figures of notebook 06: the rows of an experiment grid (:func:`simclr_lib.experiments.run_grid`) as an
annotated heatmap (Fig. 5), grouped bars (Fig. 9) or lines against one setting (Tables 1, 5).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .core import figure, label


def pivot(rows: Sequence[Mapping[str, Any]], index: str, columns: str,
          value: str) -> tuple[list, list, np.ndarray]:
    """``value`` laid out by two settings, each sorted.

    Shape: returns (I index values, C column values, matrix (I, C) with NaN where no row has that pair).
    """
    ri = sorted({r[index] for r in rows})
    ci = sorted({r[columns] for r in rows})
    m = np.full((len(ri), len(ci)), np.nan)
    for r in rows:
        m[ri.index(r[index]), ci.index(r[columns])] = r[value]
    return ri, ci, m


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str = "",
            cbar_label: str = "top-1 (%)", fmt: str = "{:.1f}") -> Figure:
    """Annotated heatmap (NaN cells blank), e.g. Fig. 5's augmentation pairs.

    Shape: matrix (R, C), row_labels R strings, col_labels C strings.
    """
    fig, ax = figure(size=(1.0 * len(col_labels) + 2.2, 0.8 * len(row_labels) + 1.4))
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis")
    ax.set_xticks(range(len(col_labels)), col_labels), ax.set_yticks(range(len(row_labels)), row_labels)
    lo, hi = np.nanmin(matrix), np.nanmax(matrix)
    for (i, j), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            dark = hi > lo and (v - lo) / (hi - lo) > 0.6
            ax.text(j, i, fmt.format(v), ha="center", va="center", color="black" if dark else "white")
    fig.colorbar(im, ax=ax, label=cbar_label, shrink=0.8)
    ax.set_title(title)
    return fig


def grouped_bars(rows: Sequence[Mapping[str, Any]], x: str, hue: str, value: str, title: str = "",
                 ylabel: str = "top-1 (%)") -> Figure:
    """Bars of ``value`` per ``x`` setting, one colour per ``hue`` setting (Fig. 9: x = epochs, hue = batch)."""
    hues, xs, m = pivot(rows, hue, x, value)  # m: H x X
    fig, ax = figure(size=(7, 4))
    width = 0.8 / len(hues)
    for k, h in enumerate(hues):
        ax.bar(np.arange(len(xs)) + (k - (len(hues) - 1) / 2) * width, m[k], width, label=f"{hue} {label(h)}")
    ax.set_xticks(range(len(xs)), [label(v) for v in xs])
    ax.set_ylim(max(0.0, np.nanmin(m) - 5), np.nanmax(m) + 2)
    ax.set_xlabel(x), ax.set_ylabel(ylabel), ax.set_title(title), ax.legend(fontsize="small")
    return fig


def line_plot(rows: Sequence[Mapping[str, Any]], x: str, values: Sequence[str], title: str = "",
              logx: bool = False, ylabel: str = "top-1 (%)") -> Figure:
    """One line per entry of ``values`` (e.g. "probe_h", "knn_h") against the setting ``x``."""
    rows = sorted(rows, key=lambda r: r[x])
    fig, ax = figure(size=(6, 4))
    for v in values:
        ax.plot([r[x] for r in rows], [r[v] for r in rows], "o-", label=v)
    if logx:
        ax.set_xscale("log")
    ax.set_xticks([r[x] for r in rows], [label(r[x]) for r in rows])
    ax.minorticks_off()
    ax.set_xlabel(x), ax.set_ylabel(ylabel), ax.set_title(title), ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig
