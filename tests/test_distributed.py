"""Two gloo processes on CPU give the same loss and gradients as one process on the same global batch."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simclr_lib.distributed import gather_views
from simclr_lib.loss import nt_xent
from simclr_lib.seeds import SeedGatherLayer

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
