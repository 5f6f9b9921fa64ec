"""What every figure and table of the package shares: :func:`figure` (the one way a Figure is made),
:func:`markdown_table` (the one Markdown table writer), :func:`label` (how a setting is written), array
conversions, class colours and :func:`save_figure` (atomic, format by suffix).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from simclr_lib.runtime import atomic_write_bytes, to_numpy  # noqa: F401 (to_numpy: the plots' conversion)

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]
Images = Union[torch.Tensor, np.ndarray]

#: Short display names of the augmentation ops (``augment.OPS``), as in the paper's Fig. 5.
OP_NAMES = {"crop": "crop", "flip": "flip", "jitter": "colour", "grayscale": "grey", "blur": "blur"}


def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.0, 4.0), *, ax: Optional[Axes] = None,
           title: Optional[str] = None, **subplots_kw: Any) -> tuple[Figure, Union[Axes, np.ndarray]]:
    """A Figure and its axes, like ``plt.subplots`` but without pyplot's global state.

    The Figure has constrained layout, is safe under the Agg backend and shows once in Jupyter (nothing calls
    ``plt.show``). Every figure of the package is made here.

    Args:
        nrows: Rows of axes.
        ncols: Columns of axes.
        size: Figure size (width, height) in inches.
        ax: Draw into this existing axes instead (only with 1 x 1); its figure is returned.
        title: The figure's suptitle, if any (ignored with ``ax``).
        **subplots_kw: Passed to ``Figure.subplots`` (``squeeze``, ``sharey``, ``subplot_kw``, ...).

    Returns:
        ``(fig, axes)``: one Axes for 1 x 1, else the array of ``Figure.subplots``.
    """
    if ax is not None:
        if (nrows, ncols) != (1, 1):
            raise ValueError(f"ax= draws into one axes, but {nrows} x {ncols} axes were asked for")
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, **subplots_kw)
    if title:
        fig.suptitle(title)
    return fig, axes


def label(value: Any) -> str:
    """How a setting is written in tables, tick labels and run-folder names.

    Floats as ``%g``, op tuples as "crop+colour" (:data:`OP_NAMES`; empty: "none"), anything else with ``str``.
    """
    if isinstance(value, (tuple, list)):
        return "+".join(OP_NAMES.get(v, str(v)) for v in value) or "none"
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 1) -> str:
    """A Markdown table of ``columns`` of ``rows``, e.g. for ``IPython.display.Markdown``.

    Floats get ``digits`` decimals, other values :func:`label` (op tuples as "crop+colour"), missing cells stay
    blank. The one table writer of the package.

    Shape:
        len(rows) mappings -> a string of len(rows) + 2 lines.
    """
    def cell(v: Any) -> str:
        """One cell's text."""
        return f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else label(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def to_hwc(images: Images) -> np.ndarray:
    """Images as a float array in [0, 1] for ``imshow``; uint8 in [0, 255] or float in [0, 1] in.

    Shape: (B, 3, H, W) or (3, H, W) tensor / array (or (B, H, W, 3) array) -> (B, H, W, 3) float32.
    """
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ValueError(f"need images (B, 3, H, W) or (B, H, W, 3), got shape {x.shape}")
    if x.shape[1] == 3 and x.shape[-1] != 3:
        x = x.transpose(0, 2, 3, 1)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return np.clip(x, 0.0, 1.0)


def class_colours(n: int) -> list[tuple[float, float, float, float]]:
    """One RGBA colour per class: tab10 for up to 10 classes, else tab20 (cycled)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def figure_format(path: Union[str, Path]) -> Optional[str]:
    """The file format matplotlib writes for ``path``'s suffix (no suffix: ``png``), or None if it has none."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix[1:].lower() or "png"
    return fmt if fmt in FigureCanvasBase.get_supported_filetypes() else None


def save_figure(fig: Figure, path: Union[str, Path], dpi: int = 120) -> Path:
    """Save ``fig`` (PNG, PDF, SVG, ... by suffix; none: PNG, appended), creating the folder; returns the path.

    Atomic: the figure is rendered in memory, then written to a temporary file that is renamed onto ``path``, so a
    failure (full disk, bad format) leaves an earlier file at ``path`` intact and no half-written one.
    """
    path = Path(path)
    fmt = figure_format(path)
    if fmt is None:
        raise ValueError(f"matplotlib cannot write {path.suffix} figures ({path}); use .png, .pdf or .svg")
    path = path if path.suffix else path.with_name(f"{path.name}.png")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(buf.getvalue(), path)
    return path
