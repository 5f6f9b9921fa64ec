"""notebook.setup: CIFAR-10 downloaded by default where the network allows, a loud line when shapes stands in."""
import pytest

import simclr_lib.data as data_mod
import simclr_lib.teaching.notebook as NB


@pytest.fixture
def no_env(monkeypatch):
    for k in ("SIMCLR_DOWNLOAD", "SIMCLR_SMOKE", "SIMCLR_MODE", "SIMCLR_DATA_DIR"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_download_wanted_by_default_where_the_network_reaches_cifar(no_env):
    asked = []
    no_env.setattr(NB, "_reachable", lambda host: asked.append(host) or True)
    assert NB.download_wanted("quick") and NB.download_wanted("full") and asked == [NB.CIFAR_HOST] * 2
    assert not NB.download_wanted("smoke")  # CI: never
    no_env.setattr(NB, "_reachable", lambda host: False)
    assert not NB.download_wanted("quick")  # offline
    no_env.setenv("SIMCLR_DOWNLOAD", "0")
    no_env.setattr(NB, "_reachable", lambda host: pytest.fail("the network is not asked when the user said no"))
    assert not NB.download_wanted("quick")
    no_env.setenv("SIMCLR_DOWNLOAD", "yes")
    assert NB.download_wanted("smoke")
    no_env.setenv("SIMCLR_DOWNLOAD", "maybe")
    with pytest.raises(ValueError, match="SIMCLR_DOWNLOAD"):
        NB.download_wanted("quick")


def test_unreachable_host_is_not_reachable():
    assert not NB._reachable("host.invalid", timeout=1.0)


def test_setup_downloads_only_when_cifar_is_missing_and_says_loudly_when_shapes_stands_in(no_env, tmp_path, capsys):
    calls = []

    def find(data_dir, download=False):
        calls.append(download)
        return ("cifar10", "") if download else ("shapes", "no cifar-10 folder")

    no_env.setattr(data_mod, "find_dataset", find)
    no_env.setattr(NB, "download_wanted", lambda mode: True)
    s = NB.setup(mode="quick", data_dir=str(tmp_path))
    assert calls == [False, True] and s.dataset == "cifar10" and s.download
    assert "NOTE" not in capsys.readouterr().out

    calls.clear()
    no_env.setattr(NB, "download_wanted", lambda mode: False)
    s = NB.setup(mode="quick", data_dir=str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert calls == [False] and s.dataset == "shapes" and not s.download
    note = [line for line in out if line.startswith("NOTE:")]
    assert len(note) == 1 and "NOT CIFAR-10's" in note[0] and "no cifar-10 folder" in note[0]
    assert "SIMCLR_DOWNLOAD=1" in note[0]


def test_paper_mode_only_when_asked_and_its_time_is_estimated_first(no_env, capsys, tmp_path):
    assert NB.resolve_mode(mode="PAPER") == "paper"
    with no_env.context() as m:
        m.setattr(NB.torch.cuda, "is_available", lambda: True)
        assert NB.resolve_mode() == "full"  # never chosen by itself, not even on a GPU
    s = NB.Setup("paper", NB.torch.device("cpu"), None, "shapes", tmp_path / "paper")
    assert s.pick(1, 2, 3) == 3 and s.pick(1, 2, 3, paper=4) == 4
    cfg = NB.series_config(s)
    assert cfg.minutes is None and cfg.epochs == NB.PAPER_SERIES["epochs"] and cfg.temperature == 0.5
    small = NB.series_config(s, arch="small", batch_size=16, epochs=3, subset=64, image_size=32, device="cpu")
    minutes = NB.plan_minutes(small, runs=2)
    line = capsys.readouterr().out
    assert "paper scale: 2 x 3 epochs of small at batch 16, estimated" in line and "hours on cpu" in line
    assert minutes > 0 and NB.plan_minutes(small.replace(minutes=1.5)) == 1.5  # a time-planned scale: its minutes
