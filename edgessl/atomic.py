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

__all__ = ["atomic_write", "save_npz_atomic", "write_problem"]


def _umask() -> int:
    """The process's file-creation mask (read without changing it where Linux shows it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic against other threads creating files)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write exactly ``path`` (no suffix added) through ``write(binary file)``, atomically.

    The file gets the permissions a plain ``open(path, "w")`` would give it (those of the file it replaces,
    else 0o666 less the umask), not the temporary file's owner-only 0o600."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_problem(path: str | Path) -> str | None:
    """Why :func:`atomic_write` of ``path`` would fail now (no such folder, or one it cannot write in), else None.
    Tried with a temporary file in the folder, removed at once: a read-only mount or an immutable folder pass
    ``os.access`` and still refuse (a walkthrough's enroll recorded every take, then lost them at the save)."""
    parent = Path(path).parent
    if not parent.is_dir():
        return f"no folder {parent}"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".check", dir=parent)
    except OSError as e:
        return f"cannot write in {parent} ({e.strerror or e})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return None


def save_npz_atomic(path: str | Path, **arrays: Any) -> None:
    """``np.savez`` to exactly ``path``, atomically (a file object: np.savez would append ".npz" to a name)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


def free_path(parent: str | Path, stem: str, suffix: str = "") -> Path:
    """``parent/stem+suffix``, or ``stem2``, ``stem3`` ... the first that does not exist: a name to suggest
    that no command will refuse as taken (or, for a user state, extend with someone else's takes)."""
    k = 1
    while (Path(parent) / f"{stem}{'' if k == 1 else k}{suffix}").exists():
        k += 1
    return Path(parent) / f"{stem}{'' if k == 1 else k}{suffix}"
