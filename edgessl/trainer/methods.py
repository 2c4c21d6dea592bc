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
from edgessl.trainer.config_file import drop_retired
from edgessl.trainer.distributed import gather_with_grad
from edgessl.trainer.encoders import CNNEncoder, EncoderConfig, TransformerEncoder, build_encoder
from edgessl.trainer.objectives import (
    BarlowTwinsLoss,
    CLIPLoss,
    MaskedReconstructionLoss,
    MaskedTokenLoss,
    NTXentLoss,  # fmt: skip
    SSGANLoss,
    VICRegLoss,
)
from edgessl.trainer.objectives.beit import kmeans, patches, tokenize
from edgessl.trainer.objectives.masked import random_patch_mask
from edgessl.trainer.objectives.ssgan import all_transforms
from edgessl.trainer.text import TextEncoder, hashed_features

METHODS = ("simclr", "vicreg", "barlow", "masked", "ssgan", "clip", "beit")
LABELLED_METHODS = ("clip",)  # trained on (window, class description) pairs
VIEW_METHODS = ("simclr", "vicreg", "barlow", "clip")  # trained on augmented views (default_pipeline)


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Which objective and its hyperparameters (defaults are each paper's)."""

    # vicreg: beat or tied simclr on uWave, UCI HAR, the own-board journey and the demo end to end (6 seeds:
    # test 0.788 vs 0.760, live adapted 0.728 vs 0.686, every export passing; docs/results.md)
    name: str = "vicreg"
    proj_hidden: int = 256
    proj_dim: int = 128
    temperature: float = 0.1
    vicreg_weights: tuple[float, float, float] = (25.0, 25.0, 1.0)
    barlow_lambda: float = 5e-3
    mask_patch: int = 8
    mask_ratio: tuple[float, float] = (0.4, 0.75)
    window: int = 0  # samples per window; set by pretraining from the data (SS-GAN's generator needs it)
    # SS-GAN (Chen et al. 2019)
    noise_dim: int = 64
    ssgan_alpha: float = 0.2
    ssgan_beta: float = 1.0
    # CLIP-style alignment: the descriptions of the classes trained on, in label order
    class_texts: tuple[str, ...] = ()
    text_dim: int = 1024
    clip_temperature: float = 0.07
    # BEiT-style: k-means codebook size over patches of mask_patch samples
    codebook_size: int = 64
    # views of the methods that augment (VIEW_METHODS) also rotate the (x, y, z) channel triads by up to this
    # many degrees, one rotation per window; 0 = off. The triads are channel indices, set by pretraining from
    # the channel names (empty: a 3-channel window is one triad)
    rotate_degrees: float = 0.0
    triads: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ValueError(f"unknown method {self.name!r}; expected one of {METHODS}")
        if not 0 <= self.rotate_degrees <= 180:
            raise ValueError(f"rotate_degrees must be in [0, 180]; got {self.rotate_degrees}")
        if self.rotate_degrees > 0 and self.name not in VIEW_METHODS:
            raise ValueError(f"{self.name} trains on windows without augmented views, so it has nothing to rotate; "
                             f"rotation views are for {', '.join(VIEW_METHODS)}")  # fmt: skip
        # JSON round trips give lists; keep the config hashable and equal to the one saved
        object.__setattr__(self, "triads", tuple(tuple(int(i) for i in t) for t in self.triads))
        if any(len(t) != 3 for t in self.triads):
            raise ValueError(f"triads must be (x, y, z) channel index triples; got {self.triads}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodConfig:
        # generated SS-GAN windows in two-view batches were measured to add nothing and removed
        d = drop_retired(d, {"gan_generator": None, "gan_fraction": 0.25}, "method")
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)


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
        self.encoder: CNNEncoder | TransformerEncoder = build_encoder(encoder_cfg)

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
        self.augment = augment or default_pipeline(cfg.rotate_degrees, cfg.triads or None)

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


class Generator(nn.Module):
    """Noise ``[B, noise_dim]`` -> windows ``[B, C, window]``: a linear map to ``window/8`` steps, three
    upsample-and-convolve stages, and a per-window z-score of each channel at the end (the windows the
    trainer feeds are z-scored, so generated ones live in the same space)."""

    def __init__(self, channels: int, window: int, noise_dim: int = 64, width: int = 128):
        super().__init__()
        if window < 8:
            raise ValueError(f"the generator needs the window length (>= 8 samples); got {window}")
        self.channels, self.window, self.noise_dim = channels, window, noise_dim
        self.base = -(-window // 8)
        self.fc = nn.Linear(noise_dim, width * self.base)
        layers: list[nn.Module] = []
        c = width
        for c_out in (width, width // 2, width // 4):
            layers += [nn.Upsample(scale_factor=2, mode="linear", align_corners=False),
                       nn.Conv1d(c, c_out, 5, padding=2), nn.BatchNorm1d(c_out), nn.ReLU()]  # fmt: skip
            c = c_out
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv1d(c, channels, 5, padding=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(z)).view(len(z), -1, self.base)
        x = self.out(self.body(h))[..., : self.window]
        x = x - x.mean(-1, keepdim=True)
        return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()

    def sample(self, n: int, g: torch.Generator | None = None) -> torch.Tensor:
        device = self.fc.weight.device
        return self(torch.randn(n, self.noise_dim, generator=g, device=g.device if g is not None else device).to(device))


def _untracked(module: nn.Module, x: torch.Tensor, constant: bool = False) -> torch.Tensor:
    """``module(x)`` leaving its buffers (BatchNorm running statistics) untouched; with ``constant``, no
    gradient reaches its parameters (gradients still flow to ``x``)."""
    state = {n: p.detach() if constant else p for n, p in module.named_parameters()}
    state.update({n: b.clone() for n, b in module.named_buffers()})
    return torch.func.functional_call(module, state, (x,))


class SSGANMethod(SSLMethod):
    """SS-GAN: the encoder is the discriminator's body; a GAN head and a 4-way transform head sit on it.

    Both players update in one step of the shared loop: the discriminator's loss sees generated windows
    detached, the generator's loss goes through the discriminator with its parameters held constant, so
    one backward pass gives each player the gradient of its own objective only. Generated windows never
    update the BatchNorm statistics of the encoder, which is later used on real windows.
    """

    def __init__(self, encoder_cfg: EncoderConfig, cfg: MethodConfig):
        super().__init__(encoder_cfg, cfg)
        d = encoder_cfg.out_dim
        self.generator = Generator(encoder_cfg.in_channels, cfg.window, cfg.noise_dim)
        self.gan_head = nn.Linear(d, 1)
        self.transform_head = nn.Linear(d, 4)
        self.objective = SSGANLoss(cfg.ssgan_alpha, cfg.ssgan_beta)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "betas": (0.5, 0.999)}]

    def _discriminate(self, x: torch.Tensor, frozen: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if frozen:
            h = _untracked(self.encoder, x, constant=True)
            return _untracked(self.gan_head, h, True).squeeze(1), _untracked(self.transform_head, h, True)
        h = self.encoder(x)
        return self.gan_head(h).squeeze(1), self.transform_head(h)

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch[0]
        b = len(x)
        fake = self.generator.sample(b, g)
        real_views, r = all_transforms(x)
        real_logit, real_q = self._discriminate(real_views, frozen=False)
        # the discriminator's view of fakes: GAN head only, no BatchNorm statistics from fakes
        fake_logit_d = self.gan_head(_untracked(self.encoder, fake.detach())).squeeze(1)
        d_loss = self.objective.d_loss(real_logit[:b], fake_logit_d, real_q, r)
        fake_views, rf = all_transforms(fake)
        fake_logit_g, fake_q = self._discriminate(fake_views, frozen=True)
        g_loss = self.objective.g_loss(fake_logit_g[:b], fake_q, rf)
        with torch.no_grad():
            acc = float((real_q.argmax(1) == r).float().mean())
        return d_loss + g_loss, {"loss": float((d_loss + g_loss).detach()), "d_loss": float(d_loss.detach()),
                                 "g_loss": float(g_loss.detach()), "transform_acc": acc}  # fmt: skip


class CLIPMethod(SSLMethod):
    """IMU–text alignment: a projector on the encoder, a hashed n-gram text encoder, the CLIP-style loss.

    Trained on (window, class) pairs; the classes' descriptions are in ``cfg.class_texts``. Windows get one
    augmented view (the same augmentations as the two-view methods).
    """

    def __init__(self, encoder_cfg: EncoderConfig, cfg: MethodConfig, augment: Compose | None = None):
        super().__init__(encoder_cfg, cfg)
        if len(cfg.class_texts) < 2:
            raise ValueError(f"clip needs the descriptions of at least 2 classes; got {list(cfg.class_texts)}")
        self.head = projector(encoder_cfg.out_dim, cfg.proj_hidden, cfg.proj_dim, 2)
        self.text = TextEncoder(cfg.proj_dim, cfg.text_dim)
        self.register_buffer("text_features", torch.from_numpy(hashed_features(list(cfg.class_texts), cfg.text_dim)))
        self.objective = CLIPLoss(cfg.clip_temperature)
        self.augment = augment or default_pipeline(cfg.rotate_degrees, cfg.triads or None)

    def embed_windows(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.encoder(x)), dim=1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(self.text.encode(texts), dim=1)

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        if len(batch) < 2:
            raise ValueError("clip trains on (window, label) batches; got windows only")
        x, y = batch[0], batch[1]
        with torch.no_grad():
            x = self.augment(x, g)
        u = gather_with_grad(self.head(self.encoder(x)).float())
        y = gather_with_grad(y.float()).long()
        loss = self.objective(u, self.text(self.text_features), y)
        return loss, {"loss": float(loss.detach()), "temperature": float(1 / self.objective.logit_scale.detach().exp())}


class BEiTMethod(SSLMethod):
    """Masked token prediction: a k-means codebook over patches (fitted in :meth:`prepare`), the encoder's
    feature map at each patch predicts the token of masked patches (zeroed in the input, as for MAE)."""

    codebook: torch.Tensor  # a buffer: [codebook_size, in_channels * mask_patch]

    def __init__(self, encoder_cfg: EncoderConfig, cfg: MethodConfig):
        super().__init__(encoder_cfg, cfg)
        d, k = encoder_cfg.out_dim, cfg.codebook_size
        self.register_buffer("codebook", torch.zeros(k, encoder_cfg.in_channels * cfg.mask_patch))
        self.head = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, k, 1))
        self.objective = MaskedTokenLoss()

    def prepare(self, X: torch.Tensor, max_patches: int = 20000, seed: int = 0) -> None:
        """Fit the codebook on patches of the (unlabeled, training) windows ``X``."""
        g = torch.Generator().manual_seed(seed)
        p = patches(X, self.cfg.mask_patch).reshape(-1, self.codebook.shape[1])
        if len(p) > max_patches:
            p = p[torch.randperm(len(p), generator=g)[:max_patches]]
        self.codebook.copy_(kmeans(p, self.cfg.codebook_size, generator=g))

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch[0]
        if not bool(self.codebook.abs().sum() > 0):
            raise RuntimeError("the BEiT codebook is empty: call prepare(X) on the training windows first")
        patch = self.cfg.mask_patch
        n = x.shape[-1] // patch
        lo, hi = self.cfg.mask_ratio
        ratio = lo + (hi - lo) * float(torch.rand(1, generator=g, device=g.device if g is not None else None))
        mask = random_patch_mask(len(x), n * patch, patch, ratio, g, x.device)
        mask = F.pad(mask, (0, x.shape[-1] - n * patch))
        tokens = tokenize(x, self.codebook, patch)
        f = self.encoder.forward_features(x.masked_fill(mask.unsqueeze(1), 0.0))
        logits = self.head(F.interpolate(f, size=n, mode="linear", align_corners=False)).transpose(1, 2)
        patch_mask = mask[:, : n * patch : patch]
        loss = self.objective(logits.float(), tokens, patch_mask)
        with torch.no_grad():
            acc = float((logits[patch_mask].argmax(-1) == tokens[patch_mask]).float().mean())
        return loss, {"loss": float(loss.detach()), "token_acc": acc, "mask_ratio": float(patch_mask.float().mean())}


def build_method(encoder_cfg: EncoderConfig, cfg: MethodConfig) -> SSLMethod:
    cls = {"masked": MaskedMethod, "ssgan": SSGANMethod, "clip": CLIPMethod, "beit": BEiTMethod}.get(cfg.name, TwoViewMethod)
    return cls(encoder_cfg, cfg)
