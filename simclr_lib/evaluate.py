"""Evaluating representations: the paper's linear evaluation protocol, kNN, label fractions, fine-tuning.

* :func:`extract_features` computes h = f(x) (or z = g(h)) with the encoder in eval mode under ``no_grad``:
  BatchNorm uses and keeps its running statistics, and every module's train/eval flag is restored afterwards.
* :func:`linear_probe` is multinomial logistic regression on frozen, standardised features (Chen et al. 2020,
  Sec. 4 "linear evaluation protocol"; the L2-regularised L-BFGS fit of App. B.8). The torch and scikit-learn
  backends minimise the *same* objective, ``mean CE + ||W||^2 / (2 C N)``, so they agree up to solver tolerance.
* :func:`knn_accuracy` is the weighted kNN monitor of InstDisc (Wu et al. 2018): votes ``exp(cos / T)``.
* :func:`label_fraction_sweep` probes with 1 % / 10 % / 100 % of the labels (class-balanced, cf. Sec. 4 Table 7,
  which fine-tunes; here the cheaper linear probe).
* :func:`train_supervised` and :func:`fine_tune` train encoder + a new linear classifier end to end: the
  supervised baseline and the fine-tuned SimCLR encoder of Table 8.
"""
from __future__ import annotations

import contextlib
import copy
import time
import warnings
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import CIFAR10_MEAN, CIFAR10_STD, normalize, to_float
from .data import ImageData
from .optim import build_optimizer, build_scheduler
from .runtime import autocast_context, make_grad_scaler, resolve_device, resolve_precision

Stats = Union[Sequence[float], torch.Tensor]
DeviceLike = Union[str, torch.device, None]
PROBE_BACKENDS = ("torch", "sklearn")


