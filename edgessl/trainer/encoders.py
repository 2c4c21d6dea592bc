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

__all__ = ["CNNEncoder", "EncoderConfig", "Integrate", "TransformerEncoder", "build_encoder", "count_parameters"]


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
        integrate: 0 (default), or 1 / 2: the encoder first appends the running integral of each channel
            (1: velocity from acceleration, its window mean removed first) and of that (2: position, the
            shape a gesture draws), each z-scored per window: trajectories no short kernel could sum up.
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
    integrate: int = 0

    def __post_init__(self) -> None:
        if self.integrate not in (0, 1, 2):
            raise ValueError(f"integrate must be 0 (off), 1 (velocity) or 2 (velocity and position); got {self.integrate}")
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
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Integrate(nn.Module):
    """``[B, C, T] -> [B, C * (1 + order), T]``: the input, then the running sum along time of its deviation
    from the window mean (``order`` 1) and the running sum of that (``order`` 2), each derived channel
    z-scored over its window. On an acceleration window the first is a velocity with gravity and drift
    removed, returning to 0 at the window's end; the second, a position trace. Exports as CumSum, ReduceMean
    and elementwise ops (kept in float by static quantization)."""

    def __init__(self, order: int, eps: float = 1e-5):
        super().__init__()
        self.order, self.eps = order, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, v = [x], x
        for _ in range(self.order):
            v = torch.cumsum(v - v.mean(dim=-1, keepdim=True), dim=-1)
            v = v - v.mean(dim=-1, keepdim=True)
            v = v / torch.sqrt((v * v).mean(dim=-1, keepdim=True) + self.eps)
            out.append(v)
        return torch.cat(out, dim=1)


def _front(cfg: EncoderConfig) -> tuple[nn.Module, int]:
    """The input stage and the channel count the first layer sees."""
    if not cfg.integrate:
        return nn.Identity(), cfg.in_channels
    return Integrate(cfg.integrate), cfg.in_channels * (1 + cfg.integrate)


class CNNEncoder(nn.Module):
    """Conv-BN-ReLU blocks then global average pooling. About 80k parameters by default."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers: list[nn.Module] = []
        self.front, c = _front(cfg)
        for w, k, s in zip(cfg.widths, cfg.kernels, cfg.strides, strict=True):
            layers += [nn.Conv1d(c, w, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm1d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.out_dim = c

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, D, T']`` feature map before pooling."""
        return self.features(self.front(x))

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
        self.front, c = _front(cfg)
        self.patch = nn.Conv1d(c, d, cfg.patch, stride=cfg.patch)
        self.pos = nn.Parameter(torch.zeros(1, d, max_tokens))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[_Block(d, cfg.heads) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d)
        self.out_dim = d

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(self.front(x))  # [B, D, N]
        pos = nn.functional.interpolate(self.pos, size=t.shape[-1], mode="linear", align_corners=False)
        z = self.blocks((t + pos).transpose(1, 2))
        return self.norm(z).transpose(1, 2)  # [B, D, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=-1)


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    return CNNEncoder(cfg) if cfg.kind == "cnn" else TransformerEncoder(cfg)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
