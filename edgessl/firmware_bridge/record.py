"""``edgessl record``: record sessions from a serial IMU into a data set folder; no model needed.

Free recording (no ``--label``) writes one unlabelled session (for pretraining) under a live status line.
Guided capture (``--label circle,left --count 10``) prompts each performance (get ready, a countdown, GO, and
a CUE so that a board with a display, or the simulator, shows or performs it), cuts it with the runtime's
motion-energy segmenter (:mod:`edgessl.segmenter`), shows what it kept and keeps per-class counts. Labels take
turns (circle, left, circle, left ...) so that fatigue spreads over the classes. Either way the whole stream
goes into the session file (samples, and gaps as comment lines): a take only adds a segment to the sidecar,
so nothing the device sent is lost, and a take that a gap overlaps is kept with the flag ``"gap"`` and said so.
A gap of at most ``MAX_FILL_S`` is bridged by interpolation when the session is loaded, as ``edgessl run`` bridges
one live: such a take counts. Training leaves any other flagged take out, so it does not count and the class is
asked again.

The device is opened as ``edgessl run`` opens it (``--wait`` for the port, unplugs waited out, SIGTERM and
Ctrl-C end cleanly with the session closed); another device on the port stops the recording with a device
error, since a session holds one device's samples.

``--json`` lines on stdout, one object each with one key: ``session`` (the files, the device), ``device``
(state changes), ``status`` (free recording, about once a second), ``gap``, ``prompt``, ``cue`` (a device that
refused a cue, once per kind of answer), ``take`` (a kept segment, with the counts), ``redo``, ``miss``
(nothing moved in time), ``device_changed`` and, last, ``stats``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edgessl.console import gaps_text, sparkline, unicode_ok
from edgessl.dashboard import add_serve_flag, serving
from edgessl.datasets.types import unit_from_channel
from edgessl.edge_runtime.cli import (
    _gap_json,
    _same_device,
    _Stopped,
    _StopSignals,
    _wait_seconds,
    counters_text,
    refused_frames_text,
)
from edgessl.errors import DeviceError, UsageError
from edgessl.firmware_bridge.flags import add_text_board_flags
from edgessl.preprocess import MAX_FILL_S
from edgessl.segmenter import MIN_SPLIT, MotionSegmenter, SegmentParams, choose_segmentation, motion_rows, profile
from edgessl.units import UnitWatch, with_units_flag

if TYPE_CHECKING:
    from edgessl.datasets.session import SessionWriter
    from edgessl.firmware_bridge.protocol import DeviceChanged
    from edgessl.firmware_bridge.transport import Gap, ImuStream

__all__ = ["register", "record"]

GO_GRACE_S = 0.3  # a segment may start this long before GO: frames in flight, the segmenter's pre-roll
ASK_S = 4.0  # host seconds a terminal user has to answer r (redo) or q (stop) after a take before it is kept
WATCH_EXTRA_S = 2.0  # device seconds after GO beyond the longest gesture before a take counts as a miss
MISSES_IN_A_ROW = 5  # prompts with no take in a row before a capture stops (nobody is performing)
SETTLE_S = 0.5  # after a segment ends, how long another (larger) one may still start and win
SAVE_EVERY_S = 5.0  # seconds between sidecar rewrites while nothing else rewrites it (counters, samples)
KEEP_S = 60.0  # seconds of recent samples kept in memory to cut takes from (the file has them all)
MAX_LABEL_BYTES = 32  # the CUE command's payload limit (docs/protocol.md)


@dataclasses.dataclass
class Take:
    """A segment the segmenter cut, on the device-seconds axis of the samples (end exclusive).

    Attributes:
        motion: ``[n]`` each sample's distance from the take's mean (g channels, else all): the shape of the
            movement without gravity, for the sparkline.
        lost: about how many samples the gaps that touch it miss (at least 1 per gap); > 0 flags it.
        bridged: every such gap is one ``edgessl run`` bridges live (at most ``MAX_FILL_S``, same timeline), and so
            does the loader of the session: a flagged take that still counts.
    """

    start_s: float
    end_s: float
    energy: float
    motion: np.ndarray
    lost: int = 0
    bridged: bool = False
    gaps: int = 0  # how many gaps touch it

    @property
    def flags(self) -> list[str]:
        return ["gap"] if self.lost else []


class SessionStream:
    """The device stream going into one session: every sample and gap to the writer, and a motion segmenter
    over the samples (never reset: a gap inside a gesture flags it instead of cutting it).

    Args:
        writer: the session file.
        channels, units: the session's channels (the device's at the start).
        rate_hz: the device's sample rate (the segmenter's).
        params: how to cut gestures.
    """

    def __init__(self, writer: SessionWriter, channels: list[str], units: list[str], rate_hz: float,
                 params: SegmentParams):  # fmt: skip
        self.writer, self.channels, self.rate = writer, list(channels), float(rate_hz)
        self.keep = int(KEEP_S * self.rate)
        self.params = params
        # the accelerometer's energy when a gyroscope (or anything not in g) comes along: as `run` cuts
        self._rows = motion_rows(units)
        self.segmenter = MotionSegmenter(len(channels), self.rate, params, lookback=self.keep, rows=self._rows)
        self._motion_channels = self._rows or list(range(len(channels)))  # a take's motion: on the same channels
        self._order: list[int] | None = None  # device column of each session channel (None: same order)
        self._t = np.zeros(0, np.float64)
        self._x = np.zeros((len(channels), 0), np.float32)  # the samples themselves
        self._energy = np.zeros(0, np.float32)
        self._base = 0  # segmenter index of self._t[0]
        self.gaps: list[Gap] = []
        self.samples = 0
        self.last_t: float | None = None  # device time of the newest sample

    def follow(self, device_channels: list[str]) -> None:
        """The device now sends the session's channels in the order ``device_channels``."""
        self._order = None if device_channels == self.channels else [device_channels.index(c) for c in self.channels]

    def feed(self, t: np.ndarray, values: np.ndarray) -> list[Take]:
        """Write ``values [n, C]`` at device times ``t [n]``; returns the segments that finished."""
        if self._order is not None:
            values = values[:, self._order]
        self.writer.append(t, values)
        x = values.T.astype(np.float64)
        energy = self.segmenter.energies(x)  # before push: push does not hand its per-sample energies out
        finished = self.segmenter.push(x)
        self._t = np.concatenate([self._t, np.asarray(t, np.float64)])
        self._x = np.concatenate([self._x, x.astype(np.float32)], axis=1)
        self._energy = np.concatenate([self._energy, energy.astype(np.float32)])
        if len(self._t) > 2 * self.keep:  # trim now and then, not at every block
            cut = len(self._t) - self.keep
            self._t, self._x, self._energy = self._t[cut:], self._x[:, cut:], self._energy[cut:]
            self._base += cut
        self.samples += len(t)
        self.last_t = float(t[-1])
        return [self._take(a, b) for a, b in finished]

    def split_since(self, t0: float) -> bool:
        """Whether the default cut split a movement since device time ``t0`` into pieces that the gentle cut
        keeps whole (:func:`edgessl.segmenter.choose_segmentation` on those samples)."""
        x = self._x[:, self._t >= t0]
        if x.shape[1] < 2:
            return False
        # a second of stillness after the samples: the gentle cut ends a gesture later than the default one
        x = np.concatenate([x, np.repeat(x[:, -1:], int(self.rate), axis=1)], axis=1)
        return choose_segmentation(x, self.rate, self.params, self._rows).split >= 1

    def use(self, params: SegmentParams) -> None:
        """Cut with ``params`` from now on (the gesture in progress, if any, is cut afresh); the counts and
        sample indices go on."""
        old = self.segmenter
        seg = MotionSegmenter(len(self.channels), self.rate, params, lookback=self.keep, rows=self._rows)
        seg.n, seg.too_short, seg.too_long, seg.short_pieces = old.n, old.too_short, old.too_long, old.short_pieces
        self.segmenter, self.params = seg, params
        self.writer.set_segmentation(dataclasses.asdict(params))

    def gap(self, g: Gap) -> None:
        self.writer.gap(g.t_start, g.seconds, g.timeline_reset)
        self.gaps.append(g)
        self.gaps = self.gaps[-1000:]

    @property
    def active_since(self) -> float | None:
        """Device time at which the gesture in progress started (None when at rest)."""
        start = self.segmenter.active_start
        if start is None or start - self._base >= len(self._t):
            return None
        return float(self._t[max(0, start - self._base)])

    def _take(self, a: int, b: int) -> Take:
        i, j = max(0, a - self._base), b - self._base
        start_s = float(self._t[i])
        end_s = float(self._t[j]) if j < len(self._t) else float(self._t[j - 1]) + 1.0 / self.rate
        period = 1.0 / self.rate
        # a gap touching the segment (even at an end, where the gesture's start or finish may be what is missing)
        touching = [g for g in self.gaps if g.t_start <= end_s and g.t_end >= start_s - period]
        lost = sum(max(1, g.missing) for g in touching)
        bridged = bool(touching) and all(g.seconds <= MAX_FILL_S and not g.timeline_reset for g in touching)
        g = self._x[self._motion_channels, i:j]
        motion = np.linalg.norm(g - g.mean(axis=1, keepdims=True), axis=0) if g.shape[1] else np.zeros(0, np.float32)
        return Take(start_s, end_s, float(self._energy[i:j].max(initial=0.0)), motion, lost, bridged,
                    len(touching))  # fmt: skip


