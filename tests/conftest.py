"""Shared test fixtures."""
import pytest
import torch
from threadpoolctl import threadpool_limits


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
