"""Shared test fixtures."""
import pytest
import torch
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module")
def shapes_features():
    """200 labelled 16 px shapes images and 64-d features in which the class is visible (one-hot + noise)."""
    from simclr_lib.data import make_shapes

    n = 200
    d = make_shapes(n, size=16, seed=0)
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.one_hot(d.labels, 8).float() * 6 + torch.randn(n, 8, generator=g)
    return d, torch.cat([feats, torch.randn(n, 56, generator=g)], dim=1)  # N x 64


@pytest.fixture(scope="module")
def one_thread():
    """Small problems run on one thread: spinning OpenMP/BLAS threads made them 10-50x slower when the 2-core CPU
    was shared with other jobs. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    """``cuda``-marked tests run only where a CUDA GPU is present (never in CI); elsewhere they are skipped."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
