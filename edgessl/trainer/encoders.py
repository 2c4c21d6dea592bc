"""Small 1-D encoders for IMU windows ``[B, C, T] -> [B, D]`` that export cleanly to ONNX.

Both use only ops that onnxruntime quantizes statically (Conv, MatMul/Gemm, Relu, pooling); BatchNorm
follows each Conv so the exporter can fold it. Global average pooling makes any window length work.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from edgessl.trainer.config_file import drop_retired

__all__ = ["CNNEncoder", "EncoderConfig", "TransformerEncoder", "build_encoder", "count_parameters"]


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an encoder; saved with the weights so a checkpoint rebuilds its model.

    Attributes:
        kind: ``"cnn"`` (default) or ``"transformer"``.
        in_channels: input channels (3 for a 3-axis accelerometer).
        widths: CNN channel widths per block.
        kernels: CNN kernel sizes per block.
        strides: CNN strides per block.
        embed_dim: transformer model width (the CNN's embedding is ``widths[-1]``).
        depth: transformer layers.
        heads: transformer attention heads.
        patch: transformer patch length (samples per token).
    """

    kind: str = "cnn"
    in_channels: int = 3
    widths: tuple[int, ...] = (32, 64, 96, 128)
    kernels: tuple[int, ...] = (7, 5, 5, 3)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    embed_dim: int = 64
    depth: int = 2
    heads: int = 4
    patch: int = 8

    def __post_init__(self) -> None:
        if self.kind not in ("cnn", "transformer"):
            raise ValueError(f"encoder kind must be 'cnn' or 'transformer'; got {self.kind!r}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1; got {self.in_channels}")
        if not len(self.widths) == len(self.kernels) == len(self.strides) or not self.widths:
            raise ValueError("widths, kernels and strides must be non-empty and of equal length")
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by heads {self.heads}")

    @property
    def out_dim(self) -> int:
        return self.widths[-1] if self.kind == "cnn" else self.embed_dim

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        # integrated input channels were measured to add nothing and removed; old configs hold them off (0)
        d = drop_retired(d, {"integrate": 0}, "encoder")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)


class CNNEncoder(nn.Module):
    """Conv-BN-ReLU blocks then global average pooling. About 80k parameters by default."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c = cfg.in_channels
        for w, k, s in zip(cfg.widths, cfg.kernels, cfg.strides, strict=True):
            layers += [nn.Conv1d(c, w, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm1d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.out_dim = c

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, D, T']`` feature map before pooling."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, D]``."""
        return self.forward_features(x).mean(dim=-1)


class _Block(nn.Module):
    """Pre-norm transformer block written with plain Linear/MatMul so it exports and quantizes simply."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(B, N, 3, h, D // h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // h), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(B, N, D))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """Patch embedding (strided Conv) + learned positions (interpolated to any length) + blocks + mean pool."""

    def __init__(self, cfg: EncoderConfig, max_tokens: int = 64):
        super().__init__()
        d = cfg.embed_dim
        self.patch = nn.Conv1d(cfg.in_channels, d, cfg.patch, stride=cfg.patch)
        self.pos = nn.Parameter(torch.zeros(1, d, max_tokens))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[_Block(d, cfg.heads) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d)
        self.out_dim = d

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x)  # [B, D, N]
        pos = nn.functional.interpolate(self.pos, size=t.shape[-1], mode="linear", align_corners=False)
        z = self.blocks((t + pos).transpose(1, 2))
        return self.norm(z).transpose(1, 2)  # [B, D, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=-1)


def build_encoder(cfg: EncoderConfig) -> CNNEncoder | TransformerEncoder:
    """The encoder ``cfg`` describes; both kinds offer ``forward_features`` (``[N, C, T] -> [N, D, T']``)."""
    return CNNEncoder(cfg) if cfg.kind == "cnn" else TransformerEncoder(cfg)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
