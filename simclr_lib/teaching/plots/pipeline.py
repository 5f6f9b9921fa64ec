"""The figure of notebook 00: SimCLR's pipeline (Chen et al. 2020, Fig. 2) drawn as boxes and arrows, with the
notebook of the series that teaches each part written under it.
"""
from __future__ import annotations

from typing import Optional

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from simclr_lib.teaching.plots.core import figure

#: The text of every box, left to right, top row (view i) before bottom row (view j).
BOX_LABELS = ("$x$", r"$\tilde{x}_i$", r"$\tilde{x}_j$", "$h_i$", "$h_j$", "$z_i$", "$z_j$",
              "maximise\nagreement\n(NT-Xent)")
#: Under each column: the notebooks that teach that part.
NOTEBOOK_NOTES = ("an unlabelled\nimage", "01 augmentation\n(views)", "03 encoder f\n04 linear probe on h\n"
                  "05 embeddings of h", "03 projection\nhead g", "02 NT-Xent loss\n03 LARS, training loop")
_COLUMNS = (0.9, 3.3, 5.7, 8.1, 10.6)  # x of each column's boxes
_ROWS = (4.6, 2.2)  # y of view i and view j
_WIDTH, _HEIGHT = 1.1, 0.9  # a box, in data units


def _box(ax: Axes, x: float, y: float, text: str, colour: str, width: float = _WIDTH,
         height: float = _HEIGHT) -> None:
    """A rounded box centred at (x, y) with ``text`` in it."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=colour, edgecolor="0.25", linewidth=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=13 if text.startswith("$") else 9)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str = "",
           above: bool = True, dx: float = 0.0) -> None:
    """An arrow from ``start`` to ``end`` (data units), ``text`` written at its middle (moved by ``dx``), above
    or below it."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color="0.2", linewidth=1.2))
    if text:
        mid = ((start[0] + end[0]) / 2 + dx, (start[1] + end[1]) / 2 + (0.3 if above else -0.3))
        ax.text(*mid, text, ha="center", va="center", fontsize=11)


def pipeline_diagram(ax: Optional[Axes] = None) -> Figure:
    """SimCLR's pipeline (Fig. 2 of the paper), left to right, with the notebook that teaches each part.

    An image x becomes two views by two augmentations t, t' drawn from the family T; the encoder f maps each
    view to a representation h, the projection head g maps h to z, and NT-Xent makes z_i and z_j agree.
    Under each column: the notebook of the series that teaches it (06 runs the paper's ablations in small).
    Drawn in notebook 00.

    Args:
        ax: Draw into this axes instead of a new figure (its limits are set and its frame turned off).

    Returns:
        The Figure drawn into.
    """
    fig, ax = figure(size=(11.0, 4.4), ax=ax)
    half = _WIDTH / 2
    _box(ax, _COLUMNS[0], sum(_ROWS) / 2, BOX_LABELS[0], "0.92")
    for k, colour in enumerate(("#cfe2f3", "#d9ead3", "#fde9c8")):  # views, representations, projections
        for r, y in enumerate(_ROWS):
            _box(ax, _COLUMNS[k + 1], y, BOX_LABELS[1 + 2 * k + r], colour)
    _box(ax, _COLUMNS[4], sum(_ROWS) / 2, BOX_LABELS[7], "#f4cccc", width=1.5, height=1.4)
    for r, (y, t) in enumerate(zip(_ROWS, (r"$t \sim \mathcal{T}$", r"$t' \sim \mathcal{T}$"))):
        _arrow(ax, (_COLUMNS[0] + half, sum(_ROWS) / 2), (_COLUMNS[1] - half, y), t, above=r == 0, dx=-0.35)
        _arrow(ax, (_COLUMNS[1] + half, y), (_COLUMNS[2] - half, y), r"$f(\cdot)$", above=r == 0)
        _arrow(ax, (_COLUMNS[2] + half, y), (_COLUMNS[3] - half, y), r"$g(\cdot)$", above=r == 0)
        _arrow(ax, (_COLUMNS[3] + half, y), (_COLUMNS[4] - 0.75, sum(_ROWS) / 2))
    ax.text(_COLUMNS[2], _ROWS[0] + 0.75, "representation", ha="center", fontsize=8, style="italic")
    ax.text(_COLUMNS[3], _ROWS[0] + 0.75, "projection", ha="center", fontsize=8, style="italic")
    for x, note in zip(_COLUMNS, NOTEBOOK_NOTES):
        ax.text(x, _ROWS[1] - 0.75, note, ha="center", va="top", fontsize=8, color="0.25")
    ax.text(sum(_COLUMNS[::4]) / 2, 0.35, "06: the paper's findings in small (augmentations, batch size, "
            "temperature, h vs z)", ha="center", va="bottom", fontsize=8, color="0.25")
    ax.set_xlim(0, 11.6), ax.set_ylim(0.3, 5.6)
    ax.set_axis_off()
    return fig
