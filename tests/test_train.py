"""pretrain(): outputs, exact resume, NaN stop, bad input, backends — all on the smoke preset on CPU."""
import json

import pytest
import torch

from simclr_lib.config import SimCLRConfig
from simclr_lib.runs.checkpoint import load_checkpoint
from simclr_lib.runs.registry import pretrained as load_model
from simclr_lib.train import pretrain


def _cfg(tmp_path, **kw):
    return SimCLRConfig.smoke(out_dir=str(tmp_path / "run"), device="cpu", **kw)


def test_smoke_run_writes_everything(tmp_path):
    res = pretrain(_cfg(tmp_path))
    out = tmp_path / "run"
    assert json.loads((out / "config.json").read_text())["arch"] == "small"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["epochs_run"] == 1 and len(metrics["history"]) == 1
    rec = res.history[0]
    assert torch.isfinite(torch.tensor(rec["loss"])) and 0 <= rec["knn_top1"] <= 1 and rec["views_per_s"] > 0
    assert list(out.glob("events.out.tfevents.*"))
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "step", "config"} <= set(ckpt)
    model, cfg, _ = load_model(out / "checkpoints" / "last.pt")
    assert cfg == res.config and not model.training


def test_interrupted_then_resumed_is_bit_identical(tmp_path):
    full = pretrain(_cfg(tmp_path / "a", epochs=3, knn_every=0))

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt
    cfg = _cfg(tmp_path / "b", epochs=3, knn_every=0)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, callbacks=[interrupt])
    assert load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["epoch"] == 2
    resumed = pretrain(cfg, resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _cfg(tmp_path, epochs=3, knn_every=0)

    def poison(record):
        if record["epoch"] == 1:
            with torch.no_grad():
                next(poison.model.parameters()).fill_(float("nan"))
    from simclr_lib import train as train_mod
    orig = train_mod._make_model

    def capture(*a, **k):
        model, core = orig(*a, **k)
        poison.model = core
        return model, core
    train_mod._make_model = capture
    try:
        with pytest.raises(FloatingPointError, match="loss became nan at epoch 2.*last good checkpoint") as e:
            pretrain(cfg, callbacks=[poison])
    finally:
        train_mod._make_model = orig
    assert "\n" not in str(e.value)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_batch_larger_than_dataset(tmp_path):
    with pytest.raises(ValueError, match="batch_size=512 is larger than the dataset"):
        pretrain(_cfg(tmp_path, batch_size=512))


def test_resume_with_other_settings_is_refused(tmp_path):
    pretrain(_cfg(tmp_path, knn_every=0))
    with pytest.raises(ValueError, match="cannot resume.*batch_size"):
        pretrain(_cfg(tmp_path, knn_every=0, batch_size=32), resume=True)


@pytest.mark.parametrize("kw", [dict(n_views=3), dict(optimizer="adamw"),
                                dict(optimizer="sgd", precision="bf16")])
def test_variants_train(tmp_path, kw):
    res = pretrain(_cfg(tmp_path, knn_every=0, **kw))
    assert torch.isfinite(torch.tensor(res.history[-1]["loss"]))


def test_loss_decreases_over_a_few_epochs(tmp_path):
    res = pretrain(_cfg(tmp_path, epochs=4, knn_every=0, lr=0.5))
    losses = [r["loss"] for r in res.history]
    assert losses[-1] < losses[0]


def test_a_callback_stop_leaves_the_stopped_epoch_in_the_checkpoint(tmp_path):
    """A run stopped by a callback (e.g. the quickstart's deadline) saves the epoch it stopped at."""
    cfg = _cfg(tmp_path, epochs=4, knn_every=0, checkpoint_every=10)
    res = pretrain(cfg, callbacks=[lambda r: r["epoch"] == 2])
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2 == len(res.history)
    assert all(torch.equal(v, res.model.state_dict()[k]) for k, v in ckpt["model"].items())


def test_pretrain_is_one_readable_loop_around_train_step():
    """Issue 18: the loop a reader opens calls make_views -> train_step -> the recorder's step, in that order,
    directly (the ``step_loop`` fixture of the no-host-sync tests runs exactly these calls)."""
    import inspect

    from simclr_lib import train as train_mod

    src = inspect.getsource(train_mod.pretrain)
    calls = [src.index(c) for c in ("setup_run(", "for epoch in", "for batch in order", "make_views(",
                                      "train_step(", "rec.step(", "rec.end_epoch(", "rec.finish(")]
    assert calls == sorted(calls)
    assert len(src.splitlines()) <= 60
