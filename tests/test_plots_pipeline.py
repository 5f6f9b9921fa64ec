"""simclr_lib.teaching.plots.pipeline: the pipeline of Fig. 2 (notebook 00) is a Figure with every box, arrow label and
notebook note, made without pyplot state or drawn into a given axes."""
import io

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from simclr_lib.teaching.plots import figure
from simclr_lib.teaching.plots.pipeline import BOX_LABELS, NOTEBOOK_NOTES, pipeline_diagram

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_pipeline_diagram_has_every_box_arrow_and_note():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = pipeline_diagram()
    assert isinstance(fig, Figure) and plt.get_fignums() == before  # no pyplot global state
    (ax,) = fig.axes
    texts = _texts(ax)
    for label in (r"$x$", r"$\tilde{x}_i$", r"$\tilde{x}_j$", "$h_i$", "$h_j$", "$z_i$", "$z_j$"):
        assert label in texts, f"box {label} missing"
    assert set(BOX_LABELS) <= set(texts) and "NT-Xent" in BOX_LABELS[-1]
    assert sum(isinstance(p, FancyBboxPatch) for p in ax.patches) == len(BOX_LABELS)
    for arrow_label in (r"$t \sim \mathcal{T}$", r"$t' \sim \mathcal{T}$", r"$f(\cdot)$", r"$g(\cdot)$"):
        assert arrow_label in texts, f"arrow label {arrow_label} missing"
    notes = "\n".join(NOTEBOOK_NOTES) + "\n".join(texts)
    for nb in ("01", "02", "03", "04", "05", "06"):
        assert nb in notes, f"notebook {nb} is not named under the diagram"
    assert not ax.axison


def test_pipeline_diagram_draws_into_a_given_axes():
    fig, axes = figure(1, 2, squeeze=False)
    assert pipeline_diagram(ax=axes[0, 1]) is fig
    assert not axes[0, 0].texts and set(BOX_LABELS) <= set(_texts(axes[0, 1]))
    fig.savefig(io.BytesIO(), format="png")  # the mathtext labels render
