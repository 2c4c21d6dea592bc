"""Tokenized masked modeling in the style of BEiT (Bao et al., ICLR 2022), for 1-D signals.

BEiT predicts, at masked image patches, the discrete token a separately trained tokenizer gives each patch.
Here the tokenizer is a k-means codebook over time patches (all channels of ``patch`` consecutive samples,
flattened): the token of a patch is its nearest centroid. The objective is the cross-entropy of the
predicted token distribution at masked patches only:

    L = -1/|M| Σ_{(b, j) ∈ M} log p_θ(token(x_{b, j}) | x with M masked)

The mask is the same patch mask as the MAE-style objective (40–75 % of patches), so the two are comparable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, T // patch, C · patch]`` (a trailing partial patch is dropped)."""
    b, c, t = x.shape
    n = t // patch
    if n < 1:
        raise ValueError(f"window of {t} samples is shorter than one patch of {patch}")
    return x[..., : n * patch].reshape(b, c, n, patch).permute(0, 2, 1, 3).reshape(b, n, c * patch)


def kmeans(v: torch.Tensor, k: int, iters: int = 25, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding on rows of ``v [N, D]``; returns ``[k, D]`` centroids."""
    if len(v) < k:
        raise ValueError(f"k-means needs at least k={k} vectors; got {len(v)}")
    v = v.float()
    first = int(torch.randint(len(v), (1,), generator=generator))
    cents = [v[first]]
    d2 = (v - cents[0]).pow(2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / len(d2))
        i = int(torch.multinomial(p, 1, generator=generator))
        cents.append(v[i])
        d2 = torch.minimum(d2, (v - v[i]).pow(2).sum(1))
    c = torch.stack(cents)
    for _ in range(iters):
        assign = torch.cdist(v, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, v)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)  # an empty cluster keeps its centroid
    return c


def tokenize(x: torch.Tensor, codebook: torch.Tensor, patch: int) -> torch.Tensor:
    """Token ids ``[B, T // patch]``: the nearest codebook row to each patch."""
    p = patches(x, patch)
    return torch.cdist(p.float(), codebook.unsqueeze(0).expand(p.shape[0], -1, -1).float()).argmin(-1)


def masked_token_loss(logits: torch.Tensor, tokens: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at masked patches. ``logits [B, N, K]``, ``tokens [B, N]``, ``patch_mask [B, N]`` bool."""
    if not bool(patch_mask.any()):
        raise ValueError("no patch is masked")
    return F.cross_entropy(logits[patch_mask], tokens[patch_mask])


class MaskedTokenLoss(nn.Module):
    def forward(self, logits: torch.Tensor, tokens: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        return masked_token_loss(logits, tokens, patch_mask)
