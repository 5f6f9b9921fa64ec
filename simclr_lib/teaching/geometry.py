"""The geometry of the embedding on the hypersphere: alignment, uniformity and the similarities of pairs.

A second view of what NT-Xent (``loss.py``) does, after Wang & Isola (2020), "Understanding Contrastive
Representation Learning through Alignment and Uniformity on the Hypersphere". Their Theorem 1 splits the
contrastive loss, as the number of negatives grows, into two terms: one pulls the two views of an image together
(*alignment*), the other spreads all embeddings over the unit sphere (*uniformity*). Both are measured on
l2-normalised rows, as NT-Xent's cosine similarity sees them:

* :func:`alignment` -- L_align = E ||f(x) - f(y)||_2^alpha over positive pairs (Sec. 4.1.1); 0 is perfect.
* :func:`uniformity` -- L_uniform = log E exp(-t ||f(x) - f(y)||_2^2) over pairs of samples (Sec. 4.1.2); 0 for a
  collapsed embedding, more negative is more uniform.
* :func:`pair_similarities` -- the cosine similarities of the positive pairs and of the negative pairs, the two
  populations the NT-Xent softmax pulls apart (their histograms: ``plots.geometry``).
* :func:`embedding_geometry` -- all of them for a model on augmented views of a set of images, in h or in z.

Layout: two views ``z1, z2`` of the same N images, row i of each from image i; stacked view-major
(``torch.cat([z1, z2])``, as ``augment.make_views`` and ``loss.nt_xent`` have them) rows i and i + N are a positive.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from simclr_lib.augment import SimCLRAugment, make_views
from simclr_lib.evaluate import _check_images, _encoder_and_head, evaluation_mode, module_device

MAX_NEGATIVES = 200_000  # negative similarities kept by embedding_geometry (a seeded sample beyond this)


def _check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape or len(z1) == 0:
        raise ValueError(f"need two views of the same shape (N, D), N >= 1, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment loss L_align(f; alpha) = E_{(x, y) ~ p_pos} ||f(x) - f(y)||_2^alpha (Wang & Isola, Sec. 4.1.1).

    Row i of ``z1`` and row i of ``z2`` are a positive pair; both are l2-normalised first, so the value lies in
    [0, 2^alpha]: 0 when the two views coincide, 2^alpha when they are antipodal. Differentiable (a loss term).
    With alpha = 2 it equals 2 - 2 * (mean positive cosine similarity).

    Args:
        z1: one view of each of N images.
        z2: the other view, row for row.
        alpha: the exponent, > 0 (the paper's default: 2).

    Shape:
        z1: (N, D), z2: (N, D) -> scalar.
    """
    _check_pair(z1, z2)
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r} must be > 0 (the paper uses 2)")
    a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)  # N x D, unit rows
    return (a - b).pow(2).sum(1).pow(alpha / 2).mean()  # squared norm, then ^(alpha/2): no sqrt at 0 for alpha = 2


