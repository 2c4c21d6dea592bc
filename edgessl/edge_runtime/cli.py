"""``edgessl run``: live gesture recognition from a serial IMU (numpy + onnxruntime only).

Built to run unattended (a systemd service, docs/deploy.md): it waits for a port that is not there yet
(``--wait``), waits through unplugs of any length, reports every gap and every state change (a ``--json``
line, or the status line), never mixes two devices' samples (``--follow-device`` to switch on purpose),
and turns SIGTERM and Ctrl-C into a clean stop that saves ``--adapt-state`` (also every ``--save-every``
seconds, atomically).

``--json`` lines on stdout, one object each; an event has no wrapper (``{"t": .., "label": ..}``, see
:meth:`~edgessl.edge_runtime.runtime.Event.to_json`; an ``unknown`` one, with ``--show-unknown``, has
``"reason": "noise" | "low_confidence" | "out_of_distribution"`` and its ``"roughness"``), the others have one key saying what they are:
``{"providers": [..]}`` at the start (the onnxruntime execution providers in use: the GPU's or the CPU's),
``{"device": {"state": "waiting" | "streaming" | "reconnecting", "port": ..}}``,
``{"gap": {"t_start", "t_end", "seconds", "missing", "reason", "timeline_reset"}}``,
``{"device_changed": {"old", "new", "action": "remapped" | "followed"}}`` and, last,
``{"stats": {..}}`` (the bridge's counters, the runtime's, events and the stop reason).

A board that runs an exported model itself (protocol revision 3) is asked for its gesture events too: then
``{"board_model": {"checksum", "labels", "matches_bundle"}}`` says which model it runs (a warning when it is
not the bundle given), ``{"board_event": {..}}`` is each of its events, ``{"compare": {"result": "agree" |
"disagree" | "board_only" | "host_only", "board", "host"}}`` pairs it with the host's decision on the same
samples (:mod:`~edgessl.edge_runtime.device_events`), and the stats gain ``"board"`` with the counts.

``--serve [HOST:]PORT`` serves a live, read-only page of all this (:mod:`edgessl.dashboard`, docs/dashboard.md);
with ``--json`` its address comes first as ``{"dashboard": {"url", "host", "port", "read_only"}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edgessl.atomic import write_problem
from edgessl.console import counts_text, gaps_text
from edgessl.dashboard import add_serve_flag, serving
from edgessl.edge_runtime.adapt import DEFAULT_METHOD
from edgessl.errors import DataError, DeviceError, UsageError
from edgessl.firmware_bridge.flags import add_text_board_flags, board_flags_text

if TYPE_CHECKING:
    from edgessl.edge_runtime.adapt import Adapter
    from edgessl.edge_runtime.runtime import Event, GestureRuntime
    from edgessl.firmware_bridge.protocol import DeviceChanged
    from edgessl.firmware_bridge.transport import Gap, ImuStream


class ChannelMapError(DeviceError, ValueError):
    """The device's channels cannot feed the model (names or units); a device error (exit code 5)."""


STATUS_LOG_S = 30.0  # the status line's period when stdout is not a terminal


