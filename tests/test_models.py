"""Encoders (ResNet + CIFAR stem, small), projection head g, SimCLRModel (h, z) and build_model."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms.functional as TF

from simclr_lib.config import ARCHS, SimCLRConfig, build_model
from simclr_lib.data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from simclr_lib.models import (RESNET_FEAT_DIMS, SMALL_DEPTHS, SMALL_WIDTHS, Normalize, ProjectionHead, ResNetEncoder,
                               SimCLRModel, SmallEncoder, build_encoder)

EXPECTED_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "small": SMALL_WIDTHS[-1]}


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _record_sizes(module: nn.Module) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    """A list that collects the spatial size of ``module``'s output at every forward pass, and the hook."""
    sizes = []
    handle = module.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[2:])))
    return sizes, handle


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_maps_images_to_feat_dim(arch):
    torch.manual_seed(0)
    encoder, dim = build_encoder(arch)
    assert dim == EXPECTED_DIMS[arch]
    batch = 2 if arch == "resnet50" else 4
    with torch.no_grad():
        h = encoder(torch.randn(batch, 3, 32, 32))
    assert h.shape == (batch, dim) and torch.isfinite(h).all()


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_resnet_without_stem_is_torchvisions_minus_fc(arch):
    ours, _ = build_encoder(arch, cifar_stem=False)
    ref = getattr(torchvision.models, arch)(weights=None)
    assert isinstance(ours, ResNetEncoder)
    assert isinstance(ours.fc, nn.Identity) and isinstance(ours.maxpool, nn.MaxPool2d)
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    stats = {"normalize.mean": (1, 3, 1, 1), "normalize.std": (1, 3, 1, 1)}  # buffers, not parameters
    assert {k: v.shape for k, v in ours.state_dict().items()} == {**ref_shapes, **stats}
    fc = ref.fc.weight.numel() + ref.fc.bias.numel()
    assert _n_params(ours) == _n_params(ref) - fc
    # with torchvision's weights, ours is torchvision's network (minus fc) on the CIFAR-normalised input
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}, strict=False)
    ref.fc = nn.Identity()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(TF.normalize(x, CIFAR10_MEAN, CIFAR10_STD)))


def test_cifar_stem_is_3x3_stride_1_without_maxpool():
    ours, _ = build_encoder("resnet18", cifar_stem=True)
    assert ours.conv1.kernel_size == (3, 3) and ours.conv1.stride == (1, 1) and ours.conv1.padding == (1, 1)
    assert ours.conv1.in_channels == 3 and ours.conv1.out_channels == 64 and ours.conv1.bias is None
    assert isinstance(ours.maxpool, nn.Identity) and isinstance(ours.fc, nn.Identity)
    plain, _ = build_encoder("resnet18", cifar_stem=False)
    assert plain.conv1.kernel_size == (7, 7) and plain.conv1.stride == (2, 2)
    # only conv1 differs in size: 64*3*3*3 weights instead of 64*3*7*7
    assert _n_params(plain) - _n_params(ours) == 64 * 3 * (49 - 9)
    # ResNet-18 without fc has 11.2 M parameters (He et al. 2016; SimCLR Table B.1 lists 11 M)
    assert 11.1e6 < _n_params(ours) < 11.2e6


@pytest.mark.parametrize("cifar_stem,size,expected", [(True, 32, 4), (False, 96, 3), (False, 32, 1)])
def test_downsampling_of_the_last_stage(cifar_stem, size, expected):
    """CIFAR stem: 32 px -> 4x4 at layer4 (8x); ImageNet stem: 32x, like torchvision's own network."""
    torch.manual_seed(0)
    ours, _ = build_encoder("resnet18", cifar_stem=cifar_stem)
    sizes, handle = _record_sizes(ours.layer4)
    with torch.no_grad():
        ours.eval()(torch.randn(1, 3, size, size))
    handle.remove()
    assert sizes == [(expected, expected)]
    if not cifar_stem:
        ref = torchvision.models.resnet18(weights=None).eval()
        ref_sizes, handle = _record_sizes(ref.layer4)
        with torch.no_grad():
            ref(torch.randn(1, 3, size, size))
        handle.remove()
        assert ref_sizes == sizes


