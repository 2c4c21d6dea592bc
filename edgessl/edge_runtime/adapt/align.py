"""The moment-alignment optimiser behind input-side adaptation: the affine map that gives a shifted 3-axis
accelerometer signal the training signal's mean, covariance and lagged covariances."""

from __future__ import annotations

import numpy as np


def _sym_power(C: np.ndarray, p: float) -> np.ndarray:
    w, V = np.linalg.eigh(C)
    return (V * np.maximum(w, 1e-12) ** p) @ V.T


def rotations(v: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` from rotation vectors ``[..., 3]`` (Rodrigues)."""
    th = np.linalg.norm(v, axis=-1)
    k = v / np.maximum(th, 1e-12)[..., None]
    K = np.zeros((*v.shape[:-1], 3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    s, c = np.sin(th)[..., None, None], np.cos(th)[..., None, None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def align_moments(src: dict[str, np.ndarray], tgt: dict[str, np.ndarray], prior: np.ndarray | None = None,
                  gravity_weight: float = 1.0, ortho_weight: float = 0.05,
                  rng: np.random.Generator | None = None, global_candidates: int = 256,
                  local_steps: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The affine input correction ``x -> A x + c`` that gives a shifted 3-axis signal the source moments.

    ``A = C_s^{1/2} Q C_t^{-1/2}`` matches the mean and covariance exactly for any rotation ``Q``; ``Q`` is
    chosen so that the whitened lagged covariances match too (they rotate with ``Q`` under a mounting
    rotation and are unchanged by per-axis gains only up to that whitening), with a soft preference for
    ``A`` mapping the shifted mean (mostly gravity) onto the source mean, which settles the sign
    ambiguities of a pure lagged-covariance match. A global random search over rotations (plus the
    identity and ``prior``, the previous solution), then a local random search around the best.

    Args:
        src, tgt: moments ``{"mean" [3], "cov" [3, 3], "lagcov" [L, 3, 3]}`` of the training signal and of
            the stream (:func:`edgessl.preprocess.signal_moments`).
    Returns:
        ``(A [3, 3], c [3], Q [3, 3])``.
    """
    rng = rng or np.random.default_rng(0)
    Hs, Wt = _sym_power(src["cov"], 0.5), _sym_power(tgt["cov"], -0.5)
    Ws = _sym_power(src["cov"], -0.5)
    Ms, Mt = Ws @ src["lagcov"] @ Ws, Wt @ tgt["lagcov"] @ Wt
    ms_norm = float((Ms**2).sum())
    mu_s, mu_t = src["mean"], tgt["mean"]
    g_norm = max(float(mu_s @ mu_s), 1e-12)

    def objective(Q: np.ndarray) -> np.ndarray:  # Q [K, 3, 3]
        d = np.einsum("kab,lbc,kdc->klad", Q, Mt, Q) - Ms[None]
        A = np.einsum("ab,kbc,cd->kad", Hs, Q, Wt)
        g = A @ mu_t - mu_s
        # a mounting is a rotation (times gains near 1): among maps that match the moments about equally
        # well, prefer the one closest to a scaled rotation
        AtA = np.einsum("kba,kbc->kac", A, A)
        AtA /= np.maximum(np.einsum("kii->k", AtA) / 3, 1e-12)[:, None, None]
        ortho = ((AtA - np.eye(3)) ** 2).sum((1, 2))
        return (d**2).sum((1, 2, 3)) / ms_norm + gravity_weight * (g**2).sum(-1) / g_norm + ortho_weight * ortho

    v = rng.normal(size=(global_candidates, 3))
    v *= (np.pi * rng.uniform(0, 1, (global_candidates, 1)) ** (1 / 3)) / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    Q = np.concatenate([np.eye(3)[None], rotations(v), *([] if prior is None else [prior[None]])])
    f = objective(Q)
    starts = Q[np.argsort(f)[:4]]
    # the lagged covariances cannot tell a solution from its half-turns about their common axes (signs of
    # axes); try those explicitly, so that the mean decides between them rather than the search's luck
    _, V = np.linalg.eigh(Ms.sum(0))
    F = np.stack([V @ np.diag(d) @ V.T for d in ((1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1))])
    starts = np.einsum("fab,sbc->sfac", F, starts).reshape(-1, 3, 3)
    # a local random search from each of the most promising starts
    best, fb = starts[0], np.inf
    for start in starts[np.argsort(objective(starts))[: 4 if global_candidates else 1]]:
        q, fq, step = start, float(objective(start[None])[0]), 0.2
        for _ in range(local_steps):
            cand = rotations(rng.normal(size=(16, 3)) * step) @ q
            fc = objective(cand)
            if fc.min() < fq:
                q, fq = cand[int(fc.argmin())], float(fc.min())
            else:
                step *= 0.6
        if fq < fb:
            best, fb = q, fq
    A = Hs @ best @ Wt
    return A, mu_s - A @ mu_t, best
