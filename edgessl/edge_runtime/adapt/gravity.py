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
        every: refit after this many new still windows; min_windows: none before this many.
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

    def observe(self, window: np.ndarray) -> bool:
        """Take ``window [3, T]`` (raw accelerometer axes, g) if it is still; True when the calibration changed."""
        x = np.asarray(window, np.float64)
        if not is_still(x):
            return False
        self.means.append(x.mean(-1))
        self._new += 1
        if self._new < self.every or len(self.means) < self.min_windows:
            return False
        self._new = 0
        return self.refit()

    def refit(self) -> bool:
        """Fit the kept still means again; True when the applied calibration changed."""
        gain, bias, before, after = fit_gravity(np.stack(self.means), self.ref_gain, self.ref_bias)
        self.miss = before
        lo, hi = self.gain_range
        ok = (before > self.threshold and after <= 0.5 * before and lo <= gain.min() and gain.max() <= hi
              and np.abs(bias).max() <= self.max_bias)  # fmt: skip
        if not ok:
            gain, bias = np.ones(3), np.zeros(3)
        changed = ok != self.active or not (np.allclose(gain, self.gain) and np.allclose(bias, self.bias))
        self.gain, self.bias, self.active = gain, bias, ok
        return changed

    def state(self) -> dict[str, np.ndarray]:
        return {"gain": self.gain, "bias": self.bias, "active": np.array(self.active)}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.gain, self.bias = st["gain"].astype(np.float64), st["bias"].astype(np.float64)
        self.active = bool(st["active"])