class Display:
    """What the user sees: lines (a tty gets a status line redrawn in place), or JSON lines."""

    def __init__(self, out: TextIO, json_lines: bool):
        self.out, self.json = out, json_lines
        self.tty = not json_lines and out.isatty()
        self.dash = "—" if unicode_ok(out) else "-"
        self._status_shown = False

    def emit(self, record: dict[str, Any]) -> None:
        print(json.dumps(record), file=self.out, flush=True)

    def line(self, text: str) -> None:
        self.end()
        print(text, file=self.out, flush=True)

    def part(self, text: str) -> None:
        """Text that the next :meth:`part` continues on the same line (a prompt and its countdown)."""
        print(text, end="", file=self.out, flush=True)
        self._status_shown = True

    def end(self) -> None:
        """End a line begun by :meth:`part` or :meth:`status`."""
        if self._status_shown:
            print(file=self.out, flush=True)
            self._status_shown = False

    def status(self, text: str) -> None:
        if self.tty:
            print(f"\r{text}   ", end="", file=self.out, flush=True)
            self._status_shown = True
        else:
            self.line(text)


class Guide:
    """Guided capture: prompts, cues and takes, one performance at a time, labels in turn.

    A step machine driven by the recording loop (:meth:`step` after every read, :meth:`offer` for every
    segment that finished), so samples keep flowing into the session while it waits for the user.

    Args:
        labels: the classes, in the order they take turns.
        count: performances wanted of each, or per label (a dict: the same keys as ``labels``).
        countdown: host seconds between "get ready" and GO.
        params: the segmenter's (a take is watched for up to ``max_duration_s`` + 2 device seconds).
        ask: a tty's answer to "keep · redo · stop": returns ``None`` while the user has not answered, else
            the line typed; no answer within ``ASK_S`` keeps the take; None (tests, pipes) keeps every take.
        gentle_note: what keeps the gentle cut, said when the capture switches to it (slow or small gestures).
        in_turn: labels take turns, one take each (a recording: the classes' takes spread over the session);
            False asks each label's takes in a row, in order (enroll's round of more takes, said in that order).
    """

    def __init__(self, labels: list[str], count: int | dict[str, int], countdown: float, params: SegmentParams,
                 display: Display, ask: Any = None, gentle_note: str = "", in_turn: bool = True):  # fmt: skip
        self.labels, self.countdown, self.params, self.in_turn = labels, countdown, params, in_turn
        self.wanted = dict(count) if isinstance(count, dict) else dict.fromkeys(labels, count)
        self.d, self.ask = display, ask
        self.state = "next"
        self.turn = 0  # index into labels of the next label's turn
        self.label = labels[0]
        self.misses = 0
        self.misses_in_a_row = 0
        self.gave_up: str | None = None  # why the capture stopped by itself (MISSES_IN_A_ROW prompts without a take)
        self.cues: dict[str, int] = {}  # how the device answered CUE, by status name
        self.cue_refused: set[str] = set()  # labels whose cue the board refused (it cannot perform them)
        self.stop_asked = False
        self._ready_at = 0.0
        self._shown_left: int | None = None
        self._t_go = 0.0
        self._candidates: list[Take] = []
        self._early: Take | None = None  # a movement of this prompt that began before GO (during the countdown)
        self._dropped_at_go = (0, 0)  # the segmenter's too-short and too-long movements at GO
        self._last: Take | None = None
        self.flagged_in_a_row = 0  # takes a gap overlapped, in a row (a link that drops frames stops the capture)
        self.splits = 0  # prompts whose gesture the default cut split into pieces (slow or small gestures)
        self.switched = False  # the capture cuts with the gentle cut since the MIN_SPLIT-th such prompt
        self.gentle_note = gentle_note  # what keeps the gentle cut, said when the capture switches to it
        self._ask_until = 0.0  # host time when an unanswered take is kept

    def counts(self, writer: SessionWriter) -> dict[str, int]:
        got = writer.counts()
        return {lb: int(got.get(lb, 0)) for lb in self.labels}

    def prompt(self, writer: SessionWriter) -> dict[str, Any] | None:
        """The prompt on show, for the live page: the class, which take, and ``ready`` (with ``go_wall``, the
        wall time of GO), ``go`` (perform now) or ``ask`` (keep or redo); None between prompts."""
        if self.state not in ("ready", "watch", "ask"):
            return None
        n = self.counts(writer)[self.label] + (0 if self.state == "ask" else 1)
        out: dict[str, Any] = {"label": self.label, "take": n, "of": self.wanted[self.label],
                               "state": "go" if self.state == "watch" else self.state}  # fmt: skip
        if self.state == "ready":
            out["go_wall"] = round(time.time() + self._ready_at - time.monotonic(), 3)
        return out

    def done(self, writer: SessionWriter) -> bool:
        """Stop was asked, or every class has its count and the last take is not waiting for an answer."""
        if self.stop_asked:
            return True
        return self.state != "ask" and all(n >= self.wanted[lb] for lb, n in self.counts(writer).items())

    def _pick(self, counts: dict[str, int]) -> str:
        for k in range(len(self.labels)):
            i = (self.turn + k) % len(self.labels)
            if counts[self.labels[i]] < self.wanted[self.labels[i]]:
                return self.labels[i]
        return self.labels[self.turn % len(self.labels)]

    def offer(self, takes: list[Take]) -> None:
        """Segments that finished; those that started after GO (minus a grace) are this take's candidates."""
        if self.state == "ready":  # a movement that ended during the countdown: the user did not wait for GO
            self._early = takes[-1] if takes else self._early
        elif self.state == "watch":
            self._candidates += [t for t in takes if t.start_s >= self._t_go - GO_GRACE_S]
            self._early = next((t for t in takes if t.start_s < self._t_go - GO_GRACE_S), self._early)

    def step(self, stream: SessionStream, dev: ImuStream) -> None:
        now = time.monotonic()
        if self.state == "next":
            if self.done(stream.writer):
                return
            counts = self.counts(stream.writer)
            self.label = self._pick(counts)
            n = counts[self.label] + 1
            if self.d.json:
                self.d.emit({"prompt": {"label": self.label, "take": n, "of": self.wanted[self.label]}})
            elif self.d.tty:  # the countdown and GO follow on the same line
                self.d.part(f"{self.label} {n}/{self.wanted[self.label]} {self.d.dash} get ready")
            else:
                wait = f" ({self.countdown:g} s)" if self.countdown else ""
                self.d.line(f"{self.label} {n}/{self.wanted[self.label]} {self.d.dash} get ready{wait}")
            self._ready_at, self._shown_left, self._early = now + self.countdown, None, None
            self.state = "ready"
        if self.state == "ready":
            left = int(np.ceil(self._ready_at - now))
            if left > 0:
                if self.d.tty and left != self._shown_left:
                    self.d.part(f"  {left}{'…' if self.d.dash == '—' else '...'}")
                    self._shown_left = left
                return
            if self.d.tty:
                self.d.part("  GO")
                self.d.end()
            elif not self.d.json:
                self.d.line("GO")
            self._cue(dev)
            self._t_go = stream.last_t if stream.last_t is not None else 0.0
            self._candidates = []
            self._dropped_at_go = (stream.segmenter.too_short, stream.segmenter.too_long)
            self.state = "watch"
        if self.state == "watch":
            self._watch(stream)
        if self.state == "ask":
            answer = self.ask() if self.ask is not None else ""
            if answer is None and now < self._ask_until:
                return
            answer = answer or ""  # no answer in ASK_S: kept (the next prompt follows, as after Enter)
            answer = answer.strip().lower()
            if answer.startswith("r"):
                self.turn = self.labels.index(self.label)  # the same class again, then the turns go on
                dropped = stream.writer.drop_last_segment()
                stream.writer.flush()
                if self.d.json:
                    self.d.emit({"redo": dropped})
                else:
                    self.d.line(f"dropped {self.label} take {dropped['take'] if dropped else '?'}; again")
            elif answer.startswith("q"):
                self.stop_asked = True
            self.state = "next"

    def _cue(self, dev: ImuStream) -> None:
        """Tell the device (a board that shows prompts, the simulator that performs them). A text-mode board or
        one without CUE answers UNSUPPORTED: the prompt on screen is all there is, as for any board."""
        from edgessl.firmware_bridge.protocol import BridgeError

        try:
            status = dev.cue(self.label).name
        except BridgeError:  # unplugged at this moment: the prompt on screen still stands
            status = "NOT_SENT"
        if status not in ("OK", "UNSUPPORTED") and status not in self.cues:  # said once per kind of answer
            if self.d.json:
                self.d.emit({"cue": {"label": self.label, "status": status}})
            else:
                why = ("could not be sent (the board is unplugged at the moment)" if status == "NOT_SENT"
                       else "was refused: the board does not know this gesture (`edgessl simulate` performs only "
                       "its own gestures, so no take of it will come)" if status == "BAD_ARGUMENT"
                       else f"was answered {status}")  # fmt: skip
                self.d.line(f"# the cue {self.label!r} to the board {why}; perform on the screen's prompt as usual")
        self.cues[status] = self.cues.get(status, 0) + 1
        if status == "BAD_ARGUMENT":
            self.cue_refused.add(self.label)

    def _watch(self, stream: SessionStream) -> None:
        t = stream.last_t if stream.last_t is not None else self._t_go
        since = stream.active_since
        moving = since is not None and since >= self._t_go - GO_GRACE_S  # a gesture of this take is under way
        # motion that never rests (the segmenter gives up at max_duration and starts again) ends the wait too
        moving = moving and t < self._t_go + 2 * self.params.max_duration_s + WATCH_EXTRA_S
        if self._candidates:
            if moving or t < max(c.end_s for c in self._candidates) + SETTLE_S:
                return
        elif moving or t < self._t_go + self.params.max_duration_s + WATCH_EXTRA_S:
            return
        if self._gentle_now(stream):
            return
        if not self._candidates:
            self.misses += 1
            waited = t - self._t_go
            hidden = sum(g.seconds for g in stream.gaps if g.t_end >= self._t_go)
            short = stream.segmenter.too_short - self._dropped_at_go[0]
            long = stream.segmenter.too_long - self._dropped_at_go[1]
            p = self.params
            why = (f"{hidden:.1f} s of it missing in gaps" if hidden else
                   f"a movement of {p.max_duration_s:g} s or longer: a gesture must end sooner" if long > 0 else
                   f"you moved {self._t_go - self._early.start_s:.1f} s before GO: wait for GO, then perform"
                   if self._early is not None else
                   f"only movement shorter than {p.min_duration_s:g} s: a flick, a bump, or a gesture too gentle to "
                   f"stay above {p.threshold_g:g} g, cut into pieces: perform it as you usually do; if it "
                   f"happens {MIN_SPLIT} times, a gentler cut for slow gestures is tried" if short > 0 else
                   f"nothing moved above {p.threshold_g:g} g")  # fmt: skip
            if self.d.json:
                self.d.emit({"miss": {"label": self.label, "waited_s": round(waited, 3), "gap_s": round(hidden, 3),
                                      "why": why}})  # fmt: skip
            else:
                self.d.line(f"no {self.label} seen within {waited:.1f} s of GO ({why}); again")
            self.misses_in_a_row += 1
            if self.misses_in_a_row >= MISSES_IN_A_ROW:  # nobody performs (or the board cannot): stop, say so
                hint = ("the board refused its cue: `edgessl simulate` performs only its own gestures; on your own "
                        "board, perform it on the prompt" if self.label in self.cue_refused else
                        "is the board held and moving when GO shows?")  # fmt: skip
                self.gave_up = f"no take in {self.misses_in_a_row} prompts in a row (the last: {self.label}, {why}); {hint}"

                self.stop_asked = True
            self.state = "next"
            return
        best = max(self._candidates, key=lambda c: c.energy)
        self._keep(stream.writer, best)

    def _gentle_now(self, stream: SessionStream) -> bool:
        """After a prompt: count it when the default cut split its gesture into pieces (a piece is not kept: the
        prompt is a miss); at the MIN_SPLIT-th, cut with the gentle cut from now on, say so, and ask this prompt
        again (True)."""
        short = stream.segmenter.too_short - self._dropped_at_go[0]
        if self.switched or short <= 0 or not stream.split_since(self._t_go - GO_GRACE_S):
            return False
        self.splits += 1
        if self.splits < MIN_SPLIT:
            self._candidates = []  # a piece of a gesture is no take: asked again, as a miss
            return False
        gentle = profile(self.params, "gentle")
        stream.use(gentle)
        self.params, self.switched = gentle, True
        self.misses_in_a_row = 0
        if self.d.json:
            self.d.emit({"segmentation": {"profile": "gentle", "split": self.splits, **dataclasses.asdict(gentle)}})
        else:
            self.d.line(f"# your gestures are slow or small: the default cut split {self.splits} of them into pieces; "
                        f"from now on they are cut with the gentle cut{self.gentle_note}; again")  # fmt: skip
        self.state = "next"
        return True

    def _keep(self, writer: SessionWriter, take: Take) -> None:
        self.misses_in_a_row = 0
        rec = writer.add_segment(self.label, take.start_s, take.end_s, energy=round(take.energy, 6), flags=take.flags,
                                 bridged=take.bridged)  # fmt: skip
        writer.flush()
        counts = self.counts(writer)
        flagged = bool(rec["flags"]) and not take.bridged  # a bridged take trains as edgessl run sees it: it counts
        # a flagged take stays in the files but training leaves it out: it does not count, the class is asked again
        more = not self.in_turn and counts[self.label] < self.wanted[self.label]
        self.turn = (self.labels.index(self.label) + (0 if flagged or more else 1)) % len(self.labels)
        self.flagged_in_a_row = self.flagged_in_a_row + 1 if flagged else 0
        duration = take.end_s - take.start_s
        if self.d.json:
            rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}
            self.d.emit({"take": {**rounded, "duration_s": round(duration, 4), "lost_samples": take.lost,
                                  "counted": not flagged, "counts": counts}})  # fmt: skip
        else:
            spark = sparkline(take.motion, width=32, ascii_only=not unicode_ok(self.d.out))
            n = f"{counts[self.label]}/{self.wanted[self.label]}" if not flagged else f"take {rec['take']}, not counted"
            self.d.line(f"kept {self.label} {n}: {duration:.2f} s, peak energy {take.energy:.2f}  {spark}")
            if flagged:
                self.d.line(f"  a gap overlaps this take (about {take.lost} samples missing): saved flagged 'gap', "
                            "which training leaves out; again")  # fmt: skip
            elif take.lost:
                self.d.line(f"  {take.lost} sample(s) lost in {take.gaps} gap(s) of at most {MAX_FILL_S:g} s each: "
                            "bridged by interpolation, as edgessl run does live; the take counts")  # fmt: skip
            self.d.line("  " + ", ".join(f"{lb} {n}/{self.wanted[lb]}" for lb, n in counts.items()))
        if flagged and self.flagged_in_a_row >= MISSES_IN_A_ROW:
            self.gave_up = (f"{self.flagged_in_a_row} takes in a row lost samples in gaps (the link drops frames: "
                            "a loose cable, a baud rate or a USB hub too slow for the stream?)")  # fmt: skip
            self.stop_asked = True
        self.state = "ask" if self.ask is not None and not flagged else "next"
        if self.state == "ask":
            self._ask_until = time.monotonic() + ASK_S
            self.d.line(f"r Enter: redo · q Enter: stop · Enter or {ASK_S:g} s: keep and go on")


