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


@pytest.fixture
def step_loop():
    """``run_steps(run, order, log) -> (loss_sum, z_all)``: the steps of ``train.pretrain``'s inner loop -- the same
    calls in the same order, ``make_views -> train_step -> Recorder.step`` -- with the recorder's logging sync
    replaced by ``log(loss, loss_sum, z_all)``, so a test can prove the rest never syncs with the host
    (tests/test_train.py checks that ``pretrain`` still makes exactly these calls)."""
    from simclr_lib.augment import make_views
    from simclr_lib.runs.recorder import Recorder
    from simclr_lib.train import train_step

    def run_steps(run, order, log):
        class Logged(Recorder):
            def _log(self, loss):
                log(loss, self.loss_sum, self.z_all)

        cfg = run.cfg
        with Logged(run) as rec:
            for batch in order:
                views = make_views(run.images[batch], run.augment, cfg.n_views, run.generator, cfg.channels_last)
                loss, z_all = train_step(run.model, views, run.optimizer, run.scaler, cfg.temperature, cfg.n_views,
                                         run.dtype, run.scheduler)
                rec.step(loss, z_all)
            return rec.loss_sum, rec.z_all
    return run_steps
