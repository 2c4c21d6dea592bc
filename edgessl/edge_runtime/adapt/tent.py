"""``tent``: entropy minimisation (Wang et al. 2021) on the affine parameters of a normalisation layer in
front of the float head, with running test statistics; gradients in closed form."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.safeguards import entropy
from edgessl.preprocess import softmax


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


class Tent(Adapter):
    """Entropy minimisation on a normalisation affine (γ, β) in front of the float head.

    Args:
        lr: step size.
        batch: confident windows per update.
        momentum: of the running embedding statistics.
        div_weight: weight of the diversity term (entropy of the mean prediction).
    """

    name = "tent"

    def __init__(self, lr: float = 0.01, batch: int = 8, momentum: float = 0.02, div_weight: float = 1.0, **kw: Any) -> None:
        super().__init__(lr=lr, **kw)
        self.batch, self.momentum, self.div_weight = batch, momentum, div_weight

    def reset(self) -> None:
        super().reset()
        self.mu0 = self.ctx.embedding_mean.astype(np.float64)
        self.sd0 = np.maximum(self.ctx.embedding_std.astype(np.float64), 1e-6)
        self.mu, self.sd = self.mu0.copy(), self.sd0.copy()
        self.gamma, self.beta = self.sd0.copy(), self.mu0.copy()  # identity at the start
        self.buf: deque[np.ndarray] = deque(maxlen=self.batch)
        self._fold()

    def _fold(self) -> None:
        """The head on raw embeddings: ((e − μ)/σ · γ + β) W0ᵀ + b0 = e W_effᵀ + b_eff (one product per window)."""
        scale = self.gamma / self.sd
        self.W_eff = (self.W0 * scale).astype(np.float32)
        self.b_eff = (self.b0 + (self.beta - scale * self.mu) @ self.W0.T).astype(np.float32)

    def logits(self, e: np.ndarray) -> np.ndarray:
        return e @ self.W_eff.T + self.b_eff

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
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

    def state(self) -> dict[str, np.ndarray]:
        return {"gamma": self.gamma, "beta": self.beta, "mu": self.mu, "sd": self.sd}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.gamma, self.beta, self.mu, self.sd = st["gamma"], st["beta"], st["mu"], st["sd"]
        self._fold()
