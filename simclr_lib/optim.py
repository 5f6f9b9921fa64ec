"""LARS, the warm-up + cosine schedule and the learning-rate scaling rules of SimCLR (paper Sec. 2.2, App. B.1).

LARS (You et al. 2017) follows google-research/simclr ``lars_optimizer.py`` with classic momentum::

    g <- g + wd * w                                  (not for excluded parameters)
    trust = eta * ||w|| / ||g||   (1 where either norm is 0; 1 for excluded parameters)
    v <- m * v + lr * trust * g
    w <- w - v

By default parameters with ``ndim <= 1`` (biases, BatchNorm) get neither weight decay nor trust scaling, as in
the paper's code. Everything stays on the device: no ``.item()`` and no other host sync per parameter.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
from torch import nn

OPTIMIZERS = ("lars", "sgd", "adam", "adamw")  # what build_optimizer builds
LR_SCALINGS = ("linear", "sqrt", "none")  # the rules of scaled_lr (paper App. B.1)


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling with classic momentum (SimCLR's optimiser for large batches).

    Args:
        params: parameters or parameter groups; a group may set ``lars_exclude=True`` to turn off weight decay
            and trust scaling for all its parameters.
        lr: learning rate (the schedule multiplies it per step).
        momentum: classic momentum m.
        weight_decay: L2 coefficient added to the gradient (paper: 1e-6).
        eta: trust coefficient (paper: 1e-3).
        exclude_1d: exclude parameters with ndim <= 1 (biases, BatchNorm) from decay and trust scaling.
        nesterov: Nesterov momentum (update = m * v + lr * trust * g).

    Taught in notebook 00 (used in 02, 03, 06).
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 1e-6,
                 eta: float = 1e-3, exclude_1d: bool = True, nesterov: bool = False):
        if not lr > 0:
            raise ValueError(f"lr={lr!r} must be > 0")
        if not 0 <= momentum < 1 or weight_decay < 0 or not eta > 0:
            raise ValueError(f"need 0 <= momentum < 1, weight_decay >= 0, eta > 0; got {momentum}, "
                             f"{weight_decay}, {eta}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, exclude_1d=exclude_1d,
                        nesterov=nesterov, lars_exclude=False)
        super().__init__(params, defaults)

    @staticmethod
    def _excluded(group: dict, p: torch.Tensor) -> bool:
        return group["lars_exclude"] or (group["exclude_1d"] and p.ndim <= 1)

    @torch.no_grad()
    def step(self, closure=None):
        """One LARS update of every parameter with a gradient (Sec. 2.2). Taught in notebook 03."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            adapted = [p for p in params if not self._excluded(group, p)]
            grads = {p: p.grad for p in params}
            if adapted:
                decayed = torch._foreach_add([p.grad for p in adapted], adapted, alpha=group["weight_decay"])
                w_norm = torch.stack(torch._foreach_norm(adapted))  # P, stays on the device
                g_norm = torch.stack(torch._foreach_norm(decayed))  # P
                trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                    torch.ones_like(w_norm))  # P, 1 where either norm is 0
                torch._foreach_mul_(decayed, trust.unbind())  # trust * (g + wd * w)
                grads.update(zip(adapted, decayed))
            self._momentum_update(group, params, [grads[p] for p in params])
        return loss

    def _momentum_update(self, group: dict, params: list, grads: list) -> None:
        """v <- m v + lr g ; w <- w - v (or the Nesterov form)."""
        lr, m = group["lr"], group["momentum"]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, m)
        torch._foreach_add_(bufs, grads, alpha=lr)
        if group["nesterov"]:
            updates = torch._foreach_add(torch._foreach_mul(bufs, m), grads, alpha=lr)
            torch._foreach_sub_(params, updates)
        else:
            torch._foreach_sub_(params, bufs)


