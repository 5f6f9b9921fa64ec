"""The notebook exercise checkers accept the right answer and reject common wrong ones."""
import re

import pytest
import torch
import torch.nn.functional as F

from simclr_lib.teaching import exercises as ex
from simclr_lib.evaluate import knn_predict
from simclr_lib.loss import nt_xent


def _wrong(verdict, pattern):
    """A checker's verdict on a wrong answer: false, one line, naming the near-miss (``pattern``)."""
    assert isinstance(verdict, ex.Verdict) and not verdict and verdict.startswith("not right yet: "), verdict
    assert "\n" not in verdict and re.search(pattern, verdict), verdict


def test_nt_xent_checker():
    assert ex.check_nt_xent(lambda z, t: nt_xent(z, t)).startswith("correct")

    def no_mask(z, t):  # forgets to mask the diagonal
        z = F.normalize(z, dim=1)
        n = len(z) // 2
        return F.cross_entropy(z @ z.T / t, (torch.arange(2 * n) + n) % (2 * n))
    _wrong(ex.check_nt_xent(no_mask), "self-similarity .* is still in the softmax")

    def masked(z, t):
        z = F.normalize(z, dim=1)
        return (z @ z.T / t).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))

    interleaved = lambda z, t: F.cross_entropy(masked(z, t), torch.arange(len(z)) ^ 1)  # noqa: E731
    _wrong(ex.check_nt_xent(interleaved), "wrong column: the views are stacked view-major")
    _wrong(ex.check_nt_xent(lambda z, t: F.cross_entropy(masked(z, t), (torch.arange(len(z)) + 1) % len(z))), "wrong column: it is")
    _wrong(ex.check_nt_xent(lambda z, t: nt_xent(z, 1.0) if t != 1.0 else nt_xent(z, 0.5)), "division by tau")


def test_logits_labels_checker():
    from simclr_lib.loss import info_nce_logits

    assert ex.check_logits_labels(lambda z, t: info_nce_logits(z, t)).startswith("correct")

    def parts(z, t):
        m, n = len(z), len(z) // 2
        zn = F.normalize(z, dim=1)
        return zn @ zn.T / t, (torch.arange(m) + n) % m, m

    def neighbour_positive(z, t):  # interleaved layout: the positive taken from the next row
        sim, pos, m = parts(z, t)
        wrong = torch.arange(m) ^ 1
        keep = ~torch.eye(m, dtype=torch.bool)
        keep[torch.arange(m), wrong] = False
        return torch.cat([sim[torch.arange(m), wrong][:, None], sim[keep].view(m, m - 2)], 1), torch.zeros(m, dtype=torch.long)
    _wrong(ex.check_logits_labels(neighbour_positive), "column 0 must hold the positive")

    def self_kept(z, t):  # drops one negative instead of the self-similarity
        sim, pos, m = parts(z, t)
        keep = torch.ones(m, m, dtype=torch.bool)
        keep[torch.arange(m), pos] = False
        keep[torch.arange(m), (pos + 1) % m] = False
        return torch.cat([sim[torch.arange(m), pos][:, None], sim[keep].view(m, m - 2)], 1), torch.zeros(m, dtype=torch.long)
    _wrong(ex.check_logits_labels(self_kept), "except itself and its positive")
    _wrong(ex.check_logits_labels(lambda z, t: (info_nce_logits(z, t)[0], torch.ones(len(z), dtype=torch.long))), "every label is 0")
    _wrong(ex.check_logits_labels(lambda z, t: (parts(z, t)[0], parts(z, t)[1])), r"\(2N, 2N - 1\)")


def test_augmentation_pipeline_checker_and_its_near_misses():
    import torchvision.transforms as T

    from simclr_lib.augment import reference_transform

    assert ex.check_augmentation_pipeline(lambda size, s: reference_transform(size, s)).startswith("correct")

    def pipeline(size, s, order=(0, 1, 2, 3), jitter=None, p=0.8, scale=(0.08, 1.0)):
        ops = [T.RandomResizedCrop(size, scale=scale, ratio=(3 / 4, 4 / 3)), T.RandomHorizontalFlip(),
               T.RandomApply([T.ColorJitter(*(jitter or (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)))], p=p),
               T.RandomGrayscale(p=0.2)]
        return T.Compose([ops[i] for i in order] + [T.ToTensor()])
    assert ex.check_augmentation_pipeline(pipeline).startswith("correct")
    tensor_only = lambda size, s: T.Compose(pipeline(size, s).transforms[:4] + [T.ConvertImageDtype(torch.float32)])  # noqa: E731
    _wrong(ex.check_augmentation_pipeline(tensor_only), r"end it with T.ToTensor\(\)")
    _wrong(ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, order=(2, 0, 1, 3))), "in that order")
    _wrong(ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, jitter=(0.4, 0.4, 0.4, 0.1))), "scales with the strength")
    _wrong(ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, p=1.0)), "p=0.8")
    _wrong(ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, scale=(0.2, 1.0))), "scale=\\(0.08, 1.0\\)")


