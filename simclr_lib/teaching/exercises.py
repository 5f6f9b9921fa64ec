"""Checkers for the notebooks' exercises: each runs the reader's function against the library on fresh inputs.

Every checker returns a one-line :class:`Verdict` (so ``print(check(fn))`` shows one line, never a traceback):
"correct: ...", or "not right yet: " with the near-miss it found and a hint, e.g.::

    from simclr_lib.teaching.exercises import check_nt_xent
    check_nt_xent(my_vectorised_loss)   # -> "correct: matches nt_xent on 6 random batches"

In the student edition (``notebooks/student/``, made by `tools/student.py`) the reader's function is still a
stub that raises ``NotImplementedError``; then the verdict is "not done yet: ..." (:func:`one_line_verdict`). A
verdict is true only when the answer is right. A ``NotImplementedError`` from the library itself is not caught.
"""
from __future__ import annotations

import copy
import functools
from typing import Callable

import torch
import torch.nn.functional as F

from simclr_lib.embed import nearest_neighbours
from simclr_lib.evaluate import knn_predict, linear_probe
from simclr_lib.loss import nt_xent
from simclr_lib.optim import LARS

NOT_DONE = "not done yet: {name} raises NotImplementedError; write it above and run this cell again"


class _NotDone(Exception):
    """The reader's function raised ``NotImplementedError`` (its student-edition stub); carries its name."""


def _stub_aware(fn: Callable) -> Callable:
    """``fn`` with its own ``NotImplementedError`` turned into :class:`_NotDone`, so that only the reader's
    function, never the checker's or the library's code, can make a checker say "not done yet"."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as e:
            raise _NotDone(getattr(fn, "__name__", "your function")) from e
    return call


class Verdict(str):
    """A checker's verdict, one line: it prints as its text and is true only when the answer is right."""
    ok: bool

    def __new__(cls, text: str, ok: bool) -> "Verdict":
        verdict = super().__new__(cls, text)
        verdict.ok = ok
        return verdict

    def __bool__(self) -> bool:
        return self.ok


def one_line_verdict(check: Callable[..., str]) -> Callable[..., Verdict]:
    """Decorator for a checker ``check(fn, ...)``: it returns a :class:`Verdict`, one line with no traceback:
    "correct: ..." (true); "not right yet: <the near-miss and its hint>" when ``check`` finds the answer wrong
    (false); :data:`NOT_DONE` when ``fn`` is still the student edition's stub (false). A crash inside the
    reader's own function still raises, with its traceback (that is where its bug is).

    Args:
        check: a checker whose first argument is the reader's function; it raises ``AssertionError`` with a hint.

    Returns:
        The wrapped checker (same name and docstring).
    """
    @functools.wraps(check)
    def run(fn: Callable, *args, **kwargs) -> Verdict:
        try:
            return Verdict(check(_stub_aware(fn), *args, **kwargs), True)
        except _NotDone as e:
            return Verdict(NOT_DONE.format(name=e.args[0]), False)
        except AssertionError as e:
            return Verdict("not right yet: " + " ".join(str(e).split()), False)
    return run


