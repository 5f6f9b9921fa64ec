"""tools/gpu/full_scale.py --dry-run: every stage on the CPU at toy size, its JSONs, resume, and the travel kit
(data pack, portable checkpoints, export + collect) that carries a GPU run across 10-minute calls."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu" / "full_scale.py"
sys.path.insert(0, str(ROOT / "tools" / "gpu"))

import carry  # noqa: E402

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
    b, c, f = stage(out, "b")["results"], stage(out, "c")["results"], stage(out, "f")["results"]
    assert b["rows"][0]["views_per_s"] > 0 and 0 < b["rows"][0]["aug_share"] < 1 and b["flops_per_step"]["32"] > 0
    assert 0 <= c["trained"]["linear_top1"] <= 1 and c["trained"]["C"] in (0.1, 1.0)
    assert "knn_top1" in c["random_init"] and c["training"]["epochs_run"] == 1
    assert f["reload_max_rel_diff_h"] < 0.05 and len(f["sha256"]) == 64
    stamps = {n: stage(out, n)["date"] for n in STAGES}
    second = run("--out", str(out), "--export", str(tmp_path / "exp"))
    assert second.count("done earlier, skipped") == len(STAGES) and "ALL DONE" in second
    assert {n: stage(out, n)["date"] for n in STAGES} == stamps
    assert json.loads((tmp_path / "exp" / "export_manifest.json").read_text())["files"] == []


@pytest.mark.slow
def test_pretraining_stops_at_the_budget_and_resumes_on_a_fresh_machine(tmp_path):
    """Call 1 stops after epoch 1 of 2 (no budget); its export, filed by ``carry.py collect``, lets call 2 finish the
    run in an empty output folder (a fresh machine) from the portable checkpoint."""
    run("--out", str(tmp_path / "m1"), "--stages", "c", "--set-c", "epochs=2", "--max-minutes", "0",
        "--export", str(tmp_path / "exp1"), expect=3)
    assert not (tmp_path / "m1" / "stages" / "c.json").exists()
    cmd = [sys.executable, str(ROOT / "tools" / "gpu" / "carry.py"), "collect", str(tmp_path / "exp1"),
           "--results", str(tmp_path / "res"), "--docs", str(tmp_path / "docs"), "--state", str(tmp_path / "st")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "st" / "portable" / "c.pt").is_file()
    out = run("--out", str(tmp_path / "m2"), "--stages", "c", "--set-c", "epochs=2", "--state", str(tmp_path / "st"))
    assert "ALL DONE" in out
    t = stage(tmp_path / "m2", "c")["results"]["training"]
    assert [c["from_epoch"] for c in t["calls"]] == [0, 1] and t["calls"][0]["stopped"] == "budget"
    assert t["resumed_from_portable_at"] == [1] and t["epochs_run"] == 2


def test_portable_checkpoint_resumes_and_the_export_round_trips(tmp_path):
    """The portable checkpoint: bf16 weights, no momentum, smaller; ``pretrain`` resumes from it. The export's
    parts join back to the same files, and a cut part is refused."""
    from simclr_lib.config import SimCLRConfig
    from simclr_lib.train import pretrain

    cfg = SimCLRConfig.smoke(out_dir=str(tmp_path / "run"), epochs=2, knn_every=0, progress=False, tensorboard=False)
    pretrain(cfg, callbacks=[lambda r: r["epoch"] == 1])
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    info = carry.save_portable(last, tmp_path / "out" / "portable" / "p.pt")
    assert info["epoch"] == 1 and info["bytes"] < last.stat().st_size
    p = torch.load(tmp_path / "out" / "portable" / "p.pt", weights_only=True)
    assert p["optimizer"]["state"] == {} and all(v.dtype in (torch.bfloat16, torch.int64) for v in p["model"].values())
    more = pretrain(cfg.replace(out_dir=str(tmp_path / "fresh")), resume=tmp_path / "out" / "portable" / "p.pt")
    assert [h["epoch"] for h in more.history] == [1, 2]
    (tmp_path / "out" / "stages").mkdir()
    (tmp_path / "out" / "stages" / "x.json").write_text("{}")
    m = carry.export(tmp_path / "out", tmp_path / "exp", since=0.0)
    assert m["files"] == ["stages/x.json", "portable/p.pt"] and m["dropped_over_limit"] == []
    carry.unpack_export(tmp_path / "exp", tmp_path / "back")
    back, sent = (tmp_path / d / "portable" / "p.pt" for d in ("back", "out"))
    assert back.read_bytes() == sent.read_bytes()
    part = tmp_path / "exp" / m["parts"][0]
    part.write_bytes(part.read_bytes()[:-1])
    with pytest.raises(ValueError, match="do not match"):
        carry.unpack_export(tmp_path / "exp", tmp_path / "again")


def test_data_pack_round_trip_matches_load_dataset(tmp_path):
    """A tiny CIFAR-like JPEG folder packs and unpacks into a folder that load_dataset reads to the same images,
    labels and classes as the original."""
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
    assert carry.pack(tmp_path / "src", tmp_path / "pack.npz")["files"] == 10
    report = carry.unpack(tmp_path / "pack.npz", tmp_path / "dst")
    assert report["splits"]["train"]["n"] == 6 and all(s["sha256_match"] for s in report["splits"].values())
    for split in ("train", "test"):
        a = load_dataset("cifar10", split, tmp_path / "src", progress=False)
        b = load_dataset("cifar10", split, tmp_path / "dst", progress=False)
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes
    assert carry.unpack(tmp_path / "pack.npz", tmp_path / "dst")["reused"] is True
