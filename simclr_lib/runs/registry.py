"""Shipped checkpoints: ``simclr_lib.pretrained(name | path | URL)`` returns ``(model, config, info)``.

A name is looked up in :data:`REGISTRY`; its file is either committed in this repository (``url`` relative to the
repository root, e.g. ``weights/small-cifar10.pt``; read in place in a clone, downloaded from :data:`RAW_BASE`
by a pip install without the repository, as on Colab) or downloaded from an ``https://`` URL (Colab) into
``<data dir>/pretrained``. Every registry entry carries the SHA-256 of its file: a file whose hash differs is
refused, never loaded.

``simclr_lib.pretrained`` is this module's :func:`pretrained`: the one loader of trained models (a name, a run
folder, a checkpoint file or a URL).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from simclr_lib import __version__
from simclr_lib.data import resolve_data_dir
from simclr_lib.runs.checkpoint import load_checkpoint, model_from_checkpoint
from simclr_lib.runs.paths import PathLike, checkpoint_file

# The repository, in one place: every notebook's Colab badge and install cell, and the shipped weights, use it
REPO_URL = "https://github.com/simclr-step-by-step/simclr-step-by-step"

REPO_ROOT = Path(__file__).resolve().parents[2]  # repository-relative registry URLs are resolved against it
# where a repository file is downloaded from when this is a pip install without the repository (e.g. Colab)
# (the release tag of this version, so that a release's notebooks load that release's weights)
RAW_BASE = REPO_URL.replace("https://github.com/", "https://raw.githubusercontent.com/") + f"/v{__version__}/"
URL_SCHEMES = ("http://", "https://", "file://")


@dataclass(frozen=True)
class Entry:
    """One shipped checkpoint.

    Attributes:
        url: An ``https://`` URL, or a path relative to the repository root for a file committed here.
        sha256: SHA-256 (64 hex digits) of the checkpoint file.
        description: One line: architecture, data, epochs, what it reaches.
    """

    url: str
    sha256: str
    description: str


# Never an entry for a file that is not published. To come: the GPU ResNet-18 of issue 13 
REGISTRY: dict[str, Entry] = {
    "small-cifar10": Entry(
        "weights/small-cifar10.pt", "1a492aca5bef0922ad8be695601e79542a6441e1bea1e2bce48a453fbf82b575",
        ("small encoder (1.1 M parameters), SimCLRConfig.cpu(): 120 epochs on all 50,000 CIFAR-10 training"
         " images, 1.5 h on a 2-core CPU; linear probe 75.5 % (random init 41.8 %), kNN 71.0 %")),
}


def pretrained(source: PathLike, *, data_dir: Optional[PathLike] = None,
               map_location: Union[str, torch.device] = "cpu", progress: bool = True,
               sha256: Optional[str] = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Load a trained SimCLR model -- shipped, published, or a run of yours -- rebuilt from its own config, in eval
    mode: the one loader of trained models (``simclr_lib.pretrained``). Taught in notebook 04.

    Args:
        source: A :data:`REGISTRY` name; a local checkpoint file or run directory; or an ``http(s)://`` /
            ``file://`` URL, optionally ending in ``#sha256=<hex>``.
        data_dir: Data folder whose ``pretrained/`` sub-folder caches downloads (default: ``resolve_data_dir()``).
        map_location: Device the model is put on.
        progress: Show a progress bar while downloading.
        sha256: Expected SHA-256 of a URL's or path's file (registry entries carry their own).

    Returns:
        ``(model, config, info)``: the ``SimCLRModel``, its ``SimCLRConfig``, and a dict with ``name``,
        ``path``, ``sha256``, ``description``, ``epoch`` (epochs trained), ``history`` (the per-epoch records of
        its training run), ``history_length`` and ``version``.

    Raises:
        ValueError: Unknown name, malformed hash, or a file whose SHA-256 is not the expected one.
        FileNotFoundError: A local path or repository file that is not there.
        OSError: A download that failed (offline, HTTP error); nothing partial is left in the cache.
    """
    path, name, description, expected = _resolve(str(source), data_dir, progress, sha256)
    actual = file_sha256(path)
    if expected and actual != expected:
        raise ValueError(f"{path} has sha256 {actual} but {expected} is expected: it is another or a damaged "
                         f"file; replace it (git checkout, download again) or pass the matching sha256")
    ckpt = load_checkpoint(path, map_location="cpu")  # read once: weights, config and history
    model, cfg = model_from_checkpoint(ckpt, path, map_location)
    history = list(ckpt.get("history") or [])
    info = dict(name=name, path=str(path), sha256=actual, description=description, epoch=ckpt.get("epoch"),
                history=history, history_length=len(history), version=ckpt.get("version"))
    return model, cfg, info


