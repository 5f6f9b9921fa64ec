"""Re-implementations of the popular seed repositories' SimCLR pieces, defects included, for comparison only.

The tutorial shows *why* ``simclr_lib`` does things differently, so these reproduce the behaviour (not the code)
of the sthalles/SimCLR InfoNCE, the Spijkervet/SimCLR NT_Xent and its LARS port. Never train with them: the
tests and notebook 02 use them to show that ours gives the same number where theirs is right, and where theirs
breaks (a partial last batch, more than two views, O(N^2 D) memory, a zero bias that never moves).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sthalles_info_nce(features: torch.Tensor, batch_size: int, n_views: int = 2,
                      temperature: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The sthalles-style logits/labels: positives in the first column(s), every label 0.

    Defects kept on purpose: the label matrix is built from the *configured* ``batch_size`` (a partial last
    batch fails with a shape error), and with ``n_views > 2`` the extra positives sit in the logits but only the
    first one is ever a target (the others act as negatives).

    Shape:
        features: (n_views * batch_size, D) -> logits (M, M - 1), labels (M,)
    """
    ids = torch.cat([torch.arange(batch_size) for _ in range(n_views)], dim=0)  # M
    labels = (ids[None, :] == ids[:, None]).float().to(features.device)  # M x M
    features = F.normalize(features, dim=1)
    similarity = features @ features.T  # M x M; fails for a partial batch
    mask = torch.eye(labels.shape[0], dtype=torch.bool, device=features.device)
    labels = labels[~mask].view(labels.shape[0], -1)  # M x (M-1)
    similarity = similarity[~mask].view(similarity.shape[0], -1)  # M x (M-1)
    positives = similarity[labels.bool()].view(labels.shape[0], -1)  # M x (V-1)
    negatives = similarity[~labels.bool()].view(similarity.shape[0], -1)  # M x (M-V)
    logits = torch.cat([positives, negatives], dim=1) / temperature  # M x (M-1)
    return logits, torch.zeros(logits.shape[0], dtype=torch.long, device=features.device)


def spijkervet_nt_xent(z: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The Spijkervet-style NT_Xent: cosine similarity over a 2N x 2N x D broadcast and a Python-loop mask.

    Two views only. Memory O(N^2 D): at N = 1024, D = 128 the broadcast alone holds 2048*2048*128 floats (2 GiB)
    before autograd keeps its intermediates.

    Shape:
        z: (2N, D) -> scalar
    """
    n2 = z.shape[0]
    n = n2 // 2
    sim = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2) / temperature  # 2N x 2N via 2N x 2N x D
    mask = torch.ones((n2, n2), dtype=torch.bool)
    mask.fill_diagonal_(0)
    for i in range(n):  # the seed's Python loop over the batch
        mask[i, n + i] = 0
        mask[n + i, i] = 0
    positives = torch.cat([torch.diag(sim, n), torch.diag(sim, -n)]).reshape(n2, 1)  # 2N x 1
    negatives = sim[mask.to(z.device)].reshape(n2, -1)  # 2N x (2N-2)
    logits = torch.cat([positives, negatives], dim=1)  # 2N x (2N-1)
    labels = torch.zeros(n2, dtype=torch.long, device=z.device)
    return F.cross_entropy(logits, labels, reduction="sum") / n2


class SpijkervetLARS(torch.optim.Optimizer):
    """The Spijkervet-style LARS port, defects kept on purpose.

    * weight decay is added to every parameter, biases and BatchNorm included;
    * the trust ratio is guarded with ``norm.ge(0)``, which is always true, so a parameter whose norm is 0 (a
      zero-initialised bias) gets trust ratio 0 and never moves (and a zero gradient gives NaN);
    * the ratio is read back with ``.item()``: one host sync per parameter per step.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6, eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad + group["weight_decay"] * p  # decay on everything
                w_norm, g_norm = torch.norm(p), torch.norm(d_p)
                one = torch.ones_like(w_norm)
                trust = torch.where(w_norm.ge(0), torch.where(g_norm.ge(0), group["eta"] * w_norm / g_norm, one),
                                    one).item()  # ge(0) is always true; .item() syncs with the host
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(d_p, alpha=group["lr"] * trust)
                p.sub_(buf)
