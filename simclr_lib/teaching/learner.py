"""The learner's SimCLR: the augmentation (notebook 01), the loss (02) and the training step (03) they wrote are
what notebook 03's loop trains the model with.

``keep(my_transform)`` (01), ``keep(my_nt_xent)`` (02) write a function that passes its checker to ``my_simclr/``
in the working folder, with the imports it needs; ``collect()`` (03) imports them back, checks them again and
returns them, with the library's reference for each piece that is missing or fails (one loud line says which).
On Colab every notebook is a fresh machine: ``my_simclr/`` is empty there unless 01 and 02 ran in the same
runtime, so 03 trains with the references for those pieces and says so.

:func:`train_simclr` is the whole training loop of the paper's Algorithm 1, planned in time
(:class:`simclr_lib.runs.budget.TimeBudget`), with the kNN monitor at epoch 0 (random init) and after each epoch.
``train.pretrain`` is the same loop, hardened for long runs (resume, the run lock, mixed precision, torchrun).
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from simclr_lib import __version__, augment
from simclr_lib.config import SimCLRConfig
from simclr_lib.data import ImageData, epoch_order
from simclr_lib.loss import nt_xent
from simclr_lib.optim import build_optimizer
from simclr_lib.runs.budget import TimeBudget
from simclr_lib.runs.checkpoint import save_checkpoint
from simclr_lib.runs.lock import open_run
from simclr_lib.runs.paths import RunPaths
from simclr_lib.runs.recorder import LOG_EVERY, knn_monitor
from simclr_lib.runtime import atomic_write_text
from simclr_lib.teaching import exercises

FOLDER = Path("my_simclr")  # in the working folder (the notebooks' folder in Jupyter and on Colab)
HEADER = ('"""Written by simclr_lib.teaching.learner.keep: your {name} from notebook {nb}, which passed {check}."""\n'
          "import math\n\nimport torch\nimport torch.nn.functional as F\nimport torchvision.transforms as T\n\n"
          "from simclr_lib import augment\nfrom simclr_lib.loss import nt_xent\n\n\n")


@dataclass(frozen=True)
class Piece:
    """One piece of SimCLR a learner writes: its file in ``my_simclr/``, its function, notebook and checker."""
    file: str
    function: str
    notebook: str
    check: Callable[[Callable], Any]


PIECES = {"augmentation": Piece("augmentation", "my_transform", "01", exercises.check_augmentation_pipeline),
          "loss": Piece("loss", "my_nt_xent", "02", exercises.check_nt_xent),
          "step": Piece("step", "my_train_step", "03", exercises.check_train_step)}


def passes(piece: Piece, fn: Callable) -> tuple[bool, str]:
    """Run ``piece``'s checker on ``fn`` without printing; (passed, the checker's verdict or error line)."""
    try:
        verdict = piece.check(fn)
    except Exception as e:  # a crash in the learner's code
        return False, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return bool(verdict), str(verdict)


def keep(fn: Callable, folder: Path = FOLDER) -> bool:
    """Write the learner's ``fn`` (``my_transform``, ``my_nt_xent`` or ``my_train_step``) to ``folder`` when it
    passes its checker, so that notebook 03 trains with it; print one line saying what happened.

    Returns:
        True when kept.
    """
    piece = next((p for p in PIECES.values() if p.function == fn.__name__), None)
    if piece is None:
        raise ValueError(f"keep() takes one of {', '.join(p.function for p in PIECES.values())}, not {fn.__name__}")
    ok, why = passes(piece, fn)
    if not ok:
        print(f"not kept: {piece.function} does not pass its checker yet ({why}); notebook 03 will train with the "
              "library's reference instead")
        return False
    folder.mkdir(exist_ok=True)
    path = folder / f"{piece.file}.py"
    header = HEADER.format(name=piece.function, nb=piece.notebook, check=piece.check.__name__)
    atomic_write_text(header + inspect.getsource(fn), path)
    print(f"kept: your {piece.function} is in {path}; notebook 03 trains the model with it")
    return True


def _load(piece: Piece, folder: Path) -> tuple[Optional[Callable], str]:
    """The learner's function of ``piece`` from ``folder`` if it is there, imports and passes; else (None, why)."""
    path = folder / f"{piece.file}.py"
    if not path.is_file():
        return None, f"{path} not found: run notebook {piece.notebook}'s exercise in this folder (and runtime)"
    try:
        spec = importlib.util.spec_from_file_location(f"my_simclr_{piece.file}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = getattr(module, piece.function)
    except Exception as e:  # whatever the learner's file does wrong, the reference takes over
        return None, f"{path} could not be imported ({type(e).__name__}: {e})"
    ok, why = passes(piece, fn)
    return (fn, str(path)) if ok else (None, f"{path} does not pass its checker ({why})")


@dataclass
class Pieces:
    """What trains the model in notebook 03: views from a batch, the loss and the step; and whose each one is."""
    make_views: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    loss_fn: Callable[[torch.Tensor, float], torch.Tensor]
    step_fn: Callable[..., torch.Tensor]
    whose: dict[str, str] = field(default_factory=dict)


def reference_step(model: torch.nn.Module, views: torch.Tensor, optimizer: torch.optim.Optimizer,
                   loss_fn: Callable = nt_xent, temperature: float = 0.5) -> torch.Tensor:
    """The library's answer to notebook 03's step exercise: z = g(f(views)), the loss, backward, optimiser step.

    Shape:
        views: (2B, 3, S, S) view-major -> loss ().

    Paper: Algorithm 1. Taught in notebook 03.
    """
    _, z = model(views)
    loss = loss_fn(z, temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def per_image_views(transform: Callable, images: torch.Tensor, n_views: int = 2) -> torch.Tensor:
    """``n_views`` views of every image by a per-image torchvision pipeline (the learner's, notebook 01), fed PIL
    images as a torchvision data set would; view-major, float in [0, 1], on the images' device.

    Shape:
        images: (B, 3, H, W) uint8 -> (n_views * B, 3, S, S) float32.

    Taught in notebook 03.
    """
    from PIL import Image

    pil = [Image.fromarray(im.permute(1, 2, 0).cpu().numpy()) for im in images]
    views = augment.augment_per_image(pil, n_views, transform)
    return (views.float() / 255 if views.dtype == torch.uint8 else views).to(images.device)


def collect(cfg: SimCLRConfig, device: torch.device, step_fn: Optional[Callable] = None,
            folder: Path = FOLDER) -> Pieces:
    """The learner's pieces where they pass their checkers, the library's references otherwise; prints one loud
    line per piece. ``step_fn`` is notebook 03's own ``my_train_step`` (defined in the same notebook).

    Taught in notebook 03.
    """
    transform_fn, aug_why = _load(PIECES["augmentation"], folder)
    if transform_fn is not None:
        transform = transform_fn(cfg.image_size, cfg.color_strength)
        make_views = lambda batch, gen: per_image_views(transform, batch, cfg.n_views)  # noqa: E731 (torch's RNG)
    else:
        aug = augment.SimCLRAugment.from_config(cfg).to(device)
        make_views = lambda batch, gen: augment.make_views(batch, aug, cfg.n_views, gen)  # noqa: E731
    loss_fn, loss_why = _load(PIECES["loss"], folder)
    if loss_fn is not None and device.type != "cpu":  # the checker ran on the CPU; training runs on the device
        try:
            loss_fn(torch.randn(8, 4, device=device), cfg.temperature)
        except Exception as e:
            loss_fn, loss_why = None, f"your loss fails on {device} ({type(e).__name__}): make tensors on z.device"
    step_ok, step_why = passes(PIECES["step"], step_fn) if step_fn is not None else (False, "none given")
    step_why = "my_train_step, above" if step_ok else f"my_train_step does not pass its checker: {step_why}"
    rows = [("augmentation", transform_fn is not None, aug_why, "batched SimCLRAugment"),
            ("loss", loss_fn is not None, loss_why, "nt_xent"), ("step", step_ok, step_why, "reference_step")]
    whose = {name: ("YOURS" if ok else f"the library's {ref}") for name, ok, _, ref in rows}
    for name, ok, why, _ in rows:
        print(f"{name:>12}: {whose[name]} ({why})")
    return Pieces(make_views, loss_fn or nt_xent, step_fn if step_ok else reference_step, whose)


def train_simclr(model: torch.nn.Module, images: torch.Tensor, pieces: Pieces, cfg: SimCLRConfig,
                 monitor: tuple[ImageData, ImageData], minutes: float) -> list[dict]:
    """Algorithm 1 in ``minutes``: epoch order -> views -> step (z, loss, backward, LARS) -> schedule, with the kNN
    monitor at epoch 0 (random init) and after every epoch; the cosine follows the time used (``TimeBudget``).

    Shape:
        images: (N, 3, H, W) uint8 on the model's device; batches of ``cfg.batch_size`` images, 2B views.

    Paper: Algorithm 1, Sec. 2.2 (LARS, warm-up + cosine). Taught in notebook 03.
    """
    opt = build_optimizer(model, cfg.optimizer, cfg.peak_lr(), cfg.weight_decay, cfg.momentum, cfg.lars_eta)
    per_epoch = len(images) // cfg.batch_size  # steps; the last partial batch is dropped
    budget = TimeBudget()
    schedule = budget.scheduler(opt, 60 * minutes, cfg.epochs * per_epoch, round(cfg.warmup_epochs * per_epoch),
                                per_epoch)
    t0 = time.perf_counter()
    budget.start(0)  # the minutes include every kNN monitor
    history = [dict(epoch=0, step=0, seconds=0.0, knn_top1=knn_monitor(model, monitor, cfg))]  # random init
    torch.manual_seed(cfg.seed)  # a per-image torchvision pipeline draws from torch's generator
    gen, step = torch.Generator(images.device).manual_seed(cfg.seed), 0
    for epoch in range(1, cfg.epochs + 1):
        budget.epoch_started(step)
        model.train()
        for batch in epoch_order(len(images), cfg.batch_size, epoch, cfg.seed, device=images.device):
            views = pieces.make_views(images[batch], gen)  # 2B x 3 x S x S in [0, 1]
            loss = pieces.step_fn(model, views, opt, pieces.loss_fn, cfg.temperature)
            schedule.step()
            step += 1
            if step % LOG_EVERY == 0:  # the logging sync: the host waits for the device here only
                loss.item(), budget.replan(step)  # re-plan the rest of the cosine from the measured step time
            if budget.done(step):
                break
        budget.epoch_ended()
        history.append(dict(epoch=epoch, step=step, seconds=time.perf_counter() - t0, loss=loss.item(),
                            lr=opt.param_groups[0]["lr"], knn_top1=knn_monitor(model, monitor, cfg)))
        if budget.done(step):
            break
    return history


def write_run(history: list[dict], cfg: SimCLRConfig, pieces: Pieces, out_dir: Path,
              model: Optional[torch.nn.Module] = None) -> Path:
    """A :func:`train_simclr` run's folder, in the layout ``train.pretrain`` writes, under the folder's lock:
    config.json, metrics.json (``{"metrics": last record + totals, "history": [...]}``) and, given the ``model``,
    a checkpoint with its weights, config and history (``simclr_lib.pretrained(out_dir)`` loads it; notebooks
    04-06 study it with ``SIMCLR_OWN=1``). Returns metrics.json."""
    paths = RunPaths(out_dir)
    with open_run(out_dir, overwrite=True):
        atomic_write_text(json.dumps(cfg.to_dict(), indent=2), paths.config)
        metrics = dict(history[-1], epochs_run=len(history) - 1, total_seconds=history[-1]["seconds"],
                       pieces=pieces.whose, seed=cfg.seed, version=__version__)
        atomic_write_text(json.dumps(dict(metrics=metrics, history=history), indent=2), paths.metrics)
        if model is not None:
            save_checkpoint(dict(model=model.state_dict(), config=cfg.to_dict(), history=history,
                                 epoch=len(history) - 1, step=history[-1]["step"], version=__version__),
                            paths.checkpoint)
    return paths.metrics
