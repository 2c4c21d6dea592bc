"""The safeguards every adaptation method shares: what keeps a bad stream from ruining the model.

A reliability gate (prediction entropy and out-of-distribution score, applied by :class:`Adapter`), no
updates while idle, a class-diversity check on the recent prediction histogram, and a collapse detector
that resets to the source state; all with bounded memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque

import numpy as np

from edgessl.preprocess import STILL_STD


@dataclasses.dataclass
class Safeguards:
    """Parameters of the safeguards (shared by every method)."""

    max_entropy_frac: float = 0.4  # update only when H(p) < this × log K
    history: int = 128  # recent predictions kept for the diversity check and collapse detector
    min_history: int = 16  # no updates before this many predictions were seen
    max_class_share: float = 0.35  # skip updates for a class that dominates the recent predictions
    collapse_entropy_frac: float = 0.35  # reset if the recent histogram's entropy falls below this × log K
    max_disagreement: float = 0.35  # reset if adapted and source predictions disagree this often on recent windows
    idle_std: float = STILL_STD  # raw windows (g) with less motion than this are idle (and still)
    source_penalty: float = 0.1  # pull towards the source parameters
    check_every: int = 4  # run the collapse detector every this many windows


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of probabilities ``[..., K]`` along the last axis."""
    return -(p * np.log(np.maximum(p, 1e-12))).sum(axis=-1)


class PredictionHistory:
    """The last ``size`` (adapted, source) prediction pairs, with their class histograms and disagreement
    count kept in step (O(1) per window; Python lists of counts: a few integer updates per window are
    cheaper on them than on numpy arrays)."""

    def __init__(self, size: int, n_classes: int):
        self.pairs: deque[tuple[int, int]] = deque(maxlen=size)
        self.adapted = [0] * n_classes
        self.source = [0] * n_classes
        self.disagree = 0
        self.seen = 0  # windows recorded in all (not bounded by ``size``)

    def __len__(self) -> int:
        return len(self.pairs)

    def record(self, k: int, src: int) -> None:
        """Remember one (adapted, source) prediction pair, forgetting the oldest when full."""
        if len(self.pairs) == self.pairs.maxlen:
            ok, osrc = self.pairs[0]
            self.adapted[ok] -= 1
            self.source[osrc] -= 1
            self.disagree -= ok != osrc
        self.pairs.append((k, src))
        self.seen += 1
        self.adapted[k] += 1
        self.source[src] += 1
        self.disagree += k != src


def window_moments(window: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance of a raw window ``[C, T]``, as Python floats: two float64 reductions,
    no temporaries (the per-window path; the idle gate and the gravity calibration's still test share them)."""
    x = np.asarray(window, np.float64)
    T = x.shape[-1]
    means = [v / T for v in x.sum(-1).tolist()]
    q = np.einsum("ct,ct->c", x, x).tolist()
    return means, [qq / T - m * m for qq, m in zip(q, means, strict=True)]


def is_idle(window: np.ndarray, idle_std: float) -> bool:
    """True when no channel of the raw window ``[C, T]`` moves more than ``idle_std`` (its std)."""
    return max(window_moments(window)[1]) < idle_std**2


def collapsed(recent: PredictionHistory, sg: Safeguards, n_classes: int, check_disagreement: bool = True) -> bool:
    """True when the adapted predictions are much less diverse than the source's on the same windows, or
    (with ``check_disagreement``) disagree with them too often; never before half the history is filled."""
    return collapse_reason(recent, sg, n_classes, check_disagreement) is not None


def collapse_reason(recent: PredictionHistory, sg: Safeguards, n_classes: int, check_disagreement: bool = True
                    ) -> str | None:  # fmt: skip
    """Why :func:`collapsed` is True, in words (None when it is not)."""
    if len(recent) < sg.history // 2:
        return None
    n = len(recent)
    h = _entropy_of_counts(recent.adapted, n)
    if h < sg.collapse_entropy_frac * math.log(n_classes) and h < 0.8 * _entropy_of_counts(recent.source, n):
        return f"its last {n} answers had become far less varied than the unadapted model's"
    if check_disagreement and recent.disagree > sg.max_disagreement * n:
        return f"it disagreed with the unadapted model on {recent.disagree} of its last {n} answers"
    return None


def _entropy_of_counts(counts: list[int], n: int) -> float:
    """Entropy (nats) of the histogram ``counts / n`` (Python floats: a handful of classes, every few windows)."""
    return -sum(c / n * math.log(c / n) for c in counts if c)
