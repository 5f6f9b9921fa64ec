"""The GPU paths, proven on the CPU (issue 8): the ``meta`` device and a mocked CUDA capability stand in for a GPU.

Each test here failed before its fix: resume read RNG states onto the training device; ``precision="auto"`` took
emulated bf16 on a T4; the step loop copied a CPU index tensor to the device every step and fine-tuning drew its
crop offsets on the CPU; the generator check ignored the device index; STL-10 had CIFAR-10's defaults.
"""
from __future__ import annotations

import types

import pytest
import torch

from simclr_lib import runtime, train
from simclr_lib.augment import SimCLRAugment, _check_generator
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import epoch_order
from simclr_lib.optim import build_optimizer, build_scheduler
from simclr_lib.runs.state import Run
from simclr_lib.teaching.finetune import random_crop_flip

META = torch.device("meta")


def _cfg(tmp_path, **kw):
    return SimCLRConfig.smoke(out_dir=str(tmp_path / "run"), device="cpu", knn_every=0, **kw)


# --- 1. resume reads the checkpoint onto the CPU ----------------------------------------------------------------
def test_resume_restores_rng_states_whatever_the_training_device(tmp_path):
    cfg = _cfg(tmp_path)
    train.pretrain(cfg)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    run = train.setup_run(cfg)
    run.device = META  # a GPU stand-in: anything loaded "onto the training device" would land off the CPU
    saved = torch.load(path, weights_only=True)["rng"]["augment"]
    train.resume_run(run, path)  # raised "RNG state must be a torch.ByteTensor" when loaded to the device
    assert torch.equal(run.generator.get_state(), saved) and run.start_epoch == 1


def test_set_rng_state_accepts_states_in_another_dtype_and_list_form():
    from simclr_lib.runs.checkpoint import rng_state, set_rng_state

    gen = torch.Generator().manual_seed(3)
    state = rng_state(gen)
    expected = torch.rand(3, generator=gen)
    set_rng_state({k: v.to(torch.int16) if torch.is_tensor(v) else v for k, v in state.items()}, gen)
    assert torch.equal(torch.rand(3, generator=gen), expected)