class Recorder:
    """Saves the raw stream losslessly as a CSV recording (``time_s`` + channels, float32 round-trips).

    Only finite values are written. Each gap is a comment line (``# gap t_start=.. t_end=.. missing=..
    reason=.. timeline_reset=..``), which the CSV loader skips: the times on either side show the hole,
    the comment says why. The file must not exist: a recording never replaces another file.
    """

    def __init__(self, path: str | Path, channels: list[str]):
        self.path = Path(path)
        self.channels = list(channels)
        try:
            self.f: TextIO | None = open(self.path, "x", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except FileExistsError:
            raise UsageError(f"--record {path}: the file exists; expected a new path (a recording never "
                             "replaces a file)") from None  # fmt: skip
        self.f.write(",".join(["time_s", *channels]) + "\n")
        self._order: list[int] | None = None  # device column of each recorded channel (None: same order)

    def follow(self, device_channels: list[str]) -> bool:
        """The device now sends ``device_channels``: record them in this file's column order when they are
        the same channels; False (and the recording ends, saying why) when they are not."""
        if sorted(device_channels) == sorted(self.channels):
            self._order = None if device_channels == self.channels else [device_channels.index(c) for c in self.channels]
            return True
        self.comment(f"recording ends: the device now sends channels {device_channels}")
        self.close()
        return False

    def write(self, t: np.ndarray, values: np.ndarray) -> None:
        if self.f is None:
            return
        if self._order is not None:
            values = values[:, self._order]
        keep = np.isfinite(values).all(axis=1) & np.isfinite(t)
        rows = (",".join([repr(float(ti)), *(repr(float(v)) for v in row)])
                for ti, row in zip(t[keep], values[keep], strict=True))  # fmt: skip
        self.f.write("\n".join(rows) + "\n")
        self.f.flush()

    def gap(self, g: Gap) -> None:
        self.comment(f"gap t_start={g.t_start!r} t_end={g.t_end!r} missing={g.missing} reason={g.reason} "
                     f"timeline_reset={str(g.timeline_reset).lower()}")  # fmt: skip

    def comment(self, text: str) -> None:
        if self.f is not None:
            self.f.write(f"# {' '.join(text.split())}\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def unnamed_channels(names: list[str]) -> bool:
    """``ch0, ch1 ...``: a text board's values without a header line (or a model trained on its recordings)."""
    return all(c.lower().startswith("ch") for c in names)


def channel_map(device_channels: list[str], device_units: list[str], bundle_channels: list[str],
                bundle_units: list[str]) -> list[int]:  # fmt: skip
    """Indices of the bundle's channels in the device's, by name (aliases allowed) or by position when the
    device's (a text board without a header) or the model's (trained on one's recordings) are unnamed and as
    many; a model of unknown units takes any.

    Raises:
        ChannelMapError: the device cannot feed the model (a :class:`DeviceError`, and a ValueError).
    """
    from edgessl.datasets import DataFormatError, resolve_channels

    try:
        idx = resolve_channels(device_channels, bundle_channels)
    except DataFormatError:
        unnamed = [unnamed_channels(cs) for cs in (device_channels, bundle_channels)]
        if any(unnamed) and len(device_channels) == len(bundle_channels):
            # an unnamed text-mode device, or a model trained on one's recordings: by position
            idx = list(range(len(bundle_channels)))
        else:
            hint = (f"; a text board's values are named by --channels (e.g. --channels {','.join(bundle_channels)}) "
                    "or by a header line it prints first" if unnamed[0] else "")  # fmt: skip
            raise ChannelMapError(f"the device has channels {device_channels}; the model needs {bundle_channels}"
                                  f"{hint}") from None  # fmt: skip
    for i, bu in zip(idx, bundle_units, strict=True):
        du = device_units[i] if i < len(device_units) else "unknown"
        if bu not in ("z-score", "unknown") and du not in (bu, "unknown"):  # a z-scoring model accepts any unit
            raise ChannelMapError(f"channel {device_channels[i]} is in {du} but the model expects {bu}")
    return idx


def _bar(p: float, width: int = 20) -> str:
    n = int(round(p * width))
    return "#" * n + "." * (width - n)


def _number(text: str, ok: Callable[[float], bool], expected: str) -> float:
    """A flag's number that ``ok`` accepts (NaN never does), else argparse's one-line error saying ``expected``."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return v


def _wait_seconds(text: str) -> float | None:
    """``--wait``: seconds >= 0, or ``forever`` (None)."""
    if text.strip().lower() in ("forever", "inf", "none"):
        return None
    return _number(text, lambda v: math.isfinite(v) and v >= 0, "seconds >= 0 or 'forever'")


def _positive(text: str) -> float:
    return _number(text, lambda v: math.isfinite(v) and v > 0, "seconds > 0")


def _probability(text: str) -> float:
    return _number(text, lambda v: 0.0 <= v <= 1.0, "a probability from 0 to 1 (0: no gate)")


def _ood_score(text: str) -> float:
    return _number(text, lambda v: v >= 0.0, "a score >= 0 (1 - cosine similarity: 0 to 2; inf: no gate)")


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT while the run could not stop by itself (waiting for the port, or a second signal)."""


class _StopSignals:
    """SIGINT and SIGTERM (what systemd sends) become a clean stop: the main loop sees :attr:`signal` and
    ends, and the adapted state is saved. While :attr:`blocking` (waiting for the port), or at a second
    signal, the handler raises :class:`_Stopped` instead. Installed only in the main thread."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.blocking = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.signal is not None
        self.signal = signal.Signals(signum).name
        if self.blocking or again:
            raise _Stopped(self.signal)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def warning_printer(command: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints ``edgessl <command>: warning: <one line>`` on stderr."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:  # fmt: skip
        print(f"edgessl {command}: warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    return show


_one_line_warning = warning_printer("run")


def say_input_problems(problems: list[str], port: str, stats: dict[str, Any], emit: Callable[[dict[str, Any]], None] | None,
                       warn: bool = True, text_board: bool = False, channels: str | None = None,
                       declared: dict[str, str] | None = None) -> None:  # fmt: skip
    """What the runtime found wrong in the board's first seconds (``rt.input_problems`` since the last call:
    an accelerometer not in g), named by ``--port``: in the final stats, a JSON line (``emit``) and, with
    ``warn`` (a command that goes on), a warning; for a ``text_board``, with ``--units`` as a remedy (and
    ``--channels channels`` with it when its values have no names; ``declared``: the units ``--units`` gave)."""
    from edgessl.units import with_units_flag

    # the model would see 1000× its gestures: every answer meaningless
    for problem in ([with_units_flag(p, channels, declared) for p in problems] if text_board else problems):
        stats["units"] = problem
        if emit is not None:
            emit({"warning": f"--port {port}: {problem}"})
        if warn:
            warnings.warn(f"--port {port}: {problem}", stacklevel=3)


def resampled_text(device_hz: float | None, model_hz: float | None) -> str:
    """`` (resampled to the model's 62.5 Hz)`` where the two rates differ by more than 1 %, else nothing."""
    if not device_hz or not model_hz or abs(device_hz - model_hz) <= 0.01 * model_hz:
        return ""
    return f" (resampled to the model's {model_hz:.4g} Hz)"


def event_text(g: Event) -> str:
    """One reported gesture as the status display prints it (``run``, ``monitor``)."""
    # an unknown answer's reason in the status line's words
    why = ("" if g.reason is None else "  low confidence" if g.reason == "low_confidence"
           else f"  noise or vibration, not a movement (roughness {g.roughness:.2f})" if g.reason == "noise"
           else f"  unlike training (out-of-distribution score {g.ood_score:.3f})")  # fmt: skip
    # noise is refused before the model is asked: its class probability would read as a confidence in it
    # a low-confidence answer's confidence rounded down: 0.4996 under a 0.500 gate must not print as 0.50
    c = math.floor(g.confidence * 100) / 100 if g.reason == "low_confidence" else g.confidence
    conf = f"[{_bar(g.confidence)}] {c:.2f}" if g.reason != "noise" else f"[{' ' * 20}]   — "
    return (f"{g.t:9.2f}s  {g.label:>12s}  {conf}  {g.latency_ms:.2f} ms  "
            f"({g.window_start:.2f}-{g.window_end:.2f} s){why}")  # fmt: skip


def unknown_counts(rt: GestureRuntime) -> tuple[int, str]:
    """The gestures answered ``unknown`` and, in words, how many for each reason (noise only where the bundle
    has the noise gate)."""
    parts = [("noise", "noise")] if rt.roughness_threshold is not None else []
    parts += [("low_confidence", "low confidence"), ("out_of_distribution", "unlike training")]
    n = sum(rt.stats[f"unknown_{k}"] for k, _ in parts)
    return n, ", ".join(f"{rt.stats[f'unknown_{k}']} {words}" for k, words in parts)


def new_state_name() -> str:
    """A user state file name for the advice to enroll that names no existing file (enroll would extend it:
    another person's takes)."""
    from edgessl.atomic import free_path

    return str(free_path(".", "you", ".npz"))


def unfamiliar_text(share: dict[str, Any], enroll: str, state: str | None, said: bool = False) -> str:
    """The advice when :meth:`GestureRuntime.unknown_share` found many more ``unknown`` answers than calibrated ("" else);
    ``enroll``: the enroll command for this bundle and port. ``said``: the advice was given earlier in the run
    (the summary then says when the share has fallen back since, rather than nothing)."""
    from edgessl.edge_runtime.runtime import UNFAMILIAR_SHARE

    if not share["unfamiliar"]:
        if not said:
            return ""
        return (f"{share['unknown']} of {share['decided']} gestures ({share['share']:.0%}) answered unknown as unsure "
                f"or unlike training in all, where the export calibrated {share['calibrated']:.0%}: fewer than when "
                f"enrolling was advised above (at least {UNFAMILIAR_SHARE:.0%} and 3 times the calibrated share)")
    who = f"the training data and the enrollment in {state}" if state else "the training data"
    return (f"{share['unknown']} of {share['decided']} gestures ({share['share']:.0%}) answered unknown as unsure or "
            f"unlike training, where the export calibrated {share['calibrated']:.0%} on its validation gestures: this "
            f"person's way of performing them (or the mounting) differs from {who}; {enroll} --calibrate teaches the "
            f"model theirs and finds a turned mounting (each gesture once{', added to the state' if state else ''}; "
            "with this run stopped: the port is one program's at a time). If those were no gestures but everyday "
            "movement (getting up, turning round), `unknown` was the right answer: enrolling will not help there")


def unclassified_text(rt: GestureRuntime, enroll: str) -> str:
    """The movements a segment bundle's runtime cut but never classified, in words ("" when none); ``enroll``:
    the start of the enroll command to suggest for slow gestures."""
    seg = rt.windower.segmenter
    unused = seg.unused_text()
    if not unused:
        return ""
    gentle = rt.user_state is not None and rt.user_state.segmentation == "gentle"
    hint = (f"; if your gestures are slow: {enroll} --calibrate measures it and may keep a gentle cut for you"
            if seg.too_short >= 3 and not gentle else "")  # fmt: skip
    return f"{seg.too_short + seg.too_long + seg.cut_off} movement(s) not classified: {unused}{hint}"


def host_differences(adapter: str | None, state: Any, path: str | None) -> str:
    """What the host does that a board running the exported C library may not, in words: its adaptation, a user
    state's enrolled takes (never in the C) and its mounting (in the C only when exported with that state)."""
    from edgessl.edge_runtime.mounting import mount_angle

    parts = []
    if adapter is not None:
        parts.append(f"the host adapts ({adapter}) and the board does not: `--adapt none` compares the same model")
    if state is not None and len(state.takes):
        parts.append(f"the host answers with the {len(state.takes)} enrolled take(s) of --state {path}, which the "
                     "board's C library does not hold")  # fmt: skip
    if state is None or state.mounting is None:
        parts.append("a board whose C library was exported with `export-c --state` turns its gestures by that state's "
                     "mounting: give run the same --state")  # fmt: skip
    else:
        parts.append(f"the host turns the board {mount_angle(state.mounting):.0f}° (--state {path}), and so does the "
                     "board only if its C library was exported with `export-c --state` from it")  # fmt: skip
    return "; ".join(parts)


def calibration_text(summary: dict[str, Any], t: float) -> str:
    """The sensor's gravity calibration coming in (or going) at ``t`` seconds, in words."""
    cal = next((p["calibration"] for p in summary.get("parts") or [summary] if p.get("calibration")), None)
    if cal is None:
        return f"adaptation {summary['method']}: the gravity calibration of the sensor is no longer in use at {t:.1f} s"
    return (f"adaptation {summary['method']}: the accelerometer calibrated on gravity at {t:.1f} s (gains "
            f"{', '.join(f'{v:.3f}' for v in cal['gain'])}, offsets {', '.join(f'{v:+.3f}' for v in cal['offset_g'])} g: "
            "your sensor's readings mapped onto the training sensor's)")  # fmt: skip


def kept_text(summary: dict[str, Any]) -> str:
    """After a reset: what adaptation kept ("" for nothing): ttt's gravity calibration of the sensor."""
    parts = summary.get("parts") or [summary]
    if any(p.get("calibrated") for p in parts):
        return f"; the sensor's gravity calibration is kept{correction_text(summary)}"
    return ""


def correction_text(summary: dict[str, Any], sep: str = ": ") -> str:
    """``": input turned 29° (gains 1.00–1.00)"`` (after ``sep``) when an input-side correction is applied, else
    ""."""
    corr = summary.get("correction")
    if not (corr and corr.get("active")):
        return ""
    return f"{sep}input turned {corr['rotation_deg']:.0f}° (gains {min(corr['gains']):.2f}–{max(corr['gains']):.2f})"


def adaptation_text(summary: dict[str, Any] | None, unit: str, short: bool = False) -> str:
    """What the adapter did, in words ("" without one), from :meth:`Adapter.summary`; ``unit``: what it counts
    ("gestures" for a segment bundle, "windows" else). ``short``: the status line's few words."""
    if summary is None:
        return ""
    parts = summary.get("parts") or [summary]
    groups = next((p for p in parts if p.get("method") == "clusters"), None)
    rest = [p for p in parts if p is not groups]
    if groups is None:
        return _method_text(summary, unit, short)
    if not rest:
        return groups_text(groups, unit, short)
    own = rest[0] if len(rest) == 1 else {**summary, "method": "+".join(p["method"] for p in rest)}
    return f"{_method_text({**own, 'resets': summary['resets']}, unit, short)}; {groups_text(groups, unit, short)}"


def groups_text(g: dict[str, Any], unit: str, short: bool = False) -> str:
    """What ``clusters`` does, in words, from its summary."""
    kept, groups, least = int(g["gestures_kept"]), int(g["groups"]), int(g["min_members"])
    if short:
        return f"your {kept} {unit} in {groups} groups" if groups else f"grouping your {unit} from the {least}th ({kept})"
    if not groups:
        return (f"clusters: {kept} of your {unit} kept; it groups them from the {least}th on, and each group then "
                f"answers as most of its {unit} were answered")  # fmt: skip
    return (f"clusters: your last {kept} {unit} in {groups} group(s) of alike ones, each answered as most of its "
            f"{unit} were: a {unit[:-1]} inside a group leans to the group's answer")  # fmt: skip


def _method_text(summary: dict[str, Any], unit: str, short: bool) -> str:
    parts = summary.get("parts") or []
    own = parts[0] if len(parts) == 1 else summary  # `ttt|tent`: the method chosen
    name, n, resets = summary["method"], int(summary["updates"]), int(summary["resets"])
    turned = correction_text(summary, ", ")  # (also with no change in this run: a restored state's is in use)
    why = own.get("last_reset") or summary.get("last_reset")
    reset = f", {resets} reset(s) to the source model{f' (the last: {why})' if why else ''}" if resets else ""
    if "next_search" in own:  # ttt: shifts its activations (the head's bias follows them every shift_every gated
        # windows); searches its input transform
        searches, calibrated = own.get("searches"), bool(own.get("calibrated"))
        if short:
            done = f" in {searches} search(es)" if searches else ""
            if calibrated:  # the search rests while the gravity calibration is in use
                return f"{name} {n} change(s){done}, axes calibrated on gravity"
            which = "first" if searches == 0 else "next"
            return f"{name} {n} change(s){done}, {own['gated']}/{own['next_search']} {unit} to the {which} search"
        gated, every = int(own["gated"]), int(own.get("shift_every") or 0)
        shifted = (f"no {unit[:-1]} learned from yet, nothing adapted" if not gated else
                   f"activations not shifted yet (they follow your {unit} from the {every}th it learns from)"
                   if gated < every else
                   f"activations shifted to your {unit} (from the {every}th it learned from on, following them "
                   f"every {every})" if every else "activations not shifted (switched off)")  # fmt: skip
        searched = _searches_text(own, unit)
        then = ("its axes' gains and offsets are calibrated on gravity (your still moments), and it does not search "
                "while that calibration is in use" if calibrated else
                f"it looks for a better transform once {own['next_search']} have")  # fmt: skip
        # (a walkthrough read "7 gestures passed its gates" of 22 reported, none unknown, as a contradiction)
        learned = (f"{own['gated']} {unit} learned from, of those answered: its safeguards skip the first ones and any "
                   "unlike the training ones, still, or of a class that dominates the recent answers")  # fmt: skip
        return (f"{name}: {shifted}; {n} change(s) of its input transform ({learned}; "
                f"{searched + '; ' if searched else ''}{then}){turned}{reset}")  # fmt: skip
    if short:
        return f"{name} {n} update(s)"
    return f"{name}: {n} update(s){turned}{reset}"


def _searches_text(own: dict[str, Any], unit: str) -> str:
    """What ttt's searches of its input transform found, in words ("" for a summary without the count): a walkthrough
    saw the next search move from 128 to 384 gestures and nothing say that a search had run and found nothing."""
    searches = own.get("searches")
    if searches is None:
        return ""
    if not searches:
        return "no search yet"
    rejected, trial, nothing = int(own.get("rejected_trials") or 0), bool(own.get("trial")), int(own["found_nothing"])
    found = [f"{k} {what}" for k, what in ((nothing, "found nothing better"),
                                           (rejected, f"not confirmed on the next {unit}")) if k > 0]  # fmt: skip
    if trial:
        found.append(f"one being checked on the next {unit}")
    return f"{searches} search(es){': ' + ', '.join(found) if found else ''}"


def counters_text(c: dict[str, Any]) -> str:
    """The bridge's loss counters (:meth:`ImuStream.counters`) as the status display prints them."""
    frames = sum(c.get("rejected_frames", {}).values())  # refused frames: their samples are counted before
    return (f"dropped {c['dropped_samples']}  rejected {sum(c['rejected_samples'].values())}  "
            f"gaps {sum(c['gaps'].values())}" + (f"  frames refused {frames}" if frames else ""))  # fmt: skip


def refused_frames_text(c: dict[str, Any]) -> str:
    """For a summary line: the frames the bridge refused (damaged, malformed, unexpected), "" when none."""
    frames = c.get("rejected_frames") or {}
    return f"; frames refused {counts_text(frames)}: their samples are counted above" if sum(frames.values()) else ""


def _save_state(adapter: Adapter, path: str, final: bool) -> None:
    try:
        adapter.save(path)
    except OSError as e:
        if final:
            raise UsageError(f"--adapt-state {path}: cannot save the adapted state ({e.strerror or e}); "
                             "expected a writable path") from e  # fmt: skip
        warnings.warn(f"--adapt-state {path}: cannot save the adapted state ({e.strerror or e}); trying again later",
                      stacklevel=2)  # fmt: skip


def _gap_json(g: Gap) -> dict[str, Any]:
    return {"t_start": round(g.t_start, 4), "t_end": round(g.t_end, 4), "seconds": round(g.seconds, 4),
            "missing": g.missing, "reason": g.reason, "timeline_reset": g.timeline_reset}  # fmt: skip


def _same_device(e: DeviceChanged) -> bool:
    """The same board with the same channels (perhaps reordered, or at another rate): safe to re-map."""
    old, new = e.old, e.new
    return old.device_id == new.device_id and sorted(zip(old.channels, old.units, strict=True)) == sorted(
        zip(new.channels, new.units, strict=True)
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``run`` command; ``out`` defaults to the stdout of the moment (not of the import)."""
    out = out if out is not None else sys.stdout
    from edgessl.edge_runtime.adapt import build_adapter
    from edgessl.edge_runtime.bundle import open_bundle
    from edgessl.edge_runtime.dashboard_feed import Feed
    from edgessl.edge_runtime.device_events import (
        EventComparison,
        board_event_text,
        comparison_text,
        model_mismatch,
    )
    from edgessl.edge_runtime.enroll import StateMismatch, is_user_state
    from edgessl.edge_runtime.mounting import mount_angle
    from edgessl.edge_runtime.rate import RateMeter
    from edgessl.edge_runtime.runtime import (
        MOVEMENTS_NOT_CLASSIFIED,
        UNKNOWN,
        DecisionConfig,
        GestureRuntime,
        InputWarning,
        provider_names,
    )
    from edgessl.firmware_bridge.protocol import DeviceChanged
    from edgessl.firmware_bridge.states import StateReporter
    from edgessl.firmware_bridge.transport import Gap, ImuStream, SampleBlock, channels_flag_problem, units_flag_error

    def emit(record: dict[str, Any]) -> None:
        print(json.dumps(record), file=out, flush=True)

    # on a terminal the status line is rewritten in place; in a log (a file, a pipe, journald) it is a line
    # of its own every STATUS_LOG_S, and nothing starts with a carriage return
    tty = bool(getattr(out, "isatty", lambda: False)())
    cr, nl = ("\r", "\n") if tty else ("", "")

    def note(text: str) -> None:  # a line of its own, after the status line
        print(f"{nl}# {text}", file=out, flush=True)

    try:
        providers = provider_names(args.providers.split(","))
    except ValueError as e:
        raise UsageError(f"--providers {args.providers}: {e}") from None
    # the live page shows unknown answers always (with their reason); the terminal and --json with --show-unknown
    decision = DecisionConfig(confidence=args.confidence, ood_threshold=args.ood_threshold,
                              report_unknown=args.show_unknown or args.serve is not None)  # fmt: skip
    wait = args.wait
    if args.seconds is not None:
        wait = args.seconds if wait is None else min(wait, args.seconds)
    t_end = None if args.seconds is None else time.monotonic() + args.seconds
    states = StateReporter(args.port, wait, json_mode=args.json, emit=emit, note=note)
    # events: the lines shown (with --show-unknown, the unknown answers too); gestures: those naming a gesture
    stats: dict[str, Any] = {"events": 0, "gestures": 0, "stopped_by": "seconds"}
    if args.state is not None and not os.path.isfile(args.state):
        raise UsageError(f"--state {args.state}: no such file; expected a user state written by edgessl enroll")
    if args.adapt_state is not None and (problem := write_problem(args.adapt_state)):  # not only at the first save
        raise UsageError(f"--adapt-state {args.adapt_state}: {problem}; expected a path in a folder this user can write")
    if args.adapt_state is not None and os.path.isfile(args.adapt_state):
        if args.state is not None and os.path.samefile(args.adapt_state, args.state):
            raise UsageError(f"--adapt-state {args.adapt_state}: the same file as --state; expected another file (the "
                             "user state is edgessl enroll's, the adaptation state is run's own)")  # fmt: skip
        if is_user_state(args.adapt_state):  # set aside as 'not an adaptation state', it would be lost to the user
            raise UsageError(f"--adapt-state {args.adapt_state}: a user state (edgessl enroll's), not an adaptation "
                             f"state; give it as --state {args.adapt_state}, and a new path for --adapt-state")  # fmt: skip
    if args.record and os.path.lexists(args.record):  # before waiting for the port, not after
        raise UsageError(f"--record {args.record}: the file exists; expected a new path (a recording never "
                         "replaces a file)")  # fmt: skip
    if args.serve is not None:  # a bundle that cannot be read fails before the page's address is announced
        open_bundle(args.bundle)
    with warnings.catch_warnings(), _StopSignals() as stop, serving(args.serve, "run", out, args.json) as dash:
        warnings.showwarning = _one_line_warning
        warnings.simplefilter("ignore", InputWarning)  # said by say_input_problems, naming --port
        adapter = build_adapter(args.adapt, state_path=args.adapt_state)
        try:
            rt = GestureRuntime(args.bundle, providers=providers, decision=decision, adapter=adapter,
                                user_state=args.state)  # fmt: skip
        except StateMismatch as e:  # the flag and the bundle named, and the way out with them
            if e.checksums is None:
                raise StateMismatch(f"--state {e}") from None
            raise StateMismatch(f"--state {args.state}: user state of another bundle (checksum {e.checksums[0][:12]}…; "
                                f"{args.bundle} is {e.checksums[1][:12]}…): after a model update, carry its takes into "
                                f"a new state file (edgessl enroll {args.bundle} --from {args.state} --state NEW.npz, "
                                "then run with --state NEW.npz), or enroll again") from None  # fmt: skip
        with rt:
            stats["providers"] = list(rt.providers)  # in a service's log: whether the GPU is in use
            if args.json:
                emit({"providers": stats["providers"]})
            # (clusters' regroupings are not changes to say: the status line shows its groups)
            adapted = (adapter.changes, adapter.resets, adapter.calibrated) if adapter is not None else (0, 0, False)
            if args.adapt_state:
                stats["adapt_state"] = {"path": args.adapt_state, "restored": rt.restored_state}
                if rt.restored_state and adapter is not None:  # said at once: a restored turn changes every answer
                    said = f"adaptation state restored from {args.adapt_state}{correction_text(adapter.summary())}"
                    if args.json:
                        emit({"note": said})
                    else:
                        note(said)
                elif adapter is not None and not args.json:  # where it goes (a walkthrough's first start said nothing)
                    note(f"adaptation state: none at {args.adapt_state} yet; saved there every {args.save_every:g} s "
                         "and at exit")  # fmt: skip
            if rt.user_state is not None:  # in a service's log too: which user's enrollment is in use
                st = rt.user_state
                # the board's turn the state corrects (the stats' adaptation "correction" is the adapter's own)
                stats["user_state"] = {"path": args.state, "takes": st.counts(),
                                       "segmentation": st.segmentation or "default",
                                       "mounting_deg": None if st.mounting is None else round(mount_angle(st.mounting), 1)}  # fmt: skip
                if args.json:
                    emit({"user_state": stats["user_state"]})
            meter = RateMeter()  # the status line's rate and the page's
            unit = "gestures" if rt.bundle.manifest["input_mode"] == "segment" else "windows"  # what adaptation counts
            enroll_cmd = (f"edgessl enroll {args.bundle} --port {args.port}{board_flags_text(args)} --state "
                          f"{args.state or new_state_name()}")  # fmt: skip
            # the share of unknown answers is judged against the calibrated gates only, not gates a user moved
            default_gates, unfamiliar_said = args.confidence is None and args.ood_threshold is None, False
            feed = Feed(dash, rt, Path(args.bundle).name, args.port, meter) if dash is not None else None
            if feed is not None:
                states.hook = feed.state
            dev = ImuStream(args.port, mode=args.mode, rate_hz=args.rate, channels=args.channels, wait_for_port=wait,
                            declared=args.units, reconnect_timeout=None, on_state=states.on_state, events=True)  # fmt: skip
            rec: Recorder | None = None
            compare: EventComparison | None = None  # once the board says it runs a model
            board_model = None

            def check_board_model() -> None:
                """Say which model the board runs, once per MODEL_INFO; from then on compare its events."""
                nonlocal compare, board_model
                if dev.model_info is None or dev.model_info == board_model:
                    return
                board_model = dev.model_info
                if compare is None:
                    compare = EventComparison()
                    # the host decides every segment, unknown ones too, so each board event has its counterpart
                    rt.decision = dataclasses.replace(rt.decision, report_unknown=True)
                problem = model_mismatch(board_model, args.bundle, rt.bundle.checksum, rt.labels)
                sha = board_model.sha256_hex
                stats["board"] = {"checksum": sha, "labels": list(board_model.labels),
                                  "matches_bundle": None if sha is None else sha == rt.bundle.checksum}  # fmt: skip
                if args.json:
                    emit({"board_model": stats["board"]})
                elif problem is None:
                    note(f"the board classifies too, with {'this bundle' if sha else 'a model of the same labels'}: "
                         "its events are shown and compared with the host's")  # fmt: skip
                if problem is not None:
                    warnings.warn(f"--port {args.port}: {problem}", stacklevel=2)

            # a board runs the bundle as exported: what the host does beyond it is said with the first difference
            # (walkthroughs: C and host agreed on 31 gestures, then the shifted activations turned some answers;
            # a C library exported with a state's turn was blamed on adaptation)
            host_note = host_differences(adapter.name if adapter is not None else None, rt.user_state, args.state)
            host_said = False

            def show_comparisons(done: list) -> None:
                nonlocal host_said
                for c in done:
                    if args.json:
                        emit({"compare": c.to_json()})
                    elif not c.agree:
                        note(comparison_text(c) + (f" ({host_note})" if host_note and not host_said else ""))
                        host_said = True
            finished = False
            failure: DeviceError | None = None  # after data flowed: the totals are printed, then the error
            try:
                stop.blocking = True
                try:
                    dev.open()
                finally:
                    stop.blocking = False
                if problem := channels_flag_problem(dev, args.port):
                    warnings.warn(problem, stacklevel=2)
                if error := units_flag_error(dev, args.port):
                    raise UsageError(error)
                idx = channel_map(dev.channel_names, dev.unit_names, rt.channels, rt.bundle.units)
                if unnamed_channels(dev.channel_names) and not unnamed_channels(rt.channels):  # by position: said
                    said = (f"the board's values {dev.channel_names} have no names: read in order as the model's "
                            f"{rt.channels}; --channels {','.join(rt.channels)} names them")  # fmt: skip
                    if args.json:
                        emit({"note": said})
                    else:
                        note(said)
                rec = Recorder(args.record, dev.channel_names) if args.record else None
                if feed is not None:
                    feed.stream(dev)
                if not args.json:
                    us = rt.user_state
                    enrolled = (f" | state {args.state}: {sum(us.counts().values())} take(s) of {len(us.counts())} "
                                "gesture(s)" if us is not None else "")  # fmt: skip
                    if us is not None and us.segmentation == "gentle":
                        enrolled += " (gentle cut: slow gestures kept whole, events about 0.35 s later)"
                    if us is not None and us.mounting is not None:
                        enrolled += f" (board turned {mount_angle(us.mounting):.0f}°: corrected)"
                    print(f"# {Path(args.bundle).name}: {rt.labels} | {rt.metadata['input_mode']} | providers "
                          f"{rt.providers} | device {dev.mode} {dev.channel_names} at "
                          f"{f'{dev.sample_rate:.4g} Hz' if dev.sample_rate else 'the rate its lines arrive at'}"
                          f"{resampled_text(dev.sample_rate, rt.rate_hz)}{enrolled}", file=out, flush=True)  # fmt: skip
                check_board_model()
                # in a log (not a terminal) the first status line comes after a period, with a rate to show
                last_status, last_save = (0.0 if tty else time.monotonic()), time.monotonic()
                last_t: float | None = None  # stream time of the latest sample
                while t_end is None or time.monotonic() < t_end:
                    if stop.signal is not None:
                        stats["stopped_by"] = stop.signal
                        break
                    if "units" in stats:  # every answer would be meaningless: a service stops (and says why)
                        stats["stopped_by"] = "wrong units"
                        break
                    try:
                        items = dev.read(0.05)
                    except DeviceChanged as changed:
                        idx, rec = _device_changed(changed, dev, rt.channels, rt.bundle.units, rec, args, emit, note)
                        if feed is not None:
                            feed.stream(dev)
                        continue
                    finally:
                        # after the read: a state the reader thread set comes before the gap it caused
                        states.drain()
                    check_board_model()
                    for ev in items:
                        if isinstance(ev, Gap):
                            rt.gap(ev.seconds, timeline_reset=ev.timeline_reset)
                            if rec is not None:
                                rec.gap(ev)
                            if args.json:
                                emit({"gap": _gap_json(ev)})
                            elif ev.timeline_reset or ev.seconds >= 1.0:
                                note(f"gap of {ev.seconds:.2f} s ({ev.reason}"
                                     f"{', new timeline' if ev.timeline_reset else ''})")  # fmt: skip
                            continue
                        assert isinstance(ev, SampleBlock)
                        # finite by the bridge's contract: it rejects, counts and gaps non-finite samples
                        t, values = ev.t_device, ev.values
                        if rec is not None:
                            rec.write(t, values)
                        meter.add(ev.t_host, len(values))
                        last_t = float(t[-1])
                        if feed is not None:
                            feed.samples(t, values)
                        known = len(rt.input_problems)
                        events = rt.feed(values[:, idx], t)
                        if adapter is not None and (adapter.changes, adapter.resets, adapter.calibrated) != adapted:
                            reset, calibrated = adapter.resets != adapted[1], adapter.calibrated != adapted[2]
                            # an input transform's change (ttt, input) said when it happens, not only at the end
                            # (a walkthrough could not tell when); tent's many small updates are not
                            adapted = (adapter.changes, adapter.resets, adapter.calibrated)
                            summary = adapter.summary()
                            if summary.get("correction") is not None:
                                said = (f"adaptation {summary['method']}: reset to the source model at {last_t:.1f} s "
                                        # a reset said with its reason (a walkthrough read "change 0 ...; 1 reset")
                                        f"({summary.get('last_reset') or 'collapse detector'}){kept_text(summary)}"
                                        if reset else calibration_text(summary, last_t) if calibrated else
                                        f"adaptation {summary['method']}: change {adapted[0]} of its input transform "
                                        f"at {last_t:.1f} s{correction_text(summary)}")  # fmt: skip
                                if args.json:
                                    emit({"adaptation": {"t": round(last_t, 3), **summary}})
                                else:
                                    note(said)
                        # (no warning: the run stops, and its error line says it)
                        say_input_problems(rt.input_problems[known:], args.port, stats, emit if args.json else None,
                                           warn=False, text_board=dev.mode == "text", declared=dev.declared,
                                           channels=",".join(rt.channels) if unnamed_channels(dev.channel_names) else None)  # fmt: skip
                        for g in events:
                            if compare is not None:
                                show_comparisons(compare.add_host(g))
                            if feed is not None:
                                feed.event(g)
                            stats["gestures"] += g.label != UNKNOWN
                            if g.label == UNKNOWN and not args.show_unknown:
                                continue  # decided for the comparison or the page only
                            stats["events"] += 1
                            if args.json:
                                emit(g.to_json())
                            else:
                                print(f"{cr}{event_text(g)}", file=out, flush=True)
                        # (unknown answers are counted, not returned, without --show-unknown: judged from the counts)
                        if not unfamiliar_said and default_gates:
                            share = rt.unknown_share()
                            if share is not None and (said := unfamiliar_text(share, enroll_cmd, args.state)):
                                unfamiliar_said = True  # once: the summary at the end says it again
                                if args.json:
                                    emit({"note": said})
                                else:
                                    note(said)
                    if feed is not None:
                        feed.tick(dev)
                    for de in dev.take_events():
                        if compare is None:  # events without MODEL_INFO: a board that did not say what it runs
                            compare = EventComparison()
                        show_comparisons(compare.add_board(de))
                        if args.json:
                            emit({"board_event": de.to_json()})
                        elif de.index >= 0 or args.show_unknown:
                            print(f"{cr}{board_event_text(de)}", file=out, flush=True)
                    if compare is not None and last_t is not None:
                        show_comparisons(compare.advance(last_t))
                    now = time.monotonic()
                    if problem := dev.new_rate_problem(now):  # a text board's lines carry no time: --rate spaces them
                        stats["rate"] = problem
                        if args.json:
                            emit({"warning": f"--port {args.port}: {problem}"})
                        warnings.warn(f"--port {args.port}: {problem}", stacklevel=2)
                    if adapter is not None and args.adapt_state and now - last_save >= args.save_every:
                        _save_state(adapter, args.adapt_state, final=False)
                        last_save = now
                    if not args.json and now - last_status > (0.5 if tty else STATUS_LOG_S):
                        last_status = now
                        c = dev.counters()
                        rate = meter.rate_hz(now)
                        lat = f"{np.median(rt.latencies_ms[-50:]):.2f} ms" if rt.latencies_ms else "—"
                        state = dev.state if dev.state != "streaming" else "idle" if rt.windower.idle else "moving"
                        unknown, by_reason = unknown_counts(rt)
                        board = f"  {compare.summary()}" if compare is not None else ""
                        more = sum(rt.stats[k] for k in MOVEMENTS_NOT_CLASSIFIED)
                        skipped = f"  not classified {more}" if more else ""
                        adapting = f"  adapt {adaptation_text(adapter.summary(), unit, True)}" if adapter is not None else ""
                        # samples per host second, and the device's own rate beside it (as monitor's: a simulator
                        # at --speed 4 delivers 4x its rate)
                        nominal = f" (device {dev.sample_rate:g})" if dev.sample_rate else ""
                        held = "unknown" if unit == "gestures" else "unsure windows"
                        print(f"{cr if tty else '# status: '}  {state:6s} {rate:6.1f} Hz{nominal}  latency {lat}  {counters_text(c)}  "
                              f"{held} {unknown} ({by_reason}){skipped}{adapting}{board}   ",
                              end="" if tty else "\n", file=out, flush=True)  # fmt: skip
                finished = True
            except _Stopped as sig:
                stats["stopped_by"] = str(sig)
                finished = True
            except DeviceError as e:
                if not dev.delivered_samples:
                    raise
                stats["stopped_by"] = "device error"
                failure = e  # a service's log gets this run's totals before the one-line error (walkthrough)
            finally:
                if feed is not None:
                    feed.final(dev)
                dev.close()
                if rec is not None:
                    rec.close()
                if compare is not None:
                    show_comparisons(compare.finish())
                    stats.setdefault("board", {}).update(events=dev.device_events, **compare.counts)
                if adapter is not None and args.adapt_state:
                    _save_state(adapter, args.adapt_state, final=finished)
            if dev.info is not None or dev.delivered_samples:
                stats.update(device=dev.counters(), runtime=dict(rt.stats))
            if adapter is not None:
                stats["adaptation"] = adapter.summary()
            share = rt.unknown_share()
            if share is not None:
                stats["unknown_share"] = {**share, "unfamiliar": share["unfamiliar"] and default_gates,
                                          "advised_live": unfamiliar_said}  # fmt: skip
            if args.json:
                emit({"stats": stats})
            else:
                c = dev.counters()
                unknown, by_reason = unknown_counts(rt)
                why = (f" ({by_reason}{'' if args.show_unknown or unit != 'gestures' else '; --show-unknown prints them'})"
                       if unknown else "")  # fmt: skip
                skipped = unclassified_text(rt, enroll_cmd)
                # (a sliding-window model, activities: it says the current class again while it goes on, and a
                # window the gates hold back is silence, not an `unknown` answer)
                reported = (f"gestures reported, {unknown} answered unknown" if unit == "gestures" else
                            f"events reported (the current class, said again while it lasts), {unknown} windows held "
                            "back by the gates (no event)")  # fmt: skip
                print(f"{nl}# stopped ({stats['stopped_by']}): {stats['gestures']} "
                      f"{reported}{why}{', ' + skipped if skipped else ''}, "
                      f"{c['delivered_samples']} samples; "
                      f"dropped {c['dropped_samples']}, rejected {counts_text(c['rejected_samples'])}, "
                      f"gaps {gaps_text(c['gaps'])}{refused_frames_text(c)}", file=out, flush=True)  # fmt: skip
                if compare is not None:
                    differ = host_note and compare.counts["disagree"]
                    print(f"# {dev.device_events} board events; {compare.summary()}{f' ({host_note})' if differ else ''}",
                          file=out, flush=True)  # fmt: skip
                if adapter is not None and "units" not in stats:  # (the error line below says why not)
                    print(f"# adaptation {adaptation_text(stats['adaptation'], unit)}", file=out, flush=True)
                if share is not None and (said := unfamiliar_text(stats["unknown_share"], enroll_cmd, args.state,
                                                                  unfamiliar_said)):  # fmt: skip
                    print(f"# {said}", file=out, flush=True)
                if "units" in stats and stats["events"]:  # (the error line below says what is wrong)
                    print("# every answer above is meaningless: wrong units, see the error below", file=out, flush=True)
                if "rate" in stats:
                    print(f"# wrong --rate, the gestures above were timed wrong: {stats['rate']}", file=out, flush=True)
            if failure is not None:
                raise failure
    if "units" in stats:
        raise DataError(f"--port {args.port}: {stats['units']}; stopped: the model would answer nonsense")
    return 0


def _device_changed(e: DeviceChanged, dev: ImuStream, channels: list[str], units: list[str], rec: Recorder | None,
                    args: argparse.Namespace, emit: Any, note: Any) -> tuple[list[int], Recorder | None]:  # fmt: skip
    """Another device (or channel set) took over the port: re-map the same channels, follow another device
    only with ``--follow-device``, else stop with a device error. Returns the new channel map and recorder."""
    same = _same_device(e)
    if not same and not args.follow_device:
        raise DeviceError(f"{e}; pass --follow-device to switch to the new device")
    idx = channel_map(dev.channel_names, dev.unit_names, channels, units)
    if rec is not None and not rec.follow(dev.channel_names):
        warnings.warn(f"--record {rec.path}: recording ended, the new device sends other channels", stacklevel=2)
        rec = None
    action = "remapped" if same else "followed"
    if args.json:
        emit({"device_changed": {"old": str(e.old), "new": str(e.new), "action": action}})
    else:
        note(f"the device changed from {e.old} to {e.new}; {action} its channels, windows restart")
    return idx, rec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="live gesture recognition from a serial IMU")
    p.add_argument("bundle", help="model bundle (.essl)")
    p.add_argument("--port", required=True, help="serial port or URL (a path, /dev/ttyACM0, the simulator's path)")
    p.add_argument("--wait", type=_wait_seconds, default="forever",
                   help="seconds to wait for a port that is not there yet or that another program holds, or "
                        "'forever' (the default: what a service wants); 0 fails at once. Unplugs are always waited out")  # fmt: skip
    p.add_argument("--follow-device", action="store_true",
                   help="when another device (other id or channels) takes over the port, switch to it if it can "
                        "feed the model, instead of stopping with a device error")  # fmt: skip
    p.add_argument("--providers", default="CPU", help="onnxruntime providers in order, e.g. TensorRT,CUDA,CPU")
    p.add_argument("--adapt", default=DEFAULT_METHOD,
                   help="test-time adaptation: none, t3a, tent, ttt, input, clusters, a chain like input+tent, or "
                        f"the first available of a|b (default {DEFAULT_METHOD}: ttt where the model takes "
                        "accelerometer axes in g, else tent; and, for a gesture model, clusters: your own gestures "
                        "grouped, each group answered as most of its gestures were; best in "
                        "benchmarks/results/tta_shift.json and enroll.json)")
    p.add_argument("--adapt-state", default=None,
                   help="file to restore adapted state from and save it to (exactly this path; saved atomically "
                        "every --save-every seconds and at exit, SIGTERM included; an unusable one is set aside)")  # fmt: skip
    p.add_argument("--save-every", type=_positive, default=60.0, help="seconds between saves of --adapt-state")
    p.add_argument("--state", default=None,
                   help="a user's enrollment written by edgessl enroll for this bundle: its gestures join the "
                        "decisions (default: none)")  # fmt: skip
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout: events, gaps, device states and changes, adaptation changes, notes, final stats (events: the "
                        "lines shown, unknown answers too with --show-unknown; gestures: those naming a gesture; "
                        "unknown_share: the gestures answered unknown as unsure or unlike training against the share "
                        "the export calibrated, and whether that is far more: a person to enroll (advised_live: said while running))")
    p.add_argument("--record", default=None,
                   help="save the raw stream losslessly to this new CSV file (gaps as # comment lines)")
    p.add_argument("--mode", choices=["auto", "binary", "text"], default="auto")
    add_text_board_flags(p)
    p.add_argument("--confidence", type=_probability, default=None,
                   help="below this the answer is 'unknown' (default: the bundle's gate, calibrated at export)")
    p.add_argument("--ood-threshold", type=_ood_score, default=None,
                   help="out-of-distribution score (1 - cosine similarity to the nearest class prototype) above "
                        "which the answer is 'unknown' (default: the bundle's gate, calibrated at export)")
    p.add_argument("--show-unknown", action="store_true",
                   help="also report gestures answered 'unknown' (segment models), with their confidence and "
                        "out-of-distribution score; they are always counted in the status line and --json stats")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (waiting included)")
    add_serve_flag(p)
    p.set_defaults(func=run)
