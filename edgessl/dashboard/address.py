"""``--serve``'s address: ``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` (light: the CLI imports it at start)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

from edgessl.procfs import process_name

__all__ = ["parse_address", "is_loopback", "is_unspecified", "listener_holders", "outward_address"]


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> ``(host, port)``; ``PORT`` alone is 127.0.0.1.

    Raises:
        ValueError: not such an address (the message says what was expected).
    """
    s = text.strip()
    if "://" in s or s.startswith("/"):
        raise ValueError(f"{text!r}: expected PORT or HOST:PORT, not a URL, like 8765 (this machine only) or 127.0.0.1:8765")
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    elif ":" in s:
        if s.count(":") > 1:
            raise ValueError(f"{text!r}: an IPv6 address goes in brackets; expected [IPv6]:PORT, like [::1]:8765")
        host, port_text = s.split(":")
    else:
        host, port_text = "127.0.0.1", s
    if not host:
        raise ValueError(f"{text!r}: the host is empty; expected PORT or HOST:PORT, like 8765 or 0.0.0.0:8765")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r}: expected a port from 0 to 65535 (0 picks a free one), as PORT or HOST:PORT")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified(host: str) -> bool:
    """Whether ``host`` means every interface (``0.0.0.0``, ``::``): a URL with it opens nowhere."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def outward_address(ipv6: bool = False) -> str | None:
    """The address others on the network reach this machine at: the source address the routing table picks
    for a documentation address (a UDP ``connect()`` sends no packet); None without a route (no network)."""
    family, target = (socket.AF_INET6, "2001:db8::1") if ipv6 else (socket.AF_INET, "192.0.2.1")
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            addr = str(s.getsockname()[0])
    except OSError:
        return None
    return None if is_loopback(addr) or is_unspecified(addr) else addr


def listener_holders(port: int) -> list[tuple[int, str]]:
    """Processes listening on TCP ``port`` (any address): ``[(pid, command name)]`` (Linux ``/proc``; others, or
    another user's process: [])."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{f[9]}]")
    out = []
    if inodes and os.path.isdir("/proc/self/fd"):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                held = any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
            if held:
                out.append((int(pid), process_name(pid)))
    return out
