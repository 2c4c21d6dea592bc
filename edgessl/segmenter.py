"""The motion-energy gesture segmenter (numpy only), one implementation for every stage.

The runtime cuts live gestures with it (``segment`` input mode), ``edgessl record`` cuts the performances
a user is prompted for, and the data set loaders cut unlabelled sessions for pretraining, so a model is
trained on windows cut the same way as the ones it will be shown.

Energy is the moving standard deviation of the signal over a short trailing window, summed over channels
(zero at rest in any orientation). A gesture starts when it rises above a threshold and ends after it stays
below for a hangover time; both ends are moved back by the trailing window's lags.

Slow or small gestures dip below the threshold inside them: :data:`GENTLE` cuts them whole, for the users who
need it (``edgessl enroll`` chooses it from their takes with :func:`choose_segmentation`).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from edgessl.units import g_channels

__all__ = ["GENTLE", "MotionSegmenter", "SegmentChoice", "SegmentParams", "choose_segmentation", "profile", "segment_signal"]


MAX_PIECES = 256  # too-short movements a segmenter remembers, with their spans (for choose_segmentation)


@dataclasses.dataclass(frozen=True)
class SegmentParams:
    """How ``segment`` mode cuts gestures from a stream (the manifest's ``segmentation``, in seconds and g)."""

    energy_window_s: float = 0.2
    min_duration_s: float = 0.25
    max_duration_s: float = 3.2
    hangover_s: float = 0.15
    threshold_g: float = 0.05
    preroll_s: float = 0.05
    # the energy is a trailing window: it crosses the threshold shortly after a gesture starts and falls back
    # about one energy window after it ends; the segment's ends are moved back by these lags. Chosen on
    # streams of uWave *training* templates so that segments match the button cuts (median offsets
    # -0.09 s at the start, +0.03 s at the end; before: -0.24 s and +0.23 s)
    onset_lag_s: float = 0.05
    release_lag_s: float = 0.2


class MotionSegmenter:
    """Streaming segmenter: :meth:`push` samples at ``rate_hz``, get the finished segments.

    Sample indices are absolute (counted from the last :meth:`reset`). ``lookback`` bounds how far back a
    segment may start (the caller's buffer capacity); ``None`` is unbounded. Movements it does not report are
    counted, never dropped without a trace: :attr:`too_short` (under ``min_duration_s``: a bump, a twitch, a
    flick too quick to be a gesture) and :attr:`too_long` (``max_duration_s`` or longer: shaking, walking,
    a stretch of continuous motion: nothing of it is cut until it rests, so its tail is no gesture either); the
    counts survive :meth:`reset`.

    ``settle`` (a live stream): after :meth:`reset` — the stream's start, or a gap that restarted it — nothing
    starts until the signal has been still for ``hangover_s``; a movement already under way then is the tail
    of a gesture whose start was not seen, counted in :attr:`cut_off` instead of classified as a whole one.
    Recordings cut offline (a template that starts at its button press) keep the default, False.
    """

    def __init__(self, channels: int, rate_hz: float, params: SegmentParams | None = None,
                 lookback: int | None = None, settle: bool = False, rows: list[int] | None = None):  # fmt: skip
        self.rows = rows  # the channels the energy is measured on (motion_rows); None: all
        self.C, self.rate = (channels if rows is None else len(rows)), float(rate_hz)
        self.p = params or SegmentParams()
        self.lookback = lookback
        self.ew = max(2, int(round(self.p.energy_window_s * self.rate)))
        self.too_short = 0
        self.too_long = 0
        self.cut_off = 0
        self.settle = settle
        self.short_pieces: collections.deque[tuple[int, int]] = collections.deque(maxlen=MAX_PIECES)  # the latest
        self.reset()

    def reset(self) -> None:
        self.n = 0  # samples pushed since the last reset
        self._recent = np.zeros((self.C, 0), np.float64)
        self._active_start: int | None = None
        self._quiet = 0
        self._resting = False  # after a movement too long to be a gesture: nothing starts until it rests
        self._settling = self.settle  # a live stream's start: nothing starts until it has been still
        self._moved = False  # a movement was under way while settling (its start was before the stream's)
        self.energy = 0.0  # of the newest sample
        self.peak_energy = 0.0  # highest energy inside the current (or last finished) segment

    @property
    def active(self) -> bool:
        """True while a gesture is in progress."""
        return self._active_start is not None

    def unused_text(self) -> str:
        """The movements it did not report, in words for a status line ("" when none)."""
        if not self.too_short + self.too_long + self.cut_off:
            return ""
        cut = f", {self.cut_off} under way when the stream started or restarted (not whole)" if self.cut_off else ""
        return (f"{self.too_short} shorter than {self.p.min_duration_s:g} s (bumps, or gestures too gentle to stay "
                f"above {self.p.threshold_g:g} g, cut into pieces), {self.too_long} of {self.p.max_duration_s:g} s or "
                f"longer (shaking, continuous motion){cut}")

    @property
    def resting(self) -> bool:
        """True while a movement too long to be a gesture, or one under way when the stream (re)started, goes on
        (nothing is cut until it rests)."""
        return self._resting or (self._settling and self._moved)

    @property
    def active_start(self) -> int | None:
        """Sample index where the gesture in progress started (None at rest)."""
        return self._active_start

    def energies(self, x: np.ndarray) -> np.ndarray:
        """The energy after each sample of ``x [C, k]`` (continuing the history); does not advance state."""
        return self._energies(x if self.rows is None else x[self.rows])

    def _energies(self, x: np.ndarray) -> np.ndarray:
        h = np.concatenate([self._recent, x.astype(np.float64)], axis=1) if self._recent.size else x.astype(np.float64)
        # moving variance of every new sample's window at once, from cumulative sums (windows are shorter at the start)
        c1 = np.concatenate([np.zeros((h.shape[0], 1)), np.cumsum(h, axis=1)], axis=1)
        c2 = np.concatenate([np.zeros((h.shape[0], 1)), np.cumsum(h * h, axis=1)], axis=1)
        k = np.arange(h.shape[1] - x.shape[1] + 1, h.shape[1] + 1)
        a = np.maximum(0, k - self.ew)
        cnt = (k - a).astype(np.float64)
        mean = (c1[:, k] - c1[:, a]) / cnt
        var = np.maximum((c2[:, k] - c2[:, a]) / cnt - mean * mean, 0.0).sum(axis=0)
        return np.where(cnt >= 2, np.sqrt(var), 0.0)

    def push(self, x: np.ndarray) -> list[tuple[int, int]]:
        """``x [C, k]``; returns ``(start, end)`` (end exclusive) of every segment that finished."""
        p, rate = self.p, self.rate
        if self.rows is not None:
            x = x[self.rows]
        energies = self._energies(x)
        start_n = self.n
        self.n += x.shape[1]
        out = []
        for j in range(x.shape[1]):
            energy = float(energies[j])
            n = start_n + j + 1  # absolute index after this sample
            if self._active_start is None:
                if self._resting or self._settling:  # the rest of a movement too long to be a gesture, or of
                    # one whose start the stream did not see, is no gesture either
                    self._quiet = self._quiet + 1 if energy <= p.threshold_g else 0
                    self._moved = self._moved or (self._settling and self._quiet == 0)
                    if self._quiet >= int(p.hangover_s * rate):
                        self.cut_off += int(self._settling and self._moved)
                        self._resting, self._settling, self._moved, self._quiet = False, False, False, 0
                    continue
                if energy > p.threshold_g:
                    back = int(round(p.onset_lag_s * rate)) + int(p.preroll_s * rate)
                    floor = 0 if self.lookback is None else self.n - self.lookback
                    self._active_start = max(0, n - back, floor)
                    self._quiet = 0
                    self.peak_energy = energy
            else:
                self.peak_energy = max(self.peak_energy, energy)
                self._quiet = self._quiet + 1 if energy <= p.threshold_g else 0
                length = n - self._active_start
                if self._quiet >= int(p.hangover_s * rate) or length >= int(p.max_duration_s * rate):
                    lag = int(round(p.release_lag_s * rate))
                    end = min(n - self._quiet - lag + int(p.preroll_s * rate), self.n) if self._quiet else n
                    if length >= int(p.max_duration_s * rate):
                        self.too_long += 1
                        self._resting = self._quiet < int(p.hangover_s * rate)  # still moving: wait for rest
                    elif end - self._active_start < p.min_duration_s * rate:
                        self.too_short += 1
                        self.short_pieces.append((self._active_start, n - self._quiet))
                    else:
                        out.append((self._active_start, end))
                    self._active_start = None
                    self._quiet = 0
        self.energy = float(energies[-1]) if len(energies) else self.energy
        h = np.concatenate([self._recent, x.astype(np.float64)], axis=1) if self._recent.size else x.astype(np.float64)
        self._recent = h[:, -self.ew :]
        return out


def motion_rows(units: Sequence[str]) -> list[int] | None:
    """The channels a motion cut measures: the accelerometer's (the first three in g) when other channels are in
    other units (a gyroscope in rad/s, or anything unknown, would swamp a threshold in g); None: every channel
    (an accelerometer alone, or channels of one unit)."""
    g = g_channels(units)
    return g if len(g) == 3 and any(u != "g" for u in units) else None


def segment_signal(x: np.ndarray, rate_hz: float, params: SegmentParams | None = None,
                   rows: list[int] | None = None) -> np.ndarray:  # fmt: skip
    """Every segment of a whole recording ``x [C, N]``, as ``[S, 2]`` int64 ``(start, end)`` rows (the energy
    measured on ``rows``: :func:`motion_rows`)."""
    seg = MotionSegmenter(x.shape[0], rate_hz, params, rows=rows)
    cuts = seg.push(np.asarray(x))
    return np.array(cuts, np.int64).reshape(-1, 2)


# The gentle cut, for people whose gestures are slow or small. Acceleration falls with the square of a gesture's
# duration: a slow gesture's motion energy dips below the threshold inside it and the default cut splits it
# into pieces too short to be gestures. A longer energy window (0.4 s) sees slower motion without raising the
# noise floor, and a longer hangover (0.3 s) bridges the dips. Its costs: events come about 0.35 s later, and two
# gestures need 0.8 s of stillness between them or they merge (the default: 0.4 s). Chosen on validation streams
# (synthetic users, seed 0; uWave's UCR train split); benchmarks/segmenter.py measures it on others
# (docs/results.md).
GENTLE = {"energy_window_s": 0.4, "hangover_s": 0.3, "release_lag_s": 0.3}
PROFILES = ("default", "gentle")
# the default cut must split at least this many movements into pieces before the gentle one is chosen
MIN_SPLIT = 2


def profile(params: SegmentParams, name: str | None) -> SegmentParams:
    """``params`` cut the ``name`` way: ``"default"`` (or None) as they are, ``"gentle"`` with :data:`GENTLE`."""
    if name in (None, "default"):
        return params
    if name == "gentle":
        return dataclasses.replace(params, **GENTLE)
    raise ValueError(f"unknown segmentation profile {name!r}; expected one of {', '.join(PROFILES)}")


@dataclasses.dataclass(frozen=True)
class SegmentChoice:
    """Which cut suits a user, from a recording of their gestures (:func:`choose_segmentation`)."""

    profile: str  # "default" or "gentle"
    default_segments: int
    default_fragments: int  # movements the default cut left shorter than min_duration_s
    gentle_segments: int
    split: int  # gentle segments that the default cut split into two or more pieces

    def text(self) -> str:
        return (f"the default cut split {self.split} of your {self.gentle_segments} movement(s) into pieces "
                f"({self.default_fragments} too short to be a gesture)")


def choose_segmentation(x: np.ndarray, rate_hz: float, params: SegmentParams | None = None,
                        rows: list[int] | None = None) -> SegmentChoice:  # fmt: skip
    """The cut that keeps a user's gestures whole, from a recording ``x [C, N]`` of several of them with stillness
    between (an enrollment): ``"gentle"`` when at least :data:`MIN_SPLIT` of the gentle cut's segments are
    split by the default cut into two or more pieces (segments, or movements too short to be one); else
    ``"default"``. A knock is one short piece under either cut: it never counts."""
    params = params or SegmentParams()
    d = MotionSegmenter(x.shape[0], rate_hz, params, rows=rows)
    pieces = [*d.push(np.asarray(x)), *d.short_pieces]
    gentle = segment_signal(x, rate_hz, profile(params, "gentle"), rows)
    split = sum(sum(min(b, e) > max(a, s) for a, b in pieces) >= 2 for s, e in gentle.tolist())
    return SegmentChoice("gentle" if split >= MIN_SPLIT else "default", len(pieces) - d.too_short,
                         d.too_short, len(gentle), split)  # fmt: skip