def _batches(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for n, v, d, tau in ((4, 2, 8, 0.5), (7, 2, 16, 0.1), (5, 2, 3, 1.0), (16, 2, 32, 0.07), (3, 3, 8, 0.5),
                         (1, 2, 4, 0.2)):
        yield torch.randn(v * n, d, generator=g), tau, v


def _nt_xent_near_misses(z: torch.Tensor, tau: float) -> dict[str, torch.Tensor]:
    """The two-view losses learners write by mistake, each with the hint that fixes it.

    Shape: z (2N, D) -> {hint: scalar loss}.
    """
    m, n = len(z), len(z) // 2
    zn = F.normalize(z, dim=1)
    full = zn @ zn.T / tau  # 2N x 2N, the diagonal kept
    masked = full.masked_fill(torch.eye(m, dtype=torch.bool), float("-inf"))
    rows = torch.arange(m)
    return {"the self-similarity (always 1 / tau) is still in the softmax: set the diagonal to -inf before the "
            "cross-entropy (the self-mask, k != i in Eq. 1)": F.cross_entropy(full, (rows + n) % m),
            "the positive of row i sits in the wrong column: the views are stacked view-major (torch.cat(views)), "
            "so row i's positive is column (i + N) mod 2N, not a neighbouring row": F.cross_entropy(masked, rows ^ 1),
            "the positive of row i sits in the wrong column: it is (i + N) mod 2N, the same image's other view, "
            "not column i + 1": F.cross_entropy(masked, (rows + 1) % m)}


@one_line_verdict
def check_nt_xent(fn: Callable[[torch.Tensor, float], torch.Tensor], n_views: int = 2) -> str:
    """Exercise of notebook 02: ``fn(z, temperature)`` must equal :func:`~simclr_lib.loss.nt_xent` (2 views); a
    loss without the self-mask, or with the positive in the wrong column, gets its own hint."""
    count = 0
    for z, tau, v in _batches():
        if v != n_views:
            continue
        got, want = fn(z.clone(), tau), nt_xent(z, tau, v)
        assert torch.is_tensor(got) and got.numel() == 1, "return a scalar tensor (the mean over all 2N anchors)"
        got = got.detach().float().reshape(())
        if not torch.allclose(got, want, atol=1e-5):
            for hint, miss in _nt_xent_near_misses(z, tau).items():
                assert not torch.allclose(got, miss, atol=1e-5), hint
            raise AssertionError(f"N={len(z) // v}, tau={tau}: got {got.item():.6f}, want {want.item():.6f}; check "
                                 "the self-mask (diagonal -inf), the positive of row i ((i + N) mod 2N) and the "
                                 "division by tau")
        count += 1
    return f"correct: matches nt_xent on {count} random batches"


@one_line_verdict
def check_logits_labels(fn: Callable[[torch.Tensor, float], tuple]) -> str:
    """Exercise of notebook 02: ``fn(z, temperature)`` returns the seed code's (logits, labels) for two views: row i
    holds sim(z_i, z_(i+N) mod 2N) / tau in column 0, then its 2N - 2 negatives / tau (any order); every label is 0.
    Its cross-entropy is NT-Xent."""
    count = 0
    for z, tau, v in _batches():
        if v != 2:
            continue
        m, n = len(z), len(z) // 2
        logits, labels = fn(z.clone(), tau)
        assert tuple(logits.shape) == (m, m - 1), (
            f"logits must be (2N, 2N - 1) = {(m, m - 1)}: per anchor its positive, then its 2N - 2 negatives "
            f"(no self-similarity), got {tuple(logits.shape)}")
        labels = torch.as_tensor(labels).reshape(-1)
        assert labels.shape == (m,) and bool((labels == 0).all()), "every label is 0: the positive sits in column 0"
        zn = F.normalize(z, dim=1)
        sim = zn @ zn.T / tau  # 2N x 2N
        pos = (torch.arange(m) + n) % m
        assert torch.allclose(logits[:, 0].float(), sim[torch.arange(m), pos], atol=1e-5), (
            "column 0 must hold the positive, sim(z_i, z_(i+N) mod 2N) / tau: view-major rows i and i + N are one image")
        keep = ~torch.eye(m, dtype=torch.bool)
        keep[torch.arange(m), pos] = False
        want = sim[keep].view(m, m - 2).sort(dim=1).values
        assert torch.allclose(logits[:, 1:].float().sort(dim=1).values, want, atol=1e-5), (
            "columns 1 .. 2N - 2 must be the anchor's negatives / tau: every other view except itself and its positive")
        assert torch.allclose(F.cross_entropy(logits.float(), labels.long()), nt_xent(z, tau), atol=1e-5)
        count += 1
    return f"correct: the cross-entropy of your logits and all-zero labels equals nt_xent on {count} random batches"


def _pipeline_errors(t, size: int, s: float) -> list[str]:
    """What differs between a torchvision Compose and App. A's augmentation at ``size`` and strength ``s``."""
    import torchvision.transforms as T

    ops = list(getattr(t, "transforms", []))  # a to-tensor step may follow the four
    kinds = [type(op).__name__ for op in ops]
    want = ["RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "RandomGrayscale"]
    if kinds[:4] != want:
        return [f"return T.Compose([{', '.join(want)}, ...]) in that order (crop first, colour after), got {kinds}"]
    crop, flip, jitter, grey = ops[:4]
    errors = []
    if list(crop.size) != [size, size] or tuple(crop.scale) != (0.08, 1.0) or not all(
            abs(a - b) < 1e-6 for a, b in zip(crop.ratio, (3 / 4, 4 / 3))):
        errors.append(f"crop: RandomResizedCrop({size}, scale=(0.08, 1.0), ratio=(3/4, 4/3))")
    if flip.p != 0.5:
        errors.append("flip: RandomHorizontalFlip() with p = 0.5")
    cj = jitter.transforms[0] if len(jitter.transforms) == 1 else None
    if not isinstance(cj, T.ColorJitter) or abs(jitter.p - 0.8) > 1e-9:
        errors.append("colour: RandomApply([ColorJitter(...)], p=0.8)")
    else:
        b = 0.8 * s
        expect = dict(brightness=(max(0.0, 1 - b), 1 + b), contrast=(max(0.0, 1 - b), 1 + b),
                      saturation=(max(0.0, 1 - b), 1 + b), hue=(-0.2 * s, 0.2 * s))
        for k, (lo, hi) in expect.items():
            got = getattr(cj, k)
            if (got is None and hi - lo > 0) or (got is not None and not (abs(got[0] - lo) < 1e-6 and abs(got[1] - hi) < 1e-6)):
                errors.append(f"colour: ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) scales with the strength s ({k})")
                break
    if abs(grey.p - 0.2) > 1e-9:
        errors.append("greyscale: RandomGrayscale(p=0.2)")
    return errors


@one_line_verdict
def check_augmentation_pipeline(fn: Callable[[int, float], object]) -> str:
    """Exercise of notebook 01: ``fn(size, strength)`` composes the paper's augmentation (App. A) with
    torchvision: random resized crop, horizontal flip, colour jitter of strength s with p = 0.8, greyscale with
    p = 0.2, in that order, then ``ToTensor``; checked for two sizes and strengths, then run on a PIL image."""
    for size, s in ((32, 0.5), (96, 1.0)):
        errors = _pipeline_errors(fn(size, s), size, s)
        assert not errors, f"size {size}, strength {s}: " + "; ".join(errors)
    from PIL import Image

    img = torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    try:
        out = fn(32, 0.5)(Image.fromarray(img.numpy()))  # a PIL image, as a torchvision data set gives it
    except TypeError as e:
        raise AssertionError(f"the pipeline gets PIL images, as a torchvision data set gives them; end it with "
                             f"T.ToTensor() ({e})") from None
    assert torch.is_tensor(out) and out.is_floating_point(), (
        f"end the pipeline with T.ToTensor(): a view must be a float tensor in [0, 1], got {type(out).__name__}")
    assert tuple(out.shape) == (3, 32, 32), f"one view must be (3, 32, 32), got {tuple(out.shape)}"
    return "correct: the paper's crop, flip, colour jitter (p = 0.8) and greyscale (p = 0.2), in order, at two strengths"


@one_line_verdict
def check_lars_trust_ratio(fn: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]) -> str:
    """Exercise of notebook 03: ``fn(w, g, weight_decay, eta)`` returns the LARS update direction trust * (g + wd w)
    for one weight matrix (trust = eta ||w|| / ||g + wd w||, 1 when a norm is 0)."""
    gen = torch.Generator().manual_seed(2)
    cases = [(torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)),
             (torch.zeros(3, 3), torch.randn(3, 3, generator=gen)), (torch.randn(5, 2, generator=gen), torch.zeros(5, 2))]
    for w, g in cases:
        p = torch.nn.Parameter(w.clone())
        p.grad = g.clone()
        LARS([p], lr=1.0, momentum=0.0, weight_decay=1e-3, eta=1e-3).step()  # w - 1.0 * update
        want = w - p.detach()
        got = fn(w.clone(), g.clone(), 1e-3, 1e-3)
        assert torch.allclose(got, want, atol=1e-7), (
            "got a different update; remember: decay first (g + wd*w), then trust = eta*||w||/||g||, "
            "and trust = 1 when either norm is 0")
    return "correct: matches simclr_lib.optim.LARS on 3 weight matrices (including zero norms)"


