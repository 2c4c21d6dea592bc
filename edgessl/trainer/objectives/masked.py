"""Masked reconstruction (MAE-style, He et al. 2022, adapted to 1-D signals).

The window's time axis is cut into patches; a random 40–75 % of them are masked (set to zero in the
input), and the model reconstructs the signal; the loss is the mean squared error over masked samples only.
"""

from __future__ import annotations

import torch
from torch import nn


def random_patch_mask(batch: int, length: int, patch: int, ratio: float, generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> torch.Tensor:  # fmt: skip
    """``[batch, length]`` bool mask, True where masked: ``round(ratio · n_patches)`` whole patches per row."""
    n_patches = -(-length // patch)
    n_mask = max(1, int(round(ratio * n_patches)))
    scores = torch.rand(batch, n_patches, generator=generator, device=device)
    chosen = scores.argsort(dim=1)[:, :n_mask]
    pm = torch.zeros(batch, n_patches, dtype=torch.bool, device=device)
    pm.scatter_(1, chosen, True)
    return pm.repeat_interleave(patch, dim=1)[:, :length]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(pred - target)²`` over masked time steps (all channels). ``mask [B, T]``."""
    m = mask.unsqueeze(1).expand_as(target).to(pred.dtype)
    return ((pred - target).pow(2) * m).sum() / m.sum().clamp_min(1)


class MaskedReconstructionLoss(nn.Module):
    """Draws the mask ratio uniformly in ``[min_ratio, max_ratio]`` per batch (defaults 0.4–0.75)."""

    def __init__(self, patch: int = 8, min_ratio: float = 0.4, max_ratio: float = 0.75):
        super().__init__()
        if not 0 < min_ratio <= max_ratio < 1 or patch < 1:
            raise ValueError(f"need 0 < min_ratio <= max_ratio < 1 and patch >= 1; got {min_ratio}, {max_ratio}, {patch}")
        self.patch, self.min_ratio, self.max_ratio = patch, min_ratio, max_ratio

    def sample_mask(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        r = self.min_ratio + (self.max_ratio - self.min_ratio) * float(torch.rand(1, generator=generator))
        return random_patch_mask(x.shape[0], x.shape[-1], self.patch, r, generator, x.device)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mse(pred, target, mask)
