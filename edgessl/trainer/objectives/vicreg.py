"""VICReg (Bardes, Ponce, LeCun 2022): variance, invariance, covariance.

    L = λ·s(Z, Z') + μ·[v(Z) + v(Z')] + ν·[c(Z) + c(Z')]
    s = mean over batch and dimensions of (z - z')²           (the official code's F.mse_loss)
    v(Z) = 1/d Σ_j max(0, γ - sqrt(Var(z_j) + ε))            (unbiased variance)
    c(Z) = 1/d Σ_{i≠j} C(Z)_ij²,  C = cov(Z) with 1/(n-1)
Defaults are the paper's: λ = μ = 25, ν = 1, γ = 1, ε = 1e-4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def invariance_loss(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(z_a, z_b)


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = (zc.t() @ zc) / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


class VICRegLoss(nn.Module):
    """Weighted sum of the three terms; ``forward`` returns the scalar loss."""

    def __init__(self, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0,
                 gamma: float = 1.0, eps: float = 1e-4):  # fmt: skip
        super().__init__()
        if min(sim_weight, var_weight, cov_weight) < 0 or gamma <= 0 or eps <= 0:
            raise ValueError("VICReg weights must be >= 0 and gamma, eps > 0")
        self.sim_weight, self.var_weight, self.cov_weight = sim_weight, var_weight, cov_weight
        self.gamma, self.eps = gamma, eps

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """``z_a, z_b [N, D]`` (N >= 2) -> scalar loss."""
        if z_a.shape[0] < 2:
            raise ValueError("VICReg needs a batch of at least 2 to estimate variance")
        return (
            self.sim_weight * invariance_loss(z_a, z_b)
            + self.var_weight * (variance_loss(z_a, self.gamma, self.eps) + variance_loss(z_b, self.gamma, self.eps))
            + self.cov_weight * (covariance_loss(z_a) + covariance_loss(z_b))
        )