@one_line_verdict
def check_train_step(fn: Callable[..., torch.Tensor]) -> str:
    """Exercise of notebook 03: ``fn(model, views, optimizer, loss_fn, temperature)`` does one SimCLR step
    (Algorithm 1) on a batch of views: z from the model, ``loss_fn(z, temperature)``, zero the gradients, backward,
    optimiser step; it returns the loss. Compared over two steps with the library's ``train.train_step`` on a copy
    of the same model (a forgotten ``zero_grad`` shows in the second step)."""
    from simclr_lib.augment import SimCLRAugment, make_views
    from simclr_lib.config import SimCLRConfig, build_model
    from simclr_lib.optim import build_optimizer
    from simclr_lib.runtime import make_grad_scaler
    from simclr_lib.train import train_step

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mine = build_model(SimCLRConfig.smoke(device="cpu")).train()
    ref = copy.deepcopy(mine)
    opts = [build_optimizer(m, "lars", 0.5, 1e-6, 0.9, 1e-3) for m in (mine, ref)]
    aug, scaler = SimCLRAugment(size=32, strength=0.5), make_grad_scaler(torch.device("cpu"), None)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    for step in (1, 2):
        views = make_views(images, aug, 2, torch.Generator().manual_seed(step))
        calls = []
        got = fn(mine, views, opts[0], lambda z, t: calls.append(t) or nt_xent(z, t), 0.5)
        want, _ = train_step(ref, views, opts[1], scaler, 0.5)
        assert calls == [0.5], ("compute the loss with the loss_fn you are given, once per step: "
                                "loss = loss_fn(z, temperature)")
        assert torch.is_tensor(got) and got.numel() == 1, "return the loss, a scalar tensor"
        assert torch.allclose(got.detach().float().reshape(()), want, atol=1e-5), (
            f"step {step}: loss {got.item():.5f}, want {want.item():.5f}; z = model(views)[1] (the projection), "
            "loss = loss_fn(z, temperature)")
        if not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(mine.parameters(), ref.parameters())):
            raise AssertionError("the weights differ after the second step: zero the gradients before backward "
                                 "(optimizer.zero_grad()), or step 2 adds step 1's gradients" if step == 2 else
                                 "the weights differ after the first step: loss.backward(), then optimizer.step()")
    return "correct: two steps match train.train_step (the loss and every weight)"


