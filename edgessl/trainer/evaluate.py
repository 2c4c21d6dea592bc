"""Evaluation: linear probe, cosine k-NN, full fine-tuning, few-label regimes, reports and plots.

Model selection (probe weight decay, k, fine-tuning epoch) always uses a validation split carved from the
training data; the test split is used once, at the end, by the caller.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from edgessl.trainer.augment import Augmentation, Compose, rotation_view
from edgessl.trainer.fit import frozen_batchnorm_statistics


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


class Classifier(nn.Module):
    """Encoder + linear head: ``[B, C, T] -> [B, n_classes]`` logits."""

    def __init__(self, encoder: nn.Module, n_classes: int, out_dim: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(out_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def finetune_augment(rotate_degrees: float = 0.0, triads: Sequence[Sequence[int]] = ()) -> Compose:
    """Light label-preserving views for supervised fine-tuning with few labels.

    With ``rotate_degrees > 0``, half of the windows also turn their axis ``triads`` by one random rotation
    of at most that angle (the sensor worn at another angle by another person).
    """
    ops = [
        Augmentation("time_warp", 0.5, {"sigma": 0.15}),
        Augmentation("magnitude_warp", 0.5, {"sigma": 0.15}),
        Augmentation("scaled_noise", 0.5, {"sigma": 0.05}),
    ]
    if rotate_degrees > 0:
        ops.insert(0, rotation_view(rotate_degrees, triads))
    return Compose(ops)


def strong_augment() -> Compose:
    """Heavier label-preserving views: the "strong" branch of consistency training (FixMatch's
    RandAugment counterpart for time series). No flips: they change a gesture's class."""
    return Compose([
        Augmentation("crop_resize", 0.5, {"min_scale": 0.7}),
        Augmentation("time_warp", 0.8, {"sigma": 0.3}),
        Augmentation("magnitude_warp", 0.8, {"sigma": 0.3}),
        Augmentation("scaled_noise", 0.8, {"sigma": 0.15}),
        Augmentation("blockout", 0.5, {"fraction": 0.15}),
    ])  # fmt: skip


N_TRANSFORMS = 4  # identity, time flip, sign flip, both: the TTT self-supervised task


