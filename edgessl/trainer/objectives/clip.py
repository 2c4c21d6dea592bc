"""IMU–text alignment in the style of CLIP (Radford et al., ICML 2021).

CLIP contrasts each image with each caption of a batch. Here a caption is the description of a window's
class, so several windows of a batch share one text; the loss keeps CLIP's two directions and its learned
temperature ``s = exp(logit_scale)`` on cosine similarities, with the class texts as the text side:

    L_{imu→text} = -1/B Σ_i log softmax_c(s · u_i·t_c)[y_i]                  (over the classes trained on)
    L_{text→imu} = -1/|C_B| Σ_{c ∈ C_B} 1/|P_c| Σ_{i ∈ P_c} log softmax_j(s · t_c·u_j)[i]
    L = (L_{imu→text} + L_{text→imu}) / 2

``u`` are unit window embeddings, ``t`` unit text embeddings, ``C_B`` the classes present in the batch and
``P_c`` its windows of class ``c``. With one window per class this is exactly CLIP's symmetric loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def clip_loss(u: torch.Tensor, t: torch.Tensor, y: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``u [B, D]`` window embeddings, ``t [K, D]`` class-text embeddings, ``y [B]`` in ``0..K-1``."""
    u, t = F.normalize(u, dim=1), F.normalize(t, dim=1)
    logits = logit_scale.exp() * u @ t.T  # [B, K]
    l_it = F.cross_entropy(logits, y)
    log_p = F.log_softmax(logits.T, dim=1)  # [K, B]: each text against the batch's windows
    onehot = F.one_hot(y, t.shape[0]).T.to(log_p.dtype)  # [K, B]
    present = onehot.sum(1) > 0
    l_ti = -((log_p * onehot).sum(1)[present] / onehot.sum(1)[present]).mean()
    return 0.5 * (l_it + l_ti)


class CLIPLoss(nn.Module):
    """The loss with CLIP's learned temperature (initialised at 0.07, clamped at 100 as in the paper)."""

    def __init__(self, init_temperature: float = 0.07):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def forward(self, u: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return clip_loss(u, t, y, self.logit_scale.clamp(max=math.log(100.0)))
