"""How a command ends when it is stopped: Ctrl-C, or SIGTERM (``kill``, a container stop, a job scheduler), which
is made to behave as Ctrl-C does. Either way the clean-up runs (the run folder's lock is released) and one line
says what was kept and what to do next: ``--resume`` where a checkpoint was written, the same command again where
none was (a run that never wrote a checkpoint counts as not started). Exit status 130 (Ctrl-C) or 143 (SIGTERM).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator


def _raise_interrupt(signum: int, frame: object) -> None:
    """The SIGTERM handler: a ``KeyboardInterrupt`` that names the signal (``interrupted`` reads it)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a container stop, a job scheduler) stops a command as Ctrl-C does: the clean-up runs
    (the run folder's lock is released) and it ends with one line. Only the main thread can install it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command left behind, and what to do next (pretrain / quickstart: their run folder)."""
    out = getattr(args, "out_dir", None) or (args.out if args.command == "quickstart" else None)
    if out is None:
        return "; nothing was written" if args.command in ("linear-eval", "knn") else ""
    ckpt = Path(out) / "checkpoints" / "last.pt"
    if args.command == "quickstart":
        return (f"; {out} holds a partial run, which a quickstart cannot resume: run it again with --overwrite, or "
                "choose another --out" if ckpt.is_file() else "; no checkpoint was written: run the same command "
                "again to start over")
    if ckpt.is_file():
        return f"; the run in {out} keeps its last checkpoint {ckpt}: continue it with --resume (--out {out})"
    return (f"; no checkpoint was written yet, so there is nothing to resume: run the same command again to start "
            f"{out} afresh")


def interrupted(args: argparse.Namespace, e: KeyboardInterrupt) -> int:
    """One line for Ctrl-C (exit 130) or SIGTERM (exit 143), from the main process only."""
    term = e.args[:1] == ("SIGTERM",)
    if os.environ.get("RANK", "0") == "0":
        print(f"python -m simclr_lib {args.command}: {'terminated (SIGTERM)' if term else 'interrupted'}"
              f"{_after_interrupt(args)}", file=sys.stderr, flush=True)
    return 143 if term else 130
