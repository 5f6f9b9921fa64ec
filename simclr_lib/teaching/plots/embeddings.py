"""Figures of notebook 05 and the CLI's ``embed``: maps coloured by class (2-D, 3-D, two side by side), images at
their map positions, nearest-neighbour grids. The maps and neighbours are computed in :mod:`simclr_lib.embed`.

The single-map plots draw into the ``ax=`` they are given or a new Figure, and return the Figure.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from simclr_lib.embed import nearest_neighbours
from simclr_lib.teaching.plots.core import ArrayLike, class_colours, figure, to_numpy


def _check_points(xy: ArrayLike, labels: ArrayLike, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and labels as arrays, checked. Shape: xy (N, dims), labels (N,)."""
    xy, labels = to_numpy(xy), to_numpy(labels, np.int64)
    if xy.ndim != 2 or xy.shape[1] != dims or labels.shape != (len(xy),):
        raise ValueError(f"need points (N, {dims}) and labels (N,), got {xy.shape} and {labels.shape}")
    return xy, labels


def scatter_by_class(xy: ArrayLike, labels: ArrayLike, classes: Sequence[str], ax: Optional[Axes] = None,
                     title: Optional[str] = None, s: float = 6.0, legend: bool = True) -> Figure:
    """2-D points coloured by class, one scatter (and legend entry) per class present.

    Shape: xy (N, 2), labels (N,) in 0..len(classes)-1.
    """
    xy, labels = _check_points(xy, labels, 2)
    fig, ax = figure(size=(6, 6), ax=ax)
    colours = class_colours(len(classes))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colours[c], label=classes[c], alpha=0.8, linewidths=0)
    if legend:
        ax.legend(markerscale=3, fontsize="small", loc="best", frameon=True)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def side_by_side(xy_a: ArrayLike, xy_b: ArrayLike, labels: ArrayLike, classes: Sequence[str],
                 titles: Sequence[str] = ("random init", "SimCLR"), s: float = 6.0) -> Figure:
    """Two 2-D maps of the same points (e.g. random init vs SimCLR) with one shared legend.

    Shape: xy_a (N, 2), xy_b (N, 2), labels (N,).
    """
    fig, axes = figure(1, 2, (12, 6))
    for ax, xy, title in zip(axes, (xy_a, xy_b), titles):
        scatter_by_class(xy, labels, classes, ax=ax, title=title, s=s, legend=False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", markerscale=3, fontsize="small")
    return fig


def thumbnail_scatter(xy: ArrayLike, images: torch.Tensor, n: int = 500, zoom: float = 0.035,
                      ax: Optional[Axes] = None, seed: int = 0, title: Optional[str] = None) -> Figure:
    """Each of ``n`` random images drawn at its 2-D position (``imshow`` extents: fast, vector-free).

    ``zoom`` is a thumbnail's side as a fraction of the map's extent.

    Shape: xy (N, 2), images (N, 3, H, W) uint8.
    """
    xy = to_numpy(xy)
    if xy.ndim != 2 or xy.shape[1] != 2 or images.ndim != 4 or len(images) != len(xy):
        raise ValueError(f"need xy (N, 2) and images (N, 3, H, W), got {xy.shape} and {tuple(images.shape)}")
    pick = np.random.default_rng(seed).permutation(len(xy))[:n]
    fig, ax = figure(size=(9, 9), ax=ax)
    lo, hi = xy.min(0), xy.max(0)
    half = zoom * (hi - lo).clip(min=1e-9) / 2  # (2,) half side in data units
    thumbs = images[torch.as_tensor(pick)].permute(0, 2, 3, 1).cpu().numpy()  # n x H x W x 3
    for (x, y), img in zip(xy[pick], thumbs):
        ax.imshow(img, extent=(x - half[0], x + half[0], y - half[1], y + half[1]), interpolation="nearest")
    ax.set_xlim(lo[0] - 2 * half[0], hi[0] + 2 * half[0]), ax.set_ylim(lo[1] - 2 * half[1], hi[1] + 2 * half[1])
    ax.set_aspect("auto"), ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def neighbour_grid(query_idx: ArrayLike, features: ArrayLike, images: torch.Tensor, k: int = 8,
                   labels: Optional[ArrayLike] = None, classes: Optional[Sequence[str]] = None) -> Figure:
    """One row per query: the query image, then its ``k`` cosine nearest neighbours (most similar first).

    With ``labels``, titles carry the class (``classes``) and neighbours get a green (same class) or red frame.

    Shape: query_idx (Q,), features (N, D), images (N, 3, H, W) uint8, labels (N,).
    """
    nn_idx = nearest_neighbours(query_idx, features, k).numpy()  # Q x k
    q = np.asarray(query_idx, dtype=np.int64).reshape(-1)
    lab = None if labels is None else to_numpy(labels, np.int64)
    fig, axes = figure(len(q), k + 1, (1.2 * (k + 1), 1.35 * len(q)), squeeze=False)
    for r, (qi, row) in enumerate(zip(q, nn_idx)):
        for c, idx in enumerate([qi, *row]):
            ax = axes[r, c]
            ax.imshow(images[idx].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            name = "" if lab is None else (classes[lab[idx]] if classes is not None else str(lab[idx]))
            if c == 0:
                ax.set_title(f"query\n{name}", fontsize=8, fontweight="bold")
                continue
            colour = "black" if lab is None else ("tab:green" if lab[idx] == lab[qi] else "tab:red")
            ax.set_title(name, fontsize=8, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour), spine.set_linewidth(2.5 if lab is not None else 0.8)
    return fig
