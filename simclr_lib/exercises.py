"""Checkers for the notebooks' exercises: each runs the reader's function against the library on fresh inputs.

Every checker returns a short verdict string (so a notebook cell shows it) and raises ``AssertionError`` with a
hint when the answer is wrong, e.g.::

    from simclr_lib.exercises import check_nt_xent
    check_nt_xent(my_vectorised_loss)   # -> "correct: matches nt_xent on 6 random batches"

In the student edition (``notebooks/student/``, made by :mod:`simclr_lib.student`) the reader's function is still a
stub that raises ``NotImplementedError``; then a checker prints one line, "not done yet: ...", and returns
``False`` instead of raising (:func:`reports_not_done`). A ``NotImplementedError`` from the library itself is not
caught.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

from .augment import rgb_to_grayscale
from .embed import nearest_neighbours
from .evaluate import knn_predict
from .loss import nt_xent
from .optim import LARS

NOT_DONE = "not done yet: {name} raises NotImplementedError; write it above and run this cell again"


class _NotDone(Exception):
    """The reader's function raised ``NotImplementedError`` (its student-edition stub); carries its name."""


def _stub_aware(fn: Callable) -> Callable:
    """``fn`` with its own ``NotImplementedError`` turned into :class:`_NotDone`, so that only the reader's
    function, never the checker's or the library's code, can make a checker say "not done yet"."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as e:
            raise _NotDone(getattr(fn, "__name__", "your function")) from e
    return call


def reports_not_done(check: Callable[..., str]) -> Callable[..., str | bool]:
    """Decorator for a checker ``check(fn, ...)``: when ``fn`` raises ``NotImplementedError``, print one line
    (:data:`NOT_DONE`) and return ``False``, with no traceback; otherwise ``check`` behaves as before.

    Args:
        check: a checker whose first argument is the reader's function.

    Returns:
        The wrapped checker (same name and docstring).
    """
    @functools.wraps(check)
    def run(fn: Callable, *args, **kwargs):
        try:
            return check(_stub_aware(fn), *args, **kwargs)
        except _NotDone as e:
            print(NOT_DONE.format(name=e.args[0]))
            return False
    return run


def _batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for n, v, d, tau in ((4, 2, 8, 0.5), (7, 2, 16, 0.1), (5, 2, 3, 1.0), (16, 2, 32, 0.07), (3, 3, 8, 0.5),
                         (1, 2, 4, 0.2)):
        yield torch.randn(v * n, d, generator=g), tau, v


@reports_not_done
def check_nt_xent(fn: Callable[[torch.Tensor, float], torch.Tensor], n_views: int = 2) -> str:
    """Exercise of notebook 02: ``fn(z, temperature)`` must equal :func:`~simclr_lib.loss.nt_xent` (2 views)."""
    count = 0
    for z, tau, v in _batches():
        if v != n_views:
            continue
        got, want = fn(z.clone(), tau), nt_xent(z, tau, v)
        assert torch.is_tensor(got) and got.numel() == 1, "return a scalar tensor (the mean over all 2N anchors)"
        assert torch.allclose(got.float().reshape(()), want, atol=1e-5), (
            f"N={len(z) // v}, tau={tau}: got {got.item():.6f}, want {want.item():.6f}; check the self-mask "
            "(set the diagonal to -inf), the positive of row i (i+N mod 2N) and the division by tau")
        count += 1
    return f"correct: matches nt_xent on {count} random batches"


@reports_not_done
def check_grayscale(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    """Exercise of notebook 01: ``fn(x)`` turns a (B,3,H,W) float batch into greyscale (B,1,H,W) or (B,3,H,W)."""
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    got, want = fn(x.clone()), rgb_to_grayscale(x)  # want: B x 1 x H x W
    assert got.ndim == 4 and got.shape[0] == 4 and got.shape[1] in (1, 3) and got.shape[-2:] == x.shape[-2:], \
        f"return (B,1,H,W) or (B,3,H,W), got {tuple(got.shape)}"
    assert torch.allclose(got, want.expand_as(got), atol=1e-5), \
        "use the ITU-R 601 weights 0.2989 R + 0.587 G + 0.114 B (and equal channels for a 3-channel result)"
    return "correct: matches rgb_to_grayscale"


@reports_not_done
def check_lars_trust_ratio(fn: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]) -> str:
    """Exercise of notebook 03: ``fn(w, g, weight_decay, eta)`` returns the LARS update direction trust * (g + wd w)
    for one weight matrix (trust = eta ||w|| / ||g + wd w||, 1 when a norm is 0)."""
    gen = torch.Generator().manual_seed(2)
    cases = [(torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)),
             (torch.zeros(3, 3), torch.randn(3, 3, generator=gen)), (torch.randn(5, 2, generator=gen), torch.zeros(5, 2))]
    for w, g in cases:
        p = torch.nn.Parameter(w.clone())
        p.grad = g.clone()
        LARS([p], lr=1.0, momentum=0.0, weight_decay=1e-3, eta=1e-3).step()  # w - 1.0 * update
        want = w - p.detach()
        got = fn(w.clone(), g.clone(), 1e-3, 1e-3)
        assert torch.allclose(got, want, atol=1e-7), (
            "got a different update; remember: decay first (g + wd*w), then trust = eta*||w||/||g||, "
            "and trust = 1 when either norm is 0")
    return "correct: matches simclr_lib.optim.LARS on 3 weight matrices (including zero norms)"


@reports_not_done
def check_knn(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    """Exercise of notebook 04: ``fn(train_x, train_y, test_x, k)`` returns majority-vote cosine-kNN classes."""
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(4, 16, generator=g) * 3
    train_y, test_y = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (50,), generator=g)
    train_x = centres[train_y] + torch.randn(200, 16, generator=g)
    test_x = centres[test_y] + torch.randn(50, 16, generator=g)
    for k in (1, 5, 15):
        want = knn_predict(train_x, train_y, test_x, k=k, weighted=False)
        got = torch.as_tensor(fn(train_x, train_y, test_x, k)).reshape(-1).cpu()
        agree = (got == want).float().mean().item()
        assert agree > 0.97, f"k={k}: only {agree:.0%} of predictions agree; use cosine similarity (normalise rows)"
    return "correct: agrees with knn_predict(weighted=False) for k = 1, 5, 15"


@reports_not_done
def check_nearest_neighbours(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    """Exercise of notebook 05: ``fn(query_idx, features, k)`` returns, for each query row, the indices of its ``k``
    most cosine-similar rows of ``features``, the query itself excluded, most similar first. Shape: (Q, k)."""
    g = torch.Generator().manual_seed(5)
    for n, d, k in ((50, 8, 5), (200, 32, 10), (30, 3, 1)):
        x = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g).mul(10).add(0.1)  # lengths vary
        q = torch.randperm(n, generator=g)[:7]
        want = nearest_neighbours(q, x, k)
        got = torch.as_tensor(fn(q.clone(), x.clone(), k)).long().cpu()
        assert got.shape == want.shape, f"return shape (Q, k) = {tuple(want.shape)}, got {tuple(got.shape)}"
        assert not bool((got == q[:, None]).any()), "a query is its own nearest neighbour: exclude it"
        assert torch.equal(got.sort(1).values, want.sort(1).values), (
            "different neighbours: use cosine similarity (normalise the rows), not the raw dot product or distance")
        assert torch.equal(got, want), "right neighbours, wrong order: sort most similar first"
    return "correct: matches simclr_lib.embed.nearest_neighbours on 3 random sets"


@reports_not_done
def check_pair_matrix(fn: Callable[[list, list, str], "object"]) -> str:
    """Exercise of notebook 06: ``fn(rows, ops, value)`` lays runs on single ops and on pairs of ops out as Fig. 5's
    table: (i, i) op i alone, (i, j) = (j, i) ops i and j, plus a last column with each row's mean."""
    import numpy as np

    from .experiments import augmentation_pairs, pair_matrix

    g = torch.Generator().manual_seed(6)
    for ops in (["crop", "jitter", "grayscale"], ["crop", "jitter", "grayscale", "blur", "flip"]):
        pairs = augmentation_pairs(ops)
        order = torch.randperm(len(pairs), generator=g).tolist()  # rows in any order
        rows = [dict(ops=pairs[i], top1=float(torch.rand((), generator=g)) * 100) for i in order]
        want, got = pair_matrix(rows, ops, "top1"), np.asarray(fn(rows, list(ops), "top1"), dtype=float)
        assert got.shape == want.shape, f"shape (k, k + 1) = {want.shape} expected, got {got.shape}"
        assert np.allclose(got[:, :-1], want[:, :-1]), "cells differ: singles on the diagonal, pairs at (i, j) and (j, i)"
        assert np.allclose(got[:, -1], want[:, -1]), "last column: the mean of each row's k cells"
    return "correct: matches simclr_lib.experiments.pair_matrix for 3 and 5 ops"
