"""The one training loop. A *method* turns a batch into a loss; ``fit`` does everything else.

CPU or CUDA is chosen automatically; bf16 autocast on CUDA; AdamW with linear warmup then cosine decay
(per step); gradient clipping; tqdm progress; one JSON line of
metrics per epoch; a checkpoint every epoch holding weights, optimizer, scheduler, RNG states, history and
the typed config, loadable with ``torch.load(weights_only=True)``. Every epoch's randomness (data order,
augmentations, masks) is drawn from generators seeded by ``(seed, epoch, rank)``, so ``resume=True``
continues exactly where a run stopped.
Under torchrun the model is wrapped in DistributedDataParallel, data are split by a DistributedSampler
and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from edgessl.errors import ModelError, UsageError
from edgessl.trainer.config_file import drop_retired
from edgessl.trainer.distributed import DistEnv, setup

CHECKPOINT = "checkpoint.pt"
FORMAT = "edgessl-checkpoint/1"


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Optimisation settings shared by pretraining and fine-tuning."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    drop_last: bool = True

    def __post_init__(self) -> None:
        # each message names the key as a config file spells it ([fit] lr = ...)
        checks = (("epochs", self.epochs >= 1, "a whole number >= 1"),
                  ("batch_size", self.batch_size >= 1, "a whole number >= 1"),
                  ("lr", self.lr > 0 and math.isfinite(self.lr), "a finite number > 0"),
                  ("weight_decay", self.weight_decay >= 0 and math.isfinite(self.weight_decay), "a number >= 0"),
                  ("warmup_epochs", self.warmup_epochs >= 0, "a whole number >= 0"),
                  ("grad_clip", self.grad_clip >= 0, "a number >= 0 (0: off)"))  # fmt: skip
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"fit.{key} must be {expected}; got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        # weight averaging (EMA) and SAM were measured to add nothing and removed; old configs hold them off
        return cls(**drop_retired(d, {"ema_decay": 0.0, "sam_rho": 0.0}, "fit"))


class BatchLoss(nn.Module):
    """Interface of a method: ``loss(batch, generator) -> (scalar loss, float logs)``."""

    def loss(self, batch: tuple[torch.Tensor, ...], g: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


# Every file ``save_atomic`` writes ends in this trailer: the sha256 of everything before it. torch.load ignores
# bytes after the zip archive, so the file stays an ordinary torch file; ``load_saved`` verifies the digest.
TRAILER_MAGIC = b"\nedgessl-sha256:"
TRAILER_BYTES = len(TRAILER_MAGIC) + 64 + 1
# set in every payload written with a trailer, so that a file whose trailer was damaged is not taken for an
# older file written without one
CHECKSUM_KEY = "checksum"


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` with ``torch.save`` plus a sha256 trailer, atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save({**obj, CHECKSUM_KEY: "sha256-trailer"}, buf)
    body = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(body + TRAILER_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file (or a folder holding ``checkpoint.pt``) safely, with ``weights_only=True``."""
    return load_saved(path, CHECKPOINT, FORMAT, "checkpoint")


def _verified_body(p: Path, data: bytes, what: str) -> tuple[bytes, bool]:
    """The torch bytes of a saved file and whether a checksum vouched for them; a trailer whose digest does
    not match is a :class:`ModelError`."""
    trailer = data[-TRAILER_BYTES:]
    if len(data) <= TRAILER_BYTES or not trailer.startswith(TRAILER_MAGIC) or not trailer.endswith(b"\n"):
        return data, False  # written before checksums (or the trailer is damaged: the payload then says so)
    body, digest = data[:-TRAILER_BYTES], trailer[len(TRAILER_MAGIC) : -1]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise ModelError(f"{p}: {what} fails its sha256 checksum (corrupted or modified since it was written)")
    return body, True