def uniformity(z: torch.Tensor, t: float = 2.0, chunk_elements: int = 1 << 22) -> torch.Tensor:
    """Uniformity loss L_uniform(f; t) = log E_{x, y} exp(-t ||f(x) - f(y)||_2^2) (Wang & Isola, Sec. 4.1.2).

    The expectation runs over all distinct pairs i < j of the l2-normalised rows of ``z`` (``torch.pdist``'s
    pairs). 0 for a collapsed embedding (every row the same), more negative the more uniformly the rows cover the
    sphere. Computed in row blocks of at most ``chunk_elements`` distances with a log-sum-exp, so the memory is
    O(chunk_elements), never O(M^2), and the value equals ``pdist(z).pow(2).mul(-t).exp().mean().log()``.
    Differentiable (a loss term). The paper averages it over the two views: ``(uniformity(z1) + uniformity(z2)) / 2``.

    Args:
        z: M embeddings, M >= 2.
        t: the Gaussian kernel's scale, > 0 (the paper's default: 2).
        chunk_elements: pairwise distances held at once.

    Shape:
        z: (M, D) -> scalar.
    """
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"z must be 2-D (M, D) with M >= 2 rows (a pair), got shape {tuple(z.shape)}")
    if not t > 0:
        raise ValueError(f"t={t!r} must be > 0 (the paper uses 2)")
    zf = F.normalize(z.float(), dim=1)  # M x D, unit rows
    m = len(zf)
    rows = max(1, chunk_elements // m)
    parts = []
    for a in range(0, m - 1, rows):  # the last row has no partner j > i
        b = min(a + rows, m - 1)
        sq = (2 - 2 * zf[a:b] @ zf[a:].T).clamp_min(0)  # (b-a) x (M-a): ||u - v||^2 = 2 - 2 u.v on the sphere
        upper = torch.arange(a, m, device=z.device)[None, :] > torch.arange(a, b, device=z.device)[:, None]
        parts.append(torch.logsumexp((-t * sq)[upper], dim=0))  # only the pairs i < j
    n_pairs = m * (m - 1) / 2
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(n_pairs)


def _all_negatives(unit: torch.Tensor) -> torch.Tensor:
    """Every unordered negative pair's cosine similarity, in the row-major order of the upper triangle of the
    view-major similarity matrix.

    Shape:
        unit: (V, N, D) unit rows -> (M(M - 1)/2 - N V(V - 1)/2,) with M = V * N.
    """
    v, n, _ = unit.shape
    zf = unit.reshape(v * n, -1)  # M x D, view-major
    i, k = torch.triu_indices(v * n, v * n, offset=1, device=zf.device)  # all pairs i < k
    negative = (i % n) != (k % n)  # different images (drops self and the positives)
    i, k = i[negative], k[negative]
    return (zf[i] * zf[k]).sum(1)


def view_embeddings(model: nn.Module, images: torch.Tensor, augment: SimCLRAugment, space: str = "z",
                    n_views: int = 2, batch_size: int = 512,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Embeddings of ``n_views`` augmented views of every image, in eval mode under ``no_grad``, batch by batch.

    Shape:
        images: (N, 3, H, W) uint8 -> (n_views, N, D) float32 on the CPU.
    """
    encoder, head = _encoder_and_head(model, space)
    dev = module_device(model)
    out = []
    with evaluation_mode(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(dev, non_blocking=True)  # B x 3 x H x W
            h = encoder(make_views(batch, augment, n_views, generator=generator)).flatten(1)  # V*B x D
            e = head(h) if head is not None else h  # V*B x D
            out.append(e.float().cpu().view(n_views, len(batch), -1))  # V x B x D
    return torch.cat(out, dim=1)  # V x N x D


def _view_pairs(n_views: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n_views) for b in range(a + 1, n_views)]


def _negative_sample(zv: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` cosine similarities of negative pairs drawn uniformly (with replacement) among all of them.

    A row r of the V*N views, then a view of another image: a uniform draw over the ordered negative pairs,
    hence over the unordered ones. Memory O(count * D).

    Shape:
        zv: (V, N, D) unit rows -> (count,).
    """
    v, n, _ = zv.shape
    view_a = torch.randint(v, (count,), generator=generator)
    image_a = torch.randint(n, (count,), generator=generator)
    view_b = torch.randint(v, (count,), generator=generator)
    image_b = torch.randint(n - 1, (count,), generator=generator)
    image_b = image_b + (image_b >= image_a).long()  # any image but image_a
    return (zv[view_a, image_a] * zv[view_b, image_b]).sum(1)


def _mean_negative_similarity(zv: torch.Tensor, positive_sum: float) -> float:
    """The exact mean cosine similarity over all unordered negative pairs, in O(V N D) without any pair matrix.

    Sum over all pairs i < k of u_i . u_k = (||sum u||^2 - M) / 2 for M unit rows; the negatives are those pairs
    minus the positives.

    Shape:
        zv: (V, N, D) unit rows -> float.
    """
    v, n, _ = zv.shape
    m = v * n
    all_pairs = (zv.double().sum((0, 1)).pow(2).sum().item() - m) / 2
    n_negative = m * (m - 1) / 2 - n * v * (v - 1) / 2
    return (all_pairs - positive_sum) / n_negative


def embedding_geometry(model: nn.Module, images: torch.Tensor, augment: SimCLRAugment, space: str = "z",
                       n_views: int = 2, batch_size: int = 512, generator: Optional[torch.Generator] = None,
                       alpha: float = 2.0, t: float = 2.0, max_negatives: int = MAX_NEGATIVES) -> dict[str, Any]:
    """Alignment, uniformity and the positive / negative cosine similarities of a model on augmented views.

    Each image gets ``n_views`` views (``augment.make_views``, batches of ``batch_size`` images); the model runs in
    eval mode under ``no_grad`` and every module's train/eval flag is restored afterwards (as
    ``evaluate.features``). With more than two views every pair of views of an image is a positive pair.

    Args:
        model: a ``SimCLRModel`` (or an encoder, for ``space="h"``); images move to its device.
        images: uint8 images.
        augment: the view distribution, e.g. ``SimCLRAugment.from_config(cfg)``.
        space: "z" (the projection NT-Xent sees) or "h" (the representation a probe sees).
        n_views: views per image, >= 2.
        generator: a ``torch.Generator`` on the model's device; with it the result is reproducible (it also seeds
            the sample of negatives). None: the global RNG.
        alpha: the exponent of :func:`alignment` (paper default 2).
        t: the kernel scale of :func:`uniformity` (paper default 2).
        max_negatives: at most this many negative similarities are returned (all of them if there are fewer,
            else a uniform sample drawn with replacement); the negative mean is always the exact one.

    Returns:
        ``alignment`` (mean over view pairs), ``uniformity`` (mean over views of each view's N rows, as the
        paper's code does), ``pos_mean``, ``neg_mean`` (floats), ``pos`` (N * V(V-1)/2,) and ``neg`` (<= max_negatives,)
        float32 CPU tensors of cosine similarities, and ``n_negatives``, the count of all negative pairs.

    Shape:
        images: (N, 3, H, W) uint8, N >= 2 -> the dict above.
    """
    _check_images(images)
    if n_views < 2 or batch_size < 1 or len(images) < 2 or max_negatives < 1:
        raise ValueError(f"need n_views >= 2 (got {n_views}), batch_size >= 1 (got {batch_size}), >= 2 images "
                         f"(got {len(images)}) and max_negatives >= 1 (got {max_negatives})")
    zv = view_embeddings(model, images, augment, space, n_views, batch_size, generator)  # V x N x D
    return _geometry_of(zv, alpha, t, max_negatives, generator)


def _geometry_of(zv: torch.Tensor, alpha: float, t: float, max_negatives: int,
                 generator: Optional[torch.Generator]) -> dict[str, Any]:
    """:func:`embedding_geometry`'s numbers from the embeddings of the views. Shape: zv (V, N, D) -> dict."""
    v, n, _ = zv.shape
    pairs = _view_pairs(v)
    unit = F.normalize(zv.float(), dim=2)  # V x N x D
    pos = torch.cat([(unit[a] * unit[b]).sum(1) for a, b in pairs])  # N * V(V-1)/2
    n_negative = v * n * (v * n - 1) // 2 - n * len(pairs)
    if n_negative <= max_negatives:
        neg = _all_negatives(unit)  # all of them, exactly
    else:
        device = generator.device if generator is not None else None
        seed = int(torch.randint(2 ** 62, (1,), generator=generator, device=device))  # the sample follows generator
        neg = _negative_sample(unit, max_negatives, torch.Generator().manual_seed(seed))
    return {"alignment": sum(alignment(zv[a], zv[b], alpha).item() for a, b in pairs) / len(pairs),
            "uniformity": sum(uniformity(zv[i], t).item() for i in range(v)) / v,
            "pos_mean": pos.double().mean().item(),
            "neg_mean": _mean_negative_similarity(unit, pos.double().sum().item()),
            "pos": pos, "neg": neg, "n_negatives": n_negative}
