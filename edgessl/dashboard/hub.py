"""What the page shows, collected from the command's loop and sent to the connected pages.

Two sides with one lock between them. The command's loop (the classification path) calls the cheap
methods only: :meth:`Hub.samples`, :meth:`Hub.event`, :meth:`Hub.status`, :meth:`Hub.probabilities`,
:meth:`Hub.prompt` append a reference to a bounded deque or replace a dict; no JSON, no I/O, no waiting.
One broadcaster thread wakes at most :data:`UPDATE_HZ` times a second while a page is connected (never
otherwise), decimates the samples for the plot (at most :data:`PLOT_POINTS_PER_S` per channel and second),
serialises one message and offers it to each page's bounded queue; a page whose queue is full (it does not
read) is dropped and counted, so a slow page never holds anything up.

Messages are JSON objects: ``{"type": "snapshot", ...}`` first (everything a new page needs: the last
:data:`PLOT_SECONDS` of the plot, the recent events, the latest status, probabilities and prompt), then
``{"type": "update", ...}`` with what changed since the previous one, and ``{"type": "end", "reason": ...}``
last when the command ends (so the page can tell a stopped command from a lost connection).
"""

from __future__ import annotations

import collections
import json
import math
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Hub", "Client", "UPDATE_HZ", "PLOT_POINTS_PER_S", "PLOT_SECONDS", "MAX_CLIENTS"]

UPDATE_HZ = 5.0  # messages per second to each page (the bound is 10)
PLOT_POINTS_PER_S = 50  # per channel: plenty for a 10 s plot a few hundred pixels wide
PLOT_SECONDS = 10.0  # of stream on the plot
MAX_CLIENTS = 8  # simultaneous pages; more get 503
QUEUE_MESSAGES = 25  # per page: 5 s of updates; a page that falls further behind is dropped
MAX_BLOCKS = 4096  # sample blocks waiting for the broadcaster (bounds memory whatever the block size)
MAX_EVENTS = 100  # events kept for a new page


