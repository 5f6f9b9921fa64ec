"""A run folder's layout, in one place: every file a run writes or reads is named here.

::

    <run>/config.json            the run's settings (SimCLRConfig), written when it starts
    <run>/metrics.json           the final metrics and the per-epoch history
    <run>/checkpoints/last.pt    the latest checkpoint (atomic; every state a resume needs)
    <run>/events.out.tfevents.*  TensorBoard
    <run>/.lock                  held by the one process that writes the folder
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

PathLike = Union[str, Path]


@dataclass(frozen=True)
class RunPaths:
    """The files of the run in ``folder``: ``RunPaths(out_dir).checkpoint`` and so on."""

    folder: Path

    def __init__(self, folder: PathLike) -> None:
        object.__setattr__(self, "folder", Path(folder))

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def lock(self) -> Path:
        return self.folder / ".lock"

    def events(self) -> list[Path]:
        """The TensorBoard event files in the folder."""
        return sorted(self.folder.glob("events.out.tfevents.*"))


def checkpoint_file(source: PathLike) -> Path:
    """A run folder's ``checkpoints/last.pt``; any other path (a checkpoint file) as it is."""
    path = Path(source).expanduser()
    return RunPaths(path).checkpoint if path.is_dir() else path
