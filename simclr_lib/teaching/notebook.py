"""What every notebook of the series shares: the scale switch, data with an offline fallback, the shared run.

One switch sets the scale: ``SIMCLR_SMOKE=1`` (CI: seconds; also yes/true/on, while 0/no/false/off/empty mean
no), the default CPU-sized ``quick`` run, or ``full`` on a GPU (chosen automatically when CUDA is present, or
forced with ``SIMCLR_MODE=full``; both variables are case-insensitive). Training is planned in minutes
(``SERIES_MINUTES``). Notebook 03's loop trains the series' model with the learner's own pieces and writes it to
``runs/notebooks/<mode>/`` (``SIMCLR_RUNS_DIR`` moves ``runs/``). On CIFAR-10 in quick mode (and in full mode
without that checkpoint) notebooks 02 and 04-06 study the shipped CPU encoder (``simclr_lib.pretrained(
"small-cifar10")``, 1.5 hours of training on all 50,000 images) unless ``SIMCLR_OWN=1``; otherwise they load the
series' model, or train it first with ``train.pretrain`` for the same minutes, so each notebook also runs alone.
"""
from __future__ import annotations

import os
import pickle
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from simclr_lib.config import SERIES_RECIPE, SimCLRConfig
from simclr_lib.data import ImageData, load_dataset, resolve_data_dir
from simclr_lib.runs.paths import RunPaths
from simclr_lib.runs.registry import REPO_URL  # noqa: F401  (the notebooks' badges and install cells)
from simclr_lib.runs.registry import pretrained as load_model
from simclr_lib.runtime import project_root, resolve_device  # noqa: F401 (project_root: notebook 06)

MODES = ("smoke", "quick", "full", "paper")  # paper: only when asked for (SIMCLR_MODE=paper), hours
TRUE_WORDS, FALSE_WORDS = ("1", "yes", "true", "on"), ("", "0", "no", "false", "off")
CIFAR_HOST = "www.cs.toronto.edu"  # where torchvision downloads CIFAR-10 from
SYNTHETIC_NOTICE = ("NOTE: CIFAR-10 is not available ({why}), so this notebook runs on the synthetic 'shapes' set: "
                    "its numbers and pictures are NOT CIFAR-10's. Put CIFAR-10 under {where} or allow the download "
                    "(SIMCLR_DOWNLOAD=1).")


def env_flag(name: str, yes: str, no: str) -> Optional[bool]:
    """The environment variable ``name`` as a yes/no value (any case): True for 1/yes/true/on, False for
    0/no/false/off, None when unset or empty.

    Raises:
        ValueError: for any other value, in one line that says what ``yes`` and ``no`` do.
    """
    value = os.environ.get(name, "")
    word = value.strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(f"{name}={value!r} is not a yes/no value; use 1/yes/true/on {yes}, 0/no/false/off {no}")


def env_smoke() -> bool:
    """``SIMCLR_SMOKE`` as a bool: 1/yes/true/on are True, unset/empty/0/no/false/off False (:func:`env_flag`)."""
    return bool(env_flag("SIMCLR_SMOKE", "for smoke", "(or leave it unset) for not"))


def resolve_mode(smoke: Optional[bool] = None, mode: Optional[str] = None) -> str:
    """``smoke`` if ``smoke=True`` (None: SIMCLR_SMOKE, see :func:`env_smoke`), else ``mode`` or SIMCLR_MODE (any
    case), else ``full`` on CUDA, else ``quick``."""
    if smoke if smoke is not None else env_smoke():
        return "smoke"
    mode = mode or os.environ.get("SIMCLR_MODE")
    if mode:
        if mode.strip().lower() not in MODES:
            raise ValueError(f"SIMCLR_MODE={mode!r} is unknown; choose one of {', '.join(MODES)} (any case)")
        return mode.strip().lower()
    return "full" if torch.cuda.is_available() else "quick"


@dataclass
class Setup:
    mode: str  # smoke | quick | full | paper
    device: torch.device
    data_dir: Optional[str]
    dataset: str  # cifar10 when found (or downloadable), else shapes
    run_dir: Path  # where notebook 03's run (and its checkpoint) lives
    download: bool = False  # may a missing CIFAR-10 be downloaded (:func:`download_wanted`)

    def pick(self, smoke: Any, quick: Any, full: Any, paper: Any = None) -> Any:
        """The value for this mode: ``setup.pick(smoke=64, quick=1000, full=10000)`` (paper: ``full``'s unless
        given)."""
        return {"smoke": smoke, "quick": quick, "full": full, "paper": full if paper is None else paper}[self.mode]

    @property
    def runs(self) -> Path:
        """The runs folder of this setup (``runs/``, or ``SIMCLR_RUNS_DIR``): notebook 03's run, 06's experiments."""
        return self.run_dir.parents[1]

    @property
    def checkpoint(self) -> Path:
        return RunPaths(self.run_dir).checkpoint

    def load(self, split: str = "test", n: Optional[int] = None) -> ImageData:
        """The first ``n`` images of ``split`` of this setup's data set."""
        return load_dataset(self.dataset, split, self.data_dir, subset=n, progress=False,
                            download=self.dataset == "cifar10" and self.download)