# --- 2. precision="auto" on CUDA: bf16 only where it is native --------------------------------------------------
@pytest.mark.parametrize("capability,dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                              ((9, 0), torch.bfloat16), ((6, 1), torch.float16)])
def test_auto_precision_follows_compute_capability(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers (emulation)
    assert runtime.resolve_precision("auto", torch.device("cuda")) is dtype
    assert runtime.resolve_precision("auto", torch.device("cuda", 0)) is dtype


def test_fp16_gets_an_enabled_grad_scaler_and_bf16_a_disabled_one(monkeypatch):
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)  # CUDA stand-in
    cuda = torch.device("cuda")
    assert runtime.make_grad_scaler(cuda, torch.float16).is_enabled()
    assert not runtime.make_grad_scaler(cuda, torch.bfloat16).is_enabled()
    assert not runtime.make_grad_scaler(torch.device("cpu"), None).is_enabled()


# --- 3. no host sync in the step loop ---------------------------------------------------------------------------
def test_epoch_order_is_built_on_the_device_and_matches_the_distributed_sampler():
    order = epoch_order(100, 16, epoch=2, seed=5, rank=1, world_size=2, device=META)
    assert order.device == META and order.shape == (6, 8)
    cpu = epoch_order(100, 16, epoch=2, seed=5, rank=1, world_size=2)
    sampler = torch.utils.data.DistributedSampler(range(100), 2, 1, shuffle=True, seed=5, drop_last=True)
    sampler.set_epoch(2)
    assert cpu.flatten().tolist() == list(sampler)[:48]


class _CopySpy:
    """Records every host -> device copy (``Tensor.to`` from the CPU to another device) while active."""

    def __init__(self, monkeypatch):
        self.copies, self.active, orig = [], False, torch.Tensor.to

        def to(t, *a, **k):
            out = orig(t, *a, **k)
            if self.active and t.device.type == "cpu" and out.device.type != "cpu":
                self.copies.append(tuple(t.shape))
            return out
        monkeypatch.setattr(torch.Tensor, "to", to)


def _meta_run(cfg: SimCLRConfig, n: int = 48) -> Run:
    """A Run whose images, model, optimiser and augmentation live on ``meta``: any host sync raises there."""
    model = build_model(cfg).to(META).to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.optimizer, cfg.peak_lr(), cfg.weight_decay, cfg.momentum, cfg.lars_eta)
    return Run(cfg=cfg, device=META, rank=0, world_size=1,
                     images=torch.zeros(n, 3, 32, 32, dtype=torch.uint8, device=META), model=model, core=model,
                     optimizer=opt, scheduler=build_scheduler(opt, 100, 5),
                     scaler=runtime.make_grad_scaler(META, None), dtype=None,
                     augment=SimCLRAugment(32, 0.5).to(META), generator=None, steps_per_epoch=n // cfg.batch_size)


def test_step_loop_makes_no_host_sync_and_no_host_to_device_copy(tmp_path, monkeypatch, step_loop):
    cfg = _cfg(tmp_path, batch_size=8)
    run = _meta_run(cfg)
    order = epoch_order(48, 8, 0, device=META)  # the one copy of the epoch
    step_loop(run, order[:1], log=lambda *a: None)  # warm-up: per-device constants are cached once
    spy, logs = _CopySpy(monkeypatch), []
    spy.active = True
    loss_sum, z_all = step_loop(run, order, log=lambda *a: logs.append(a))  # .item() on meta would raise
    assert spy.copies == [] and run.step == 7 and len(logs) == 1 and z_all.shape == (16, cfg.proj_out_dim)


def test_fine_tune_crops_are_drawn_on_the_device(monkeypatch):
    images = torch.zeros(6, 3, 8, 8, dtype=torch.uint8, device=META)
    spy = _CopySpy(monkeypatch)
    spy.active = True
    out = random_crop_flip(images, pad=2)
    assert out.device == META and out.shape == images.shape and spy.copies == []


# --- 6. the generator must be on the images' device, index included ---------------------------------------------
def test_generator_on_another_gpu_is_refused():
    other = types.SimpleNamespace(device=torch.device("cuda", 1))
    with pytest.raises(ValueError, match="generator is on cuda:1 but the images are on cuda:0"):
        _check_generator(other, torch.device("cuda", 0))
    _check_generator(types.SimpleNamespace(device=torch.device("cuda", 0)), torch.device("cuda", 0))
    _check_generator(torch.Generator(), torch.device("cpu"))


# --- 7. each data set gets its paper defaults, flags override ----------------------------------------------------
def test_dataset_defaults_and_overrides():
    c, s = SimCLRConfig(), SimCLRConfig(dataset="stl10")
    assert (c.image_size, c.cifar_stem, c.blur, c.color_strength) == (32, True, False, 0.5)
    assert (s.image_size, s.cifar_stem, s.blur, s.color_strength) == (96, False, True, 1.0)
    s2 = SimCLRConfig(dataset="stl10", blur=False, cifar_stem=True, image_size=64, color_strength=0.5)
    assert (s2.image_size, s2.cifar_stem, s2.blur, s2.color_strength) == (64, True, False, 0.5)
    f = SimCLRConfig(dataset="folder", folder="x")
    assert f.image_size is None and f.for_image_size(128).blur and not f.for_image_size(32).blur


def test_cli_flags_reach_the_config(monkeypatch):
    from simclr_lib.cli import commands as cli

    seen = {}
    monkeypatch.setattr(train, "pretrain", lambda cfg, **kw: seen.setdefault("cfg", cfg) and
                        types.SimpleNamespace(metrics={}))
    cli.main(["pretrain", "--dataset", "stl10", "--no-blur", "--min-scale", "0.2", "--no-cifar-stem",
              "--proj-last-bn", "--zero-init-residual", "--out", "unused"])
    cfg = seen["cfg"]
    assert (cfg.image_size, cfg.blur, cfg.min_scale, cfg.cifar_stem, cfg.color_strength) == (96, False, 0.2, False, 1.0)
    assert cfg.proj_last_bn and cfg.zero_init_residual


def test_head_last_bn_and_zero_init_residual_options():
    cfg = SimCLRConfig(arch="resnet18", proj_last_bn=True, zero_init_residual=True)
    model = build_model(cfg)
    assert isinstance(model.head.net[-1], torch.nn.BatchNorm1d)
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for layer in (model.encoder.layer1, model.encoder.layer4)
               for b in layer)
    assert not isinstance(build_model(SimCLRConfig(arch="small")).head.net[-1], torch.nn.BatchNorm1d)


# --- fp16 + GradScaler and bf16 training steps on the CPU (CPU autocast supports both) --------------------------
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_runs_train_and_fp16_resume_restores_the_scaler(tmp_path, precision):
    cfg = _cfg(tmp_path, precision=precision, epochs=2, channels_last=False)

    def stop(record):
        return record["epoch"] == 1
    first = train.pretrain(cfg, callbacks=[stop])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["scaler"] is not None) == (precision == "fp16")
    if precision == "fp16":
        assert ckpt["scaler"]["scale"] > 0
        run = train.setup_run(cfg)
        train.resume_run(run, tmp_path / "run" / "checkpoints" / "last.pt")
        assert run.scaler.is_enabled() and run.scaler.get_scale() == ckpt["scaler"]["scale"]
    more = train.pretrain(cfg, resume=True)
    assert len(more.history) == 2 and torch.isfinite(torch.tensor([r["loss"] for r in more.history])).all()
    assert first.history[0] == more.history[0]


# --- issue 11, item 1: native bf16 on CPUs that have it --------------------------------------------------------
@pytest.mark.parametrize("avx512_bf16,amx,expected", [(True, False, torch.bfloat16), (False, True, torch.bfloat16),
                                                      (False, False, None)])
def test_auto_precision_on_a_cpu_follows_its_bf16_instructions(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu = torch.device("cpu")
    assert runtime.resolve_precision("auto", cpu) is expected
    assert runtime.resolve_precision("fp32", cpu) is None  # the switch back
    assert not runtime.make_grad_scaler(cpu, runtime.resolve_precision("auto", cpu)).is_enabled()


def test_auto_precision_without_the_cpu_probes_is_fp32(monkeypatch):
    """An older torch without the capability probes: no native bf16 claimed."""
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert runtime.resolve_precision("auto", torch.device("cpu")) is None
