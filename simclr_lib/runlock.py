"""One writer per run folder: a lock file with the owner's pid and host, and the folder checks before a run.

``pretrain`` takes the lock before it writes anything and releases it on exit; a lock left by a process that is
gone (same host, dead pid) is taken over with a message. The checks turn what the file system would raise deep in
a run (``--out`` a file, below a file, read-only, an existing run) into one line before any work is done.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Optional

LOCK_NAME = ".lock"
RUN_FILES = ("config.json", "metrics.json", "checkpoints")  # what a run writes (plus TensorBoard events)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """``with RunLock(folder):`` - exclusive writer of ``folder`` (a ``.lock`` file: pid, host, start time)."""

    def __init__(self, folder: Path) -> None:
        self.path, self.held = Path(folder) / LOCK_NAME, False

    def __enter__(self) -> "RunLock":
        me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise ValueError(f"could not take the lock {self.path}; delete it if no run is writing {self.path.parent}")

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
        except (OSError, ValueError):
            owner = {}
        pid, host = owner.get("pid"), owner.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            print(f"taking over the stale lock of pid {pid} (no longer running) in {self.path.parent}",
                  file=sys.stderr)
            self.path.unlink(missing_ok=True)
            return
        raise ValueError(f"{self.path.parent} is being written by pid {pid} on {host} since {owner.get('started')}; "
                         f"wait for it or choose another --out (delete {self.path} if that process is gone)")

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def holds_run(folder: Path) -> Optional[str]:
    """A one-phrase description of the run in ``folder`` (None if there is none)."""
    folder = Path(folder)
    ckpt, config = folder / "checkpoints" / "last.pt", folder / "config.json"
    if ckpt.is_file():
        return f"a checkpoint ({ckpt})"
    if config.is_file():
        return f"a run's config.json ({config})"
    return None


def prepare_out_dir(folder: Path, resume: bool, overwrite: bool) -> None:
    """Check ``folder`` before a run: a writable folder, and no run in it unless resuming or overwriting."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder; choose a folder for the run")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the run folder {folder} ({e.strerror}); choose another --out") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write to the run folder {folder} (no write permission or a read-only file system); "
                         "choose another --out")
    existing = holds_run(folder)
    if existing and not resume and not overwrite:
        raise ValueError(f"{folder} already holds a run ({existing}); continue it with --resume, replace it with "
                         "--overwrite, or choose another --out")


def clear_run(folder: Path) -> None:
    """Remove what a run wrote in ``folder`` (config, metrics, checkpoints, TensorBoard events): ``--overwrite``."""
    folder = Path(folder)
    for name in RUN_FILES:
        p = folder / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    for p in folder.glob("events.out.tfevents.*"):
        p.unlink()


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files that a killed atomic write left behind (only while holding the lock)."""
    stale = [p for d in (Path(folder), Path(folder) / "checkpoints") if d.is_dir()
             for p in d.glob(".*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
