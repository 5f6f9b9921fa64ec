"""Embedding maps: t-SNE/PCA shapes, neighbours and retrieval precision vs a loop, projector files.

Their figures are tested in tests/test_plots.py."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from simclr_lib.embed import export_projector, nearest_neighbours, pca, retrieval_precision, tsne

N = 200

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(shapes_features):
    """200 labelled shapes images and 64-d features in which the class is visible (tests/conftest.py)."""
    return shapes_features


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
