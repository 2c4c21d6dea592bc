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
    input  input-side correction for accelerometers: a 3×3 mounting rotation and a gain estimated from
           gravity during idle periods (needs a model trained on raw units, i.e. not per-window z-scored).

Safeguards shared by all: a reliability gate (prediction entropy and out-of-distribution score), no updates
while idle, a class-diversity check on the recent prediction histogram, a penalty pulling parameters to their
source values, a collapse detector that resets to the source state, and bounded memory (fixed-size buffers).
Adapted state is saved and restored per device/user, tagged with the bundle's checksum.
"""

from __future__ import annotations

import dataclasses
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
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-1)


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

    # -- inference hooks ---------------------------------------------------------------------------
    def transform_input(self, x: np.ndarray) -> np.ndarray:
        return x

    def logits(self, e: np.ndarray) -> np.ndarray:
        return e @ self.W0.T + self.b0

    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray) -> None:
        """Called after each classification; decides whether to update."""
        src = int((e @ self.W0.T + self.b0)[0].argmax())
        k = int(probs.argmax())
        self.preds.append((k, src))
        if self._collapsed():
            self.resets += 1
            self.reset()
            return
        if not self._gate(window, e, probs, k):
            return
        self.update(window, e, probs, k)

    def observe_stream(self, samples: np.ndarray, idle: bool) -> None:
        """Raw samples as they arrive, with the windower's idle flag (used by input-side adaptation)."""

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        pass

    # -- safeguards --------------------------------------------------------------------------------
    def _idle(self, window: np.ndarray) -> bool:
        if not self.raw_units:
            return False  # z-scored inputs carry no absolute motion level
        return float(np.asarray(window).std(axis=-1).max()) < self.sg.idle_std

    uses_pseudo_labels = True  # methods that learn from predicted labels need the entropy gate

    def _gate(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> bool:
        if len(self.preds) < self.sg.min_history or self._idle(window):
            return False
        if self.uses_pseudo_labels and float(entropy(probs)) > self.sg.max_entropy_frac * np.log(self.K):
            return False
        thr = self.rt.ood_threshold
        if thr is not None:
            en = e[0] / max(float(np.linalg.norm(e[0])), 1e-12)
            if 1.0 - float((self.rt.prototypes @ en).max()) > thr:
                return False
        hist = np.bincount([p for p, _ in self.preds], minlength=self.K) / len(self.preds)
        return bool(hist[k] <= self.sg.max_class_share)

    def _collapsed(self) -> bool:
        if len(self.preds) < self.sg.history // 2:
            return False
        adapted = np.array([p for p, _ in self.preds])
        source = np.array([s for _, s in self.preds])
        hist = np.bincount(adapted, minlength=self.K) / len(adapted)
        hist_src = np.bincount(source, minlength=self.K) / len(source)
        # collapse = the adapted predictions are much less diverse than the source's on the same windows,
        # or disagree with them too often
        low_div = float(entropy(hist)) < self.sg.collapse_entropy_frac * np.log(self.K) and \
            float(entropy(hist)) < 0.8 * float(entropy(hist_src))  # fmt: skip
        return low_div or float((adapted != source).mean()) > self.sg.max_disagreement

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

    def logits(self, e: np.ndarray) -> np.ndarray:
        n = (e - self.mu) / self.sd
        return ((self.gamma * n + self.beta) @ self.W0.T + self.b0).astype(np.float32)

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

    def state(self):
        return {"gamma": self.gamma, "beta": self.beta, "mu": self.mu, "sd": self.sd}

    def load_state(self, st):
        self.gamma, self.beta, self.mu, self.sd = st["gamma"], st["beta"], st["mu"], st["sd"]


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


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction ``a`` to direction ``b`` (Rodrigues)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -0.999999:
        axis = np.cross(a, [1.0, 0, 0]) if abs(a[0]) < 0.9 else np.cross(a, [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


class InputCorrection(Adapter):
    """Mounting rotation (3×3) and gain from gravity seen while the device is idle."""

    name = "input"

    def __init__(self, momentum: float = 0.02, **kw):
        super().__init__(**kw)
        self.momentum = momentum

    def attach(self, runtime) -> None:
        super().attach(runtime)
        if not self.raw_units or "input_mean" not in runtime.params:
            raise ValueError("input-side adaptation needs a model trained on raw accelerometer units (g) whose "
                             "bundle records the training data's mean gravity vector (input_mean)")  # fmt: skip
        self.g_src = runtime.params["input_mean"][:3].astype(np.float64)

    def reset(self) -> None:
        super().reset()
        self.g_dev: np.ndarray | None = None
        self.R = np.eye(3)
        self.gain = 1.0

    def observe_stream(self, samples: np.ndarray, idle: bool) -> None:
        if not idle or len(samples) == 0:
            return
        m = np.asarray(samples, np.float64)[:, :3].mean(0)
        self.g_dev = m if self.g_dev is None else (1 - self.momentum) * self.g_dev + self.momentum * m
        mag = float(np.linalg.norm(self.g_dev))
        if 0.5 < mag < 2.0:  # a plausible gravity reading
            self.R = _rotation_between(self.g_dev, self.g_src)
            self.gain = 1.0 / mag  # at rest an accelerometer must read exactly 1 g
            self.updates += 1

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        if self.updates == 0:
            return x
        y = x.copy()
        y[:, :3] = self.gain * np.einsum("ij,njt->nit", self.R, x[:, :3])
        return y

    def state(self):
        return {"R": self.R, "gain": np.array(self.gain)}

    def load_state(self, st):
        self.R, self.gain = st["R"], float(st["gain"])
        self.updates = max(self.updates, 1)


# The method benchmarks/results/tta_shift.json shows best on average over the shifts (Tent: 0.14 of the lost
# accuracy recovered on average, 0.65 under sensor gain/bias; the others ~0 or negative).
DEFAULT_METHOD = "tent"

METHODS = {"none": None, "t3a": T3A, "tent": Tent, "ttt": TTT, "input": InputCorrection}


def build_adapter(name: str, state_path: str | None = None, **kw) -> Adapter | None:
    """An adapter by name (``none`` gives None). ``state_path``: restored when the runtime attaches it, if
    the file exists (see :meth:`Adapter.restore`)."""
    if name not in METHODS:
        raise ValueError(f"unknown adaptation method {name!r}; expected one of {sorted(METHODS)}")
    cls = METHODS[name]
    if cls is None:
        return None
    a = cls(**kw)
    a.state_path = state_path
    return a