def _stdin_answer() -> str | None:
    """A line typed on the terminal, without blocking (None when nothing was typed yet)."""
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return sys.stdin.readline() if ready else None


def _labels(text: str | None) -> list[str]:
    if text is None:
        return []
    labels = [s.strip() for s in text.split(",")]
    for lb in labels:
        if not lb or len(lb.encode()) > MAX_LABEL_BYTES or not lb.isprintable():
            raise UsageError(f"--label {text}: {lb!r} is not a label; expected comma-separated names of 1 to "
                             f"{MAX_LABEL_BYTES} bytes, like circle,left")  # fmt: skip
    if len(set(labels)) != len(labels):
        raise UsageError(f"--label {text}: a label is repeated; expected each class once")
    return labels


def _device_info(dev: ImuStream, port: str) -> dict[str, Any]:
    """What the device said about itself (IDENTIFY), for the sidecar."""
    info, ident = dev.info, dev.identity
    return {"port": port, "mode": dev.mode, "name": str(ident) if ident is not None else None,
            "firmware": ".".join(map(str, info.firmware)) if info is not None else None,
            "serial": f"0x{info.device_id:08x}" if info is not None else None}  # fmt: skip


def _rate(dev: ImuStream, t: np.ndarray, port: str) -> float:
    rate = dev.sample_rate
    if rate is None and len(t) >= 2 and t[-1] > t[0]:
        rate = (len(t) - 1) / float(t[-1] - t[0])
    if rate is None or not np.isfinite(rate) or rate <= 0:
        raise UsageError(f"--port {port}: the device's sample rate is unknown; pass --rate (in Hz)")
    return float(rate)


