"""simclr_lib.teaching.geometry (alignment, uniformity, pair similarities; Wang & Isola 2020) against naive references
written from the paper's definitions with explicit loops over pairs, and plots.geometry's figures."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from simclr_lib.augment import SimCLRAugment, make_views
from simclr_lib.models import ProjectionHead, SimCLRModel
from simclr_lib.teaching.geometry import _mean_negative_similarity, alignment, embedding_geometry, uniformity
from simclr_lib.teaching.plots.geometry import similarity_histograms

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(v):
    return v / v.norm()


# --- naive references, one pair at a time --------------------------------------------------------------------------
def _alignment_loop(z1, z2, alpha=2.0):
    """E over positive pairs (x, y) of ||f(x) - f(y)||_2^alpha, f(x) on the unit sphere."""
    return sum(float((_unit(z1[i]) - _unit(z2[i])).norm()) ** alpha for i in range(len(z1))) / len(z1)


def _uniformity_loop(z, t=2.0):
    """log of the mean over pairs i < j of exp(-t ||f(x_i) - f(x_j)||^2)."""
    vals = [math.exp(-t * float((_unit(z[i]) - _unit(z[j])).norm()) ** 2)
            for i in range(len(z)) for j in range(i + 1, len(z))]
    return math.log(sum(vals) / len(vals))


def _pairs_loop(views):
    """Positive and negative cosine similarities of V views of N images, stacked view-major; negatives i < k."""
    n, m = len(views[0]), len(views) * len(views[0])
    z = torch.cat(views)
    cos = [[float(_unit(z[i]) @ _unit(z[k])) for k in range(m)] for i in range(m)]
    pos = [cos[a * n + j][b * n + j] for a in range(len(views)) for b in range(a + 1, len(views)) for j in range(n)]
    neg = [cos[i][k] for i in range(m) for k in range(i + 1, m) if i % n != k % n]
    return pos, neg


# --- alignment -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_the_loop(alpha):
    z1, z2 = _randn(9, 5), _randn(9, 5, seed=1)
    assert alignment(z1, z2, alpha).item() == pytest.approx(_alignment_loop(z1, z2, alpha), rel=1e-5)


def test_alignment_is_0_for_identical_views_4_for_antipodal_ones_and_ignores_the_norm():
    z = _randn(7, 4)
    assert alignment(z, 3 * z).item() == pytest.approx(0.0, abs=1e-6)  # normalised rows: the scale is gone
    assert alignment(z, -z).item() == pytest.approx(4.0, rel=1e-6)
    assert alignment(z, -z, alpha=3).item() == pytest.approx(8.0, rel=1e-6)
    a, b = _randn(7, 4, seed=1), _randn(7, 4, seed=2)
    mean_cos = F.cosine_similarity(a, b).mean().item()
    assert alignment(a, b).item() == pytest.approx(2 - 2 * mean_cos, rel=1e-5)  # alpha = 2: 2 - 2 E cos


def test_alignment_gradient_is_finite_at_perfect_alignment():
    z = _randn(5, 3).float().requires_grad_()
    alignment(z, z.detach().clone()).backward()
    assert torch.isfinite(z.grad).all()


def test_alignment_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        alignment(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="alpha"):
        alignment(torch.ones(3, 2), torch.ones(3, 2), alpha=0)


# --- uniformity ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.5, 2.0])
def test_uniformity_matches_the_loop_pdist_and_any_chunking(t):
    z = _randn(13, 6)
    ref = _uniformity_loop(z, t)
    assert uniformity(z, t).item() == pytest.approx(ref, rel=1e-5)
    pdist = torch.pdist(F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean().log()  # the paper's code
    assert uniformity(z, t).item() == pytest.approx(pdist.item(), rel=1e-5)
    for chunk in (1, 13, 14, 40, 10 ** 6):  # one row at a time .. everything at once
        assert uniformity(z, t, chunk_elements=chunk).item() == pytest.approx(ref, rel=1e-5)


def test_uniformity_is_0_collapsed_and_lower_for_well_spread_points():
    collapsed = _randn(1, 8).repeat(20, 1) * torch.linspace(1, 3, 20)[:, None]  # one direction, any norm
    assert uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-5)
    cluster = _randn(1, 8) + 0.1 * _randn(20, 8, seed=1)
    spread = _randn(20, 8, seed=2)  # isotropic Gaussian: uniform directions
    assert uniformity(spread).item() < uniformity(cluster).item() - 1.0
    basis = torch.eye(8, dtype=torch.float64)  # orthonormal: every squared distance is 2
    assert uniformity(basis).item() == pytest.approx(-4.0, rel=1e-5)  # log exp(-2 * 2)
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(-8.0, rel=1e-5)


def test_uniformity_gradient_matches_the_pdist_form():
    z = _randn(10, 4).float()
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    uniformity(a, chunk_elements=7).backward()
    torch.pdist(F.normalize(b, dim=1)).pow(2).mul(-2).exp().mean().log().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


def test_uniformity_rejects_bad_input():
    with pytest.raises(ValueError, match="M >= 2"):
        uniformity(torch.ones(1, 3))
    with pytest.raises(ValueError, match="t="):
        uniformity(torch.ones(3, 3), t=0)


# --- pair similarities ---------------------------------------------------------------------------------------------
def test_mean_negative_similarity_is_exact_for_three_views():
    n = 4
    views = [_randn(n, 3, seed=s) for s in range(3)]
    ref_pos, ref_neg = _pairs_loop(views)
    unit = F.normalize(torch.stack(views), dim=2)
    assert _mean_negative_similarity(unit, sum(ref_pos)) == pytest.approx(np.mean(ref_neg), rel=1e-9)


# --- embedding_geometry --------------------------------------------------------------------------------------------
def _model(seed=0):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return SimCLRModel(encoder, ProjectionHead(8, out_dim=4), feat_dim=8)


def _images(n=12, size=8):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def pair_similarities(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference, as a loop: positives cos(z1_i, z2_i); negatives every pair i < k of the view-major stack
    [z1; z2] from two different images, in row-major order of the upper triangle."""
    z = torch.cat([z1, z2]).double()
    n, m = len(z1), 2 * len(z1)
    cos = lambda a, b: (a @ b / (a.norm() * b.norm())).float()  # noqa: E731
    pos = torch.stack([cos(z[i], z[i + n]) for i in range(n)])
    neg = torch.stack([cos(z[i], z[k]) for i in range(m) for k in range(i + 1, m) if i % n != k % n])
    return pos, neg


