"""A live page in the browser for ``edgessl run``, ``monitor`` and ``record`` (``--serve [HOST:]PORT``).

Standard library and numpy only, and nothing from the runtime, the bridge or the trainer, so that every
command can serve it: :class:`~edgessl.dashboard.server.Dashboard` runs a read-only HTTP server in daemon threads, the command's loop
feeds its :class:`~edgessl.dashboard.hub.Hub` through cheap non-blocking calls, and the page (shipped in
``static/``: HTML, one small script, one style sheet; nothing from the network) draws it. docs/dashboard.md
is the user's page.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from edgessl.dashboard.address import is_loopback, parse_address

if TYPE_CHECKING:  # the server (http.server, numpy) is imported when a command serves, not at every start
    from edgessl.dashboard.server import Dashboard

__all__ = ["add_serve_flag", "open_dashboard", "serving", "parse_address", "is_loopback", "serve_address"]

SERVE_HELP = ("serve a live, read-only page of the stream and the decisions at [HOST:]PORT (not a URL), e.g. 8765 "
              "(127.0.0.1: this machine only) or 0.0.0.0:8765 (anyone on the network can watch); 0 picks a free "
              "port (default: off)")  # fmt: skip


def serve_address(text: str) -> tuple[str, int]:
    """``--serve``'s argparse type."""
    try:
        return parse_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_serve_flag(p: argparse.ArgumentParser, what: str = "the stream and the decisions") -> None:
    p.add_argument("--serve", type=serve_address, default=None, metavar="[HOST:]PORT",
                   help=SERVE_HELP.replace("the stream and the decisions", what))  # fmt: skip


def open_dashboard(address: tuple[str, int], command: str, out: TextIO, json_mode: bool = False,
                   flag: str = "--serve") -> Dashboard:  # fmt: skip
    """Start the page's server and say where it is: ``# dashboard at URL (read-only)`` on ``out`` (with
    ``json_mode``, a ``{"dashboard": {...}}`` line), for ``0.0.0.0`` the URL others open (the machine's address
    on its network); a one-line warning on stderr when it listens beyond this machine. The caller closes it
    (``with``).

    Raises:
        UsageError: the address cannot be listened on (see :class:`Dashboard`).
    """
    from edgessl.dashboard.server import Dashboard

    host, port = address
    dash = Dashboard(host, port, command=command, flag=flag).start()
    url, what = dash.open_url()
    if json_mode:
        print(json.dumps({"dashboard": {"url": url, "host": dash.host, "port": dash.port, "read_only": True}}),
              file=out, flush=True)  # fmt: skip
    else:
        print(f"# dashboard at {url} ({what + '; ' if what else ''}read-only)", file=out, flush=True)
    if not dash.loopback:
        print(f"edgessl {command}: warning: {flag} {dash.where}: anyone who can reach this machine on that network "
              "can watch the stream (the page is read-only; serve on 127.0.0.1 and use an SSH tunnel to keep it "
              "private)", file=sys.stderr, flush=True)  # fmt: skip
    return dash


@contextlib.contextmanager
def serving(address: tuple[str, int] | None, command: str, out: TextIO, json_mode: bool = False) -> Iterator[Dashboard | None]:
    """:func:`open_dashboard` for the ``with`` block when ``address`` is given (``--serve``), else None."""
    if address is None:
        yield None
        return
    dash = open_dashboard(address, command, out, json_mode)
    try:
        yield dash
    finally:
        dash.close()
