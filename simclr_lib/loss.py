"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR (Chen et al. 2020, Sec. 2.1, Eq. 1).

Three forms of the same number, read top to bottom:

* :func:`nt_xent` — the fast form used for training: one matmul of the L2-normalised embeddings, the diagonal
  masked, cross-entropy. Memory O(N^2), never O(N^2 D).
* :func:`info_nce_logits` — the "logits and labels" form of the popular seed code (positives moved to column 0,
  every label 0), kept for teaching and for the hard-negatives experiment.
* :func:`nt_xent_naive` — a Python loop written straight from the paper's Algorithm 1, for tests and notebooks.

Layout: ``z`` is ``(n_views * N, D)``, views stacked view-major (all first views, then all second views, as
``torch.cat(views)`` gives), so rows ``i`` and ``i + N`` are two views of the same image.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from simclr_lib.runtime import no_autocast


def _check(z: torch.Tensor, temperature: float, n_views: int) -> int:
    """Validate the arguments and return N, the number of images."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be > 0 (the paper uses 0.1-1.0)")
    if n_views < 2:
        raise ValueError(f"n_views={n_views} must be >= 2: a positive needs a second view")
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (n_views*N, D), got shape {tuple(z.shape)}")
    if z.shape[0] % n_views != 0 or z.shape[0] < n_views:
        raise ValueError(f"z has {z.shape[0]} rows, not a positive multiple of n_views={n_views}; "
                         "stack the views view-major with torch.cat(views)")
    return z.shape[0] // n_views


def cosine_logits(z: torch.Tensor, temperature: float, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """sim(z_i, z_k) / tau (cosine similarity, Eq. 1) of the anchors ``rows`` (default: every row) against every
    row, the self-similarity set to -inf (exp(-inf) = 0 drops k = i). Float32 with autocast off, so it is safe
    under fp16/bf16 autocast even at tau = 0.07. The one place the loss, its logits/labels form, the negative
    weights and the contrastive accuracy compute similarities.

    Shape:
        z: (M, D), rows: (A,) -> (A, M); (M, M) without ``rows``.

    Taught in notebook 02.
    """
    with no_autocast(z.device.type):
        zf = F.normalize(z.float(), dim=1)  # M x D, unit rows
        if rows is None:
            logits = zf @ zf.T / temperature  # M x M
            self_mask = torch.eye(zf.shape[0], dtype=torch.bool, device=z.device)
        else:
            logits = zf[rows] @ zf.T / temperature  # A x M
            self_mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, rows[:, None], True)
        return logits.masked_fill(self_mask, float("-inf"))


def positive_index(n: int, n_views: int = 2, device: Optional[torch.device] = None) -> torch.Tensor:
    """Column of every positive of every row, for the view-major layout.

    Shape:
        (M, n_views - 1) with M = n_views * n; row i holds (i + k*n) mod M for k = 1 .. n_views-1.

    Taught in notebook 00.
    """
    rows = torch.arange(n * n_views, device=device)[:, None]  # M x 1
    shifts = n * torch.arange(1, n_views, device=device)[None, :]  # 1 x (V-1)
    return (rows + shifts) % (n * n_views)  # M x (V-1)


def nt_xent(z: torch.Tensor, temperature: float = 0.5, n_views: int = 2,
            anchors: Optional[torch.Tensor] = None) -> torch.Tensor:
    """NT-Xent loss (paper Eq. 1), averaged over all (anchor, positive) pairs. Taught in notebook 02.

    l(i, j) = -log[ exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau) ]. Every other view of the same
    image is a positive; with more than two views each (anchor, positive) pair is one term whose denominator runs
    over all other samples, and the loss is the mean over all M*(n_views-1) terms. For two views this is exactly
    the paper's L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]. N comes from z's shape, so a partial batch works.
    The similarities are computed in float32 with autocast disabled, so the loss is safe under fp16/bf16 autocast
    even at temperature 0.07.

    Args:
        z: projections, view-major.
        temperature: tau > 0 (paper default for CIFAR-10: 0.5).
        n_views: views per image.
        anchors: optional row indices; only these rows are anchors (their terms are averaged), every row of z is
            still a candidate. Distributed training gives each rank its own rows of the gathered batch.

    Shape:
        z: (n_views * N, D), anchors: (A,) -> scalar.
    """
    n = _check(z, temperature, n_views)
    with no_autocast(z.device.type):
        logits = cosine_logits(z, temperature, anchors)  # A x M (M x M without anchors), self -inf
        rows = torch.arange(z.shape[0], device=z.device) if anchors is None else anchors
        positives = positive_index(n, n_views, z.device)[rows]  # A x (V-1)
        if n_views == 2:
            return F.cross_entropy(logits, positives[:, 0])
        return -F.log_softmax(logits, dim=1).gather(1, positives).mean()  # mean of A x (V-1) terms


@torch.no_grad()
def negative_weights(z: torch.Tensor, temperature: float = 0.5, n_views: int = 2) -> torch.Tensor:
    """How hard each anchor's NT-Xent term pushes every negative away (Sec. 5.1, "hard negatives").

    For anchor i, d l_i / d s_ik = p_ik / tau for a negative k, with p_i = softmax over k != i of s_ik / tau
    (the positive in the denominator, Eq. 1): row i holds p_ik for the negatives and 0 at the self-similarity and
    the positives. A small tau concentrates the weight on the few most similar negatives. Taught in notebook 06.

    Shape:
        z: (n_views * N, D) -> (M, M), M = n_views * N; each row sums to 1 - (its positives' p).
    """
    n = _check(z, temperature, n_views)
    p = torch.softmax(cosine_logits(z, temperature), dim=1)  # M x M, 0 on the diagonal
    return p.scatter(1, positive_index(n, n_views, z.device), 0.0)  # M x M, positives zeroed


@torch.no_grad()
def contrastive_accuracy(z: torch.Tensor, n_views: int = 2, topk: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """How often a positive ranks first (top-1) or among the first k (top-k) of each anchor's similarities.

    The training-time sanity metric of the seed code: positives are ranked against all other views.

    Shape:
        z: (n_views * N, D) -> {"top1": float, "top5": float}

    Taught in notebook 02.
    """
    n = _check(z, 1.0, n_views)
    sim = cosine_logits(z, 1.0)  # M x M, diagonal -inf
    pos = positive_index(n, n_views, z.device)  # M x (V-1)
    pos_sim = sim.gather(1, pos)  # M x (V-1)
    rank = (sim[:, None, :] > pos_sim[:, :, None]).sum(-1)  # M x (V-1): others scoring higher
    return {f"top{k}": (rank < k).float().mean().item() for k in topk}


def info_nce_logits(z: torch.Tensor, temperature: float = 0.5, n_views: int = 2,
                    top_k: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed code's logits/labels form: one row per (anchor, positive) pair, the positive in column 0.

    Row (i, j) is [s_ij, s_ik for every k not in {i, j}] / tau and its label is 0, so ``cross_entropy(logits,
    labels)`` equals :func:`nt_xent`. Unlike the seed (labels built from the configured batch size, and with
    n_views > 2 the extra positives used as negatives *and* never as targets), N is read from z and every
    positive gets its own row. ``top_k`` keeps only the k hardest (most similar) other samples per row: the
    hard-negatives experiment of the seed repository.

    Shape:
        z: (n_views * N, D) -> logits (M * (n_views-1), 1 + K), labels (M * (n_views-1),) with M = n_views * N
        and K = M - 2 (or top_k).

    Taught in notebook 02.
    """
    n = _check(z, temperature, n_views)
    m = z.shape[0]
    sim = cosine_logits(z, temperature)  # M x M (the self-similarity, -inf, is dropped below)
    pos = positive_index(n, n_views, z.device)  # M x (V-1)
    anchors = torch.arange(m, device=z.device).repeat_interleave(n_views - 1)  # P = M*(V-1)
    partners = pos.reshape(-1)  # P
    keep = torch.ones(anchors.numel(), m, dtype=torch.bool, device=z.device)  # P x M
    keep[torch.arange(anchors.numel(), device=z.device), anchors] = False  # drop self
    keep[torch.arange(anchors.numel(), device=z.device), partners] = False  # drop this positive (it is column 0)
    others = sim[anchors][keep].view(anchors.numel(), m - 2)  # P x (M-2)
    if top_k is not None:
        if not 0 < top_k <= m - 2:
            raise ValueError(f"top_k={top_k} must be in 1..{m - 2} for a batch of {m} views")
        others = others.topk(top_k, dim=1).values  # P x top_k, hardest negatives
    logits = torch.cat([sim[anchors, partners][:, None], others], dim=1)  # P x (1 + K)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=z.device)  # the positive is column 0
    return logits, labels


def nt_xent_naive(z: torch.Tensor, temperature: float = 0.5, n_views: int = 2) -> torch.Tensor:
    """NT-Xent as a Python loop over anchors and positives, straight from the paper's Algorithm 1.

    Taught in notebook 02, as the reference the fast form is tested against.

    Slow (O(M^2) Python steps); for tests, and for the notebook exercise.

    Shape:
        z: (n_views * N, D) -> scalar.
    """
    n = _check(z, temperature, n_views)
    m = z.shape[0]
    zd = z.double()
    # Algorithm 1: s_ij = z_i . z_j / (||z_i|| ||z_j||) for all i, j
    s = [[torch.dot(zd[i], zd[j]) / (zd[i].norm() * zd[j].norm()) for j in range(m)] for i in range(m)]
    total, terms = zd.new_zeros(()), 0
    for i in range(m):
        denominator = sum(torch.exp(s[i][k] / temperature) for k in range(m) if k != i)
        for j in range(m):
            if j != i and j % n == i % n:  # j is another view of the same image: a positive pair
                total = total - torch.log(torch.exp(s[i][j] / temperature) / denominator)
                terms += 1
    return (total / terms).to(z.dtype)
