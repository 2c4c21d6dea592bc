"""SimCLR's NT-Xent loss (Chen et al. 2020, eq. 1).

For 2N views (z_1..z_N from view a, z_{N+1}..z_{2N} from view b), with s_ij the cosine similarity:

    l(i, j) = -log( exp(s_ij / τ) / Σ_{k ≠ i} exp(s_ik / τ) ),    L = 1/(2N) Σ_k [l(2k-1, 2k) + l(2k, 2k-1)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cosine_similarity_matrix(z: torch.Tensor) -> torch.Tensor:
    """``z [M, D] -> [M, M]`` pairwise cosine similarities."""
    z = F.normalize(z, dim=1)
    return z @ z.t()


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent over the 2N views of ``z_a, z_b [N, D]``; positives are the rows with the same index."""
    n = z_a.shape[0]
    z = torch.cat([z_a, z_b], 0)
    logits = cosine_similarity_matrix(z) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class NTXentLoss(nn.Module):
    """NT-Xent with temperature τ (default 0.1, the SimCLR paper's ImageNet setting)."""

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.temperature = temperature

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """``z_a, z_b [N, D]`` projections of two views -> scalar loss."""
        return nt_xent(z_a, z_b, self.temperature)
