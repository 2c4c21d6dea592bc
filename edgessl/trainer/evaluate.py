"""Evaluation: linear probe, cosine k-NN, accuracy, predictions, confusion matrices, reports and plots.

Model selection (probe weight decay, k, fine-tuning epoch) always uses a validation split carved from the
training data; the test split is used once, at the end, by the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def embed(encoder: nn.Module, X: np.ndarray, batch: int = 512, device: torch.device | None = None) -> np.ndarray:
    """``X [n, C, T] -> [n, D]`` embeddings with the encoder in eval mode."""
    device = device or next(encoder.parameters()).device
    encoder.eval()
    out = [encoder(torch.from_numpy(X[i : i + batch]).to(device)).float().cpu() for i in range(0, len(X), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(y)).mean()) if len(y) else float("nan")


def knn_predict(train_e: np.ndarray, train_y: np.ndarray, query: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    """Cosine k-NN with similarity-weighted votes."""
    a = train_e / np.maximum(np.linalg.norm(train_e, axis=1, keepdims=True), 1e-12)
    b = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    sim = b @ a.T
    k = min(k, len(train_y))
    nn_idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    votes = np.zeros((len(query), n_classes))
    w = np.take_along_axis(sim, nn_idx, 1)
    np.add.at(votes, (np.arange(len(query))[:, None], train_y[nn_idx]), np.exp(w / 0.07))
    return votes.argmax(1)


def knn_select(train_e, train_y, val_e, val_y, n_classes, ks=(1, 3, 5, 10, 20)) -> tuple[int, float]:
    """The k with the best validation accuracy (ties to the smaller k)."""
    scores = [(accuracy(knn_predict(train_e, train_y, val_e, k, n_classes), val_y), -k) for k in ks if k <= len(train_y)]
    best = max(scores)
    return -best[1], best[0]


def linear_probe(train_e, train_y, val_e, val_y, n_classes, wds=(0.0, 1e-4, 1e-3, 1e-2, 1e-1), seed: int = 0):
    """Multinomial logistic regression on standardised frozen embeddings; weight decay chosen on validation.

    Returns:
        ``(predict_fn, info)`` where ``predict_fn(E) -> labels`` uses the selected model.
    """
    mu, sd = train_e.mean(0), train_e.std(0) + 1e-6
    Xt = torch.from_numpy(((train_e - mu) / sd).astype(np.float32))
    yt = torch.from_numpy(train_y.astype(np.int64))
    Xv = torch.from_numpy(((val_e - mu) / sd).astype(np.float32))
    best = None
    for wd in wds:
        torch.manual_seed(seed)
        lin = nn.Linear(Xt.shape[1], n_classes)
        opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

        def closure(lin=lin, opt=opt, wd=wd):
            opt.zero_grad()
            loss = F.cross_entropy(lin(Xt), yt) + wd * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = accuracy(lin(Xv).argmax(1).numpy(), val_y)
        if best is None or acc > best[0]:
            best = (acc, wd, lin)
    assert best is not None
    acc, wd, lin = best

    def predict(E: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return lin(torch.from_numpy(((E - mu) / sd).astype(np.float32))).argmax(1).numpy()

    return predict, {"weight_decay": wd, "val_accuracy": acc}


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray, batch: int = 512) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model(torch.from_numpy(X[i : i + batch]).to(device)).float().cpu()
                      for i in range(0, len(X), batch)]).numpy()  # fmt: skip


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 0.8 + 0.6 * len(labels)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_embedding(E: np.ndarray, y: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """2-D PCA map of embeddings, one colour per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Ec = E - E.mean(0)
    _, s, vt = np.linalg.svd(Ec, full_matrices=False)
    P = Ec @ vt[:2].T
    var = (s[:2] ** 2 / max((s**2).sum(), 1e-12)) * 100
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for c, name in enumerate(labels):
        m = y == c
        ax.scatter(P[m, 0], P[m, 1], s=6, alpha=0.6, color=cmap(c % cmap.N), label=name)
    ax.set_xlabel(f"PC1 ({var[0]:.0f}% var)")
    ax.set_ylabel(f"PC2 ({var[1]:.0f}% var)" if len(var) > 1 else "PC2")
    ax.set_title(title, fontsize=9)
    ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float) + "\n")
