"""Figures of the embedding's geometry on the hypersphere (Wang & Isola 2020): the cosine similarities of positive
and negative pairs as two histograms, and models as points on the alignment-uniformity plane.

The numbers come from :mod:`simclr_lib.teaching.geometry` (``embedding_geometry``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from simclr_lib.teaching.plots.core import ArrayLike, figure, to_numpy

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

