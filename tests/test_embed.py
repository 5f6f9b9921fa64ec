"""Embedding maps and figures: t-SNE/PCA shapes, artists per plot, PNGs, projector files, neighbours vs a loop."""
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from PIL import Image

from simclr_lib.data import make_shapes
from simclr_lib.embed import (export_projector, nearest_neighbours, neighbour_grid, pca, save_figure, scatter_3d,
                              scatter_by_class, side_by_side, thumbnail_scatter, tsne)

N = 200



pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

@pytest.fixture(scope="module")
def data():
    """200 labelled shapes images and features in which the class is visible (one-hot + noise)."""
    d = make_shapes(N, size=16, seed=0)
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.one_hot(d.labels, 8).float() * 6 + torch.randn(N, 8, generator=g)
    feats = torch.cat([feats, torch.randn(N, 56, generator=g)], dim=1)  # N x 64 (> pca_first)
    return d, feats


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 100


def test_pca_matches_svd_of_centred_features(data):
    _, feats = data
    out = pca(feats, 3)
    x = feats.double() - feats.double().mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    ref = (x @ v[:3].T).numpy()
    assert out.shape == (N, 3) and out.dtype == np.float32
    assert np.allclose(np.abs(out), np.abs(ref), atol=1e-3)  # components are defined up to sign


def test_tsne_shape_determinism_and_class_structure(data):
    d, feats = data
    a, b = tsne(feats, seed=0), tsne(feats.numpy(), seed=0)
    assert a.shape == (N, 2) and a.dtype == np.float32 and np.allclose(a, b)
    assert tsne(feats[:60], n_components=3, perplexity=10, pca_first=None).shape == (60, 3)
    dist = np.linalg.norm(a[:, None] - a[None], axis=2) + np.eye(N) * 1e9  # N x N in the map
    labels = d.labels.numpy()
    assert (labels[dist.argmin(1)] == labels).mean() > 0.8  # neighbours in the map share the class
    with pytest.raises(ValueError, match="perplexity"):
        tsne(feats[:20])


def test_scatter_by_class_draws_one_collection_per_class_and_saves(data, tmp_path):
    d, feats = data
    xy = pca(feats)
    fig = scatter_by_class(xy, d.labels, d.classes, title="PCA")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(ax.collections) == 8
    assert [t.get_text() for t in ax.get_legend().get_texts()] == d.classes and ax.get_title() == "PCA"
    _png(save_figure(fig, tmp_path / "sub" / "pca.png"))
    fig2 = Figure()
    ax2 = fig2.add_subplot()
    assert scatter_by_class(xy[:10], d.labels[:10], d.classes, ax=ax2) is fig2  # draws into the given axes
    assert len(ax2.collections) == len(set(d.labels[:10].tolist()))
    with pytest.raises(ValueError, match="points"):
        scatter_by_class(xy[:, :1], d.labels, d.classes)


def test_scatter_3d(data, tmp_path):
    d, feats = data
    fig = scatter_3d(pca(feats, 3), d.labels, d.classes)
    assert fig.axes[0].name == "3d" and len(fig.axes[0].collections) == 8
    _png(save_figure(fig, tmp_path / "3d.png"))


def test_thumbnail_scatter_draws_n_images(data, tmp_path):
    d, feats = data
    fig = thumbnail_scatter(pca(feats), d.images, n=50)
    images = [a for a in fig.axes[0].get_children() if isinstance(a, AxesImage)]
    assert len(images) == 50 and images[0].get_array().shape == (16, 16, 3)
    assert len([a for a in thumbnail_scatter(pca(feats), d.images, n=10_000).axes[0].images]) == N
    _png(save_figure(fig, tmp_path / "thumbs.png"))


def test_nearest_neighbours_equal_a_loop(data):
    _, feats = data
    queries = [0, 7, 199]
    ours = nearest_neighbours(queries, feats, k=5)
    for q, row in zip(queries, ours):
        sims = [(float(feats[q].double() @ feats[j].double()) / float(feats[q].norm() * feats[j].norm()), j)
                for j in range(N) if j != q]
        assert row.tolist() == [j for _, j in sorted(sims, key=lambda s: -s[0])[:5]]
    with pytest.raises(ValueError, match="k"):
        nearest_neighbours([0], feats, k=N)


def test_neighbour_grid_marks_correct_and_wrong_neighbours(data, tmp_path):
    d, feats = data
    queries, k = [0, 1, 2], 6
    fig = neighbour_grid(queries, feats, d.images, k=k, labels=d.labels, classes=d.classes)
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
    _png(save_figure(fig, tmp_path / "neighbours.png"))
    assert len(neighbour_grid([5], feats, d.images, k=3).axes) == 4  # no labels: plain frames


def test_side_by_side_has_two_maps_and_one_legend(data, tmp_path):
    d, feats = data
    fig = side_by_side(pca(feats), pca(feats.flip(1)), d.labels, d.classes, titles=("a", "b"))
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert all(len(ax.collections) == 8 and ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 8
    _png(save_figure(fig, tmp_path / "side.png"))


def test_export_projector_writes_config_tensors_metadata_and_sprite(data, tmp_path):
    d, feats = data
    out = export_projector(tmp_path / "proj", feats, d.labels, d.classes, d.images, tag="simclr")
    assert (out / "projector_config.pbtxt").is_file()
    config = (out / "projector_config.pbtxt").read_text()
    assert "sprite" in config and "metadata.tsv" in config
    folder = next(out.glob("*/simclr"))
    rows = (folder / "tensors.tsv").read_text().strip().splitlines()
    assert len(rows) == N and len(rows[0].split("\t")) == feats.shape[1]
    assert np.allclose([float(v) for v in rows[3].split("\t")], feats[3].numpy(), atol=1e-4)
    assert (folder / "metadata.tsv").read_text().split() == [d.classes[i] for i in d.labels]
    with Image.open(folder / "sprite.png") as sprite:
        assert sprite.size == (math.ceil(math.sqrt(N)) * 16,) * 2
    with pytest.raises(ValueError, match="labels"):
        export_projector(tmp_path / "bad", feats, d.labels[:5], d.classes)


def test_retrieval_precision_matches_a_loop():
    from simclr_lib.embed import retrieval_precision

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (60,), generator=g)
    x = torch.randn(3, 5, generator=g)[labels] + 0.8 * torch.randn(60, 5, generator=g)
    xn = torch.nn.functional.normalize(x, dim=1)
    want = []
    for i in range(60):
        sim = xn @ xn[i]
        sim[i] = -math.inf
        want.append((labels[sim.topk(4).indices] == labels[i]).float().mean().item())
    assert retrieval_precision(x, labels, k=4) == pytest.approx(float(np.mean(want)), abs=1e-6)
    assert retrieval_precision(torch.eye(4), torch.tensor([0, 0, 1, 1]), k=1) in (0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="labels"):
        retrieval_precision(x, labels[:5])
