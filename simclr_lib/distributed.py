"""Multi-process training: process-group set-up under torchrun and a gradient-correct all-gather of embeddings.

With K processes each rank embeds its own images; the loss needs every rank's embeddings as negatives (paper
Sec. 2.2, "Global BN" and large batches). :func:`gather_views` gathers them *with* gradients: the backward of
the gather sums, over ranks, the gradient that every rank's loss terms send to this rank's rows. The seeds'
GatherLayer returned only the local slice of the local gradient, which drops those other ranks' terms when each
rank computes only its own rows of the loss.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside a process group."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def init_from_env(device: torch.device) -> Optional[int]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE > 1); else do nothing.

    Returns the local rank, or None when not launched by torchrun. NCCL on CUDA, gloo on CPU.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not is_distributed():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return local_rank


class _AllGather(torch.autograd.Function):
    """all_gather forward; backward all-reduces (sums) the full gradient, then keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        ctx.rank, ctx.n = rank, x.shape[0]
        out = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)  # W x n x ...

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's loss terms reach every rank's rows
        return grad[ctx.rank]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Gather ``x`` from every rank, keeping gradients. Shape: (n, ...) -> (W, n, ...)."""
    if not is_distributed():
        return x[None]
    return _AllGather.apply(x)


def gather_views(z: torch.Tensor, n_views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather view-major embeddings from all ranks into one global view-major batch, and this rank's rows.

    Rank r's image i becomes global image r*n + i, so the global batch is laid out exactly as if one process had
    embedded all W*n images; ``nt_xent(z_all, anchors=rows)`` then gives this rank's share of the loss.

    Shape:
        z: (n_views * n, D) -> z_all (n_views * W * n, D), rows (n_views * n,)
    """
    rank, size = world()
    n = z.shape[0] // n_views
    gathered = all_gather_with_grad(z.view(n_views, n, -1))  # W x V x n x D
    z_all = gathered.transpose(0, 1).reshape(n_views * size * n, -1)  # (V*W*n) x D, view-major
    views = torch.arange(n_views, device=z.device)[:, None] * (size * n)  # V x 1
    rows = (views + rank * n + torch.arange(n, device=z.device)[None, :]).reshape(-1)  # V*n
    return z_all, rows
