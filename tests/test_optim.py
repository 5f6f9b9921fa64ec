"""LARS against a plain per-parameter loop of google-research/simclr's rule; schedule and scaling rules."""
import math

import pytest
import torch
from torch import nn

from simclr_lib.optim import LARS, build_optimizer, lars_step_per_parameter, build_scheduler, param_groups, scaled_lr, warmup_cosine
from simclr_lib.teaching.popular_repos import SpijkervetLARS


def _net(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    nn.init.zeros_(net[0].bias)  # a zero-initialised bias must still move
    return net


def _loss(net, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 4, generator=g)
    return ((net(x) - y) ** 2).mean()


def _reference_lars(net, steps, lr, momentum, wd, eta):
    """Plain loop, one parameter at a time, straight from lars_optimizer.py (classic momentum)."""
    v = {p: torch.zeros_like(p) for p in net.parameters()}
    for s in range(steps):
        net.zero_grad()
        _loss(net, s).backward()
        with torch.no_grad():
            for p in net.parameters():
                g = p.grad.clone()
                if p.ndim > 1:  # biases and BN: no decay, no trust scaling
                    g = g + wd * p
                    w_norm, g_norm = float(p.norm()), float(g.norm())
                    trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
                else:
                    trust = 1.0
                v[p] = momentum * v[p] + lr * trust * g
                p -= v[p]


def test_lars_matches_plain_loop():
    a, b = _net(), _net()
    _reference_lars(a, 5, lr=0.5, momentum=0.9, wd=1e-4, eta=1e-3)
    opt = LARS(b.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4, eta=1e-3)
    for s in range(5):
        opt.zero_grad()
        _loss(b, s).backward()
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_readable_per_parameter_lars_equals_the_fused_step(nesterov):
    a, b = _net(), _net()
    kw = dict(lr=0.5, momentum=0.9, weight_decay=1e-4, eta=1e-3, nesterov=nesterov)
    fused = LARS(param_groups(a, 1e-4), **kw)  # biases / BN in their own excluded group, as training builds it
    readable = LARS(param_groups(b, 1e-4), **kw)
    for s in range(5):
        for net, opt, step in ((a, fused, fused.step), (b, readable, lambda: lars_step_per_parameter(readable))):
            opt.zero_grad()
            _loss(net, s).backward()
            step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)
    assert not torch.equal(b[0].bias, torch.zeros(16))  # the zero-initialised bias moved


def test_param_groups_equal_exclude_1d():
    a, b = _net(), _net()
    opt_a = LARS(a.parameters(), lr=0.5, weight_decay=1e-4)
    opt_b = LARS(param_groups(b, 1e-4), lr=0.5, weight_decay=1e-4, exclude_1d=False)
    for s in range(3):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            _loss(net, s).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-7)


def test_zero_bias_moves_with_ours_not_with_seed_port():
    ours, seed = _net(), _net()
    for net, opt in ((ours, LARS(ours.parameters(), lr=0.5)), (seed, SpijkervetLARS(seed.parameters(), lr=0.5))):
        opt.zero_grad()
        _loss(net, 0).backward()
        opt.step()
    assert ours[0].bias.abs().sum() > 0
    assert seed[0].bias.abs().sum() == 0  # the ge(0) guard gives trust 0 to a zero weight


def test_trust_ratio_is_one_for_zero_weight_matrix():
    lin = nn.Linear(4, 3, bias=False)
    nn.init.zeros_(lin.weight)
    lin.weight.grad = torch.ones_like(lin.weight)
    LARS(lin.parameters(), lr=0.1, momentum=0.0, weight_decay=0.0).step()
    assert torch.allclose(lin.weight, torch.full_like(lin.weight, -0.1))


