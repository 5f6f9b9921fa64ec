"""Looking at representations: t-SNE / PCA maps, thumbnails, nearest neighbours, TensorBoard projector.

Every plot builds a ``matplotlib.figure.Figure`` directly (no pyplot state, safe under the Agg backend, shown
once in Jupyter) or draws into the ``ax=`` it is given, and returns the Figure. Nothing here calls ``plt.show``.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]


def _np(x: ArrayLike, dtype=np.float32) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(dtype, copy=False)


def _check_2d(features: ArrayLike, name: str = "features") -> np.ndarray:
    x = _np(features)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be a 2-D array (N >= 2, D), got shape {x.shape}")
    return x


def pca(features: ArrayLike, n_components: int = 2) -> np.ndarray:
    """Principal-component projection. Shape: (N, D) -> (N, n_components)."""
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


def _figure(ax: Optional[Axes], figsize=(6, 6), projection: Optional[str] = None) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(projection=projection)


def _colours(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _check_points(xy: ArrayLike, labels: ArrayLike, dims: int) -> tuple[np.ndarray, np.ndarray]:
    xy, labels = _np(xy), _np(labels, np.int64)
    if xy.ndim != 2 or xy.shape[1] != dims or labels.shape != (len(xy),):
        raise ValueError(f"need points (N, {dims}) and labels (N,), got {xy.shape} and {labels.shape}")
    return xy, labels


def scatter_by_class(xy: ArrayLike, labels: ArrayLike, classes: Sequence[str], ax: Optional[Axes] = None,
                     title: Optional[str] = None, s: float = 6.0, legend: bool = True) -> Figure:
    """2-D points coloured by class, one scatter (and legend entry) per class present. Shape: xy (N, 2)."""
    xy, labels = _check_points(xy, labels, 2)
    fig, ax = _figure(ax)
    colours = _colours(len(classes))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colours[c], label=classes[c], alpha=0.8, linewidths=0)
    if legend:
        ax.legend(markerscale=3, fontsize="small", loc="best", frameon=True)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def scatter_3d(xyz: ArrayLike, labels: ArrayLike, classes: Sequence[str], ax: Optional[Axes] = None,
               title: Optional[str] = None, s: float = 4.0) -> Figure:
    """3-D points coloured by class (``ax`` must be a 3-D axes if given). Shape: xyz (N, 3)."""
    xyz, labels = _check_points(xyz, labels, 3)
    fig, ax = _figure(ax, projection="3d")
    colours = _colours(len(classes))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xyz[m, 0], xyz[m, 1], xyz[m, 2], s=s, color=colours[c], label=classes[c], alpha=0.8)
    ax.legend(markerscale=3, fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def thumbnail_scatter(xy: ArrayLike, images: torch.Tensor, n: int = 500, zoom: float = 0.035,
                      ax: Optional[Axes] = None, seed: int = 0, title: Optional[str] = None) -> Figure:
    """Each of ``n`` random images drawn at its 2-D position (``imshow`` extents: fast, vector-free).

    ``zoom`` is a thumbnail's side as a fraction of the map's extent. Shape: xy (N, 2), images (N, 3, H, W) uint8.
    """
    xy = _np(xy)
    if xy.ndim != 2 or xy.shape[1] != 2 or images.ndim != 4 or len(images) != len(xy):
        raise ValueError(f"need xy (N, 2) and images (N, 3, H, W), got {xy.shape} and {tuple(images.shape)}")
    pick = np.random.default_rng(seed).permutation(len(xy))[:n]
    fig, ax = _figure(ax, figsize=(9, 9))
    lo, hi = xy.min(0), xy.max(0)
    half = zoom * (hi - lo).clip(min=1e-9) / 2  # (2,) half side in data units
    thumbs = images[torch.as_tensor(pick)].permute(0, 2, 3, 1).cpu().numpy()  # n x H x W x 3
    for (x, y), img in zip(xy[pick], thumbs):
        ax.imshow(img, extent=(x - half[0], x + half[0], y - half[1], y + half[1]), interpolation="nearest")
    ax.set_xlim(lo[0] - 2 * half[0], hi[0] + 2 * half[0]), ax.set_ylim(lo[1] - 2 * half[1], hi[1] + 2 * half[1])
    ax.set_aspect("auto"), ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig


def nearest_neighbours(query_idx: ArrayLike, features: ArrayLike, k: int = 8) -> torch.Tensor:
    """The ``k`` most cosine-similar rows to each query row, the query itself excluded, most similar first.

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
    """
    lab = torch.as_tensor(_np(labels, np.int64))
    x = _check_2d(features)
    if lab.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), got {tuple(lab.shape)}")
    hits = [(lab[nearest_neighbours(q, x, k)] == lab[q, None]).float() for q in torch.arange(len(x)).split(512)]
    return torch.cat(hits).mean().item()


def neighbour_grid(query_idx: ArrayLike, features: ArrayLike, images: torch.Tensor, k: int = 8,
                   labels: Optional[ArrayLike] = None, classes: Optional[Sequence[str]] = None) -> Figure:
    """One row per query: the query image, then its ``k`` cosine nearest neighbours (most similar first).

    With ``labels``, titles carry the class (``classes``) and neighbours get a green (same class) or red frame.
    Shape: features (N, D), images (N, 3, H, W) uint8.
    """
    nn_idx = nearest_neighbours(query_idx, features, k).numpy()  # Q x k
    q = np.asarray(query_idx, dtype=np.int64).reshape(-1)
    lab = None if labels is None else _np(labels, np.int64)
    fig = Figure(figsize=(1.2 * (k + 1), 1.35 * len(q)), layout="constrained")
    axes = fig.subplots(len(q), k + 1, squeeze=False)
    for r, (qi, row) in enumerate(zip(q, nn_idx)):
        for c, idx in enumerate([qi, *row]):
            ax = axes[r, c]
            ax.imshow(images[idx].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            name = "" if lab is None else (classes[lab[idx]] if classes is not None else str(lab[idx]))
            if c == 0:
                ax.set_title(f"query\n{name}", fontsize=8, fontweight="bold")
                continue
            colour = "black" if lab is None else ("tab:green" if lab[idx] == lab[qi] else "tab:red")
            ax.set_title(name, fontsize=8, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour), spine.set_linewidth(2.5 if lab is not None else 0.8)
    return fig


def side_by_side(xy_a: ArrayLike, xy_b: ArrayLike, labels: ArrayLike, classes: Sequence[str],
                 titles: Sequence[str] = ("random init", "SimCLR"), s: float = 6.0) -> Figure:
    """Two 2-D maps of the same points (e.g. random init vs SimCLR) with one shared legend. Shape: (N, 2) each."""
    fig = Figure(figsize=(12, 6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, xy, title in zip(axes, (xy_a, xy_b), titles):
        scatter_by_class(xy, labels, classes, ax=ax, title=title, s=s, legend=False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", markerscale=3, fontsize="small")
    return fig


def export_projector(log_dir: Union[str, Path], features: ArrayLike, labels: Optional[ArrayLike],
                     classes: Optional[Sequence[str]], images: Optional[torch.Tensor] = None,
                     tag: str = "simclr") -> Path:
    """Write an embedding for TensorBoard's projector: tensors, class-name metadata and (optionally) a sprite.

    Open with ``tensorboard --logdir <log_dir>`` (PROJECTOR tab). Returns ``log_dir``, which holds
    ``projector_config.pbtxt``. Shape: features (N, D), labels (N,), images (N, 3, H, W) uint8.
    """
    from torch.utils.tensorboard import SummaryWriter

    x = torch.as_tensor(_check_2d(features))
    meta = None
    if labels is not None:
        lab = _np(labels, np.int64)
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


def figure_format(path: Union[str, Path]) -> Optional[str]:
    """The file format matplotlib writes for ``path``'s suffix (no suffix: ``png``), or None if it has none."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix[1:].lower() or "png"
    return fmt if fmt in FigureCanvasBase.get_supported_filetypes() else None


def _write_bytes_atomically(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file in ``path``'s folder, then rename it onto ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_figure(fig: Figure, path: Union[str, Path], dpi: int = 120) -> Path:
    """Save ``fig`` (PNG, PDF, SVG, ... by suffix; none: PNG, appended), creating the folder; returns the path.

    Atomic: the figure is rendered in memory, then written to a temporary file that is renamed onto ``path``, so a
    failure (full disk, bad format) leaves an earlier file at ``path`` intact and no half-written one.
    """
    path = Path(path)
    fmt = figure_format(path)
    if fmt is None:
        raise ValueError(f"matplotlib cannot write {path.suffix} figures ({path}); use .png, .pdf or .svg")
    path = path if path.suffix else path.with_name(f"{path.name}.png")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_bytes_atomically(buf.getvalue(), path)
    return path