@one_line_verdict
def check_linear_probe(fn: Callable[..., float]) -> str:
    """Exercise of notebook 04: ``fn(train_x, train_y, test_x, test_y, C)`` returns the test top-1 (a fraction) of
    a logistic regression on frozen features standardised with the *train* statistics (App. B.8), as
    ``evaluate.linear_probe(..., backend="sklearn")``. Half the test labels are shuffled, so a probe fitted on the
    test set stands out."""
    g, d = torch.Generator().manual_seed(4), 64
    scales = torch.logspace(-2, 1, d)  # features of very different scales; only the small ones carry the class
    centres = torch.randn(4, d, generator=g) * (scales < 0.1)
    train_y, test_y = torch.randint(0, 4, (400,), generator=g), torch.randint(0, 4, (200,), generator=g)
    train_x = (centres[train_y] + torch.randn(400, d, generator=g)) * scales + 3
    test_x = (centres[test_y] + torch.randn(200, d, generator=g)) * scales + 3
    test_y = torch.where(torch.rand(200, generator=g) < 0.5, torch.randint(0, 4, (200,), generator=g), test_y)
    for C in (1.0, 0.01):
        want = linear_probe(train_x, train_y, test_x, test_y, backend="sklearn", C=C)["top1"]
        got = float(fn(train_x.clone(), train_y.clone(), test_x.clone(), test_y.clone(), C))
        assert 0.0 <= got <= 1.0, f"return the top-1 as a fraction in [0, 1], got {got}"
        assert got < want + 0.15, (f"C={C}: {got:.1%} is far above the library's {want:.1%}: fit the classifier on "
                                   "the training features only; the test set is for scoring")
        assert abs(got - want) <= 0.02, (f"C={C}: {got:.1%} vs the library's {want:.1%}; standardise both sets with the "
                                         "train mean and std, then LogisticRegression(C=C, max_iter=1000) on train")
    return "correct: matches evaluate.linear_probe (scikit-learn backend) for C = 1 and 0.01"