@pytest.mark.parametrize("cifar_stem,size,expected", [(True, 32, 4), (False, 96, 3)])
def test_small_encoder_downsampling(cifar_stem, size, expected):
    enc = SmallEncoder(cifar_stem=cifar_stem).eval()
    with torch.no_grad():
        fmap = enc.features(torch.randn(2, 3, size, size))
    assert fmap.shape == (2, SMALL_WIDTHS[-1], expected, expected)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(SMALL_DEPTHS) and all(c.kernel_size == (3, 3) for c in convs)
    assert convs[0].stride == ((1, 1) if cifar_stem else (2, 2))
    assert any(isinstance(m, nn.MaxPool2d) for m in enc.modules()) == (not cifar_stem)


def _naive_small(enc: SmallEncoder, x: torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """The eval-mode small encoder written out with functional ops, one unit at a time, after normalising."""
    x = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], 1)
    for unit in enc.features:
        if isinstance(unit, nn.MaxPool2d):
            x = F.max_pool2d(x, 3, 2, 1)
            continue
        conv, bn, _ = unit
        x = F.conv2d(x, conv.weight, None, conv.stride, 1)
        x = (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        x = torch.relu(x * bn.weight[:, None, None] + bn.bias[:, None, None])
    return torch.stack([x[b].reshape(x.shape[1], -1).mean(1) for b in range(len(x))])


@pytest.mark.parametrize("cifar_stem,size", [(True, 32), (False, 64)])
def test_small_encoder_matches_naive_reference(cifar_stem, size):
    torch.manual_seed(0)
    enc = SmallEncoder(cifar_stem=cifar_stem)
    for m in enc.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.1)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(enc.eval()(x), _naive_small(enc, x), atol=1e-4, rtol=1e-4)
        cl = enc.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, _naive_small(enc, x), atol=1e-4, rtol=1e-4)


def test_small_encoder_normalises_with_its_data_sets_statistics():
    torch.manual_seed(0)
    enc, _ = build_encoder("small", dataset="stl10")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(enc.eval()(x), _naive_small(enc, x, IMAGENET_MEAN, IMAGENET_STD), atol=1e-4, rtol=1e-4)


def test_normalize_matches_torchvision_and_travels_in_the_state_dict():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    norm = Normalize(CIFAR10_MEAN, CIFAR10_STD)
    torch.testing.assert_close(norm(x), TF.normalize(x, CIFAR10_MEAN, CIFAR10_STD))
    assert set(norm.state_dict()) == {"mean", "std"} and not list(norm.parameters())
    for arch, dataset, (mean, std) in [("small", "cifar10", (CIFAR10_MEAN, CIFAR10_STD)),
                                       ("resnet18", "stl10", (IMAGENET_MEAN, IMAGENET_STD))]:
        enc, _ = build_encoder(arch, dataset=dataset)
        state = enc.state_dict()
        assert state["normalize.mean"].flatten().tolist() == pytest.approx(mean)
        assert state["normalize.std"].flatten().tolist() == pytest.approx(std)
    with pytest.raises(ValueError, match="imagenet"):
        build_encoder("small", dataset="imagenet")


def test_normalize_rejects_uint8_images():
    """Encoders take [0, 1] views: uint8 pixels (ImageData.images) would be normalised as 0..255 without a word
    (what augment.normalize refused before the statistics moved into the model)."""
    x = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="float"):
        Normalize(CIFAR10_MEAN, CIFAR10_STD)(x)


def test_small_encoder_rejects_bad_shapes():
    with pytest.raises(ValueError, match="equally long"):
        SmallEncoder(widths=(8, 16), depths=(1,))
    with pytest.raises(ValueError, match="positive"):
        SmallEncoder(widths=(8, 0), depths=(1, 1))


def test_small_is_much_cheaper_than_resnet18():
    small, _ = build_encoder("small")
    resnet, _ = build_encoder("resnet18")
    assert 1e5 < _n_params(small) < _n_params(resnet) / 5


def test_unknown_arch_is_a_one_line_error_listing_the_known_ones():
    with pytest.raises(ValueError) as e:
        build_encoder("vgg16")
    msg = str(e.value)
    assert "\n" not in msg and "vgg16" in msg and all(a in msg for a in ARCHS)