class Client:
    """One connected page: the messages waiting for it, and whether it was dropped."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_MESSAGES)
        self.fresh = True  # gets a snapshot before any update
        self.dropped = False
        self.done = threading.Event()  # its handler has written what it was given and let go

    def offer(self, message: bytes | None) -> bool:
        try:
            self.queue.put_nowait(message)
            return True
        except queue.Full:
            return False


def _round(values: np.ndarray, digits: int = 4) -> list:
    return np.round(values.astype(np.float64), digits).tolist()


class Hub:
    """The state the page shows and the pages that watch it.

    Args:
        command: the command serving the page (``run``, ``monitor``, ``record``), shown in the title.
        update_hz: messages per second to each page (at most 10).
    """

    def __init__(self, command: str = "run", update_hz: float = UPDATE_HZ):
        if not 0 < update_hz <= 10:
            raise ValueError(f"update_hz {update_hz}: expected 0 < update_hz <= 10 (the issue's bound)")
        self.command = command
        self.period = 1.0 / update_hz
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._clients: list[Client] = []
        # written by the command's loop (under the lock, O(1) each)
        self._blocks: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque(maxlen=MAX_BLOCKS)
        self._meta: dict[str, Any] = {"command": command, "channels": [], "units": [], "labels": [], "rate_hz": None}
        self._meta_rev = 0
        self._events: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=MAX_EVENTS)
        self._event_seq = 0
        self._unknown_seq = 0  # of those, answered unknown: sent with the total, so the page's split never lags
        self._status: dict[str, Any] = {}
        self._status_rev = 0
        self._probs: dict[str, Any] | None = None
        self._probs_rev = 0
        self._prompt: dict[str, Any] | None = None
        self._prompt_rev = 0
        self.samples_total = 0
        self.counters = {"pages_served": 0, "slow_pages_dropped": 0, "messages": 0, "blocks_overwritten": 0}
        # the broadcaster's own (its thread only, or under the lock for /state)
        self._plot_t: collections.deque[float] = collections.deque()
        self._plot_x: collections.deque[list[float]] = collections.deque()
        self._stride_phase = 0
        self._sent = {"meta": -1, "status": -1, "probs": -1, "prompt": -1, "event": 0}
        self._thread: threading.Thread | None = None

    # -- the command's side: cheap, non-blocking ------------------------------------------------------
    @property
    def listening(self) -> bool:
        """Whether a page is connected (the command may skip building a status nobody reads)."""
        return bool(self._clients)

    def stream(self, channels: Sequence[str], units: Sequence[str], rate_hz: float | None = None) -> None:
        """The device's channels (again when the device changes); the plot starts over."""
        with self._lock:
            self._meta.update(channels=list(channels), units=list(units), rate_hz=rate_hz)
            self._meta_rev += 1
            self._blocks.clear()

    def model(self, labels: Sequence[str], **info: Any) -> None:
        """The model's class labels (the probability bars) and anything else to show about it."""
        with self._lock:
            self._meta.update(labels=list(labels), model=info)
            self._meta_rev += 1

    def samples(self, t: np.ndarray, values: np.ndarray) -> None:
        """``t [n]`` device seconds, ``values [n, C]`` in the channels of :meth:`stream`; kept by reference
        (the bridge hands out new arrays per block)."""
        with self._lock:
            self.samples_total += len(t)
            if len(self._blocks) == self._blocks.maxlen:
                self.counters["blocks_overwritten"] += 1
            self._blocks.append((t, values))

    def event(self, payload: dict[str, Any]) -> None:
        """A reported gesture (``Event.to_json()`` plus ``end_wall`` and, for unknowns, ``reason``)."""
        with self._lock:
            self._event_seq += 1
            self._unknown_seq += int(payload.get("label") == "unknown")
            self._events.append((self._event_seq, payload))

    def status(self, fields: dict[str, Any]) -> None:
        """Replace these top-level status fields (``device``, ``adaptation``, ``counts`` ...)."""
        with self._lock:
            self._status = {**self._status, **fields}
            self._status_rev += 1

    def probabilities(self, labels: Sequence[str], probs: Sequence[float] | np.ndarray, **info: Any) -> None:
        """The latest window's class probabilities (``info``: label, confidence, ood_score, t ...)."""
        with self._lock:
            self._probs = {"labels": list(labels), "probs": np.asarray(probs, np.float64).copy(), **info}
            self._probs_rev += 1

    def prompt(self, fields: dict[str, Any] | None) -> None:
        """``record``'s current prompt (label, take, of, state, countdown ...); None clears it."""
        with self._lock:
            self._prompt = None if fields is None else dict(fields)
            self._prompt_rev += 1

    # -- the pages' side ------------------------------------------------------------------------------
    def attach(self) -> Client | None:
        """A new page; None when :data:`MAX_CLIENTS` are connected."""
        with self._lock:
            if len(self._clients) >= MAX_CLIENTS or self._stop.is_set():
                return None
            c = Client()
            self._clients.append(c)
            self.counters["pages_served"] += 1
        self._wake.set()
        return c

    def detach(self, client: Client, slow: bool = False) -> None:
        """A page gone; ``slow``: dropped because it stopped reading (counted as the hub's own drops are)."""
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
                self.counters["slow_pages_dropped"] += int(slow)
        client.done.set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dashboard-broadcast", daemon=True)
        self._thread.start()

    def close(self, reason: str = "stopped (the command ended)", flush_s: float = 1.0) -> None:
        """Stop the broadcaster, send every page what changed since and an ``end`` message saying ``reason``,
        and give their handlers up to ``flush_s`` seconds to write it (a page told the command stopped does not
        wait for it as for a lost connection)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._clients:
            try:
                self.tick()  # the final counters
            except Exception:  # noqa: BLE001 - as in the broadcaster: counted, the end message still goes
                self.counters["broadcast_errors"] = self.counters.get("broadcast_errors", 0) + 1
        end = _sse({"type": "end", "reason": reason, "wall": round(time.time(), 3)})
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            if not (c.offer(end) and c.offer(None)):
                c.dropped = True
        deadline = time.monotonic() + flush_s
        for c in clients:
            c.done.wait(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._clients:
                # nobody listens: no ticks at all until a page connects
                self._wake.wait()
                self._wake.clear()
                continue
            t0 = time.monotonic()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the broadcaster must outlive a bad payload; counted
                self.counters["broadcast_errors"] = self.counters.get("broadcast_errors", 0) + 1
            self._stop.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def tick(self) -> None:
        """One broadcast: fold the new samples into the plot and send each page its message."""
        with self._lock:
            blocks = list(self._blocks)
            self._blocks.clear()
            meta_rev, meta = self._meta_rev, dict(self._meta)
            status_rev, status = self._status_rev, self._status
            probs_rev, probs = self._probs_rev, self._probs
            prompt_rev, prompt = self._prompt_rev, self._prompt
            events = list(self._events)
            samples_total, events_total, unknown_total = self.samples_total, self._event_seq, self._unknown_seq
            clients = list(self._clients)
        sent = self._sent
        reset = meta_rev != sent["meta"]
        if reset:
            self._plot_t.clear()
            self._plot_x.clear()
        new_t, new_x = self._decimate(blocks, meta.get("rate_hz"))
        if new_t and self._plot_t and new_t[0] < self._plot_t[-1] - 1.0:  # a new timeline (device restart)
            self._plot_t.clear()
            self._plot_x.clear()
            reset = True
        self._plot_t.extend(new_t)
        self._plot_x.extend(new_x)
        while self._plot_t and self._plot_t[0] < self._plot_t[-1] - PLOT_SECONDS:
            self._plot_t.popleft()
            self._plot_x.popleft()
        common = {"samples_total": samples_total, "events_total": events_total, "unknown_total": unknown_total,
                  "wall": round(time.time(), 3)}  # fmt: skip
        update: dict[str, Any] = {"type": "update", **common}
        if reset:
            update.update(meta=meta, reset=True, t=list(self._plot_t), x=list(self._plot_x))
        elif new_t:
            update.update(t=new_t, x=new_x)
        if status_rev != sent["status"]:
            update["status"] = status
        if probs_rev != sent["probs"]:
            update["probabilities"] = self._probs_json(probs)
        if prompt_rev != sent["prompt"]:
            update["prompt"] = prompt
        new_events = [p for s, p in events if s > sent["event"]]
        if new_events:
            update["events"] = new_events
        sent.update(meta=meta_rev, status=status_rev, probs=probs_rev, prompt=prompt_rev,
                    event=events[-1][0] if events else sent["event"])  # fmt: skip
        update_bytes = _sse(update) if len(update) > 1 + len(common) else None
        snapshot_bytes = None
        for c in clients:
            if c.fresh:
                if snapshot_bytes is None:
                    snapshot_bytes = _sse(self._snapshot(meta, status, probs, prompt, events, common))
                msg = snapshot_bytes
                c.fresh = False
            elif update_bytes is not None:
                msg = update_bytes
            else:
                continue
            if not c.offer(msg):
                c.dropped = True  # its handler sees the flag and closes the connection
                self.detach(c)
                self.counters["slow_pages_dropped"] += 1
            else:
                self.counters["messages"] += 1

    def _decimate(self, blocks: list[tuple[np.ndarray, np.ndarray]], rate_hz: float | None) -> tuple[list, list]:
        """Every ``stride``-th sample of the blocks (across block boundaries), for the plot."""
        if not blocks:
            return [], []
        t = np.concatenate([np.asarray(b[0], np.float64).ravel() for b in blocks])
        x = np.concatenate([np.asarray(b[1], np.float64).reshape(len(b[0]), -1) for b in blocks])
        if rate_hz is None and len(t) > 1 and t[-1] > t[0]:
            rate_hz = (len(t) - 1) / float(t[-1] - t[0])
        stride = max(1, math.ceil((rate_hz or PLOT_POINTS_PER_S) / PLOT_POINTS_PER_S))
        first = (-self._stride_phase) % stride
        self._stride_phase = (self._stride_phase + len(t)) % stride
        keep = slice(first, None, stride)
        t, x = t[keep], x[keep]
        if len(t) and t[-1] - t[0] > PLOT_SECONDS:  # a backlog longer than the plot: only its end shows
            m = t >= t[-1] - PLOT_SECONDS
            t, x = t[m], x[m]
        x = np.where(np.isfinite(x), x, np.nan)
        return _round(t), [[None if math.isnan(v) else v for v in row] for row in _round(x, 5)]

    @staticmethod
    def _probs_json(probs: dict[str, Any] | None) -> dict[str, Any] | None:
        if probs is None:
            return None
        return {**probs, "probs": _round(probs["probs"])}

    def _snapshot(self, meta: dict[str, Any], status: dict[str, Any], probs: dict[str, Any] | None,
                  prompt: dict[str, Any] | None, events: list[tuple[int, dict[str, Any]]],
                  common: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        return {"type": "snapshot", **common, "meta": meta, "t": list(self._plot_t), "x": list(self._plot_x),
                "status": status, "probabilities": self._probs_json(probs), "prompt": prompt,
                "events": [p for _, p in events]}  # fmt: skip

    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot for ``GET /state`` (no plot points)."""
        with self._lock:
            return {"meta": dict(self._meta), "samples_total": self.samples_total, "events_total": self._event_seq,
                    "unknown_total": self._unknown_seq,
                    "status": self._status, "max_pages": MAX_CLIENTS,
                    "probabilities": self._probs_json(self._probs), "prompt": self._prompt,
                    "events": [p for _, p in self._events][-20:], "pages": len(self._clients),
                    "server": dict(self.counters), "read_only": True}  # fmt: skip


def clean(obj: Any) -> Any:
    """``obj`` with numpy values as Python ones and non-finite floats as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(message: dict[str, Any]) -> bytes:
    return json.dumps(clean(message), separators=(",", ":"), allow_nan=False).encode()


def _sse(message: dict[str, Any]) -> bytes:
    """One Server-Sent Events message (a single ``data:`` line: JSON has no newlines)."""
    return b"data: " + to_json(message) + b"\n\n"
