"""The adapter interface: inference hooks, the update gate, and per-device state persistence.

The base class is the identity adaptation (``none``): subclasses change the input
(:meth:`Adapter.transform_input`), the head (:meth:`Adapter.logits`), and learn in :meth:`Adapter.update`,
which runs only for windows that pass the safeguards.
"""

from __future__ import annotations

import os
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.atomic import save_npz_atomic
from edgessl.edge_runtime.adapt.context import AdaptContext
from edgessl.edge_runtime.adapt.safeguards import PredictionHistory, Safeguards, collapse_reason, entropy, is_idle
from edgessl.errors import npz_load_text

STATE_FORMAT = "edgessl-adapt/1"


class Adapter:
    """Base class: the identity adaptation plus the safeguards and state persistence.

    Args:
        safeguards: thresholds of the safeguards (defaults: :class:`Safeguards`).
        lr: learning rate of the method's updates.
        state_path: adapted state restored by :meth:`restore` when the runtime attaches the adapter.
    """

    name = "none"
    head_is_source = False  # True when logits() is the source head (its predictions are the source's)
    uses_pseudo_labels = True  # methods that learn from predicted labels need the entropy gate
    uses_ood_gate = True  # no updates from windows far from every class prototype
    checks_disagreement = True  # reset when adapted and source predictions disagree too often
    # the share of each observed window's samples that are new (the runtime's own sliding windows overlap: stride /
    # window; a caller's windows to classify(): 1); running statistics move per window's worth of new samples
    new_share = 1.0

    def set_new_share(self, share: float) -> None:
        self.new_share = share

    @property
    def changes(self) -> int:
        """Updates a user is told of as they happen (``run``'s change lines): all of a method's, but none of
        ``clusters``' regroupings (a walkthrough read 42 of them as 42 changes of ``ttt``'s input transform)."""
        return self.updates

    @property
    def calibrated(self) -> bool:
        """Whether a calibration of the sensor (``ttt``'s on gravity) is in use."""
        return False

    # set by attach()
    ctx: AdaptContext
    K: int
    W0: np.ndarray  # [K, D] the source head
    b0: np.ndarray  # [K]
    recent: PredictionHistory

    def __init__(self, safeguards: Safeguards | None = None, lr: float = 0.0, state_path: str | None = None):
        self.sg = safeguards or Safeguards()
        self.lr = lr
        self.state_path = state_path
        self.restored = False  # restore() loaded state_path (summary() says so: its counters start at 0)
        self.updates = 0
        self.resets = 0

    # -- wiring ------------------------------------------------------------------------------------
    def attach(self, ctx: AdaptContext) -> None:
        """Take the runtime's context and start from the source model.

        Raises:
            ValueError: when the bundle lacks what this method needs (subclasses say what).
        """
        self.ctx = ctx
        self.K = ctx.n_classes
        self.W0, self.b0 = ctx.head_weight.copy(), ctx.head_bias.copy()
        self.reset()

    def reset(self) -> None:
        """Back to the source model."""
        self.recent = PredictionHistory(self.sg.history, self.K)

    # -- inference hooks ---------------------------------------------------------------------------
    def transform_input(self, x: np.ndarray) -> np.ndarray:
        """Raw windows ``[N, C, T]`` -> the windows the encoder sees."""
        return x

    def logits(self, e: np.ndarray) -> np.ndarray:
        """Embeddings ``[N, D]`` -> logits ``[N, K]``."""
        return e @ self.W0.T + self.b0

    def ungrouped_logits(self, e: np.ndarray) -> np.ndarray:
        """:meth:`logits` without the prior of ``clusters``' groups (what an enrollment decides with)."""
        return self.logits(e)

    def head_bias(self) -> list[float] | None:
        """The bias of the adapted head when its weights are the bundle's (as Python floats), so the runtime
        computes the logits with the prototype similarities in one product; None when :meth:`logits` must be
        called (the default: a subclass that changes the head says otherwise)."""
        return None

    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, ood: float | None = None,
                src: int | None = None) -> None:  # fmt: skip
        """Called after each classification of ``window [C, T]`` (embedding ``e [1, D]``, ``probs [K]``; ``ood``:
        its out-of-distribution score and ``src`` the bundle's head's class when the caller has them, else they
        are computed); decides whether to update."""
        k = int(probs.argmax())
        if self.head_is_source:
            src = k
        elif src is None:
            src = int((e @ self.W0.T + self.b0)[0].argmax())
        self.recent.record(k, src)
        if self.recent.seen % self.sg.check_every == 0 and self.collapsed():
            self.resets += 1
            self.reset()
            return
        if not self.gate(window, e, probs, k, ood):
            return
        self.update(window, e, probs, k)

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        """Learn from one window that passed the gate (``k``: its predicted class)."""

    # -- safeguards --------------------------------------------------------------------------------
    def idle(self, window: np.ndarray, var: list[float] | None = None) -> bool:
        """No updates from a window without motion (``var``: its per-channel variances, when the caller has
        them from :func:`~edgessl.edge_runtime.adapt.safeguards.window_moments`)."""
        if not self.ctx.raw_units:  # z-scored inputs carry no absolute motion level
            return False
        return is_idle(window, self.sg.idle_std) if var is None else max(var) < self.sg.idle_std**2

    def gate(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int, ood: float | None = None) -> bool:
        """True when ``window`` may update the method: enough history, not idle, confident (for methods
        that learn from pseudo-labels), near a class prototype, and of a class that does not dominate."""
        if len(self.recent) < self.sg.min_history or self.idle(window):
            return False
        if self.uses_pseudo_labels and float(entropy(probs)) > self.sg.max_entropy_frac * np.log(self.K):
            return False
        thr = self.ctx.ood_threshold
        if self.uses_ood_gate and thr is not None and (self.ood(e) if ood is None else ood) > thr:
            return False
        return bool(self.recent.adapted[k] <= self.sg.max_class_share * len(self.recent))

    def ood(self, e: np.ndarray) -> float:
        """The out-of-distribution score of embedding ``e [1, D]``: 1 − its largest cosine to a class prototype."""
        en = e[0] / max(float(np.linalg.norm(e[0])), 1e-12)
        return 1.0 - float((self.ctx.prototypes @ en).max())

    def collapsed(self) -> bool:
        """The collapse detector; when it fires, why is kept in ``last_reset`` (said by ``run``)."""
        why = collapse_reason(self.recent, self.sg, self.K, self.checks_disagreement)
        if why is not None:
            self.last_reset = why
        return why is not None

    # -- persistence -------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load ``state_path`` if it exists (after :meth:`attach`); True when a state was restored.

        A state file that cannot be used (empty, truncated, not a state, another method's or another
        bundle's) never stops the runtime: it is renamed aside to ``PATH.bad-<time>`` with a warning that
        says why, and the adapter starts from the source model (so a service restarted in a loop, or given
        a new model, keeps running, and the file is kept for a look). A user state given here by mistake is
        a ValueError, and left as it is.
        """
        if not self.state_path or not os.path.lexists(self.state_path):
            return False
        from edgessl.edge_runtime.enroll import is_user_state

        if is_user_state(self.state_path):  # a user's enrollment is never set aside as a bad adaptation state
            raise ValueError(f"{self.state_path}: a user state (edgessl enroll's), not an adaptation state: give it as "
                             "the runtime's user_state, and another path for the adaptation state")  # fmt: skip
        try:
            self.load(self.state_path)
            self.restored = True
            return True
        except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            self.reset()  # a load that failed half-way must not leave half a state behind
            aside = set_aside(self.state_path)
            where = f"moved to {aside}" if aside else "could not be moved aside"
            msg = npz_load_text(e)
            if str(self.state_path) not in msg:
                msg = f"{self.state_path}: {msg}"
            warnings.warn(f"adaptation state not used: {msg}; {where}; starting from the source model", stacklevel=2)
            return False

    def state(self) -> dict[str, np.ndarray]:
        """The adapted parameters to save (empty for the identity)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """What a display shows (read-only): method, updates, resets and, for a method with an input-side
        correction ``x -> A x + c`` (``input``, ``ttt``), its rotation angle in degrees and per-axis gains
        (the norms of ``A``'s columns) and whether it is applied."""
        out: dict[str, Any] = {"method": self.name, "updates": int(self.updates), "resets": int(self.resets),
                               "restored": bool(self.restored), "correction": None,
                               "last_reset": getattr(self, "last_reset", None)}  # fmt: skip
        A = getattr(self, "A", None)
        if isinstance(A, np.ndarray) and A.shape == (3, 3):
            U, _, Vt = np.linalg.svd(A)
            R = U @ Vt  # the rotation of A's polar decomposition
            angle = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))
            out["correction"] = {"active": bool(getattr(self, "active", False)), "rotation_deg": round(angle, 2),
                                 "gains": [round(float(g), 4) for g in np.linalg.norm(A, axis=0)]}  # fmt: skip
        return out

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        """Set the adapted parameters from :meth:`state`'s arrays."""

    def save(self, path: str | Path | None = None) -> None:
        """Save the adapted state to exactly ``path`` (no suffix added; default: ``state_path``), tagged with the
        method and the bundle's checksum. Atomic: written to a temporary file in the same folder, flushed to
        disk, then renamed over ``path``, so a crash or a kill leaves the old state or the new one, never half of
        one.

        Raises:
            ValueError: no ``path`` and no ``state_path``.
        """
        if path is None:
            if not self.state_path:
                raise ValueError("save(): give a path, or build the adapter with state_path= (where restore() reads)")
            path = self.state_path
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in self.state().items()}
        save_npz_atomic(path, format=np.array(STATE_FORMAT), method=np.array(self.name),
                        bundle=np.array(self.ctx.checksum), **arrays)  # fmt: skip

    def load(self, path: str | Path) -> None:
        """Load a state saved by :meth:`save` from exactly ``path``; refuses another method's or another
        bundle's state (ValueError)."""
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError(f"{path}: not an adaptation state (expected an .npz archive written by edgessl run)")
            self._load_npz(path, loaded)

    def _load_npz(self, path: str | Path, z: np.lib.npyio.NpzFile) -> None:
        with z:
            if "format" not in z.files or "method" not in z.files or "bundle" not in z.files:
                raise ValueError(f"{path}: not an adaptation state (no format/method/bundle tags)")
            if str(z["format"]) != STATE_FORMAT or str(z["method"]) != self.name:
                raise ValueError(f"{path}: adaptation state of method {z['method']} ({z['format']}); "
                                 f"this runtime adapts with {self.name}")  # fmt: skip
            if str(z["bundle"]) != self.ctx.checksum:
                raise ValueError(f"{path}: adaptation state belongs to another bundle (checksum {str(z['bundle'])[:12]}…, "
                                 f"this bundle {self.ctx.checksum[:12]}…); refusing to apply it")  # fmt: skip
            st = {k: z[k] for k in z.files if k not in ("format", "method", "bundle")}
            want = {k: np.shape(v) for k, v in self.state().items()}
            got = {k: v.shape for k, v in st.items()}
            # (an array named `progress` is optional: states saved before it was kept load without it)
            want = {k: v for k, v in want.items() if k in got or k.rsplit(".", 1)[-1] != "progress"}
            if got != want:  # the tags match but the arrays do not: damaged, or written by other code
                raise ValueError(f"{path}: state arrays {got} do not match this adapter's {want}")
            self.load_state(st)


def set_aside(path: str | Path) -> Path | None:
    """Rename ``path`` to ``PATH.bad-<YYYYmmddTHHMMSS>`` (``-1``, ``-2`` ... if taken; nothing is
    overwritten); None when it cannot be renamed."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for i in range(100):
        aside = Path(f"{path}.bad-{stamp}" + (f"-{i}" if i else ""))
        if os.path.lexists(aside):
            continue
        try:
            os.rename(path, aside)
        except OSError:
            return None
        return aside
    return None
