"""GPU-only checks (issue 8), skipped without CUDA (tests/conftest.py); run them on a GPU machine with
``pytest -m cuda tests/``. Their CPU stand-ins are in tests/test_device.py."""
import pytest
import torch

from simclr_lib import train
from simclr_lib.augment import SimCLRAugment
from simclr_lib.config import SimCLRConfig
from simclr_lib.data import epoch_order, make_shapes

pytestmark = pytest.mark.cuda


def _cfg(tmp_path, **kw):
    return SimCLRConfig.smoke(out_dir=str(tmp_path / "run"), device="cuda", knn_every=0, **kw)


def test_resume_on_cuda_continues_the_run(tmp_path):
    cfg = _cfg(tmp_path, epochs=2)
    train.pretrain(cfg, callbacks=[lambda r: r["epoch"] == 1])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    more = train.pretrain(cfg, resume=True)  # crashed with "RNG state must be a torch.ByteTensor"
    assert len(more.history) == 2 and more.history[0] == ckpt["history"][0]
    assert next(more.model.parameters()).device.type == "cuda"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_step_loop_has_no_host_sync(tmp_path, precision, step_loop):
    """``set_sync_debug_mode("error")`` raises on any synchronising call inside the step loop."""
    run = train.setup_run(_cfg(tmp_path, precision=precision, batch_size=32))
    order = epoch_order(len(run.images), 32, 0, device=run.device)
    step_loop(run, order[:2], log=lambda *a: None)  # warm-up: cuDNN plans, cached constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step_loop(run, order, log=lambda *a: None)  # the logging syncs are excluded
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_steps(tmp_path, precision):
    res = train.pretrain(_cfg(tmp_path, precision=precision, epochs=2))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in res.history)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["scaler"] is not None) == (precision == "fp16")


def test_auto_precision_is_native():
    major, _ = torch.cuda.get_device_capability()
    expected = torch.bfloat16 if major >= 8 else torch.float16
    from simclr_lib.runtime import resolve_precision

    assert resolve_precision("auto", torch.device("cuda")) is expected


def test_augmentation_on_cuda_matches_the_cpu():
    """The same parameters give the same views on both devices; the parameters have the same distribution."""
    images = make_shapes(256, 32, seed=0).images
    aug = SimCLRAugment(32, 0.5)
    params = aug.sample_params(256, 32, 32, generator=torch.Generator().manual_seed(0))
    cpu = aug.apply(images, params)
    gpu = aug.to("cuda").apply(images.cuda(), {k: v.cuda() for k, v in params.items()})
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)
    n = 200_000
    p_cpu = aug.sample_params(n, 32, 32, "cpu", torch.Generator().manual_seed(1))
    p_gpu = aug.sample_params(n, 32, 32, "cuda", torch.Generator("cuda").manual_seed(1))
    for key in ("area", "flip", "jitter", "gray"):
        a, b = p_cpu[key].float().mean().item(), p_gpu[key].float().mean().item()
        assert abs(a - b) < 0.01, (key, a, b)
