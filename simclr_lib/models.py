"""Encoder f, projection head g and the SimCLR model x -> (h, z) (Chen et al. 2020, Sec. 2.1, 4.2, App. B.9).

* ResNet-18/34/50 encoders are torchvision's (``weights=None``) with the classifier removed (``fc = Identity``),
  so f(x) = h is the average-pooled output of the last stage (512 / 512 / 2048 features). ``cifar_stem=True``
  swaps the 7x7 stride-2 conv1 and the max-pool for one 3x3 stride-1 conv, as the paper does for 32 px
  CIFAR-10 (App. B.9); ``cifar_stem=False`` keeps ImageNet's stem (4x downsampling) for 96 px STL-10 and up.
* Every encoder takes views in [0, 1] and normalises them itself with ``mean``/``std`` buffers taken from
  ``data.STATS`` for its data set (:class:`Normalize`), so a checkpoint carries its own input statistics and no
  caller normalises.
* ``small`` is a plain conv net for CPU runs: per stage ``depth`` units of 3x3 conv -> BatchNorm -> ReLU, the
  first unit of every later stage with stride 2, optionally a 1x1 conv-BN-ReLU that widens the last stage to
  ``feat_dim`` channels (a cheap way to a larger h, as MobileNet's last 1x1 conv), then global average pooling
  (1.1 M parameters vs ResNet-18's 11.2 M).
  Measured by ``benchmarks/bench_train.py --archs small resnet18``: about 4.7x the training views/s of
  ResNet-18 (CIFAR stem) on 2 CPU cores (docs/results.md), which is what makes the CPU quick run fit in minutes.
* :class:`ProjectionHead` is g (Sec. 2.1, 4.2): Linear -> BN -> ReLU -> ... -> Linear, 128-d output.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torchvision

from simclr_lib.data import STATS

ARCHS = ("resnet18", "resnet34", "resnet50", "small")  # the encoders build_encoder builds
RESNET_FEAT_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
RESNET_LAYOUTS = {"resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
                  "resnet34": (torchvision.models.resnet.BasicBlock, [3, 4, 6, 3]),
                  "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3])}
Stats = tuple[Sequence[float], Sequence[float]]
SMALL_WIDTHS = (32, 64, 128, 256)  # channels per stage of the ``small`` encoder
SMALL_DEPTHS = (1, 1, 2, 2)  # conv-BN-ReLU units per stage


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics as buffers (saved in checkpoints).

    Shape:
        (B, 3, H, W) float in [0, 1] -> (B, 3, H, W).

    Taught in notebook 03.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got {tuple(mean)} and {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():  # uint8 pixels would pass silently as values 0..255
            raise ValueError(f"the encoder expects float views in [0, 1], got {x.dtype}; convert with "
                             "augment.to_float(x) first")
        return (x - self.mean) / self.std


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, kernel_size: int = 3) -> nn.Sequential:
    """kernel_size x kernel_size conv (3x3 by default; "same" padding, no bias: BN follows) -> BatchNorm -> ReLU.

    Shape:
        (B, c_in, H, W) -> (B, c_out, ceil(H / stride), ceil(W / stride)).

    Taught in notebook 03.
    """
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallEncoder(nn.Module):
    """The fast CPU encoder: VGG-style stages of conv-BN-ReLU, stride-2 downsampling, global average pooling.

    Args:
        widths: output channels of each stage.
        feat_dim: the size of h: None keeps ``widths[-1]``; a number adds a 1x1 conv-BN-ReLU from ``widths[-1]``
            to ``feat_dim`` channels after the last stage (at its 4x4 resolution for 32 px inputs: cheap).
        stats: (mean, std) its [0, 1] inputs are normalised with (``data.STATS``; default CIFAR-10's).
        depths: conv-BN-ReLU units per stage (the first unit of every stage after the first has stride 2).
        cifar_stem: True keeps full resolution in the first stage (32 px input); False makes the first conv
            stride 2 and adds a 3x3 stride-2 max-pool, downsampling 4x like the ImageNet ResNet stem.

    Shape:
        (B, 3, H, W) -> (B, feat_dim or widths[-1]).

    Taught in notebook 03.
    """

    def __init__(self, widths: Sequence[int] = SMALL_WIDTHS, depths: Sequence[int] = SMALL_DEPTHS,
                 cifar_stem: bool = True, stats: Stats = STATS["cifar10"], feat_dim: Optional[int] = None) -> None:
        super().__init__()
        self.normalize = Normalize(*stats)
        if len(widths) != len(depths) or not widths or min(*widths, *depths) < 1:
            raise ValueError(f"widths={tuple(widths)} and depths={tuple(depths)} must be positive and equally long")
        if feat_dim is not None and feat_dim < 1:
            raise ValueError(f"feat_dim={feat_dim} must be >= 1 (or None: the last stage's {widths[-1]} channels)")
        layers: list[nn.Module] = []
        c_in = 3
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for unit in range(depth):
                first = unit == 0
                stride = 2 if first and (stage > 0 or not cifar_stem) else 1
                layers.append(conv_bn_relu(c_in, width, stride))
                if first and stage == 0 and not cifar_stem:
                    layers.append(nn.MaxPool2d(3, 2, 1))
                c_in = width
        if feat_dim is not None:  # widen h with a 1x1 conv at the last stage's resolution
            layers.append(conv_bn_relu(c_in, feat_dim, kernel_size=1))
            c_in = feat_dim
        self.features = nn.Sequential(*layers)
        self.feat_dim = int(c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: (B, 3, H, W) in [0, 1] -> (B, feat_dim)."""
        x = self.features(self.normalize(x))  # B x C x H' x W'
        return x.mean(dim=(2, 3))  # B x C (global average pool)


class ResNetEncoder(torchvision.models.ResNet):
    """A torchvision ResNet without weights or classifier (``fc = Identity``) that normalises its [0, 1] input.

    ``cifar_stem`` swaps the 7x7 stride-2 conv and the max-pool for one 3x3 stride-1 conv (App. B.9, 32 px);
    ``zero_init_residual`` zeroes the scale of the last BatchNorm in every residual block, so each block starts as
    the identity (Goyal et al. 2017; google-research/simclr does it; off by default here, docs/differences.md).

    Shape:
        (B, 3, H, W) in [0, 1] -> (B, 512) for resnet18/34, (B, 2048) for resnet50.

    Taught in notebook 03.
    """

    def __init__(self, arch: str = "resnet18", cifar_stem: bool = True, zero_init_residual: bool = False,
                 stats: Stats = STATS["cifar10"]) -> None:
        block, layers = RESNET_LAYOUTS[arch]
        super().__init__(block, layers, zero_init_residual=zero_init_residual)
        if cifar_stem:  # App. B.9: 3x3 stride-1 conv1, no max-pool, for 32 px images
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.fc = nn.Identity()
        self.normalize = Normalize(*stats)
        self.feat_dim = RESNET_FEAT_DIMS[arch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.normalize(x))


def build_encoder(arch: str, cifar_stem: bool = True, zero_init_residual: bool = False,
                  dataset: str = "cifar10", small_width: int = SMALL_WIDTHS[0],
                  small_depth: int = SMALL_DEPTHS[-1],
                  small_feat_dim: Optional[int] = None) -> tuple[nn.Module, int]:
    """The encoder f by name and its feature dimension (the size of h).

    Args:
        arch: one of ``ARCHS``: resnet18, resnet34, resnet50, small.
        cifar_stem: 3x3 stride-1 stem without max-pool (App. B.9); False for 96 px and larger inputs.
        zero_init_residual: zero-initialised last BN scale of each residual block (ResNets; ``small`` has no
            residual blocks and ignores it).
        dataset: whose statistics (``data.STATS``) the encoder normalises its [0, 1] input with.
        small_width: channels of the ``small`` encoder's first stage; each later stage doubles them (feat_dim is
            8x small_width).
        small_depth: conv-BN-ReLU units in each of the ``small`` encoder's last two stages.
        small_feat_dim: the ``small`` encoder's h size: None keeps its last stage (8x small_width); a number adds
            a 1x1 conv-BN-ReLU to that many channels (:class:`SmallEncoder`'s ``feat_dim``).

    Returns:
        (encoder, feat_dim); the encoder maps (B, 3, H, W) to (B, feat_dim).

    Taught in notebook 04.
    """
    if dataset not in STATS:
        raise ValueError(f"dataset={dataset!r} has no input statistics; choose one of {', '.join(STATS)}")
    if arch == "small":
        widths = tuple(small_width * 2 ** i for i in range(len(SMALL_WIDTHS)))  # 32, 64, 128, 256 by default
        depths = SMALL_DEPTHS[:2] + (small_depth, small_depth)  # 1, 1, 2, 2 by default
        encoder = SmallEncoder(widths, depths, cifar_stem=cifar_stem, stats=STATS[dataset], feat_dim=small_feat_dim)
        return encoder, encoder.feat_dim
    if arch not in RESNET_FEAT_DIMS:
        raise ValueError(f"arch={arch!r} is unknown; choose one of {', '.join(ARCHS)}")
    encoder = ResNetEncoder(arch, cifar_stem, zero_init_residual, STATS[dataset])
    return encoder, encoder.feat_dim


class ProjectionHead(nn.Module):
    """The projection head g of Sec. 2.1 / 4.2: ``num_layers`` linear maps with BN + ReLU between them.

    ``num_layers=2`` is the paper's MLP (Linear -> BN -> ReLU -> Linear); ``num_layers=1`` is a single linear
    map (the paper's "linear projection" ablation, Fig. 8). Linear layers followed by BN carry no bias.

    Args:
        in_dim: size of h (the encoder's ``feat_dim``).
        hidden_dim: width of the hidden layers; None uses ``in_dim`` as the paper does.
        out_dim: size of z (paper: 128).
        num_layers: number of linear layers (>= 1).
        batch_norm: BatchNorm after each hidden linear layer.
        last_bn: BatchNorm after the last linear layer, with a scale but no shift (its bias is frozen at 0), as
            in the SimCLR reference code; off by default.

    Shape:
        (B, in_dim) -> (B, out_dim).

    Taught in notebook 03.
    """

    def __init__(self, in_dim: int, hidden_dim: Optional[int] = None, out_dim: int = 128, num_layers: int = 2,
                 batch_norm: bool = True, last_bn: bool = False) -> None:
        super().__init__()
        if num_layers < 1 or min(in_dim, out_dim, hidden_dim or in_dim) < 1:
            raise ValueError(f"num_layers={num_layers}, in_dim={in_dim}, hidden_dim={hidden_dim}, out_dim={out_dim}"
                             " must all be >= 1")
        hidden_dim = hidden_dim or in_dim
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(out_dim))
            layers[-1].bias.requires_grad_(False)  # scale only, no centre shift
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Shape: (B, in_dim) -> (B, out_dim)."""
        return self.net(h)


class SimCLRModel(nn.Module):
    """f followed by g: ``forward(x)`` returns the representation h and the projection z (Sec. 2.1).

    h is what downstream tasks use (linear probe, kNN); z is what NT-Xent sees.

    Shape:
        x: (B, 3, H, W) -> h: (B, feat_dim), z: (B, out_dim).

    Taught in notebook 00 (used in 03).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, feat_dim: Optional[int] = None) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        feat_dim = feat_dim if feat_dim is not None else getattr(encoder, "feat_dim", getattr(head, "in_dim", None))
        if feat_dim is None:
            raise ValueError("cannot tell the encoder's feature dimension; pass feat_dim=")
        self.feat_dim = int(feat_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h = f(x), z = g(h) (Sec. 2.1). Taught in notebook 03.

        Shape: (B, 3, H, W) in [0, 1] -> ((B, feat_dim), (B, out_dim)).
        """
        h = self.encoder(x)  # B x feat_dim; the encoder normalises x itself
        z = self.head(h)  # B x out_dim
        return h, z