def apply_transform(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Apply transform ``t[i]`` in {0: identity, 1: time flip, 2: sign flip, 3: both} to window ``x[i]``."""
    flip_time = ((t == 1) | (t == 3)).view(-1, 1, 1)
    flip_sign = ((t == 2) | (t == 3)).view(-1, 1, 1).to(x.dtype)
    x = torch.where(flip_time, x.flip(-1), x)
    return x * (1 - 2 * flip_sign)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Mix each window with a random partner from the same batch.

    Args:
        x: ``[B, C, T]`` windows; y: ``[B]`` labels; alpha: the Beta distribution's parameter;
        g: the generator that draws the permutation and the weights (on ``x``'s device).

    Returns:
        ``(mixed [B, C, T], partner labels [B], lam [B])`` with ``lam`` in [0.5, 1], the weight of ``x``'s
        own window and label.
    """
    perm = torch.randperm(len(x), generator=g, device=x.device)
    u = torch.rand(len(x), generator=g, device=x.device, dtype=torch.float64)
    # Beta draws by the inverse CDF of a seeded uniform: torch's Beta sampler takes no generator
    lam = torch.from_numpy(scipy.special.betaincinv(alpha, alpha, u.cpu().numpy())).to(x.device, torch.float32)
    lam = torch.maximum(lam, 1 - lam)
    w = lam.view(-1, 1, 1).to(x.dtype)
    return w * x + (1 - w) * x[perm], y[perm], lam


class SupervisedMethod(nn.Module):
    """Cross-entropy on augmented labelled windows, for the same ``fit()`` loop as pretraining.

    With ``ssl_weight > 0`` a self-supervised head is trained jointly (TTT, Sun et al. 2020): it predicts
    which of four transforms was applied to the window from the shared embedding. The device later adapts
    to new users by minimising that head's loss, without labels.

    With ``unlabelled`` windows and ``consistency_weight > 0`` it is FixMatch (Sohn et al. 2020): each step
    also draws ``unlabelled_ratio`` unlabelled windows per labelled one, predicts a weakly augmented view,
    and where that prediction is confident (max probability >= ``threshold``) trains the strongly augmented
    view to the predicted class. Labelled, weak and strong views go through the network as one batch, so
    BatchNorm sees all of them.

    With ``mixup_alpha > 0`` the labelled windows are mixed in pairs (mixup, Zhang et al. 2018): window ``i``
    becomes ``lam_i * x_i + (1 - lam_i) * x_p(i)`` for a random permutation ``p`` of the batch, with one
    ``lam_i ~ Beta(alpha, alpha)`` per window folded to ``max(lam_i, 1 - lam_i)`` (so window ``i`` stays
    the larger part), and its loss is the same mixture of the two labels' cross-entropies.

    With ``teachers`` (fine-tuned classifiers of the same classes and inputs, e.g. a larger model or an
    ensemble) and ``distill_weight`` a in (0, 1] it is knowledge distillation (Hinton et al. 2015): the loss
    is ``(1 - a) * CE + a * T**2 * KL(p_teacher || p_student)`` at temperature ``T``, where ``p_teacher`` is
    the teachers' mean softened probability on the *same* augmented (and mixed) view the student sees
    (consistent views, Beyer et al. 2022). Teachers stay frozen in eval mode and outside the state dict.
    With ``distill_unlabelled`` the student also matches the teachers on unlabelled windows: every step draws
    ``unlabelled_ratio`` windows per labelled one from ``unlabelled`` (the same draw as FixMatch's, when both
    run), and adds ``a * T**2 * KL(p_teacher || p_student)`` on their strongly augmented views, teacher and
    student on the same view (function matching on unlabelled data; Beyer et al. 2022, Xie et al. 2020).
    """

    def __init__(self, model: Classifier, augment: Compose | None = None, label_smoothing: float = 0.1,
                 frozen_encoder: bool = False, ssl_weight: float = 0.0, out_dim: int | None = None,
                 unlabelled: torch.Tensor | None = None, consistency_weight: float = 0.0, threshold: float = 0.8,
                 unlabelled_ratio: int = 4, strong: Compose | None = None, mixup_alpha: float = 0.0,
                 teachers: Sequence[nn.Module] = (), distill_weight: float = 0.0,
                 distill_temperature: float = 1.0, distill_unlabelled: bool = False):  # fmt: skip
        super().__init__()
        if distill_unlabelled and not (teachers and unlabelled is not None and len(unlabelled)):
            raise ValueError(f"distillation on unlabelled windows needs teachers and unlabelled windows; got "
                             f"{len(teachers)} teacher(s), {0 if unlabelled is None else len(unlabelled)} unlabelled "
                             "window(s)")  # fmt: skip
        self.distill_unlabelled = distill_unlabelled
        if not 0 <= distill_weight <= 1 or not distill_temperature > 0 or bool(teachers) != (distill_weight > 0):
            raise ValueError(f"distillation needs teachers, a weight in (0, 1] and a temperature > 0 (no teachers: "
                             f"weight 0); got {len(teachers)} teacher(s), weight {distill_weight}, temperature "
                             f"{distill_temperature}")  # fmt: skip
        # a plain list, not a ModuleList: the teachers must not train, switch to train mode, or enter checkpoints
        self._teachers = [t.eval().requires_grad_(False) for t in teachers]
        self.distill_weight, self.distill_temperature = distill_weight, distill_temperature
        if consistency_weight < 0 or not 0 < threshold <= 1 or unlabelled_ratio < 1:
            raise ValueError(f"consistency_weight must be >= 0, threshold in (0, 1], unlabelled_ratio >= 1; got "
                             f"{consistency_weight}, {threshold}, {unlabelled_ratio}")  # fmt: skip
        if not mixup_alpha >= 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0: off; 0.2-0.4 are usual); got {mixup_alpha}")
        self.mixup_alpha = mixup_alpha
        self.consistency_weight = consistency_weight if unlabelled is not None and len(unlabelled) else 0.0
        self.threshold = threshold
        self.unlabelled_ratio = unlabelled_ratio
        self.strong = strong or strong_augment()
        # a buffer so that fit() moves it to the device; not persistent: it is data, not weights
        self.register_buffer("unlabelled", unlabelled if self.consistency_weight or distill_unlabelled else None,
                             persistent=False)  # fmt: skip
        self.model = model
        self.augment = augment
        self.label_smoothing = label_smoothing
        self.frozen_encoder = frozen_encoder
        self.ssl_weight = ssl_weight
        self.ssl_head = nn.Linear(out_dim or model.head.in_features, N_TRANSFORMS) if ssl_weight > 0 else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_encoder:
            self.model.encoder.eval()  # a linear probe must not move BatchNorm statistics
        return self

    def loss(self, batch, g):
        x, y = batch
        if self.augment is not None:
            with torch.no_grad():
                x = self.augment(x, g)
        lam = None
        if self.mixup_alpha:
            x, y2, lam = mixup(x, y, self.mixup_alpha, g)
        if self.consistency_weight or self.distill_unlabelled:
            u = self.unlabelled[torch.randint(0, len(self.unlabelled), (self.unlabelled_ratio * len(x),),
                                              generator=g, device=x.device)]  # fmt: skip
            with torch.no_grad():
                weak = (self.augment(u, g) if self.augment is not None else u) if self.consistency_weight else u[:0]
                strong = self.strong(u, g)
            out = self.model(torch.cat([x, weak, strong]))
            logits, lw, ls = out[: len(x)], out[len(x) : len(x) + len(weak)], out[len(x) + len(weak) :]
        else:
            logits = self.model(x)
        if self.consistency_weight:
            conf, pseudo = F.softmax(lw.detach().float(), 1).max(1)
            mask = (conf >= self.threshold).float()
            unsup = (F.cross_entropy(ls.float(), pseudo, reduction="none") * mask).mean()
        if lam is None:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        else:
            ce = functools.partial(F.cross_entropy, logits.float(), reduction="none", label_smoothing=self.label_smoothing)
            loss = (lam * ce(y) + (1 - lam) * ce(y2)).mean()
        logs = {"train_accuracy": float((logits.argmax(1) == y).float().mean())}
        if self._teachers:
            kd = distillation_loss(logits[: len(x)].float(), self.teacher_probabilities(x), self.distill_temperature)
            loss = (1 - self.distill_weight) * loss + self.distill_weight * kd
            logs["distill_loss"] = float(kd.detach())
        if self.distill_unlabelled:
            kd_u = distillation_loss(ls.float(), self.teacher_probabilities(strong), self.distill_temperature)
            loss = loss + self.distill_weight * kd_u
            logs["distill_unlabelled_loss"] = float(kd_u.detach())
        if self.consistency_weight:
            loss = loss + self.consistency_weight * unsup
            logs.update(consistency_loss=float(unsup.detach()), mask_rate=float(mask.mean()))
        if self.ssl_head is not None:
            t = torch.randint(0, N_TRANSFORMS, (len(x),), generator=g, device=x.device)
            # the flipped views must not move BatchNorm's running statistics: for inputs with an offset
            # (gravity in g) a sign flip moves the channel means, and eval-mode statistics averaged over
            # flipped and real windows fit neither (UCI HAR in g: validation 0.75 with train 0.95)
            with frozen_batchnorm_statistics(self.model.encoder):
                ssl = F.cross_entropy(self.ssl_head(self.model.encoder(apply_transform(x, t))).float(), t)
            loss = loss + self.ssl_weight * ssl
            logs["ssl_loss"] = float(ssl.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    @torch.no_grad()
    def teacher_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' mean softened class probabilities ``[B, K]`` for windows ``x`` ``[B, C, T]``."""
        p = 0
        for t in self._teachers:
            t.to(x.device).eval()
            p = p + F.softmax(t(x).float() / self.distill_temperature, 1)
        return p / len(self._teachers)

    def forward(self, batch, g=None):
        return self.loss(batch, g)


def distillation_loss(student_logits: torch.Tensor, teacher_p: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T**2 * KL(teacher_p || softmax(student_logits / T))``, averaged over the batch (Hinton et al. 2015;
    the ``T**2`` keeps its gradients on the scale of a cross-entropy's as ``T`` changes).

    Args:
        student_logits: ``[B, K]``; teacher_p: ``[B, K]`` probabilities at the same temperature; temperature: T.
    """
    log_q = F.log_softmax(student_logits / temperature, 1)
    return temperature**2 * F.kl_div(log_q, teacher_p, reduction="batchmean")


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray, batch: int = 512) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model(torch.from_numpy(X[i : i + batch]).to(device)).float().cpu()
                      for i in range(0, len(X), batch)]).numpy()  # fmt: skip


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
