"""BatchNorm statistics re-estimated on unlabelled windows (AdaBN, Li et al. 2016), per set or per group."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edgessl.trainer.evaluate import predict_logits


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, X: np.ndarray, batch: int = 1024) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are re-estimated on the windows ``X`` (AdaBN, Li et al.
    2016): no labels, no gradients, every weight unchanged; ``model`` itself is left as it was.

    The statistics are the plain average over batches of ``batch`` windows (one batch for a few hundred)."""
    if len(X) < 2:
        raise ValueError(f"BatchNorm adaptation needs at least 2 windows; got {len(X)}")
    m = copy.deepcopy(model)
    norms = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("the model has no BatchNorm layer to adapt")
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    device = next(m.parameters()).device
    m.eval()
    for bn in norms:
        bn.train()
    for i in range(0, len(X), batch):
        m(torch.from_numpy(X[i : i + batch]).to(device))
    m.eval()
    return m


def group_adapted_logits(model: nn.Module, X: np.ndarray, groups: np.ndarray, crossfit_seed: int | None = None
                         ) -> np.ndarray:  # fmt: skip
    """Logits of ``model`` with its BatchNorm statistics re-estimated per group (e.g. per user) on that group's
    unlabelled windows: test-time adaptation to each person or device.

    With ``crossfit_seed`` each group is split at random into two halves and every window is predicted by the
    model adapted on the *other* half, so no window takes part in its own statistics.
    """
    groups = np.asarray(groups)
    if groups.shape != (len(X),):
        raise ValueError(f"groups must give one id per window: {groups.shape} for {len(X)} windows")
    out = np.zeros((len(X), 0), np.float32)
    rng = np.random.default_rng(crossfit_seed)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if crossfit_seed is None:
            parts = [(rows, rows)]
        else:
            if len(rows) < 4:
                raise ValueError(f"group {g} has {len(rows)} windows; cross-fitted adaptation needs at least 4")
            half = rng.permutation(rows)
            a, b = np.sort(half[: len(rows) // 2]), np.sort(half[len(rows) // 2 :])
            parts = [(b, a), (a, b)]  # (predicted rows, adaptation rows)
        for pred_rows, fit_rows in parts:
            logits = predict_logits(adapt_batchnorm(model, X[fit_rows]), X[pred_rows])
            if out.shape[1] == 0:
                out = np.zeros((len(X), logits.shape[1]), np.float32)
            out[pred_rows] = logits
    return out
