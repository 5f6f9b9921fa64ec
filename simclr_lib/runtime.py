"""Device, precision, seeding and atomic file writes, resolved in one place (nanoGPT habit).

No other module calls ``.cuda()`` or picks a dtype by itself: they ask :func:`resolve_device` and
:func:`autocast_context`.
"""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # what resolve_precision resolves
TEMP_PREFIX = ".simclr-"  # the temporary files of atomic writes: .simclr-<8 random characters>.tmp


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; an unavailable explicit device is a one-line error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but CUDA is not available here; use device='cpu' or 'auto'")
    return dev


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix maths natively: CUDA compute capability >= 8.0 (Ampere and newer), or a
    CPU with AVX512-BF16 or AMX (oneDNN then runs bf16 convolutions and matmuls in hardware).

    ``torch.cuda.is_bf16_supported()`` alone also says True on older GPUs (e.g. Colab's sm_75 T4), where bf16 is
    emulated and slow; CPUs without these instructions emulate it too.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_capability(index) >= (8, 0)
    if device.type == "cpu":
        checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
        return any(check is not None and check() for check in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device`` (None means plain fp32).

    ``"auto"``: bf16 where it is native (:func:`native_bf16`: GPUs of compute capability >= 8.0, CPUs with
    AVX512-BF16 or AMX), fp16 (with a GradScaler, see :func:`make_grad_scaler`) on older GPUs, fp32 on other CPUs
    and on MPS. ``"fp32"`` is the switch back.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"precision={precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    if native_bf16(device):
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    """``nullcontext()`` for fp32, else ``torch.autocast(device.type, dtype)``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def no_autocast(device_type: str):
    """Autocast switched off (float32 maths) on ``device_type``; a plain context where autocast does not exist
    (the ``meta`` device, which the tests use to prove the training step needs no host sync)."""
    available = getattr(torch.amp, "is_autocast_available", lambda t: t in ("cpu", "cuda", "mps", "xpu"))
    if not available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def make_grad_scaler(device: torch.device, dtype: Optional[torch.dtype]) -> "torch.amp.GradScaler":
    """A ``GradScaler`` that is enabled only for fp16 (bf16 and fp32 need none; a disabled one is a no-op).

    One object either way, so the training step has no ``if scaler`` branch.
    """
    return torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _atomic_file(path: Union[str, Path], mode: str):
    """Yield a file in ``path``'s folder; on success it is flushed, synced and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short name of its own (not ".<name>.<random>.tmp"): a 255-character file name still gets its temporary file;
    # runs.lock.TEMP_PATTERNS finds the ones a killed write left behind
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a run's files get the mode every other file gets
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: Union[str, Path]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a crash never leaves half a file."""
    with _atomic_file(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def atomic_write_bytes(data: bytes, path: Union[str, Path]) -> Path:
    """Write bytes atomically (temporary file + rename), e.g. a figure rendered in memory."""
    with _atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(text: str, path: Union[str, Path]) -> Path:
    """Write text atomically (temporary file + rename)."""
    with _atomic_file(path, "w") as f:
        f.write(text)
    return Path(path)


def to_numpy(x: Any, dtype: type = np.float32) -> np.ndarray:
    """A tensor (bf16 included, on any device), array or sequence as a NumPy array of ``dtype``. Shape: unchanged."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.dtype == torch.bfloat16 else x
    return np.asarray(x).astype(dtype, copy=False)


def project_root() -> Path:
    """The repository root (the folder holding pyproject.toml and simclr_lib/) at or above the working directory --
    a notebook runs in ``notebooks/``, a command in the root -- else the working directory."""
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "simclr_lib").is_dir():
            return p
    return here
