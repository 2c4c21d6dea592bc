"""Who else has a serial port open (Linux ``/proc``): what ``edgessl devices`` reports as busy, and what a
command that cannot open a port, or waits for it, names; and which running ``edgessl simulate`` serves a port."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgessl.procfs import process_name


def _pty_index(pid: str, fd: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
            if line.startswith("tty-index:"):
                return int(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def port_holders(path: str) -> list[tuple[int, str]]:
    """Processes that have ``path`` open as readers: ``[(pid, command name)]`` (Linux ``/proc``; others: []).

    The process that owns a pseudo-terminal (it holds the master side, as the simulator does) may keep one
    descriptor of the slave open without counting as a reader.
    """
    if not os.path.isdir("/proc/self/fd") or "://" in path or not os.path.exists(path):
        return []
    target = os.path.realpath(path)
    pts = target.startswith("/dev/pts/") and target.rsplit("/", 1)[1].isdigit()
    index = int(target.rsplit("/", 1)[1]) if pts else None
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        slave_fds, owns_master = 0, False
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link == target:
                slave_fds += 1
            elif pts and link in ("/dev/ptmx", "/dev/pts/ptmx"):
                idx = _pty_index(pid, fd)
                owns_master = owns_master or idx is None or idx == index
        if slave_fds - (1 if owns_master else 0) > 0:
            out.append((int(pid), process_name(pid)))
    return out


def in_use_text(path: str) -> str:
    """Who else reads ``path``, in words for a message: ``"in use by edgessl (pid 812): one program at a time
    reads a port; ..."``; "" when no other process holds it (or this system cannot tell)."""
    holders = port_holders(path)
    if not holders:
        return ""
    who = ", ".join(f"{name} (pid {pid})" for pid, name in holders)
    return (f"in use by {who}: one program at a time reads a port; stop the other first (the edgessl service: "
            "sudo systemctl stop edgessl)")  # fmt: skip


def simulate_processes() -> list[tuple[str, str, list[str]]]:
    """``(pid, cwd, argv)`` of the running ``edgessl simulate`` processes (Linux; none elsewhere)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")) if os.path.isdir("/proc") else ():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue  # gone, or not ours to look at
        if "simulate" in argv and any(a.endswith("edgessl") or a == "edgessl" for a in argv[:3]):
            out.append((pid, cwd, argv))
    return out


def argv_flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in ``argv`` (the last one given), else None."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def simulator_argv(port: str) -> list[str] | None:
    """The command line of the running ``edgessl simulate`` whose device ``port`` is (its link or the pty it
    points at), else None."""
    try:
        target = os.path.realpath(port)
    except OSError:
        return None
    for pid, cwd, argv in simulate_processes():
        link = argv_flag(argv, "--link") or os.path.join(tempfile.gettempdir(), f"edgessl-imu-{pid}")
        path = os.path.normpath(os.path.join(cwd, link))
        if os.path.islink(path) and os.path.realpath(path) == target:
            return argv
    return None


def simulator_speed(port: str, argv: list[str] | None = None) -> float | None:
    """The ``--speed`` of the running ``edgessl simulate`` whose device ``port`` is (``argv``: its command line,
    when known), else None: a simulated text board at ``--speed 4`` sends its lines 4x faster than its rate."""
    argv = argv if argv is not None else simulator_argv(port)
    if argv is None:
        return None
    try:
        return float(argv_flag(argv, "--speed") or 1.0)
    except ValueError:
        return None
