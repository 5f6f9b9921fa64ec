"""Looking at representations: t-SNE / PCA maps, nearest neighbours, retrieval precision, TensorBoard projector.

Only the numbers and the projector files; their figures (class-coloured maps, thumbnails, neighbour grids) are in
:mod:`simclr_lib.teaching.plots`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from simclr_lib.runtime import to_numpy

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def _check_2d(features: ArrayLike, name: str = "features") -> np.ndarray:
    """``features`` as a float32 array, checked to be 2-D with at least two rows. Shape: (N, D) -> (N, D)."""
    x = to_numpy(features)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be a 2-D array (N >= 2, D), got shape {x.shape}")
    return x


def pca(features: ArrayLike, n_components: int = 2) -> np.ndarray:
    """Principal-component projection. Shape: (N, D) -> (N, n_components).

    Taught in notebook 05.
    """
    from sklearn.decomposition import PCA

    x = _check_2d(features)
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"n_components={n_components} must be in 1..{min(x.shape)} for features of shape {x.shape}")
    return PCA(n_components=n_components).fit_transform(x).astype(np.float32)


def tsne(features: ArrayLike, n_components: int = 2, perplexity: float = 30.0, seed: int = 0,
         pca_first: Optional[int] = 50, n_threads: Optional[int] = 1) -> np.ndarray:
    """t-SNE map (scikit-learn, PCA initialisation, automatic learning rate), after a PCA to ``pca_first`` dims.

    ``n_threads`` caps scikit-learn's OpenMP threads (None: all cores). One is the default because on a shared or
    busy CPU the spinning OpenMP threads of Barnes-Hut t-SNE made it 5-40x slower in our measurements.

    Shape:
        (N, D) -> (N, n_components); needs N > perplexity.

    Taught in notebook 05.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = _check_2d(features)
    if not perplexity < len(x):
        raise ValueError(f"perplexity={perplexity} must be smaller than the number of points ({len(x)})")
    if pca_first and x.shape[1] > pca_first and len(x) > pca_first:
        x = pca(x, pca_first)
    with threadpool_limits(n_threads, user_api="openmp"):
        return TSNE(n_components=n_components, perplexity=perplexity, init="pca", learning_rate="auto",
                    random_state=seed).fit_transform(x).astype(np.float32)


def nearest_neighbours(query_idx: ArrayLike, features: ArrayLike, k: int = 8) -> torch.Tensor:
    """The ``k`` most cosine-similar rows to each query row, the query itself excluded, most similar first.

    Taught in notebook 05.

    Shape:
        query_idx: (Q,), features: (N, D) -> (Q, k) int64.
    """
    x = F.normalize(torch.as_tensor(_check_2d(features)), dim=1)  # N x D
    q = torch.as_tensor(np.asarray(query_idx, dtype=np.int64)).reshape(-1)
    if not 1 <= k < len(x) or len(q) == 0 or bool(((q < 0) | (q >= len(x))).any()):
        raise ValueError(f"need 1 <= k < N={len(x)} and query indices in 0..{len(x) - 1}, got k={k}")
    sim = x[q] @ x.T  # Q x N
    sim[torch.arange(len(q)), q] = -float("inf")
    return sim.topk(k, dim=1).indices


def retrieval_precision(features: ArrayLike, labels: ArrayLike, k: int = 10) -> float:
    """Fraction of each image's ``k`` cosine nearest neighbours (itself excluded) that share its class, averaged
    over all images: a label-free map's "are neighbours alike?" number (cf. the kNN monitor of Sec. B.9).

    Shape:
        features: (N, D), labels: (N,) -> float in [0, 1].

    Taught in notebook 05.
    """
    lab = torch.as_tensor(to_numpy(labels, np.int64))
    x = _check_2d(features)
    if lab.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), got {tuple(lab.shape)}")
    hits = [(lab[nearest_neighbours(q, x, k)] == lab[q, None]).float() for q in torch.arange(len(x)).split(512)]
    return torch.cat(hits).mean().item()


def export_projector(log_dir: Union[str, Path], features: ArrayLike, labels: Optional[ArrayLike],
                     classes: Optional[Sequence[str]], images: Optional[torch.Tensor] = None,
                     tag: str = "simclr") -> Path:
    """Write an embedding for TensorBoard's projector: tensors, class-name metadata and (optionally) a sprite.

    Open with ``tensorboard --logdir <log_dir>`` (PROJECTOR tab). Returns ``log_dir``, which holds
    ``projector_config.pbtxt``. Shape: features (N, D), labels (N,), images (N, 3, H, W) uint8.

    Taught in notebook 05.
    """
    from torch.utils.tensorboard import SummaryWriter

    x = torch.as_tensor(_check_2d(features))
    meta = None
    if labels is not None:
        lab = to_numpy(labels, np.int64)
        if lab.shape != (len(x),):
            raise ValueError(f"labels must have shape ({len(x)},), got {lab.shape}")
        meta = [classes[i] if classes is not None else str(i) for i in lab]
    label_img = None
    if images is not None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(x):
            raise ValueError(f"images must be uint8 ({len(x)}, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        side = int(np.ceil(np.sqrt(len(x)))) * max(images.shape[2:])
        if side > 8192:
            raise ValueError(f"the sprite would be {side}px wide (TensorBoard shows at most 8192); pass fewer images")
        label_img = images.cpu().float() / 255  # N x 3 x H x W in [0, 1]
    log_dir = Path(log_dir)
    if log_dir.exists() and not log_dir.is_dir():
        raise ValueError(f"the projector log folder {log_dir} exists and is not a folder; pass a folder path")
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        writer.add_embedding(x, metadata=meta, label_img=label_img, tag=tag)
    return log_dir
