"""Test-time adaptation on the device (numpy only, the int8 encoder stays frozen).

Methods (``--adapt``):
    none   the source model.
    t3a    backprop-free prototype adjustment from confident pseudo-labels (Iwasawa & Matsuo 2021),
           anchored to the source head so that, before any update, predictions equal the source model's.
    tent   entropy minimisation (Wang et al. 2021) on the affine parameters of a normalisation layer in front
           of the float head, with running test statistics; gradients in closed form.
    ttt    test-time training (Sun et al. 2020): a D×D float adapter between the frozen encoder and both heads,
           updated by the loss of the self-supervised transform-prediction head trained jointly at fine-tuning
           (identity / time flip / sign flip / both), on transformed views of incoming windows.
    input  input-side correction for accelerometers: an affine map (mounting rotation, per-axis gain and
           bias) in front of the encoder that gives the stream the training signal's mean, covariance and
           lagged covariances (recorded in the bundle); no gradients, no labels (needs inputs in g).

Safeguards shared by all: a reliability gate (prediction entropy and out-of-distribution score), no updates
while idle, a class-diversity check on the recent prediction histogram, a penalty pulling parameters to their
source values, a collapse detector that resets to the source state, and bounded memory (fixed-size buffers).
Adapted state is saved and restored per device/user, tagged with the bundle's checksum.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

STATE_FORMAT = "edgessl-adapt/1"


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.maximum(p, 1e-12))).sum(axis=-1)


# ---------------------------------------------------------------------------------------------------
# closed-form gradients (checked numerically in the tests)


def tent_loss_and_grad(gamma: np.ndarray, beta: np.ndarray, n: np.ndarray, W: np.ndarray, b: np.ndarray,
                       div_weight: float = 1.0) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """Mean prediction entropy minus ``div_weight`` × entropy of the mean prediction.

    Args:
        gamma, beta: ``[D]`` affine parameters; the head sees ``gamma * n + beta``.
        n: ``[B, D]`` normalised embeddings.
        W, b: ``[K, D]``, ``[K]`` the head.
    Returns:
        ``(loss, dL/dgamma, dL/dbeta)``.
    """
    B = n.shape[0]
    p = softmax((gamma * n + beta) @ W.T + b)  # [B, K]
    H = entropy(p)
    pbar = p.mean(0)
    loss = float(H.mean() - div_weight * entropy(pbar))
    # d(mean H)/dz_i = -p_i (log p_i + H_i) / B ;  d(-H(pbar))/dz_i = p_i (log pbar - p_i·log pbar) / B
    logp = np.log(np.clip(p, 1e-12, 1.0))
    g = -p * (logp + H[:, None]) / B
    lpb = np.log(np.clip(pbar, 1e-12, 1.0))
    g += div_weight * p * (lpb - (p * lpb).sum(1, keepdims=True)) / B
    gh = g @ W  # [B, D] gradient wrt the head's input
    return loss, (gh * n).sum(0), gh.sum(0)


def ttt_loss_and_grad(A: np.ndarray, c: np.ndarray, E: np.ndarray, t: np.ndarray, V: np.ndarray,
                      d: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """Cross-entropy of the self-supervised head on adapted embeddings ``A e + c``.

    Args:
        A: ``[D, D]``, c: ``[D]`` the adapter.  E: ``[B, D]`` embeddings of transformed windows.
        t: ``[B]`` transform labels.  V: ``[M, D]``, d: ``[M]`` the self-supervised head.
    Returns:
        ``(loss, dL/dA, dL/dc)``.
    """
    B = E.shape[0]
    h = E @ A.T + c
    p = softmax(h @ V.T + d)
    loss = float(-np.log(np.clip(p[np.arange(B), t], 1e-12, 1.0)).mean())
    g = p.copy()
    g[np.arange(B), t] -= 1.0
    gh = (g @ V) / B  # [B, D]
    return loss, gh.T @ E, gh.sum(0)


# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Safeguards:
    """Parameters of the safeguards (shared by every method)."""

    max_entropy_frac: float = 0.4  # update only when H(p) < this × log K
    history: int = 128  # recent predictions kept for the diversity check and collapse detector
    min_history: int = 16  # no updates before this many predictions were seen
    max_class_share: float = 0.35  # skip updates for a class that dominates the recent predictions
    collapse_entropy_frac: float = 0.35  # reset if the recent histogram's entropy falls below this × log K
    max_disagreement: float = 0.35  # reset if adapted and source predictions disagree this often on recent windows
    idle_std: float = 0.03  # raw windows (g) with less motion than this are idle
    source_penalty: float = 0.1  # pull towards the source parameters
    check_every: int = 4  # run the collapse detector every this many windows


class Adapter:
    """Base class: the identity adaptation plus the safeguards and state persistence."""

    name = "none"

    def __init__(self, safeguards: Safeguards | None = None, lr: float = 0.0, state_path: str | None = None):
        self.sg = safeguards or Safeguards()
        self.lr = lr
        self.state_path = state_path
        self.rt: Any = None
        self.preds: deque = deque(maxlen=self.sg.history)  # (adapted class, source class)
        self.updates = 0
        self.resets = 0

    # -- wiring ------------------------------------------------------------------------------------
    def attach(self, runtime: Any) -> None:
        self.rt = runtime
        self.K = len(runtime.labels)
        self.W0, self.b0 = runtime.W.copy(), runtime.b.copy()
        self.raw_units = runtime.bundle.units[0] == "g"
        self.reset()

    def reset(self) -> None:
        """Back to the source model."""
        self.preds.clear()
        # running histograms of the recent predictions (kept in step with ``preds``; O(1) per window)
        self.hist_adapted = np.zeros(self.K, np.int64)
        self.hist_source = np.zeros(self.K, np.int64)
        self.n_disagree = 0
        self.seen = 0  # windows since the last reset

    def _record(self, k: int, src: int) -> None:
        """Remember one (adapted, source) prediction pair in the bounded history."""
        if len(self.preds) == self.preds.maxlen:
            ok, osrc = self.preds[0]
            self.hist_adapted[ok] -= 1
            self.hist_source[osrc] -= 1
            self.n_disagree -= ok != osrc
        self.preds.append((k, src))
        self.seen += 1
        self.hist_adapted[k] += 1
        self.hist_source[src] += 1
        self.n_disagree += k != src

    # -- inference hooks ---------------------------------------------------------------------------
    def transform_input(self, x: np.ndarray) -> np.ndarray:
        return x

    def logits(self, e: np.ndarray) -> np.ndarray:
        return e @ self.W0.T + self.b0

    head_is_source = False  # True when logits() is the source head (its predictions are the source's)

    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray) -> None:
        """Called after each classification; decides whether to update."""
        k = int(probs.argmax())
        src = k if self.head_is_source else int((e @ self.W0.T + self.b0)[0].argmax())
        self._record(k, src)
        if self.seen % self.sg.check_every == 0 and self._collapsed():
            self.resets += 1
            self.reset()
            return
        if not self._gate(window, e, probs, k):
            return
        self.update(window, e, probs, k)

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        pass

    # -- safeguards --------------------------------------------------------------------------------
    def _idle(self, window: np.ndarray) -> bool:
        if not self.raw_units:
            return False  # z-scored inputs carry no absolute motion level
        x = np.asarray(window, np.float64)
        m = x.sum(-1) / x.shape[-1]
        var = np.einsum("ct,ct->c", x, x) / x.shape[-1] - m * m  # two reductions, no temporaries
        return float(var.max()) < self.sg.idle_std**2

    uses_pseudo_labels = True  # methods that learn from predicted labels need the entropy gate
    uses_ood_gate = True  # no updates from windows far from every class prototype
    checks_disagreement = True  # reset when adapted and source predictions disagree too often

    def _gate(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> bool:
        if len(self.preds) < self.sg.min_history or self._idle(window):
            return False
        if self.uses_pseudo_labels and float(entropy(probs)) > self.sg.max_entropy_frac * np.log(self.K):
            return False
        thr = self.rt.ood_threshold
        if self.uses_ood_gate and thr is not None:
            en = e[0] / max(float(np.linalg.norm(e[0])), 1e-12)
            if 1.0 - float((self.rt.prototypes @ en).max()) > thr:
                return False
        return bool(self.hist_adapted[k] <= self.sg.max_class_share * len(self.preds))

    def _collapsed(self) -> bool:
        if len(self.preds) < self.sg.history // 2:
            return False
        n = len(self.preds)
        hist, hist_src = self.hist_adapted / n, self.hist_source / n
        # collapse = the adapted predictions are much less diverse than the source's on the same windows,
        # or disagree with them too often
        low_div = float(entropy(hist)) < self.sg.collapse_entropy_frac * np.log(self.K) and \
            float(entropy(hist)) < 0.8 * float(entropy(hist_src))  # fmt: skip
        disagree = self.checks_disagreement and self.n_disagree > self.sg.max_disagreement * n
        return low_div or disagree

    # -- persistence -------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load ``state_path`` if it exists (after :meth:`attach`); True when a state was restored."""
        if self.state_path and Path(self.state_path).exists():
            self.load(self.state_path)
            return True
        return False

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        pass

    def save(self, path: str | Path) -> None:
        st = {k: np.asarray(v) for k, v in self.state().items()}
        np.savez(path, format=np.array(STATE_FORMAT), method=np.array(self.name),
                 bundle=np.array(self.rt.bundle.checksum), **st)  # fmt: skip

    def load(self, path: str | Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != STATE_FORMAT or str(z["method"]) != self.name:
                raise ValueError(f"{path}: adaptation state of method {z['method']} ({z['format']}); "
                                 f"this runtime adapts with {self.name}")  # fmt: skip
            if str(z["bundle"]) != self.rt.bundle.checksum:
                raise ValueError(f"{path}: adaptation state belongs to another bundle (checksum {str(z['bundle'])[:12]}…, "
                                 f"this bundle {self.rt.bundle.checksum[:12]}…); refusing to apply it")  # fmt: skip
            self.load_state({k: z[k] for k in z.files if k not in ("format", "method", "bundle")})


class T3A(Adapter):
    """Prototype adjustment: per-class supports of confident, normalised embeddings (at most ``m`` each)."""

    name = "t3a"

    def __init__(self, m: int = 20, weight: float = 1.0, **kw):
        super().__init__(**kw)
        self.m = m
        self.weight = weight

    def reset(self) -> None:
        super().reset()
        self.supports: list[deque] = [deque(maxlen=self.m) for _ in range(self.K)]
        P = self.rt.prototypes
        self.P0 = P.copy()
        self.P = P.copy()
        # scale so that prototype logits are commensurate with the source head's
        self.scale = float(np.linalg.norm(self.W0, axis=1).mean() * np.linalg.norm(self.rt.params["embedding_mean"]))

    def logits(self, e: np.ndarray) -> np.ndarray:
        en = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return e @ self.W0.T + self.b0 + self.weight * self.scale * (en @ (self.P - self.P0).T)

    def update(self, window, e, probs, k) -> None:
        en = e[0] / max(float(np.linalg.norm(e[0])), 1e-12)
        self.supports[k].append((float(entropy(probs)), en))
        # the support keeps the most confident members; the source prototype stays in as a warm start
        s = sorted(self.supports[k], key=lambda r: r[0])[: self.m]
        mean = (self.P0[k] + sum(v for _, v in s)) / (1 + len(s))
        self.P[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        self.updates += 1

    def state(self):
        return {"P": self.P}

    def load_state(self, st):
        self.P = st["P"].astype(np.float32)


class Tent(Adapter):
    """Entropy minimisation on a normalisation affine (γ, β) in front of the float head."""

    name = "tent"

    def __init__(self, lr: float = 0.01, batch: int = 8, momentum: float = 0.02, div_weight: float = 1.0, **kw):
        super().__init__(lr=lr, **kw)
        self.batch, self.momentum, self.div_weight = batch, momentum, div_weight

    def reset(self) -> None:
        super().reset()
        p = self.rt.params
        self.mu0 = p["embedding_mean"].astype(np.float64)
        self.sd0 = np.maximum(p["embedding_std"].astype(np.float64), 1e-6)
        self.mu, self.sd = self.mu0.copy(), self.sd0.copy()
        self.gamma, self.beta = self.sd0.copy(), self.mu0.copy()  # identity at the start
        self.buf: deque = deque(maxlen=self.batch)
        self._fold()

    def _fold(self) -> None:
        """The head on raw embeddings: ((e − μ)/σ · γ + β) W0ᵀ + b0 = e W_effᵀ + b_eff (one product per window)."""
        scale = self.gamma / self.sd
        self.W_eff = (self.W0 * scale).astype(np.float32)
        self.b_eff = (self.b0 + (self.beta - scale * self.mu) @ self.W0.T).astype(np.float32)

    def logits(self, e: np.ndarray) -> np.ndarray:
        return e @ self.W_eff.T + self.b_eff

    def update(self, window, e, probs, k) -> None:
        self.buf.append(e[0].astype(np.float64))
        if len(self.buf) < self.batch:
            return
        E = np.stack(self.buf)
        self.buf.clear()
        self.mu = (1 - self.momentum) * self.mu + self.momentum * E.mean(0)
        self.sd = np.sqrt((1 - self.momentum) * self.sd**2 + self.momentum * E.var(0) + 1e-12)
        n = (E - self.mu) / self.sd
        _, gg, gb = tent_loss_and_grad(self.gamma, self.beta, n, self.W0.astype(np.float64), self.b0, self.div_weight)
        lam = self.sg.source_penalty
        self.gamma -= self.lr * (gg + lam * (self.gamma - self.sd0) / self.sd0**2)
        self.beta -= self.lr * (gb + lam * (self.beta - self.mu0) / self.sd0**2)
        self.updates += 1
        self._fold()

    def state(self):
        return {"gamma": self.gamma, "beta": self.beta, "mu": self.mu, "sd": self.sd}

    def load_state(self, st):
        self.gamma, self.beta, self.mu, self.sd = st["gamma"], st["beta"], st["mu"], st["sd"]
        self._fold()


def transform_windows(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy twin of the trainer's transforms: 0 identity, 1 time flip, 2 sign flip, 3 both. ``x [C, T]``."""
    out = np.empty((len(t), *x.shape), np.float32)
    for i, ti in enumerate(t):
        y = x[:, ::-1] if ti in (1, 3) else x
        out[i] = -y if ti in (2, 3) else y
    return out


class TTT(Adapter):
    """Test-time training of a D×D adapter through the jointly trained self-supervised head."""

    name = "ttt"
    uses_pseudo_labels = False  # the self-supervised loss needs no label, so no entropy gate

    def __init__(self, lr: float = 0.005, views: int = 2, every: int = 1, seed: int = 0, **kw):
        super().__init__(lr=lr, **kw)
        self.views, self.every = views, every
        self.rng = np.random.default_rng(seed)
        self._count = 0

    def attach(self, runtime) -> None:
        p = runtime.params
        if "ssl_head_weight" not in p:
            raise ValueError("this bundle has no self-supervised head; fine-tune with --ssl-weight > 0 to use --adapt ttt")
        self.V, self.d = p["ssl_head_weight"].astype(np.float64), p["ssl_head_bias"].astype(np.float64)
        super().attach(runtime)

    def reset(self) -> None:
        super().reset()
        D = self.W0.shape[1]
        self.A, self.c = np.eye(D), np.zeros(D)

    def logits(self, e: np.ndarray) -> np.ndarray:
        return ((e @ self.A.T + self.c) @ self.W0.T + self.b0).astype(np.float32)

    def update(self, window, e, probs, k) -> None:
        self._count += 1
        if self._count % self.every:
            return
        t = self.rng.choice(4, size=self.views, replace=False)
        E = self.rt.embed(transform_windows(np.asarray(window, np.float32), t)).astype(np.float64)
        _, gA, gc = ttt_loss_and_grad(self.A, self.c, E, t, self.V, self.d)
        lam = self.sg.source_penalty
        self.A -= self.lr * (gA + lam * (self.A - np.eye(len(self.c))))
        self.c -= self.lr * (gc + lam * self.c)
        self.updates += 1

    def state(self):
        return {"A": self.A, "c": self.c}

    def load_state(self, st):
        self.A, self.c = st["A"], st["c"]


# ---------------------------------------------------------------------------------------------------
# input-side correction by moment matching


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
        self.s1 += X.sum((0, 2))
        self.s2 += np.einsum("nit,njt->ij", X, X)
        for i, t in enumerate(self.lags):
            if t >= T:
                continue
            x, y = X[:, :, :-t], X[:, :, t:]
            self.nl[i] += N * (T - t)
            self.P[i] += np.einsum("nit,njt->ij", x, y)
            self.a[i] += x.sum((0, 2))
            self.b[i] += y.sum((0, 2))

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


def _sym_power(C: np.ndarray, p: float) -> np.ndarray:
    w, V = np.linalg.eigh(C)
    return (V * np.maximum(w, 1e-12) ** p) @ V.T


def rotations(v: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` from rotation vectors ``[..., 3]`` (Rodrigues)."""
    th = np.linalg.norm(v, axis=-1)
    k = v / np.maximum(th, 1e-12)[..., None]
    K = np.zeros((*v.shape[:-1], 3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    s, c = np.sin(th)[..., None, None], np.cos(th)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def moment_mismatch(src: dict, tgt: dict, A: np.ndarray, c: np.ndarray) -> float:
    """How far the moments of ``A x + c`` (x with moments ``tgt``) are from ``src``: relative squared
    differences of the mean, covariance and lagged covariances, summed."""
    mu = A @ tgt["mean"] + c
    C = A @ tgt["cov"] @ A.T
    L = np.einsum("ab,lbc,dc->lad", A, tgt["lagcov"], A)
    rel = lambda d, r: float((d**2).sum() / max(float((r**2).sum()), 1e-12))  # noqa: E731
    return rel(mu - src["mean"], src["mean"]) + rel(C - src["cov"], src["cov"]) + rel(L - src["lagcov"], src["lagcov"])


def align_moments(src: dict, tgt: dict, prior: np.ndarray | None = None, gravity_weight: float = 1.0,
                  ortho_weight: float = 0.05,
                  rng: np.random.Generator | None = None, global_candidates: int = 256,
                  local_steps: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The affine input correction ``x -> A x + c`` that gives a shifted 3-axis signal the source moments.

    ``A = C_s^{1/2} Q C_t^{-1/2}`` matches the mean and covariance exactly for any rotation ``Q``; ``Q`` is
    chosen so that the whitened lagged covariances match too (they rotate with ``Q`` under a mounting
    rotation and are unchanged by per-axis gains only up to that whitening), with a soft preference for
    ``A`` mapping the shifted mean (mostly gravity) onto the source mean, which settles the sign
    ambiguities of a pure lagged-covariance match. A global random search over rotations (plus the
    identity and ``prior``, the previous solution), then a local random search around the best.

    Returns:
        ``(A [3, 3], c [3], Q [3, 3])``.
    """
    rng = rng or np.random.default_rng(0)
    Hs, Wt = _sym_power(src["cov"], 0.5), _sym_power(tgt["cov"], -0.5)
    Ws = _sym_power(src["cov"], -0.5)
    Ms, Mt = Ws @ src["lagcov"] @ Ws, Wt @ tgt["lagcov"] @ Wt
    ms_norm = float((Ms**2).sum())
    mu_s, mu_t = src["mean"], tgt["mean"]
    g_norm = max(float(mu_s @ mu_s), 1e-12)

    def objective(Q: np.ndarray) -> np.ndarray:  # Q [K, 3, 3]
        d = np.einsum("kab,lbc,kdc->klad", Q, Mt, Q) - Ms[None]
        A = np.einsum("ab,kbc,cd->kad", Hs, Q, Wt)
        g = A @ mu_t - mu_s
        # a mounting is a rotation (times gains near 1): among maps that match the moments about equally
        # well, prefer the one closest to a scaled rotation
        AtA = np.einsum("kba,kbc->kac", A, A)
        AtA /= np.maximum(np.einsum("kii->k", AtA) / 3, 1e-12)[:, None, None]
        ortho = ((AtA - np.eye(3)) ** 2).sum((1, 2))
        return (d**2).sum((1, 2, 3)) / ms_norm + gravity_weight * (g**2).sum(-1) / g_norm + ortho_weight * ortho

    v = rng.normal(size=(global_candidates, 3))
    v *= (np.pi * rng.uniform(0, 1, (global_candidates, 1)) ** (1 / 3)) / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    Q = np.concatenate([np.eye(3)[None], rotations(v), *([] if prior is None else [prior[None]])])
    f = objective(Q)
    starts = Q[np.argsort(f)[:4]]
    # the lagged covariances cannot tell a solution from its half-turns about their common axes (signs of
    # axes); try those explicitly, so that the mean decides between them rather than the search's luck
    _, V = np.linalg.eigh(Ms.sum(0))
    F = np.stack([V @ np.diag(d) @ V.T for d in ((1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1))])
    starts = np.einsum("fab,sbc->sfac", F, starts).reshape(-1, 3, 3)
    # a local random search from each of the most promising starts
    best, fb = starts[0], np.inf
    for start in starts[np.argsort(objective(starts))[: 4 if global_candidates else 1]]:
        q, fq, step = start, float(objective(start[None])[0]), 0.2
        for _ in range(local_steps):
            cand = rotations(rng.normal(size=(16, 3)) * step) @ q
            fc = objective(cand)
            if fc.min() < fq:
                q, fq = cand[int(fc.argmin())], float(fc.min())
            else:
                step *= 0.6
        if fq < fb:
            best, fb = q, fq
    A = Hs @ best @ Wt
    return A, mu_s - A @ mu_t, best


class InputCorrection(Adapter):
    """Mounting rotation, per-axis gain and bias, undone in front of the encoder by moment matching.

    The bundle records the moments of the training windows' raw 3-axis accelerometer signal (mean,
    covariance, lagged covariances; see :func:`signal_moments`). The adapter accumulates the same moments
    over the windows it classifies (not while idle, not while one class dominates the recent predictions,
    with forgetting) and, every ``every`` windows once ``min_windows`` were seen, estimates the affine map
    ``x -> A x + c`` that gives the stream the source moments (:func:`align_moments`).

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
                 rotation_only: bool | None = None, global_every: int = 16, seed: int = 0, **kw):  # fmt: skip
        super().__init__(**kw)
        self.margin, self.release, self.global_every = margin, release, global_every
        self.rotation_only = rotation_only
        self.memory, self.min_windows, self.every = memory, min_windows, every
        self.min_explained, self.gain_range = min_explained, gain_range
        self.rng = np.random.default_rng(seed)

    def attach(self, runtime) -> None:
        p = runtime.params
        units = runtime.bundle.units
        acc = [i for i, u in enumerate(units) if u == "g"][:3]
        if len(acc) < 3 or "input_moments_cov" not in p:
            raise ValueError("input-side adaptation needs a bundle of a model whose inputs are 3-axis accelerometer "
                             "signals in g and that records their training moments (fine-tune and export with this "
                             f"version); this bundle has channel units {units}")  # fmt: skip
        self.acc = np.array(acc)
        self.src = {"mean": p["input_moments_mean"].astype(np.float64), "cov": p["input_moments_cov"].astype(np.float64),
                    "lagcov": p["input_moments_lagcov"].astype(np.float64)}  # fmt: skip
        self.lags = tuple(int(t) for t in p["input_moments_lags"])
        self.natural = float(p["input_moments_natural"]) if "input_moments_natural" in p else 0.0
        if self.rotation_only is None:
            # a model that standardises each window per channel ignores per-axis gain and bias: only the
            # rotation of the correction matters, and correcting the rest would only fit a user's style
            self.rotation_only = any(st.op == "standardize" and st.params.get("per_channel", True)
                                     for st in runtime.preprocess.steps)  # fmt: skip
        super().attach(runtime)

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

    def update(self, window, e, probs, k) -> None:
        self._buf.append(np.asarray(window)[self.acc])  # a copy (fancy indexing): the caller may reuse its buffer
        if len(self._buf) < self.every:
            return
        self.stats.add(np.stack(self._buf))  # in batches: one set of products per ``every`` windows
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

    def state(self):
        return {"A": self.A, "c": self.c, "active": np.array(self.active)}

    def load_state(self, st):
        self.A, self.c, self.active = st["A"], st["c"], bool(st["active"])


class Chain(Adapter):
    """Several adapters at once, e.g. ``input+tent``: the input-side correction of the first part that has
    one, the head of the last part that has one; every part observes every window with its own gates,
    safeguards and state."""

    def __init__(self, parts: list[Adapter], state_path: str | None = None):  # noqa: D107 - no Adapter.__init__
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.state_path = state_path
        self.rt: Any = None

    @property
    def updates(self) -> int:  # type: ignore[override]
        return sum(p.updates for p in self.parts)

    @property
    def resets(self) -> int:  # type: ignore[override]
        return sum(p.resets for p in self.parts)

    def attach(self, runtime: Any) -> None:
        """Attach every part; a part this bundle cannot support (e.g. input-side correction on z-scored
        inputs) is left out with a warning, so the default chain runs with any bundle."""
        self.rt = runtime
        kept = []
        for p in self.parts:
            try:
                p.attach(runtime)
                kept.append(p)
            except ValueError as e:
                warnings.warn(f"adaptation {p.name} is not available for this bundle and is left out: {e}", stacklevel=2)
        if not kept:
            raise ValueError(f"none of the adaptation methods {self.name} is available for this bundle")
        self.parts = kept

    def reset(self) -> None:
        for p in self.parts:
            p.reset()

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        for p in self.parts:
            x = p.transform_input(x)
        return x

    def logits(self, e: np.ndarray) -> np.ndarray:
        return self.parts[-1].logits(e)

    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray) -> None:
        for p in self.parts:
            p.observe(window, e, probs)

    def state(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, p in enumerate(self.parts) for k, v in p.state().items()}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        for i, p in enumerate(self.parts):
            p.load_state({k.split(".", 1)[1]: v for k, v in st.items() if k.startswith(f"{i}.")})


# The method benchmarks/results/tta_shift.json shows best on average over the shifts: input-side moment
# matching for the mounting, Tent on the head for the rest (64 % of the lost accuracy recovered on average,
# no loss on clean streams; see the README for the figures of each method).
DEFAULT_METHOD = "input+tent"

METHODS = {"none": None, "t3a": T3A, "tent": Tent, "ttt": TTT, "input": InputCorrection}


def build_adapter(name: str, state_path: str | None = None, **kw) -> Adapter | None:
    """An adapter by name (``none`` gives None; ``a+b`` chains two, e.g. ``input+tent``, with default
    settings). ``state_path``: restored when the runtime attaches it, if the file exists (see
    :meth:`Adapter.restore`)."""
    if "+" in name:
        parts = [build_adapter(n) for n in name.split("+")]
        if any(p is None for p in parts) or len(parts) < 2:
            raise ValueError(f"a chain of adaptation methods names two or more of {sorted(set(METHODS) - {'none'})}; got {name!r}")
        return Chain(parts, state_path)  # type: ignore[arg-type]
    if name not in METHODS:
        raise ValueError(f"unknown adaptation method {name!r}; expected one of {sorted(METHODS)} or a chain like input+tent")
    cls = METHODS[name]
    if cls is None:
        return None
    a = cls(**kw)
    a.state_path = state_path
    return a