def _resolve(source: str, data_dir: Optional[PathLike], progress: bool,
             sha256: Optional[str]) -> tuple[Path, str, str, Optional[str]]:
    """``(local file, name, description, expected sha256)``: downloads where needed."""
    cache = resolve_data_dir(data_dir) / "pretrained"
    if source.startswith(URL_SCHEMES):
        url, fragment = urllib.parse.urldefrag(source)
        expected = _check_hex(sha256 or _fragment_sha(fragment), source)
        return fetch(url, cache / _url_file_name(url), expected, progress), source, "", expected
    if source in REGISTRY:
        entry = REGISTRY[source]
        expected = _check_hex(entry.sha256, source)
        return _entry_file(source, entry, expected, cache, progress), source, entry.description, expected
    path = checkpoint_file(source)
    if path.is_file():
        return path, path.stem, "", _check_hex(sha256, source)
    known = ", ".join(sorted(REGISTRY)) or "none yet, the registry is empty"
    if "/" in source or os.sep in source or source.endswith((".pt", ".pth", ".ckpt")):
        raise FileNotFoundError(f"no checkpoint at {path}; give an existing file, a run directory, a URL or a "
                                f"registry name ({known})")
    raise ValueError(f"unknown pretrained checkpoint {source!r} (known names: {known}); or pass a local path or "
                     "an http(s) URL")


def _entry_file(name: str, entry: Entry, expected: Optional[str], cache: Path, progress: bool) -> Path:
    """The local file of a registry entry: the repository's own, or downloaded into ``cache``."""
    dst = cache / (name + (Path(entry.url).suffix or ".pt"))
    if entry.url.startswith(URL_SCHEMES):
        return fetch(entry.url, dst, expected, progress)
    path = REPO_ROOT / entry.url
    if path.is_file():
        return path  # a clone: read in place
    # a pip install (Colab): the same file from the release in the repository, cached and hash-checked
    return fetch(RAW_BASE + entry.url, dst, expected, progress)


def fetch(url: str, dst: Path, expected: Optional[str] = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dst`` atomically (temporary name, hash check, rename); reuse a cached ``dst``.

    Args:
        url: An ``http(s)://`` or ``file://`` URL.
        dst: Cache file. When it exists it is reused (after the hash check when ``expected`` is given).
        expected: SHA-256 of the file, or None to skip the check.
        progress: Show a progress bar.

    Returns:
        ``dst``.

    Raises:
        ValueError: The cached or downloaded file has another SHA-256 (a download is then not kept).
        OSError: The download failed; nothing is left in ``dst``'s folder.
    """
    if dst.is_file():
        return _verified(dst, expected, "delete it to download it again")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".download")
    os.close(fd)
    try:
        try:
            torch.hub.download_url_to_file(url, tmp, hash_prefix=None, progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise OSError(_download_error(url, e, dst)) from None
        _verified(Path(tmp), expected, f"nothing was kept; download {url} again, or check the URL and the hash")
        os.replace(tmp, dst)
    finally:
        _remove_partials(Path(tmp))
    return dst


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, expected: Optional[str], fix: str) -> Path:
    """``path`` if its SHA-256 is ``expected`` (or nothing is expected); else a one-line ValueError."""
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise ValueError(f"{path} has sha256 {actual} but {expected} is expected; {fix}")
    return path


def _check_hex(sha256: Optional[str], source: str) -> Optional[str]:
    """A full SHA-256 in lower case, or None; anything else is a one-line error."""
    if not sha256:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"sha256 {sha256!r} for {source} is not 64 hex digits; give the full SHA-256 "
                         "(sha256sum FILE)")
    return sha256.lower()


def _fragment_sha(fragment: str) -> Optional[str]:
    """The ``<hex>`` of a URL fragment ``sha256=<hex>``."""
    return fragment[len("sha256="):] if fragment.startswith("sha256=") else None


def _url_file_name(url: str) -> str:
    """Cache name of a URL: its file name plus 8 hex digits of the URL's hash (two ``last.pt`` never clash)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "checkpoint.pt"
    tag = hashlib.sha256(url.encode()).hexdigest()[:8]
    stem, suffix = (name.rsplit(".", 1)[0], "." + name.rsplit(".", 1)[1]) if "." in name else (name, "")
    return f"{stem}-{tag}{suffix}"


def _download_error(url: str, e: BaseException, dst: Path) -> str:
    """One line: what failed, why (first line only), and where to put the file by hand."""
    reason = getattr(e, "reason", None) if not isinstance(e, urllib.error.HTTPError) else None
    text = (str(reason if reason is not None else e).strip().splitlines() or [type(e).__name__])[0][:200]
    hint = "is the URL right?" if isinstance(e, urllib.error.HTTPError) else "you are offline?"
    return f"cannot download {url} ({text}); {hint} put the file at {dst} or pass a local path"


def _remove_partials(tmp: Path) -> None:
    """Remove a temporary file and the ``<tmp>.<id>.partial`` that ``torch.hub`` writes beside it."""
    for p in [tmp, *tmp.parent.glob(f"{tmp.name}.*.partial")]:
        p.unlink(missing_ok=True)
