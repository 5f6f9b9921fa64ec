"""The notebook exercise checkers accept the right answer and reject common wrong ones."""
import pytest
import torch
import torch.nn.functional as F

from simclr_lib import exercises as ex
from simclr_lib.evaluate import knn_predict
from simclr_lib.loss import nt_xent


def test_nt_xent_checker():
    assert ex.check_nt_xent(lambda z, t: nt_xent(z, t)).startswith("correct")

    def no_mask(z, t):  # forgets to mask the diagonal
        z = F.normalize(z, dim=1)
        n = len(z) // 2
        return F.cross_entropy(z @ z.T / t, (torch.arange(2 * n) + n) % (2 * n))
    with pytest.raises(AssertionError, match="self-mask"):
        ex.check_nt_xent(no_mask)


def test_grayscale_checker():
    assert ex.check_grayscale(lambda x: (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None])
    with pytest.raises(AssertionError):
        ex.check_grayscale(lambda x: x.mean(1, keepdim=True))


def test_lars_checker():
    def right(w, g, wd, eta):
        g = g + wd * w
        wn, gn = w.norm(), g.norm()
        return (eta * wn / gn if wn > 0 and gn > 0 else 1.0) * g
    assert ex.check_lars_trust_ratio(right).startswith("correct")
    with pytest.raises(AssertionError):
        ex.check_lars_trust_ratio(lambda w, g, wd, eta: eta * w.norm() / (g + wd * w).norm() * (g + wd * w))


def test_knn_checker():
    assert ex.check_knn(lambda a, b, c, k: knn_predict(a, b, c, k=k, weighted=False)).startswith("correct")
    with pytest.raises(AssertionError):
        ex.check_knn(lambda a, b, c, k: torch.zeros(len(c), dtype=torch.long))


def test_nearest_neighbours_checker():
    from simclr_lib.embed import nearest_neighbours

    assert ex.check_nearest_neighbours(lambda q, x, k: nearest_neighbours(q, x, k)).startswith("correct")

    def dot(q, x, k):  # raw dot product instead of cosine
        s = x[q] @ x.T
        s[torch.arange(len(q)), q] = -float("inf")
        return s.topk(k, dim=1).indices
    with pytest.raises(AssertionError, match="cosine"):
        ex.check_nearest_neighbours(dot)

    def with_self(q, x, k):  # the query is not excluded
        x = F.normalize(x, dim=1)
        return (x[q] @ x.T).topk(k, dim=1).indices
    with pytest.raises(AssertionError, match="own nearest"):
        ex.check_nearest_neighbours(with_self)


def test_pair_matrix_checker():
    import numpy as np

    from simclr_lib.experiments import pair_matrix

    assert ex.check_pair_matrix(pair_matrix).startswith("correct")
    with pytest.raises(AssertionError, match="last column"):
        ex.check_pair_matrix(lambda r, o, v: np.nan_to_num(pair_matrix(r, o, v) * np.r_[np.ones(len(o)), 0]))
