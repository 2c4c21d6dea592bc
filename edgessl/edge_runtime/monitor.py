"""``edgessl monitor``: the live stream of a serial IMU in the terminal, and a model's view of it if given.

numpy + onnxruntime only (never torch). The device is opened as ``edgessl run`` opens it (``--wait``, unplugs
waited out, every gap and state change reported); what it shows, a few times a second: per channel a
sparkline of the last :data:`HISTORY_S` seconds, the latest value and the range; the measured rate; the
bridge's loss counters (dropped, rejected, gaps) and reconnects. With ``--model``: the runtime's class
probabilities of the latest window (or segment) and its events as they happen, decided as ``run`` decides
them by default. On a terminal the display is redrawn in place; otherwise it is printed every
:data:`PLAIN_EVERY_S` seconds.

``--json`` lines follow ``run``'s (``{"device": ..}``, ``{"gap": ..}``, ``{"device_changed": ..}``, events
without a wrapper, ``{"stats": ..}`` last) plus, every update, ``{"samples": {..}}`` (a summary of the
stream since the last one) and, with a model, ``{"prediction": {..}}`` when a window was classified since.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edgessl.console import sparkline, unicode_ok
from edgessl.dashboard import add_serve_flag, serving
from edgessl.edge_runtime.cli import (
    _bar,
    _gap_json,
    _Stopped,
    _StopSignals,
    _wait_seconds,
    channel_map,
    counters_text,
    event_text,
    say_input_problems,
    unnamed_channels,
    warning_printer,
)
from edgessl.edge_runtime.rate import RateMeter
from edgessl.errors import UsageError
from edgessl.firmware_bridge.flags import add_text_board_flags, channels_example
from edgessl.units import UnitWatch

if TYPE_CHECKING:
    from edgessl.edge_runtime.runtime import GestureRuntime
    from edgessl.firmware_bridge.transport import Gap

HISTORY_S = 2.0  # seconds of stream each sparkline shows
TTY_EVERY_S = 0.25  # redraw period on a terminal
PLAIN_EVERY_S = 1.0  # print period otherwise (a pipe, a log, --json)


class StreamView:
    """The last ``seconds`` of the stream per channel, the measured rate and what went missing.

    A gap becomes NaN samples in the history (a blank in the sparkline), about as many as were missing.
    """

    def __init__(self, channels: list[str], units: list[str], seconds: float = HISTORY_S):
        self.seconds = seconds
        self.samples = 0
        self.reconnects = 0
        self.meter = RateMeter()
        self._since_update: list[np.ndarray] = []
        self.reset(channels, units)

    def reset(self, channels: list[str], units: list[str]) -> None:
        """Start a new history (another device or channel set)."""
        self.channels, self.units = list(channels), list(units)
        self.t = np.zeros(0, np.float64)
        self.x = np.zeros((0, len(self.channels)), np.float64)
        self._since_update = []

    def push(self, t: np.ndarray, x: np.ndarray, t_host: float) -> None:
        """``t [n]`` stream seconds, ``x [n, C]`` values, arrived at host time ``t_host``."""
        self.samples += len(x)
        self.meter.add(t_host, len(x))
        self._since_update.append(np.asarray(x, np.float64))
        self._append(np.asarray(t, np.float64), np.asarray(x, np.float64))

    def gap(self, g: Gap, rate_hz: float | None) -> None:
        n = int(np.clip(g.missing, 1, (rate_hz or 100.0) * self.seconds))
        self._append(np.linspace(g.t_start, max(g.t_end, g.t_start), n), np.full((n, len(self.channels)), np.nan))

    def _append(self, t: np.ndarray, x: np.ndarray) -> None:
        self.t = np.concatenate([self.t, t])
        self.x = np.concatenate([self.x, x])
        keep = self.t > self.t[-1] - self.seconds
        self.t, self.x = self.t[keep], self.x[keep]

    def rate_hz(self, now: float) -> float:
        """Samples per second that arrived recently (:class:`~edgessl.edge_runtime.rate.RateMeter`, as ``run`` and
        the live page measure it)."""
        return self.meter.rate_hz(now)

    @property
    def latest(self) -> np.ndarray | None:
        finite = np.flatnonzero(np.isfinite(self.x).all(axis=1))
        return self.x[finite[-1]] if finite.size else None

    def take_summary(self) -> dict[str, Any]:
        """What arrived since the last call, per channel (for ``--json``); starts the next period."""
        got = np.concatenate(self._since_update) if self._since_update else np.zeros((0, len(self.channels)))
        self._since_update = []
        latest = self.latest
        out: dict[str, Any] = {"channels": self.channels, "units": self.units, "n": len(got),
                               "t": round(float(self.t[-1]), 4) if self.t.size else None,
                               "latest": None if latest is None else [round(float(v), 5) for v in latest]}  # fmt: skip
        for key, fn in (("min", np.min), ("max", np.max), ("mean", np.mean)):
            out[key] = [round(float(v), 5) for v in fn(got, axis=0)] if len(got) else None
        return out

    def lines(self, width: int, ascii_only: bool) -> list[str]:
        """One line per channel: name, unit, sparkline, latest value, range over the history."""
        name_w = max((len(c) for c in self.channels), default=1)
        unit_w = max((len(u) for u in self.units), default=1)
        latest = self.latest
        out = []
        for i, (c, u) in enumerate(zip(self.channels, self.units, strict=True)):
            col = self.x[:, i]
            spark = sparkline(col, width, ascii_only=ascii_only).ljust(width)
            fin = col[np.isfinite(col)]
            now = f"{latest[i]:+9.3f}" if latest is not None else " " * 9
            rng = f"[{fin.min():+.3f}, {fin.max():+.3f}]" if fin.size else ""
            out.append(f"  {c:<{name_w}} {u:<{unit_w}} {spark} {now}  {rng}")
        return out


class _Screen:
    """Prints the display block: redrawn in place on a terminal (ANSI cursor up + clear), appended otherwise.

    Lines that must stay (events, notes) go above the block: :meth:`line` clears the block first.
    """

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._drawn = 0

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
        self._drawn = 0

    def line(self, text: str, keep_block: bool = False) -> None:
        """Print ``text`` above the block (which the next :meth:`block` redraws), or below it to keep it."""
        if keep_block:
            self._drawn = 0
        self._clear()
        print(text, file=self.out, flush=True)

    def block(self, lines: list[str]) -> None:
        self._clear()
        self.out.write("".join(f"{ln}\n" for ln in lines))
        self.out.flush()
        if self.tty:
            self._drawn = len(lines)


def _probs_lines(rt: GestureRuntime, tty: bool) -> list[str]:
    """The latest window's (segment's) prediction: one bar per class on a terminal, else one line."""
    if rt.last_prediction is None:
        return ["  model: no window classified yet"]
    inp, pred = rt.last_prediction
    what = "segment" if rt.metadata["input_mode"] == "segment" else "window"
    head = (f"  model: latest {what} {inp.t_start:.2f}-{inp.t_end:.2f} s -> {pred.label} "
            f"(confidence {pred.confidence:.2f}, unlike training {pred.ood_score:.2f})")  # fmt: skip
    if not tty:
        ranked = sorted(zip(rt.labels, pred.probs.tolist(), strict=True), key=lambda kv: -kv[1])
        return [head + "; " + ", ".join(f"{k} {p:.2f}" for k, p in ranked)]
    w = max(len(k) for k in rt.labels)
    return [head] + [f"    {k:>{w}} [{_bar(float(p))}] {p:.2f}" for k, p in zip(rt.labels, pred.probs.tolist(), strict=True)]


def monitor(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``monitor`` command. Returns 0 at ``--seconds`` and on Ctrl-C or SIGTERM (the way to stop it, as for ``run``)."""
    out = out or sys.stdout  # resolved per call: a default bound at import misses a redirected stdout
    from edgessl.edge_runtime.adapt import DEFAULT_METHOD, build_adapter
    from edgessl.edge_runtime.dashboard_feed import Feed
    from edgessl.edge_runtime.runtime import UNKNOWN, DecisionConfig, GestureRuntime, InputWarning
    from edgessl.firmware_bridge.protocol import DeviceChanged, DeviceLost
    from edgessl.firmware_bridge.states import StateReporter
    from edgessl.firmware_bridge.transport import Gap, ImuStream, SampleBlock, channels_flag_problem, units_flag_error

    screen = _Screen(out)
    ascii_only = not unicode_ok(out)

    def emit(record: dict[str, Any]) -> None:
        print(json.dumps(record), file=out, flush=True)


    wait = args.wait
    if args.seconds is not None:
        wait = args.seconds if wait is None else min(wait, args.seconds)
    t_end = None if args.seconds is None else time.monotonic() + args.seconds
    every = TTY_EVERY_S if screen.tty and not args.json else PLAIN_EVERY_S
    view: StreamView | None = None

    def count_reconnects(state: str) -> None:
        if state == "reconnecting" and view is not None:
            view.reconnects += 1

    states = StateReporter(args.port, wait, json_mode=args.json, emit=emit, note=lambda t: screen.line(f"# {t}"),
                           hook=count_reconnects)  # fmt: skip
    stats: dict[str, Any] = {"events": 0, "stopped_by": "seconds"}
    with warnings.catch_warnings(), _StopSignals() as stop, contextlib.ExitStack() as stack:
        warnings.showwarning = warning_printer("monitor")
        warnings.simplefilter("ignore", InputWarning)  # said by say_input_problems, naming --port
        dash = stack.enter_context(serving(args.serve, "monitor", out, args.json))
        rt: GestureRuntime | None = None
        if args.model:
            # the decisions `run` makes by default: its decision defaults and its default adaptation (in memory)
            # (the live page also shows the segments answered unknown, with their reason; the terminal does not)
            rt = stack.enter_context(GestureRuntime(args.model, decision=DecisionConfig(report_unknown=dash is not None),
                                                    adapter=build_adapter(DEFAULT_METHOD)))  # fmt: skip
        dev = ImuStream(args.port, mode=args.mode, rate_hz=args.rate, channels=args.channels, wait_for_port=wait,
                        declared=args.units, reconnect_timeout=None, on_state=states.on_state)  # fmt: skip
        feed = Feed(dash, rt, args.model and Path(args.model).name, args.port) if dash is not None else None
        if feed is not None:
            page_state = feed.state

            def on_state(state: str) -> None:
                count_reconnects(state)
                page_state(state)

            states.hook = on_state
        try:
            stop.blocking = True
            try:
                dev.open()
            except DeviceLost as e:
                if "edgessl devices" in str(e):  # the reason already says where to look
                    raise
                raise DeviceLost(f"{e}; `edgessl devices` lists the ports it can see") from e
            finally:
                stop.blocking = False
            if problem := channels_flag_problem(dev, args.port):
                warnings.warn(problem, stacklevel=2)
            if error := units_flag_error(dev, args.port):
                raise UsageError(error)
            view = StreamView(dev.channel_names, dev.unit_names)
            # an accelerometer said to be in g that is not (mg, m/s², raw counts): said here, before a recording
            units = UnitWatch(dev.channel_names, dev.unit_names, samples=200) if rt is None else None
            if feed is not None:
                feed.stream(dev)
            idx = channel_map(dev.channel_names, dev.unit_names, rt.channels, rt.bundle.units) if rt else []
            if not args.json:
                model = f" | model {args.model}: {rt.labels}" if rt else ""
                screen.line(f"# {args.port}: {dev.mode} device {dev.channel_names} in {dev.unit_names} at "
                            f"{f'{dev.sample_rate:.4g} Hz' if dev.sample_rate else 'the rate its lines arrive at'}"
                            f"{model}; the last {HISTORY_S:g} s per channel; "
                            "Ctrl-C to stop")  # fmt: skip
            if rt is None and unnamed_channels(dev.channel_names):
                # values without names have no units either: nothing is checked until they are named (a
                # walkthrough's m/s² board showed +10.3 and no hint; run and devices said what to do)
                said = (f"the board's values {dev.channel_names} have no names, so their units are not checked: "
                        f"name them, e.g. --channels {channels_example(len(dev.channel_names))} (an accelerometer in g, a gyroscope in rad/s; "
                        "other units: --units)")  # fmt: skip
                if args.json:
                    emit({"note": said})
                else:
                    screen.line(f"# {said}")
            last_update, shown = time.monotonic(), None
            while t_end is None or time.monotonic() < t_end:
                if stop.signal is not None:
                    stats["stopped_by"] = stop.signal
                    break
                try:
                    items = dev.read(0.05)
                except DeviceChanged as e:
                    # a viewer follows any device; a model only one whose channels it can map
                    view.reset(dev.channel_names, dev.unit_names)
                    units = UnitWatch(dev.channel_names, dev.unit_names, samples=200) if rt is None else None
                    if feed is not None:
                        feed.stream(dev)
                    if rt is not None:
                        idx = channel_map(dev.channel_names, dev.unit_names, rt.channels, rt.bundle.units)
                    if args.json:
                        emit({"device_changed": {"old": str(e.old), "new": str(e.new), "action": "followed"}})
                    else:
                        screen.line(f"# the device changed from {e.old} to {e.new}")
                    continue
                finally:
                    states.drain()
                for ev in items:
                    if isinstance(ev, Gap):
                        view.gap(ev, dev.sample_rate)
                        if rt is not None:
                            rt.gap(ev.seconds, timeline_reset=ev.timeline_reset)
                        if args.json:
                            emit({"gap": _gap_json(ev)})
                        elif ev.timeline_reset or ev.seconds >= 1.0:
                            screen.line(f"# gap of {ev.seconds:.2f} s ({ev.reason}"
                                        f"{', new timeline' if ev.timeline_reset else ''})")  # fmt: skip
                        continue
                    assert isinstance(ev, SampleBlock)
                    view.push(ev.t_device, ev.values, ev.t_host)
                    if feed is not None:
                        feed.samples(ev.t_device, ev.values, ev.t_host)
                    if rt is None:
                        if units is not None and (problem := units.add(ev.values)):
                            say_input_problems([problem], args.port, stats, emit if args.json else None,
                                               text_board=dev.mode == "text", declared=dev.declared)  # fmt: skip
                        continue
                    known = len(rt.input_problems)
                    events = rt.feed(ev.values[:, idx], ev.t_device)
                    say_input_problems(rt.input_problems[known:], args.port, stats, emit if args.json else None,
                                       text_board=dev.mode == "text", declared=dev.declared,
                                       channels=",".join(rt.channels) if unnamed_channels(dev.channel_names) else None)  # fmt: skip
                    for g in events:
                        if feed is not None:
                            feed.event(g)
                        if g.label == UNKNOWN:
                            continue  # reported for the page only
                        stats["events"] += 1
                        if args.json:
                            emit(g.to_json())
                        else:
                            screen.line(event_text(g))
                if feed is not None:
                    feed.tick(dev, reconnects=view.reconnects)
                now = time.monotonic()
                if now - last_update < every:
                    continue
                last_update = now
                if problem := dev.new_rate_problem(now):  # a text board's given rate spaces its lines
                    stats["rate"] = problem
                    if args.json:
                        emit({"warning": f"--port {args.port}: {problem}"})
                    warnings.warn(f"--port {args.port}: {problem}", stacklevel=2)
                c = dev.counters()
                rate = view.rate_hz(now)
                if args.json:
                    losses = {"dropped": c["dropped_samples"], "rejected": sum(c["rejected_samples"].values()),
                              "gaps": sum(c["gaps"].values()), "reconnects": view.reconnects}  # fmt: skip
                    emit({"samples": {**view.take_summary(), "rate_hz": round(rate, 2), "state": dev.state,
                                      "total": view.samples, **losses}})  # fmt: skip
                    if rt is not None and rt.last_prediction is not None and rt.last_prediction is not shown:
                        shown = rt.last_prediction
                        inp, pred = shown
                        emit({"prediction": {"t_start": round(inp.t_start, 4), "t_end": round(inp.t_end, 4),
                                             "label": pred.label, "confidence": round(pred.confidence, 4),
                                             "ood_score": round(pred.ood_score, 4),
                                             "probs": {k: round(float(p), 4) for k, p in zip(rt.labels, pred.probs, strict=True)}}})  # fmt: skip
                    continue
                width = max(10, min(60, shutil.get_terminal_size((100, 24)).columns - 50))
                nominal = f" (device {dev.sample_rate:g})" if dev.sample_rate else ""
                lines = view.lines(width, ascii_only)
                lines.append(f"  {dev.state}  {rate:6.1f} Hz{nominal}  samples {view.samples}  {counters_text(c)}  "
                             f"reconnects {view.reconnects}")  # fmt: skip
                if rt is not None:
                    lines += _probs_lines(rt, screen.tty)
                if not screen.tty:
                    lines.insert(0, f"-- {time.strftime('%H:%M:%S')}")
                screen.block(lines)
        except _Stopped as sig:
            stats["stopped_by"] = str(sig)
        finally:
            if feed is not None:
                feed.final(dev, reconnects=view.reconnects if view else None)
            dev.close()
        c = dev.counters()
        stats.update(device=c, reconnects=view.reconnects if view else 0)
        if rt is not None:
            stats["runtime"] = dict(rt.stats)
        if args.json:
            emit({"stats": stats})
        else:
            screen.line(keep_block=True, text=f"# stopped ({stats['stopped_by']}): {c['delivered_samples']} samples, {stats['events']} "
                        f"events; {counters_text(c)}, reconnects {stats['reconnects']}")  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="show the live stream of a serial IMU (and a model's view of it)")
    p.add_argument("--port", required=True, help="serial port or URL (a path, /dev/ttyACM0, the simulator's path)")
    p.add_argument("--model", default=None,
                   help="a bundle (.essl): also show its class probabilities of the latest window or segment and "
                        "its events, decided as `edgessl run` decides them by default (default: none, the stream "
                        "only)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=None,
                   help="stop after this long, waiting included (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout: a samples summary every second, predictions, events, gaps, device "
                        "states, final stats")  # fmt: skip
    p.add_argument("--wait", type=_wait_seconds, default=30.0,
                   help="seconds to wait for a port that is not there yet (time to plug the board in) or that "
                        "another program holds, or 'forever' (default 30); 0 fails at once. Unplugs are always waited out")  # fmt: skip
    p.add_argument("--mode", choices=["auto", "binary", "text"], default="auto",
                   help="the device's protocol (default auto: binary if it answers IDENTIFY, else text lines)")
    add_text_board_flags(p)
    add_serve_flag(p, "the stream (and the model's view of it)")
    p.set_defaults(func=monitor)
