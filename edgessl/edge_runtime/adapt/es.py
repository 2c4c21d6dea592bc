"""A small CMA-ES (Hansen 2016, "The CMA Evolution Strategy: A Tutorial") in numpy: the forward-only
optimiser behind ``ttt`` (no gradients through the int8 encoder, only its outputs)."""

from __future__ import annotations

import numpy as np


class CMAES:
    """Ask/tell CMA-ES with the tutorial's default weights and learning rates (rank-one and rank-μ updates,
    cumulative step-size adaptation).

    Args:
        mean: ``[n]`` start point.
        sigma: initial step size (> 0).
        popsize: candidates per generation (≥ 2; default ``4 + 3 ln n``).
        rng: of the samples.

    Raises:
        ValueError: a non-positive ``sigma``, a ``popsize`` below 2, or an empty ``mean``.
    """

    def __init__(self, mean: np.ndarray, sigma: float, popsize: int | None = None, rng: np.random.Generator | None = None):
        n = len(mean)
        if n < 1 or not sigma > 0:
            raise ValueError(f"CMA-ES needs a non-empty start point and sigma > 0; got n={n}, sigma={sigma}")
        lam = popsize or 4 + int(3 * np.log(n))
        if lam < 2:
            raise ValueError(f"CMA-ES needs a population of at least 2; got {lam}")
        self.n, self.lam, self.mu = n, lam, lam // 2
        w = np.log((lam + 1) / 2) - np.log(np.arange(1, self.mu + 1))
        self.weights = w / w.sum()
        self.mueff = 1.0 / float((self.weights**2).sum())
        self.cc = (4 + self.mueff / n) / (n + 4 + 2 * self.mueff / n)
        self.cs = (self.mueff + 2) / (n + self.mueff + 5)
        self.c1 = 2 / ((n + 1.3) ** 2 + self.mueff)
        self.cmu = min(1 - self.c1, 2 * (self.mueff - 2 + 1 / self.mueff) / ((n + 2) ** 2 + self.mueff))
        self.damps = 1 + 2 * max(0.0, np.sqrt((self.mueff - 1) / (n + 1)) - 1) + self.cs
        self.chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.mean = np.asarray(mean, np.float64).copy()
        self.sigma0 = self.sigma = float(sigma)
        self.C, self.B, self.Dg = np.eye(n), np.eye(n), np.ones(n)
        self.pc, self.ps = np.zeros(n), np.zeros(n)
        self.generation = 0
        self.rng = rng or np.random.default_rng(0)

    def ask(self) -> np.ndarray:
        """``[popsize, n]`` candidates ``mean + sigma · B D z``."""
        z = self.rng.standard_normal((self.lam, self.n))
        return self.mean + self.sigma * (z * self.Dg) @ self.B.T

    def tell(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        """Update the distribution from ``candidates [popsize, n]`` and their ``losses [popsize]`` (lower is better)."""
        order = np.argsort(losses)[: self.mu]
        old = self.mean
        self.mean = self.weights @ candidates[order]
        y = (self.mean - old) / self.sigma
        inv_sqrt_c = (self.B / self.Dg) @ self.B.T
        self.ps = (1 - self.cs) * self.ps + np.sqrt(self.cs * (2 - self.cs) * self.mueff) * inv_sqrt_c @ y
        self.generation += 1
        hsig = np.linalg.norm(self.ps) / np.sqrt(1 - (1 - self.cs) ** (2 * self.generation)) / self.chi_n < 1.4 + 2 / (self.n + 1)
        self.pc = (1 - self.cc) * self.pc + hsig * np.sqrt(self.cc * (2 - self.cc) * self.mueff) * y
        Y = (candidates[order] - old) / self.sigma
        self.C = ((1 - self.c1 - self.cmu) * self.C + self.c1 * (np.outer(self.pc, self.pc) + (not hsig) * self.cc * (2 - self.cc) * self.C)
                  + self.cmu * (Y.T * self.weights) @ Y)  # fmt: skip
        self.sigma *= float(np.exp((self.cs / self.damps) * (np.linalg.norm(self.ps) / self.chi_n - 1)))
        # a noisy objective (a different buffer each time) must not blow the step up or freeze it
        self.sigma = float(np.clip(self.sigma, 1e-3 * self.sigma0, 2 * self.sigma0))
        self.C = (self.C + self.C.T) / 2
        d2, self.B = np.linalg.eigh(self.C)
        self.Dg = np.sqrt(np.maximum(d2, 1e-20))
