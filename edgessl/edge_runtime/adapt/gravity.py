"""Gravity calibration of the accelerometer axes from the stream's still moments (numpy only).

At rest an accelerometer measures gravity alone: the means of still windows lie on a 1 g sphere, or on an
ellipsoid when the axes' gains and offsets drift (a new board, temperature, a replaced sensor). The bundle
records the same fit of the training data (:func:`edgessl.preprocess.fit_gravity` on its still windows), so
the stream is mapped to the sensor the model was trained on, not to an ideal one. This needs no labels and
no model: what the person does never moves the fit, only how the sensor reads gravity does (the classic
auto-calibration of activity monitors, van Hees et al. 2014). A mounting rotation keeps gravity's norm and
is left to the search of :mod:`.ttt`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from edgessl.preprocess import fit_gravity, is_still


class GravityCalibration:
    """Per-axis gain and offset ``x -> gain ⊙ x + bias`` fitted on the still windows of the stream.

    Args:
        ref_gain, ref_bias: the training data's calibration (from the bundle).
        ref_residual: RMS (g) of the training still means around their fit: how round gravity is there.
        memory: still-window means kept (the oldest are forgotten, so a remounted sensor is followed).
        every: refit after this many new still windows (or a quarter of ``memory`` once that many are kept);
            min_windows: none before this many.
        margin: the stream must miss the training sphere by more than ``margin`` × ``ref_residual`` (and
            ``floor`` g) before a calibration is applied; a fit must halve that miss.
        gain_range, max_bias: a fit outside these is not a sensor error and is not applied.
    """

    def __init__(self, ref_gain: np.ndarray, ref_bias: np.ndarray, ref_residual: float, memory: int = 512,
                 every: int = 32, min_windows: int = 32, margin: float = 2.0, floor: float = 0.01,
                 gain_range: tuple[float, float] = (0.7, 1.4), max_bias: float = 0.3) -> None:  # fmt: skip
        self.ref_gain, self.ref_bias = np.asarray(ref_gain, np.float64), np.asarray(ref_bias, np.float64)
        self.threshold = max(margin * float(ref_residual), floor)
        self.every, self.min_windows, self.gain_range, self.max_bias = every, min_windows, gain_range, max_bias
        self.means: deque[np.ndarray] = deque(maxlen=memory)
        self.reset()

    def reset(self) -> None:
        self.means.clear()
        self.gain, self.bias, self.active = np.ones(3), np.zeros(3), False
        self.miss = 0.0  # RMS miss (g) of the raw stream's still means at the last fit
        self._new = 0
        self._fit: tuple[np.ndarray, np.ndarray] | None = None

    def observe(self, window: np.ndarray) -> bool:
        """Take ``window [3, T]`` (raw accelerometer axes, g) if it is still; True when the calibration changed."""
        x = np.asarray(window, np.float64)
        return self.observe_mean(x.mean(-1), bool(is_still(x)))

    def observe_mean(self, mean: np.ndarray, still: bool) -> bool:
        """:meth:`observe` from a window's per-axis ``mean [3]`` and whether it is still (a caller that has them)."""
        if not still:
            return False
        self.means.append(np.asarray(mean, np.float64))
        self._new += 1
        # refit once a quarter of the kept means is new (every ``every`` while few are kept): a full memory
        # of means changes slowly, and a fit is the per-window path's most costly step on a still stream
        if self._new < max(self.every, len(self.means) // 4) or len(self.means) < self.min_windows:
            return False
        self._new = 0
        return self.refit()

    def refit(self) -> bool:
        """Fit the kept still means again; True when the applied calibration changed."""
        gain, bias, before, after = fit_gravity(np.stack(self.means), self.ref_gain, self.ref_bias, start=self._fit)
        self._fit, self.miss = (gain, bias), before  # the next refit starts from this one (most means are the same)
        lo, hi = self.gain_range
        ok = (before > self.threshold and after <= 0.5 * before and lo <= gain.min() and gain.max() <= hi
              and np.abs(bias).max() <= self.max_bias)  # fmt: skip
        if not ok:
            gain, bias = np.ones(3), np.zeros(3)
        changed = ok != self.active or not (np.allclose(gain, self.gain) and np.allclose(bias, self.bias))
        self.gain, self.bias, self.active = gain, bias, bool(ok)  # (a numpy bool is not JSON: run --json's stats)
        return changed

    def state(self) -> dict[str, np.ndarray]:
        return {"gain": self.gain, "bias": self.bias, "active": np.array(self.active)}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.gain, self.bias = st["gain"].astype(np.float64), st["bias"].astype(np.float64)
        self.active = bool(st["active"])
