"""Supervised fine-tuning as small loss terms summed by a thin module, for the one ``fit()`` loop.

The terms (lightly-style: pure functions, one module that adds them up):

* :func:`cross_entropy_term`: labelled windows, label smoothing;
* :func:`mixup` + :func:`mixup_cross_entropy_term`: windows mixed in pairs, their labels' losses alike;
* :class:`FixMatch`: consistency on unlabelled windows (weak view's confident prediction -> strong view);
* :class:`TransformPrediction`: the test-time-training head (which of four transforms a window went through).

:class:`SupervisedMethod` draws the views and sums whichever terms it was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from edgessl.trainer.augment import Augmentation, Compose, rotation_view
from edgessl.trainer.fit import frozen_batchnorm_statistics


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


def cross_entropy_term(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, K]`` against labels ``y [B]``."""
    return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)


def mixup_cross_entropy_term(logits: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor,
                             label_smoothing: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Mixup's loss (Zhang et al. 2018): per window ``lam * CE(y) + (1 - lam) * CE(y_partner)``, averaged.

    Args:
        logits: ``[B, K]`` of the mixed windows; y, y_partner: ``[B]``; lam: ``[B]`` weights of ``y``.
    """
    ce = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=label_smoothing)
    ce_partner = F.cross_entropy(logits.float(), y_partner, reduction="none", label_smoothing=label_smoothing)
    return (lam * ce + (1 - lam) * ce_partner).mean()


def fixmatch_term(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """FixMatch's unlabelled loss (Sohn et al. 2020): where the weak view's prediction is confident
    (max probability >= ``threshold``), the strong view is trained to that class; averaged over all rows.

    Args:
        weak_logits, strong_logits: ``[U, K]`` of the two views of the same unlabelled windows.

    Returns:
        ``(loss, mask [U])``, the mask marking the rows that had a target.
    """
    conf, pseudo = F.softmax(weak_logits.detach().float(), 1).max(1)
    mask = (conf >= threshold).float()
    return (F.cross_entropy(strong_logits.float(), pseudo, reduction="none") * mask).mean(), mask


class FixMatch(nn.Module):
    """The consistency term and what it draws from: ``ratio`` unlabelled windows per labelled one each step.

    Args:
        unlabelled: ``[N, C, T]`` windows, never labelled (a non-persistent buffer: data, not weights).
        weight: the term's weight in the sum; threshold: the confidence a weak prediction needs.
        ratio: unlabelled windows drawn per labelled window; strong: the strong views (default
            :func:`strong_augment`).
    """

    def __init__(self, unlabelled: torch.Tensor, weight: float = 1.0, threshold: float = 0.8, ratio: int = 4,
                 strong: Compose | None = None):  # fmt: skip
        super().__init__()
        if weight < 0 or not 0 < threshold <= 1 or ratio < 1:
            raise ValueError(f"FixMatch needs weight >= 0, threshold in (0, 1], ratio >= 1; got {weight}, "
                             f"{threshold}, {ratio}")  # fmt: skip
        if not len(unlabelled):
            raise ValueError("FixMatch needs unlabelled windows; got none")
        self.weight, self.threshold, self.ratio = weight, threshold, ratio
        self.strong = strong or strong_augment()
        self.register_buffer("unlabelled", unlabelled, persistent=False)

    def draw(self, n_labelled: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """``ratio * n_labelled`` unlabelled windows, drawn with replacement."""
        u = self.get_buffer("unlabelled")
        return u[torch.randint(0, len(u), (self.ratio * n_labelled,), generator=g, device=device)]


class TransformPrediction(nn.Module):
    """The TTT head (Sun et al. 2020): predicts which of :data:`N_TRANSFORMS` transforms a window went through
    from the shared embedding; the device can later adapt by minimising its loss without labels.

    Args:
        embed_dim: the encoder's embedding size; weight: the term's weight in the sum.
    """

    def __init__(self, embed_dim: int, weight: float = 0.1):
        super().__init__()
        if not weight > 0:
            raise ValueError(f"the transform-prediction term needs a weight > 0; got {weight}")
        self.weight = weight
        self.head = nn.Linear(embed_dim, N_TRANSFORMS)

    def forward(self, encoder: nn.Module, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Cross-entropy of the head on ``x [B, C, T]``, each window under a random transform."""
        t = torch.randint(0, N_TRANSFORMS, (len(x),), generator=g, device=x.device)
        # the flipped views must not move BatchNorm's running statistics: for inputs with an offset
        # (gravity in g) a sign flip moves the channel means, and eval-mode statistics averaged over
        # flipped and real windows fit neither (UCI HAR in g: validation 0.75 with train 0.95)
        with frozen_batchnorm_statistics(encoder):
            return F.cross_entropy(self.head(encoder(apply_transform(x, t))).float(), t)


class SupervisedMethod(nn.Module):
    """Cross-entropy on augmented labelled windows plus the terms it is given, for the ``fit()`` loop.

    Labelled, weak and strong views go through the network as one batch, so BatchNorm sees all of them.

    Args:
        model: the classifier trained. augment: the labelled (and weak) views; None: windows as they are.
        label_smoothing: of the labelled cross-entropy. frozen_encoder: a linear probe (BatchNorm statistics
            stay). mixup_alpha: > 0 mixes labelled windows in pairs (:func:`mixup`). fixmatch: the consistency
            term. ttt: the transform-prediction head term.
    """

    def __init__(self, model: Classifier, augment: Compose | None = None, label_smoothing: float = 0.1,
                 frozen_encoder: bool = False, mixup_alpha: float = 0.0, fixmatch: FixMatch | None = None,
                 ttt: TransformPrediction | None = None):  # fmt: skip
        super().__init__()
        if not mixup_alpha >= 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0: off; 0.2-0.4 are usual); got {mixup_alpha}")
        self.model, self.augment = model, augment
        self.label_smoothing, self.frozen_encoder, self.mixup_alpha = label_smoothing, frozen_encoder, mixup_alpha
        self.fixmatch, self.ttt = fixmatch, ttt

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_encoder:
            self.model.encoder.eval()  # a linear probe must not move BatchNorm statistics
        return self

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        if self.augment is not None:
            with torch.no_grad():
                x = self.augment(x, g)
        mixed = mixup(x, y, self.mixup_alpha, g) if self.mixup_alpha else None
        if mixed is not None:
            x = mixed[0]
        if self.fixmatch is not None:
            u = self.fixmatch.draw(len(x), g, x.device)
            with torch.no_grad():
                weak = self.augment(u, g) if self.augment is not None else u
                strong = self.fixmatch.strong(u, g)
            out = self.model(torch.cat([x, weak, strong]))
            logits, weak_logits, strong_logits = out[: len(x)], out[len(x) : len(x) + len(u)], out[len(x) + len(u) :]
        else:
            logits = self.model(x)
        if mixed is None:
            loss = cross_entropy_term(logits, y, self.label_smoothing)
        else:
            loss = mixup_cross_entropy_term(logits, y, mixed[1], mixed[2], self.label_smoothing)
        logs = {"train_accuracy": float((logits.argmax(1) == y).float().mean())}
        if self.fixmatch is not None:
            unsup, mask = fixmatch_term(weak_logits, strong_logits, self.fixmatch.threshold)
            loss = loss + self.fixmatch.weight * unsup
            logs.update(consistency_loss=float(unsup.detach()), mask_rate=float(mask.mean()))
        if self.ttt is not None:
            ssl = self.ttt(self.model.encoder, x, g)
            loss = loss + self.ttt.weight * ssl
            logs["ssl_loss"] = float(ssl.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    def forward(self, batch, g=None):
        return self.loss(batch, g)