def test_warmup_cosine_shape():
    total, warm = 100, 10
    f = [warmup_cosine(s, total, warm) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(x > y for x, y in zip(f[10:], f[11:]))  # strictly decreasing after warm-up
    assert warmup_cosine(total, total, warm) == pytest.approx(0.0)
    assert f[55] == pytest.approx(0.5, abs=0.02)  # the half-way point of the cosine


def test_scheduler_steps_per_step():
    net = _net()
    opt = build_optimizer(net, "lars", lr=1.0)
    sched = build_scheduler(opt, total_steps=20, warmup_steps=5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([warmup_cosine(s, 20, 5) for s in range(20)])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] < 0.02
    assert all(g["lr"] == opt.param_groups[0]["lr"] for g in opt.param_groups)


def test_scaling_rules():
    assert scaled_lr(256, "linear") == pytest.approx(0.3)
    assert scaled_lr(4096, "linear") == pytest.approx(4.8)
    assert scaled_lr(4096, "sqrt") == pytest.approx(0.075 * 64)
    assert scaled_lr(512, "sqrt", optimizer="adam") == pytest.approx(1e-3 * math.sqrt(2))
    with pytest.raises(ValueError, match="lr_scaling"):
        scaled_lr(256, "cubic")


@pytest.mark.parametrize("name", ["lars", "sgd", "adam", "adamw"])
def test_build_optimizer_no_decay_on_1d(name):
    net = _net()
    opt = build_optimizer(net, name, lr=0.1, weight_decay=1e-3)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for p in net.parameters():
        assert wd[id(p)] == (1e-3 if p.ndim > 1 else 0.0)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer='rmsprop' is unknown"):
        build_optimizer(_net(), "rmsprop", lr=0.1)


def test_trust_ratios_match_a_plain_loop_and_the_lars_step():
    from simclr_lib.optim import trust_ratios

    net = _net()
    _loss(net, 0).backward()
    got = trust_ratios(net, weight_decay=1e-4, eta=1e-3)
    for name, p in net.named_parameters():  # plain loop, floats on the host
        if p.ndim <= 1:
            want = 1.0
        else:
            w = sum(float(v) ** 2 for v in p.detach().flatten()) ** 0.5
            d = [float(g) + 1e-4 * float(v) for g, v in zip(p.grad.flatten(), p.detach().flatten())]
            want = 1e-3 * w / sum(x * x for x in d) ** 0.5
        assert got[name] == pytest.approx(want, rel=1e-5), name
    w0 = net[0].weight.detach().clone()  # LARS with lr=1, no momentum moves w by trust * (g + wd w)
    LARS(param_groups(net, 1e-4), lr=1.0, momentum=0.0, weight_decay=1e-4, eta=1e-3).step()
    step = (w0 - net[0].weight.detach()).norm() / (net[0].weight.grad + 1e-4 * w0).norm()
    assert float(step) == pytest.approx(got["0.weight"], rel=1e-4)


def test_trust_ratios_zero_norms_and_no_grad():
    from simclr_lib.optim import trust_ratios

    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    nn.init.zeros_(net[0].weight)
    net[0].weight.grad = torch.ones(2, 3)
    net[0].bias.grad = torch.ones(2)
    r = trust_ratios(net, weight_decay=0.0)
    assert r == {"0.weight": 1.0, "0.bias": 1.0}  # zero weight norm -> 1; net[1] has no grad


def test_epoch_stepped_cosine_is_the_seed_staircase():
    from simclr_lib.optim import epoch_stepped_cosine

    lr = epoch_stepped_cosine(epochs=15, steps_per_epoch=39, hold_epochs=10)
    assert len(lr) == 15 * 39
    for e in range(15):  # constant within an epoch; decays by cos(pi * k / 39) per epoch after the hold
        k = max(0, e - 10)
        assert lr[e * 39:(e + 1) * 39] == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 39))] * 39, abs=1e-9)
    assert lr[-1] > 0.9  # the defect: after 15 epochs the learning rate has hardly moved
    with pytest.raises(ValueError):
        epoch_stepped_cosine(0, 10)
