"""Two gloo processes on CPU give the same loss and gradients as one process on the same global batch."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simclr_lib.distributed import gather_views
from simclr_lib.loss import nt_xent

class SeedGatherLayer(torch.autograd.Function):
    """The seeds' GatherLayer: all_gather forward, but backward returns only this rank's slice of *its own*
    gradient, so when each rank computes only its local rows of the loss the other ranks' terms are lost."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        ctx.rank = dist.get_rank()
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank]  # no all-reduce: the defect


N_PER_RANK, D_IN, D_OUT, VIEWS = 4, 6, 5, 3


def _data():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(D_IN, D_OUT)
    with torch.no_grad():
        for p in lin.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(VIEWS, 2 * N_PER_RANK, D_IN, generator=g)  # views x global images x features
    return lin, x


def _worker(rank, world, port, out_dir, seed_form=False):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    lin, x = _data()
    local = x[:, rank * N_PER_RANK:(rank + 1) * N_PER_RANK].reshape(VIEWS * N_PER_RANK, D_IN)  # view-major
    if seed_form:
        import simclr_lib.distributed as sd
        sd._AllGather = SeedGatherLayer  # the seeds' backward, everything else the same
    z_all, rows = gather_views(lin(local), VIEWS)
    loss = nt_xent(z_all, 0.5, VIEWS, anchors=rows)
    loss.backward()
    total = loss.detach().clone()
    dist.all_reduce(total)
    for p in lin.parameters():  # what DDP does: the mean of the ranks' gradients
        dist.all_reduce(p.grad)
        p.grad /= world
    if rank == 0:
        torch.save({"loss": total / world, "grads": [p.grad for p in lin.parameters()]}, out_dir + "/dist.pt")
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process():
    lin, x = _data()
    loss = nt_xent(lin(x.reshape(VIEWS * 2 * N_PER_RANK, D_IN)), 0.5, VIEWS)
    loss.backward()
    return loss, lin


def test_two_gloo_processes_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "dist.pt", weights_only=True)
    loss, lin = _single_process()
    assert abs(got["loss"].item() - loss.item()) <= 1e-6
    for g, p in zip(got["grads"], lin.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6, rtol=0)


def test_seed_gather_layer_loses_gradient_terms(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), True), nprocs=2, join=True)
    got = torch.load(tmp_path / "dist.pt", weights_only=True)
    loss, lin = _single_process()
    assert abs(got["loss"].item() - loss.item()) <= 1e-6  # same forward ...
    assert not torch.allclose(got["grads"][0], lin.weight.grad, atol=1e-4)  # ... wrong gradient


def test_gather_outside_process_group_is_identity():
    z = torch.randn(6, 4)
    z_all, rows = gather_views(z, 2)
    assert torch.equal(z_all, z) and torch.equal(rows, torch.arange(6))


def _pretrain_worker(rank, world, port, out_dir, interrupt_at):
    """One torchrun-like process: a 3-epoch smoke run, optionally interrupted after ``interrupt_at`` and resumed."""
    import pytest

    from simclr_lib.config import SimCLRConfig
    from simclr_lib.train import pretrain

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    cfg = SimCLRConfig.smoke(out_dir=out_dir, device="cpu", subset=128, batch_size=32, epochs=3, knn_every=0,
                             tensorboard=False, channels_last=False)

    def stop(record):
        if record["epoch"] == interrupt_at:
            raise KeyboardInterrupt
    if interrupt_at:
        with pytest.raises(KeyboardInterrupt):
            pretrain(cfg, callbacks=[stop])
    result = pretrain(cfg, resume=bool(interrupt_at))
    if rank == 0:
        torch.save(result.model.state_dict(), out_dir + "/final.pt")
    dist.destroy_process_group()


def test_two_process_run_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    """Every process resumes its own augmentation stream (only rank 0's was saved, and every rank loaded it)."""
    ends = []
    for name, interrupt_at in (("whole", 0), ("resumed", 2)):
        out = str(tmp_path / name)
        mp.spawn(_pretrain_worker, args=(2, _free_port(), out, interrupt_at), nprocs=2, join=True)
        ends.append(torch.load(out + "/final.pt", weights_only=True))
    assert all(torch.equal(ends[0][k], ends[1][k]) for k in ends[0])
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["rng"]["ranks"]) == 2
    assert not torch.equal(ckpt["rng"]["ranks"][0]["augment"], ckpt["rng"]["ranks"][1]["augment"])
