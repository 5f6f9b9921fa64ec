"""Figures of notebooks 01-02: image grids, labelled rows of views, the similarity matrix with its masks, the
softmax over negatives at several temperatures, colour histograms (Chen et al. 2020, Sec. 2.1, 3, Fig. 6).

Images may be uint8 in [0, 255] or float in [0, 1], as tensors or arrays.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from simclr_lib.teaching.plots.core import Images, figure, to_hwc, to_numpy


def image_grid(images: Images, ncols: int = 8, titles: Optional[Sequence[str]] = None, size: float = 1.3,
               suptitle: Optional[str] = None) -> Figure:
    """The images in a grid of ``ncols`` columns, optionally titled.

    Shape: images (B, 3, H, W) or (B, H, W, 3); titles B strings.
    """
    x = to_hwc(images)
    ncols = max(1, min(ncols, len(x)))
    nrows = -(-len(x) // ncols)
    fig, axes = figure(nrows, ncols, (size * ncols, size * nrows + (0.3 if titles else 0)), title=suptitle,
                       squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(x):
            ax.imshow(x[i], interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    return fig


def view_rows(rows: Mapping[str, Images], size: float = 1.2, suptitle: Optional[str] = None) -> Figure:
    """One labelled row per entry (e.g. ``{"crop": views, "flip": views}``), the label left of the row.

    Shape: each value (K, 3, H, W); rows may differ in K (short rows leave blank cells).
    """
    arrays = {k: to_hwc(v) for k, v in rows.items()}
    ncols = max(len(v) for v in arrays.values())
    fig, axes = figure(len(arrays), ncols, (size * ncols + 1.2, size * len(arrays)), title=suptitle,
                       squeeze=False)
    for r, (name, x) in enumerate(arrays.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(x):
                ax.imshow(x[c], interpolation="nearest")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return fig


def _mask_overlay(ax: Axes, mask: np.ndarray, colour: str, name: str) -> None:
    """Paint the True cells of ``mask`` in ``colour`` over ``ax``'s image, with a legend entry. Shape: (M, M)."""
    rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
    rgba[mask] = (*to_rgb(colour), 1.0)
    ax.imshow(rgba, interpolation="nearest")
    ax.plot([], [], "s", color=colour, label=name)


def positive_mask_matrix(n: int, n_views: int = 2) -> np.ndarray:
    """True where row and column are two different views of the same image (view-major layout).

    Shape: -> (n_views * n, n_views * n) bool.
    """
    ids = np.tile(np.arange(n), n_views)  # M, image id of each row
    return (ids[:, None] == ids[None, :]) & ~np.eye(n * n_views, dtype=bool)


def similarity_heatmap(sim: Images, n_views: int = 2, self_mask: bool = True, positive_mask: bool = True,
                       title: str = "cosine similarity", size: float = 6.0, ax: Optional[Axes] = None) -> Figure:
    """The similarity matrix as a heatmap, with the self-mask (diagonal, grey) and the positives (lime outline
    squares) overlaid, and lines between the view blocks; drawn into ``ax`` when given (side by side panels).

    Shape: sim (M, M) with M = n_views * N, view-major.
    """
    s = to_numpy(sim)
    m = s.shape[0]
    if s.ndim != 2 or s.shape[1] != m or m % n_views:
        raise ValueError(f"need a square (M, M) matrix with M a multiple of n_views={n_views}, got {s.shape}")
    fig, ax = figure(size=(size + 1.2, size), ax=ax)
    im = ax.imshow(s, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="sim(z_i, z_k)")
    n = m // n_views
    if self_mask:
        _mask_overlay(ax, np.eye(m, dtype=bool), "0.55", "self (masked out)")
    if positive_mask:
        rows, cols = np.nonzero(positive_mask_matrix(n, n_views))
        boxes = [Rectangle((c - 0.5, r - 0.5), 1, 1) for r, c in zip(rows, cols)]
        ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="lime", linewidth=1.5))
        ax.plot([], [], "s", mfc="none", mec="lime", label="positive pair")
    for k in range(1, n_views):
        ax.axhline(k * n - 0.5, color="k", lw=0.8), ax.axvline(k * n - 0.5, color="k", lw=0.8)
    ax.set_xlabel("k (candidate)"), ax.set_ylabel("i (anchor)"), ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize="small", frameon=False)
    return fig