@one_line_verdict
def check_knn(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    """Exercise of notebook 04: ``fn(train_x, train_y, test_x, k)`` returns majority-vote cosine-kNN classes.

    The rows have very different lengths (as real features do), so a Euclidean kNN disagrees with the cosine one
    and is named as such.
    """
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(4, 16, generator=g) * 3
    train_y, test_y = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (50,), generator=g)
    scale = lambda n: torch.empty(n, 1).uniform_(0.2, 5.0, generator=g)  # noqa: E731  row lengths vary 25-fold
    train_x = (centres[train_y] + torch.randn(200, 16, generator=g)) * scale(200)
    test_x = (centres[test_y] + torch.randn(50, 16, generator=g)) * scale(50)
    for k in (1, 5, 15):
        want = knn_predict(train_x, train_y, test_x, k=k, weighted=False)
        got = torch.as_tensor(fn(train_x, train_y, test_x, k)).reshape(-1).cpu()
        assert got.shape == want.shape, f"return one class per test row: shape {tuple(want.shape)}"
        agree = (got == want).float().mean().item()
        if agree <= 0.97:
            euclid = train_y[torch.cdist(test_x, train_x).topk(k, largest=False).indices]  # M x k
            euclid = F.one_hot(euclid, 4).sum(1).argmax(1)
            assert (got == euclid).float().mean().item() < 0.97, (
                f"k={k}: that is a Euclidean kNN; use cosine similarity (normalise the rows, then a matrix "
                "product), which ignores the length of a feature vector")
            raise AssertionError(f"k={k}: only {agree:.0%} of predictions agree; use cosine similarity "
                                 "(normalise rows), k most similar, one vote each")
    return "correct: agrees with knn_predict(weighted=False) for k = 1, 5, 15"


@one_line_verdict
def check_nearest_neighbours(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    """Exercise of notebook 05: ``fn(query_idx, features, k)`` returns, for each query row, the indices of its ``k``
    most cosine-similar rows of ``features``, the query itself excluded, most similar first. Shape: (Q, k)."""
    g = torch.Generator().manual_seed(5)
    for n, d, k in ((50, 8, 5), (200, 32, 10), (30, 3, 1)):
        x = torch.randn(n, d, generator=g) * torch.rand(n, 1, generator=g).mul(10).add(0.1)  # lengths vary
        q = torch.randperm(n, generator=g)[:7]
        want = nearest_neighbours(q, x, k)
        got = torch.as_tensor(fn(q.clone(), x.clone(), k)).long().cpu()
        assert got.shape == want.shape, f"return shape (Q, k) = {tuple(want.shape)}, got {tuple(got.shape)}"
        assert not bool((got == q[:, None]).any()), "a query is its own nearest neighbour: exclude it"
        assert torch.equal(got.sort(1).values, want.sort(1).values), (
            "different neighbours: use cosine similarity (normalise the rows), not the raw dot product or distance")
        assert torch.equal(got, want), "right neighbours, wrong order: sort most similar first"
    return "correct: matches simclr_lib.embed.nearest_neighbours on 3 random sets"


@one_line_verdict
def check_negative_weights(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> str:
    """Exercise of notebook 06: ``fn(pos, neg, tau)`` returns how strongly one anchor's NT-Xent term pushes each
    negative away: tau * d loss / d s_k = softmax([pos, neg] / tau)_k for every negative k (Sec. 5.1).

    Checked against autograd on ``-log softmax(s / tau)[0]``; a softmax over the negatives alone (the positive left
    out of the denominator) and a forgotten 1 / tau get their own hint.
    """
    g = torch.Generator().manual_seed(6)
    for tau in (0.1, 0.5, 1.0):
        for k in (5, 63):
            s = (torch.rand(k + 1, generator=g) * 2 - 1).requires_grad_()  # cosine similarities: positive first
            (grad,) = torch.autograd.grad(-torch.log_softmax(s / tau, 0)[0], s)
            want, sd = tau * grad[1:], s.detach()
            got = torch.as_tensor(fn(sd[0].clone(), sd[1:].clone(), tau), dtype=torch.float32).reshape(-1)
            assert got.shape == want.shape, f"return one weight per negative: shape {tuple(want.shape)}, got {tuple(got.shape)}"
            if not torch.allclose(got, want, atol=1e-5):
                if torch.allclose(got, torch.softmax(sd[1:] / tau, 0), atol=1e-5):
                    raise AssertionError("the positive is missing: the softmax runs over [positive, negatives], "
                                         "then keep the negatives' entries")
                if torch.allclose(got, torch.softmax(sd, 0)[1:], atol=1e-5) and tau != 1.0:
                    raise AssertionError("divide the similarities by tau before the softmax")
                raise AssertionError(f"tau={tau}, {k} negatives: weights differ from softmax([pos, neg] / tau)[1:]")
    return "correct: matches autograd of one anchor's NT-Xent term for tau = 0.1, 0.5, 1 and 5 or 63 negatives"