def folder_mismatch(folder: Path, channels: list[str], units: list[str], rate: float) -> str | None:
    """Why a session of this board cannot join ``folder`` (the data commands read one rate and one set of
    channels per folder), from the sessions recorded there; None when it can. A text board's rate is still an
    estimate when the recording starts: a rate within 5 % passes (the data commands' 1 % is checked on load)."""
    from edgessl.datasets.session import SESSION_FORMAT

    if not folder.is_dir():
        return None
    for side in sorted(folder.rglob("*.json")):
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # not a session's
        if not isinstance(meta, dict) or meta.get("format") != SESSION_FORMAT or not meta.get("rate_hz"):
            continue
        there = float(meta["rate_hz"])
        if abs(rate / there - 1) > 0.05:
            return (f"{side.with_suffix('.csv')} was recorded at {there:.4g} Hz, this board streams {rate:.4g} Hz; "
                    "the data commands read one rate per folder: record into another --out (or give a text board "
                    f"the --rate of its own)")  # fmt: skip
        if list(meta.get("channels") or []) != list(channels) or list(meta.get("units") or []) != list(units):
            return (f"{side.with_suffix('.csv')} holds channels {meta.get('channels')} ({meta.get('units')}), this "
                    f"board streams {channels} ({units}); the data commands read one set per folder: record into "
                    "another --out")  # fmt: skip
        return None  # the loader holds every session to the first one's: comparing with one is enough
    return None


