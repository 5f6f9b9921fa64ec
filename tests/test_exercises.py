"""The notebook exercise checkers accept the right answer and reject common wrong ones."""
import pytest
import torch
import torch.nn.functional as F

from simclr_lib.teaching import exercises as ex
from simclr_lib.evaluate import knn_predict
from simclr_lib.loss import nt_xent


def test_nt_xent_checker():
    assert ex.check_nt_xent(lambda z, t: nt_xent(z, t)).startswith("correct")

    def no_mask(z, t):  # forgets to mask the diagonal
        z = F.normalize(z, dim=1)
        n = len(z) // 2
        return F.cross_entropy(z @ z.T / t, (torch.arange(2 * n) + n) % (2 * n))
    with pytest.raises(AssertionError, match="self-similarity .* is still in the softmax"):
        ex.check_nt_xent(no_mask)

    def masked(z, t):
        z = F.normalize(z, dim=1)
        return (z @ z.T / t).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))

    interleaved = lambda z, t: F.cross_entropy(masked(z, t), torch.arange(len(z)) ^ 1)  # noqa: E731
    with pytest.raises(AssertionError, match="wrong column: the views are stacked view-major"):
        ex.check_nt_xent(interleaved)
    with pytest.raises(AssertionError, match="wrong column: it is"):
        ex.check_nt_xent(lambda z, t: F.cross_entropy(masked(z, t), (torch.arange(len(z)) + 1) % len(z)))
    with pytest.raises(AssertionError, match="division by tau"):
        ex.check_nt_xent(lambda z, t: nt_xent(z, 1.0) if t != 1.0 else nt_xent(z, 0.5))


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
    with pytest.raises(AssertionError, match="column 0 must hold the positive"):
        ex.check_logits_labels(neighbour_positive)

    def self_kept(z, t):  # drops one negative instead of the self-similarity
        sim, pos, m = parts(z, t)
        keep = torch.ones(m, m, dtype=torch.bool)
        keep[torch.arange(m), pos] = False
        keep[torch.arange(m), (pos + 1) % m] = False
        return torch.cat([sim[torch.arange(m), pos][:, None], sim[keep].view(m, m - 2)], 1), torch.zeros(m, dtype=torch.long)
    with pytest.raises(AssertionError, match="except itself and its positive"):
        ex.check_logits_labels(self_kept)
    with pytest.raises(AssertionError, match="every label is 0"):
        ex.check_logits_labels(lambda z, t: (info_nce_logits(z, t)[0], torch.ones(len(z), dtype=torch.long)))
    with pytest.raises(AssertionError, match=r"\(2N, 2N - 1\)"):
        ex.check_logits_labels(lambda z, t: (parts(z, t)[0], parts(z, t)[1]))


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
    with pytest.raises(AssertionError, match=r"end it with T.ToTensor\(\)"):  # a tensor-only last step
        ex.check_augmentation_pipeline(lambda size, s: T.Compose(pipeline(size, s).transforms[:4]
                                                                 + [T.ConvertImageDtype(torch.float32)]))
    with pytest.raises(AssertionError, match="in that order"):
        ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, order=(2, 0, 1, 3)))
    with pytest.raises(AssertionError, match="scales with the strength"):
        ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, jitter=(0.4, 0.4, 0.4, 0.1)))
    with pytest.raises(AssertionError, match="p=0.8"):
        ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, p=1.0))
    with pytest.raises(AssertionError, match="scale=\\(0.08, 1.0\\)"):
        ex.check_augmentation_pipeline(lambda size, s: pipeline(size, s, scale=(0.2, 1.0)))


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
    with pytest.raises(AssertionError, match="zero the gradients"):
        ex.check_train_step(no_zero_grad)

    def no_step(model, views, opt, loss_fn, tau):
        return loss_fn(model(views)[1], tau)
    with pytest.raises(AssertionError, match="first step"):
        ex.check_train_step(no_step)

    def library_loss(model, views, opt, loss_fn, tau):  # ignores the learner's loss it is given
        return right(model, views, opt, lambda z, t: nt_xent(z, t), tau)
    with pytest.raises(AssertionError, match="loss_fn you are given"):
        ex.check_train_step(library_loss)

    def on_h(model, views, opt, loss_fn, tau):  # the loss on the representation h, not the projection z
        return right(model, views, opt, lambda z, t: loss_fn(model(views)[0], t), tau)
    with pytest.raises(AssertionError, match="projection"):
        ex.check_train_step(on_h)


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
    with pytest.raises(AssertionError, match="fit the classifier on the training features only"):
        ex.check_linear_probe(lambda a, b, c, d, C: probe(a, b, c, d, C, fit_x=c, fit_y=d))
    with pytest.raises(AssertionError, match="standardise both sets"):
        ex.check_linear_probe(lambda a, b, c, d, C: probe(a, b, c, d, C, standardise=False))


def test_lars_checker():
    def right(w, g, wd, eta):
        g = g + wd * w
        wn, gn = w.norm(), g.norm()
        return (eta * wn / gn if wn > 0 and gn > 0 else 1.0) * g
    assert ex.check_lars_trust_ratio(right).startswith("correct")
    with pytest.raises(AssertionError):
        ex.check_lars_trust_ratio(lambda w, g, wd, eta: eta * w.norm() / (g + wd * w).norm() * (g + wd * w))


def test_knn_checker():
    assert ex.check_knn(lambda a, b, c, k: knn_predict(a, b, c, k=k, weighted=False)).startswith("correct")
    with pytest.raises(AssertionError, match="only"):
        ex.check_knn(lambda a, b, c, k: torch.zeros(len(c), dtype=torch.long))

    def euclidean(a, b, c, k):
        nearest = torch.cdist(c, a).topk(k, largest=False).indices
        return F.one_hot(b[nearest], 4).sum(1).argmax(1)
    with pytest.raises(AssertionError, match="Euclidean kNN"):
        ex.check_knn(euclidean)


def test_nearest_neighbours_checker():
    from simclr_lib.embed import nearest_neighbours

    assert ex.check_nearest_neighbours(lambda q, x, k: nearest_neighbours(q, x, k)).startswith("correct")

    def dot(q, x, k):  # raw dot product instead of cosine
        s = x[q] @ x.T
        s[torch.arange(len(q)), q] = -float("inf")
        return s.topk(k, dim=1).indices
    with pytest.raises(AssertionError, match="cosine"):
        ex.check_nearest_neighbours(dot)

    def with_self(q, x, k):  # the query is not excluded
        x = F.normalize(x, dim=1)
        return (x[q] @ x.T).topk(k, dim=1).indices
    with pytest.raises(AssertionError, match="own nearest"):
        ex.check_nearest_neighbours(with_self)


def test_negative_weights_checker_and_its_near_misses():
    def right(pos, neg, tau):
        return torch.softmax(torch.cat([pos[None], neg]) / tau, 0)[1:]

    assert ex.check_negative_weights(right).startswith("correct")
    with pytest.raises(AssertionError, match="positive is missing"):
        ex.check_negative_weights(lambda pos, neg, tau: torch.softmax(neg / tau, 0))
    with pytest.raises(AssertionError, match="divide the similarities by tau"):
        ex.check_negative_weights(lambda pos, neg, tau: torch.softmax(torch.cat([pos[None], neg]), 0)[1:])
    with pytest.raises(AssertionError, match="one weight per negative"):
        ex.check_negative_weights(lambda pos, neg, tau: torch.softmax(torch.cat([pos[None], neg]) / tau, 0))
