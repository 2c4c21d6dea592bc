"""The one numpy implementation of signal preprocessing, shared by the trainer and the runtime.

Every function takes arrays whose last axis is time and whose second-to-last axis is channels:
``[..., channels, time]``. Nothing here imports torch; ``scipy.signal`` is imported lazily, only by
:func:`resample`, because importing it costs tens of MB of memory on a small device.

A :class:`PreprocessSpec` is a JSON-serialisable list of steps; the exporter writes it into the bundle
manifest and the runtime calls :func:`apply` with it, so both sides run exactly this code.

The statistics that both sides compute live here too, for the same reason: :func:`softmax`, and the
moments of a raw 3-axis signal (:func:`signal_moments`, :class:`MomentAccumulator`,
:func:`moment_mismatch`) that the trainer records in the bundle and the runtime's input-side adaptation
matches a stream to, and the gravity calibration of still windows (:func:`still_means`, :func:`fit_gravity`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from edgessl.errors import DataError

__all__ = [
    "MOMENT_LAGS",
    "MomentAccumulator",
    "PreprocessSpec",
    "Step",
    "apply",
    "clip_outliers",
    "counts_to_units",
    "fill_missing",
    "fit_gravity",
    "is_still",
    "minmax_scale",
    "moment_mismatch",
    "moving_average",
    "resample",
    "resample_times",
    "resample_to_length",
    "roughness",
    "signal_moments",
    "softmax",
    "standardize",
    "still_means",
]


class PreprocessError(DataError, ValueError):
    """Raised for invalid preprocessing parameters or inputs."""


def _check_time_major(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2:
        raise PreprocessError(f"{name} must have shape [..., channels, time]; got shape {x.shape}")
    return x


def standardize(x: np.ndarray, eps: float = 1e-8, ddof: int = 0, per_channel: bool = True) -> np.ndarray:
    """Per-window z-normalisation: each channel loses its mean; each channel (or the window) its scale.

    Args:
        x: ``[..., C, T]`` signal.
        eps: floor on the standard deviation, so a constant channel maps to zeros instead of NaN.
        ddof: 0 for the population std; 1 reproduces the UCR archive's normalisation.
        per_channel: True divides each channel by its own std (the UCR archive's normalisation); False
            divides every channel of a window by one scale, the root mean square of the channels' stds,
            so the ratios between axes (the direction of a movement) survive. Means are per channel
            either way: gravity leaves a window.

    Returns:
        Array of the same shape with zero mean per channel and unit std along time per channel (or unit
        mean variance over the channels), float32 for float32 input.
    """
    x = _check_time_major(x)
    n = x.shape[-1]
    if n - ddof < 1:
        raise PreprocessError(f"standardize needs more than ddof={ddof} samples per channel; got {n}")
    # one pass fewer than x.std(): this runs on every live window
    d = x - x.mean(axis=-1, keepdims=True)
    var = np.einsum("...t,...t->...", d, d)[..., None] / (n - ddof)
    std = np.sqrt(var if per_channel else var.mean(axis=-2, keepdims=True))
    return (d / np.maximum(std, eps)).astype(np.result_type(x.dtype, np.float32), copy=False)


def minmax_scale(x: np.ndarray, low: float = 0.0, high: float = 1.0, eps: float = 1e-8) -> np.ndarray:
    """Per-window, per-channel min-max scaling of ``x [..., C, T]`` into ``[low, high]``."""
    if not high > low:
        raise PreprocessError(f"minmax_scale needs high > low; got low={low}, high={high}")
    x = _check_time_major(x)
    lo = x.min(axis=-1, keepdims=True)
    span = np.maximum(x.max(axis=-1, keepdims=True) - lo, eps)
    return (low + (x - lo) / span * (high - low)).astype(np.result_type(x.dtype, np.float32), copy=False)


def clip_outliers(x: np.ndarray, z: float = 4.0) -> np.ndarray:
    """Clip each channel of each window to ``mean ± z·std`` (z-score outlier clipping)."""
    if not z > 0:
        raise PreprocessError(f"clip_outliers needs z > 0; got {z}")
    x = _check_time_major(x)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return np.clip(x, mean - z * std, mean + z * std)


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along time with edge replication; output has the input's length.

    Args:
        x: ``[..., C, T]`` signal.
        width: odd window width in samples (1 returns a copy).
    """
    if width < 1 or width % 2 == 0:
        raise PreprocessError(f"moving_average width must be a positive odd integer; got {width}")
    x = _check_time_major(x)
    if width == 1:
        return x.copy()
    half = width // 2
    pad = [(0, 0)] * (x.ndim - 1) + [(half, half)]
    xp = np.pad(x.astype(np.float64), pad, mode="edge")
    c = np.cumsum(xp, axis=-1)
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    out = (c[..., width:] - c[..., :-width]) / width
    return out.astype(np.result_type(x.dtype, np.float32), copy=False)


def rational_ratio(rate_in: float, rate_out: float, max_denominator: int = 1000) -> tuple[int, int]:
    """Return ``(up, down)`` with ``up/down ≈ rate_out/rate_in`` for polyphase resampling."""
    if not (rate_in > 0 and rate_out > 0):
        raise PreprocessError(f"sample rates must be positive; got {rate_in} -> {rate_out}")
    frac = Fraction(rate_out / rate_in).limit_denominator(max_denominator)
    return frac.numerator, frac.denominator


def resample(x: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """Polyphase resampling along time from ``rate_in`` to ``rate_out`` Hz (anti-aliased).

    Output length is ``ceil(T · up / down)`` where ``up/down`` is the rational approximation of the
    rate ratio (see :func:`rational_ratio`).
    """
    x = _check_time_major(x)
    up, down = rational_ratio(rate_in, rate_out)
    if up == down:
        return x.copy()
    from scipy.signal import resample_poly  # lazy: keep scipy.signal off small devices' import path

    return resample_poly(x, up, down, axis=-1, padtype="line").astype(
        np.result_type(x.dtype, np.float32), copy=False
    )


def resample_to_length(x: np.ndarray, length: int) -> np.ndarray:
    """Stretch or shrink ``x [..., C, T]`` to ``length`` samples by linear interpolation.

    This is what the UCR archive did to every uWave gesture (endpoints map to endpoints).
    """
    if length < 2:
        raise PreprocessError(f"resample_to_length needs length >= 2; got {length}")
    x = _check_time_major(x)
    t = x.shape[-1]
    if t == length:
        return x.copy()
    if t == 1:
        return np.repeat(x, length, axis=-1)
    pos = np.linspace(0.0, t - 1, length)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, t - 2)
    frac = (pos - i0).astype(np.float64)
    out = x[..., i0] * (1.0 - frac) + x[..., i0 + 1] * frac
    return out.astype(np.result_type(x.dtype, np.float32), copy=False)


def resample_times(x: np.ndarray, t_in: np.ndarray, t_out: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``x [C, N]`` sampled at times ``t_in [N]`` onto ``t_out [M]`` -> ``[C, M]``.

    The streaming resampler of the runtime (device rate -> model rate, irregular timestamps): numpy only,
    cheap per call, no filter state. For offline data prefer the anti-aliased :func:`resample`.
    """
    x = _check_time_major(x)
    return np.stack([np.interp(t_out, t_in, ch) for ch in x]).astype(np.float32)


def counts_to_units(counts: np.ndarray, counts_per_unit: float | Sequence[float], bias: float | Sequence[float] = 0.0) -> np.ndarray:
    """Convert raw integer sensor counts ``[..., C, T]`` to physical units (g, rad/s).

    ``value = counts / counts_per_unit - bias``; both may be scalars or per-channel sequences.
    """
    counts = _check_time_major(counts)
    scale = np.asarray(counts_per_unit, dtype=np.float64)
    if np.any(scale == 0):
        raise PreprocessError("counts_per_unit must be non-zero")
    if scale.ndim == 1:
        if scale.shape[0] != counts.shape[-2]:
            raise PreprocessError(
                f"counts_per_unit has {scale.shape[0]} entries but the signal has {counts.shape[-2]} channels"
            )
        scale = scale[:, None]
    b = np.asarray(bias, dtype=np.float64)
    if b.ndim == 1:
        b = b[:, None]
    return (counts / scale - b).astype(np.float32)


def fill_missing(x: np.ndarray, source: str = "<array>", channel_names: Sequence[str] | None = None) -> np.ndarray:
    """Forward- then backward-fill NaNs along time, per channel of each series.

    Args:
        x: ``[..., C, T]`` float array that may hold NaN.
        source: file name used in the error message.
        channel_names: names used in the error message.

    Raises:
        PreprocessError: if some channel of some series is entirely missing (nothing to fill from).
    """
    x = _check_time_major(x).astype(np.float32, copy=True)
    nan = np.isnan(x)
    if not nan.any():
        return x
    all_nan = nan.all(axis=-1)
    if all_nan.any():
        idx = tuple(int(i) for i in np.argwhere(all_nan)[0])
        ch = idx[-1]
        name = channel_names[ch] if channel_names is not None and ch < len(channel_names) else f"#{ch}"
        where = f"series {idx[0]}, " if len(idx) > 1 else ""
        raise PreprocessError(
            f"{source}: {where}channel {name} is entirely missing; cannot fill it from neighbouring samples"
        )
    t = x.shape[-1]
    ar = np.broadcast_to(np.arange(t), x.shape)
    # forward fill: index of the last valid sample at or before each position
    last = np.maximum.accumulate(np.where(nan, -1, ar), axis=-1)
    # backward fill for the leading run: index of the first valid sample at or after each position
    first = np.flip(np.minimum.accumulate(np.flip(np.where(nan, t, ar), axis=-1), axis=-1), axis=-1)
    src = np.where(last >= 0, last, first)
    return np.take_along_axis(x, src, axis=-1)


# ----------------------------------------------------------------------------------------------
# Serializable pipeline: what the bundle manifest names and the runtime applies.

_STEPS: dict[str, Callable[..., np.ndarray]] = {
    "standardize": standardize,
    "minmax_scale": minmax_scale,
    "clip_outliers": clip_outliers,
    "moving_average": moving_average,
    "resample_to_length": resample_to_length,
    "counts_to_units": counts_to_units,
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One preprocessing step: a function name from this module and its keyword arguments."""

    op: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in _STEPS:
            raise PreprocessError(f"unknown preprocessing step {self.op!r}; expected one of {sorted(_STEPS)}")


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """An ordered list of steps, applied to ``[..., C, T]`` windows."""

    steps: tuple[Step, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"module": __name__, "steps": [{"op": s.op, "params": dict(s.params)} for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        if not isinstance(d, dict) or "steps" not in d:
            raise PreprocessError(f"a preprocessing spec must be a dict with 'steps'; got {d!r}")
        return cls(tuple(Step(s["op"], dict(s.get("params", {}))) for s in d["steps"]))


def apply(spec: PreprocessSpec, x: np.ndarray) -> np.ndarray:
    """Run every step of ``spec`` on ``x [..., C, T]``."""
    for step in spec.steps:
        x = _STEPS[step.op](x, **step.params)
    return x


# ----------------------------------------------------------------------------------------------
# Statistics both sides compute: the trainer records them in the bundle, the runtime compares with them.


def softmax(z: np.ndarray) -> np.ndarray:
    """Probabilities from logits ``[..., K]`` along the last axis (shifted by the max, so no overflow)."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def roughness(x: np.ndarray) -> np.ndarray:
    """How rough windows ``[..., C, T]`` are: the mean squared step between consecutive samples over the
    variance, both summed over the channels; ``[...]``, float64.

    White noise scores 2 (its steps are as large as its swings); a movement a hand makes scores little, since
    it changes slowly from sample to sample (uWave gestures stretched to 63 samples: median 0.035, 99.9 % below
    0.6). Pooled over the channels, an axis that barely moves (sensor noise alone) does not count for more than
    its small variance. Invariant to the signal's scale and offset; a constant window scores 0. The runtime's
    noise gate compares it with a threshold the export calibrates (``roughness_threshold``), and the generated C
    computes the same (``essl_stream.c``).
    """
    x = _check_time_major(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)  # raw counts: their differences must not wrap
    T = x.shape[-1]
    if T < 2:
        return np.zeros(x.shape[:-2])
    d = x[..., 1:] - x[..., :-1]
    xc = x - x.mean(-1, keepdims=True)
    # sums of squares over channels and time in one call each (the runtime scores one segment at a time)
    steps = np.einsum("...ct,...ct->...", d, d) / (T - 1)
    var = np.einsum("...ct,...ct->...", xc, xc) / T
    return np.where(var > 1e-20, steps / np.maximum(var, 1e-20), 0.0).astype(np.float64)


MOMENT_LAGS = (2, 4, 8, 16)  # in model-input samples


class MomentAccumulator:
    """Running sufficient statistics of a 3-axis signal seen as windows ``[3, T]``: mean, covariance and
    covariances at the lags :data:`MOMENT_LAGS`, with exponential forgetting (``memory`` windows), so the
    memory is bounded and a remounted sensor is followed."""

    def __init__(self, lags: tuple[int, ...] = MOMENT_LAGS, memory: float | None = None):
        self.lags = tuple(int(t) for t in lags)
        self.decay = 1.0 if memory is None else 1.0 - 1.0 / memory
        L = len(self.lags)
        self.windows = 0.0
        self.n0, self.s1, self.s2 = 0.0, np.zeros(3), np.zeros((3, 3))
        self.nl, self.P, self.a, self.b = np.zeros(L), np.zeros((L, 3, 3)), np.zeros((L, 3)), np.zeros((L, 3))

    def add(self, X: np.ndarray) -> None:
        """``X [3, T]`` or ``[N, 3, T]`` windows (raw units)."""
        X = np.asarray(X, np.float64)
        if X.ndim == 2:
            X = X[None]
        d = self.decay ** len(X)
        for name in ("windows", "n0", "s1", "s2", "nl", "P", "a", "b"):
            setattr(self, name, getattr(self, name) * d)
        N, _, T = X.shape
        self.windows += N
        self.n0 += N * T
        cs = np.cumsum(X.sum(0), axis=-1)  # [3, T]: the windows' sum, accumulated over time
        self.s1 += cs[:, -1]
        self.s2 += np.einsum("nit,njt->ij", X, X)
        for i, t in enumerate(self.lags):
            if t >= T:
                continue
            self.nl[i] += N * (T - t)
            self.P[i] += np.einsum("nit,njt->ij", X[:, :, :-t], X[:, :, t:])
            self.a[i] += cs[:, T - t - 1]  # the sum over the first T − t samples
            self.b[i] += cs[:, -1] - cs[:, t - 1]  # over the last T − t

    def moments(self) -> dict[str, np.ndarray]:
        """``mean [3]``, ``cov [3, 3]``, ``lagcov [L, 3, 3]`` (symmetrised, centred on the overall mean)."""
        if self.n0 <= 0 or not np.all(self.nl > 0):
            raise ValueError("not enough samples for the moments (every lag needs windows longer than it)")
        mu = self.s1 / self.n0
        C = self.s2 / self.n0 - np.outer(mu, mu)
        mm = np.outer(mu, mu)
        Lc = (self.P - np.einsum("li,j->lij", self.a, mu) - np.einsum("i,lj->lij", mu, self.b)
              + self.nl[:, None, None] * mm) / self.nl[:, None, None]  # fmt: skip
        return {"mean": mu, "cov": C, "lagcov": (Lc + Lc.transpose(0, 2, 1)) / 2, "lags": np.array(self.lags)}


def signal_moments(X: np.ndarray, lags: tuple[int, ...] = MOMENT_LAGS) -> dict[str, np.ndarray]:
    """The moments of :class:`MomentAccumulator` over windows ``X [N, 3, T]`` (what the bundle records)."""
    acc = MomentAccumulator(lags)
    acc.add(X)
    return acc.moments()


def moment_mismatch(src: dict[str, np.ndarray], tgt: dict[str, np.ndarray], A: np.ndarray, c: np.ndarray) -> float:
    """How far the moments of ``A x + c`` (x with moments ``tgt``) are from ``src``: relative squared
    differences of the mean, covariance and lagged covariances, summed."""
    mu = A @ tgt["mean"] + c
    C = A @ tgt["cov"] @ A.T
    L = np.einsum("ab,lbc,dc->lad", A, tgt["lagcov"], A)

    def rel(d: np.ndarray, r: np.ndarray) -> float:
        return float((d**2).sum() / max(float((r**2).sum()), 1e-12))

    return rel(mu - src["mean"], src["mean"]) + rel(C - src["cov"], src["cov"]) + rel(L - src["lagcov"], src["lagcov"])


STILL_STD = 0.03  # g: a window whose axes all move less than this is still (gravity alone, plus noise)
# s: a hole in a stream at most this long is bridged by linear interpolation (edgessl run live, the generated C,
# and the loader of recorded sessions, so that a take with a few lost frames trains as it is classified)
MAX_FILL_S = 0.25
# a timestamp at most this many sample periods before the one before it is the jitter of a reader's clock (the
# runtime and the C library take it as at that time), not a clock that restarted (a new timeline)
JITTER_PERIODS = 2.0


def is_still(X: np.ndarray, max_std: float = STILL_STD) -> np.ndarray:
    """For each window of ``X [..., C, T]`` (raw units): True when no channel's std reaches ``max_std``.
    (The runtime's per-window idle test, :func:`edgessl.edge_runtime.adapt.safeguards.is_idle`, is this
    test for one window, written for its hot path.)"""
    return np.asarray(X).std(-1).max(-1) < max_std


def still_means(X: np.ndarray, max_std: float = STILL_STD) -> np.ndarray:
    """Mean of each still window of a raw 3-axis accelerometer signal: ``X [N, 3, T]`` (g) -> ``[M, 3]``.

    At rest an accelerometer measures gravity alone, so the means of still windows lie on a sphere of
    radius 1 g, or on an ellipsoid when the axes have gain and offset errors: what :func:`fit_gravity` fits.
    """
    X = np.asarray(X, np.float64)
    return X.mean(-1)[is_still(X, max_std)]


def _gravity_residuals(M: np.ndarray, gain: np.ndarray, bias: np.ndarray, ref_gain: np.ndarray,
                       ref_bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``‖ref_gain ⊙ (gain ⊙ m + bias) + ref_bias‖ − 1`` for each row of ``M [M, 3]``, and the vectors inside."""
    u = ref_gain * (gain * M + bias) + ref_bias
    return np.linalg.norm(u, axis=1) - 1.0, u


def fit_gravity(M: np.ndarray, ref_gain: np.ndarray | None = None, ref_bias: np.ndarray | None = None,
                ridge: float = 1e-3, iters: int = 30, start: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, float, float]:  # fmt: skip
    """Per-axis gain and offset that put still-window means on the reference's gravity sphere.

    The classic accelerometer auto-calibration (as in van Hees et al. 2014, GGIR): find ``gain, bias [3]``
    such that ``ref_gain ⊙ (gain ⊙ m + bias) + ref_bias`` has norm 1 g for every still mean ``m``, where
    ``ref_gain, ref_bias`` is the same calibration of the training data (so a stream is mapped to the
    training sensor, not to an ideal one; identity when omitted). Orientations the still windows never
    visited leave the fit underdetermined along some axes: the ridge term ``ridge · ‖(gain − 1, bias)‖²``
    keeps those at the identity. Levenberg–Marquardt on the six parameters, numpy only.

    Args:
        M: ``[M, 3]`` still-window means in g (:func:`still_means`).
        start: ``(gain, bias)`` to start the iterations from (an earlier fit of similar means: fewer
            iterations to the same optimum); the identity when omitted.
    Returns:
        ``(gain [3], bias [3], rms_before, rms_after)``: the fit, and the RMS of the residuals (g) of the
        identity and of the fit.
    """
    M = np.asarray(M, np.float64)
    rg = np.ones(3) if ref_gain is None else np.asarray(ref_gain, np.float64)
    rb = np.zeros(3) if ref_bias is None else np.asarray(ref_bias, np.float64)
    p, lam = np.zeros(6), 1e-3
    r, _ = _gravity_residuals(M, 1 + p[:3], p[3:], rg, rb)
    before = float(np.sqrt(np.mean(r**2))) if len(M) else 0.0
    if len(M) == 0:
        return np.ones(3), np.zeros(3), 0.0, 0.0
    if start is not None:
        p = np.concatenate([np.asarray(start[0], np.float64) - 1, np.asarray(start[1], np.float64)])
        r, _ = _gravity_residuals(M, 1 + p[:3], p[3:], rg, rb)

    def cost(r: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean(r**2) + ridge * (p**2).sum())

    c = cost(r, p)
    for _ in range(iters):
        r, u = _gravity_residuals(M, 1 + p[:3], p[3:], rg, rb)
        du = u * rg / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)  # d‖u‖/d(gain ⊙ m + bias)
        J = np.concatenate([du * M, du], axis=1) / np.sqrt(len(M))  # [M, 6]
        g = J.T @ (r / np.sqrt(len(M))) + ridge * p
        H = J.T @ J + ridge * np.eye(6)
        while True:  # Levenberg–Marquardt: shrink the step until the cost goes down
            q = p - np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
            rq, _ = _gravity_residuals(M, 1 + q[:3], q[3:], rg, rb)
            cq = cost(rq, q)
            if cq < c or lam > 1e6 or np.abs(q - p).max() < 1e-7:  # (a step this small: at the optimum)
                break
            lam *= 10
        if cq >= c:
            break
        step = np.abs(q - p).max()
        p, c, lam = q, cq, max(lam / 10, 1e-9)
        if step < 1e-7:
            break
    r, _ = _gravity_residuals(M, 1 + p[:3], p[3:], rg, rb)
    return 1 + p[:3], p[3:], before, float(np.sqrt(np.mean(r**2)))