def load_saved(path: str | Path, file_name: str, fmt: str, what: str) -> dict[str, Any]:
    """Load ``path`` (or ``path/file_name`` for a folder) with ``weights_only=True``, verify its checksum and
    check that it is a dict of format ``fmt``; ``what`` names the expected thing in the errors.

    Files written before checksums existed (no trailer, no ``checksum`` key) still load, unverified, with a
    note on stderr; a file whose payload says it was written with a checksum must carry an intact one.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ModelError: the file is truncated, corrupted, not a torch file, or not an edgessl ``what``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / file_name
    if not p.exists():
        hint = ("; this folder holds only a checkpoint (a pretraining run, or a fine-tuning that did not finish): "
                "give the folder `edgessl finetune --out` wrote" if file_name == "model.pt"
                and (p.parent / "checkpoint.pt").exists() else "")  # fmt: skip
        raise FileNotFoundError(f"{p}: no {what} here ({file_name}, as edgessl writes it){hint}")
    data = p.read_bytes()
    if data[:4] == b"PK\x03\x04" and p.suffix == ".essl":
        raise ModelError(f"{p}: an exported bundle, not a {what}: training starts from a run's folder (runs/pre, "
                         "runs/ft), not from a bundle")  # fmt: skip
    body, verified = _verified_body(p, data, what)
    try:
        ck = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        raise ModelError(f"{p}: not a readable edgessl {what} (truncated, corrupted or not a torch file: "
                         f"{type(e).__name__})") from e  # fmt: skip
    if not isinstance(ck, dict) or ck.get("format") != fmt:
        raise ModelError(f"{p}: not an edgessl {what} (format {ck.get('format') if isinstance(ck, dict) else None}, "
                         f"expected {fmt})")  # fmt: skip
    if not verified:
        if CHECKSUM_KEY in ck:
            raise ModelError(f"{p}: {what}'s sha256 trailer is missing or damaged (corrupted since it was written)")
        print(f"note: {p} has no checksum (written by an older edgessl); loaded unverified", file=sys.stderr)
    ck.pop(CHECKSUM_KEY, None)
    return ck


def check_resume_config(path: Path, saved: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse to resume a run whose data or model settings differ from the checkpoint's.

    Raises:
        UsageError: naming every differing key (dotted, e.g. ``data.spec``) with both values.
    """
    keys = ("kind", "data", "encoder", "method", "labels_per_class", "label_fraction", "exclude_classes")
    diffs = [f"{k}: {a!r} -> {b!r}" for k, a, b in _differences({k: saved[k] for k in keys if k in saved},
                                                                 {k: config[k] for k in keys if k in config})]
    if diffs:
        raise UsageError(f"{path}: cannot resume with other data or model settings than the checkpoint's ("
                         f"{'; '.join(diffs)}); use the same settings, or a new --out")  # fmt: skip


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        # keys on one side only are settings one edgessl version has and the other lacks (added with their
        # old behaviour as default, or retired at the value that kept it): not a difference of this run
        out: list[tuple[str, Any, Any]] = []
        for k in sorted(set(a) & set(b), key=str):
            out += _differences(a[k], b[k], f"{prefix}{k}.")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def fit(
    method: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    cfg: FitConfig,
    out_dir: str | Path,
    config: dict[str, Any],
    *,
    resume: bool = False,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    select: str | tuple[str, ...] | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    env: DistEnv | None = None,
) -> list[dict[str, float]]:
    """Train ``method`` on the rows of ``tensors`` (e.g. ``(X,)`` or ``(X, y)``).

    Args:
        method: an ``nn.Module`` with ``loss(batch, generator)``.
        tensors: CPU tensors with equal first dimension.
        cfg: optimisation settings.
        out_dir: where ``checkpoint.pt`` and ``metrics.jsonl`` go (rank 0 only).
        config: the full typed config as a plain dict, saved with the weights.
        resume: continue from ``out_dir/checkpoint.pt``.
        validate: called on rank 0 after each epoch with the (unwrapped) method; returns metrics.
        select: a key of ``validate``'s metrics to maximise, or several compared in order (ties on the first
            go to the second...); a key written ``-name`` is minimised. The best weights are kept in the
            checkpoint.
        stop_after_epoch: stop after this epoch (0-based) as if interrupted (for tests and time budgets).

    Returns:
        The history: one dict of metrics per epoch.
    """
    env = env or setup(cfg.device)
    out = Path(out_dir)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    device = env.device
    method.to(device)
    n = len(tensors[0])
    per_rank_batch = max(1, cfg.batch_size // env.world_size)
    # the sampler only needs the number of rows: a range stands in for the dataset
    sampler: DistributedSampler[int] = DistributedSampler(cast("Dataset[int]", range(n)), num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=env.distributed)  # fmt: skip
    n_local = len(sampler)
    drop_last = cfg.drop_last and n_local >= per_rank_batch
    steps_per_epoch = n_local // per_rank_batch if drop_last else math.ceil(n_local / per_rank_batch)
    steps_per_epoch = max(1, steps_per_epoch)
    params = [p for p in method.parameters() if p.requires_grad]
    # a method may ask for its own groups (a GAN's players use Adam β1 = 0.5); lr and decay come from cfg
    param_groups = getattr(method, "param_groups", None)
    groups = param_groups() if param_groups is not None else params
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # at most half the run warms up: a short run (--epochs 5 against 5 warm-up epochs) still decays
    warm = min(cfg.warmup_epochs, cfg.epochs // 2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.epochs * steps_per_epoch, warm * steps_per_epoch))
    model: nn.Module = method
    if env.distributed:
        model = nn.parallel.DistributedDataParallel(method, device_ids=[device.index] if device.type == "cuda" else None)
    history: list[dict[str, float]] = []
    start = 0
    best: dict[str, Any] | None = None
    if resume and (out / CHECKPOINT).exists():
        ck = load_checkpoint(out)
        check_resume_config(out / CHECKPOINT, ck.get("config", {}), config)
        method.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        history = list(ck["history"])
        best = ck.get("best")
        start = int(ck["epoch"]) + 1
        torch.set_rng_state(ck["rng"]["torch"])
        if start >= cfg.epochs and progress and env.is_main:  # else it would end in silence
            print(f"{out}: the run is already complete ({start} of {cfg.epochs} epochs); nothing to do", flush=True)
    data = tuple(t.to(device) for t in tensors)
    use_amp = device.type == "cuda"
    from tqdm.auto import tqdm

    # the epochs this call runs (a refit stops early on the same learning-rate schedule): what the lines count to
    last = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch + 1)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), device=device)
        g = torch.Generator(device=device).manual_seed(_epoch_seed(cfg.seed, epoch, env.rank))
        model.train()
        sums: dict[str, float] = {}
        # tqdm only on a terminal: logs and CI get the per-epoch lines below instead
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{last}", leave=False,
                   disable=None if (progress and env.is_main) else True)  # fmt: skip
        for step in bar:
            idx = order[step * per_rank_batch : (step + 1) * per_rank_batch]
            batch = tuple(t[idx] for t in data)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = _call_loss(model, method, batch, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                logs["grad_norm"] = float(nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            sched.step()
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"loss became {float(loss.detach())} at epoch {epoch} step {step}; lower --lr")
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
        row: dict[str, float] = {"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}}
        row["lr"] = float(sched.get_last_lr()[0])
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if env.is_main:
            if validate is not None:
                method.eval()
                row.update(validate(method))
                row["seconds"] = round(time.perf_counter() - t0, 3)  # the epoch's wall time: training and validation
            history.append(row)
            score = selection_score(row, select)
            if score is not None and (best is None or score > tuple(best["metric"])):
                best = {"epoch": epoch, "metric": list(score),
                        "model": {k: v.detach().cpu().clone() for k, v in method.state_dict().items()}}  # fmt: skip
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            ck = {
                "format": FORMAT,
                "config": config,
                "model": method.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "rng": {"torch": torch.get_rng_state()},
                "history": history,
            }
            if best is not None:
                ck["best"] = best
            save_atomic(ck, out / CHECKPOINT)
            every = max(1, last // 10)
            if progress and (epoch % every == 0 or epoch == last - 1):
                shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",))
                print(f"epoch {epoch + 1}/{last}: {shown}", flush=True)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    if best is not None:
        method.load_state_dict(best["model"])
    return history


@contextlib.contextmanager
def frozen_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorm layers in training mode still normalise with batch statistics but leave
    their running statistics unchanged (momentum 0)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, nbt) in zip(bns, saved, strict=True):
            m.momentum = mom
            if nbt is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(nbt)


def selection_score(row: dict[str, float], select: str | tuple[str, ...] | None) -> tuple[float, ...] | None:
    """What ``fit(select=...)`` maximises for one epoch's metrics (None without a selection)."""
    if select is None:
        return None
    keys = (select,) if isinstance(select, str) else select
    return tuple(-row[k[1:]] if k.startswith("-") else row[k] for k in keys)


def _call_loss(model: nn.Module, method: nn.Module, batch: tuple[torch.Tensor, ...], g: torch.Generator):
    # DDP hooks gradient sync into forward(); route the method's loss through it.
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model(batch, g)
    loss = getattr(method, "loss", None)
    if not callable(loss):
        raise TypeError(f"{type(method).__name__} has no loss(batch, generator) method")
    return loss(batch, g)
