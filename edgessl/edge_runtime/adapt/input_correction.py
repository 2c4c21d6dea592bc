"""``input``: input-side correction for accelerometers. An affine map (mounting rotation, per-axis gain and
bias) in front of the encoder that gives the stream the training signal's mean, covariance and lagged
covariances (recorded in the bundle); no gradients, no labels (needs inputs in g)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.align import align_moments
from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.context import AdaptContext
from edgessl.preprocess import MomentAccumulator, moment_mismatch


class InputCorrection(Adapter):
    """Mounting rotation, per-axis gain and bias, undone in front of the encoder by moment matching.

    The bundle records the moments of the training windows' raw 3-axis accelerometer signal (mean,
    covariance, lagged covariances; see :func:`edgessl.preprocess.signal_moments`). The adapter accumulates
    the same moments over the windows it classifies (not while idle, not while one class dominates the
    recent predictions, with forgetting) and, every ``every`` windows once ``min_windows`` were seen (or when
    asked, ``lazy``), estimates the affine map ``x -> A x + c`` that gives the stream the source moments
    (:func:`align_moments`).

    Safeguards specific to a correction of the input: it is applied only when the stream's moments differ
    from the training data's by more than ``margin`` × the most any one training user (or stretch of
    recording) differs (recorded in the bundle as ``input_moments_natural``; kept while above ``release`` ×
    that level), when it is physically plausible (singular values of ``A`` within ``gain_range``, a proper
    rotation) and when it explains at least ``min_explained`` of the moment mismatch of the uncorrected
    stream; otherwise the source input is used. For models that standardise each window (per-axis gain and
    bias do not reach them) only the rotation of ``A`` is kept (``rotation_only``, decided from the bundle).
    It changes many predictions by design (a 90° mounting flips most of them), so the disagreement-with-source
    reset of the label-driven methods does not apply; the low-diversity collapse detector does.
    """

    name = "input"
    head_is_source = True  # the head is untouched; its input is corrected
    uses_pseudo_labels = False
    uses_ood_gate = False  # a shifted sensor makes windows look out of distribution: that is what is corrected
    checks_disagreement = False

    def __init__(self, memory: float = 1024, min_windows: int = 128, every: int = 64, min_explained: float = 0.5,
                 gain_range: tuple[float, float] = (0.5, 2.0), margin: float = 1.0, release: float = 0.5,
                 rotation_only: bool | None = None, global_every: int = 16, lazy: bool = False, seed: int = 0,
                 **kw: Any) -> None:  # fmt: skip
        super().__init__(**kw)
        self.lazy = lazy
        self.margin, self.release, self.global_every = margin, release, global_every
        self.rotation_only = rotation_only
        self.memory, self.min_windows, self.every = memory, min_windows, every
        self.min_explained, self.gain_range = min_explained, gain_range
        self.rng = np.random.default_rng(seed)

    def attach(self, ctx: AdaptContext) -> None:
        acc = [i for i, u in enumerate(ctx.units) if u == "g"][:3]
        m = ctx.input_moments
        if len(acc) < 3 or m is None:
            raise ValueError("input-side adaptation needs a bundle of a model whose inputs are 3-axis accelerometer "
                             "signals in g and that records their training moments (fine-tune and export with this "
                             f"version); this bundle has channel units {list(ctx.units)}")  # fmt: skip
        self.acc = np.array(acc)
        self.src = {"mean": m.mean.astype(np.float64), "cov": m.cov.astype(np.float64),
                    "lagcov": m.lagcov.astype(np.float64)}  # fmt: skip
        self.lags = m.lags
        self.natural = m.natural
        if self.rotation_only is None:
            # a model that standardises each window per channel ignores per-axis gain and bias: only the
            # rotation of the correction matters, and correcting the rest would only fit a user's style
            self.rotation_only = ctx.standardises_each_axis
        super().attach(ctx)

    def reset(self) -> None:
        super().reset()
        self.stats = MomentAccumulator(self.lags, self.memory)
        self.A, self.c = np.eye(3), np.zeros(3)
        self.Q: np.ndarray | None = None
        self.active = False
        self._buf: list[np.ndarray] = []  # at most ``every`` windows
        self.rejected = 0
        self._estimates = 0

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        if not self.active:
            return x
        y = x.copy()
        y[:, self.acc] = self.A @ x[:, self.acc] + self.c[:, None]
        return y

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        self._buf.append(np.asarray(window)[self.acc])  # a copy (fancy indexing): the caller may reuse its buffer
        if len(self._buf) < self.every:
            return
        self.stats.add(np.stack(self._buf))  # in batches: one set of products per ``every`` windows
        self._buf.clear()
        if not self.lazy:
            self.estimate()

    def estimate(self) -> None:
        """Estimate the correction from the moments accumulated so far (every ``every`` windows, or, ``lazy``,
        when a user of the estimate asks: ``ttt`` weighs it only at its searches)."""
        if self._buf:
            self.stats.add(np.stack(self._buf))
            self._buf.clear()
        if self.stats.windows < self.min_windows:
            return
        tgt = self.stats.moments()
        self._estimates += 1
        before = moment_mismatch(self.src, tgt, np.eye(3), np.zeros(3))
        # a stream whose moments differ from the training data's no more than one training user's (or
        # block's) do is left alone: that much is how people differ, not how a sensor is mounted
        # hysteresis: once a shift was found, it is kept while the mismatch stays above half that level
        if before <= (self.release if self.active else self.margin) * self.natural:
            self._reject()
            return
        # a global search now and then (early estimates, from few windows, can sit in the wrong basin),
        # a local refinement of the previous solution otherwise
        fresh = self.Q is None or self._estimates % self.global_every == 0
        A, c, Q = align_moments(self.src, tgt, prior=self.Q, rng=self.rng, global_candidates=256 if fresh else 0,
                                local_steps=10 if fresh else 6)  # fmt: skip
        self.Q = Q
        if self.rotation_only:
            U, _, Vt = np.linalg.svd(A)
            A = U @ Vt  # the rotation of A's polar decomposition
            c = self.src["mean"] - A @ tgt["mean"]
        sv = np.linalg.svd(A, compute_uv=False)
        lo, hi = self.gain_range
        plausible = np.linalg.det(A) > 0 and lo <= sv.min() and sv.max() <= hi
        if plausible and moment_mismatch(self.src, tgt, A, c) <= (1 - self.min_explained) * before:
            self.A, self.c, self.active = A, c, True
            self.updates += 1
        else:
            self._reject()

    def _reject(self) -> None:
        self.A, self.c, self.active = np.eye(3), np.zeros(3), False
        self.rejected += 1

    def state(self) -> dict[str, np.ndarray]:
        return {"A": self.A, "c": self.c, "active": np.array(self.active)}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.A, self.c, self.active = st["A"], st["c"], bool(st["active"])
