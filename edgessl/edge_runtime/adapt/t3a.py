"""``t3a``: backprop-free prototype adjustment from confident pseudo-labels (Iwasawa & Matsuo 2021),
anchored to the source head so that, before any update, predictions equal the source model's."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.safeguards import entropy


class T3A(Adapter):
    """Prototype adjustment: per-class supports of confident, normalised embeddings (at most ``m`` each).

    Args:
        m: support size per class.
        weight: how much the adjusted prototypes move the logits, relative to the source head.
    """

    name = "t3a"

    def __init__(self, m: int = 20, weight: float = 1.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.m = m
        self.weight = weight

    def reset(self) -> None:
        super().reset()
        self.supports: list[deque[tuple[float, np.ndarray]]] = [deque(maxlen=self.m) for _ in range(self.K)]
        P = self.ctx.prototypes
        self.P0 = P.copy()
        self.P = P.copy()
        # scale so that prototype logits are commensurate with the source head's
        self.scale = float(np.linalg.norm(self.W0, axis=1).mean() * np.linalg.norm(self.ctx.embedding_mean))

    def logits(self, e: np.ndarray) -> np.ndarray:
        en = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return e @ self.W0.T + self.b0 + self.weight * self.scale * (en @ (self.P - self.P0).T)

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        en = e[0] / max(float(np.linalg.norm(e[0])), 1e-12)
        self.supports[k].append((float(entropy(probs)), en))
        # the support keeps the most confident members; the source prototype stays in as a warm start
        s = sorted(self.supports[k], key=lambda r: r[0])[: self.m]
        mean = (self.P0[k] + sum(v for _, v in s)) / (1 + len(s))
        self.P[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        self.updates += 1

    def state(self) -> dict[str, np.ndarray]:
        return {"P": self.P}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.P = st["P"].astype(np.float32)
