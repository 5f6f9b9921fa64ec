"""Evaluating representations: the paper's linear evaluation protocol, kNN, label fractions, fine-tuning.

* :func:`features` computes h = f(x) (or z = g(h)) of a model in eval mode under ``no_grad``, batched on its
  device: BatchNorm uses and keeps its running statistics, and every module's train/eval flag is restored
  afterwards. Every evaluator, the kNN monitor, the CLI, the quickstart, the experiments and the notebooks call it.
* :func:`linear_probe` is multinomial logistic regression on frozen, standardised features (Chen et al. 2020,
  Sec. 4 "linear evaluation protocol"; the L2-regularised L-BFGS fit of App. B.8). The torch and scikit-learn
  backends minimise the *same* objective, ``mean CE + ||W||^2 / (2 C N)``, so they agree up to solver tolerance.
* :func:`knn_accuracy` is the weighted kNN monitor of InstDisc (Wu et al. 2018): votes ``exp(cos / T)``.
* :func:`label_fraction_sweep` probes with 1 % / 10 % / 100 % of the labels (class-balanced, C chosen on a held-out
  part of each subset; cf. Sec. 4 Table 7, which fine-tunes; here the cheaper linear probe).
* The supervised baseline and fine-tuning (Table 8) train end to end: ``finetune.py``.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from simclr_lib.augment import to_float
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import ImageData, balanced_indices
from simclr_lib.models import SimCLRModel
from simclr_lib.runtime import autocast_context, resolve_device

DeviceLike = Union[str, torch.device, None]
PROBE_BACKENDS = ("torch", "sklearn")
FEATURE_SPACES = ("h", "z")  # the representation h = f(x) and the projection z = g(h) (Sec. 4.2)


# ---------------------------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def evaluation_mode(*modules: Optional[nn.Module]) -> Iterator[None]:
    """``eval()`` inside the block; afterwards every submodule gets its own previous ``training`` flag back.

    Taught in notebook 04 (the BatchNorm trap of evaluating in train mode).
    """
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
    """The device of the module's first parameter or buffer (CPU for a module without any).

    Taught in notebook 04.
    """
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


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor (N, 3, H, W) such as ImageData.images, got {got}")
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one image")


def _encoder_and_head(model: nn.Module, space: str) -> tuple[nn.Module, Optional[nn.Module]]:
    if space not in FEATURE_SPACES:
        raise ValueError(f"space={space!r} is unknown; choose one of {', '.join(FEATURE_SPACES)}")
    if isinstance(model, SimCLRModel):
        return model.encoder, model.head if space == "z" else None
    if space == "z":
        raise ValueError("space='z' needs a SimCLRModel (its head g); pass the model, not model.encoder")
    return model, None


def features(model: nn.Module, images: torch.Tensor, space: str = "h", batch_size: int = 512,
             device: DeviceLike = None, progress: bool = False,
             autocast_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Frozen features of every image: h = f(x), or z = g(h) with ``space="z"`` (Sec. 4.2), in eval mode.

    Taught in notebook 04 (linear evaluation) and used by every evaluator of the series.

    Args:
        model: a ``SimCLRModel``, or any module that maps [0, 1] images to vectors (an encoder; a classifier, whose
            output is its logits). Models normalise their own input (``models.Normalize``).
        images: uint8 images on any device; they move to the model's device one batch at a time.
        space: "h" (the encoder's representation) or "z" (the projection; a ``SimCLRModel`` only).
        device: only checks that the model is there (move it first).
        autocast_dtype: e.g. ``torch.bfloat16`` on a GPU; None computes in fp32.

    Shape:
        images: (N, 3, H, W) uint8 -> (N, D) float32 on the CPU.
    """
    _check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    encoder, head = _encoder_and_head(model, space)
    dev = _check_device(model, device)
    out = []
    with evaluation_mode(model), torch.no_grad(), autocast_context(dev, autocast_dtype):
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            h = encoder(to_float(images[start:start + batch_size].to(dev, non_blocking=True)))  # B x D
            if isinstance(h, (tuple, list)):
                raise ValueError("the module returned a tuple; pass a SimCLRModel or an encoder")
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

    Taught in notebook 04.
    """
    mu, sd = train_x.mean(0), train_x.std(0, unbiased=False)  # D, D
    sd = torch.where(sd > 1e-6 * sd.max().clamp_min(1e-12), sd, torch.ones_like(sd))
    return (train_x - mu) / sd, (test_x - mu) / sd


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float,
                            max_iter: int = 1000, tol: float = 1e-4) -> tuple[nn.Linear, int]:
    """Full-batch L-BFGS (strong Wolfe) on ``mean CE + ||W||^2 / (2 C N)``; returns the classifier, iterations.

    The torch backend of :func:`linear_probe` (App. B.8). Taught in notebook 04.

    Shape:
        x: (N, D) standardised features, y: (N,) -> Linear(D, num_classes).
    """
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

    Taught in notebook 04.
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
        clf, n_iter = fit_logistic_regression(xtr, ytr, int(max(ytr.max(), yte.max())) + 1, C, max_iter, tol)
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

    Taught in notebook 04.
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
    """:func:`linear_probe` with both backends on the same features, plus their gap in accuracy points.

    Taught in notebook 04.
    """
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

    Taught in notebook 04.

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
    """Top-1 accuracy of :func:`knn_predict` (k = 200, T = 0.1: the InstDisc monitor). Shape: as knn_predict.

    Taught in notebook 04 (used in 05).
    """
    _, yte = _check_xy(test_x, test_y, "test")
    pred = knn_predict(train_x, train_y, test_x, k, temperature, weighted, **kwargs)
    return (pred == yte.cpu()).float().mean().item()


def random_init_model(cfg: SimCLRConfig, seed: Optional[int] = None, device: DeviceLike = None) -> SimCLRModel:
    """The model of ``cfg`` never trained (seeded with ``seed``, default ``cfg.seed``), in eval mode: the floor every
    result is reported beside, built the same way everywhere.

    Taught in notebook 04.
    """
    torch.manual_seed(cfg.seed if seed is None else seed)
    return build_model(cfg).to(resolve_device(device) if device is not None else "cpu").eval()


def evaluate_frozen(model: nn.Module, train: ImageData, test: ImageData, spaces: Sequence[str] = ("h",),
                    scores: Sequence[str] = ("probe", "knn"), knn_k: int = 200,
                    C: Union[float, Sequence[float]] = 1.0, device: DeviceLike = None) -> dict:
    """Top-1 accuracies (fractions) of a frozen encoder: a linear probe fitted on ``train``'s features and a cosine
    kNN classifier against them, scored on ``test``, for each feature space (h, z = g(h); Sec. 4.2).

    The one evaluation of a frozen encoder: the kNN monitor of a run, the quickstart, the experiments, the CLI and
    the benchmarks call it for the trained model and for :func:`random_init_model` of the same config. The probe
    and the kNN vote run on ``device`` (None: where the features are, the CPU), e.g. the GPU of a long run.

    Shape:
        returns ``{"probe_h": float, "knn_h": float, ...}`` (keys ``<score>_<space>``), plus ``"probe_h_result"``
        (:func:`linear_probe`'s dict) and ``"test_features_h"`` (M, D) for each space.

    Taught in notebook 04.
    """
    out: dict = {}
    for space in spaces:
        ftr, fte = features(model, train.images, space), features(model, test.images, space)
        if "probe" in scores:
            res = linear_probe(ftr, train.labels, fte, test.labels, C=C, device=device)
            out[f"probe_{space}"], out[f"probe_{space}_result"] = res["top1"], res
        if "knn" in scores:
            out[f"knn_{space}"] = knn_accuracy(ftr, train.labels, fte, test.labels, k=min(knn_k, len(ftr)),
                                               device=device)
        out[f"test_features_{space}"] = fte
    return out


def label_fraction_sweep(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                         fractions: Sequence[float] = (0.01, 0.1, 1.0), per_class: Optional[Sequence[int]] = None,
                         C: Union[float, Sequence[float]] = (0.01, 0.1, 1.0), seed: int = 0, backend: str = "torch",
                         progress: bool = False, **probe_kwargs) -> list[dict]:
    """Linear probe trained on class-balanced subsets of the labels (``fractions``, or ``per_class`` counts).

    Each subset chooses its own ``C`` among the sequence ``C`` on a class-balanced held-out 20 % of *that subset*
    (:func:`select_C`, split with ``seed``), then refits on the whole subset: no setting is chosen on the test set
    or on labels the subset does not have. A single float skips the choice.

    Returns one dict per setting: ``fraction`` or ``per_class``, ``n_labels`` and :func:`linear_probe`'s keys
    (``C``: the chosen value; ``C_val_top1``: ``[[C, validation top-1], ...]``).

    Shape:
        train_x: (N, D), train_y: (N,), test_x: (M, D), test_y: (M,) -> one dict per setting.

    Taught in notebook 04.
    """
    settings = [("per_class", n) for n in per_class] if per_class is not None else [("fraction", f) for f in fractions]
    rows = []
    for key, value in tqdm(settings, desc="label fractions", disable=not progress):
        idx = balanced_indices(train_y, seed=seed, **{key: value})
        res = linear_probe(train_x[idx], torch.as_tensor(train_y)[idx], test_x, test_y, backend, C=C, seed=seed,
                           **probe_kwargs)
        rows.append({key: value, "n_labels": len(idx), **res})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Checks and reports
# ---------------------------------------------------------------------------------------------------------------
def state_snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer (``state_dict``), to compare with :func:`changed_state`.

    Shape:
        {name: tensor of the entry's shape}.

    Taught in notebook 04.
    """
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed_state(before: dict[str, torch.Tensor], module: nn.Module) -> list[str]:
    """Names of the ``state_dict`` entries of ``module`` that are not bit-identical to ``before``.

    BatchNorm running statistics change under a train-mode forward pass, even inside ``no_grad``; the linear
    evaluation protocol (Sec. 4) needs the encoder frozen, which :func:`features` guarantees.

    Taught in notebook 04.
    """
    now = module.state_dict()
    if set(now) != set(before):
        raise ValueError("the snapshot and the module have different entries; snapshot this module first")
    return [k for k, v in now.items() if v.shape != before[k].shape or not torch.equal(v, before[k].to(v.device))]
