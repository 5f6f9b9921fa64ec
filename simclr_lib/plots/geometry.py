"""Figures of the embedding's geometry on the hypersphere (Wang & Isola 2020): the cosine similarities of positive
and negative pairs as two histograms, and models as points on the alignment-uniformity plane.

The numbers come from :mod:`simclr_lib.geometry` (``embedding_geometry``, ``pair_similarities``).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .core import ArrayLike, figure, to_numpy

#: Shared bins of the similarity histograms: 50 bins of width 0.04 on [-1, 1].
SIMILARITY_BINS = np.linspace(-1.0, 1.0, 51)


def similarity_histograms(pos: ArrayLike, neg: ArrayLike, ax: Optional[Axes] = None,
                          title: Optional[str] = None) -> Figure:
    """Histograms of the positive-pair and negative-pair cosine similarities, density-normalised, on the same bins
    of [-1, 1], with their means as dashed lines and a legend.

    Training moves the positives towards 1 (alignment) and the negatives towards 0 and below (uniformity); at
    random initialisation the two histograms overlap.

    Shape: pos (P,), neg (K,) cosine similarities (any P, K >= 1; e.g. ``embedding_geometry(...)["pos"]``).
    """
    fig, ax = figure(size=(6.0, 3.6), ax=ax)
    for values, name, colour in ((neg, "negative pairs", "tab:blue"), (pos, "positive pairs", "tab:orange")):
        x = to_numpy(values).reshape(-1)
        if x.size == 0:
            raise ValueError(f"no {name} to plot")
        ax.hist(np.clip(x, -1.0, 1.0), bins=SIMILARITY_BINS, density=True, alpha=0.55, color=colour,
                label=f"{name} (n={x.size:,}, mean {x.mean():.2f})")
        ax.axvline(float(x.mean()), color=colour, ls="--", lw=1)
    ax.set_xlim(-1, 1), ax.set_xlabel("cosine similarity"), ax.set_ylabel("density")
    ax.set_title(title or "positive vs negative pairs"), ax.legend(fontsize="small")
    return fig


def _alignment_and_uniformity(value: Union[Sequence[float], Mapping[str, Any]]) -> tuple[float, float]:
    """(L_align, L_uniform) of a point: a pair in that order, or a mapping with those keys."""
    if isinstance(value, Mapping):
        return float(value["alignment"]), float(value["uniformity"])
    align, unif = value
    return float(align), float(unif)


def alignment_uniformity_scatter(points: Mapping[str, Union[tuple[float, float], Mapping[str, Any]]],
                                 ax: Optional[Axes] = None, title: Optional[str] = None) -> Figure:
    """Models as points on Wang & Isola's plane: x = L_uniform, y = L_align, lower-left is better.

    Args:
        points: name -> ``(alignment, uniformity)`` (in that order), or an ``embedding_geometry`` result.
        ax: draw into this axes.
        title: the axes' title.

    Shape: len(points) points, each annotated with its name.
    """
    if not points:
        raise ValueError("points is empty; pass e.g. {'random init': (align, unif), 'trained': (align, unif)}")
    fig, ax = figure(size=(5.0, 4.0), ax=ax)
    for name, value in points.items():
        align, unif = _alignment_and_uniformity(value)
        ax.scatter([unif], [align], s=40, zorder=3)
        ax.annotate(name, (unif, align), xytext=(5, 5), textcoords="offset points", fontsize="small")
    ax.set_xlabel("L_uniform: lower = more uniform")
    ax.set_ylabel("L_align: lower = better aligned")
    ax.set_title(title or "alignment vs uniformity (lower-left is better)")
    ax.grid(alpha=0.3), ax.margins(0.15)  # room for the names
    return fig
