"""Self-supervised methods: each turns a batch of windows into a loss, for the one ``fit()`` loop.

A method owns its encoder and its method-specific heads (projector, decoder). Statistics that span the
batch (NT-Xent negatives, VICReg/Barlow variance and correlation) are computed over the global batch
when running under torchrun, through :func:`gather_with_grad`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgessl.trainer.augment import Compose, default_pipeline
from edgessl.trainer.distributed import gather_with_grad
from edgessl.trainer.encoders import EncoderConfig, build_encoder
from edgessl.trainer.objectives import BarlowTwinsLoss, MaskedReconstructionLoss, NTXentLoss, VICRegLoss

METHODS = ("simclr", "vicreg", "barlow", "masked")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Which objective and its hyperparameters (defaults are each paper's)."""

    name: str = "simclr"
    proj_hidden: int = 256
    proj_dim: int = 128
    temperature: float = 0.1
    vicreg_weights: tuple[float, float, float] = (25.0, 25.0, 1.0)
    barlow_lambda: float = 5e-3
    mask_patch: int = 8
    mask_ratio: tuple[float, float] = (0.4, 0.75)

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ValueError(f"unknown method {self.name!r}; expected one of {METHODS}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def projector(d_in: int, hidden: int, d_out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class SSLMethod(nn.Module):
    """Base: ``encoder`` plus heads; ``loss(x, generator)`` returns ``(loss, logs)``."""

    def __init__(self, encoder_cfg: EncoderConfig, cfg: MethodConfig):
        super().__init__()
        self.encoder_cfg, self.cfg = encoder_cfg, cfg
        self.encoder = build_encoder(encoder_cfg)

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def forward(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None = None):
        # forward() is the loss so that DistributedDataParallel can wrap a method
        return self.loss(batch, g)


class TwoViewMethod(SSLMethod):
    """SimCLR, VICReg and Barlow Twins: two augmented views, a projector, a loss on the two projections."""

    def __init__(self, encoder_cfg: EncoderConfig, cfg: MethodConfig, augment: Compose | None = None):
        super().__init__(encoder_cfg, cfg)
        d = encoder_cfg.out_dim
        if cfg.name == "simclr":
            self.head = projector(d, cfg.proj_hidden, cfg.proj_dim, 2)
            self.objective: nn.Module = NTXentLoss(cfg.temperature)
        elif cfg.name == "vicreg":
            self.head = projector(d, cfg.proj_hidden * 2, cfg.proj_hidden * 2, 3)
            self.objective = VICRegLoss(*cfg.vicreg_weights)
        else:
            self.head = projector(d, cfg.proj_hidden * 2, cfg.proj_hidden * 2, 3)
            self.objective = BarlowTwinsLoss(cfg.barlow_lambda)
        self.augment = augment or default_pipeline()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def loss_from_views(self, v_a: torch.Tensor, v_b: torch.Tensor) -> torch.Tensor:
        z_a, z_b = self.project(v_a), self.project(v_b)
        return self.objective(gather_with_grad(z_a.float()), gather_with_grad(z_b.float()))

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch[0]
        with torch.no_grad():
            v_a, v_b = self.augment(x, g), self.augment(x, g)
        loss = self.loss_from_views(v_a, v_b)
        return loss, {"loss": float(loss.detach())}


class MaskedMethod(SSLMethod):
    """Zero a random set of time patches, reconstruct the window from the encoder's feature map."""

    def __init__(self, encoder_cfg: EncoderConfig, cfg: MethodConfig):
        super().__init__(encoder_cfg, cfg)
        self.decoder = nn.Sequential(
            nn.Conv1d(encoder_cfg.out_dim, encoder_cfg.out_dim, 3, padding=1), nn.ReLU(),
            nn.Conv1d(encoder_cfg.out_dim, encoder_cfg.in_channels, 1),
        )  # fmt: skip
        self.objective = MaskedReconstructionLoss(cfg.mask_patch, *cfg.mask_ratio)

    def reconstruct(self, x_masked: torch.Tensor, length: int) -> torch.Tensor:
        f = self.encoder.forward_features(x_masked)
        f = F.interpolate(f, size=length, mode="linear", align_corners=False)
        return self.decoder(f)

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch[0]
        mask = self.objective.sample_mask(x, g)
        x_in = x.masked_fill(mask.unsqueeze(1), 0.0)
        pred = self.reconstruct(x_in, x.shape[-1])
        loss = self.objective(pred.float(), x, mask)
        return loss, {"loss": float(loss.detach()), "mask_ratio": float(mask.float().mean())}


def build_method(encoder_cfg: EncoderConfig, cfg: MethodConfig) -> SSLMethod:
    return MaskedMethod(encoder_cfg, cfg) if cfg.name == "masked" else TwoViewMethod(encoder_cfg, cfg)
