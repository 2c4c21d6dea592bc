"""``ttt``: forward-only test-time adaptation of the input side (after FOA, Niu et al. 2024).

The int8 encoder cannot be trained on the device and undoes nothing by itself, so what is adapted sits in
front of it, where a mounting or a user's grip changes the signal: a 3×3 matrix (rotation, gain,
cross-talk) and a bias on the accelerometer axes, composed after a start: the identity, or the
moment-matching correction of ``input`` (:mod:`.input_correction`) when a search finds that the loss below
prefers it (on UCI HAR, where postures move gravity, moment matching alone costs accuracy; on a rotated
uWave mounting it is most of the recovery: docs/results.md). The matrix is searched by CMA-ES
(:mod:`.es`) over a buffer of recent gated windows, with no backpropagation: each candidate costs one
batched forward pass of the encoder. The loss (:func:`foa_loss`) is FOA's: the entropy of the head's
predictions plus the distance of the batch's embedding mean and standard deviation to the training
embeddings' (recorded in the bundle), plus an anchor pulling the matrix to the start. As in FOA, the
embeddings are also shifted back towards the training mean before the head (activation shifting).

Before all of this, the axes' gains and offsets are calibrated on gravity (:mod:`.gravity`) when the bundle
records how the training sensor read it: still windows tell a sensor's gain and offset errors apart from
anything the person does, so that part needs neither the model nor a search (on UCI HAR with per-axis gain
and offset errors it recovers most of the loss; a stream without still windows, such as segmented gestures,
is left to the search). While that calibration is in use the search rests, and a refinement found before it
is dropped: on UCI HAR validation streams with gain and offset errors, searching on top of the calibration
moved accuracy by −1.9 to +0.6 pt against resting by −0.05 to +1.0 pt (docs/results.md).

Safeguards: the shared gates (no updates while idle, from windows the out-of-distribution gate rejects, or
from a class that dominates the recent predictions), a candidate is taken only when it lowers the loss of
the current matrix by ``min_gain`` (a noise-level win is not a change) both on the windows it was searched
on and then on the next windows, which the search never saw (``confirm``), singular values within
``gain_range``, the collapse detector, reset. The search's windows are drawn from the last ``horizon``
gated ones: FOA's loss assumes a batch that represents the stream, and 64 consecutive windows of an
activity stream are one activity, whose entropy any transform that favours it lowers (on UCI HAR
validation streams the newest-64 buffer without confirmation cost up to 1.9 pt on clean streams).

A remount between searches (the settled interval is ``max_every`` gated windows: in segment mode, as many
gestures) is noticed from the loss of the transform in use on the newest windows, which the live path already
embedded: when it rises 2 spreads above its settled level twice in a row, the older windows leave the
search's pool, ``input``'s moments restart from the new windows and a search follows within
``input.min_windows`` windows (validation: 45° remounts half way through a stream 0.684 → 0.801 and
0.805 → 0.842, fresh starts reaching 0.815 and 0.856; no change on streams without one).

Cost: a search is one batch of the encoder per candidate (6 × ``buffer`` windows), so searches are spaced out
(``every``, doubling to ``max_every`` while they find nothing); the transform in use is scored from the
embeddings the live path already computed, ``input``'s proposal is estimated only when a search weighs it,
and a proposal within ``sigma`` of the current start is not scored (the refinement reaches it). Measured:
2.6–2.7× the unadapted runtime's per-window time (docs/results.md).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.context import AdaptContext
from edgessl.edge_runtime.adapt.es import CMAES
from edgessl.edge_runtime.adapt.gravity import GravityCalibration
from edgessl.edge_runtime.adapt.input_correction import InputCorrection
from edgessl.edge_runtime.adapt.safeguards import window_moments
from edgessl.preprocess import STILL_STD, softmax

# the head's bias follows the running embedding mean once every this many gated windows (one product; the mean
# moves slowly): the activation shift first reaches the answers at the SHIFT_EVERY-th gated window
SHIFT_EVERY = 16


def prediction_entropy(logits: np.ndarray) -> np.ndarray:
    """Mean entropy of the softmax predictions, as a fraction of ``log K``.

    Args:
        logits: ``[P, B, K]`` (``P`` candidates, ``B`` windows each).
    Returns:
        ``[P]``.
    """
    p = softmax(logits)
    H = -(p * np.log(np.maximum(p, 1e-12))).sum(-1)
    return H.mean(-1) / np.log(logits.shape[-1])


def statistics_distance(E: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """FOA's activation-statistics term: the distance of a batch's embedding mean and standard deviation to
    the training embeddings', per dimension in units of the training standard deviation, averaged.

    Args:
        E: ``[P, B, D]`` embeddings.  mean, std: ``[D]`` of the training embeddings.
    Returns:
        ``[P]``.
    """
    sd = np.maximum(std, 1e-6)
    dm = (E.mean(1) - mean) / sd
    ds = (E.std(1) - sd) / sd
    return (dm**2 + ds**2).mean(-1)


def foa_loss(logits: np.ndarray, E: np.ndarray, mean: np.ndarray, std: np.ndarray, stat_weight: float) -> np.ndarray:
    """Prediction entropy + ``stat_weight`` × statistics distance (shapes as in the two terms); ``[P]``."""
    return prediction_entropy(logits) + stat_weight * statistics_distance(E, mean, std)


class TTT(Adapter):
    """Forward-only adaptation of a 3×3 matrix and bias on the accelerometer axes, by CMA-ES on FOA's loss.

    Args:
        buffer: recent gated windows the loss is measured on.
        every: a search every this many gated windows (once the buffer is full); after a search that found
            nothing better, the interval doubles, up to ``max_every``.
        generations: CMA-ES generations per search.
        popsize: candidates per generation (each one batched forward pass over the buffer).
        sigma: initial CMA-ES step (matrix entries; bias in g).
        stat_weight: weight of the statistics term against the entropy.
        anchor: weight of the squared distance of the matrix and bias to the start.
        shift: strength of activation shifting (0 turns it off); momentum: of the running embedding mean.
        gain_range: allowed singular values of the searched matrix.
        use_input: weigh ``input``'s moment-matching correction as a start when the bundle records the moments.
        use_gravity: calibrate the axes on gravity first, when the bundle records the training sensor's.
        min_gain: how much lower than the current refinement's a candidate's loss must be to be taken.
        confirm: a change the search found is taken only if it also lowers the loss by ``min_gain`` on the
            next ``buffer`` gated windows, which the search never saw.
        horizon: the search's ``buffer`` windows are drawn from the last ``horizon`` gated ones (the
            newest ``buffer`` when ``horizon <= buffer``).
        seed: of the search.
    """

    name = "ttt"
    uses_pseudo_labels = False  # the loss is measured on a buffer, no window's label is trusted alone

    def __init__(self, buffer: int = 64, every: int = 128, generations: int = 1, popsize: int = 6, sigma: float = 0.05,
                 stat_weight: float = 1.0, anchor: float = 1.0, shift: float = 1.0, momentum: float = 0.02,
                 max_every: int = 512, gain_range: tuple[float, float] = (0.7, 1.4), use_input: bool = True,
                 use_gravity: bool = True, min_gain: float = 0.01, confirm: bool = True, horizon: int = 512, seed: int = 0,
                 drift_every: int = 64, drift_sigmas: float = 2.0, **kw: Any) -> None:  # fmt: skip
        super().__init__(**kw)
        self.buffer, self.every, self.generations, self.popsize = buffer, every, generations, popsize
        self.sigma, self.stat_weight, self.anchor = sigma, stat_weight, anchor
        self.shift, self.momentum, self.gain_range, self.max_every = shift, momentum, gain_range, max_every
        self.use_input, self.use_gravity, self.seed, self.min_gain = use_input, use_gravity, seed, min_gain
        self.confirm, self.horizon = confirm, horizon
        # over the whole run, resets included: the input transform's searches, those that found nothing better
        # than the transform in use, and the changes found that the next windows did not confirm (a display's
        # "0 changes" explained)
        self.searches, self.found_nothing, self.rejected_trials = 0, 0, 0
        self.drift_every, self.drift_sigmas = drift_every, drift_sigmas  # drift_every=0: no remount check
        self.input: InputCorrection | None = None
        self.gravity: GravityCalibration | None = None

    def attach(self, ctx: AdaptContext) -> None:
        acc = [i for i, u in enumerate(ctx.units) if u == "g"][:3]
        if len(acc) < 3:
            unnamed = ("; a model of a text board's unnamed values: record them with --channels acc_x,acc_y,acc_z "
                       "to train one in g" if "unknown" in ctx.units else "")  # fmt: skip
            raise ValueError(f"{ctx.bundle}: adaptation ttt adapts the 3 accelerometer axes in g in front of the "
                             f"encoder, and this bundle's channel units are {list(ctx.units)}; adapt with another "
                             f"method (tent, t3a){unnamed}")  # fmt: skip
        self.acc, self._acc_list = np.array(acc), acc
        self._acc_only = acc == list(range(len(ctx.units)))
        if self.use_input and ctx.input_moments is not None:
            # estimated when a search weighs it (not every 64 windows: only the search uses it)
            self.input = InputCorrection(safeguards=self.sg, seed=self.seed, lazy=True)
            self.input.attach(ctx)
        m = ctx.input_moments
        if self.use_gravity and m is not None and m.gravity is not None and not ctx.standardises_each_axis:
            self.gravity = GravityCalibration(*m.gravity)
        self.mu0 = ctx.embedding_mean.astype(np.float64)
        self.sd0 = np.maximum(ctx.embedding_std.astype(np.float64), 1e-6)
        super().attach(ctx)

    def reset(self, keep_calibration: bool = False) -> None:
        """Back to the source model; ``keep_calibration``: but the sensor's gravity calibration stays (the
        collapse detector's reset: the calibration never depends on the answers)."""
        super().reset()
        if self.input is not None:
            self.input.reset()
        if self.gravity is not None and not keep_calibration:
            self.gravity.reset()
        self.theta = np.zeros(12)
        # the start the refinement applies after: the identity until a search finds input's proposal better
        self.A0, self.c0 = np.eye(3), np.zeros(3)
        self.es = CMAES(self.theta, self.sigma, self.popsize, np.random.default_rng(self.seed))
        # (window, its live embedding, the transform version it was embedded under)
        self.windows: deque[tuple[np.ndarray, np.ndarray, int]] = deque(maxlen=max(self.buffer, self.horizon))
        self._version = 0
        self._pick = np.random.default_rng(self.seed + 1)
        self.mu = self.mu0.copy()
        self._mu_new: list[np.ndarray] = []  # gated embeddings not yet in ``mu``
        self._last: tuple[np.ndarray | None, np.ndarray] = (None, np.zeros(0))
        self._gated, self._next, self._interval = 0, self.every, self.every
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (A0, c0, theta) on trial
        self._levels: deque[float] = deque(maxlen=6)  # the loss of the transform in use on the newest windows
        self._base: tuple[float, float] | None = None  # their settled (mean, spread)
        self._above = 0  # measurements in a row above it
        self.drifts = 0
        self._compose()

    # -- the transform --------------------------------------------------------------------------------
    @staticmethod
    def _affine(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``theta [..., 12]`` -> the refinement ``(I + M [..., 3, 3], t [..., 3])``."""
        return np.eye(3) + theta[..., :9].reshape(*theta.shape[:-1], 3, 3), theta[..., 9:]

    def _proposals(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Starts a search weighs against the current one: ``input``'s moment-matching correction when it is
        active, and the identity (no correction), each without refinement. One within the search's step
        (``sigma``) of the current start is left out: the refinement around the current start reaches it (and
        each proposal costs a batch of the encoder)."""
        out = []
        if self.input is not None:
            self.input.estimate()
            if self.input.active:
                out.append((self.input.A, self.input.c))
        out.append((np.eye(3), np.zeros(3)))
        return [(A, c) for A, c in out
                if max(np.abs(A - self.A0).max(), np.abs(c - self.c0).max()) >= self.sigma]  # fmt: skip

    @property
    def calibrated(self) -> bool:
        """Whether the gravity calibration is in use (then the search rests)."""
        return self.gravity is not None and bool(self.gravity.active)

    def _calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """The gravity calibration ``(D [3, 3], d [3])`` applied before the start (the identity when none)."""
        if self.gravity is None or not self.gravity.active:
            return np.eye(3), np.zeros(3)
        return np.diag(self.gravity.gain), self.gravity.bias

    def _calibrated(self, X: np.ndarray) -> np.ndarray:
        """Raw windows ``[..., C, T]`` with the gravity calibration applied to the accelerometer axes."""
        if self.gravity is None or not self.gravity.active:
            return X
        Y = np.array(X, np.float32)
        Y[..., self.acc, :] = (self.gravity.gain[:, None] * X[..., self.acc, :] + self.gravity.bias[:, None]).astype(np.float32)
        return Y

    def _compose(self) -> None:
        self._version += 1  # embeddings computed before this were computed under another transform
        R, t = self._affine(self.theta)
        D, d = self._calibration()
        self.A, self.c = R @ self.A0 @ D, R @ (self.A0 @ d + self.c0) + t
        self.active = not (np.allclose(self.A, np.eye(3)) and not self.c.any())
        self._A32, self._c32 = self.A.astype(np.float32), self.c.astype(np.float32)[:, None]
        self._shift_bias()
        self.W_fT = np.ascontiguousarray(self.W0.T, np.float32)

    def _running_mean(self) -> np.ndarray:
        """The exponential running mean of the gated embeddings (``momentum``), brought up to date: the
        embeddings since it was last read are folded in at once, ``mu ← rⁿ mu + Σ m rⁿ⁻¹⁻ʲ e_j`` with ``r = 1 − m``
        (the per-window update, in one product every few windows)."""
        if self._mu_new:
            # per window's worth of new samples: the runtime's sliding windows overlap, and a mean moved per
            # window followed the current activity within half a minute (live activity recordings: 0.4-0.9 pt)
            m = self.momentum * self.new_share
            n, r = len(self._mu_new), 1.0 - m
            w = m * r ** np.arange(n - 1, -1, -1)
            self.mu = r**n * self.mu + w @ np.array(self._mu_new, np.float64)
            self._mu_new.clear()
        return self.mu

    def _shift_bias(self) -> None:
        """Activation shifting folded into the head's bias: ``(e + s) W0ᵀ + b0`` with ``s = mu0 − mu``."""
        self._running_mean()
        self.b_eff = (self.b0 + self.shift * (self.mu0 - self.mu) @ self.W0.T).astype(np.float32)
        self._db = self.b_eff - self.b0.astype(np.float32)  # adapted logits - source logits
        self._b_list = self.b_eff.astype(np.float64).tolist()

    def head_bias(self) -> list[float]:  # the head is the bundle's weights with the shifted bias
        return self._b_list

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        if not self.active:
            return x
        if self._acc_only:  # the common case: three accelerometer channels and nothing else
            return np.matmul(self._A32, x) + self._c32
        y = x.copy()
        y[:, self.acc] = np.matmul(self._A32, x[:, self.acc]) + self._c32
        return y

    def logits(self, e: np.ndarray) -> np.ndarray:
        out = e @ self.W_fT + self.b_eff
        self._last = (e, out)  # observe() takes the source head's prediction from these (one product fewer)
        return out

    # -- learning -------------------------------------------------------------------------------------
    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, ood: float | None = None,
                src: int | None = None) -> None:  # fmt: skip
        """The shared safeguards once for both parts: the start (``input``) learns from every window that
        passes them, the search only from those the out-of-distribution gate also accepts (a shifted sensor
        makes windows look out of distribution until ``input`` corrects it)."""
        k = int(probs.argmax())
        if not self.shift:
            src = k
        elif src is None:  # (else the runtime computed the bundle's head's class with the adapted logits)
            if self._last[0] is e:  # the logits the runtime just asked for, less the shift: the source head's
                src = int((self._last[1][0] - self._db).argmax())
            else:
                src = int((e @ self.W0.T + self.b0)[0].argmax())
        self.recent.record(k, src)
        if self.recent.seen % self.sg.check_every == 0 and self.collapsed():
            self.resets += 1
            # (a walkthrough's activity stream was reset three times, and calibrated again each time)
            self.reset(keep_calibration=True)
            return
        means, var = window_moments(window)  # once, for the calibration's still test and the idle gate
        if self.gravity is not None:  # still windows (idle ones most of all) are what the calibration learns from
            still = max(var[i] for i in self._acc_list) < STILL_STD**2
            if self.gravity.observe_mean(np.array([means[i] for i in self._acc_list]), still):
                if self.calibrated:  # the search rests while the calibration is in use (module docstring)
                    self.theta, self.A0, self.c0, self._pending = np.zeros(12), np.eye(3), np.zeros(3), None
                self._compose()
        if len(self.recent) < self.sg.min_history or self.idle(window, var):
            return
        if self.recent.adapted[k] > self.sg.max_class_share * len(self.recent):
            return
        if self.input is not None:
            self.input.update(self._calibrated(window), e, probs, k)  # a proposal: the next search weighs it against the current start
        thr = self.ctx.ood_threshold
        if thr is not None and np.isfinite(thr) and (self.ood(e) if ood is None else ood) > thr:
            return
        self.update(window, e, probs, k)

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        e0 = np.array(e[0], np.float32)
        self.windows.append((np.array(window, np.float32), e0, self._version))
        self._mu_new.append(e0)  # the running mean takes them in one product when it is next read
        self._gated += 1
        if len(self.windows) >= self.buffer and self._gated >= self._next and not self.calibrated:
            if self._pending is not None:
                self._trial()
            else:
                self._search()
        else:
            if self.shift and self._gated % SHIFT_EVERY == 0:
                self._shift_bias()  # the running mean moves slowly: the head's bias follows it every few windows
            if self.drift_every and self._gated % self.drift_every == 0 and len(self.windows) >= self.buffer:
                self._check_drift()

    def _check_drift(self) -> None:
        """A remount (or any sudden change of the signal) between searches: the loss of the transform in use on
        the newest windows (from their live embeddings: no encoder call), measured every ``drift_every`` gated
        windows, rises above its settled level by ``drift_sigmas`` of its spread on two measurements in a row.
        The settled level starts as the mean and spread of the first 6 measurements and then follows every
        measurement that is not a rise (an exponential mean, weight 0.2); a change the search takes lowers
        the loss, so it needs no new start. Then the windows before the change leave the search's pool,
        ``input``'s moments restart from the new ones and a search follows as soon as ``input`` has enough of
        them, instead of after the settled interval (up to ``max_every`` windows)."""
        items = list(self.windows)[-self.buffer :]
        if any(v != self._version for _, _, v in items):
            return
        level = float(self._objective(np.stack([e for _, e, _ in items])[None], self.theta[None])[0])
        if self._base is None:
            self._levels.append(level)
            if len(self._levels) == self._levels.maxlen:
                self._base = (float(np.mean(self._levels)), max(float(np.std(self._levels)), 0.02))
            return
        mu, sd = self._base
        self._above = self._above + 1 if level > mu + self.drift_sigmas * sd else 0
        if self._above >= 2:
            self._drifted()
        elif not self._above:  # the settled level follows what is not a rise (exponentially, weight 0.2)
            var = 0.8 * (sd**2 + 0.2 * (level - mu) ** 2)
            self._base = (0.8 * mu + 0.2 * level, max(var**0.5, 0.02))

    def _drifted(self) -> None:
        self.drifts += 1
        self._levels.clear()  # a settled level is measured afresh on the new signal
        self._base, self._above = None, 0
        self._pending = None
        self.windows.clear()  # the windows before the change show the old mounting: the next search sees new ones
        wait = self.buffer
        if self.input is not None:
            self.input.reset()
            wait = max(wait, self.input.min_windows)
        self._interval = self.every
        self._next = self._gated + wait

    def _losses(self, X: np.ndarray, thetas: np.ndarray, A0: np.ndarray, c0: np.ndarray) -> np.ndarray:
        """FOA loss plus anchor of each refinement ``thetas [P, 12]`` after the start ``A0 [3, 3], c0 [3]`` on raw
        windows ``X [B, C, T]``; ``[P]``."""
        R, t = self._affine(thetas)
        A, c = R @ A0, R @ c0 + t
        P, (B, C, T) = len(thetas), X.shape
        Z = (A[:, None] @ X[None, :, self.acc] + c[:, None, :, None]).astype(np.float32)  # [P, B, 3, T]
        if self._acc_only:
            Y = Z
        else:
            Y = np.broadcast_to(X, (P, B, C, T)).copy()
            Y[:, :, self.acc] = Z
        saved, self.active = self.active, False  # the encoder must see the candidates, not the current transform
        try:
            E = self.ctx.embed(Y.reshape(P * B, C, T)).reshape(P, B, -1)
        finally:
            self.active = saved
        return self._objective(E, thetas)

    def _objective(self, E: np.ndarray, thetas: np.ndarray) -> np.ndarray:
        """The loss of embeddings ``E [P, B, D]`` of the windows under refinements ``thetas [P, 12]``; ``[P]``."""
        E = E.astype(np.float64)
        lg = E @ self.W0.T + self.b0 + self.shift * (self.mu0 - self._running_mean()) @ self.W0.T
        return foa_loss(lg, E, self.mu0, self.sd0, self.stat_weight) + self.anchor * (thetas**2).sum(-1)

    def _current(self, X: np.ndarray, E: np.ndarray | None) -> float:
        """The loss of the current transform on ``X``: from the embeddings the live path computed (``E``,
        when every window was embedded under the current transform), else by embedding them again."""
        if E is None:
            return float(self._losses(X, self.theta[None], self.A0, self.c0)[0])
        return float(self._objective(E[None], self.theta[None])[0])

    def _batch(self, newest: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``buffer`` windows: the newest, or drawn uniformly from the last ``horizon`` (a batch that spans
        minutes of an activity stream, not one activity), with the gravity calibration applied; and their
        live embeddings when all were embedded under the current transform (else None)."""
        if newest or len(self.windows) == self.buffer:
            items = list(self.windows)[-self.buffer :]
        else:
            idx = np.sort(self._pick.choice(len(self.windows), self.buffer, replace=False))
            items = [self.windows[i] for i in idx]
        X = self._calibrated(np.stack([w for w, _, _ in items]))
        same = all(v == self._version for _, _, v in items)
        return X, np.stack([e for _, e, _ in items]) if same else None

    def _search(self) -> None:
        self.searches += 1
        X, E = self._batch()
        lo, hi = self.gain_range
        # a change must beat the current refinement by min_gain (on the same windows): noise-level wins are not taken
        best, best_loss = self.theta, self._current(X, E) - self.min_gain
        for _ in range(self.generations):
            cand = self.es.ask()
            losses = self._losses(X, cand, self.A0, self.c0)
            self.es.tell(cand, losses)
            for i in np.argsort(losses):  # the best plausible candidate (a proper map, gains in range)
                R = self._affine(cand[i])[0]
                sv = np.linalg.svd(R, compute_uv=False)
                if np.linalg.det(R) > 0 and lo <= sv.min() and sv.max() <= hi:
                    if losses[i] < best_loss:
                        best, best_loss = cand[i].copy(), float(losses[i])
                    break
        # another start (input's proposal, or no correction) replaces the current one only when it does better,
        # unrefined, than the best found around the current start
        start = None
        for A0, c0 in self._proposals():
            loss = float(self._losses(X, np.zeros((1, 12)), A0, c0)[0])
            if loss < best_loss:
                start, best_loss = (A0.copy(), c0.copy()), loss
        if start is not None:
            best = np.zeros(12)
        A0, c0 = start if start is not None else (self.A0, self.c0)
        if best is self.theta:  # nothing better found: search less often (a settled or a clean stream costs less)
            self.found_nothing += 1
            self._interval = min(2 * self._interval, self.max_every)
            self._next = self._gated + self._interval
        elif self.confirm:
            # better on these windows; taken only if also better on the next ``buffer`` ones (a buffer of
            # consecutive windows can hold one activity, whose entropy any transform that favours it lowers)
            self._pending = (A0, c0, best)
            self._next = self._gated + self.buffer
        else:
            self._take(A0, c0, best)

    def _take(self, A0: np.ndarray, c0: np.ndarray, theta: np.ndarray) -> None:
        if not (np.array_equal(A0, self.A0) and np.array_equal(c0, self.c0)):
            self.A0, self.c0 = A0, c0
            self.es = CMAES(theta, self.sigma, self.popsize, self.es.rng)
        self.theta = theta
        self.updates += 1
        self._interval = self.every
        self._next = self._gated + self._interval
        self._compose()

    def _trial(self) -> None:
        """The pending change against the current transform, on windows the search did not see."""
        assert self._pending is not None
        A0, c0, theta = self._pending
        self._pending = None
        X, E = self._batch(newest=True)
        if float(self._losses(X, theta[None], A0, c0)[0]) < self._current(X, E) - self.min_gain:
            self._take(A0, c0, theta)
        else:
            self.rejected_trials += 1
            self._interval = min(2 * self._interval, self.max_every)
            self._next = self._gated + self._interval

    # -- state ----------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:  # + what the next search waits for (a display's "updates 0" explained)
        # (a search also waits for a buffer of windows seen in this run: after a restart, `buffer` new ones)
        wait = self._gated + self.buffer - len(self.windows) if len(self.windows) < self.buffer else 0
        return {**super().summary(), "gated": self._gated, "next_search": max(self._next, self.buffer, wait),
                "shift_every": SHIFT_EVERY if self.shift else 0, "searches": self.searches,
                "found_nothing": self.found_nothing, "trial": self._pending is not None,
                "rejected_trials": self.rejected_trials, "drifts": self.drifts, "calibrated": self.calibrated,
                # the gravity calibration in use (a walkthrough found its offsets only in the state file)
                "calibration": {"gain": [round(float(v), 4) for v in g.gain], "offset_g": [round(float(v), 4) for v in g.bias]}
                if (g := self.gravity) is not None and g.active else None}  # fmt: skip

    def state(self) -> dict[str, np.ndarray]:
        st = {"theta": self.theta, "mu": self._running_mean(), "A0": self.A0, "c0": self.c0,
              # the way to the next search: a service restarted more often than every `every` gated windows would
              # otherwise never search (a walkthrough; optional: states saved before it load without it)
              "progress": np.array([self._gated, self._next, self._interval], np.int64)}  # fmt: skip
        if self.input is not None:
            st.update({f"input.{k}": v for k, v in self.input.state().items()})
        if self.gravity is not None:
            st.update({f"gravity.{k}": v for k, v in self.gravity.state().items()})
        return st

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.theta, self.mu = st["theta"].astype(np.float64), st["mu"].astype(np.float64)
        self._mu_new.clear()
        self.A0, self.c0 = st["A0"].astype(np.float64), st["c0"].astype(np.float64)
        if "progress" in st:
            self._gated, self._next, self._interval = (int(v) for v in st["progress"])
        if self.input is not None:
            self.input.load_state({k.split(".", 1)[1]: v for k, v in st.items() if k.startswith("input.")})
        if self.gravity is not None and "gravity.gain" in st:  # a state saved before calibration keeps none
            self.gravity.load_state({k.split(".", 1)[1]: v for k, v in st.items() if k.startswith("gravity.")})
        self.es = CMAES(self.theta, self.sigma, self.popsize, np.random.default_rng(self.seed))
        self._compose()
