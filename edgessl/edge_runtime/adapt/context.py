"""What the runtime hands an adapter: the bundle's float parameters and the runtime's own settings.

An adapter reads only this (never the runtime's attributes), so a method can be tested, or run by
another host, with a context built by hand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from edgessl.preprocess import PreprocessSpec


@dataclasses.dataclass(frozen=True, eq=False)
class SslHead:
    """The self-supervised transform-prediction head trained jointly at fine-tuning (what TTT adapts through).

    Attributes:
        weight: ``[M, D]``, one row per transform (identity, time flip, sign flip, both).
        bias: ``[M]``.
    """

    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray]) -> SslHead | None:
        """From the bundle's ``adaptation.npz`` arrays; None when the model was fine-tuned without it."""
        if "ssl_head_weight" not in params:
            return None
        return cls(params["ssl_head_weight"], params["ssl_head_bias"])


@dataclasses.dataclass(frozen=True, eq=False)
class InputMoments:
    """Moments of the training split's raw 3-axis accelerometer signal (g), at the model's rate and length.

    Attributes:
        mean: ``[3]``.  cov: ``[3, 3]``.  lagcov: ``[L, 3, 3]`` covariances at ``lags`` samples.
        lags: ``L`` lags in model-input samples.
        natural: how far one training user's (or stretch of recording's) moments lie from the whole
            split's (:func:`edgessl.preprocess.moment_mismatch`); 0 for bundles that do not record it.
        gravity: ``(gain [3], bias [3], residual)``, the gravity calibration of the training split's still
            windows (:func:`edgessl.preprocess.fit_gravity`) and the RMS miss (g) left around it; None when
            the training data had too few still windows (or the bundle predates it).
    """

    mean: np.ndarray
    cov: np.ndarray
    lagcov: np.ndarray
    lags: tuple[int, ...]
    natural: float = 0.0
    gravity: tuple[np.ndarray, np.ndarray, float] | None = None

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray]) -> InputMoments | None:
        """From the bundle's ``adaptation.npz`` arrays; None when the bundle records no input moments."""
        if "input_moments_cov" not in params:
            return None
        natural = float(params["input_moments_natural"]) if "input_moments_natural" in params else 0.0
        gravity = None
        if "input_moments_gravity_gain" in params:
            gravity = (params["input_moments_gravity_gain"].astype(np.float64),
                       params["input_moments_gravity_bias"].astype(np.float64),
                       float(params["input_moments_gravity_residual"]))  # fmt: skip
        return cls(params["input_moments_mean"], params["input_moments_cov"], params["input_moments_lagcov"],
                   tuple(int(t) for t in params["input_moments_lags"]), natural, gravity)  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False)
class AdaptContext:
    """Everything an adapter may use, handed over by the runtime when the adapter is attached.

    Attributes:
        bundle: the bundle's path (for messages).
        checksum: the bundle's identity; saved adaptation state is tagged with it.
        labels: class names, in logit order (``K`` of them).
        units: channel units in input order (``"g"`` for raw accelerometer channels).
        preprocess: the preprocessing the runtime applies after :meth:`Adapter.transform_input`.
        head_weight: ``[K, D]`` float32, the source head.
        head_bias: ``[K]`` float32.
        prototypes: ``[K, D]`` float32, unit-norm class means of the training embeddings.
        embedding_mean: ``[D]`` mean of the training embeddings.
        embedding_std: ``[D]`` their standard deviation.
        ood_threshold: the runtime's out-of-distribution threshold on ``1 − max cos(e, prototype)``;
            None when it has none.
        embed: the runtime's encoder, raw windows ``[N, C, T]`` -> embeddings ``[N, D]`` (through the
            adapter's own input transform).
        ssl_head: the self-supervised head, if the model was fine-tuned with one.
        input_moments: the training signal's moments, if the bundle records them.
        segments: whether each window is one whole gesture (a segment bundle), not a sliding window.
    """

    bundle: str
    checksum: str
    labels: tuple[str, ...]
    units: tuple[str, ...]
    preprocess: PreprocessSpec
    head_weight: np.ndarray
    head_bias: np.ndarray
    prototypes: np.ndarray
    embedding_mean: np.ndarray
    embedding_std: np.ndarray
    ood_threshold: float | None
    embed: Callable[[np.ndarray], np.ndarray]
    ssl_head: SslHead | None = None
    input_moments: InputMoments | None = None
    segments: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def standardises_each_axis(self) -> bool:
        """True when the preprocessing z-scores each window per channel: per-axis gain and offset never reach
        the model (input-side corrections of them change nothing it sees)."""
        return any(st.op == "standardize" and st.params.get("per_channel", True) for st in self.preprocess.steps)

    @property
    def raw_units(self) -> bool:
        """True when the inputs are physical units (g), not per-window z-scores: motion level means something."""
        return self.units[0] == "g"
