"""One error policy: every failure belongs to a class, and each class has its own exit code.

Library code raises a subclass of :class:`EdgesslError` (``BundleError(ModelError, ValueError)`` keeps its old
base so existing ``except ValueError`` clauses still work). The command line's boundary, ``edgessl.cli.main``,
turns any exception into one stderr line ``edgessl <command>: error: <message>`` and the exit code that
:func:`classify` gives; a traceback only with ``edgessl --debug``. ``docs/errors.md`` is the user's table.

This module imports nothing from edgessl (and nothing heavy), so every other module may import it.
"""

from __future__ import annotations

import enum
import errno
import json
import sys
from typing import ClassVar


class ExitCode(enum.IntEnum):
    """Exit codes, one per class of failure (a script can branch on them)."""

    OK = 0
    USAGE = 2  # a flag, argument, config file or named path is wrong (argparse uses 2 too)
    DATA = 3  # a data set, recording or CSV is malformed or does not fit the command
    MODEL = 4  # a checkpoint or bundle is unreadable, tampered with, or refused (export, verify)
    DEVICE = 5  # a serial port or device failed: missing port, unplugged, protocol violation
    MISSING_EXTRA = 6  # the command needs an optional dependency that is not installed (torch on a Pi)
    INTERNAL = 70  # a bug in edgessl (sysexits' EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, what a shell reports


class EdgesslError(Exception):
    """Base of every error edgessl raises on purpose; the subclass decides the exit code."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL


class UsageError(EdgesslError):
    """A flag, argument, config file or named path is wrong; the message names it and what was expected."""

    exit_code = ExitCode.USAGE


class DataError(EdgesslError):
    """Input data is malformed or does not fit the command; the message names the file (and line)."""

    exit_code = ExitCode.DATA


class ModelError(EdgesslError):
    """A checkpoint or bundle cannot be used: unreadable, tampered with, inconsistent, or refused on export."""

    exit_code = ExitCode.MODEL


class DeviceError(EdgesslError):
    """The serial port or the device behind it failed; the message names the port."""

    exit_code = ExitCode.DEVICE


# optional dependencies -> the extra that installs them (pyproject.toml's [project.optional-dependencies])
EXTRAS = {"torch": "train", "tqdm": "train", "matplotlib": "train"}


class MissingExtraError(EdgesslError):
    """The command needs an optional dependency that this install lacks (the base install has no torch).

    Args:
        module: the top-level module that could not be imported, e.g. ``"torch"``.
    """

    exit_code = ExitCode.MISSING_EXTRA

    def __init__(self, module: str):
        self.module = module
        extra = EXTRAS.get(module)
        if extra == "train":
            msg = (f"needs the training extra ({module}), which a device install leaves out: on the training box, from "
                   "a checkout, pip install torch==2.13.0 && pip install '.[train]'")  # fmt: skip
        else:
            how = (f"pip install {module} (on a Jetson, NVIDIA's onnxruntime-gpu build instead: docs/deploy.md)"
                   if module == "onnxruntime" else f"pip install {module}, or reinstall edgessl's wheel")
            msg = f"needs the Python package {module!r}, which is not installed: {how}"
        super().__init__(msg)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def npz_load_text(e: BaseException) -> str:
    """Why ``np.load(..., allow_pickle=False)`` failed, in one line: numpy reads a file that is no zip as a
    pickle and answers with advice to load it unsafely, which never applies to a file edgessl wrote."""
    msg = _one_line(str(e)) or type(e).__name__
    return "not an .npz archive" if "allow_pickle" in msg else msg


def _os_message(e: OSError) -> str:
    what = e.strerror or (errno.errorcode.get(e.errno, "") if e.errno else "") or str(e)
    if e.filename is None:
        return what
    where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 is not None else "")
    hint = {
        FileNotFoundError: "expected an existing path",
        IsADirectoryError: "expected a file, not a folder",
        NotADirectoryError: "expected a folder",
        PermissionError: "expected a path this user may read/write",
        FileExistsError: "expected a path that does not exist yet",
    }.get(type(e))
    return f"{where}: {what}" + (f" ({hint})" if hint else "")


def _foreign(e: BaseException, module: str, name: str) -> bool:
    """isinstance against a class of a module only if that module is already imported (no import cost)."""
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(e, cls)


def classify(e: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one-line message for an exception that reached the CLI boundary.

    Args:
        e: the exception.

    Returns:
        ``(code, message)``; the message has no newlines and no ``edgessl <command>: error:`` prefix.
    """
    if isinstance(e, KeyboardInterrupt):
        return ExitCode.INTERRUPTED, "interrupted"
    if isinstance(e, ModuleNotFoundError) and e.name:
        e = MissingExtraError(e.name.partition(".")[0])
    if isinstance(e, EdgesslError):
        return e.exit_code, _one_line(str(e))
    if _foreign(e, "serial", "SerialException"):  # pyserial: a port that is missing, busy or gone
        return ExitCode.DEVICE, _one_line(str(e))
    if _foreign(e, "zipfile", "BadZipFile"):  # np.load of a truncated .npz
        return ExitCode.DATA, f"not a readable zip archive (truncated or not an .npz?): {_one_line(str(e))}"
    if _foreign(e, "zlib", "error"):  # a damaged byte in a compressed member (.npz, a bundle)
        return ExitCode.DATA, f"a compressed archive is damaged (a changed byte?): {_one_line(str(e))}"
    if isinstance(e, UnicodeDecodeError):
        return ExitCode.DATA, f"expected UTF-8 text: {_one_line(str(e))}"
    if isinstance(e, json.JSONDecodeError):
        return ExitCode.USAGE, f"invalid JSON: {_one_line(str(e))}"
    if _foreign(e, "tomllib", "TOMLDecodeError") or _foreign(e, "tomli", "TOMLDecodeError"):  # tomli: Python 3.10
        return ExitCode.USAGE, f"invalid TOML: {_one_line(str(e))}"
    if isinstance(e, OSError):
        return ExitCode.USAGE, _one_line(_os_message(e))
    if isinstance(e, ValueError):
        # a bare ValueError is a value the user gave that a config or function refused (the style guide's
        # "invalid hyperparameters raise ValueError at construction"); its message names the value
        return ExitCode.USAGE, _one_line(str(e))
    detail = _one_line(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    return ExitCode.INTERNAL, (f"internal error ({detail}); this is a bug in edgessl: re-run with --debug and "
                               f"report the traceback")  # fmt: skip
