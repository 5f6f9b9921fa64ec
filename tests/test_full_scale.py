"""benchmarks/full_scale.py --dry-run: every stage on the CPU at toy size, its JSONs, resume, and the travel kit
(data pack, portable checkpoints, export + collect) that carries a GPU run across 10-minute calls."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "full_scale.py"
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))

import artifacts  # noqa: E402
import pack_data  # noqa: E402

STAGES = ["a", "b", "c", "f", "e03", "e04", "e05", "e06", "d"]
META = ["stage", "status", "date", "device", "torch", "git_commit", "command", "dry_run", "results"]


def run(*args: str, expect: int = 0) -> str:
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", *args], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == expect, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def stage(out: Path, name: str) -> dict:
    return json.loads((out / "stages" / f"{name}.json").read_text())


@pytest.mark.slow
def test_dry_run_writes_every_stage_and_a_second_call_skips_them(tmp_path):
    out = tmp_path / "out"
    first = run("--out", str(out))
    assert "ALL DONE" in first
    for name in STAGES:
        rec = stage(out, name)
        assert all(k in rec for k in META), name
        assert rec["dry_run"] is True and rec["command"].endswith(f"--out {out}")
        if name != "a":  # a's status is that of tests/test_cuda.py, whatever it holds today
            assert rec["status"] in ("ok", "skipped"), (name, rec["status"], rec["notes"])
    b, c = stage(out, "b")["results"], stage(out, "c")["results"]
    assert b["rows"][0]["views_per_s"] > 0 and 0 < b["rows"][0]["aug_share"] < 1 and b["flops_per_step"]["32"] > 0
    assert 0 <= c["trained"]["linear_top1"] <= 1 and c["trained"]["C"] in (0.1, 1.0)
    assert "knn_top1" in c["random_init"] and c["training"]["epochs_run"] == 1
    assert stage(out, "f")["results"]["reload_max_rel_diff_h"] < 0.05
    stamps = {n: stage(out, n)["date"] for n in STAGES}
    second = run("--out", str(out), "--export", str(tmp_path / "exp"))
    assert second.count("done earlier, skipped") == len(STAGES) and "ALL DONE" in second
    assert {n: stage(out, n)["date"] for n in STAGES} == stamps
    assert json.loads((tmp_path / "exp" / "export_manifest.json").read_text())["files"] == []


@pytest.mark.slow
def test_pretraining_stops_at_the_budget_and_resumes_on_a_fresh_machine(tmp_path):
    """Call 1 stops after epoch 1 of 2 (no budget); its export, filed by collect.py, lets call 2 finish the run in
    an empty output folder (a fresh machine) from the portable checkpoint."""
    run("--out", str(tmp_path / "m1"), "--stages", "c", "--set-c", "epochs=2", "--max-minutes", "0",
        "--export", str(tmp_path / "exp1"), expect=3)
    assert not (tmp_path / "m1" / "stages" / "c.json").exists()
    collect = [sys.executable, str(ROOT / "benchmarks" / "gpu" / "collect.py"), str(tmp_path / "exp1"),
               "--results", str(tmp_path / "res"), "--docs", str(tmp_path / "docs"), "--state", str(tmp_path / "st")]
    subprocess.run(collect, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "st" / "portable" / "c.pt").is_file()
    out = run("--out", str(tmp_path / "m2"), "--stages", "c", "--set-c", "epochs=2", "--state", str(tmp_path / "st"))
    assert "ALL DONE" in out
    t = stage(tmp_path / "m2", "c")["results"]["training"]
    assert [c["from_epoch"] for c in t["calls"]] == [0, 1] and t["calls"][0]["stopped"] == "budget"
    assert t["resumed_from_portable_at"] == [1] and t["epochs_run"] == 2


def test_portable_checkpoint_round_trip_and_parts(tmp_path):
    from simclr_lib.config import SimCLRConfig
    from simclr_lib.config import build_model

    model = build_model(SimCLRConfig.smoke())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3, 32, 32))[1].sum().backward()
    opt.step()
    ckpt = dict(model=model.state_dict(), optimizer=opt.state_dict(), epoch=3, history=[{"epoch": 3}])
    torch.save(ckpt, tmp_path / "last.pt")
    info = artifacts.save_portable(tmp_path / "last.pt", tmp_path / "p.pt")
    assert info["epoch"] == 3 and info["bytes"] < (tmp_path / "last.pt").stat().st_size
    assert artifacts.restore_portable(tmp_path / "p.pt", tmp_path / "new" / "last.pt") == 3
    back = torch.load(tmp_path / "new" / "last.pt", weights_only=True)
    assert back["optimizer"]["state"] == {} and back["epoch"] == 3
    for k, v in model.state_dict().items():  # fp32 again, within bf16 rounding of the original
        assert back["model"][k].dtype == v.dtype
        assert torch.allclose(back["model"][k].float(), v.float(), rtol=1e-2, atol=1e-2), k
    parts = artifacts.save_parts({"x": torch.arange(10_000)}, tmp_path / "parts", "t.pt", part_bytes=20_000)
    assert len(parts["parts"]) > 1 and torch.equal(artifacts.load_parts(tmp_path / "parts", "t.pt")["x"],
                                                   torch.arange(10_000))


def test_data_pack_round_trip_matches_load_dataset(tmp_path):
    """A tiny CIFAR-like JPEG folder packs and unpacks into cifar-10-batches-py that load_dataset reads to the
    same images, labels and classes as the folder itself."""
    from PIL import Image

    from simclr_lib.data import load_dataset

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            d = tmp_path / "src" / "cifar10" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                px = torch.randint(0, 256, (32, 32, 3), generator=gen, dtype=torch.uint8).numpy()
                Image.fromarray(px).save(d / f"{i}.jpg", quality=90)
    meta = pack_data.pack(tmp_path / "src", tmp_path / "pack.npz")
    assert meta["splits"]["train"]["n"] == 6
    report = pack_data.unpack(tmp_path / "pack.npz", tmp_path / "dst")
    assert all(s["sha256_match"] for s in report["splits"].values())
    for split in ("train", "test"):
        a = load_dataset("cifar10", split, tmp_path / "src", progress=False)
        b = load_dataset("cifar10", split, tmp_path / "dst", progress=False)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes
    assert pack_data.unpack(tmp_path / "pack.npz", tmp_path / "dst")["reused"] is True