@torch.no_grad()
def lars_step_per_parameter(optimizer: LARS) -> None:
    """:meth:`LARS.step` written one parameter at a time, as the equations read (Sec. 2.2; You et al. 2017).

    Taught in notebook 03, beside the fused ``torch._foreach`` form that training uses. The same update (tested
    to float precision), but readable: each ``if`` on a norm is a host sync per parameter, which is why
    ``LARS.step`` computes every norm on the device at once instead.

    Shape: updates every parameter with a gradient in place, and the optimiser's momentum buffers.
    """
    for group in optimizer.param_groups:
        lr, m, wd, eta = group["lr"], group["momentum"], group["weight_decay"], group["eta"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if not LARS._excluded(group, p):  # weight matrices; biases and BatchNorm keep their plain gradient
                g = g + wd * p  # decay first
                w_norm, g_norm = p.norm(), g.norm()
                if w_norm > 0 and g_norm > 0:  # else trust 1
                    g = g * (eta * w_norm / g_norm)  # trust ratio: the step is about lr * eta of ||w||
            state = optimizer.state[p]
            buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
            buf.mul_(m).add_(g, alpha=lr)  # v <- m v + lr g
            p.sub_(buf * m + lr * g if group["nesterov"] else buf)  # w <- w - v


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay (paper Sec. B.1, per step).

    Taught in notebook 03.

    Warm-up rises linearly to 1 over ``warmup_steps`` (reaching 1 at the last warm-up step); the cosine then runs
    from 1 down to ``final_fraction`` at ``total_steps``. Stepped once per optimisation step, never per epoch.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be > 0")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_cosine`; call ``scheduler.step()`` after every optimiser step.

    Taught in notebook 03.
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps))


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: "torch.amp.GradScaler",
                   scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None) -> None:
    """Backward and one optimiser step through ``scaler``, then one step of ``scheduler`` (the per-step schedule).

    The scaler is enabled for fp16 only (``runtime.make_grad_scaler``): a disabled one passes the loss and the step
    through unchanged, so there is no ``if scaler`` branch. Used by ``train.train_step`` and ``evaluate``'s
    supervised / fine-tuning loop.

    Taught in notebook 03.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()


def scaled_lr(batch_size: int, rule: str = "sqrt", base_lr: Optional[float] = None,
              optimizer: str = "lars") -> float:
    """Peak learning rate from a scaling rule (paper App. B.1).

    ``"linear"``: base_lr * B / 256 (base 0.3); ``"sqrt"``: base_lr * sqrt(B) (base 0.075); ``"none"``: base_lr.
    For Adam/AdamW the base is 1e-3 at B = 256 and the rules scale it by B/256 or sqrt(B/256).

    Taught in notebook 03.
    """
    adam = optimizer in ("adam", "adamw")
    if rule == "linear":
        return (base_lr if base_lr is not None else (1e-3 if adam else 0.3)) * batch_size / 256
    if rule == "sqrt":
        if adam:
            return (base_lr if base_lr is not None else 1e-3) * math.sqrt(batch_size / 256)
        return (base_lr if base_lr is not None else 0.075) * math.sqrt(batch_size)
    if rule == "none":
        return base_lr if base_lr is not None else (1e-3 if adam else 0.3)
    raise ValueError(f"lr_scaling={rule!r} is unknown; choose one of {', '.join(LR_SCALINGS)}")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights (decayed) and ndim <= 1 parameters (biases, BatchNorm: no decay, ``lars_exclude``).

    Taught in notebook 03.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0, lars_exclude=True)]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float = 1e-6, momentum: float = 0.9,
                    eta: float = 1e-3) -> torch.optim.Optimizer:
    """LARS, SGD, Adam or AdamW over :func:`param_groups` (no decay on biases and BatchNorm for any of them).

    Taught in notebook 00 (used in 03).
    """
    groups = param_groups(model, weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)
    for g in groups:
        g.pop("lars_exclude", None)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")


def trust_ratios(model: nn.Module, weight_decay: float = 1e-6, eta: float = 1e-3,
                 exclude_1d: bool = True) -> dict[str, float]:
    """The LARS trust ratio ``eta * ||w|| / ||g + wd * w||`` of every parameter with a gradient (paper Sec. 2.2).

    What :class:`LARS` multiplies each layer's step by: 1 where either norm is 0, and 1 (no decay, no scaling)
    for ``ndim <= 1`` parameters when ``exclude_1d``. Read the gradients after ``loss.backward()``.

    Shape:
        one float per named parameter with a ``.grad``: {name: ratio}, in ``named_parameters`` order.

    Taught in notebook 03.
    """
    out = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.grad is None:
                continue
            if exclude_1d and p.ndim <= 1:
                out[name] = 1.0
                continue
            d = p.grad + weight_decay * p
            w_norm, g_norm = p.norm(), d.norm()
            ok = (w_norm > 0) & (g_norm > 0)
            out[name] = float(torch.where(ok, eta * w_norm / g_norm.clamp_min(1e-30), torch.ones_like(w_norm)))
    return out


def epoch_stepped_cosine(epochs: int, steps_per_epoch: int, hold_epochs: int = 10) -> list[float]:
    """The seed's schedule, per step, for comparison only: ``CosineAnnealingLR(T_max=steps_per_epoch)`` stepped
    once per *epoch* after ``hold_epochs`` epochs at the peak (sthalles/SimCLR; cf. :func:`warmup_cosine`).

    T_max counts steps but the scheduler counts epochs, so after E epochs the multiplier is
    ``0.5 * (1 + cos(pi * (E - hold) / steps_per_epoch))``: a staircase that barely decays in a short run.

    Shape:
        -> list of ``epochs * steps_per_epoch`` multipliers of the peak learning rate.

    Taught in notebook 03.
    """
    if epochs < 1 or steps_per_epoch < 1 or hold_epochs < 0:
        raise ValueError(f"need epochs >= 1, steps_per_epoch >= 1, hold_epochs >= 0; got {epochs}, "
                         f"{steps_per_epoch}, {hold_epochs}")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch, eta_min=0.0)
    out: list[float] = []
    for epoch in range(epochs):
        out += [opt.param_groups[0]["lr"]] * steps_per_epoch
        opt.step()  # (no gradient: keeps torch from warning about the call order)
        if epoch >= hold_epochs:  # the seed: `if epoch_counter >= 10: scheduler.step()`
            sched.step()
    return out