def mask_panels(n: int, n_views: int = 2, size: float = 3.2) -> Figure:
    """The two masks of NT-Xent side by side: the self-mask (the diagonal, dropped from every denominator) and
    the positive mask (the numerators).

    Shape: both (n_views * n, n_views * n).
    """
    m = n * n_views
    fig, axes = figure(1, 2, (2 * size, size + 0.4))
    for ax, mask, title in zip(axes, (np.eye(m, dtype=bool), positive_mask_matrix(n, n_views)),
                               ("self-mask: k = i", f"positive mask: same image ({n_views} views)")):
        ax.imshow(mask, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        for k in range(1, n_views):
            ax.axhline(k * n - 0.5, color="tab:red", lw=0.8), ax.axvline(k * n - 0.5, color="tab:red", lw=0.8)
        ax.set_title(title, fontsize=10), ax.set_xlabel("k"), ax.set_ylabel("i")
    return fig


def softmax_vs_temperature(similarities: Images, temperatures: Sequence[float], positive: Optional[int] = None,
                           size: float = 4.2) -> Figure:
    """One anchor's softmax over its candidates at several temperatures (sorted, most similar first; the
    positive marked) and the entropy of that distribution against tau.

    Shape: similarities (K,) cosine similarities of one anchor to its K candidates (self excluded).
    """
    s = torch.as_tensor(to_numpy(similarities, np.float64)).reshape(-1)  # K
    order = torch.argsort(s, descending=True)
    fig, (ax_p, ax_h) = figure(1, 2, (2.4 * size, size))
    entropies = []
    for tau in temperatures:
        p = torch.softmax(s / tau, dim=0)  # K
        entropies.append(float(-(p * p.clamp_min(1e-300).log()).sum()))
        line, = ax_p.plot(np.arange(1, len(s) + 1), p[order].numpy(), marker=".", ms=3, label=f"tau={tau:g}")
        if positive is not None:
            rank = int((order == positive).nonzero()[0, 0])
            ax_p.plot(rank + 1, float(p[positive]), "*", ms=12, color=line.get_color(), mec="k")
    ax_p.set_yscale("log"), ax_p.set_xlabel("candidate, by similarity rank"), ax_p.set_ylabel("softmax probability")
    ax_p.set_title("softmax over candidates (star: the positive)"), ax_p.legend(fontsize="small")
    ax_h.plot(list(temperatures), entropies, "o-")
    ax_h.axhline(np.log(len(s)), color="0.5", ls="--", label=f"uniform: log {len(s)}")
    ax_h.set_xscale("log"), ax_h.set_xlabel("temperature tau"), ax_h.set_ylabel("entropy (nats)")
    ax_h.set_title("entropy of the softmax"), ax_h.legend(fontsize="small")
    return fig


def histogram_overlay(panels: Mapping[str, Sequence[Images]], bins: int, names: Sequence[str] = ("crop 1", "crop 2"),
                      size: float = 3.6) -> Figure:
    """The colour histograms of two (or more) views of one image overlaid in one panel: R/G/B colours, one line
    style per view, a legend; one panel per image (Fig. 6 of the paper).

    Shape: each panel's value: V histograms of (3 * bins,) from ``shortcut.color_histogram``.
    """
    styles = ("-", "--", ":", "-.")
    fig, axes = figure(1, len(panels), (size * len(panels), size * 0.8), squeeze=False, sharey=True)
    centres = (np.arange(bins) + 0.5) / bins
    for ax, (title, hists) in zip(axes[0], panels.items()):
        for v, h in enumerate(hists):
            h = to_numpy(h).reshape(3, bins)
            for c, (colour, channel) in enumerate(zip(("tab:red", "tab:green", "tab:blue"), "RGB")):
                ax.plot(centres, h[c], color=colour, linestyle=styles[v % len(styles)], marker=".",
                        label=f"{channel}, {names[v] if v < len(names) else f'view {v + 1}'}")
        ax.set_title(title, fontsize=9), ax.set_xlabel("intensity")
        ax.legend(fontsize=6, ncol=2)
    axes[0, 0].set_ylabel("fraction of pixels")
    return fig
