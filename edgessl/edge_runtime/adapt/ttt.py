"""``ttt``: test-time training (Sun et al. 2020). A D×D float adapter between the frozen encoder and both
heads, updated by the loss of the self-supervised transform-prediction head trained jointly at fine-tuning
(identity / time flip / sign flip / both), on transformed views of incoming windows.

Only bundles of models fine-tuned with that head (``ssl_weight > 0``) support it; the trainer does not
train one by default.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.context import AdaptContext
from edgessl.preprocess import softmax


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


def transform_windows(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy twin of the trainer's transforms: 0 identity, 1 time flip, 2 sign flip, 3 both.

    Args:
        x: ``[C, T]`` one window.  t: ``[B]`` transform labels.
    Returns:
        ``[B, C, T]`` float32.
    """
    out = np.empty((len(t), *x.shape), np.float32)
    for i, ti in enumerate(t):
        y = x[:, ::-1] if ti in (1, 3) else x
        out[i] = -y if ti in (2, 3) else y
    return out


class TTT(Adapter):
    """Test-time training of a D×D adapter through the jointly trained self-supervised head.

    Args:
        lr: step size.
        views: transformed views of each window per update.
        every: update on every this many gated windows.
        seed: of the transform draws.
    """

    name = "ttt"
    uses_pseudo_labels = False  # the self-supervised loss needs no label, so no entropy gate

    def __init__(self, lr: float = 0.005, views: int = 2, every: int = 1, seed: int = 0, **kw: Any) -> None:
        super().__init__(lr=lr, **kw)
        self.views, self.every = views, every
        self.rng = np.random.default_rng(seed)
        self._count = 0

    def attach(self, ctx: AdaptContext) -> None:
        if ctx.ssl_head is None:
            raise ValueError(f"{ctx.bundle}: adaptation ttt needs the self-supervised (transform-prediction) head, and "
                             "this bundle's model was fine-tuned without it; fine-tune with ssl_weight > 0 (e.g. "
                             "ssl_weight = 0.1 in an `edgessl finetune --config` file) and export again, or adapt "
                             "with another method (input, tent, t3a)")  # fmt: skip
        self.V, self.d = ctx.ssl_head.weight.astype(np.float64), ctx.ssl_head.bias.astype(np.float64)
        super().attach(ctx)

    def reset(self) -> None:
        super().reset()
        D = self.W0.shape[1]
        self.A, self.c = np.eye(D), np.zeros(D)

    def logits(self, e: np.ndarray) -> np.ndarray:
        return ((e @ self.A.T + self.c) @ self.W0.T + self.b0).astype(np.float32)

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        self._count += 1
        if self._count % self.every:
            return
        t = self.rng.choice(4, size=self.views, replace=False)
        E = self.ctx.embed(transform_windows(np.asarray(window, np.float32), t)).astype(np.float64)
        _, gA, gc = ttt_loss_and_grad(self.A, self.c, E, t, self.V, self.d)
        lam = self.sg.source_penalty
        self.A -= self.lr * (gA + lam * (self.A - np.eye(len(self.c))))
        self.c -= self.lr * (gc + lam * self.c)
        self.updates += 1

    def state(self) -> dict[str, np.ndarray]:
        return {"A": self.A, "c": self.c}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.A, self.c = st["A"], st["c"]