def test_train_step_checker_and_its_near_misses():
    def right(model, views, opt, loss_fn, tau):
        loss = loss_fn(model(views)[1], tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()
    assert ex.check_train_step(right).startswith("correct")

    def no_zero_grad(model, views, opt, loss_fn, tau):
        loss = loss_fn(model(views)[1], tau)
        loss.backward()
        opt.step()
        return loss.detach()
    _wrong(ex.check_train_step(no_zero_grad), "zero the gradients")

    def no_step(model, views, opt, loss_fn, tau):
        return loss_fn(model(views)[1], tau)
    _wrong(ex.check_train_step(no_step), "first step")

    def library_loss(model, views, opt, loss_fn, tau):  # ignores the learner's loss it is given
        return right(model, views, opt, lambda z, t: nt_xent(z, t), tau)
    _wrong(ex.check_train_step(library_loss), "loss_fn you are given")

    def on_h(model, views, opt, loss_fn, tau):  # the loss on the representation h, not the projection z
        return right(model, views, opt, lambda z, t: loss_fn(model(views)[0], t), tau)
    _wrong(ex.check_train_step(on_h), "projection")


@pytest.mark.filterwarnings("ignore:lbfgs failed to converge")  # the unstandardised near-miss converges slowly
def test_linear_probe_checker_and_its_near_misses():
    from sklearn.linear_model import LogisticRegression

    def probe(train_x, train_y, test_x, test_y, C, fit_x=None, fit_y=None, standardise=True):
        mu, sd = train_x.mean(0), train_x.std(0)
        f = (lambda x: (x - mu) / sd) if standardise else (lambda x: x)
        clf = LogisticRegression(C=C, max_iter=1000)
        clf.fit(f(train_x if fit_x is None else fit_x).numpy(), (train_y if fit_y is None else fit_y).numpy())
        return float((clf.predict(f(test_x).numpy()) == test_y.numpy()).mean())
    assert ex.check_linear_probe(probe).startswith("correct")
    _wrong(ex.check_linear_probe(lambda a, b, c, d, C: probe(a, b, c, d, C, fit_x=c, fit_y=d)), "fit the classifier on the training features only")
    _wrong(ex.check_linear_probe(lambda a, b, c, d, C: probe(a, b, c, d, C, standardise=False)), "standardise both sets")


def test_lars_checker():
    def right(w, g, wd, eta):
        g = g + wd * w
        wn, gn = w.norm(), g.norm()
        return (eta * wn / gn if wn > 0 and gn > 0 else 1.0) * g
    assert ex.check_lars_trust_ratio(right).startswith("correct")
    _wrong(ex.check_lars_trust_ratio(lambda w, g, wd, eta: eta * w.norm() / (g + wd * w).norm() * (g + wd * w)),
           "trust = 1 when either norm is 0")


def test_knn_checker():
    assert ex.check_knn(lambda a, b, c, k: knn_predict(a, b, c, k=k, weighted=False)).startswith("correct")
    _wrong(ex.check_knn(lambda a, b, c, k: torch.zeros(len(c), dtype=torch.long)), "only")

    def euclidean(a, b, c, k):
        nearest = torch.cdist(c, a).topk(k, largest=False).indices
        return F.one_hot(b[nearest], 4).sum(1).argmax(1)
    _wrong(ex.check_knn(euclidean), "Euclidean kNN")


def test_nearest_neighbours_checker():
    from simclr_lib.embed import nearest_neighbours

    assert ex.check_nearest_neighbours(lambda q, x, k: nearest_neighbours(q, x, k)).startswith("correct")

    def dot(q, x, k):  # raw dot product instead of cosine
        s = x[q] @ x.T
        s[torch.arange(len(q)), q] = -float("inf")
        return s.topk(k, dim=1).indices
    _wrong(ex.check_nearest_neighbours(dot), "cosine")

    def with_self(q, x, k):  # the query is not excluded
        x = F.normalize(x, dim=1)
        return (x[q] @ x.T).topk(k, dim=1).indices
    _wrong(ex.check_nearest_neighbours(with_self), "own nearest")


def test_negative_weights_checker_and_its_near_misses():
    def right(pos, neg, tau):
        return torch.softmax(torch.cat([pos[None], neg]) / tau, 0)[1:]

    assert ex.check_negative_weights(right).startswith("correct")
    _wrong(ex.check_negative_weights(lambda pos, neg, tau: torch.softmax(neg / tau, 0)), "positive is missing")
    _wrong(ex.check_negative_weights(lambda pos, neg, tau: torch.softmax(torch.cat([pos[None], neg]), 0)[1:]), "divide the similarities by tau")
    _wrong(ex.check_negative_weights(lambda pos, neg, tau: torch.softmax(torch.cat([pos[None], neg]) / tau, 0)), "one weight per negative")
