"""``edgessl inspect``: what an encoder learned, on the training split of a data set (never its test split).

* **network dissection** (after Bau et al. 2017, for 1-D units): each embedding unit's mean activation per
  class, its class selectivity ``(μ_best − μ_rest) / (μ_best + μ_rest)`` on activations shifted to be
  non-negative, and the windows that excite the most selective units most;
* **embedding correlation**: the correlation matrix of the embedding dimensions, the mean absolute
  off-diagonal correlation (redundancy) and the effective rank ``exp(H(σ / Σσ))`` of the centred
  embeddings (Roy & Vetterli 2007) — a collapsed encoder has an effective rank near 1;
* **input importance** by occlusion: a window of ``occlusion`` samples of one channel set to the channel's
  mean slides over the signal; importance is the drop of the predicted class's logit (fine-tuned
  checkpoints) or ``1 − cos`` between embeddings (pretrained encoders), drawn over the signal;
* **feature selection from correlated features**: greedily drop embedding dimensions whose |correlation|
  with a kept one exceeds a threshold, and compare linear-probe validation accuracy with all vs. kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgessl.trainer import evaluate as ev
from edgessl.trainer.data import DataConfig, label_budget_split, labelled, window_units
from edgessl.trainer.fit import load_checkpoint


def selectivity(A: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit class means ``[D, K]`` and selectivity ``[D]`` in [0, 1] of activations ``A [n, D]``."""
    A = A - A.min(0, keepdims=True)
    means = np.stack([A[y == c].mean(0) if np.any(y == c) else np.zeros(A.shape[1]) for c in range(n_classes)], 1)
    best = means.max(1)
    rest = (means.sum(1) - best) / max(n_classes - 1, 1)
    return means, (best - rest) / np.maximum(best + rest, 1e-12)


