"""One writer per run folder: the kernel's lock on ``.lock`` (``fcntl.flock``), and the folder checks before a run.

``pretrain`` takes the lock before it writes anything and releases it on exit. The lock is held by an open file,
so it ends with its process however that ends (Ctrl-C, SIGTERM, kill -9, a container restarted with the same
pid): a lock that no process holds is taken over at once, whatever its file says (empty, garbage, a recycled or
this very pid), and of processes that start together exactly one wins. The file's content (pid, host, start
time) only names the holder in the message a second writer gets.

The checks turn what the file system would raise deep in a run (``--out`` a file, below a file, read-only, a run
there, another tool's files) into one line before any work is done. ``--overwrite``, and a fresh start over a run
that never wrote a checkpoint, remove only the files a run writes (:func:`clear_run`) and name what stays.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

from simclr_lib.runs.paths import PathLike

try:
    import fcntl
except ImportError:  # Windows: no advisory file locks
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
RUN_FILES = ("config.json", "metrics.json", "checkpoints/last.pt")  # what a run writes (plus TensorBoard events)
TEMP_PATTERNS = (".simclr-*.tmp",  # a killed atomic write (runtime._atomic_file); below: the names before 0.3
                 ".config.json.*.tmp", ".metrics.json.*.tmp", ".last.pt.*.tmp")
CONFIG_KEYS = frozenset({"arch", "temperature", "batch_size", "epochs"})  # every simclr_lib config.json has them
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)  # a file system without flock


def _read(fd: int) -> str:
    """The lock file's content (pid, host, start time as JSON; may be empty or garbage)."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode("utf-8", "replace")


def _owner(text: str) -> dict:
    """The lock file's content as a dict (empty when it is empty or not a JSON object)."""
    try:
        owner = json.loads(text)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _busy(path: Path, text: str) -> str:
    """The one line a second writer gets: who holds the lock on ``path``'s folder."""
    owner = _owner(text)
    pid, host = owner.get("pid"), owner.get("host")
    if pid == os.getpid() and host == socket.gethostname():
        return (f"{path.parent} is being written by this process already (a run started in it has not ended); "
                "let it end, or choose another --out")
    who = f"pid {pid} on {host} since {owner.get('started')}" if pid else "another process (it is just starting)"
    return f"{path.parent} is being written by {who}; wait for it to end, or choose another --out"


def _taken_over(path: Path, text: str) -> str:
    """The one line said when a lock file that no process holds any more is taken over."""
    owner = _owner(text)
    if isinstance(owner.get("pid"), int):
        return (f"taking over the stale lock of pid {owner['pid']} on {owner.get('host')} in {path.parent}: that "
                "process no longer holds it (it ended without releasing it)")
    what = "an empty" if not text.strip() else "an unreadable"
    return f"taking over the stale lock in {path.parent} ({what} {path.name} that no process holds)"


class RunLock:
    """``with RunLock(folder):`` - the one writer of ``folder``: ``fcntl.flock`` on ``folder/.lock``.

    The kernel releases the lock when its process ends, however it ends; the file (pid, host, start time) only
    names the holder. A file system without locks gets a warning and no protection.
    """

    def __init__(self, folder: PathLike) -> None:
        self.path, self.held, self._fd = Path(folder) / LOCK_NAME, False, -1

    def __enter__(self) -> "RunLock":
        for _ in range(100):  # again only when the holder released and removed the file in between
            fd, created = self._open()
            if fd < 0:
                continue
            try:
                if self._lock(fd) and self._current(fd):
                    before, self._fd, self.held = _read(fd), fd, True
                    break
            except BaseException:  # refused, or Ctrl-C: never keep a file (and its lock) open
                os.close(fd)
                raise
            os.close(fd)
        else:
            raise ValueError(f"could not take the lock {self.path}: it keeps being replaced; is another run "
                             f"starting in {self.path.parent}?")
        try:
            self._record()
            if not created:
                print(_taken_over(self.path, before), file=sys.stderr, flush=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _open(self) -> tuple[int, bool]:
        """(fd, created) of the lock file, created if missing; (-1, False) if it vanished in between."""
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                return os.open(self.path, flags), False
        except FileNotFoundError:
            return -1, False
        except OSError as e:
            raise ValueError(f"cannot open the lock {self.path} ({e.strerror}); if no run is writing "
                             f"{self.path.parent}, delete {self.path}, or choose another --out") from None

    def _lock(self, fd: int) -> bool:
        """``flock`` the file, or refuse in one line naming its holder (the caller closes ``fd``); a file system
        without locks only warns."""
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "no fcntl module on this platform")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(_busy(self.path, _read(fd))) from None
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise ValueError(f"cannot lock {self.path} ({e.strerror}); choose another --out") from None
            warnings.warn(f"{self.path.parent} is on a file system without file locks ({e.strerror}): nothing "
                          "stops a second process from writing this run at the same time", stacklevel=4)
        return True

    def _current(self, fd: int) -> bool:
        """Whether ``.lock`` is still the file ``fd`` holds (a releasing holder removes it: then lock the new one)."""
        try:
            st, own = os.stat(self.path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def _record(self) -> None:
        """Write pid, host and start time into the held lock; a failure (a full disk) is one line (and the caller
        lets go of the lock)."""
        me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
        try:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, json.dumps(me).encode())
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise ValueError(f"no space left on the device of {self.path.parent} (writing its lock "
                                 f"{self.path.name}); free some space, or choose another --out") from None
            raise ValueError(f"cannot write the lock {self.path} ({e.strerror}); choose another --out") from None

    def __exit__(self, *exc: object) -> None:
        """Let go: remove ``.lock`` (while still holding it), then close it, which ends the kernel's lock."""
        if not self.held:
            return
        with contextlib.suppress(OSError):
            if self._current(self._fd):
                self.path.unlink()  # while still holding it: a process waiting on this file then retries
        os.close(self._fd)
        self._fd, self.held = -1, False


