"""The learner's pieces train the model (issue 20, item 1): keep / collect / the per-image views / the loop."""
import json
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T

from simclr_lib.augment import SimCLRAugment, make_views
from simclr_lib.config import SimCLRConfig, build_model
from simclr_lib.data import load_dataset
from simclr_lib.loss import nt_xent
from simclr_lib.optim import build_optimizer
from simclr_lib.runs.registry import pretrained
from simclr_lib.runtime import make_grad_scaler
from simclr_lib.teaching import learner
from simclr_lib.train import train_step


def my_transform(size, strength):
    s = strength
    return T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
                      T.RandomGrayscale(p=0.2), T.ToTensor()])


def my_nt_xent(z, temperature):
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(z) // 2
    return F.cross_entropy(logits, (torch.arange(2 * n, device=z.device) + n) % (2 * n))


def my_train_step(model, views, optimizer, loss_fn, temperature):
    loss = loss_fn(model(views)[1], temperature)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def test_keep_writes_only_a_passing_function_and_collect_trains_with_it(tmp_path, capsys):
    def my_nt_xent_wrong(z, temperature):  # no self-mask: fails its checker
        zn = F.normalize(z, dim=1)
        return F.cross_entropy(zn @ zn.T / temperature, (torch.arange(len(z)) + len(z) // 2) % len(z))
    my_nt_xent_wrong.__name__ = "my_nt_xent"
    assert not learner.keep(my_nt_xent_wrong, tmp_path)
    assert "not kept" in capsys.readouterr().out and not (tmp_path / "loss.py").exists()
    assert learner.keep(my_nt_xent, tmp_path) and learner.keep(my_transform, tmp_path)
    assert (tmp_path / "loss.py").is_file() and (tmp_path / "augmentation.py").is_file()
    cfg = SimCLRConfig.smoke()
    pieces = learner.collect(cfg, torch.device("cpu"), my_train_step, folder=tmp_path)
    out = capsys.readouterr().out
    assert pieces.whose == {"augmentation": "YOURS", "loss": "YOURS", "step": "YOURS"}, out
    assert pieces.loss_fn.__module__.startswith("my_simclr_") and pieces.step_fn is my_train_step
    z = torch.randn(10, 8)
    assert torch.allclose(pieces.loss_fn(z, 0.5), nt_xent(z, 0.5), atol=1e-6)


def test_collect_falls_back_to_the_references_loudly(tmp_path, capsys):
    (tmp_path / "loss.py").write_text("def my_nt_xent(z, temperature):\n    return z.sum()\n")  # wrong
    (tmp_path / "augmentation.py").write_text("this is not python")
    def stub(model, views, optimizer, loss_fn, temperature):
        raise NotImplementedError
    pieces = learner.collect(SimCLRConfig.smoke(), torch.device("cpu"), stub, folder=tmp_path)
    out = capsys.readouterr().out
    assert pieces.whose == {"augmentation": "the library's batched SimCLRAugment", "loss": "the library's nt_xent",
                            "step": "the library's reference_step"}
    assert "could not be imported" in out and "does not pass its checker" in out and "not done yet" in out
    assert pieces.loss_fn is nt_xent and pieces.step_fn is learner.reference_step
    assert len(out.strip().splitlines()) == 3  # one line per piece, no traceback


def test_a_missing_folder_says_which_notebook_to_run(tmp_path, capsys):
    learner.collect(SimCLRConfig.smoke(), torch.device("cpu"), my_train_step, folder=tmp_path / "none")
    out = capsys.readouterr().out
    assert "notebook 01" in out and "notebook 02" in out


def test_a_loss_that_fails_on_the_device_falls_back(tmp_path, capsys):
    def load(piece, folder):  # the loss passed its checker on the CPU but fails on the training device
        return (lambda z, t: 1 / 0, "loss.py") if piece.file == "loss" else (None, "missing")
    with mock.patch.object(learner, "_load", side_effect=load):
        pieces = learner.collect(SimCLRConfig.smoke(), torch.device("meta"), my_train_step, folder=tmp_path)
    assert pieces.loss_fn is nt_xent and "fails on meta" in capsys.readouterr().out


def test_reference_step_is_train_step():
    """The learner's reference step against the library's training step (Algorithm 1), two steps."""
    torch.manual_seed(0)
    a = build_model(SimCLRConfig.smoke()).train()
    b = build_model(SimCLRConfig.smoke()).train()
    b.load_state_dict(a.state_dict())
    opts = [build_optimizer(m, "lars", 0.5, 1e-6, 0.9, 1e-3) for m in (a, b)]
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    for seed in (1, 2):
        views = make_views(images, SimCLRAugment(32, 0.5), 2, torch.Generator().manual_seed(seed))
        got = learner.reference_step(a, views, opts[0], nt_xent, 0.5)
        want, _ = train_step(b, views, opts[1], make_grad_scaler(torch.device("cpu"), None), 0.5)
        assert torch.allclose(got, want)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_per_image_views_are_view_major_floats_in_the_unit_range():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    v = learner.per_image_views(my_transform(24, 0.5), images, 2)
    assert v.shape == (10, 3, 24, 24) and v.dtype == torch.float32 and 0 <= v.min() and v.max() <= 1
    flip = T.Compose([T.RandomHorizontalFlip(p=0.0), T.PILToTensor()])  # uint8 out: scaled to [0, 1]
    same = learner.per_image_views(flip, images, 2)
    assert torch.allclose(same[:5], images.float() / 255) and torch.equal(same[:5], same[5:])


def test_train_simclr_records_random_init_first_and_writes_a_run(tmp_path):
    cfg = SimCLRConfig.smoke(epochs=2, knn_subset=64, knn_k=5)
    data = load_dataset("shapes", "train", subset=128)
    monitor = (load_dataset("shapes", "train", subset=64), load_dataset("shapes", "test", subset=64))
    pieces = learner.collect(cfg, torch.device("cpu"), my_train_step, folder=tmp_path / "none")
    torch.manual_seed(0)
    model = build_model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    hist = learner.train_simclr(model, data.images, pieces, cfg, monitor, minutes=5)
    assert [r["epoch"] for r in hist] == [0, 1, 2] and "loss" not in hist[0]
    assert hist[-1]["step"] == 2 * (128 // cfg.batch_size) and all(0 <= r["knn_top1"] <= 1 for r in hist)
    assert any(not torch.equal(p, q) for p, q in zip(before, model.parameters()))
    path = learner.write_run(hist, cfg, pieces, tmp_path / "run", model)
    saved = json.loads(path.read_text())
    assert saved["history"] == hist and saved["metrics"]["epochs_run"] == 2
    loaded, loaded_cfg, info = pretrained(tmp_path / "run", progress=False)  # what SIMCLR_OWN=1 studies
    assert info["history"] == hist and loaded_cfg == cfg
    assert all(torch.equal(p, q) for p, q in zip(loaded.parameters(), model.parameters()))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == cfg.batch_size


def test_train_simclr_stops_inside_its_budget_with_the_cosine_complete(tmp_path):
    """A budget of a few seconds on a long run: the loop stops by itself, its schedule at 0 (time-driven)."""
    cfg = SimCLRConfig.smoke(epochs=100, knn_subset=32, knn_k=5, batch_size=32, warmup_epochs=0)
    data = load_dataset("shapes", "train", subset=128)
    monitor = (load_dataset("shapes", "train", subset=32), load_dataset("shapes", "test", subset=32))
    pieces = learner.collect(cfg, torch.device("cpu"), my_train_step, folder=tmp_path / "none")
    hist = learner.train_simclr(build_model(cfg), data.images, pieces, cfg, monitor, minutes=0.1)
    assert hist[-1]["epoch"] < 100 and hist[-1]["seconds"] < 0.1 * 60 * 1.5
    assert hist[-1]["lr"] < 0.05 * cfg.peak_lr()


def test_keep_refuses_a_function_it_does_not_know():
    def other():
        pass
    with pytest.raises(ValueError, match="keep\\(\\) takes one of"):
        learner.keep(other)
