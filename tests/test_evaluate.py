"""Linear evaluation, kNN, label fractions and end-to-end training against naive references and real CIFAR-10."""
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simclr_lib.data import CIFAR10_MEAN, CIFAR10_STD, balanced_indices, make_shapes
from simclr_lib.evaluate import (features, knn_accuracy, knn_predict, label_fraction_sweep, linear_probe,
                                 linear_probe_both, select_C)
from simclr_lib.models import Normalize, ProjectionHead, SimCLRModel, build_encoder
from simclr_lib.teaching.finetune import (crop_flip_at, fine_tune, images_per_epoch, labelled_subset,
                                          random_crop_flip, supervised_fraction_sweep, train_supervised)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

def _bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _images(n: int = 20, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_bit_identical(module: nn.Module, before: dict) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(after[k], before[k]), f"{k} changed"


# ---------------------------------------------------------------------------------------------------------------
# features: eval mode, nothing mutated, modes restored
# ---------------------------------------------------------------------------------------------------------------
def test_features_leave_weights_and_bn_buffers_bit_identical_and_restore_modes():
    net, x = _bn_net(), _images()
    net.train()
    before = _snapshot(net)
    features(net, x, batch_size=7)
    _assert_bit_identical(net, before)  # weights, running_mean/var and num_batches_tracked
    assert all(m.training for m in net.modules())
    net[1].eval()  # a mixed-mode module (e.g. a frozen BN) gets exactly its own flags back
    flags = [m.training for m in net.modules()]
    features(net, x)
    assert [m.training for m in net.modules()] == flags
    model = SimCLRModel(net, ProjectionHead(8, out_dim=3), feat_dim=8).train()  # the same for h and z of a model
    model.head.eval()
    before, flags = _snapshot(model), [m.training for m in model.modules()]
    for space in ("h", "z"):
        features(model, x, space, batch_size=7)
    _assert_bit_identical(model, before)
    assert [m.training for m in model.modules()] == flags


def test_the_buffer_check_catches_a_linear_evaluation_without_eval():
    """The seeds' "linear evaluation" runs the encoder in train mode under no_grad: BN statistics drift."""
    net, x = _bn_net(), _images()
    before = _snapshot(net)
    with torch.no_grad():
        net(x.float() / 255)  # what a missing model.eval() does
    with pytest.raises(AssertionError, match="running_mean|running_var|num_batches_tracked"):
        _assert_bit_identical(net, before)


def test_features_equal_one_batch_eval_forward_and_z_applies_the_head():
    net, x = _bn_net(), _images(23)
    net.train()
    with torch.no_grad():  # warm the BN buffers so eval-mode statistics are not the identity
        net(torch.randn(64, 3, 8, 8) * 2 + 1)
    encoder = nn.Sequential(Normalize(CIFAR10_MEAN, CIFAR10_STD), net)  # models normalise their own [0, 1] input
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net.eval()((x.float() / 255 - mean) / std)
    net.train()
    feats = features(encoder, x, batch_size=5)
    assert feats.shape == (23, 8) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert torch.allclose(feats, ref, atol=1e-6)
    head = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    model = SimCLRModel(encoder, head, feat_dim=8)
    assert torch.allclose(features(model, x, "h", batch_size=5), ref, atol=1e-6)  # h: the head is not applied
    with torch.no_grad():
        ref_z = head.eval()(ref)
    head.train()
    assert torch.allclose(features(model, x, "z"), ref_z, atol=1e-5)
    assert net.training and head.training


def test_features_reject_bad_input():
    net = _bn_net()
    with pytest.raises(ValueError, match="uint8"):
        features(net, torch.rand(4, 3, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        features(net, _images(0))
    with pytest.raises(ValueError, match="space='w'"):
        features(net, _images(4), "w")
    with pytest.raises(ValueError, match="SimCLRModel"):  # z needs the model's head g
        features(net, _images(4), "z")

    class Both(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.mean((2, 3))
    with pytest.raises(ValueError, match="SimCLRModel or an encoder"):
        features(Both(), _images(4))


# ---------------------------------------------------------------------------------------------------------------
# kNN against a loop
# ---------------------------------------------------------------------------------------------------------------
def _knn_naive(train_x, train_y, test_x, k, temperature, weighted):
    """One test point at a time, float64, explicit sort and vote; ties go to the lowest class."""
    preds = []
    for q in test_x.double():
        sims = [(float(q @ t) / float(q.norm() * t.norm()), int(c)) for t, c in zip(train_x.double(), train_y)]
        sims.sort(key=lambda s: -s[0])
        votes = {}
        for sim, c in sims[:k]:
            votes[c] = votes.get(c, 0.0) + (math.exp(sim / temperature) if weighted else 1.0)
        best = max(votes.values())
        preds.append(min(c for c, v in votes.items() if v >= best * (1 - 1e-9)))
    return torch.tensor(preds)


@pytest.mark.parametrize("k,weighted,chunk", [(1, True, 256), (7, True, 5), (20, False, 3), (60, True, 64)])
def test_knn_equals_naive_loop(k, weighted, chunk):
    g = torch.Generator().manual_seed(k)
    train_x, test_x = torch.randn(60, 6, generator=g), torch.randn(25, 6, generator=g)
    train_y = torch.randint(0, 4, (60,), generator=g)
    ours = knn_predict(train_x, train_y, test_x, k=k, temperature=0.1, weighted=weighted, chunk_size=chunk)
    assert torch.equal(ours, _knn_naive(train_x, train_y, test_x, k, 0.1, weighted))
    test_y = torch.randint(0, 4, (25,), generator=g)
    acc = knn_accuracy(train_x, train_y, test_x, test_y, k=k, weighted=weighted, chunk_size=chunk)
    assert acc == pytest.approx((ours == test_y).float().mean().item())


def test_knn_rejects_k_larger_than_train():
    with pytest.raises(ValueError, match="k=11"):
        knn_accuracy(torch.randn(10, 4), torch.zeros(10, dtype=torch.long), torch.randn(3, 4),
                     torch.zeros(3, dtype=torch.long), k=11)


# ---------------------------------------------------------------------------------------------------------------
# Linear probe and label fractions
# ---------------------------------------------------------------------------------------------------------------
def _blobs(n: int, d: int = 10, classes: int = 4, spread: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * 2
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + spread * torch.randn(n, d, generator=g) + 5.0, y  # offset: standardisation must undo it


def test_probe_separates_blobs_and_backends_solve_the_same_problem():
    xtr, ytr = _blobs(400)
    xte, yte = _blobs(200, seed=1)
    res = linear_probe_both(xtr, ytr, xte, yte, C=0.5)
    for b in ("torch", "sklearn"):
        assert res[b]["top1"] > 0.9 and res[b]["backend"] == b and res[b]["seconds"] > 0
    assert res["gap_points"] <= 1.0
    assert abs(res["torch"]["train_top1"] - res["sklearn"]["train_top1"]) <= 0.01


def test_probe_rejects_bad_input():
    x, y = _blobs(20)
    with pytest.raises(ValueError, match="backend"):
        linear_probe(x, y, x, y, backend="svm")
    with pytest.raises(ValueError, match="labels"):
        linear_probe(x, y.float(), x, y)
    with pytest.raises(ValueError, match="D=10"):
        linear_probe(x, y, x[:, :5], y)


def test_balanced_indices_take_the_same_count_from_every_class():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = balanced_indices(y, per_class=7, seed=1)
    assert [int((y[idx] == c).sum()) for c in range(3)] == [7, 7, 7] and len(set(idx.tolist())) == 21
    idx = balanced_indices(y, fraction=0.1)
    assert [int((y[idx] == c).sum()) for c in range(3)] == [5, 3, 2]
    assert torch.equal(balanced_indices(y, fraction=1.0), torch.arange(100))
    with pytest.raises(ValueError, match="exactly one"):
        balanced_indices(y, per_class=3, fraction=0.5)


def test_select_C_returns_the_best_validation_score():
    x, y = _blobs(300, spread=3.0)
    best, scores = select_C(x, y, (1e-4, 0.1, 10.0))
    assert [s[0] for s in scores] == [1e-4, 0.1, 10.0]
    assert best == max(scores, key=lambda s: s[1])[0]
    res = linear_probe(x, y, x, y, C=[1e-4, 0.1])
    assert res["C"] in (1e-4, 0.1) and len(res["C_val_top1"]) == 2


@pytest.fixture(scope="module")
def cifar_pixels():
    """8x8 average-pooled pixels (192-D) of 3000 CIFAR-10 test images: 2000 to fit, 1000 to test."""
    data_dir = os.environ.get("SIMCLR_DATA_DIR")
    if not data_dir or not (Path(data_dir) / "cifar10" / "test").is_dir():
        pytest.skip("real CIFAR-10 not found: set SIMCLR_DATA_DIR to the folder holding cifar10/{train,test}")
    from simclr_lib.data import load_dataset

    data = load_dataset("cifar10", "test", data_dir, progress=False)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:3000]  # files are class-sorted
    x = F.avg_pool2d(data.images[idx].float() / 255, 4).flatten(1)  # 3000 x 192
    return x[:2000], data.labels[idx[:2000]], x[2000:], data.labels[idx[2000:]], data.images[idx]


def test_probe_on_cifar_pixels_beats_chance_and_backends_agree(cifar_pixels):
    xtr, ytr, xte, yte, _ = cifar_pixels
    res = linear_probe_both(xtr, ytr, xte, yte, C=0.1)
    assert res["torch"]["top1"] > 0.3 and res["sklearn"]["top1"] > 0.3  # chance is 0.1
    assert res["gap_points"] <= 2.0
    assert 0.3 < knn_accuracy(xtr, ytr, xte, yte, k=20) < 1.0


def test_label_fraction_sweep_is_balanced_and_more_labels_do_not_hurt(cifar_pixels):
    xtr, ytr, xte, yte, _ = cifar_pixels
    rows = label_fraction_sweep(xtr, ytr, xte, yte, fractions=(0.02, 0.2, 1.0), C=0.1)
    assert [r["fraction"] for r in rows] == [0.02, 0.2, 1.0]
    assert rows[0]["n_labels"] < rows[1]["n_labels"] < rows[2]["n_labels"] == 2000
    assert rows[2]["top1"] > rows[0]["top1"] + 0.05 and rows[2]["top1"] >= rows[1]["top1"] - 0.02
    rows = label_fraction_sweep(xtr, ytr, xte, yte, per_class=(5,), C=0.1)
    assert rows[0]["per_class"] == 5 and rows[0]["n_labels"] == 50 and rows[0]["top1"] > 0.1


def _clusters(n: int, seed: int, k: int = 4, d: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """k Gaussian classes in d dimensions, features of very different scales (class means fixed, noise seeded)."""
    means = 0.35 * torch.randn(k, d, generator=torch.Generator().manual_seed(0))
    y = torch.arange(n) % k
    return means[y] + torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * torch.linspace(0.2, 3, d), y


def _naive_fraction_point(x, y, xte, yte, fraction, Cs, seed=0):
    """Reference: the balanced subset, its balanced 80 / 20 split, scikit-learn on each C by hand, refit the best."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def score(a, ya, b, yb, c):
        scaler = StandardScaler().fit(a.double().numpy())
        clf = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(a.double().numpy()), ya.numpy())
        return float((clf.predict(scaler.transform(b.double().numpy())) == yb.numpy()).mean())

    idx = balanced_indices(y, fraction=fraction, seed=seed)
    xs, ys = x[idx], y[idx]
    fit = balanced_indices(ys, fraction=0.8, seed=seed).tolist()
    val = [i for i in range(len(ys)) if i not in set(fit)]
    val_top1 = [score(xs[fit], ys[fit], xs[val], ys[val], c) for c in Cs]
    best = Cs[int(np.argmax(val_top1))]  # ties: the first
    return len(idx), best, val_top1, score(xs, ys, xte, yte, best)


def test_label_fraction_sweep_chooses_C_on_each_subsets_validation_part_like_a_naive_reference():
    (x, y), (xte, yte) = _clusters(2000, 1), _clusters(1000, 2)
    Cs, fractions = (0.001, 0.01, 0.1, 1.0, 10.0), (0.02, 0.2, 1.0)
    rows = label_fraction_sweep(x, y, xte, yte, fractions=fractions, C=Cs, backend="sklearn")
    for row, fraction in zip(rows, fractions):
        n, best, val_top1, top1 = _naive_fraction_point(x, y, xte, yte, fraction, Cs)
        assert row["fraction"] == fraction and row["n_labels"] == n and row["C"] == best
        assert [c for c, _ in row["C_val_top1"]] == list(Cs)
        assert [a for _, a in row["C_val_top1"]] == pytest.approx(val_top1, abs=1e-6)
        assert row["top1"] == pytest.approx(top1, abs=2e-3)
    assert len({r["C"] for r in rows}) > 1  # each fraction chose its own C
    torch_rows = label_fraction_sweep(x, y, xte, yte, fractions=fractions, C=Cs)  # the default backend agrees
    assert [r["top1"] for r in torch_rows] == pytest.approx([r["top1"] for r in rows], abs=0.01)
    single = label_fraction_sweep(x, y, xte, yte, fractions=(0.2,), C=0.1)[0]
    assert single["C"] == 0.1 and "C_val_top1" not in single


def test_random_encoder_features_of_cifar_beat_chance(cifar_pixels):
    *_, images = cifar_pixels
    torch.manual_seed(0)
    encoder, dim = build_encoder("small", cifar_stem=True)
    before = _snapshot(encoder)
    labels = cifar_pixels[1].tolist() + cifar_pixels[3].tolist()
    feats = features(encoder.train(), images, batch_size=500)
    _assert_bit_identical(encoder, before)
    assert feats.shape == (3000, dim) and encoder.training
    labels = torch.tensor(labels)
    res = linear_probe(feats[:2000], labels[:2000], feats[2000:], labels[2000:], C=0.1)
    assert res["top1"] > 0.2


# ---------------------------------------------------------------------------------------------------------------
# End-to-end training (supervised baseline, fine-tuning)
# ---------------------------------------------------------------------------------------------------------------
def test_crop_flip_equals_a_loop_of_slices():
    x = _images(6, size=5, seed=3)
    g = torch.Generator().manual_seed(0)
    off_y, off_x, flip = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g), \
        torch.tensor([True, False, True, False, True, True])
    out = crop_flip_at(x, 2, off_y, off_x, flip)
    for i in range(6):
        padded = torch.zeros(3, 9, 9, dtype=torch.uint8)
        padded[:, 2:7, 2:7] = x[i]
        ref = padded[:, off_y[i]:off_y[i] + 5, off_x[i]:off_x[i] + 5]
        assert torch.equal(out[i], ref.flip(-1) if flip[i] else ref)
    assert random_crop_flip(x, 2, torch.Generator().manual_seed(1)).shape == x.shape


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(192, size=16, seed=0, split="train"), make_shapes(64, size=16, seed=0, split="test")


@pytest.mark.parametrize("fn", [train_supervised, fine_tune])
def test_end_to_end_training_returns_sane_results_and_leaves_the_encoder_alone(shapes, fn):
    train, test = shapes
    torch.manual_seed(0)
    encoder, dim = build_encoder("small", cifar_stem=True)
    before = _snapshot(encoder)
    res = fn(encoder, dim, train, test, epochs=2, batch_size=64, device="cpu", progress=False)
    _assert_bit_identical(encoder, before)
    assert res["mode"] == ("supervised" if fn is train_supervised else "fine_tune")
    assert 0.0 <= res["top1"] <= 1.0 and 0.0 <= res["train_top1"] <= 1.0 and math.isfinite(res["loss"])
    assert [h["epoch"] for h in res["history"]] == [1, 2] and res["history"][-1]["lr"] < res["history"][0]["lr"]
    assert res["images_per_s"] > 0 and res["epochs"] == 2
    model = res["model"]
    trained = model[0].state_dict()
    assert model.training and any(not torch.equal(trained[k], before[k]) for k in before)
    again = fn(encoder, dim, train, test, epochs=2, batch_size=64, device="cpu", progress=False)
    assert again["loss"] == res["loss"] and again["top1"] == res["top1"]  # seeded


def test_eval_every_scores_the_test_set_per_epoch_without_changing_the_training(shapes):
    train, test = shapes
    torch.manual_seed(0)
    encoder, dim = build_encoder("small", cifar_stem=True)
    kw = dict(epochs=3, batch_size=64, device="cpu", progress=False)
    plain = train_supervised(encoder, dim, train, test, **kw)
    curve = train_supervised(encoder, dim, train, test, eval_every=1, **kw)
    assert "test_top1" not in plain["history"][0]
    assert [h["epoch"] for h in curve["history"] if "test_top1" in h] == [1, 2, 3]
    assert curve["history"][-1]["test_top1"] == curve["top1"]  # the last point is the reported number
    assert [h["loss"] for h in curve["history"]] == [h["loss"] for h in plain["history"]]  # eval mode, no RNG used
    every2 = train_supervised(encoder, dim, train, test, eval_every=2, **kw)
    assert [h["epoch"] for h in every2["history"] if "test_top1" in h] == [2]


def test_images_per_epoch_counts_whole_batches_only():
    assert images_per_epoch(500, 256) == 256 and images_per_epoch(5000, 250) == 5000
    assert images_per_epoch(51, 250) == 51 and images_per_epoch(100, 100) == 100


def test_supervised_fraction_sweep_trains_from_scratch_on_the_probes_labels_at_equal_compute(shapes):
    train, test = shapes  # 8 classes, 24 training images each
    torch.manual_seed(0)
    encoder, dim = build_encoder("small", cifar_stem=True)
    before = _snapshot(encoder)
    rows = supervised_fraction_sweep(encoder, dim, train, test, (0.25, 1.0), images_seen=192, batch_size=16,
                                     curve_fraction=0.25, device="cpu", progress=False)
    _assert_bit_identical(encoder, before)
    feats = torch.zeros(len(train), 2)
    probe_rows = label_fraction_sweep(feats, train.labels, feats[:8], test.labels[:8], (0.25, 1.0), C=1.0)
    assert [r["n_labels"] for r in rows] == [r["n_labels"] for r in probe_rows] == [48, 192]
    assert [r["epochs"] for r in rows] == [4, 1] and [r["images_seen"] for r in rows] == [192, 192]
    assert [h["epoch"] for h in rows[0]["history"] if "test_top1" in h] == [1, 2, 3, 4]
    assert not any("test_top1" in h for h in rows[1]["history"]) and "model" not in rows[0]
    assert all(r["mode"] == "supervised" and 0 <= r["top1"] <= 1 for r in rows)
    part = labelled_subset(train, 0.25)  # the same labels as the probe's subset, and as the run's
    idx = balanced_indices(train.labels, fraction=0.25)
    assert torch.equal(part.labels, train.labels[idx]) and torch.equal(part.images, train.images[idx])
    alone = train_supervised(encoder, dim, part, test, epochs=4, batch_size=16, device="cpu", progress=False)
    assert alone["top1"] == rows[0]["top1"] and alone["images_seen"] == 192  # same seed, same run
    with pytest.raises(ValueError, match="images_seen"):
        supervised_fraction_sweep(encoder, dim, train, test, (1.0,), images_seen=0, device="cpu")


def test_end_to_end_training_rejects_unlabelled_data(shapes):
    train, test = shapes
    encoder, dim = build_encoder("small", cifar_stem=True)
    unlabelled = type(train)(train.images, None, [], "unlabelled")
    with pytest.raises(ValueError, match="needs labels"):
        train_supervised(encoder, dim, unlabelled, test, epochs=1, device="cpu", progress=False)


def test_state_snapshot_sees_bn_buffers_change_in_train_mode_only():
    from simclr_lib.evaluate import changed_state, state_snapshot

    net = _bn_net()
    before = state_snapshot(net)
    features(net, _images())
    assert changed_state(before, net) == []
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 8, 8))
    assert changed_state(before, net) == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    with pytest.raises(ValueError):
        changed_state({}, net)