def rel(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it (stored notebook outputs carry no local paths)."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def download_wanted(mode: str) -> bool:
    """May a missing CIFAR-10 be downloaded? ``SIMCLR_DOWNLOAD`` (1/yes or 0/no) decides when set; otherwise yes
    wherever the network reaches :data:`CIFAR_HOST` (Colab, a local JupyterLab with internet), never in smoke
    mode (CI: seconds, offline)."""
    wanted = env_flag("SIMCLR_DOWNLOAD", "to download a missing CIFAR-10", "to never download")
    if wanted is not None:
        return wanted
    return mode != "smoke" and _reachable(CIFAR_HOST)


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def setup(smoke: Optional[bool] = None, data_dir: Optional[str] = None, mode: Optional[str] = None) -> Setup:
    """Resolve mode, device, data set and the shared run directory, and print them in one line."""
    # without ipywidgets tqdm.auto falls back to text bars and warns with the local path of its install
    warnings.filterwarnings("ignore", message="IProgress not found")
    m = resolve_mode(smoke, mode)
    data_dir = str(resolve_data_dir(data_dir or None))
    device = resolve_device("auto")
    from simclr_lib.data import find_dataset

    dataset, why = find_dataset(data_dir)
    download = dataset != "cifar10" and download_wanted(m)  # the network is asked only when CIFAR-10 is missing
    if download:
        dataset, why = find_dataset(data_dir, download=True)
    runs = Path(os.environ.get("SIMCLR_RUNS_DIR") or project_root() / "runs")  # tests give each notebook its own
    s = Setup(m, device, data_dir, dataset, runs / "notebooks" / m, download)
    print(f"mode={m} device={device} dataset={dataset} run_dir={rel(s.run_dir)}")
    if dataset == "shapes":
        print(SYNTHETIC_NOTICE.format(why=why, where=rel(Path(data_dir))))
    return s


SERIES_MINUTES = dict(smoke=0.2, quick=4.5, full=4.5, paper=None)  # how long notebook 03 (and 07's pretrain run)
# trains; paper scale is planned in epochs (PAPER_SERIES) and its estimated time is printed first (plan_minutes)
SERIES_QUICK = dict(epochs=100, subset=None, batch_size=64, **SERIES_RECIPE)
# the series' CPU run, planned in SERIES_MINUTES (epochs is only a cap): chosen on a validation split for the gain
# of notebook 03's kNN monitor over random init in 4 minutes (benchmarks/sweep_learner_loop.py, docs/results.md).
# It departs from the paper's CIFAR-10 recipe (tau 0.5, lr 0.075 sqrt(B), ResNet-50, batch 512-4096, hundreds of
# epochs) because a few minutes on a CPU is short training: a low tau and a small, fast encoder learn faster there
# (App. B.9 finds tau 0.5 best only beyond 300 epochs). The crops stay App. A's 8-100 % (notebook 01's exercise).


PAPER_SERIES = dict(arch="resnet18", batch_size=512, epochs=500, temperature=0.5, optimizer="lars", warmup_epochs=10,
                    knn_every=10, checkpoint_every=10)
# paper scale, asked for on purpose: App. B.9's CIFAR-10 recipe (LARS, lr 0.075 sqrt(B), tau 0.5 beyond 300 epochs,
# crops 8-100 %, colour 0.5) with ResNet-18 instead of ResNet-50 (dkobak/simclr-cifar10: 500 epochs reach ~90 % kNN)


def series_config(s: Setup, **overrides: Any) -> SimCLRConfig:
    """The configuration of the series' pre-training run (notebooks 03 and 07) for this setup's mode: smoke
    (seconds), quick (``SERIES_QUICK`` for ``SERIES_MINUTES`` on a CPU), full (ResNet-18 for the same minutes
    on a GPU), paper (``PAPER_SERIES``, planned in epochs: hours). ``minutes`` plans the run in time
    (``runs.budget``); ``epochs`` is then a cap."""
    common = dict(dataset=s.dataset, data_dir=s.data_dir, out_dir=str(s.run_dir), minutes=SERIES_MINUTES[s.mode])
    if s.mode == "smoke":
        return SimCLRConfig.smoke(**{**common, **overrides})
    if s.mode == "quick":
        return SimCLRConfig.quick(**{**common, **SERIES_QUICK, **overrides})
    if s.mode == "paper":
        return SimCLRConfig(**{**common, **PAPER_SERIES, **overrides})
    full = dict(arch="resnet18", batch_size=512, epochs=100, knn_every=1, optimizer="lars", temperature=0.2,
                checkpoint_every=10)  # one GPU, planned in the same minutes (not measured: docs/results.md)
    return SimCLRConfig(**{**common, **full, **overrides})


def estimate_minutes(cfg: SimCLRConfig, data: Optional[ImageData] = None) -> float:
    """Minutes ``cfg``'s training would take here: its steps (epochs x full batches) at the seconds per step
    measured on this device (``quickstart.calibrate``: a few real steps of the same model, optimiser and
    augmentation), without the monitor and checkpoints."""
    from simclr_lib.cli.quickstart import calibrate
    from simclr_lib.config import load_pretrain_data

    data = data if data is not None else load_pretrain_data(cfg)
    s_per_step = calibrate(cfg, data)[0]
    return cfg.epochs * (len(data) // cfg.batch_size) * s_per_step / 60


def plan_minutes(cfg: SimCLRConfig, data: Optional[ImageData] = None, runs: int = 1) -> float:
    """The minutes a training cell may use: ``cfg.minutes`` when the scale is planned in time; at paper scale
    (planned in epochs) the estimate of ``runs`` runs is printed first, and the budget left open beyond it
    (twice the estimate), so the epochs end the run and the schedule is the epochs' cosine."""
    if cfg.minutes is not None:
        return cfg.minutes
    each = estimate_minutes(cfg, data)
    print(f"paper scale: {runs} x {cfg.epochs} epochs of {cfg.arch} at batch {cfg.batch_size}, estimated "
          f"{runs * each / 60:.1f} hours on {resolve_device(cfg.device)} (measured over a few steps); "
          "stop the cell any time (notebook 07's pretrain resumes a stopped run)")
    return 2 * each


SHIPPED = "small-cifar10"  # the shipped CPU encoder that notebooks 04-06 study in quick mode


def use_shipped(s: Setup) -> bool:
    """True when notebooks 04-06 study the shipped encoder instead of notebook 03's run: CIFAR-10, ``SIMCLR_OWN``
    not set to yes (``SIMCLR_OWN=1`` studies your own run), and quick mode, or full mode without notebook 03's
    checkpoint (Colab gives every notebook its own machine: 04-06 load instead of retraining 03's model)."""
    own = env_flag("SIMCLR_OWN", "to study your own notebook-03 run", "(or leave it unset) for the shipped encoder")
    wanted = s.mode == "quick" or (s.mode in ("full", "paper") and not s.checkpoint.is_file())
    return s.dataset == "cifar10" and not own and wanted


def shipped_run(name: str = SHIPPED) -> tuple[SimCLRConfig, list[dict]]:
    """The config and per-epoch training history of a shipped encoder (its checkpoint carries both)."""
    _, cfg, info = load_model(name, progress=False)
    return cfg, info["history"]


def series_model(s: Setup, force: bool = False, **overrides: Any):
    """The model notebooks 02 and 04-06 study: the shipped encoder where :func:`use_shipped` says so, else the
    series' run, loaded from ``s.checkpoint`` when it exists or trained now (notebook 03).

    Returns:
        (model in eval mode on ``s.device``, its SimCLRConfig, its per-epoch history)
    """
    from simclr_lib.train import pretrain

    if not force and not overrides and use_shipped(s):
        model, cfg, info = load_model(SHIPPED, map_location=s.device, progress=False)
        print(f"the shipped encoder {SHIPPED} ({info['epoch']} epochs on all 50,000 CIFAR-10 training images; "
              "SIMCLR_OWN=1 studies your own notebook-03 run instead)"
              + (", not notebook 03's ResNet-18: run 03 first to study that" if s.mode in ("full", "paper") else ""))
        return model, cfg, info["history"]
    if not force and s.checkpoint.is_file():
        print(f"loading the series' model from {rel(s.checkpoint)}")
        try:
            model, cfg, info = load_model(s.checkpoint, map_location=s.device, progress=False)
            return model, cfg, info["history"]
        except (RuntimeError, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
            aside = s.checkpoint.with_name(s.checkpoint.name + ".corrupt")
            os.replace(s.checkpoint, aside)
            reason = " ".join(str(exc).split())[:160]
            print(f"the checkpoint could not be read, so it was moved to {rel(aside)} ({type(exc).__name__}: {reason}); "
                  f"retraining the series' model now ({s.mode} mode)", flush=True)
    else:
        print(f"no checkpoint at {rel(s.checkpoint)}: training the series' model now ({s.mode} mode)")
    pretrain(series_config(s, **overrides), overwrite=True)  # no usable checkpoint: a crashed run's files go
    model, cfg, info = load_model(s.checkpoint, map_location=s.device, progress=False)
    return model, cfg, info["history"]
