"""Who else has a serial port open (Linux ``/proc``): what ``edgessl devices`` reports as busy, and what a
command that cannot open a port, or waits for it, names."""

from __future__ import annotations

import os
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