def test_projection_head_layers():
    g = ProjectionHead(512)
    kinds = [type(m) for m in g.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (g.net[0].in_features, g.net[0].out_features, g.net[3].out_features) == (512, 512, 128)
    assert g.net[0].bias is None and g.net[3].bias is not None  # BN follows the first linear layer
    one = ProjectionHead(256, num_layers=1, out_dim=64)
    assert len(one.net) == 1 and (one.net[0].in_features, one.net[0].out_features) == (256, 64)
    three = ProjectionHead(64, hidden_dim=32, out_dim=16, num_layers=3, batch_norm=False, last_bn=True)
    assert [type(m) for m in three.net] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert [m.out_features for m in three.net if isinstance(m, nn.Linear)] == [32, 32, 16]
    assert three.net[-2].bias is None and not three.net[-1].bias.requires_grad
    with pytest.raises(ValueError, match="num_layers=0"):
        ProjectionHead(8, num_layers=0)


def test_projection_head_matches_naive_reference():
    """z = W2 relu(BN_train(W1 h)) + b2, with BN using the batch mean and biased variance."""
    torch.manual_seed(0)
    g = ProjectionHead(6, hidden_dim=5, out_dim=3).train()
    g.net[1].weight.data.uniform_(0.5, 1.5), g.net[1].bias.data.normal_(0, 0.1)
    h = torch.randn(7, 6)
    a = h @ g.net[0].weight.T  # 7 x 5
    mu, var = a.mean(0), a.var(0, unbiased=False)
    a = torch.relu((a - mu) / torch.sqrt(var + g.net[1].eps) * g.net[1].weight + g.net[1].bias)
    expected = a @ g.net[3].weight.T + g.net[3].bias  # 7 x 3
    assert torch.allclose(g(h), expected, atol=1e-5)


def test_simclr_model_returns_h_and_z_and_every_parameter_learns():
    torch.manual_seed(0)
    encoder, dim = build_encoder("small")
    model = SimCLRModel(encoder, ProjectionHead(dim, out_dim=32))
    assert model.encoder is encoder and model.feat_dim == dim
    h, z = model(torch.randn(4, 3, 32, 32))
    assert h.shape == (4, dim) and z.shape == (4, 32)
    (z.square().sum() + h.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_build_model_from_configs():
    cfg = SimCLRConfig.smoke()
    model = build_model(cfg)
    assert isinstance(model.encoder, SmallEncoder) and model.feat_dim == SMALL_WIDTHS[-1]
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == cfg.proj_layers and linears[0].out_features == model.feat_dim  # hidden = in_dim
    assert linears[-1].out_features == cfg.proj_out_dim
    h, z = model(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, model.feat_dim) and z.shape == (2, cfg.proj_out_dim)
    other = build_model(SimCLRConfig.smoke(proj_layers=3, proj_hidden_dim=64, proj_out_dim=16))
    assert [m.out_features for m in other.head.modules() if isinstance(m, nn.Linear)] == [64, 64, 16]
    resnet = build_model(SimCLRConfig(arch="resnet18", cifar_stem=False))
    assert resnet.feat_dim == RESNET_FEAT_DIMS["resnet18"] and resnet.encoder.conv1.kernel_size == (7, 7)
    stl = build_model(SimCLRConfig.smoke(dataset="stl10"))  # the config's data set picks the input statistics
    assert stl.encoder.normalize.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)


def test_a_checkpoint_from_before_the_encoders_normalised_still_loads(tmp_path):
    """0.1 checkpoints hold no ``normalize`` buffers: they load, with the data set's statistics filled in."""
    from simclr_lib.config import SimCLRConfig, build_model
    from simclr_lib.data import STATS
    from simclr_lib.runs.checkpoint import save_checkpoint
    from simclr_lib.runs.registry import pretrained as load_model

    cfg = SimCLRConfig.smoke()
    old = {k: v for k, v in build_model(cfg).state_dict().items() if "normalize" not in k}
    config = dict(cfg.to_dict(), augment_backend="batched")  # a field 0.1 had
    path = save_checkpoint(dict(model=old, config=config, epoch=1, step=4), tmp_path / "last.pt")
    model, loaded, _ = load_model(path)
    assert torch.equal(model.encoder.normalize.mean.flatten(), torch.tensor(STATS[cfg.dataset][0]))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in old.items()) and loaded.arch == cfg.arch