# ---------------------------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def evaluation_mode(*modules: Optional[nn.Module]) -> Iterator[None]:
    """``eval()`` inside the block; afterwards every submodule gets its own previous ``training`` flag back."""
    flags = [(m, m.training) for mod in modules if mod is not None for m in mod.modules()]
    try:
        for mod in modules:
            if mod is not None:
                mod.eval()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module without any)."""
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def _check_device(module: nn.Module, device: DeviceLike) -> torch.device:
    here = module_device(module)
    if device is None:
        return here
    dev = resolve_device(device)
    if dev.type != here.type or (dev.index is not None and here.index is not None and dev.index != here.index):
        raise ValueError(f"the encoder is on {here} but device={str(dev)!r}; move it first: encoder.to({str(dev)!r})")
    return here


def _check_stats(mean: Stats, std: Stats) -> tuple[tuple[float, ...], tuple[float, ...]]:
    m, s = (tuple(float(v) for v in torch.as_tensor(t).flatten()) for t in (mean, std))
    if len(m) != 3 or len(s) != 3 or min(s) <= 0:
        raise ValueError(f"mean and std need 3 values each (std > 0), got {m} and {s}")
    return m, s


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor (N, 3, H, W) such as ImageData.images, got {got}")
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one image")


def extract_features(encoder: nn.Module, images: torch.Tensor, mean: Stats, std: Stats, batch_size: int = 512,
                     device: DeviceLike = None, head: Optional[nn.Module] = None, progress: bool = False,
                     autocast_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Representations of every image, the encoder (and ``head``) in eval mode, modes restored afterwards.

    Args:
        encoder: f (e.g. ``model.encoder``), already on its device; ``device`` only checks that it is there.
        images: uint8 images on any device; they move to the encoder's device one batch at a time.
        mean, std: per-channel statistics of the normalisation used in pre-training.
        head: optional projection head g: the features are then z = g(h) (the "h vs z" comparison, Sec. 4.2).
        autocast_dtype: e.g. ``torch.bfloat16`` on a GPU; None computes in fp32.

    Shape:
        images: (N, 3, H, W) uint8 -> (N, D) float32 on the CPU.
    """
    _check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    dev = _check_device(encoder, device)
    mean, std = _check_stats(mean, std)
    out = []
    with evaluation_mode(encoder, head), torch.no_grad(), autocast_context(dev, autocast_dtype):
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            x = normalize(to_float(images[start:start + batch_size].to(dev, non_blocking=True)), mean, std)
            h = encoder(x)  # B x D (or B x C x 1 x 1)
            if isinstance(h, (tuple, list)):
                raise ValueError("the encoder returned a tuple; pass model.encoder (and head=model.head), not model")
            h = h.flatten(1)
            out.append((head(h) if head is not None else h).float().cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------------------
# Linear evaluation (logistic regression on frozen features)
# ---------------------------------------------------------------------------------------------------------------
def _check_xy(x: torch.Tensor, y: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name}: need features (N, D) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool or bool((y < 0).any()):
        raise ValueError(f"{name}: labels must be non-negative integers, got {y.dtype}")
    return x.float(), y.long()


def standardize(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero mean, unit variance per feature with the *train* statistics (constant features left at 0).

    Shape:
        train_x: (N, D), test_x: (M, D) -> the same shapes.
    """
    mu, sd = train_x.mean(0), train_x.std(0, unbiased=False)  # D, D
    sd = torch.where(sd > 1e-6 * sd.max().clamp_min(1e-12), sd, torch.ones_like(sd))
    return (train_x - mu) / sd, (test_x - mu) / sd


def _fit_torch(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float,
               max_iter: int, tol: float) -> tuple[nn.Linear, int]:
    """Full-batch L-BFGS (strong Wolfe) on ``mean CE + ||W||^2 / (2 C N)``; returns the classifier, iterations."""
    clf = nn.Linear(x.shape[1], num_classes, device=x.device)
    nn.init.zeros_(clf.weight), nn.init.zeros_(clf.bias)
    lam = 1.0 / (C * len(x))
    opt = torch.optim.LBFGS(clf.parameters(), lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=tol,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(clf(x), y) + 0.5 * lam * clf.weight.square().sum()  # logits: N x K
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return clf, opt.state[clf.weight]["n_iter"]  # L-BFGS keeps its state under the first parameter


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 backend: str = "torch", C: Union[float, Sequence[float]] = 1.0, max_iter: int = 1000,
                 tol: float = 1e-4, device: DeviceLike = None, seed: int = 0) -> dict:
    """Logistic regression on frozen features, standardised with the train statistics (linear evaluation).

    Both backends minimise ``mean CE + ||W||^2 / (2 C N)`` (scikit-learn's parameterisation, bias not decayed):
    ``"torch"`` with full-batch L-BFGS on ``device`` (None: the features' device), ``"sklearn"`` with
    ``LogisticRegression(C, max_iter, tol)`` (lbfgs) on the CPU. A sequence of ``C`` values picks one on a
    held-out 20 % of the train set (:func:`select_C`, as App. B.8 selects the regularisation), then refits.

    Shape:
        train_x: (N, D), train_y: (N,), test_x: (M, D), test_y: (M,) -> dict of floats.
    """
    if backend not in PROBE_BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; choose one of {', '.join(PROBE_BACKENDS)}")
    t0 = time.perf_counter()
    (xtr, ytr), (xte, yte) = _check_xy(train_x, train_y, "train"), _check_xy(test_x, test_y, "test")
    scores = None
    if isinstance(C, (list, tuple, torch.Tensor)):
        C, scores = select_C(xtr, ytr, C, seed=seed, backend=backend, max_iter=max_iter, tol=tol, device=device)
    if not C > 0 or max_iter < 1:
        raise ValueError(f"C={C} must be > 0 and max_iter={max_iter} >= 1")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train features have D={xtr.shape[1]} but test features D={xte.shape[1]}")
    dev = xtr.device if device is None else resolve_device(device)
    xtr, xte = standardize(xtr.to(dev), xte.to(dev))
    ytr, yte = ytr.to(dev), yte.to(dev)
    if backend == "torch":
        clf, n_iter = _fit_torch(xtr, ytr, int(max(ytr.max(), yte.max())) + 1, C, max_iter, tol)
        with torch.no_grad():
            pred_tr, pred_te = clf(xtr).argmax(1), clf(xte).argmax(1)
        if n_iter >= max_iter:
            warnings.warn(f"torch L-BFGS probe stopped at max_iter={max_iter}; increase max_iter", stacklevel=2)
    else:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol).fit(xtr.cpu().double().numpy(), ytr.cpu().numpy())
        pred_tr, pred_te = (torch.from_numpy(clf.predict(x.cpu().double().numpy())).to(dev) for x in (xtr, xte))
        n_iter = int(clf.n_iter_.max())
    return dict(top1=(pred_te == yte).float().mean().item(), train_top1=(pred_tr == ytr).float().mean().item(),
                seconds=time.perf_counter() - t0, backend=backend, C=float(C), iterations=int(n_iter),
                n_train=len(xtr), **({} if scores is None else dict(C_val_top1=scores)))


def select_C(train_x: torch.Tensor, train_y: torch.Tensor, Cs: Sequence[float] = (0.01, 0.1, 1.0),
             val_fraction: float = 0.2, seed: int = 0, **probe_kwargs) -> tuple[float, list[list[float]]]:
    """The ``C`` with the best top-1 on a class-balanced held-out ``val_fraction`` of the train set.

    Ties go to the first in ``Cs``. Returns the chosen C and ``[[C, val_top1], ...]``.
    Shape: train_x (N, D), train_y (N,).
    """
    y = torch.as_tensor(train_y).cpu()
    fit = balanced_indices(y, fraction=1 - val_fraction, seed=seed)
    held = torch.ones(len(y), dtype=torch.bool)
    held[fit] = False
    val = held.nonzero().flatten()
    if len(Cs) == 0 or len(val) == 0:
        raise ValueError(f"select_C needs at least one C and a non-empty validation split (got {len(y)} labels)")
    scores = [[float(c), linear_probe(train_x[fit], y[fit], train_x[val], y[val], C=float(c), **probe_kwargs)["top1"]]
              for c in Cs]
    return max(scores, key=lambda s: s[1])[0], scores


def linear_probe_both(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                      **kwargs) -> dict:
    """:func:`linear_probe` with both backends on the same features, plus their gap in accuracy points."""
    res = {b: linear_probe(train_x, train_y, test_x, test_y, backend=b, **kwargs) for b in PROBE_BACKENDS}
    res["gap_points"] = 100 * abs(res["torch"]["top1"] - res["sklearn"]["top1"])
    return res


# ---------------------------------------------------------------------------------------------------------------
# kNN and label fractions
# ---------------------------------------------------------------------------------------------------------------
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int = 200,
                temperature: float = 0.1, weighted: bool = True, num_classes: Optional[int] = None,
                chunk_size: int = 256, device: DeviceLike = None) -> torch.Tensor:
    """kNN class of every test row by cosine similarity: votes ``exp(sim / T)`` (InstDisc) or 1 (majority).

    Ties go to the lowest class index. Memory: one ``chunk_size x N`` similarity block at a time.

    Shape:
        train_x: (N, D), train_y: (N,), test_x: (M, D) -> (M,) int64 on the CPU.
    """
    xtr, ytr = _check_xy(train_x, train_y, "train")
    if not 1 <= k <= len(xtr) or not temperature > 0 or chunk_size < 1:
        raise ValueError(f"k={k} must be in 1..{len(xtr)} (train size), temperature={temperature} > 0, chunk_size >= 1")
    dev = xtr.device if device is None else resolve_device(device)
    n_cls = num_classes or int(ytr.max()) + 1
    xtr, ytr = F.normalize(xtr.to(dev), dim=1), ytr.to(dev)  # N x D, N
    preds = []
    for start in range(0, len(test_x), chunk_size):
        q = F.normalize(torch.as_tensor(test_x[start:start + chunk_size]).float().to(dev), dim=1)  # c x D
        sim, idx = (q @ xtr.T).topk(k, dim=1)  # c x k
        w = (sim / temperature).exp() if weighted else torch.ones_like(sim)  # c x k
        votes = torch.zeros(len(q), n_cls, device=dev).scatter_add_(1, ytr[idx], w)  # c x n_cls
        preds.append(votes.argmax(1).cpu())
    return torch.cat(preds)


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 200, temperature: float = 0.1, weighted: bool = True, **kwargs) -> float:
    """Top-1 accuracy of :func:`knn_predict` (k = 200, T = 0.1: the InstDisc monitor). Shape: as knn_predict."""
    _, yte = _check_xy(test_x, test_y, "test")
    pred = knn_predict(train_x, train_y, test_x, k, temperature, weighted, **kwargs)
    return (pred == yte.cpu()).float().mean().item()


def balanced_indices(labels: torch.Tensor, per_class: Optional[int] = None, fraction: Optional[float] = None,
                     seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced random subset: ``per_class`` images of each class, or ``fraction`` of each
    class (at least one). Shape: labels (N,) -> (n,) int64, sorted."""
    if (per_class is None) == (fraction is None) or (fraction is not None and not 0 < fraction <= 1) \
            or (per_class is not None and per_class < 1):
        raise ValueError(f"give exactly one of per_class >= 1 or 0 < fraction <= 1 (got {per_class}, {fraction})")
    g, labels = torch.Generator().manual_seed(seed), torch.as_tensor(labels).cpu()
    chosen = []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        n = per_class if per_class is not None else max(1, round(fraction * len(idx)))
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(chosen).sort().values


def label_fraction_sweep(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                         fractions: Sequence[float] = (0.01, 0.1, 1.0), per_class: Optional[Sequence[int]] = None,
                         seed: int = 0, backend: str = "torch", progress: bool = False, **probe_kwargs) -> list[dict]:
    """Linear probe trained on class-balanced subsets of the labels (``fractions``, or ``per_class`` counts).

    Returns one dict per setting: ``fraction`` or ``per_class``, ``n_labels`` and :func:`linear_probe`'s keys.
    """
    settings = [("per_class", n) for n in per_class] if per_class is not None else [("fraction", f) for f in fractions]
    rows = []
    for key, value in tqdm(settings, desc="label fractions", disable=not progress):
        idx = balanced_indices(train_y, seed=seed, **{key: value})
        res = linear_probe(train_x[idx], torch.as_tensor(train_y)[idx], test_x, test_y, backend, **probe_kwargs)
        rows.append({key: value, "n_labels": len(idx), **res})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# End-to-end training: supervised baseline and fine-tuning (Table 8)
# ---------------------------------------------------------------------------------------------------------------
def crop_flip_at(images: torch.Tensor, pad: int, off_y: torch.Tensor, off_x: torch.Tensor,
                 flip: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``pad``, crop the original size at ``(off_y, off_x)``, mirror where ``flip``: one gather.

    Shape:
        images: (B, C, H, W); off_y, off_x: (B,) in 0..2*pad; flip: (B,) bool -> (B, C, H, W).
    """
    b, _, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad))  # B x C x (H+2p) x (W+2p)
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = off_y.to(dev)[:, None] + ar_h  # B x H
    cols = off_x.to(dev)[:, None] + torch.where(flip.to(dev)[:, None], w - 1 - ar_w, ar_w)  # B x W
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # B x H x W x C
    return out.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(images: torch.Tensor, pad: int = 4, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip (p = 0.5), per image, on the images' device.

    Shape:
        images: (B, C, H, W) -> (B, C, H, W).
    """
    b, dev = len(images), images.device
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=dev)  # drawn on the device: no copy
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    return crop_flip_at(images, pad, off[0], off[1], flip)


def _check_labelled(data: ImageData, name: str) -> None:
    if data.labels is None or len(data) < 2:
        raise ValueError(f"{name} set {data.name!r} needs labels and >= 2 images; use a labelled split (e.g. 'train')")


def _train_epoch(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, opt, sched, scaler, stats,
                 batch_size: int, pad: Optional[int], amp, gen: torch.Generator, bar) -> dict:
    """One pass in random order, dropping the last partial batch (all images if fewer than one batch)."""
    n, dev = len(x_all), x_all.device
    perm, steps = torch.randperm(n, generator=gen, device=dev), max(1, n // batch_size)  # on the device
    loss_sum, correct, seen = torch.zeros((), device=dev), torch.zeros((), device=dev), 0
    for s in range(steps):
        idx = perm[s * batch_size:(s + 1) * batch_size]
        xb = x_all[idx] if pad is None else random_crop_flip(x_all[idx], pad, gen)  # B x 3 x H x W uint8
        with autocast_context(dev, amp):
            logits = model(normalize(to_float(xb), *stats)).float()  # B x K
        loss = F.cross_entropy(logits, y_all[idx])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # the scaler is enabled for fp16 only
        scaler.step(opt)
        scaler.update()
        sched.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y_all[idx]).sum()
        seen += len(idx)
        bar.update(1)
    return dict(loss=loss_sum.item() / seen, train_top1=correct.item() / seen)


def train_supervised(encoder: nn.Module, feat_dim: int, train: ImageData, test: ImageData, epochs: int = 30,
                     batch_size: int = 256, lr: float = 0.1, device: DeviceLike = "auto", weight_decay: float = 5e-4,
                     momentum: float = 0.9, augment: bool = True, pad: int = 4, mean: Stats = CIFAR10_MEAN,
                     std: Stats = CIFAR10_STD, precision: str = "auto", seed: int = 0, progress: bool = True,
                     mode: str = "supervised") -> dict:
    """Train a *copy* of ``encoder`` plus a new linear classifier end to end on labelled images.

    SGD with momentum (no decay on biases/BatchNorm), per-step cosine decay to 0, normalised inputs, random crop
    (zero padding ``pad``) + flip on the device when ``augment``. With a freshly built encoder this is the
    supervised baseline; :func:`fine_tune` passes a pre-trained one (paper Table 8). The caller's encoder is
    never modified.

    Returns:
        dict with ``top1`` (test), ``train_top1`` and ``loss`` (last epoch), ``history`` (per epoch),
        ``seconds``, ``images_per_s``, ``epochs``, ``mode`` and ``model`` (the trained encoder + classifier).
    """
    _check_labelled(train, "train"), _check_labelled(test, "test")
    if epochs < 1 or batch_size < 2 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 2, lr > 0 (got {epochs}, {batch_size}, {lr})")
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = nn.Linear(feat_dim, int(max(train.labels.max(), test.labels.max())) + 1)
    model = nn.Sequential(copy.deepcopy(encoder), nn.Flatten(1), clf).to(dev).train()
    opt = build_optimizer(model, "sgd", lr, weight_decay, momentum)
    steps = max(1, len(train) // batch_size)
    sched, amp = build_scheduler(opt, epochs * steps, 0), resolve_precision(precision, dev)
    x_all, y_all, gen = train.images.to(dev), train.labels.to(dev), torch.Generator(dev).manual_seed(seed)
    scaler, stats, history, t0 = make_grad_scaler(dev, amp), _check_stats(mean, std), [], time.perf_counter()
    with tqdm(total=epochs * steps, desc=mode, disable=not progress) as bar:
        for epoch in range(epochs):
            rec = _train_epoch(model, x_all, y_all, opt, sched, scaler, stats, batch_size,
                               pad if augment else None, amp, gen, bar)
            history.append(dict(epoch=epoch + 1, lr=opt.param_groups[0]["lr"], **rec))
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_top1']:.3f}")
    seconds = time.perf_counter() - t0
    logits = extract_features(model, test.images, mean, std, device=dev, autocast_dtype=amp)  # M x K
    return dict(top1=(logits.argmax(1) == test.labels.cpu()).float().mean().item(), train_top1=rec["train_top1"],
                loss=rec["loss"], history=history, seconds=seconds, epochs=epochs, mode=mode,
                images_per_s=epochs * min(len(train), steps * batch_size) / seconds, model=model)


def fine_tune(encoder: nn.Module, feat_dim: int, train: ImageData, test: ImageData, epochs: int = 30,
              batch_size: int = 256, lr: float = 0.05, **kwargs) -> dict:
    """Fine-tune a copy of a pre-trained encoder with a new linear classifier (paper Table 8, "fine-tuned").

    :func:`train_supervised` with a smaller default peak learning rate; same keyword arguments and result.
    """
    return train_supervised(encoder, feat_dim, train, test, epochs, batch_size, lr, mode="fine_tune", **kwargs)


def evaluate_encoder(encoder: nn.Module, train: ImageData, test: ImageData, mean: Stats, std: Stats,
                     device: DeviceLike = None, knn_k: int = 200, probe_backend: str = "torch",
                     batch_size: int = 512, progress: bool = False) -> dict:
    """Linear-probe and kNN top-1 of the frozen encoder's h (``knn_k`` capped at the train size).

    Returns:
        dict with ``linear_top1``, ``linear_train_top1``, ``knn_top1``, ``feat_dim``, ``n_train``, ``n_test``
        and the seconds spent extracting, probing and voting.
    """
    _check_labelled(train, "train"), _check_labelled(test, "test")
    t0 = time.perf_counter()
    ftr, fte = (extract_features(encoder, d.images, mean, std, batch_size, device, progress=progress)
                for d in (train, test))
    t1 = time.perf_counter()
    dev = module_device(encoder)
    probe = linear_probe(ftr, train.labels, fte, test.labels, backend=probe_backend, device=dev)
    t2 = time.perf_counter()
    knn = knn_accuracy(ftr, train.labels, fte, test.labels, k=min(knn_k, len(ftr)), device=dev)
    return dict(linear_top1=probe["top1"], linear_train_top1=probe["train_top1"], knn_top1=knn,
                feat_dim=ftr.shape[1], n_train=len(ftr), n_test=len(fte), extract_seconds=t1 - t0,
                probe_seconds=t2 - t1, knn_seconds=time.perf_counter() - t2)


# ---------------------------------------------------------------------------------------------------------------
# Checks and reports
# ---------------------------------------------------------------------------------------------------------------
def state_snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer (``state_dict``), to compare with :func:`changed_state`.

    Shape:
        {name: tensor of the entry's shape}.
    """
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed_state(before: dict[str, torch.Tensor], module: nn.Module) -> list[str]:
    """Names of the ``state_dict`` entries of ``module`` that are not bit-identical to ``before``.

    BatchNorm running statistics change under a train-mode forward pass, even inside ``no_grad``; the linear
    evaluation protocol (Sec. 4) needs the encoder frozen, which :func:`extract_features` guarantees.
    """
    now = module.state_dict()
    if set(now) != set(before):
        raise ValueError("the snapshot and the module have different entries; snapshot this module first")
    return [k for k, v in now.items() if v.shape != before[k].shape or not torch.equal(v, before[k].to(v.device))]


def results_table(rows: Sequence[dict], columns: Sequence[str], digits: int = 3) -> str:
    """A Markdown table of ``rows`` (floats rounded to ``digits``), e.g. for ``IPython.display.Markdown``.

    Shape:
        len(rows) dicts -> a string of len(rows) + 2 lines.
    """
    def cell(v) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