def _check_out(out: str) -> Path:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder; expected a data set folder (new or existing)")
    return folder


def _follow(e: DeviceChanged, dev: ImuStream, stream: SessionStream | None, rate: float | None) -> None:
    """The same board announcing itself again (channels perhaps reordered) goes on; another device, other
    channels or another rate stop the recording with a device error."""
    same = _same_device(e) and (rate is None or e.new.rate_hz is None or abs(e.new.rate_hz - rate) < 1e-6 * rate)
    if not same:
        raise DeviceError(f"{e}; a session holds one device's samples: record the new device in a new session")
    if stream is not None:
        stream.follow(dev.channel_names)


def check_capture_args(args: argparse.Namespace, default_count: int) -> int:
    """The checks ``record`` and ``enroll`` share: ``--count`` (returned, ``default_count`` when not given),
    ``--countdown`` and ``--seconds``; one-line usage errors naming the flag."""
    count = default_count if args.count is None else args.count
    if count < 1:
        raise UsageError(f"--count {count}: expected a number of performances >= 1")
    if args.countdown < 0:
        raise UsageError(f"--countdown {args.countdown:g}: expected seconds >= 0")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds {args.seconds:g}: expected seconds > 0")
    return count


def _users_cut(folder: Path, user: str) -> SegmentParams:
    """The cut of ``user``'s latest session in ``folder`` when it is the gentle one (a person with slow gestures
    stays one), else the default. Sidecars that do not read are skipped (``data info`` reports them)."""
    latest: tuple[str, dict] | None = None
    for side in folder.glob("*.json") if folder.is_dir() else []:
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("format") == "edgessl-session" and meta.get("user") == user:
            if latest is None or str(meta.get("started", "")) > latest[0]:
                latest = (str(meta.get("started", "")), meta)
    gentle = profile(SegmentParams(), "gentle")
    if latest is not None and latest[1].get("segmentation") == dataclasses.asdict(gentle):
        return gentle
    return SegmentParams()


