"""SS-GAN: a GAN whose discriminator also predicts which signal transform was applied (Chen et al., CVPR 2019).

The image version rotates by 0/90/180/270°; for IMU windows the transform set is the four that keep a
window a plausible signal: identity, time flip, sign flip, and both. With ``V(G, D)`` the GAN value and
``Q_D(r | x^r)`` the discriminator's transform classifier on ``x`` transformed by ``r``:

    L_D = -V(G, D) - β · E_{x~data} E_r log Q_D(r | x^r)        (discriminator; transforms of real windows)
    L_G =  V_G(G, D) - α · E_{x~G}  E_r log Q_D(r | x^r)        (generator; transforms of generated windows)

with the non-saturating form ``V_G = -E_{z} log D(G(z))`` for the generator and
``V = E_data log D(x) + E_z log(1 - D(G(z)))``. Defaults α = 0.2, β = 1 are the paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_TRANSFORMS = 4  # identity, time flip, sign flip, both


def apply_transform(x: torch.Tensor, r: int) -> torch.Tensor:
    """Transform ``r`` of ``x [B, C, T]``: 0 identity, 1 time flip, 2 sign flip, 3 both."""
    if r not in range(N_TRANSFORMS):
        raise ValueError(f"transform index must be in 0..{N_TRANSFORMS - 1}; got {r}")
    if r & 1:
        x = x.flip(-1)
    if r & 2:
        x = -x
    return x


def all_transforms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every transform of every window: ``[4B, C, T]`` and the transform index of each row ``[4B]``."""
    views = torch.cat([apply_transform(x, r) for r in range(N_TRANSFORMS)])
    r = torch.arange(N_TRANSFORMS, device=x.device).repeat_interleave(x.shape[0])
    return views, r


def discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor, real_transform_logits: torch.Tensor,
                       real_transform: torch.Tensor, beta: float = 1.0) -> torch.Tensor:  # fmt: skip
    """``-V(G, D) - β E log Q_D`` from logits: ``real_logit [B]``, ``fake_logit [B]``, ``[4B, 4]``, ``[4B]``."""
    gan = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()  # -log σ(d_real) - log(1 - σ(d_fake))
    return gan + beta * F.cross_entropy(real_transform_logits, real_transform)


def generator_loss(fake_logit: torch.Tensor, fake_transform_logits: torch.Tensor, fake_transform: torch.Tensor,
                   alpha: float = 0.2) -> torch.Tensor:  # fmt: skip
    """Non-saturating ``-E log D(G(z)) - α E log Q_D(r | G(z)^r)``."""
    return F.softplus(-fake_logit).mean() + alpha * F.cross_entropy(fake_transform_logits, fake_transform)


class SSGANLoss(nn.Module):
    """Holds α and β; ``d_loss`` and ``g_loss`` are the two players' objectives."""

    def __init__(self, alpha: float = 0.2, beta: float = 1.0):
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0; got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta

    def d_loss(self, real_logit, fake_logit, real_transform_logits, real_transform) -> torch.Tensor:
        return discriminator_loss(real_logit, fake_logit, real_transform_logits, real_transform, self.beta)

    def g_loss(self, fake_logit, fake_transform_logits, fake_transform) -> torch.Tensor:
        return generator_loss(fake_logit, fake_transform_logits, fake_transform, self.alpha)
