"""simclr_lib.teaching.plots: every figure is a Figure (no pyplot state) with the expected panels and artists, the one
Markdown table writer, atomic saving, and bad input failing with a clear message."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from PIL import Image

from simclr_lib.teaching import plots
from simclr_lib.embed import nearest_neighbours, pca
from simclr_lib.optim import epoch_stepped_cosine, warmup_cosine

N = 200

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(shapes_features):
    """200 labelled shapes images and 64-d features in which the class is visible (tests/conftest.py)."""
    return shapes_features


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 100


# --- core: figure, markdown_table, label, save_figure ---------------------------------------------------------------
def test_figure_makes_panels_without_pyplot_or_draws_into_ax():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig, ax = plots.figure(size=(3, 2), title="t")
    assert isinstance(fig, Figure) and fig.get_size_inches().tolist() == [3, 2] and fig._suptitle.get_text() == "t"
    assert plots.figure(ax=ax) == (fig, ax)
    _, axes = plots.figure(2, 3, squeeze=False, sharey=True)
    assert axes.shape == (2, 3)
    assert plots.figure(subplot_kw={"projection": "3d"})[1].name == "3d"
    with pytest.raises(ValueError, match="one axes"):
        plots.figure(1, 2, ax=ax)
    assert plt.get_fignums() == before  # nothing registered with pyplot


def test_markdown_table_and_label():
    rows = [dict(method="a", top1=0.51234), dict(method="b", top1=0.5, labels=10)]
    assert plots.markdown_table(rows, ["method", "labels", "top1"], digits=2).splitlines() == [
        "| method | labels | top1 |", "|---|---|---|", "| a |  | 0.51 |", "| b | 10 | 0.50 |"]
    rows = [dict(ops=("crop", "jitter"), tau=np.float64(0.5)), dict(ops=(), tau=1.0)]
    assert plots.markdown_table(rows, ["ops", "tau"]).splitlines()[2:] == ["| crop+colour | 0.5 |", "| none | 1.0 |"]
    assert [plots.label(v) for v in (0.10, 256, ["grayscale", "blur"], "x")] == ["0.1", "256", "grey+blur", "x"]


def test_save_figure_formats_and_folders(tmp_path):
    fig, _ = plots.figure()
    _png(plots.save_figure(fig, tmp_path / "sub" / "a.png"))
    assert plots.save_figure(fig, tmp_path / "b") == tmp_path / "b.png"
    assert plots.save_figure(fig, tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"
    assert plots.figure_format("x.svg") == "svg" and plots.figure_format("x.notaformat") is None
    with pytest.raises(ValueError, match=r"cannot write \.notaformat"):
        plots.save_figure(fig, tmp_path / "x.notaformat")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "c.pdf", "sub"]  # no temporary files left


# --- views (notebooks 01-02) -----------------------------------------------------------------------------------------
def test_to_hwc_accepts_uint8_float_chw_and_hwc():
    u8 = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    out = plots.to_hwc(u8)
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[1, 2, 3], u8[1, :, 2, 3].numpy() / 255, atol=1e-6)
    assert plots.to_hwc(u8[0].float() / 255).shape == (1, 4, 5, 3)
    assert plots.to_hwc(np.zeros((2, 4, 4, 3), np.uint8)).shape == (2, 4, 4, 3)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        plots.to_hwc(torch.zeros(2, 2, 4, 4))


def test_image_grid_and_view_rows():
    x = torch.rand(5, 3, 8, 8)
    fig = plots.image_grid(x, ncols=3, titles=list("abcde"))
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    fig = plots.view_rows({"crop": x, "flip": x[:2]})
    assert len(fig.axes) == 10 and fig.axes[0].get_ylabel() == "crop"


def test_positive_mask_matches_a_loop():
    n, v = 3, 3
    want = np.zeros((n * v, n * v), bool)
    for i in range(n * v):
        for j in range(n * v):
            want[i, j] = i != j and i % n == j % n
    np.testing.assert_array_equal(plots.positive_mask_matrix(n, v), want)


def test_similarity_plots():
    z = torch.nn.functional.normalize(torch.randn(8, 4), dim=1)
    fig = plots.similarity_heatmap(z @ z.T, n_views=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # heatmap + colour bar
    with pytest.raises(ValueError, match="multiple of n_views"):
        plots.similarity_heatmap(torch.zeros(9, 9), n_views=2)
    assert len(plots.mask_panels(4, 2).axes) == 2
    fig = plots.softmax_vs_temperature((z @ z.T)[0, 1:], [0.1, 0.5, 1.0], positive=3)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_legend().get_texts()) == 3


# --- training (notebooks 03-04) -------------------------------------------------------------------------------------
def _history():
    return [dict(epoch=e, loss=5 - e * 0.1, contrastive_top1=0.1 * e, contrastive_top5=0.2 * e,
                 **({"knn_top1": 0.05 * e} if e % 2 == 0 else {})) for e in range(1, 5)]


def test_plot_history_panels():
    fig = plots.plot_history(_history(), title="run")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert len(fig.axes[0].lines[0].get_xdata()) == 4
    assert list(fig.axes[2].lines[0].get_ydata()) == pytest.approx([10.0, 20.0])  # kNN only where recorded
    with pytest.raises(ValueError):
        plots.plot_history([])


def test_compare_runs_puts_each_run_on_its_cumulative_training_time():
    short = [dict(r, seconds=10.0) for r in _history()]
    long = [dict(r, seconds=60.0) for r in _history() * 3]
    fig = plots.compare_runs({"short": short, "long": long})
    loss_ax, knn_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["short", "long"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["short", "long"]  # one legend, below
    assert list(loss_ax.lines[0].get_xdata()) == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6])  # minutes
    assert list(knn_ax.lines[0].get_ydata()) == pytest.approx([10.0, 20.0]) and loss_ax.get_xscale() == "log"
    assert len(knn_ax.lines[1].get_xdata()) == 6 and knn_ax.lines[1].get_xdata()[-1] == pytest.approx(12.0)
    with pytest.raises(ValueError):
        plots.compare_runs({"empty": []})


def test_histogram_overlay_puts_both_views_of_an_image_in_one_panel():
    h = torch.rand(4, 3 * 8)
    fig = plots.histogram_overlay({"image A": [h[0], h[1]], "image B": [h[2], h[3]]}, 8)
    assert len(fig.axes) == 2 and all(len(ax.lines) == 6 for ax in fig.axes)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["R, crop 1", "G, crop 1", "B, crop 1", "R, crop 2", "G, crop 2", "B, crop 2"]
    assert list(fig.axes[1].lines[3].get_ydata()) == pytest.approx(h[3, :8].tolist())


def test_confusion_matrix_is_row_normalised():
    fig = plots.confusion_matrix([0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 1, 1, 2, 2, 2, 0], ["a", "b", "c"])
    pct = fig.axes[0].images[0].get_array()
    assert pct[0].tolist() == [50, 50, 0] and pct[1].tolist() == [0, 100, 0] and pct[2].tolist() == [25, 0, 75]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="class indices"):
        plots.confusion_matrix([0, 3], [0, 1], ["a", "b", "c"])


def test_plot_curves_schedules_trust_and_fractions():
    fig = plots.plot_curves({"lars": [3, 2, 1], "sgd": [3, 2.5, 2]}, logy=True)
    assert len(fig.axes[0].lines) == 2
    sched = {"ours": [warmup_cosine(s, 40, 4) for s in range(40)], "seed": epoch_stepped_cosine(4, 10, 1)}
    fig = plots.plot_schedules(sched, steps_per_epoch=10)
    assert fig.axes[0].lines[0].get_xdata()[-1] == pytest.approx(3.9)
    fig = plots.plot_trust_ratios({"0.weight": 1e-3, "1.weight": 2e-2})
    assert len(fig.axes[0].patches) == 2
    with pytest.raises(ValueError):
        plots.plot_trust_ratios({})
    rows = [dict(n_labels=10, top1=0.2, C=0.1), dict(n_labels=100, top1=0.4, C=1.0)]
    trained = [dict(n_labels=10, top1=0.1, epochs=10), dict(n_labels=100, top1=0.3, epochs=1)]
    fig = plots.plot_label_fractions({"simclr": rows, "random": rows, "supervised": trained})
    lines = fig.axes[0].lines
    assert fig.axes[0].get_xscale() == "log" and len(lines) == 3
    assert [ln.get_linestyle() for ln in lines] == ["-", "-", "--"]  # end-to-end runs dashed beside the probes
    assert list(lines[2].get_ydata()) == pytest.approx([10, 30])
    assert list(fig.axes[0].get_xticks()) == [10, 100]  # a tick at each number of labels


def test_single_panel_plots_draw_into_a_given_panel():
    fig, axes = plots.figure(1, 2, (8, 3))
    assert plots.plot_curves({"a": [1, 2]}, ax=axes[0]) is fig
    assert plots.plot_trust_ratios({"w": 0.1}, ax=axes[1]) is fig
    assert len(fig.axes) == 2 and len(axes[0].lines) == 1 and len(axes[1].patches) == 1


# --- embeddings (notebook 05) ---------------------------------------------------------------------------------------
def test_scatter_by_class_draws_one_collection_per_class_and_saves(data, tmp_path):
    d, feats = data
    xy = pca(feats)
    fig = plots.scatter_by_class(xy, d.labels, d.classes, title="PCA")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(ax.collections) == 8
    assert [t.get_text() for t in ax.get_legend().get_texts()] == d.classes and ax.get_title() == "PCA"
    _png(plots.save_figure(fig, tmp_path / "sub" / "pca.png"))
    fig2, ax2 = plots.figure()
    assert plots.scatter_by_class(xy[:10], d.labels[:10], d.classes, ax=ax2) is fig2  # draws into the given axes
    assert len(ax2.collections) == len(set(d.labels[:10].tolist()))
    with pytest.raises(ValueError, match="points"):
        plots.scatter_by_class(xy[:, :1], d.labels, d.classes)


def test_thumbnail_scatter_draws_n_images(data, tmp_path):
    d, feats = data
    fig = plots.thumbnail_scatter(pca(feats), d.images, n=50)
    images = [a for a in fig.axes[0].get_children() if isinstance(a, AxesImage)]
    assert len(images) == 50 and images[0].get_array().shape == (16, 16, 3)
    assert len(plots.thumbnail_scatter(pca(feats), d.images, n=10_000).axes[0].images) == N
    _png(plots.save_figure(fig, tmp_path / "thumbs.png"))


def test_neighbour_grid_marks_correct_and_wrong_neighbours(data, tmp_path):
    d, feats = data
    queries, k = [0, 1, 2], 6
    fig = plots.neighbour_grid(queries, feats, d.images, k=k, labels=d.labels, classes=d.classes)
    axes = fig.axes
    assert len(axes) == len(queries) * (k + 1)
    nn_idx = nearest_neighbours(queries, feats, k)
    for r, q in enumerate(queries):
        assert axes[r * (k + 1)].get_title() == f"query\n{d.classes[d.labels[q]]}"
        for c in range(k):
            ax, j = axes[r * (k + 1) + c + 1], int(nn_idx[r, c])
            assert ax.get_title() == d.classes[d.labels[j]]
            same = bool(d.labels[j] == d.labels[q])
            assert ax.title.get_color() == ("tab:green" if same else "tab:red")
    _png(plots.save_figure(fig, tmp_path / "neighbours.png"))
    assert len(plots.neighbour_grid([5], feats, d.images, k=3).axes) == 4  # no labels: plain frames


def test_side_by_side_has_two_maps_and_one_legend(data, tmp_path):
    d, feats = data
    fig = plots.side_by_side(pca(feats), pca(feats.flip(1)), d.labels, d.classes, titles=("a", "b"))
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert all(len(ax.collections) == 8 and ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 8
    _png(plots.save_figure(fig, tmp_path / "side.png"))


# --- experiments (notebook 06) --------------------------------------------------------------------------------------
def test_effect_bars_mean_whiskers_seeds_floor_and_zero_axis():
    rows = [dict(setting=s, seed=k, probe_h=base + k, probe_z=base - 10 + 2 * k)
            for s, base in (("a", 50.0), ("b", 40.0), ("c", 30.0)) for k in (0, 1)]
    fig = plots.effect_bars({"quick": rows, "long": rows[:4]}, ("probe_h", "probe_z"),
                            floor=dict(probe_h=25.0, probe_z=20.0))
    quick, long = fig.axes[:2]
    assert [p.get_height() for p in quick.patches] == [50.5, 40.5, 30.5, 41.0, 31.0, 21.0]  # means over seeds
    assert len(long.patches) == 4 and quick.get_ylim()[0] == 0 and long.get_ylim() == quick.get_ylim()
    assert [t.get_text() for t in quick.get_xticklabels()] == ["a", "b", "c"]
    assert sorted(line.get_ydata()[0] for line in quick.lines if line.get_linestyle() == "--") == [20.0, 25.0]
    dots = [line for line in quick.lines if line.get_marker() == "."]
    assert len(dots) == 6 and list(dots[0].get_ydata()) == [50.0, 51.0]  # every seed drawn
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "linear probe on h", "linear probe on z", "random init (linear probe on h)", "random init (linear probe on z)"]


def test_effect_bars_draws_each_panels_own_floor():
    rows = [dict(setting=s, seed=k, probe_h=50.0 + k) for s in ("a", "b") for k in (0, 1)]
    fig = plots.effect_bars({"quick": rows, "long": rows}, ("probe_h",),
                            floor={"quick": dict(probe_h=25.0), "long": dict(probe_h=38.0)})
    dashed = [[line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--"] for ax in fig.axes[:2]]
    assert dashed == [[25.0], [38.0]]  # a sweep fitted on other labels keeps its own random-init line
    fig = plots.effect_bars({"quick": rows, "long": rows}, ("probe_h",), floor={"quick": dict(probe_h=25.0)})
    assert [len([ln for ln in ax.lines if ln.get_linestyle() == "--"]) for ax in fig.axes[:2]] == [1, 0]
