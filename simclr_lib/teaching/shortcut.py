"""The colour-histogram shortcut (Chen et al. 2020, Sec. 3, Fig. 6), shown and measured.

Two random crops of one image share its colour distribution. Without colour distortion the contrastive task can
therefore be solved by comparing colour histograms, and the network has no reason to learn anything else. Here:

* :func:`color_histogram` — per-channel (or joint RGB) colour histograms of a batch, vectorised;
* :func:`histogram_distances` — L1 distance between the histograms of two crops of the same image and of crops
  of two different images (the measurement behind Fig. 6);
* :func:`histogram_pair_accuracy` — how often the partner view is the nearest histogram among all 2N views:
  the contrastive task solved from histograms alone;
* :func:`histogram_classifier` — a linear classifier on colour histograms only (does colour give the class?).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from simclr_lib.augment import to_float
from simclr_lib.loss import contrastive_accuracy


def color_histogram(images: Tensor, bins: int = 8, joint: bool = False) -> Tensor:
    """Normalised colour histograms, one per image; bin b of a channel holds values in [b/bins, (b+1)/bins).

    Taught in notebook 01 (the colour shortcut of Fig. 6).

    Args:
        images: uint8 in [0, 255] or float in [0, 1].
        bins: bins per channel.
        joint: False: the three per-channel histograms concatenated (each sums to 1); True: one joint RGB
            histogram of ``bins**3`` cells (sums to 1).

    Shape:
        (B, 3, H, W) -> (B, 3 * bins), or (B, bins**3) when ``joint``.
    """
    if images.ndim != 4 or images.shape[1] != 3 or bins < 1:
        raise ValueError(f"need a (B, 3, H, W) batch and bins >= 1, got {tuple(images.shape)} and bins={bins}")
    x = to_float(images).clamp(0, 1)  # B x 3 x H x W
    idx = (x * bins).long().clamp_(max=bins - 1).flatten(2)  # B x 3 x P, bin of every pixel
    b, _, p = idx.shape
    if joint:
        cell = (idx[:, 0] * bins + idx[:, 1]) * bins + idx[:, 2]  # B x P
        hist = torch.zeros(b, bins ** 3).scatter_add_(1, cell, torch.ones(b, p))  # B x bins^3
        return hist / p
    offset = (torch.arange(3) * bins).view(1, 3, 1)  # channel c fills bins c*bins .. (c+1)*bins - 1
    hist = torch.zeros(b, 3 * bins).scatter_add_(1, (idx + offset).flatten(1), torch.ones(b, 3 * p))
    return hist / p  # B x 3*bins, each channel's block sums to 1


def histogram_distances(view_a: Tensor, view_b: Tensor, bins: int = 8,
                        generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """L1 distances between colour histograms of two views of the *same* image, and of two *different* images.

    ``view_a[i]`` and ``view_b[i]`` are two views of image i; a "different" pair is ``view_a[i]`` with
    ``view_b[perm[i]]`` for a random derangement (no image paired with itself).

    Shape:
        view_a, view_b: (N, 3, H, W), N >= 2 -> {"same": (N,), "different": (N,)}, each in [0, 6] (3 channels).
    """
    if view_a.shape != view_b.shape or len(view_a) < 2:
        raise ValueError(f"need two equally shaped batches of >= 2 views, got {tuple(view_a.shape)}, "
                         f"{tuple(view_b.shape)}")
    ha, hb = color_histogram(view_a, bins), color_histogram(view_b, bins)  # N x 3*bins each
    n = len(ha)
    shift = torch.randint(1, n, (1,), generator=generator).item()  # a cyclic shift is a derangement
    other = (torch.arange(n) + shift) % n
    return {"same": (ha - hb).abs().sum(1), "different": (ha - hb[other]).abs().sum(1)}


def histogram_pair_accuracy(views: Tensor, n_views: int = 2, bins: int = 8) -> float:
    """Top-1 accuracy of the contrastive task solved by colour histograms: for each of the ``n_views * N`` views,
    is another view of the same image the most similar histogram (cosine) among all other views?

    Shape:
        views: (n_views * N, 3, H, W), view-major -> float in [0, 1] (chance: (n_views - 1) / (n_views * N - 1)).
    """
    return contrastive_accuracy(color_histogram(views, bins), n_views=n_views, topk=(1,))["top1"]


def histogram_classifier(train_images: Tensor, train_labels: Tensor, test_images: Tensor, test_labels: Tensor,
                         bins: int = 8, joint: bool = True, max_iter: int = 1000) -> dict[str, float]:
    """Test accuracy of a linear classifier (logistic regression on standardised features) that sees only the
    colour histogram of each image, next to chance (the most frequent test class).

    Shape:
        train_images: (N, 3, H, W), train_labels: (N,), test_images: (M, 3, H, W), test_labels: (M,)
        -> {"accuracy": float, "chance": float, "features": int}
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr = color_histogram(train_images, bins, joint).numpy()  # N x F
    xte = color_histogram(test_images, bins, joint).numpy()  # M x F
    ytr, yte = train_labels.cpu().numpy(), test_labels.cpu().numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=1.0))
    clf.fit(xtr, ytr)
    chance = torch.bincount(test_labels.cpu()).max().item() / len(test_labels)
    return {"accuracy": float((clf.predict(xte) == yte).mean()), "chance": float(chance), "features": xtr.shape[1]}
