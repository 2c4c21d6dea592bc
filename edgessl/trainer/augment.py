"""Batched, seeded time-series augmentations for IMU windows ``x [B, C, T]`` (torch).

Every op draws its randomness from an explicit ``torch.Generator`` and works on the whole batch with
tensor ops (no Python loop over samples), so each call — each epoch — gives fresh views. Each op has a
probability ``p``: it is applied per sample, not per batch.

Ops (Um et al. 2017; Iwana & Uchida 2021; the seed survey's list):
    flip_time        left-to-right reversal
    flip_sign        bidirectional flip (x -> -x)
    blockout         λ·T contiguous samples set to zero
    scaled_noise     Gaussian noise scaled by each channel's own std
    jitter           Gaussian noise with a fixed std
    crop_resize      random crop of a fraction of the window, stretched back to T
    magnitude_warp   x · (1 + λ·sin(2π f t/T + φ_c)), random phase per channel
    time_warp        monotone random warp of the time axis, endpoints fixed
    smooth           3-tap filter H(z) = λ/2·z + (1−λ) + λ/2·z⁻¹, λ random per sample
    random_crop      a random sub-window of fixed length (output is shorter)
    rotate           one random 3-D rotation per window, applied to every (x, y, z) axis triad of the sensor
                     (a device worn at a slightly different angle; Um et al. 2017)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "Augmentation",
    "Compose",
    "axis_triads",
    "blockout",
    "crop_resize",
    "default_pipeline",
    "flip_sign",
    "flip_time",
    "jitter",
    "magnitude_warp",
    "random_crop",
    "rotate",
    "rotation_view",
    "scaled_noise",
    "smooth",
    "time_warp",
    "warp_sample",
]


def _check(x: Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"augmentations take x of shape [batch, channels, time]; got {tuple(x.shape)}")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def warp_sample(x: Tensor, pos: Tensor) -> Tensor:
    """Sample ``x [B, C, T]`` at fractional time positions ``pos [B, T']`` by linear interpolation."""
    T = x.shape[-1]
    pos = pos.clamp(0, T - 1)
    i0 = pos.floor().long().clamp(max=T - 2) if T > 1 else pos.floor().long()
    frac = (pos - i0).unsqueeze(1).to(x.dtype)
    idx0 = i0.unsqueeze(1).expand(-1, x.shape[1], -1)
    x0 = torch.gather(x, 2, idx0)
    x1 = torch.gather(x, 2, (idx0 + 1).clamp(max=T - 1))
    return x0 + (x1 - x0) * frac


def _channel_std(x: Tensor) -> Tensor:
    """Population std over time, ``[B, C, 1]`` (an order of magnitude faster than ``Tensor.std`` on CPU)."""
    m = x.mean(-1, keepdim=True)
    return ((x * x).mean(-1, keepdim=True) - m * m).clamp_min(0).sqrt()


def flip_time(x: Tensor, g: torch.Generator | None = None) -> Tensor:
    """Reverse each window along time."""
    _check(x)
    return x.flip(-1)


def flip_sign(x: Tensor, g: torch.Generator | None = None) -> Tensor:
    """Bidirectional flip: negate every channel."""
    _check(x)
    return -x


def blockout(x: Tensor, g: torch.Generator | None = None, fraction: float = 0.1) -> Tensor:
    """Zero ``round(fraction·T)`` contiguous samples (all channels) at a random start per window."""
    _check(x)
    if not 0 <= fraction <= 1:
        raise ValueError(f"blockout fraction must be in [0, 1]; got {fraction}")
    B, _, T = x.shape
    n = int(round(fraction * T))
    start = torch.randint(0, T - n + 1, (B, 1), generator=g, device=x.device)
    t = torch.arange(T, device=x.device).unsqueeze(0)
    keep = ~((t >= start) & (t < start + n))
    return x * keep.unsqueeze(1).to(x.dtype)


def scaled_noise(x: Tensor, g: torch.Generator | None = None, sigma: float = 0.1) -> Tensor:
    """Add N(0, (sigma·std_c)²) noise, ``std_c`` being each window's channel std."""
    _check(x)
    return x + sigma * _channel_std(x) * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def jitter(x: Tensor, g: torch.Generator | None = None, sigma: float = 0.03) -> Tensor:
    """Add N(0, sigma²) noise (Um et al.'s jitter)."""
    _check(x)
    return x + sigma * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


def crop_resize(x: Tensor, g: torch.Generator | None = None, min_scale: float = 0.6) -> Tensor:
    """Crop a random fraction in ``[min_scale, 1]`` of the window and stretch it back to ``T``."""
    _check(x)
    if not 0 < min_scale <= 1:
        raise ValueError(f"crop_resize min_scale must be in (0, 1]; got {min_scale}")
    B, _, T = x.shape
    scale = _uniform(B, min_scale, 1.0, g, x.device)
    span = scale * (T - 1)
    start = torch.rand(B, generator=g, device=x.device) * (T - 1 - span)
    pos = start.unsqueeze(1) + span.unsqueeze(1) * torch.linspace(0, 1, T, device=x.device).unsqueeze(0)
    return warp_sample(x, pos)


def magnitude_warp(x: Tensor, g: torch.Generator | None = None, sigma: float = 0.2, cycles: float = 1.0) -> Tensor:
    """Multiply by ``1 + λ·sin(2π·cycles·t/T + φ)``, λ ~ U(0, sigma) per window, φ random per channel."""
    _check(x)
    B, C, T = x.shape
    lam = _uniform(B, 0.0, sigma, g, x.device).view(B, 1, 1)
    phase = 2 * math.pi * torch.rand(B, C, 1, generator=g, device=x.device)
    t = torch.arange(T, device=x.device, dtype=x.dtype).view(1, 1, T)
    return x * (1 + lam * torch.sin(2 * math.pi * cycles * t / T + phase)).to(x.dtype)


def time_warp_positions(B: int, T: int, g: torch.Generator | None, device: torch.device, sigma: float = 0.2,
                        knots: int = 4) -> Tensor:  # fmt: skip
    """Monotone sampling positions ``[B, T]`` from 0 to ``T-1``: a random piecewise-linear time warp."""
    speed = torch.exp(sigma * torch.randn(B, knots + 1, generator=g, device=device))  # > 0 => monotone
    cum = torch.cat([torch.zeros(B, 1, device=device), speed.cumsum(1)], 1)
    cum = cum / cum[:, -1:] * (T - 1)  # knots + 2 values, endpoints exactly 0 and T-1
    return F.interpolate(cum.unsqueeze(1), size=T, mode="linear", align_corners=True).squeeze(1)


def time_warp(x: Tensor, g: torch.Generator | None = None, sigma: float = 0.2, knots: int = 4) -> Tensor:
    """Resample each window along a random monotone warp of time that keeps both endpoints."""
    _check(x)
    return warp_sample(x, time_warp_positions(x.shape[0], x.shape[-1], g, x.device, sigma, knots))


def smooth(x: Tensor, g: torch.Generator | None = None, max_lambda: float = 0.5, lam: Tensor | None = None) -> Tensor:
    """Filter with ``H(z) = λ/2·z + (1−λ) + λ/2·z⁻¹`` (edges replicated), λ ~ U(0, max_lambda) per window.

    Its frequency response is ``H(e^{jω}) = 1 − λ + λ·cos ω``: a zero-phase low-pass for λ in (0, 0.5].
    """
    _check(x)
    B = x.shape[0]
    if lam is None:
        lam = _uniform(B, 0.0, max_lambda, g, x.device)
    lam = lam.view(B, 1, 1).to(x.dtype)
    left = torch.cat([x[..., :1], x[..., :-1]], -1)  # x[t-1], edge replicated
    right = torch.cat([x[..., 1:], x[..., -1:]], -1)  # x[t+1]
    return x + lam / 2 * (left + right - 2 * x)


def random_crop(x: Tensor, g: torch.Generator | None = None, length: int | None = None) -> Tensor:
    """A random sub-window of ``length`` samples (default 80 % of T) from each window: ``[B, C, length]``."""
    _check(x)
    B, C, T = x.shape
    length = int(0.8 * T) if length is None else length
    if not 1 <= length <= T:
        raise ValueError(f"random_crop length must be in [1, {T}]; got {length}")
    start = torch.randint(0, T - length + 1, (B, 1), generator=g, device=x.device)
    idx = (start + torch.arange(length, device=x.device)).unsqueeze(1).expand(-1, C, -1)
    return torch.gather(x, 2, idx)


def axis_triads(channel_names: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """The (x, y, z) channel triads of one sensor frame, found by name: ``acc_x, acc_y, acc_z`` or
    ``total_acc_x ...`` (a trailing ``x``/``y``/``z`` after ``_``, ``-``, ``.`` or nothing, same prefix).

    Returns index triples in x, y, z order, sorted by the x index; channels of no complete triad are left out.
    """
    by_prefix: dict[str, dict[str, int]] = {}
    for i, name in enumerate(channel_names):
        low = str(name).lower()
        if low and low[-1] in "xyz":
            by_prefix.setdefault(low[:-1].rstrip("_-. "), {})[low[-1]] = i
    triads = [(d["x"], d["y"], d["z"]) for d in by_prefix.values() if len(d) == 3]
    return tuple(sorted(triads))


def rotation_matrices(n: int, max_degrees: float, g: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> Tensor:  # fmt: skip
    """``[n, 3, 3]`` rotations about axes drawn uniformly on the sphere, by angles uniform in
    ``[-max_degrees, max_degrees]`` (Rodrigues' formula)."""
    axis = torch.randn(n, 3, generator=g, device=device)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    theta = math.radians(max_degrees) * (2 * torch.rand(n, generator=g, device=device) - 1)
    K = torch.zeros(n, 3, 3, device=device)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K = K - K.transpose(1, 2)
    s, c = theta.sin().view(n, 1, 1), theta.cos().view(n, 1, 1)
    return torch.eye(3, device=device) + s * K + (1 - c) * (K @ K)


def rotate(x: Tensor, g: torch.Generator | None = None, max_degrees: float = 15.0,
           triads: Sequence[Sequence[int]] | None = None) -> Tensor:  # fmt: skip
    """Rotate each window's axis triads by one random rotation of at most ``max_degrees``.

    Every triad of a window (accelerometer, gyroscope, gravity ...) turns by the *same* rotation, as all
    of a device's sensors do when it sits at another angle. ``triads`` are ``(x, y, z)`` channel indices
    (see :func:`axis_triads`); None means ``x [B, 3, T]`` is one triad. Other channels are untouched.
    """
    _check(x)
    B, C, _ = x.shape
    if triads is None:
        if C != 3:
            raise ValueError(f"rotate needs the (x, y, z) channel triads of a {C}-channel window; pass triads=")
        triads = ((0, 1, 2),)
    if not triads:
        raise ValueError("rotate needs at least one (x, y, z) channel triad; got none")
    for t in triads:
        if len(t) != 3 or not all(0 <= i < C for i in t):
            raise ValueError(f"each triad must be 3 channel indices in [0, {C}); got {tuple(t)}")
    R = rotation_matrices(B, max_degrees, g, x.device).to(x.dtype)
    out = x.clone()
    for t in triads:
        idx = list(t)
        out[:, idx] = R @ x[:, idx]
    return out


_OPS = {
    "flip_time": flip_time,
    "flip_sign": flip_sign,
    "blockout": blockout,
    "scaled_noise": scaled_noise,
    "jitter": jitter,
    "crop_resize": crop_resize,
    "magnitude_warp": magnitude_warp,
    "time_warp": time_warp,
    "smooth": smooth,
    "rotate": rotate,
}


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One op of a pipeline, applied to each window independently with probability ``p``."""

    op: str
    p: float = 0.5
    params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown augmentation {self.op!r}; expected one of {sorted(_OPS)}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"augmentation probability must be in [0, 1]; got {self.p}")

    def __call__(self, x: Tensor, g: torch.Generator | None = None) -> Tensor:
        if self.p == 0:
            return x
        if self.p == 1:
            return _OPS[self.op](x, g, **self.params)
        return self.apply_(x.clone(), g)

    def apply_(self, x: Tensor, g: torch.Generator | None = None) -> Tensor:
        """In place: transform the rows drawn with probability ``p`` and write them back into ``x``."""
        if self.p == 0:
            return x
        if self.p == 1:
            x.copy_(_OPS[self.op](x, g, **self.params))
            return x
        # draw per sample, then transform only the chosen rows (no work wasted on the others)
        idx = torch.nonzero(torch.rand(x.shape[0], generator=g, device=x.device) < self.p).flatten()
        if len(idx):
            x[idx] = _OPS[self.op](x[idx], g, **self.params)
        return x


class Compose:
    """Apply a sequence of :class:`Augmentation` in order, each with its own probability."""

    def __init__(self, ops: Sequence[Augmentation]):
        self.ops = list(ops)

    def __call__(self, x: Tensor, g: torch.Generator | None = None) -> Tensor:
        _check(x)
        x = x.clone()  # one copy; every op then works in place on its chosen rows
        for op in self.ops:
            op.apply_(x, g)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(f"{o.op}(p={o.p})" for o in self.ops) + ")"


def default_pipeline(rotate_degrees: float = 0.0, triads: Sequence[Sequence[int]] | None = None) -> Compose:
    """The default view generator for contrastive pretraining on accelerometer windows.

    Sign and time flips are left out: for gestures they change the class (a left stroke flipped is a
    right stroke), so they would teach invariance to exactly what must be told apart. With
    ``rotate_degrees > 0`` half of the views first turn the axis ``triads`` by one random rotation of at
    most that angle (see :func:`rotate`; None: the window is one ``(x, y, z)`` triad).
    """
    ops = [
        Augmentation("crop_resize", 0.5, {"min_scale": 0.7}),
        Augmentation("time_warp", 0.5, {"sigma": 0.2}),
        Augmentation("magnitude_warp", 0.5, {"sigma": 0.2}),
        Augmentation("scaled_noise", 0.8, {"sigma": 0.1}),
        Augmentation("smooth", 0.3, {"max_lambda": 0.5}),
        Augmentation("blockout", 0.3, {"fraction": 0.1}),
    ]
    if rotate_degrees > 0:
        ops.insert(0, rotation_view(rotate_degrees, triads))
    return Compose(ops)


def rotation_view(max_degrees: float, triads: Sequence[Sequence[int]] | None = None, p: float = 0.5) -> Augmentation:
    """The rotation op of the pretraining and fine-tuning views: half of the windows by default (see
    :func:`rotate`; ``triads`` None: the window is one ``(x, y, z)`` triad)."""
    return Augmentation("rotate", p, {"max_degrees": float(max_degrees),
                                      "triads": None if triads is None else tuple(map(tuple, triads))})  # fmt: skip
