"""NT-Xent: the fast form against the paper's loop, the seed forms, closed forms, autocast and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from simclr_lib.loss import info_nce_logits, nt_xent, nt_xent_naive
from simclr_lib.teaching.popular_repos import spijkervet_nt_xent, sthalles_info_nce


def nt_xent_of_identical_views(n: int, temperature: float = 0.5, n_views: int = 2) -> float:
    """The exact loss when all views of an image are identical and different images are orthogonal.

    Each term is -log(e^{1/tau} / ((V-1) e^{1/tau} + (M - V))) with M = n_views * n: a closed form to test against.
    """
    m = n * n_views
    e = math.exp(1.0 / temperature)
    return -math.log(e / ((n_views - 1) * e + (m - n_views)))


def _z(m, d=16, seed=0):
    return torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


@pytest.mark.parametrize("n,n_views,tau", [(4, 2, 0.5), (5, 3, 0.1), (3, 4, 1.0), (1, 2, 0.5)])
def test_fast_equals_naive_loop(n, n_views, tau):
    z = _z(n * n_views)
    assert torch.allclose(nt_xent(z, tau, n_views), nt_xent_naive(z, tau, n_views), atol=1e-5)


@pytest.mark.parametrize("n_views", [2, 3])
def test_logits_form_equals_fast_form(n_views):
    z = _z(6 * n_views, seed=1)
    logits, labels = info_nce_logits(z, 0.2, n_views)
    assert logits.shape == (6 * n_views * (n_views - 1), 6 * n_views - 1)
    assert torch.allclose(F.cross_entropy(logits, labels), nt_xent(z, 0.2, n_views), atol=1e-5)


def test_equals_sthalles_and_spijkervet_forms_for_two_views():
    z = _z(2 * 8, seed=2)
    logits, labels = sthalles_info_nce(z, batch_size=8, n_views=2, temperature=0.5)
    ours = nt_xent(z, 0.5)
    assert torch.allclose(F.cross_entropy(logits, labels), ours, atol=1e-5)
    assert torch.allclose(spijkervet_nt_xent(z, 0.5), ours, atol=1e-5)


def test_sthalles_defects_that_ours_fixes():
    z = _z(2 * 6, seed=3)  # a partial last batch of 6 when the configured batch size is 8
    with pytest.raises((RuntimeError, IndexError)):
        sthalles_info_nce(z, batch_size=8, n_views=2)
    assert torch.isfinite(nt_xent(z, 0.5))
    z3 = _z(3 * 4, seed=4)  # three views: the seed treats the second positive as a negative
    logits, labels = sthalles_info_nce(z3, batch_size=4, n_views=3)
    assert not torch.allclose(F.cross_entropy(logits, labels), nt_xent(z3, 0.5, 3), atol=1e-3)


def test_identical_views_closed_form():
    n, d = 8, 32
    base = torch.eye(d)[:n]  # orthogonal unit rows
    for n_views in (2, 3):
        z = base.repeat(n_views, 1) * 3.0  # scale must not matter (cosine similarity)
        expected = nt_xent_of_identical_views(n, 0.5, n_views)
        assert math.isclose(nt_xent(z, 0.5, n_views).item(), expected, rel_tol=1e-6)


def test_partial_batch_reads_n_from_shape():
    z = _z(2 * 7)
    assert torch.allclose(nt_xent(z, 0.5), nt_xent_naive(z, 0.5), atol=1e-5)


def test_hard_negatives_top_k():
    z = _z(2 * 6, seed=5)
    logits, labels = info_nce_logits(z, 0.5, top_k=3)
    assert logits.shape == (12, 4)
    full, _ = info_nce_logits(z, 0.5)
    assert torch.equal(logits[:, 0], full[:, 0])
    assert torch.allclose(logits[:, 1:], full[:, 1:].topk(3, dim=1).values)
    assert F.cross_entropy(logits, labels) <= F.cross_entropy(full, labels)  # fewer negatives, smaller loss


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_finite_gradients_under_autocast(dtype):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lin = torch.nn.Linear(32, 16).to(device)
    x = torch.randn(64, 32, device=device) * 50
    with torch.autocast(device_type=device, dtype=dtype):
        z = lin(x)
        assert z.dtype == dtype
        loss = nt_xent(z, temperature=0.07)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in lin.parameters())
    ref = nt_xent(lin(x).float(), 0.07)
    assert abs(loss.item() - ref.item()) < 0.05 * ref.item() + 0.05  # low-precision z, same loss


def test_gradient_matches_naive():
    z1 = _z(2 * 4, seed=6).double().requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    nt_xent(z1, 0.3).backward()
    nt_xent_naive(z2, 0.3).backward()
    assert torch.allclose(z1.grad, z2.grad, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"), (dict(temperature=-1.0), "temperature"),
    (dict(n_views=1), "n_views"), (dict(n_views=3), "multiple of n_views")])
def test_bad_input_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        nt_xent(_z(8), **kwargs)
    assert "\n" not in str(e.value)


def test_anchor_rows_average_to_full_loss():
    z = _z(2 * 6, seed=7)
    full = nt_xent(z, 0.5)
    halves = [nt_xent(z, 0.5, anchors=torch.tensor(r)) for r in ([0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11])]
    assert torch.allclose((halves[0] + halves[1]) / 2, full, atol=1e-6)
    z3 = _z(3 * 4, seed=8)
    rows = torch.arange(12)
    assert torch.allclose(nt_xent(z3, 0.5, 3, anchors=rows), nt_xent(z3, 0.5, 3), atol=1e-6)


def test_contrastive_accuracy():
    from simclr_lib.loss import contrastive_accuracy
    base = torch.eye(16)[:8]
    acc = contrastive_accuracy(base.repeat(2, 1), 2, topk=(1, 5))
    assert acc == {"top1": 1.0, "top5": 1.0}
    z = _z(2 * 64, seed=9)
    acc = contrastive_accuracy(z, 2, topk=(1, 5, 127))
    assert acc["top127"] == 1.0 and acc["top1"] <= acc["top5"] < 0.5


@pytest.mark.parametrize("n_views,tau", [(2, 0.1), (2, 0.5), (3, 1.0)])
def test_negative_weights_are_the_loss_gradient_on_each_negative(n_views, tau):
    """Naive reference from Eq. 1: anchor i's term -log(exp(s_ip/tau) / sum_{k != i} exp(s_ik/tau)); autograd on
    the similarities gives d l_i / d s_ik = p_ik / tau for every negative k."""
    from simclr_lib.loss import negative_weights

    n = 5
    z = torch.randn(n_views * n, 8, generator=torch.Generator().manual_seed(3))
    w = negative_weights(z, tau, n_views)
    u = torch.nn.functional.normalize(z, dim=1)
    for i in range(n_views * n):
        s = (u @ u[i]).clone().requires_grad_()  # M similarities of anchor i
        others = [k for k in range(n_views * n) if k != i]
        pos = (i + n) % (n_views * n)
        term = -(s[pos] / tau - torch.logsumexp(s[others] / tau, 0))
        (grad,) = torch.autograd.grad(term, s)
        for k in others:
            if k % n != i % n:  # a negative
                assert torch.isclose(w[i, k], tau * grad[k], atol=1e-6)
            else:
                assert w[i, k] == 0
        assert w[i, i] == 0
