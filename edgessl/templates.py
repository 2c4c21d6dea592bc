"""Template matching for enrollment (numpy only): dynamic time warping between windows.

A user's own performances are the best description of how that user makes a gesture: on uWave, the nearest
of a new user's own takes by DTW answers 0.93 (one take per class) where the few-label encoder's head answers
0.76 (docs/results.md, "Enrollment"). The enrolled decision (:mod:`edgessl.edge_runtime.enroll`) adds this distance to the head's
logits. Windows are compared after a per-window standardisation (each channel's mean removed, all channels
divided by their mean standard deviation: the direction and relative size of the axes stay, an overall
gain does not matter), with a Sakoe–Chiba band of a tenth of the window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BAND", "class_templates", "dtw_distances", "standardise", "template_scale"]

BAND = 0.1  # Sakoe-Chiba band as a fraction of the window length


def standardise(X: np.ndarray) -> np.ndarray:
    """``[..., C, T]`` windows -> each channel's mean removed, divided by the channels' mean standard deviation."""
    X = np.asarray(X, np.float64)
    Z = X - X.mean(-1, keepdims=True)
    return Z / (Z.std(-1, keepdims=True).mean(-2, keepdims=True) + 1e-6)


def dtw_distances(q: np.ndarray, templates: np.ndarray, band: float = BAND) -> np.ndarray:
    """DTW distance (sum of squared differences along the best warping path) of one standardised window
    ``q [C, T]`` to each of ``templates [M, C, T]`` (standardised, same ``T``); ``[M]``.

    The recursion runs over the anti-diagonals of the cost matrix, each one a vector operation over the
    templates and the cells inside the band, so the cost is about ``2T`` small numpy calls.
    """
    M, _, T = templates.shape
    if M == 0:
        return np.zeros(0)
    w = max(1, int(round(band * T)))
    cost = (q**2).sum(0)[None, :, None] + (templates**2).sum(1)[:, None, :] - 2.0 * np.einsum("ci,mcj->mij", q, templates)
    D = np.full((M, T + 1, T + 1), np.inf)
    D[:, 0, 0] = 0.0
    for d in range(2, 2 * T + 1):
        i = np.arange(max(1, d - T), min(T, d - 1) + 1)
        i = i[np.abs(2 * i - d) <= w]
        if len(i) == 0:
            continue
        j = d - i
        D[:, i, j] = cost[:, i - 1, j - 1] + np.minimum(np.minimum(D[:, i - 1, j], D[:, i, j - 1]), D[:, i - 1, j - 1])
    return np.maximum(D[:, T, T], 0.0)


def template_scale(templates: np.ndarray, classes: np.ndarray) -> float:
    """The distance between two different gestures: the median DTW distance between standardised templates
    of different classes (1.0 when there are no two classes)."""
    classes = np.asarray(classes)
    if len(np.unique(classes)) < 2:
        return 1.0
    D = np.stack([dtw_distances(t, templates) for t in templates])
    d = D[classes[:, None] != classes[None, :]]
    return float(max(np.median(d), 1e-6))


def class_templates(X: np.ndarray, y: np.ndarray, n_classes: int, per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The ``per_class`` windows of each class nearest its mean (standardised, Euclidean): typical
    performances the bundle carries so that an enrolled decision can compare a window with every class,
    enrolled or not. Returns ``(windows [M, C, T] as given, classes [M])``; a class without windows has none."""
    Z = standardise(X)
    keep: list[int] = []
    for c in range(n_classes):
        idx = np.flatnonzero(np.asarray(y) == c)
        if len(idx):
            d = ((Z[idx] - Z[idx].mean(0)) ** 2).sum((1, 2))
            keep += idx[np.argsort(d, kind="stable")[:per_class]].tolist()
    k = np.array(keep, np.int64)
    return np.asarray(X, np.float32)[k], np.asarray(y, np.int64)[k]
