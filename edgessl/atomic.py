"""Files replaced atomically: written to a temporary file in the same folder, flushed to disk, then renamed
over the target, so a crash or a kill leaves the old file or the new one, never half of one (stdlib + numpy)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "save_npz_atomic"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write exactly ``path`` (no suffix added) through ``write(binary file)``, atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_npz_atomic(path: str | Path, **arrays: Any) -> None:
    """``np.savez`` to exactly ``path``, atomically (a file object: np.savez would append ".npz" to a name)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))
