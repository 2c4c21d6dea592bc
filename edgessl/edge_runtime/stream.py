"""From a live stream to model inputs (numpy only): resampling to the model's rate, a ring buffer, and
the two input modes a bundle can ask for.

* ``sliding``: fixed windows every ``stride`` samples (models trained on fixed-duration windows).
* ``segment``: gestures cut by motion energy and each stretched to the model's window — what the uWave
  recording button (and the UCR archive's interpolation) did. Energy is the moving standard deviation of
  the acceleration over a short window (zero at rest in any orientation); a gesture starts when it rises
  above a threshold and ends after it stays below for a hangover time.

Gaps reported by the bridge (or seen as timestamp jumps) reset the buffers, so no window spans one,
unless the gap is short enough to fill by interpolation, in which case the window is flagged.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque

import numpy as np

from edgessl.preprocess import resample_times, resample_to_length
from edgessl.segmenter import MotionSegmenter, SegmentParams

__all__ = ["ModelInput", "RingBuffer", "SegmentParams", "StreamWindower"]


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """One window for the model: ``x [C, T]`` at the model's length, and the stream times it covers."""

    x: np.ndarray
    t_start: float
    t_end: float
    filled_gap: bool = False


class RingBuffer:
    """Fixed-capacity buffer of ``[C]`` samples with their times; the newest ``capacity`` are kept."""

    def __init__(self, channels: int, capacity: int):
        self.x = np.zeros((channels, capacity), np.float32)
        self.t = np.zeros(capacity, np.float64)
        self.capacity = capacity
        self.n = 0  # samples ever written since the last reset

    def reset(self) -> None:
        self.n = 0

    def push(self, x: np.ndarray, t: np.ndarray) -> None:
        """``x [C, k]``, ``t [k]``."""
        k = x.shape[1]
        if k >= self.capacity:
            x, t = x[:, -self.capacity :], t[-self.capacity :]
            self.n += k - self.capacity
            k = self.capacity
        i = self.n % self.capacity
        first = min(k, self.capacity - i)
        self.x[:, i : i + first] = x[:, :first]
        self.t[i : i + first] = t[:first]
        if first < k:
            self.x[:, : k - first] = x[:, first:]
            self.t[: k - first] = t[first:]
        self.n += k

    def last(self, k: int, end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` samples ending at absolute index ``end`` (default: the newest)."""
        end = self.n if end is None else end
        if k > self.capacity or end - k < max(0, self.n - self.capacity) or end > self.n:
            raise IndexError("requested samples are no longer (or not yet) in the ring buffer")
        idx = np.arange(end - k, end) % self.capacity
        return self.x[:, idx], self.t[idx]


STEPS_KEPT = 64  # the device's latest sample steps a hole is measured against


class StreamWindower:
    """Turns ``(samples, timestamps)`` at the device rate into :class:`ModelInput` at the model's rate."""

    def __init__(self, channels: int, rate_hz: float, window: int, stride: int, mode: str,
                 segment: SegmentParams | None = None, max_fill_s: float = 0.05,
                 motion: list[int] | None = None):  # fmt: skip
        if mode not in ("sliding", "segment"):
            raise ValueError(f"input mode must be 'sliding' or 'segment'; got {mode!r}")
        self.C, self.rate, self.window, self.stride, self.mode = channels, rate_hz, window, stride, mode
        self.seg = segment or SegmentParams()
        self.max_fill_s = max_fill_s
        cap = max(window, int(self.seg.max_duration_s * rate_hz) + int(1.0 * rate_hz)) * 2
        self.buf = RingBuffer(channels, cap)
        self._next_grid: float | None = None  # next model-rate time to produce
        self._last_raw: tuple[np.ndarray, float] | None = None
        self._next_window_end = window
        self._filled_until = -np.inf
        # the cut's energy on ``motion`` (the accelerometer beside a gyroscope: segmenter.motion_rows); None: all
        self.segmenter = MotionSegmenter(channels, rate_hz, self.seg, lookback=cap, settle=True, rows=motion)
        self.idle = True
        # holes found in the timestamps pushed: bridged ("filled") or too long ("reset": the windows restart)
        self.time_gaps: Counter[str] = Counter(filled=0, reset=0)
        # the device's own sample steps (the latest ones): a board slower than the model (50 Hz into a 100 Hz
        # bundle) is interpolated onto the model's grid, and its every step is not a hole
        self._steps: deque[float] = deque(maxlen=STEPS_KEPT)

    def reset(self) -> None:
        self.buf.reset()
        self._next_grid = None
        self._last_raw = None
        self._next_window_end = self.window
        self.segmenter.reset()

    def push(self, samples: np.ndarray, t: np.ndarray) -> list[ModelInput]:
        """``samples [n, C]`` in the bundle's units, ``t [n]`` seconds (device time). Returns ready inputs."""
        samples = np.asarray(samples, np.float32)
        t = np.asarray(t, np.float64)
        if samples.ndim != 2 or samples.shape[1] != self.C:
            raise ValueError(f"expected samples of shape [n, {self.C}]; got {samples.shape}")
        if len(t) != len(samples):
            raise ValueError(f"{len(samples)} samples but {len(t)} timestamps")
        if not np.all(np.isfinite(samples)):
            raise ValueError("samples contain NaN or inf; the bridge must not pass invalid readings")
        if len(t) == 0:
            return []
        chunk = self.buf.capacity // 4
        if len(t) > chunk:
            # a long block in pieces the ring buffer holds: a gesture early in it must still be in the buffer
            # when its segment ends (feeding a whole recording at once lost most of them before)
            return [m for i in range(0, len(t), chunk) for m in self.push(samples[i : i + chunk], t[i : i + chunk])]
        prev = [self._last_raw[1]] if self._last_raw is not None else []
        dt = np.diff(np.concatenate([prev, t]))
        period = self._device_period(dt)
        big = np.flatnonzero((dt <= 0) | (dt > 1.5 * period + self.max_fill_s))
        if len(big):
            # a real gap (or time going backwards): finish the part before it, then start afresh
            cut = int(big[0]) + 1 - len(prev)  # index into t of the first sample after the gap
            out = self.push(samples[:cut], t[:cut]) if cut > 0 else []
            self.time_gaps["reset"] += int(dt[big[0]] > 0)  # a jump forward (backwards: the caller's new timeline)
            self.reset()
            return out + self.push(samples[cut:], t[cut:])
        small = np.flatnonzero(dt > 1.5 * period)
        self.time_gaps["filled"] += len(small)
        if len(small):
            self._filled_until = float(t[int(small[-1]) + 1 - len(prev)])  # windows covering this time are flagged
        # include the previous raw sample so interpolation spans call boundaries
        if self._last_raw is not None:
            xs = np.concatenate([self._last_raw[0][:, None], samples.T], axis=1)
            ts = np.concatenate([[self._last_raw[1]], t])
        else:
            xs, ts = samples.T, t
            self._next_grid = t[0]
        self._last_raw = (samples[-1].copy(), float(t[-1]))
        assert self._next_grid is not None
        k = int(np.floor((ts[-1] - self._next_grid) * self.rate + 1e-9)) + 1
        if k <= 0:
            return []
        grid = self._next_grid + np.arange(k) / self.rate
        self._next_grid = grid[-1] + 1 / self.rate
        x = resample_times(xs, ts, grid)
        self.buf.push(x, grid)
        return self._sliding() if self.mode == "sliding" else self._segment(x)

    def _device_period(self, dt: np.ndarray) -> float:
        """The sample step a hole is measured against: the model's, or the device's when it is slower.

        The device's is the lower quartile of its latest steps (``dt`` included): holes only lengthen steps, so
        a few of them do not move it; timestamps that arrive in bursts (steps near 0) leave the model's step.
        """
        self._steps.extend(dt[(dt > 0) & (dt < 1.0)][-STEPS_KEPT:].tolist())
        own = float(np.quantile(np.fromiter(self._steps, float), 0.25)) if self._steps else 0.0
        return max(1.0 / self.rate, own)

    def _sliding(self) -> list[ModelInput]:
        out = []
        while self.buf.n >= self._next_window_end:
            x, t = self.buf.last(self.window, self._next_window_end)
            out.append(ModelInput(x.copy(), float(t[0]), float(t[-1]), bool(t[0] <= self._filled_until <= t[-1])))
            self._next_window_end += self.stride
        self.idle = False
        return out

    def _segment(self, x: np.ndarray) -> list[ModelInput]:
        out = []
        for start, end in self.segmenter.push(x):
            seg, ts = self.buf.last(end - start, end)
            out.append(ModelInput(resample_to_length(seg, self.window), float(ts[0]), float(ts[-1]),
                                  bool(ts[0] <= self._filled_until <= ts[-1])))  # fmt: skip
        self.idle = not (self.segmenter.active or self.segmenter.resting)
        return out