def record(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``record`` command (see the module's docstring); ``out`` defaults to stdout."""
    from edgessl.datasets.session import SessionWriter

    labels = _labels(args.label)
    if args.count is not None and not labels:
        raise UsageError("--count needs --label (the classes to count); without --label the session is unlabelled")
    count = check_capture_args(args, default_count=10)
    if not args.user or not all(c.isalnum() or c in "-_." for c in args.user):
        raise UsageError(f"--user {args.user!r}: expected a name of letters, digits, '-', '_' or '.'")
    folder = _check_out(args.out)  # before waiting for the port, not after
    d = Display(out or sys.stdout, args.json)
    params = _users_cut(folder, args.user)
    if params != SegmentParams() and not d.json:
        d.line(f"# cutting with the gentle cut, as the latest session of user {args.user} in {folder} did (slow or "
               "small gestures)")  # fmt: skip
    ask = _stdin_answer if (d.tty and sys.stdin.isatty()) else None
    note = " (the session keeps it: training, export and edgessl run cut the same way)"
    guide = Guide(labels, count, args.countdown, params, d, ask, note) if labels else None
    if guide is not None and params != SegmentParams():
        guide.switched = True  # already gentle

    def open_writer(dev: ImuStream, rate: float) -> SessionWriter:
        if problem := folder_mismatch(folder, dev.channel_names, dev.unit_names, rate):
            raise UsageError(f"--out {args.out}: {problem}")
        writer = SessionWriter(folder, kind="labelled" if labels else "unlabelled", user=args.user,
                               device=_device_info(dev, args.port), rate_hz=rate, channels=dev.channel_names,
                               units=dev.unit_names, segmentation=dataclasses.asdict(params))  # fmt: skip
        _announce(d, writer, dev, args.port, rate, labels, count)
        return writer

    with serving(args.serve, "record", d.out, d.json) as dash:
        stats, stream, dev = capture(args, d, guide, params, open_writer, dash=dash)
    _summary(d, stats, stream, dev, guide, count)
    if guide is not None and guide.gave_up and stream is not None:
        kept = sum(guide.counts(stream.writer).values())
        raise DeviceError(f"--port {args.port}: stopped: {guide.gave_up}. The {kept} take(s) kept are in "
                          f"{stream.writer.path_csv}")  # fmt: skip
    return 0


def capture(args: argparse.Namespace, d: Display, guide: Guide | None, params: SegmentParams,
            open_writer: Callable[[ImuStream, float], Any], dash: Any = None,
            ) -> tuple[dict[str, Any], SessionStream | None, ImuStream]:  # fmt: skip
    """Open the device (``args.port``, ``mode``, ``rate``, ``wait``, ``seconds``) and stream it into the writer
    that ``open_writer(device, rate)`` makes at the first sample (a :class:`SessionWriter`, or anything with its
    methods), guided by ``guide`` (or a free recording with a status line), until done, ``--seconds``, or a
    signal; the writer is closed. Returns the stats so far, the stream (None before the first sample), the device.
    With ``dash`` (a :class:`~edgessl.dashboard.server.Dashboard`), the live page gets the stream, the prompts
    and the counts.
    """
    from edgessl.edge_runtime.dashboard_feed import Feed
    from edgessl.edge_runtime.rate import RateMeter
    from edgessl.firmware_bridge.protocol import DeviceChanged
    from edgessl.firmware_bridge.states import StateReporter
    from edgessl.firmware_bridge.transport import Gap, ImuStream, SampleBlock, channels_flag_problem, units_flag_error

    states = StateReporter(args.port, args.wait, json_mode=d.json, emit=d.emit, note=lambda t: d.line(f"# {t}"),
                           gone=" (the gap is recorded)")  # fmt: skip

    stats: dict[str, Any] = {"stopped_by": "seconds"}
    stream: SessionStream | None = None
    rate: float | None = None
    feed = Feed(dash, port=args.port) if dash is not None else None
    if feed is not None:
        states.hook = feed.state
    shown: Any = None  # the prompt on the page
    units = UnitWatch([], [])  # the device's, from its first samples
    with _StopSignals() as stop:
        dev = ImuStream(args.port, mode=args.mode, rate_hz=args.rate, channels=args.channels, wait_for_port=args.wait,
                        declared=args.units, reconnect_timeout=None, on_state=states.on_state)  # fmt: skip
        try:
            stop.blocking = True
            try:
                dev.open()
            finally:
                stop.blocking = False
            if problem := channels_flag_problem(dev, args.port):
                d.end()
                print(f"edgessl {getattr(args, 'command', 'record')}: warning: {problem}", file=sys.stderr, flush=True)
            if error := units_flag_error(dev, args.port):
                raise UsageError(error)
            if guide is not None and dev.simulator is not None:  # (a binary simulator performs the cues it gets)
                command = getattr(args, "command", "record")
                raise UsageError(f"--port {args.port}: `edgessl simulate --mode csv` cannot be cued (text lines have no "
                                 f"way back): its takes would be its random movements under your labels; rehearse "
                                 f"{'record --label' if command == 'record' else command} with `edgessl simulate "
                                 "--perform cue` (binary mode); on your own text board, you perform on the prompt")  # fmt: skip
            t_end: float | None = None
            t_start = last_status = last_flush = time.monotonic()
            meter = RateMeter()  # the status line's rate, as run's and monitor's
            while True:
                now = time.monotonic()
                if stop.signal is not None:
                    stats["stopped_by"] = stop.signal
                    break
                if t_end is not None and now >= t_end:
                    break
                if guide is not None and stream is not None and guide.done(stream.writer):
                    stats["stopped_by"] = "no_takes" if guide.gave_up else "stop" if guide.stop_asked else "done"
                    break
                try:
                    items = dev.read(0.05)
                except DeviceChanged as changed:
                    _follow(changed, dev, stream, rate)
                    if d.json:
                        d.emit({"device_changed": {"old": str(changed.old), "new": str(changed.new),
                                                   "action": "followed"}})  # fmt: skip
                    else:
                        d.line(f"# the same device announced itself again ({changed.new}); recording goes on")
                    continue
                finally:
                    states.drain()
                for ev in items:
                    if isinstance(ev, Gap):
                        if stream is not None:  # before the first sample there is nothing to be missing from
                            stream.gap(ev)
                        if d.json:
                            d.emit({"gap": _gap_json(ev)})
                        elif ev.timeline_reset or ev.seconds >= 0.5:
                            d.line(f"# gap of {ev.seconds:.2f} s ({ev.reason}"
                                   f"{', new timeline' if ev.timeline_reset else ''}); recorded in the session")  # fmt: skip
                        continue
                    assert isinstance(ev, SampleBlock)
                    if stream is None:
                        rate = _rate(dev, ev.t_device, args.port)
                        writer = open_writer(dev, rate)
                        stream = SessionStream(writer, dev.channel_names, dev.unit_names, rate, params)
                        units = UnitWatch(dev.channel_names, [unit_from_channel(n) if u == "unknown" else u  # as the loaders
                                                              for n, u in zip(dev.channel_names, dev.unit_names, strict=True)],
                                          samples=max(50, int(2 * rate)))  # fmt: skip
                        if feed is not None:
                            feed.stream(dev)
                        t_start = time.monotonic()
                        t_end = None if args.seconds is None else t_start + args.seconds
                    takes = stream.feed(ev.t_device, ev.values)
                    meter.add(ev.t_host, len(ev.values))
                    problem = units.add(ev.values)
                    if problem:  # within 2 s: a session in mg or m/s² would be refused by pretrain and finetune
                        problem = stats["units"] = with_units_flag(problem, declared=dev.declared) if dev.mode == "text" else problem
                        d.end()
                        print(f"edgessl record: warning: --port {args.port}: {problem} (this recording goes on "
                              "with the values as they come: the data commands refuse it unless its unit is declared)",
                              file=sys.stderr, flush=True)  # fmt: skip
                    if feed is not None:
                        feed.samples(ev.t_device, ev.values, ev.t_host)
                    if guide is not None:
                        guide.offer(takes)
                    else:  # a free session: the movements pretraining will learn from
                        stats["movements"] = stats.get("movements", 0) + len(takes)
                if stream is None:
                    continue
                if guide is not None:
                    guide.step(stream, dev)
                if feed is not None:  # current for /state and a page opened later (a small dict)
                    if guide is not None:
                        prompt = guide.prompt(stream.writer)
                        if prompt != shown:
                            shown = prompt
                            feed.dash.prompt(prompt)
                    feed.tick(dev, **_page_extra(stream, guide))
                now = time.monotonic()
                if now - last_flush >= SAVE_EVERY_S:  # the sidecar's counters and samples, now and then
                    last_flush = now
                    stream.writer.set_counters(dev.counters())
                    stream.writer.flush()
                if problem := dev.new_rate_problem(now):  # the session records the given rate: all timed wrong
                    stats["rate"] = problem
                    d.end()
                    print(f"edgessl {getattr(args, 'command', 'record')}: warning: --port {args.port}: {problem} "
                          "(the session records the rate given)", file=sys.stderr, flush=True)  # fmt: skip
                if guide is None and now - last_status >= (0.5 if d.tty else 1.0 if d.json else 2.0):
                    last_status = now
                    _status(d, stream, dev, now - t_start, meter.rate_hz(now))
        except _Stopped as sig:
            stats["stopped_by"] = str(sig)
        finally:
            if feed is not None and stream is not None:
                if guide is not None:
                    feed.dash.prompt({"state": "done"} if guide.done(stream.writer) and not guide.stop_asked
                                     else guide.prompt(stream.writer))  # fmt: skip
                feed.final(dev, **_page_extra(stream, guide))  # the last take and counters, then "stopped"
            dev.close()
            if stream is not None:
                stream.writer.set_counters(dev.counters())
                if args.rate is None and dev.info is None:  # a text board's rate: the first second's estimate
                    measured = dev.arrival_rate(longest=True)  # varies by 1-2 %, the data commands allow 1 %
                    if measured is not None:  # (a simulator at --speed k: its lines come k times faster)
                        stream.writer.set_rate(measured / dev.playback_speed)
                stream.writer.close()
    return stats, stream, dev


def _page_extra(stream: SessionStream, guide: Guide | None) -> dict[str, Any]:
    """What the live page shows of a capture: the file, and with prompts the counts and the latest kept takes."""
    extra: dict[str, Any] = {"output": str(stream.writer.path_csv)}
    if guide is not None:
        kept = stream.writer.meta["segments"][-10:]  # the latest kept takes, as the terminal says
        wanted = set(guide.wanted.values())  # the page shows one number beside each count, or one per label
        extra.update(counts=guide.counts(stream.writer), wanted=wanted.pop() if len(wanted) == 1 else guide.wanted,
                     takes=[{"label": r["label"], "take": r["take"], "flags": r["flags"],
                             "duration_s": round((r["end_ms"] - r["start_ms"]) / 1000.0, 2)}
                            for r in kept])  # fmt: skip
    return extra


def _announce(d: Display, writer: SessionWriter, dev: ImuStream, port: str, rate: float, labels: list[str],
              count: int) -> None:  # fmt: skip
    if d.json:
        d.emit({"session": {"session": writer.session, "csv": str(writer.path_csv), "sidecar": str(writer.path_json),
                            "device": _device_info(dev, port), "rate_hz": rate,
                            "channels": dev.channel_names}})  # fmt: skip
        return
    what = f"{', '.join(labels)} × {count} each, in turn" if labels else "unlabelled; Ctrl-C or --seconds stops"
    ident = dev.identity
    rate_text = (f" at {rate:.4g} Hz as far as its lines tell (measured over the session; --rate sets it)"
                 if ident is None or ident.rate_hz is None else "")  # fmt: skip
    d.line(f"# recording {writer.path_csv} ({what}) from {dev.identity}{rate_text}")
    if dev.info is None and all(u == "unknown" for u in dev.unit_names):  # as the data commands will read them
        names = ",".join(dev.channel_names)
        d.line(f"# the board's values are {names} in unknown units: if they are an accelerometer in g, give "
               "--channels acc_x,acc_y,acc_z (or have the board print that header line first; in m/s², as Edge "
               "Impulse's data forwarder prints them, add --units acc=m/s2); a model then knows "
               "their units (unit checks, ttt adaptation) and runs on boards that name them so")  # fmt: skip


def _status(d: Display, stream: SessionStream, dev: ImuStream, elapsed: float, rate: float) -> None:
    """``rate``: samples per second of host time over the last 2 s (a text board's first readings, held for
    its rate estimate, arrive at once: the session's average read 139 Hz at 1.5 s on a 100 Hz board)."""
    c = dev.counters()
    if d.json:
        d.emit({"status": {"seconds": round(elapsed, 2), "rate_hz": round(rate, 2), "samples": stream.samples,
                           "gaps": sum(c["gaps"].values()), "dropped": c["dropped_samples"],
                           "rejected": sum(c["rejected_samples"].values()), "state": dev.state}})  # fmt: skip
        return
    state = "recording" if dev.state == "streaming" else dev.state
    nominal = f" (device {dev.sample_rate:g})" if dev.sample_rate else ""  # samples per host second, as monitor
    d.status(f"  {state:9s} {elapsed:7.1f} s  {rate:6.1f} Hz{nominal}  {stream.samples} samples  {counters_text(c)}")


def _summary(d: Display, stats: dict[str, Any], stream: SessionStream | None, dev: ImuStream, guide: Guide | None,
             count: int) -> None:  # fmt: skip
    c = dev.counters()
    if stream is not None:
        stats.update(session=str(stream.writer.path_csv), sidecar=str(stream.writer.path_json), samples=stream.samples)
    if guide is not None and stream is not None:
        stats.update(counts=guide.counts(stream.writer), wanted=count, misses=guide.misses, cues=guide.cues)
    elif stream is not None:  # a free session: the movements pretraining will not learn from, counted
        stats.update(movements_too_short=stream.segmenter.too_short, movements_too_long=stream.segmenter.too_long)
    stats["device"] = c
    if d.json:
        d.emit({"stats": stats})
        return
    if stream is None:
        d.line(f"# stopped ({stats['stopped_by']}) before the first sample: nothing recorded")
        return
    counts = ""
    if guide is not None:
        counts = "; " + ", ".join(f"{lb} {n}/{count}" for lb, n in stats["counts"].items())
        counts += f", {guide.misses} missed" if guide.misses else ""
        flagged = sum(stream.writer.counts(flagged=True).values())
        counts += f", {flagged} more flagged 'gap' (not used for training)" if flagged else ""
        if any(n < count for n in stats["counts"].values()):  # stopped early: what is there is in the data set
            w = stream.writer
            what = ("with these takes" if any(stats["counts"].values()) else
                    "without a take (its samples would serve pretraining only)")  # fmt: skip
            counts += (f" (the session stays in the data set {what}; to leave it out, delete "
                       f"{w.path_csv.name} and {w.path_json.name})")  # fmt: skip
    else:
        n = stats.get("movements", 0)
        seg = stream.segmenter
        unused = f" ({seg.too_short + seg.too_long} more not used: {seg.unused_text()})" if seg.unused_text() else ""
        # (a folder with labelled takes pretrains on the movements the cut finds; one without any, on windows
        # sliding over everything: so "nothing" is said for the first case only)
        why = "" if unused else " (nothing moved above the segmenter's threshold)"
        nothing = "" if n else f"{why}: beside labelled takes, this session gives pretraining nothing"
        counts = f"; {n} movement(s) found{unused}{nothing}"
    d.line(f"# stopped ({stats['stopped_by']}): {stream.samples} samples in {stream.writer.path_csv}{counts}; "
           f"dropped {c['dropped_samples']}, rejected {sum(c['rejected_samples'].values())}, "
           f"gaps {gaps_text(c['gaps'])}{refused_frames_text(c)}")  # fmt: skip
    if "units" in stats:  # said mid-stream on stderr; the reason this session will be refused, where it is read
        d.line(f"# wrong units, the data commands will refuse this session: {stats['units']}")
    if "rate" in stats:
        d.line(f"# wrong --rate, this session stores it: {stats['rate']}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record sessions from a serial IMU into a data set folder (no model needed)",
                       description="Free recording (no --label): one unlabelled session, for pretraining. Guided "
                                   "capture (--label): prompts each performance, cuts it with the runtime's "
                                   f"segmenter, keeps per-class counts; it stops (exit 5) after {MISSES_IN_A_ROW} prompts in a row "
                                   "without a take; when the default cut splits a person's gestures into pieces (slow or "
                                   "small gestures) it switches to the gentle cut and says so. The whole stream is saved "
                                   "either way.")  # fmt: skip
    p.add_argument("--port", required=True, help="serial port or URL (a path, /dev/ttyACM0, the simulator's path)")
    p.add_argument("--out", required=True,
                   help="data set folder to add the session to (created if needed; nothing in it is replaced)")  # fmt: skip
    p.add_argument("--user", default="me", help="who performs (a name; data sets split by user)")
    p.add_argument("--label", default=None,
                   help="guided capture of these classes, comma-separated (e.g. circle,left); they take turns "
                        "(default: none, a free unlabelled recording)")  # fmt: skip
    p.add_argument("--count", type=int, default=None, help="performances of each --label class (default: 10)")
    p.add_argument("--countdown", type=float, default=2.0, help="seconds between 'get ready' and GO (0: none)")
    p.add_argument("--seconds", type=float, default=None,
                   help="stop after this many seconds of recording (default: Ctrl-C, or all --count takes done)")  # fmt: skip
    p.add_argument("--wait", type=_wait_seconds, default="30",
                   help="seconds to wait for a port that is not there yet or that another program holds, or "
                        "'forever' (default 30); 0 fails at once. Unplugs are always waited out")  # fmt: skip
    p.add_argument("--mode", choices=["auto", "binary", "text"], default="auto",
                   help="the device's protocol (auto: binary if it answers IDENTIFY, else text lines)")  # fmt: skip
    add_text_board_flags(p)
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout: session, prompts, takes, misses, gaps, status, final stats")  # fmt: skip
    add_serve_flag(p, "the stream, the prompts and the counts")
    p.set_defaults(func=record)