def effective_rank(E: np.ndarray) -> float:
    """``exp`` of the entropy of the normalised singular values of the centred ``E [n, D]``."""
    s = np.linalg.svd(E - E.mean(0), compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def correlation(E: np.ndarray) -> np.ndarray:
    """Correlation matrix of the dimensions of ``E``; constant dimensions correlate 0 with everything."""
    Ec = E - E.mean(0)
    sd = Ec.std(0)
    Z = Ec / np.where(sd > 0, sd, 1.0)
    C = (Z.T @ Z) / len(E)
    C[sd == 0, :] = 0
    C[:, sd == 0] = 0
    return C


def select_uncorrelated(C: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy: keep dimensions in order unless |corr| with an already kept one exceeds ``threshold``."""
    kept: list[int] = []
    for j in range(len(C)):
        if C[j, j] == 0:  # constant: carries nothing
            continue
        if all(abs(C[j, k]) <= threshold for k in kept):
            kept.append(j)
    return np.array(kept, dtype=np.int64)


def occlusion(score, x: np.ndarray, width: int) -> np.ndarray:
    """Importance ``[C, T]`` of ``x [C, T]``: ``score(batch) -> [n]`` drop for each occluded copy."""
    C, T = x.shape
    starts = list(range(0, max(T - width, 0) + 1, max(1, width // 2)))
    copies, where = [], []
    for c in range(C):
        for s in starts:
            xo = x.copy()
            xo[c, s : s + width] = x[c].mean()
            copies.append(xo)
            where.append((c, s))
    drops = score(np.stack(copies).astype(np.float32))
    imp, cnt = np.zeros((C, T)), np.zeros((C, T))
    for (c, s), d in zip(where, drops, strict=True):
        imp[c, s : s + width] += d
        cnt[c, s : s + width] += 1
    return imp / np.maximum(cnt, 1)


def _load(checkpoint: str | Path) -> tuple[torch.nn.Module, dict[str, Any], tuple[torch.Tensor, torch.Tensor] | None]:
    from edgessl.trainer.pipeline import load_pretrained_encoder

    encoder, _ = load_pretrained_encoder(checkpoint)
    ck = load_checkpoint(checkpoint)
    state = ck["model"]
    head = (state["model.head.weight"], state["model.head.bias"]) if "model.head.weight" in state else None
    return encoder.eval(), ck["config"], head


def inspect(checkpoint: str | Path, out_dir: str | Path, data: DataConfig | None = None, *, max_windows: int = 2000,
            occlusion_width: int | None = None, thresholds: tuple[float, ...] = (0.95, 0.9, 0.8, 0.7),
            seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Run the four analyses; writes ``inspect.json`` and four PNGs to ``out_dir``; returns the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder, config, head = _load(checkpoint)
    data = data or DataConfig.from_dict(config["data"])
    ds, X_all, _ = labelled(data)  # the test split is not used
    tr, va = label_budget_split(ds.y_train, seed=seed, units=window_units(ds))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(X_all), min(max_windows, len(X_all)), replace=False))
    X, y = X_all[pick], ds.y_train[pick]
    E = ev.embed(encoder, X)
    K = ds.n_classes

    means, sel = selectivity(E, y, K)
    order = np.argsort(-sel)
    C = correlation(E)
    off = np.abs(C[~np.eye(len(C), dtype=bool)])
    erank = effective_rank(E)

    E_tr, E_va = ev.embed(encoder, X_all[tr]), ev.embed(encoder, X_all[va])
    C_tr = correlation(E_tr)
    _, full = ev.linear_probe(E_tr, ds.y_train[tr], E_va, ds.y_train[va], K, seed=seed)
    selection = [{"threshold": None, "dims": int(E.shape[1]), "val_accuracy": full["val_accuracy"]}]
    for th in thresholds:
        keep = select_uncorrelated(C_tr, th)
        _, info = ev.linear_probe(E_tr[:, keep], ds.y_train[tr], E_va[:, keep], ds.y_train[va], K, seed=seed)
        selection.append({"threshold": th, "dims": int(len(keep)), "val_accuracy": info["val_accuracy"]})

    width = occlusion_width or max(4, X.shape[-1] // 16)
    examples = [int(np.flatnonzero(y == c)[0]) for c in range(K) if np.any(y == c)][:4]

    def score_for(x0: np.ndarray):
        e0 = torch.from_numpy(ev.embed(encoder, x0[None])[0])
        if head is not None:  # drop of the predicted class's logit
            logits0 = head[0] @ e0 + head[1]
            k = int(logits0.argmax())
            return lambda B: float(logits0[k]) - (torch.from_numpy(ev.embed(encoder, B)) @ head[0][k] + head[1][k]).numpy()
        u0 = e0 / e0.norm().clamp_min(1e-12)  # 1 - cosine to the unoccluded embedding
        return lambda B: 1.0 - torch.nn.functional.cosine_similarity(torch.from_numpy(ev.embed(encoder, B)), u0[None]).numpy()

    importances = [occlusion(score_for(X[i]), X[i], width) for i in examples]

    paths = {"dissection": out / "dissection.png", "top_windows": out / "top_windows.png",
             "correlation": out / "correlation.png", "importance": out / "importance.png"}  # fmt: skip
    names = list(ds.class_names)
    _plot_dissection(means, sel, order, names, paths["dissection"])
    _plot_top_windows(E, X, y, order[:4], names, ds.channel_names, paths["top_windows"])
    _plot_correlation(C, E, erank, float(off.mean()) if off.size else 0.0, paths["correlation"])
    _plot_importance(X[examples], y[examples], importances, names, ds.channel_names, width, paths["importance"])
    report = {
        "checkpoint": str(checkpoint), "dataset": ds.name, "windows": int(len(X)), "split": "train (test split unused)",
        "dissection": {"units": int(E.shape[1]), "mean_selectivity": float(sel.mean()),
                       "top_units": [{"unit": int(u), "selectivity": float(sel[u]), "class": names[int(means[u].argmax())]}
                                     for u in order[:8]]},  # fmt: skip
        "correlation": {"effective_rank": erank, "dims": int(E.shape[1]), "mean_abs_offdiag": float(off.mean()),
                        "dead_dims": int((E.std(0) == 0).sum())},  # fmt: skip
        "importance": {"method": "occlusion" + (" (predicted-class logit drop)" if head is not None else " (1 - cos)"),
                       "width": width, "windows": [{"class": names[int(y[i])],
                                                    "per_channel": dict(zip(ds.channel_names, map(float, imp.mean(1)), strict=True))}
                                                   for i, imp in zip(examples, importances, strict=True)]},  # fmt: skip
        "feature_selection": {"protocol": "linear probe, train minus 20 % validation; validation accuracy",
                              "rows": selection},  # fmt: skip
        "plots": {k: str(v) for k, v in paths.items()},
    }
    ev.write_json(out / "inspect.json", report)
    return report


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def _plot_dissection(means, sel, order, names, path) -> None:
    plt = _plt()
    top = order[: min(32, len(order))]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 2]})
    norm = means[top] / np.maximum(means[top].max(1, keepdims=True), 1e-12)
    im = a.imshow(norm, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    a.set_yticks(range(len(top)), [f"u{u} ({sel[u]:.2f})" for u in top], fontsize=6)
    a.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    a.set_title("mean activation per class (row-normalised), most selective units", fontsize=9)
    fig.colorbar(im, ax=a, fraction=0.03)
    b.hist(sel, bins=20, color="tab:blue")
    b.set_xlabel("class selectivity")
    b.set_ylabel("units")
    b.set_title(f"selectivity of {len(sel)} units (mean {sel.mean():.2f})", fontsize=9)
    _save(fig, path)


def _plot_top_windows(E, X, y, units, names, channels, path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(len(units), 3, figsize=(10, 2.0 * len(units)), squeeze=False)
    for r, u in enumerate(units):
        for c, i in enumerate(np.argsort(-E[:, u])[:3]):
            ax = axes[r, c]
            for ch in range(X.shape[1]):
                ax.plot(X[i, ch], lw=0.8, label=channels[ch] if r == 0 and c == 0 else None)
            ax.set_title(f"unit {u}: #{c + 1}, {names[int(y[i])]} (act {E[i, u]:.2f})", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("top-activating training windows of the most class-selective units", fontsize=9)
    _save(fig, path)


def _plot_correlation(C, E, erank, mean_off, path) -> None:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.8))
    im = a.imshow(np.abs(C), cmap="magma", vmin=0, vmax=1)
    a.set_title(f"|correlation| of embedding dims (mean off-diag {mean_off:.2f})", fontsize=9)
    fig.colorbar(im, ax=a, fraction=0.046)
    s = np.linalg.svd(E - E.mean(0), compute_uv=False)
    b.semilogy(np.arange(1, len(s) + 1), s / max(s[0], 1e-12), marker=".")
    b.set_xlabel("component")
    b.set_ylabel("singular value / largest")
    b.set_title(f"spectrum: effective rank {erank:.1f} of {E.shape[1]}", fontsize=9)
    _save(fig, path)


def _plot_importance(X, y, imps, names, channels, width, path) -> None:
    plt = _plt()
    n, C = len(X), X.shape[1]
    fig, axes = plt.subplots(n, C, figsize=(3.4 * C, 2.0 * n), squeeze=False)
    vmax = max(float(np.max(np.abs(i))) for i in imps) or 1.0
    for r in range(n):
        for c in range(C):
            ax = axes[r, c]
            sig = X[r, c]
            lo, hi = float(sig.min()), float(sig.max()) + 1e-6
            ax.imshow(imps[r][c][None], aspect="auto", cmap="Reds", vmin=0, vmax=vmax,
                      extent=(0, len(sig), lo, hi), alpha=0.8)  # fmt: skip
            ax.plot(sig, color="black", lw=0.8)
            ax.set_title(f"{names[int(y[r])]} · {channels[c]}", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"occlusion importance ({width}-sample windows; darker = more important)", fontsize=9)
    _save(fig, path)


__all__ = ["correlation", "effective_rank", "inspect", "occlusion", "select_uncorrelated", "selectivity"]
