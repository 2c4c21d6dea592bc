"""Small Linux ``/proc`` readings shared by the parts that name another process (a busy serial port, a busy
``--serve`` address): standard library only."""

from __future__ import annotations

from pathlib import Path


def process_name(pid: int | str) -> str:
    """The command name of ``pid`` (``/proc/PID/comm``), or "?" when it is gone or not ours to read."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
