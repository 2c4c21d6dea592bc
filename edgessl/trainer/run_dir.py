"""The output folder of a training run: usable, and never another run's files overwritten unasked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from edgessl.errors import UsageError

# what pretrain, finetune and finetune --cv write; any of them marks a folder as holding a run
RUN_FILES = ("checkpoint.pt", "model.pt", "metrics.json", "metrics.jsonl", "cv.json")


def claim_out_dir(out: str | Path, *, force: bool = False, resume: bool = False, flag: str = "--out",
                  force_hint: str = "add --force") -> Path:
    """Check ``out`` before a run writes there, and clear the previous run's files when ``force`` allows it.

    A folder that holds another run (any of :data:`RUN_FILES`) is refused unless ``resume`` (the same run
    continues; the checkpoint's config is checked when it loads) or ``force`` (those files are removed first, so
    two runs' ``metrics.jsonl`` never mix; nothing else in the folder is touched).

    Args:
        out: the output folder (created if missing).
        force: replace a previous run in ``out``.
        resume: continue the run in ``out``.
        flag: the flag that named ``out``, for the messages.
        force_hint: how the caller says ``force`` (the Python API: ``pass force=True``).

    Returns:
        ``out`` as a Path, existing and writable.

    Raises:
        UsageError: ``out`` is a file, cannot be created or written, or holds another run.
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file; expected a folder (new or holding this run)")
    if not p.exists():
        try:
            p.mkdir(parents=True)
        except OSError as e:
            raise UsageError(f"{flag} {p}: cannot create the folder ({e.strerror or e}); expected a writable path"
                             ) from e  # fmt: skip
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {p}: the folder is not writable by this user; expected a writable folder")
    previous = [name for name in RUN_FILES if (p / name).exists()]
    if previous and not resume:
        if not force:
            raise UsageError(f"{flag} {p}: holds another run ({', '.join(previous)}); choose a new folder, or "
                             f"{force_hint} to replace that run's files")  # fmt: skip
        for name in previous:
            (p / name).unlink()
    return p


def check_out_file(out: str | Path, *, force: bool = False, flag: str = "--out", force_hint: str = "add --force") -> Path:
    """Check an output file before a command writes it: not a folder, its folder writable, and an existing
    file replaced only with ``force``.

    Raises:
        UsageError: naming ``flag`` and the path.
    """
    p = Path(out)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a folder; expected a file path, e.g. model.essl")
    if p.exists() and not force:
        raise UsageError(f"{flag} {p}: exists; choose another path, or {force_hint} to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {p}: folder {parent} does not exist; expected a path in an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {p}: folder {parent} is not writable by this user")
    return p


def check_not_init(out: str | Path, init: str | Path | None, *, flag: str = "--out", init_flag: str = "--init") -> None:
    """Refuse an output folder that is the folder a run starts from: replacing its files would delete the
    pretrained model before it is read.

    Raises:
        UsageError: naming both.
    """
    if init and Path(out).resolve() == Path(init).resolve():
        raise UsageError(f"{flag} {out}: is {init_flag}'s folder, the pretrained run this one starts from; choose "
                         "another folder for the fine-tuned model")  # fmt: skip


@contextlib.contextmanager
def run_in(out: str | Path, *, force: bool = False, resume: bool = False, flag: str = "--out",
           force_hint: str = "add --force") -> Iterator[Path]:
    """:func:`claim_out_dir` for the length of a run: a run that fails before writing anything leaves no
    empty folder behind (only a folder this call created, and only while it is still empty, is removed)."""
    fresh = not Path(out).exists()
    p = claim_out_dir(out, force=force, resume=resume, flag=flag, force_hint=force_hint)
    try:
        yield p
    except BaseException:
        if fresh and p.is_dir() and not any(p.iterdir()):
            p.rmdir()
        raise
