"""Every plot of curves.py builds a Figure without pyplot and draws what it is given."""
import pytest
from matplotlib.figure import Figure

from simclr_lib.curves import plot_curves, plot_history, plot_label_fractions, plot_schedules, plot_trust_ratios
from simclr_lib.optim import epoch_stepped_cosine, warmup_cosine


def _history():
    return [dict(epoch=e, loss=5 - e * 0.1, contrastive_top1=0.1 * e, contrastive_top5=0.2 * e,
                 **({"knn_top1": 0.05 * e} if e % 2 == 0 else {})) for e in range(1, 5)]


def test_plot_history_panels():
    fig = plot_history(_history(), title="run")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert len(fig.axes[0].lines[0].get_xdata()) == 4
    assert list(fig.axes[2].lines[0].get_ydata()) == pytest.approx([10.0, 20.0])  # kNN only where recorded
    with pytest.raises(ValueError):
        plot_history([])


def test_plot_curves_schedules_trust_and_fractions():
    fig = plot_curves({"lars": [3, 2, 1], "sgd": [3, 2.5, 2]}, logy=True)
    assert len(fig.axes[0].lines) == 2
    sched = {"ours": [warmup_cosine(s, 40, 4) for s in range(40)], "seed": epoch_stepped_cosine(4, 10, 1)}
    fig = plot_schedules(sched, steps_per_epoch=10)
    assert fig.axes[0].lines[0].get_xdata()[-1] == pytest.approx(3.9)
    fig = plot_trust_ratios({"0.weight": 1e-3, "1.weight": 2e-2})
    assert len(fig.axes[0].patches) == 2
    with pytest.raises(ValueError):
        plot_trust_ratios({})
    rows = [dict(n_labels=10, top1=0.2), dict(n_labels=100, top1=0.4)]
    fig = plot_label_fractions({"simclr": rows, "random": rows})
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].lines) == 2
