"""Barlow Twins (Zbontar et al. 2021).

    C_ij = Σ_b ẑ^A_{b,i} ẑ^B_{b,j} / N   with ẑ each dimension standardised over the batch
    L = Σ_i (1 - C_ii)² + λ Σ_i Σ_{j≠i} C_ij²,   λ = 5e-3 (the paper's)
"""

from __future__ import annotations

import torch
from torch import nn


def cross_correlation(z_a: torch.Tensor, z_b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``[N, D] x [N, D] -> [D, D]`` cross-correlation of batch-standardised embeddings."""
    n = z_a.shape[0]
    za = (z_a - z_a.mean(0)) / (z_a.std(0, unbiased=False) + eps)
    zb = (z_b - z_b.mean(0)) / (z_b.std(0, unbiased=False) + eps)
    return za.t() @ zb / n


def barlow_twins_loss(c: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on + lambd * off


class BarlowTwinsLoss(nn.Module):
    def __init__(self, lambd: float = 5e-3):
        super().__init__()
        if lambd < 0:
            raise ValueError(f"lambda must be >= 0; got {lambd}")
        self.lambd = lambd

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """``z_a, z_b [N, D]`` (N >= 2) -> scalar loss."""
        if z_a.shape[0] < 2:
            raise ValueError("Barlow Twins needs a batch of at least 2")
        return barlow_twins_loss(cross_correlation(z_a, z_b), self.lambd)