def _is_ours(path: Path) -> bool:
    """Whether ``path`` (``config.json`` or ``metrics.json``) is a file that a simclr_lib run or quickstart wrote."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    return CONFIG_KEYS <= data.keys() if path.name == "config.json" else "history" in data


def foreign_files(folder: PathLike) -> list[Path]:
    """The files a run in ``folder`` would replace that no simclr_lib run wrote (another tool's ``config.json``)."""
    folder = Path(folder)
    return [p for p in (folder / "config.json", folder / "metrics.json") if p.exists() and not _is_ours(p)]


def holds_run(folder: PathLike) -> Optional[str]:
    """A one-phrase description of the run in ``folder``, or None if there is none to continue.

    A run that never wrote a checkpoint (stopped in its first epoch) counts as not started: a fresh run replaces it.
    A finished one whose checkpoint was deleted still counts (its metrics.json).
    """
    ckpt, metrics = Path(folder) / "checkpoints" / "last.pt", Path(folder) / "metrics.json"
    if ckpt.is_file():
        return f"a checkpoint ({ckpt})"
    return f"a finished run's metrics ({metrics})" if metrics.is_file() else None


def prepare_out_dir(folder: PathLike, resume: bool, overwrite: bool, *, resumable: bool = True) -> None:
    """Check ``folder`` before a run: a writable folder, no other tool's files that the run would replace, and no
    run in it unless resuming or overwriting (``resumable=False``: the command has no ``--resume`` to advise)."""
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
    foreign = foreign_files(folder)
    if foreign:
        raise ValueError(f"{foreign[0]} is not a simclr_lib run's file (another tool's, or a damaged one) and a run in "
                         f"{folder} would replace it; move it elsewhere, or choose another --out")
    existing = holds_run(folder)
    if existing and not resume and not overwrite:
        advice = ("continue it with --resume, replace it with --overwrite," if resumable
                  else "replace it with --overwrite")
        raise ValueError(f"{folder} already holds a run ({existing}); {advice} or choose another --out")


def _names(paths: list[Path], folder: Path) -> str:
    """``config.json, checkpoints/last.pt, 2 TensorBoard event files``: at most 6 names, then a count."""
    events = [p for p in paths if p.name.startswith("events.out.tfevents.")]
    names = [p.relative_to(folder).as_posix() for p in paths if p not in events]
    if events:
        names.append(f"{len(events)} TensorBoard event file{'s' if len(events) > 1 else ''}")
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def clear_run(folder: PathLike, why: str = "replacing the run", always: bool = False) -> list[Path]:
    """Remove what a run wrote in ``folder``, and nothing else: ``--overwrite``, or a run never checkpointed.

    Removed: ``checkpoints/last.pt``, temporary files of killed atomic writes, ``config.json`` and ``metrics.json``
    where a simclr_lib run wrote them, TensorBoard event files, and ``checkpoints/`` once empty. Everything else
    (a checkpoint moved aside as ``last.pt.corrupt``, another tool's files) stays; where something stays (or with
    ``always``), one line names what went and what stayed.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    mine = [folder / "checkpoints" / "last.pt", *(p for p in (folder / "config.json", folder / "metrics.json")
                                                   if _is_ours(p))]
    gone = [p for p in mine if p.is_file()] + sorted(folder.glob("events.out.tfevents.*"))
    for p in gone:
        p.unlink(missing_ok=True)
    gone += remove_stale_temp_files(folder)
    with contextlib.suppress(OSError):
        (folder / "checkpoints").rmdir()  # only when nothing else is in it
    left = [p for d in (folder, folder / "checkpoints") if d.is_dir() for p in sorted(d.iterdir())
            if p.is_file() and p.name != LOCK_NAME]
    if gone and (left or always):
        print(f"{why} in {folder}: removed {_names(gone, folder)}"
              + (f"; left as they were: {_names(left, folder)}" if left else ""), file=sys.stderr, flush=True)
    return gone


def remove_stale_temp_files(folder: PathLike) -> list[Path]:
    """Delete the temporary files that a killed atomic write of the run left behind (only while holding the lock)."""
    stale = [p for d in (Path(folder), Path(folder) / "checkpoints") if d.is_dir()
             for pattern in TEMP_PATTERNS for p in d.glob(pattern)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def open_run(folder: PathLike, resume: bool = False, overwrite: bool = False, writer: bool = True) -> Iterator[Path]:
    """``with open_run(out_dir, resume, overwrite):`` the checks before a run writes anything, the folder's lock
    for as long as the run lasts, the removal of the old run's files (``--overwrite``, or a run that never wrote a
    checkpoint, which a fresh run replaces: :func:`clear_run`) and the stale temporary files of a killed write.
    Processes that are not the ``writer`` (torchrun ranks > 0) only wait inside it.

    Yields the run folder.
    """
    folder = Path(folder)
    if not writer:
        yield folder
        return
    prepare_out_dir(folder, resume, overwrite)
    with RunLock(folder):
        if not resume and overwrite:
            clear_run(folder)
        elif not resume and holds_run(folder) is None:  # a run that never wrote a checkpoint starts afresh
            clear_run(folder, "starting afresh (the run there never wrote a checkpoint)", always=True)
        remove_stale_temp_files(folder)
        yield folder
