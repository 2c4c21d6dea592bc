"""How a command reports its device's state changes (waiting, reconnecting, back): one implementation for
``run``, ``record``, ``monitor`` and ``enroll``."""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["StateReporter"]


class StateReporter:
    """Turns the bridge's ``on_state`` callbacks into a JSON record (``json_mode``) or a note line.

    The bridge's reader thread only queues (:meth:`on_state`); the main thread reports in :meth:`drain`.
    Waiting for a port happens in ``open()``, in the main thread, and is reported at once.

    Args:
        port: the port named in every message.
        wait: how long ``open()`` waits for the port (None: forever), for the waiting message.
        emit: writes one JSON record (``json_mode``).
        note: writes one line of text (without a leading ``#``).
        gone: what the reconnecting message adds, e.g. " (the gap is recorded)".
        hook: called with every state before it is reported (e.g. to count reconnects).
    """

    def __init__(self, port: str, wait: float | None, *, json_mode: bool, emit: Callable[[dict[str, Any]], None],
                 note: Callable[[str], None], gone: str = "", hook: Callable[[str], None] | None = None):  # fmt: skip
        self.port, self.wait, self.json_mode, self.emit, self.note = port, wait, json_mode, emit, note
        self.gone, self.hook = gone, hook
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._seen: set[str] = set()

    def on_state(self, state: str) -> None:
        """The bridge's callback (any thread)."""
        if threading.current_thread() is threading.main_thread():
            self.report(state)
        else:
            self._queue.put(state)

    def drain(self) -> None:
        """Report what the reader thread queued (call from the main thread after each read)."""
        while not self._queue.empty():
            self.report(self._queue.get())

    def _holders(self) -> str:
        """``"; in use by …"`` when another program has the port open (Linux), else ""."""
        from edgessl.firmware_bridge.ports import in_use_text

        text = in_use_text(self.port)
        return f"; {text}" if text else ""

    def _missing(self) -> str:
        """``"; it is not there: …"`` for a port path that does not exist (yet), else ""."""
        if "://" in self.port or os.path.exists(self.port):
            return ""
        return "; it is not there: if the name is wrong, `edgessl devices` lists the boards it finds"

    def report(self, state: str) -> None:
        if state == "closed":
            return
        if self.hook is not None:
            self.hook(state)
        first = state not in self._seen
        self._seen.add(state)
        if self.json_mode:
            held = self._holders() if state == "waiting" else ""
            self.emit({"device": {"state": state, "port": self.port, **({"why": held[2:]} if held else {})}})
            if held:  # a service's journal: who keeps it waiting
                warnings.warn(f"waiting for {self.port}{held}", stacklevel=2)
            elif state == "waiting" and first and (missing := self._missing()):  # ... or that its name may be
                # wrong (a walkthrough's service with a mistyped port said "waiting" only in its events file)
                warnings.warn(f"waiting for {self.port}{missing}", stacklevel=2)
        elif state == "waiting":
            limit = "forever" if self.wait is None else f"up to {self.wait:g} s"
            missing = self._missing()
            self.note(f"waiting for {self.port} ({limit}; --wait sets the limit{missing}{self._holders()})")
        elif state == "reconnecting":
            self.note(f"{self.port} went away; waiting for it to come back{self.gone}")
        elif state == "streaming" and not first:  # the first time, the command's header line says so
            self.note(f"{self.port} is back")