AUGMENT = SimCLRAugment(size=8)


def test_embedding_geometry_matches_the_functions_on_the_same_views():
    model, x = _model(), _images()
    geo = embedding_geometry(model, x, AUGMENT, "z", generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.eval()
        views = make_views(x, AUGMENT, 2, generator=torch.Generator().manual_seed(3))
        z = model(views)[1]  # 2N x 4, view-major
    z1, z2 = z[:len(x)], z[len(x):]
    pos, neg = pair_similarities(z1, z2)
    assert geo["alignment"] == pytest.approx(alignment(z1, z2).item(), rel=1e-5)
    assert geo["uniformity"] == pytest.approx((uniformity(z1).item() + uniformity(z2).item()) / 2, rel=1e-5)
    torch.testing.assert_close(geo["pos"], pos), torch.testing.assert_close(geo["neg"], neg)  # all: 264 < 200k
    assert geo["pos_mean"] == pytest.approx(pos.mean().item(), rel=1e-5)
    assert geo["neg_mean"] == pytest.approx(neg.double().mean().item(), rel=1e-5, abs=1e-6)
    assert geo["n_negatives"] == 2 * len(x) * (len(x) - 1)


def test_embedding_geometry_restores_modes_keeps_buffers_and_is_deterministic():
    model, x = _model().train(), _images()
    model.head.eval()  # a mixed-mode model gets exactly its own flags back
    flags = [m.training for m in model.modules()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    runs = [embedding_geometry(model, x, AUGMENT, space, batch_size=5, max_negatives=50,
                               generator=torch.Generator().manual_seed(1)) for space in ("h", "h", "z")]
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())  # BN statistics untouched
    h1, h2, z = runs
    assert h1["alignment"] == h2["alignment"] and h1["uniformity"] == h2["uniformity"]
    assert torch.equal(h1["pos"], h2["pos"]) and torch.equal(h1["neg"], h2["neg"])
    assert h1["neg"].shape == (50,) and h1["alignment"] != z["alignment"]


def test_embedding_geometry_samples_true_negatives_and_keeps_the_exact_mean():
    model, x = _model(), _images()
    full = embedding_geometry(model, x, AUGMENT, n_views=3, generator=torch.Generator().manual_seed(2))
    sampled = embedding_geometry(model, x, AUGMENT, n_views=3, max_negatives=100,
                                 generator=torch.Generator().manual_seed(2))
    n, m = len(x), 3 * len(x)
    assert full["pos"].shape == (3 * n,) and full["neg"].shape == (m * (m - 1) // 2 - 3 * n,)
    assert full["n_negatives"] == sampled["n_negatives"] == len(full["neg"])
    assert sampled["neg"].shape == (100,)
    gap = (sampled["neg"][:, None] - full["neg"][None, :]).abs().min(1).values  # each sample is a real negative
    assert gap.max() < 1e-6
    assert sampled["neg_mean"] == pytest.approx(full["neg"].double().mean().item(), rel=1e-5, abs=1e-6)
    assert full["neg_mean"] == pytest.approx(sampled["neg_mean"])


def test_embedding_geometry_rejects_bad_input():
    with pytest.raises(ValueError, match="n_views >= 2"):
        embedding_geometry(_model(), _images(), AUGMENT, n_views=1)
    with pytest.raises(ValueError, match="uint8"):
        embedding_geometry(_model(), _images().float(), AUGMENT)
    with pytest.raises(ValueError, match="space"):
        embedding_geometry(_model(), _images(), AUGMENT, space="x")


# --- plots ---------------------------------------------------------------------------------------------------------
def test_similarity_histograms_returns_a_figure_with_two_histograms_and_a_legend():
    pos, neg = torch.rand(50) * 0.5 + 0.5, torch.rand(400) * 2 - 1
    fig = similarity_histograms(pos, neg, title="trained")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 50 and ax.get_legend() is not None and ax.get_title() == "trained"
    assert ax.get_xlim() == (-1.0, 1.0)
    heights = np.array([p.get_height() for p in ax.patches[:50]])
    assert (heights * 0.04).sum() == pytest.approx(1.0)  # density-normalised
    fig2 = Figure()
    assert similarity_histograms(pos.numpy(), neg.numpy(), ax=fig2.subplots()) is fig2
    with pytest.raises(ValueError, match="no positive"):
        similarity_histograms([], neg)

