"""SimCLRConfig: the one place where every knob of a run and its paper default lives.

Defaults follow Chen et al. 2020 (SimCLR), with the CIFAR-10 recipe of Appendix B.9 where the paper gives one
(3x3 stride-1 stem without max-pool, colour strength 0.5, no blur). ``SimCLRConfig.smoke()`` is the seconds-long
preset used by CI and tests; ``SimCLRConfig.quick()`` is the CPU-sized preset (the quickstart adds
``QUICKSTART_RECIPE``); ``SimCLRConfig.cpu()`` the 1.5-hour CPU run of the shipped encoder
(``simclr_lib.pretrained("small-cifar10")``).
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import math
import tokenize
from dataclasses import dataclass, field
from typing import Any, Optional

from simclr_lib.data import DATASETS, SHAPES_SIZES, ImageData, load_dataset
from simclr_lib.models import ARCHS, ProjectionHead, SimCLRModel, build_encoder
from simclr_lib.optim import LR_SCALINGS, OPTIMIZERS
from simclr_lib.runtime import PRECISIONS

# Fields of earlier versions that runs saved then may still hold; they no longer change anything.
RETIRED_FIELDS = ("augment_backend",)  # 0.1: "per_image" trained through torchvision on the CPU (removed)
# The allowed values of the fields with a fixed set of them (each list lives next to what implements it).
CHOICES = {"dataset": DATASETS, "arch": ARCHS, "optimizer": OPTIMIZERS, "lr_scaling": LR_SCALINGS,
           "precision": PRECISIONS}
# Each data set's paper defaults for the fields left at None (App. B.9 for CIFAR-10; STL-10 as ImageNet, Sec. 3,
# at 96 px with the ImageNet stem); "folder" takes them from its image size (see ``dataset_defaults``).
DATASET_DEFAULTS = {
    "cifar10": dict(image_size=32, cifar_stem=True, blur=False, color_strength=0.5),
    "shapes": dict(image_size=32, cifar_stem=True, blur=False, color_strength=0.5),
    "stl10": dict(image_size=96, cifar_stem=False, blur=True, color_strength=1.0),
}
# The CPU recipe, chosen on a validation split of the training images (benchmarks/sweep_cpu_recipe.py; the sweep
# and its commands are in docs/results.md): at batch 256 with LARS, peak lr 2.0 beat the paper's sqrt rule (1.2)
# and a smallest crop of 20 % beat the paper's 8 %; temperature 0.1 beat 0.2 and 0.5 in 100,000-image runs, but
# not in 225,000-image runs, so the 120-epoch shipped encoder keeps 0.2.
CPU_SWEPT = dict(lr=2.0, temperature=0.1, min_scale=0.2)
CPU_RECIPE = dict(CPU_SWEPT, temperature=0.2, epochs=120, warmup_epochs=10, small_width=32, small_depth=2)
# The series' CPU run (notebook 03's loop, notebook 06's quick experiments): a few minutes is short training, where a
# low tau, a small fast encoder (width 16, batch 64) and the paper's 8-100 % crops learned fastest on a validation
# split (benchmarks/sweep_learner_loop.py, docs/results.md).
SERIES_RECIPE = dict(small_width=16, temperature=0.1, lr=2.0, min_scale=0.08)
# The quickstart's run on a time budget, applied to ``SimCLRConfig.quick()`` (tau 0.1, lr 2.0, smallest crop 20 %):
# at equal time (8.2 minutes of training, fp32 on 2 CPU cores), the series' width-16 encoder at batch 64 on all the
# training images beat the width-32, batch-256, 10,000-image preset on a validation split; more steps of a smaller
# model learn more in minutes (benchmarks/sweep_quickstart_recipe.py, docs/results.md). Warm-up: 10,000 images.
# Its h is widened to 1,024 by a 1x1 conv after the last stage (``small_feat_dim``): +4.5 points of the all-labels
# probe on the validation split at equal time, for 1.4x the step time; the probe's C was chosen there too.
# It pre-trains on 24 px views (``view_size``; the probe sees the 32 px images): 0.60x the step time, and 6 epochs of
# them beat 4 epochs of 32 px views by 3.9 points there, in less time; tau 0.2, 0.5 and lr 1, 4 were no better.
QUICKSTART_RECIPE = dict(small_width=16, small_feat_dim=1024, view_size=24, batch_size=64, subset=None,
                         warmup_epochs=0.2)
QUICKSTART_PROBE_C = 0.01  # the quickstart's linear probe (both sides): best of 0.01-1 for the 1,024-d h
SMALL_IMAGE = 64  # folder images up to this side get CIFAR-10's defaults, larger ones STL-10's


def dataset_defaults(dataset: str, image_size: Optional[int] = None) -> dict[str, Any]:
    """The paper defaults of ``image_size``, ``cifar_stem``, ``blur`` and ``color_strength`` for a data set.

    For ``"folder"`` they follow the image size: CIFAR-10's up to ``SMALL_IMAGE`` px, STL-10's above (unknown
    size: only the size is left open, to be read from the images).

    Taught in notebook 03.
    """
    if dataset in DATASET_DEFAULTS:
        return dict(DATASET_DEFAULTS[dataset])
    if image_size is None:
        return dict(image_size=None, cifar_stem=None, blur=None, color_strength=None)
    like = "cifar10" if image_size <= SMALL_IMAGE else "stl10"
    return dict(DATASET_DEFAULTS[like], image_size=image_size)


@dataclass
class SimCLRConfig:
    """Every knob of a SimCLR run, each with the paper's default and a comment (the CLI's flags and help come from
    them); presets ``smoke()``, ``quick()``, ``cpu()``. Taught in notebook 03 (used in every notebook).
    """

    # --- data -------------------------------------------------------------------------------------------------
    dataset: str = "cifar10"  # the training images; "shapes" needs no file and no internet
    data_dir: Optional[str] = None  # data directory (default: $SIMCLR_DATA_DIR, else ./data)
    folder: Optional[str] = None  # image-folder path <dir>/<class>/<image> for dataset="folder"
    subset: Optional[int] = None  # use only the first N training images (default: all)
    image_size: Optional[int] = None  # side of the images and views (default: the data set's: 32 CIFAR-10, 96 STL-10)
    view_size: Optional[int] = None  # side of the pre-training views (default: image_size; smaller: a cheaper step)
    download: bool = False  # download a missing data set (CIFAR-10, STL-10; needs internet)
    skip_corrupt: bool = False  # skip images that cannot be decoded (default: stop, naming the file)
    # --- augmentation (paper Sec. 3 and Appendix A) ---------------------------------------------------------
    n_views: int = 2  # views per image; 2 is the paper's setting
    color_strength: Optional[float] = None  # s of ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) (default: 0.5 CIFAR, 1 STL-10)
    blur: Optional[bool] = None  # Gaussian blur p=0.5 (default: off for CIFAR, App. B.9; on for STL-10, ImageNet)
    min_scale: float = 0.08  # smallest RandomResizedCrop area fraction (paper: 0.08)
    gray_p: float = 0.2  # probability of turning a view greyscale (paper: 0.2)
    # --- model (paper Sec. 2.1, 4.2, B.9) -------------------------------------------------------------------
    arch: str = "resnet18"  # encoder f ("small" is the fast CPU encoder)
    small_width: int = 32  # channels of the small encoder's first stage; each later stage doubles them
    small_depth: int = 2  # conv-BN-ReLU units in each of the small encoder's last two stages
    small_feat_dim: Optional[int] = None  # size of the small encoder's h: None = its last stage, else a 1x1 conv
    cifar_stem: Optional[bool] = None  # 3x3 stride-1 conv, no max-pool (App. B.9) (default: CIFAR yes, STL-10 no)
    zero_init_residual: bool = False  # zero the last BN scale of each residual block (the reference code does)
    proj_hidden_dim: Optional[int] = None  # hidden width of g (default: the encoder's feature dim, as the paper)
    proj_out_dim: int = 128  # dimension of z (paper: 128)
    proj_layers: int = 2  # linear layers in g (paper: 2, i.e. one hidden layer)
    proj_last_bn: bool = False  # BatchNorm (scale, no shift) after g's last layer, as SimCLR v1's reference code
    # --- loss (paper Sec. 2.1, Eq. 1) ----------------------------------------------------------------------
    temperature: float = 0.5  # tau > 0 of NT-Xent; 0.5 is best for CIFAR-10 (App. B.9, Fig. B.7)
    # --- optimisation (paper Sec. 2.2, App. B.1) -----------------------------------------------------------
    batch_size: int = 512  # images per step, global over all processes (each gives n_views views)
    epochs: int = 100  # passes over the training images
    minutes: Optional[float] = None  # time budget of the training; the LR cosine ends with it (epochs is then a cap)
    optimizer: str = "lars"  # the optimiser (the paper's is LARS)
    lr: Optional[float] = None  # peak learning rate (default: from lr_scaling and base_lr)
    lr_scaling: str = "sqrt"  # "linear": base_lr*B/256, "sqrt": base_lr*sqrt(B), "none": base_lr
    base_lr: Optional[float] = None  # base of lr_scaling (default: 0.3 linear and none, 0.075 sqrt, 1e-3 adam(w))
    momentum: float = 0.9  # momentum of LARS and SGD
    weight_decay: float = 1e-6  # weight decay (paper: 1e-6 with LARS; 1e-4..5e-4 is common with SGD on CIFAR)
    lars_eta: float = 1e-3  # LARS trust coefficient
    warmup_epochs: float = 10.0  # linear warm-up length, then cosine decay to 0 (per step)
    # --- runtime -------------------------------------------------------------------------------------------
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps"
    precision: str = "auto"  # "auto": bf16 where native (recent GPUs, AVX512-BF16/AMX CPUs), else fp16 on GPUs, fp32
    channels_last: bool = True  # NHWC memory format (faster convolutions on CUDA and on CPU)
    compile: bool = False  # torch.compile the model
    seed: int = 0  # seeds torch, numpy and the augmentation generator
    # --- logging and checkpoints ---------------------------------------------------------------------------
    out_dir: str = "runs/simclr"  # run directory (config.json, metrics.json, TensorBoard events, checkpoints/)
    checkpoint_every: int = 10  # epochs between checkpoints (one is always written at the end)
    knn_every: int = 10  # epochs between kNN monitor evaluations (0: off)
    knn_k: int = 200  # neighbours of the kNN monitor
    knn_subset: int = 10000  # at most this many train/test images for the kNN monitor
    tensorboard: bool = True  # write TensorBoard scalars
    progress: bool = True  # show a tqdm progress bar
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved with the run

    def __post_init__(self) -> None:
        for name, value in dataset_defaults(self.dataset, self.image_size).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.validate()

    def for_image_size(self, image_size: int) -> "SimCLRConfig":
        """This config with ``image_size`` and the defaults that follow from it filled in (folder data)."""
        fill = {k: v for k, v in dataset_defaults(self.dataset, image_size).items() if getattr(self, k) is None}
        return self.replace(**fill)

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` naming the bad field and what is allowed."""
        self._validate_numbers()
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is unknown; choose one of {', '.join(allowed)}")
        positive = {"temperature": self.temperature, "image_size": 1 if self.image_size is None else self.image_size,
                    "epochs": self.epochs, "proj_out_dim": self.proj_out_dim,
                    "color_strength": 1 if self.color_strength is None else self.color_strength + 1e-12}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name}={value!r} must be > 0")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size} must be >= 2 (each image needs negatives)")
        if self.n_views < 2:
            raise ValueError(f"n_views={self.n_views} must be >= 2 (a positive needs a second view)")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be > 0 (or None to use lr_scaling)")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale={self.min_scale} must be in (0, 1]")
        if not 0 <= self.gray_p <= 1:
            raise ValueError(f"gray_p={self.gray_p} must be a probability in [0, 1]")
        if self.small_width < 1 or self.small_depth < 1:
            raise ValueError(f"small_width={self.small_width} and small_depth={self.small_depth} must be >= 1")
        if self.view_size is not None and self.view_size < 1:
            raise ValueError(f"view_size={self.view_size} must be >= 1 (or None: the views are image_size)")
        if self.small_feat_dim is not None and self.small_feat_dim < 1:
            raise ValueError(f"small_feat_dim={self.small_feat_dim} must be >= 1 (or None: the last stage's width)")
        if self.subset is not None and self.subset < 2:
            raise ValueError(f"subset={self.subset} must be >= 2 or None")
        if self.proj_layers < 1:
            raise ValueError(f"proj_layers={self.proj_layers} must be >= 1")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes={self.minutes!r} must be > 0 (or None: no time budget)")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be >= 0")
        if self.dataset == "folder" and not self.folder:
            raise ValueError("dataset='folder' needs folder=<path to an ImageFolder directory>")

    def _validate_numbers(self) -> None:
        """Every float must be finite (``--temperature inf`` learns nothing, ``--lr inf`` diverges); counts >= 1."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}={value!r} must be a finite number")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every} must be >= 1 (epochs between checkpoints)")
        if self.knn_every < 0 or self.knn_k < 1 or self.knn_subset < 1:
            raise ValueError(f"knn_every={self.knn_every} must be >= 0 (0: off) and knn_k={self.knn_k}, "
                             f"knn_subset={self.knn_subset} >= 1")
        if not 0 <= self.momentum < 1 or not self.lars_eta > 0:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1) and lars_eta={self.lars_eta} > 0")

    # --- presets -------------------------------------------------------------------------------------------
    @classmethod
    def smoke(cls, **overrides: Any) -> "SimCLRConfig":
        """Seconds on 2 CPU cores: a few hundred `shapes` images, the small encoder, one epoch."""
        base = dict(dataset="shapes", subset=256, arch="small", batch_size=64, epochs=1, warmup_epochs=0,
                    optimizer="lars", checkpoint_every=1, knn_every=1, knn_k=20, knn_subset=256,
                    progress=False, out_dir="runs/smoke")
        base.update(overrides)
        return cls(**base)

    @classmethod
    def quick(cls, **overrides: Any) -> "SimCLRConfig":
        """Minutes on a 2-core laptop CPU: CIFAR-10 subset with the small encoder (see docs/results.md).

        A short run learns faster with a lower temperature, a higher peak LR and less extreme crops than the
        paper's recipe (``CPU_SWEPT``: tau 0.1, lr 2.0 at batch 256, smallest crop 20 %; chosen on a validation
        split by ``benchmarks/sweep_cpu_recipe.py``). The quickstart trains it with ``QUICKSTART_RECIPE`` on a time
        budget.
        """
        base = dict(CPU_SWEPT, dataset="cifar10", subset=10000, arch="small", batch_size=256, epochs=17,
                    warmup_epochs=1, optimizer="lars", knn_every=5, knn_k=50, knn_subset=2000, out_dir="runs/quick")
        base.update(overrides)
        return cls(**base)

    @classmethod
    def cpu(cls, **overrides: Any) -> "SimCLRConfig":
        """The shipped CPU encoder (``weights/small-cifar10.pt``): all 50,000 CIFAR-10 training images, the small
        encoder, about 1.5 hours on 2 CPU cores with native bf16. Every setting not from the paper was chosen on a
        validation split of the training images (``benchmarks/sweep_cpu_recipe.py``, docs/results.md)."""
        base = dict(CPU_RECIPE, dataset="cifar10", subset=None, arch="small", batch_size=256, optimizer="lars",
                    knn_every=5, knn_k=200, knn_subset=10000, checkpoint_every=5, out_dir="runs/small-cifar10")
        base.update(overrides)
        return cls(**base)

    # --- (de)serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SimCLRConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in RETIRED_FIELDS}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes: Any) -> "SimCLRConfig":
        return dataclasses.replace(self, **changes)

    def peak_lr(self) -> float:
        """Peak learning rate: ``lr`` if given, else the scaling rule of App. B.1 applied to ``batch_size``."""
        from simclr_lib.optim import scaled_lr

        if self.lr is not None:
            return self.lr
        return scaled_lr(self.batch_size, self.lr_scaling, self.base_lr, self.optimizer)



@functools.lru_cache(maxsize=None)
def field_comments() -> dict[str, str]:
    """Each ``SimCLRConfig`` field's trailing ``# comment`` in this file: the CLI's help texts.

    Read from the source (installed packages ship it); ``{}`` where there is none (e.g. a bytecode-only install).

    Taught in notebook 03.
    """
    try:
        source = inspect.getsource(SimCLRConfig)
    except (OSError, TypeError):
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body
    return {node.target.id: comments[node.end_lineno] for node in body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments}


# --- builders: a config -> the objects of a run (the lower modules never import the config back) ---------------
def build_model(cfg: SimCLRConfig) -> SimCLRModel:
    """The SimCLR model of a config: the ``cfg.arch`` encoder (``cifar_stem``; ``small_width``/``small_depth``/
    ``small_feat_dim`` for ``small``) and a ``cfg.proj_layers`` head of width ``cfg.proj_hidden_dim`` (None: the
    encoder's) projecting to ``cfg.proj_out_dim`` (with a last BN if ``cfg.proj_last_bn``).

    Taught in notebook 02 (used in 03, 04, 05).
    """
    encoder, feat_dim = build_encoder(cfg.arch, cfg.cifar_stem, cfg.zero_init_residual, cfg.dataset,
                                      cfg.small_width, cfg.small_depth, cfg.small_feat_dim)
    head = ProjectionHead(feat_dim, cfg.proj_hidden_dim, cfg.proj_out_dim, cfg.proj_layers,
                          last_bn=cfg.proj_last_bn)
    return SimCLRModel(encoder, head, feat_dim)


def load_pretrain_data(cfg: SimCLRConfig) -> ImageData:
    """The pre-training images of ``cfg`` (STL-10: train + unlabeled), the first ``cfg.subset`` of them.

    Taught in notebook 03.
    """
    split = "train+unlabeled" if cfg.dataset == "stl10" else "train"
    return load_dataset(cfg.dataset, split, cfg.data_dir, folder=cfg.folder, subset=cfg.subset,
                        download=cfg.download, image_size=cfg.image_size, progress=cfg.progress,
                        skip_corrupt=cfg.skip_corrupt)


def labelled_splits(cfg: SimCLRConfig, n_train: Optional[int],
                    n_test: Optional[int]) -> tuple[ImageData, ImageData]:
    """The first ``n_train`` / ``n_test`` labelled images of the train / test split of ``cfg.dataset`` (None: all).

    Taught in notebook 04.
    """
    kw = dict(data_dir=cfg.data_dir, download=cfg.download, image_size=cfg.image_size, progress=cfg.progress,
              skip_corrupt=cfg.skip_corrupt)

    def first(n: Optional[int], size: int) -> int:
        return size if n is None else min(n, size)

    if cfg.dataset == "shapes":  # generated: draw only what is needed
        return (load_dataset("shapes", "train", subset=first(n_train, SHAPES_SIZES["train"]), **kw),
                load_dataset("shapes", "test", subset=first(n_test, SHAPES_SIZES["test"]), **kw))
    train, test = load_dataset(cfg.dataset, "train", **kw), load_dataset(cfg.dataset, "test", **kw)
    return train.subset(first(n_train, len(train))), test.subset(first(n_test, len(test)))


def load_monitor_data(cfg: SimCLRConfig) -> Optional[tuple[ImageData, ImageData]]:
    """Labelled (train, test) images for the kNN monitor, at most ``cfg.knn_subset`` each; None for folders.

    Taught in notebook 03.
    """
    if cfg.dataset == "folder" or cfg.knn_every <= 0:
        return None
    return labelled_splits(cfg, cfg.knn_subset, cfg.knn_subset)
