"""Pretraining and fine-tuning jobs built from typed configs (what the CLI and the demo call)."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgessl.datasets import WindowDataset
from edgessl.trainer import evaluate as ev
from edgessl.trainer.augment import axis_triads
from edgessl.trainer.data import (
    DataConfig,
    groups_of_test_split,
    label_budget_split,
    labelled,
    match_only,
    train_groups,
    unlabelled_windows,
)
from edgessl.trainer.distributed import setup
from edgessl.trainer.encoders import EncoderConfig, build_encoder
from edgessl.trainer.fit import FitConfig, fit, load_checkpoint, load_saved, save_atomic, selection_score
from edgessl.trainer.methods import LABELLED_METHODS, MethodConfig, build_method
from edgessl.trainer.text import describe

MODEL_FILE = "model.pt"
# validation accuracy saturates with many labels (every epoch at 1.0): ties go to the lower validation loss
SELECT = ("val_accuracy", "-val_loss")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """A pretraining job. The label fields matter only to methods that train on labels (``clip``): their
    pairs come from the training split minus its validation part (the same split fine-tuning carves with
    the same seed), restricted to a label budget, with ``exclude_classes`` held out for zero-shot tests."""

    data: DataConfig = DataConfig()
    encoder: EncoderConfig = EncoderConfig()
    method: MethodConfig = MethodConfig()
    fit: FitConfig = FitConfig(epochs=50, batch_size=128, lr=1e-3, warmup_epochs=5)
    labels_per_class: int | None = None
    label_fraction: float | None = None
    exclude_classes: tuple[str, ...] = ()
    descriptions: str | None = None  # JSON file {label: description}; default: edgessl.trainer.text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pretrain", "data": self.data.to_dict(), "encoder": self.encoder.to_dict(),
                "method": self.method.to_dict(), "fit": self.fit.to_dict(), "labels_per_class": self.labels_per_class,
                "label_fraction": self.label_fraction, "exclude_classes": list(self.exclude_classes),
                "descriptions": self.descriptions}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        return cls(DataConfig.from_dict(d["data"]), EncoderConfig.from_dict(d["encoder"]),
                   MethodConfig.from_dict(d["method"]), FitConfig(**d["fit"]), d.get("labels_per_class"),
                   d.get("label_fraction"), tuple(d.get("exclude_classes", ())), d.get("descriptions"))  # fmt: skip


def labelled_pairs(cfg: PretrainConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Training windows, labels remapped to the kept classes, the kept class names and the channel names
    (for ``clip``)."""
    ds, X_train_all, _ = labelled(cfg.data)
    unknown = set(cfg.exclude_classes) - set(ds.class_names)
    if unknown:
        raise ValueError(f"exclude_classes {sorted(unknown)} are not classes of {cfg.data.spec} ({ds.class_names})")
    tr, _ = label_budget_split(ds.y_train, per_class=cfg.labels_per_class, fraction=cfg.label_fraction,
                               seed=cfg.fit.seed)  # fmt: skip
    kept = [c for c in ds.class_names if c not in cfg.exclude_classes]
    remap = np.full(len(ds.class_names), -1)
    remap[[ds.class_names.index(c) for c in kept]] = np.arange(len(kept))
    y = remap[ds.y_train[tr]]
    keep = y >= 0
    return X_train_all[tr][keep], y[keep], kept, list(ds.channel_names)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning with a label budget. ``init`` is a pretraining checkpoint (None: from scratch)."""

    data: DataConfig = DataConfig()
    init: str | None = None
    encoder: EncoderConfig = EncoderConfig()
    labels_per_class: int | None = None
    label_fraction: float | None = None
    val_fraction: float = 0.2
    # carve the validation split from whole groups of rows (e.g. "subject": validate on unseen people)
    val_groups: str | None = None
    # (i, k): validate on fold i of a stratified k-fold partition instead (cross_validate runs the k folds)
    val_fold: tuple[int, int] | None = None
    mode: str = "finetune"  # or "linear": frozen encoder, only the head trains
    ssl_weight: float = 0.1  # joint self-supervised (transform prediction) head for test-time training; 0 = off
    fit: FitConfig = FitConfig(epochs=100, batch_size=64, lr=1e-3, warmup_epochs=5, drop_last=False)
    # self-training: after fine-tuning, pseudo-label the training windows outside the label budget and the
    # validation split (their labels are never read), keep the most confident ``pseudo_fraction`` of each
    # predicted class, and fine-tune again from the same initialisation on budget + pseudo-labels; repeat
    self_train_rounds: int = 0
    pseudo_fraction: float = 0.5
    # consistency training (FixMatch) on the same unlabelled windows: weight of the unlabelled loss (0 = off),
    # the confidence a weak view's prediction needs to become a target, and unlabelled windows per labelled
    consistency_weight: float = 0.0
    consistency_threshold: float = 0.8
    unlabelled_ratio: int = 4
    # more unlabelled windows for both: the training windows of this dataset spec (``+`` pools several; never
    # a test split), prepared as ``data`` (channels by name, rate, length, preprocessing). With it, FixMatch
    # and self-training also run with the whole training split labelled
    unlabelled: str | None = None
    # with the whole training split labelled (no budget): after selecting the epoch on the validation split,
    # train again on training + validation windows for that many epochs (same schedule) and test that model
    refit: bool = False
    # also report the selected model with its BatchNorm statistics re-estimated on each group's unlabelled
    # windows (e.g. "subject": adaptation to each test user, AdaBN); the plain test accuracy is unchanged
    test_adapt_groups: str | None = None
    # fine-tuning views also rotate the sensor's (x, y, z) channel triads (found by name) by up to this many
    # degrees, one rotation per window for all its triads; 0 = off
    rotate_degrees: float = 0.0
    # mixup of labelled windows in pairs with weights ~ Beta(alpha, alpha); 0 = off
    mixup_alpha: float = 0.0
    # knowledge distillation from fine-tuned models (model.pt folders) of the same data config and classes:
    # loss = (1 - distill_weight) * CE + distill_weight * T^2 * KL(teachers' mean || student) at T; () = off
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.5
    distill_temperature: float = 1.0
    # also distil on the unlabelled pool (windows outside the budget and validation split, and `unlabelled`):
    # + distill_weight * T^2 * KL(teachers' mean || student) on strongly augmented views of its windows
    distill_unlabelled: bool = False
    # seed of the label budget and validation split (None: fit.seed, which also seeds the initialisation,
    # batch order and views): models of one split that differ in everything else, e.g. an ensemble of teachers
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if self.val_fold is not None:
            object.__setattr__(self, "val_fold", tuple(int(v) for v in self.val_fold))  # JSON gives a list
            i, k = self.val_fold
            if k < 2 or not 0 <= i < k or self.val_groups:
                raise ValueError(f"val_fold must be (i, k) with k >= 2 and 0 <= i < k, without val_groups; got "
                                 f"{self.val_fold}, val_groups={self.val_groups!r}")  # fmt: skip
        object.__setattr__(self, "teachers", tuple(str(t) for t in self.teachers))  # JSON gives a list
        if self.teachers and not (0 < self.distill_weight <= 1 and self.distill_temperature > 0):
            raise ValueError(f"distillation needs distill_weight in (0, 1] and distill_temperature > 0; got "
                             f"{self.distill_weight}, {self.distill_temperature}")  # fmt: skip
        if self.distill_unlabelled and not self.teachers:
            raise ValueError("distill_unlabelled distils the teachers on unlabelled windows; give teachers too")
        if not 0 <= self.rotate_degrees <= 180:
            raise ValueError(f"rotate_degrees must be in [0, 180]; got {self.rotate_degrees}")
        if not self.mixup_alpha >= 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0: off); got {self.mixup_alpha}")
        if self.refit and (self.labels_per_class is not None or self.label_fraction is not None):
            raise ValueError("refit trains on the validation labels too, which a label budget does not have; "
                             "use it without labels_per_class / label_fraction")  # fmt: skip
        if self.mode not in ("finetune", "linear"):
            raise ValueError(f"mode must be 'finetune' or 'linear'; got {self.mode!r}")
        if self.self_train_rounds < 0 or not 0 < self.pseudo_fraction <= 1:
            raise ValueError(f"self_train_rounds must be >= 0 and pseudo_fraction in (0, 1]; got "
                             f"{self.self_train_rounds}, {self.pseudo_fraction}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(kind="finetune", data=self.data.to_dict(), encoder=self.encoder.to_dict(), fit=self.fit.to_dict())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        d = {k: v for k, v in d.items() if k != "kind"}
        d.update(data=DataConfig.from_dict(d["data"]), encoder=EncoderConfig.from_dict(d["encoder"]), fit=FitConfig(**d["fit"]))
        return cls(**d)


def pretrain(cfg: PretrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
             stop_after_epoch: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Self-supervised pretraining on the unlabeled training windows of ``cfg.data``."""
    torch.manual_seed(cfg.fit.seed)
    mcfg = cfg.method
    if mcfg.name in LABELLED_METHODS:
        X, y, kept, channels = labelled_pairs(cfg)
        mcfg = dataclasses.replace(mcfg, class_texts=tuple(describe(kept, cfg.descriptions)))
        tensors: tuple[torch.Tensor, ...] = (torch.from_numpy(X), torch.from_numpy(y))
    else:
        X, channels = unlabelled_windows(cfg.data)
        tensors = (torch.from_numpy(X),)
    if mcfg.rotate_degrees > 0:
        triads = tuple(axis_triads(channels))
        if not triads:
            raise ValueError(f"rotation views need (x, y, z) channel triads named like acc_x, acc_y, acc_z; the "
                             f"channels are {channels}")  # fmt: skip
        mcfg = dataclasses.replace(mcfg, triads=triads)
    enc = dataclasses.replace(cfg.encoder, in_channels=X.shape[1])
    cfg = dataclasses.replace(cfg, encoder=enc, method=dataclasses.replace(mcfg, window=int(X.shape[-1])))
    method = build_method(enc, cfg.method)
    if hasattr(method, "prepare"):
        method.prepare(tensors[0])
    if progress:
        print(f"pretrain {cfg.method.name}: {len(X)} unlabeled windows {tuple(X.shape[1:])}, "
              f"{sum(p.numel() for p in method.encoder.parameters())} encoder parameters", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    history = fit(method, tensors, cfg.fit, out_dir, cfg.to_dict(), resume=resume, progress=progress,
                  stop_after_epoch=stop_after_epoch)  # fmt: skip
    return {"history": history, "n_windows": len(X), "seconds": time.perf_counter() - t0}


def load_pretrained_encoder(path: str | Path) -> tuple[torch.nn.Module, EncoderConfig]:
    """Rebuild a pretrained encoder from its checkpoint alone."""
    ck = load_checkpoint(path)
    cfg = ck["config"]
    if cfg.get("kind") == "pretrain":
        enc_cfg = EncoderConfig.from_dict(cfg["encoder"])
        prefix = "encoder."
    elif cfg.get("kind") == "finetune":
        enc_cfg = EncoderConfig.from_dict(cfg["encoder"])
        prefix = "model.encoder."
    else:
        raise ValueError(f"{path}: checkpoint of unknown kind {cfg.get('kind')!r}")
    encoder = build_encoder(enc_cfg)
    state = {k[len(prefix) :]: v for k, v in ck["model"].items() if k.startswith(prefix)}
    encoder.load_state_dict(state)
    return encoder, enc_cfg


def finetune(cfg: FinetuneConfig, out_dir: str | Path, progress: bool = True, plots: bool = True,
             test: bool = True) -> dict[str, Any]:  # fmt: skip
    """Fine-tune (or linearly probe) on a label budget, select on validation, test once, write a report.

    Writes ``metrics.json``, ``model.pt`` (everything export needs), ``checkpoint.pt``, ``metrics.jsonl``,
    ``confusion.png`` and ``embedding.png`` to ``out_dir``. With ``test=False`` it stops after selection
    (no refit, no test prediction, nothing written but the training checkpoint and log) and returns the
    validation figures alone: a model-selection run, as ``cross_validate`` makes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = cfg.fit.seed
    torch.manual_seed(seed)
    ds, X_train_all, X_test = labelled(cfg.data)
    tr, va = label_budget_split(ds.y_train, per_class=cfg.labels_per_class, fraction=cfg.label_fraction,
                                val_fraction=cfg.val_fraction, seed=_split_seed(cfg),
                                groups=train_groups(ds, cfg.val_groups), fold=cfg.val_fold)  # fmt: skip
    Xtr, ytr, Xva, yva = X_train_all[tr], ds.y_train[tr], X_train_all[va], ds.y_train[va]
    if cfg.init:
        _, enc_cfg = load_pretrained_encoder(cfg.init)
        if enc_cfg.in_channels != ds.n_channels:
            raise ValueError(f"pretrained encoder takes {enc_cfg.in_channels} channels; the data have {ds.n_channels} "
                             f"({ds.channel_names}); choose channels with --channels")  # fmt: skip
    else:
        enc_cfg = dataclasses.replace(cfg.encoder, in_channels=ds.n_channels)
    cfg = dataclasses.replace(cfg, encoder=enc_cfg)
    if cfg.test_adapt_groups:  # fail before training, not after
        ids, counts = np.unique(groups_of_test_split(ds, cfg.test_adapt_groups), return_counts=True)
        if counts.min() < 4:
            raise ValueError(f"per-group test-time adaptation needs at least 4 test windows per "
                             f"{cfg.test_adapt_groups} (2 for each half when cross-fitted); {cfg.test_adapt_groups} "
                             f"{ids[counts.argmin()]} has {counts.min()}")  # fmt: skip
        if enc_cfg.kind != "cnn":
            raise ValueError(f"per-group test-time adaptation re-estimates BatchNorm statistics; the {enc_cfg.kind} "
                             "encoder has none (use the cnn encoder)")  # fmt: skip
    triads = axis_triads(ds.channel_names)
    if cfg.rotate_degrees > 0 and not triads:
        raise ValueError(f"rotation needs (x, y, z) channel triads named like acc_x, acc_y, acc_z; the channels are "
                         f"{ds.channel_names}")  # fmt: skip
    # checked before training, so that a mismatch fails early
    teachers = {stage: [_teacher(path, cfg, ds, stage) for path in cfg.teachers]
                for stage in (("selection", "refit") if cfg.refit else ("selection",))}  # fmt: skip
    env = setup(cfg.fit.device)

    def validate(m: ev.SupervisedMethod) -> dict[str, float]:
        logits = ev.predict_logits(m.model, Xva)
        nll = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(yva).long())
        return {"val_accuracy": ev.accuracy(logits.argmax(1), yva), "val_loss": float(nll)}

    # windows outside the label budget and the validation split (their labels are never read), then the
    # training windows of cfg.unlabelled: U[i] is X_train_all[pool[i]] for i < len(pool)
    pool = np.setdiff1d(np.arange(len(ds.y_train)), np.concatenate([tr, va]))
    U = X_train_all[pool]
    if cfg.unlabelled:
        extra, names = unlabelled_windows(dataclasses.replace(cfg.data, spec=cfg.unlabelled))
        if names != list(ds.channel_names) or extra.shape[1:] != X_train_all.shape[1:]:
            raise ValueError(f"unlabelled windows of {cfg.unlabelled} are {list(extra.shape[1:])} with channels {names}; "
                             f"the labelled ones are {list(X_train_all.shape[1:])} with {ds.channel_names}: choose "
                             "the same channels by name and a common length")  # fmt: skip
        held_out = {w.tobytes() for w in np.concatenate([Xva, X_test])}
        if n_same := sum(w.tobytes() in held_out for w in extra):
            raise ValueError(f"{n_same} unlabelled window(s) of {cfg.unlabelled} are validation or test windows of "
                             f"{cfg.data.spec}; an unlabelled pool must hold none of the windows a model is selected "
                             "or tested on (e.g. npz:uwave_raw.npz?outside=FILE keeps FILE's gestures out)")  # fmt: skip
        U = np.concatenate([U, extra])
    consistency = cfg.consistency_weight > 0 and cfg.mode == "finetune" and len(U) > 0
    if cfg.distill_unlabelled and not len(U):
        raise ValueError("distill_unlabelled needs unlabelled windows: every training window is labelled or in the "
                         "validation split; give more with unlabelled=SPEC (--unlabelled)")  # fmt: skip
    draws = consistency or cfg.distill_unlabelled  # steps draw from the pool U

    def train(X: np.ndarray, y: np.ndarray, stop_after_epoch: int | None = None
              ) -> tuple[ev.Classifier, ev.SupervisedMethod, list[dict]]:  # fmt: skip
        stage_teachers = teachers["selection" if stop_after_epoch is None else "refit"]
        """A fresh model from the initialisation, fitted on ``(X, y)`` and selected on the validation split
        (or, with ``stop_after_epoch``, trained to that epoch without selection: the refit)."""
        torch.manual_seed(seed)
        encoder = load_pretrained_encoder(cfg.init)[0] if cfg.init else build_encoder(enc_cfg)
        model = ev.Classifier(encoder, ds.n_classes, enc_cfg.out_dim).to(env.device)
        if cfg.mode == "linear":
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        method = ev.SupervisedMethod(model, ev.finetune_augment(cfg.rotate_degrees, triads), frozen_encoder=cfg.mode == "linear",
                                     ssl_weight=cfg.ssl_weight if cfg.mode == "finetune" else 0.0, out_dim=enc_cfg.out_dim,
                                     unlabelled=torch.from_numpy(U) if draws else None,
                                     consistency_weight=cfg.consistency_weight, threshold=cfg.consistency_threshold,
                                     unlabelled_ratio=cfg.unlabelled_ratio, mixup_alpha=cfg.mixup_alpha,
                                     teachers=stage_teachers,
                                     distill_weight=cfg.distill_weight if stage_teachers else 0.0,
                                     distill_temperature=cfg.distill_temperature,
                                     distill_unlabelled=cfg.distill_unlabelled)  # fmt: skip
        if draws:
            # an epoch passes over the unlabelled windows once; the few labelled ones repeat (fresh views
            # each time) so that every step still has a full labelled batch beside its unlabelled draw
            reps = max(1, math.ceil(max(len(U) / cfg.unlabelled_ratio, cfg.fit.batch_size) / len(X)))
            X, y = np.tile(X, (reps, 1, 1)), np.tile(y, reps)
        fit_cfg = dataclasses.replace(cfg.fit, batch_size=min(cfg.fit.batch_size, len(X)))
        history = fit(method, (torch.from_numpy(X), torch.from_numpy(y)), fit_cfg, out, cfg.to_dict(),
                      validate=None if stop_after_epoch is not None else validate,
                      select=None if stop_after_epoch is not None else SELECT,
                      stop_after_epoch=stop_after_epoch, progress=progress, env=env)  # fmt: skip
        return model, method, history

    if progress:
        print(f"finetune ({cfg.mode}): {len(tr)} labelled training windows, {len(va)} validation, "
              f"{len(X_test)} test; init={cfg.init or 'scratch'}", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    model, method, history = train(Xtr, ytr)
    X_fit, y_fit = Xtr, ytr  # what the selected model trained on (with self-training: + pseudo-labels)
    self_training = []
    for r in range(cfg.self_train_rounds):
        if not len(U):
            break
        pick, pseudo = pseudo_labels(ev.predict_logits(model, U), cfg.pseudo_fraction)
        own = pick < len(pool)  # picked from the training split (the others come from cfg.unlabelled)
        X_fit, y_fit = np.concatenate([Xtr, U[pick]]), np.concatenate([ytr, pseudo])
        model, method, history = train(X_fit, y_fit)
        self_training.append({"round": r + 1, "pseudo_labels": len(pick),
                              "val_accuracy": float(max(h["val_accuracy"] for h in history)),
                              # a diagnostic only, after the fact, on the training split's windows: these
                              # labels took no part in training
                              "pseudo_label_accuracy_diagnostic": float(np.mean(pseudo[own] == ds.y_train[pool[pick[own]]]))
                              if own.any() else None})  # fmt: skip
        if progress:
            print(f"self-training round {r + 1}: {len(pick)} pseudo-labelled windows", flush=True)
    best_epoch = int(max(history, key=lambda r: selection_score(r, SELECT))["epoch"])
    val_acc = ev.accuracy(ev.predict_logits(model, Xva).argmax(1), yva)
    if not test:
        return {"val_accuracy": val_acc, "best_epoch": best_epoch, "n_val": len(va), "n_train_labels": len(tr),
                # per epoch, for pooling folds (weighted by n_val): validation accuracy and loss
                "val_curve": [{"epoch": int(h["epoch"]), "val_accuracy": float(h["val_accuracy"]),
                               "val_loss": float(h["val_loss"])} for h in history],
                "seconds": time.perf_counter() - t0}  # fmt: skip
    if cfg.refit:
        # the selected model, as a distillation teacher for students of the same split (see _teacher)
        save_atomic({"format": "edgessl-model/1", "config": cfg.to_dict(), "class_names": list(ds.class_names),
                     "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
                    out / SELECTION_MODEL_FILE)  # fmt: skip
        if progress:
            print(f"refit on {len(X_fit) + len(va)} training (and pseudo-labelled) + validation windows for "
                  f"{best_epoch + 1} epochs", flush=True)  # fmt: skip
        # (the k-NN diagnostic and the prototypes below keep using the training part alone)
        model, method, _ = train(np.concatenate([X_fit, Xva]), np.concatenate([y_fit, yva]), stop_after_epoch=best_epoch)
    # the test split is touched once, here, with the validation-selected weights (or the refit to that epoch)
    logits = ev.predict_logits(model, X_test)
    pred = logits.argmax(1)
    test_acc = ev.accuracy(pred, ds.y_test)
    adapted = _group_adapted(model, cfg, ds, X_test, Xva, va) if cfg.test_adapt_groups else None
    E_tr, E_va, E_te = ev.embed(model.encoder, Xtr), ev.embed(model.encoder, Xva), ev.embed(model.encoder, X_test)
    k, knn_val = ev.knn_select(E_tr, ytr, E_va, yva, ds.n_classes)
    knn_test = ev.accuracy(ev.knn_predict(E_tr, ytr, E_te, k, ds.n_classes), ds.y_test)
    cm = ev.confusion_matrix(ds.y_test, pred, ds.n_classes)
    metrics = {
        "test_accuracy": test_acc,
        "val_accuracy": val_acc,
        "n_train_labels": len(tr) + (len(va) if cfg.refit else 0),
        "n_val": len(va),
        # with refit, val_accuracy is the selection run's: the tested model has trained on those windows
        "refit": {"epochs": best_epoch + 1, "windows": len(X_fit) + len(va)} if cfg.refit else None,
        "n_test": len(X_test),
        "best_epoch": best_epoch,
        "knn": {"k": k, "val_accuracy": knn_val, "test_accuracy": knn_test},
        "dataset": ds.name,
        "init": cfg.init,
        "mode": cfg.mode,
        "seed": seed,
        "split_seed": _split_seed(cfg),
        "protocol": "validation split carved from the training data ("
        + (f"whole {cfg.val_groups} groups" if cfg.val_groups else "stratified")
        + "); epoch and k selected on it; test split evaluated once with the selected weights",
        "confusion_matrix": cm.tolist(),
        "class_names": ds.class_names,
        "seconds": time.perf_counter() - t0,
        "self_training": self_training,
        "test_adapted": adapted,
        "consistency": {"weight": cfg.consistency_weight, "threshold": cfg.consistency_threshold,
                        "unlabelled_windows": len(U) if consistency else 0,
                        "final_mask_rate": history[-1].get("mask_rate")} if consistency else None,
        "distill_unlabelled_windows": len(U) if cfg.distill_unlabelled else 0,
    }
    # what export and the runtime need: the model, its data contract and embedding statistics
    E_norm = E_tr / np.maximum(np.linalg.norm(E_tr, axis=1, keepdims=True), 1e-12)
    prototypes = np.stack([E_norm[ytr == c].mean(0) if np.any(ytr == c) else np.zeros(E_tr.shape[1])
                           for c in range(ds.n_classes)]).astype(np.float32)  # fmt: skip
    bundle_info = {
        "format": "edgessl-model/1",
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(ds.class_names),
        "channel_names": list(ds.channel_names),
        "channel_units": list(ds.channel_units),
        "rate_hz": cfg.data.rate_hz or ds.rate_hz,
        "window": int(X_test.shape[-1]),
        "metrics": {k: metrics[k] for k in ("test_accuracy", "val_accuracy", "n_train_labels")},
        "embedding_mean": torch.from_numpy(E_tr.mean(0).astype(np.float32)),
        "embedding_std": torch.from_numpy(E_tr.std(0).astype(np.float32)),
        "prototypes": torch.from_numpy(prototypes),
        **_input_moments(ds, cfg.data),
        "calibration_windows": torch.from_numpy(X_train_all[np.sort(np.concatenate([tr, va]))][:512]),
    }
    if method.ssl_head is not None:
        bundle_info["ssl_head_weight"] = method.ssl_head.weight.detach().cpu()
        bundle_info["ssl_head_bias"] = method.ssl_head.bias.detach().cpu()
    save_atomic(bundle_info, out / MODEL_FILE)
    ev.write_json(out / "metrics.json", metrics)
    if plots:
        ev.plot_confusion(cm, ds.class_names, out / "confusion.png", f"{ds.name}: test accuracy {test_acc:.3f}")
        ev.plot_embedding(E_te, ds.y_test, ds.class_names, out / "embedding.png", f"{ds.name}: test embeddings (PCA)")
    if progress:
        print(f"val accuracy {val_acc:.4f} (epoch {best_epoch + 1}), test accuracy {test_acc:.4f}, "
              f"k-NN test {knn_test:.4f} (k={k})", flush=True)  # fmt: skip
    return metrics


def load_classifier(folder_or_file: str | Path) -> tuple[ev.Classifier, dict[str, Any]]:
    """Rebuild a fine-tuned classifier (eval mode) and its saved metadata from ``model.pt`` alone."""
    info = load_saved(folder_or_file, MODEL_FILE, "edgessl-model/1", "fine-tuned model")
    enc_cfg = EncoderConfig.from_dict(info["config"]["encoder"])
    model = ev.Classifier(build_encoder(enc_cfg), len(info["class_names"]), enc_cfg.out_dim)
    model.load_state_dict(info["model"])
    return model.eval(), info


SELECTION_MODEL_FILE = "model_selection.pt"  # with refit: the validation-selected model, before the refit
_SPLIT_FIELDS = ("labels_per_class", "label_fraction", "val_fraction", "val_groups", "val_fold")


def _split_seed(cfg: FinetuneConfig) -> int:
    return cfg.fit.seed if cfg.split_seed is None else cfg.split_seed


def _teacher(path: str, cfg: FinetuneConfig, ds: WindowDataset, stage: str) -> ev.Classifier:
    """A distillation teacher, checked to take the student's inputs, to answer with its classes, and never
    to have trained on the student's validation windows: it must come from the same split (same split
    seed and budget), and while the student selects its epoch (``stage="selection"``) a refitted teacher stands in
    by its own selection model, which had not seen them; the student's refit distils the refitted one."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    use = folder / (SELECTION_MODEL_FILE if stage == "selection" and (folder / SELECTION_MODEL_FILE).exists()
                    else MODEL_FILE)  # fmt: skip
    model, info = load_classifier(use)
    tc = info["config"]
    split = {k: (tc.get(k), getattr(cfg, k)) for k in _SPLIT_FIELDS}
    split["split_seed"] = (tc.get("split_seed") if tc.get("split_seed") is not None else tc["fit"]["seed"],
                           _split_seed(cfg))  # fmt: skip
    split = {k: v for k, v in split.items() if (list(v[0]) if isinstance(v[0], (list, tuple)) else v[0])
             != (list(v[1]) if isinstance(v[1], (list, tuple)) else v[1])}  # fmt: skip
    if split:
        raise ValueError(f"teacher {path} was fine-tuned on another split (teacher, student): {split}; it would have "
                         "trained on the student's validation windows. Fine-tune the teacher with the student's "
                         "split seed and label budget")  # fmt: skip
    if stage == "selection" and use.name == MODEL_FILE and tc.get("refit"):
        raise ValueError(f"teacher {path} was refitted on the validation windows and has no {SELECTION_MODEL_FILE}; "
                         "the student could not select on them")  # fmt: skip
    theirs, ours = tc["data"], cfg.data.to_dict()
    if theirs != ours:
        diff = {k: (theirs.get(k), ours.get(k)) for k in ours if theirs.get(k) != ours.get(k)}
        raise ValueError(f"teacher {path} was fine-tuned on other inputs (teacher, student): {diff}; a teacher "
                         "must see the windows the student sees")  # fmt: skip
    if list(info["class_names"]) != list(ds.class_names):
        raise ValueError(f"teacher {path} has classes {info['class_names']}; the student's are {ds.class_names}")
    return model


def cross_validate(cfg: FinetuneConfig, folds: int, out_dir: str | Path, repeats: int = 1,
                   progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Stratified ``folds``-fold cross-validation of a fine-tuning recipe on the training split alone.

    Each of ``repeats`` partitions (seeds ``cfg.fit.seed``, ``+1``, ...) trains ``folds`` models, each
    validated on one fold; the test split is never predicted. Per epoch, the folds' validation windows are
    pooled (every training window counted once per repeat), and the recipe's score is the pooled accuracy
    of the best epoch (ties to the lower pooled loss): one maximum over ``folds`` times more windows than a
    single 20 % split has, which is what separates recipes whose single-split accuracies tie.

    Writes ``cv.json`` to ``out_dir`` and returns it: ``cv_accuracy``, ``best_epoch``, the pooled curve, and
    per repeat the pooled accuracy at its own best epoch and each fold's selected accuracy.
    """
    if cfg.teachers:
        raise ValueError("cross-validation with distillation teachers is not supported: a teacher fine-tuned on "
                         "the training split has seen every fold's validation windows")  # fmt: skip
    if cfg.val_groups:
        raise ValueError(f"cross-validation validates on stratified folds; it does not take val_groups "
                         f"({cfg.val_groups!r})")  # fmt: skip
    if cfg.refit or cfg.test_adapt_groups:
        cfg = dataclasses.replace(cfg, refit=False, test_adapt_groups=None)  # both act after selection only
    out = Path(out_dir)
    runs: list[list[dict[str, Any]]] = []
    for r in range(repeats):
        seed = cfg.fit.seed + r
        runs.append([])
        for i in range(folds):
            fold_cfg = dataclasses.replace(cfg, val_fold=(i, folds), fit=dataclasses.replace(cfg.fit, seed=seed),
                                           split_seed=None if cfg.split_seed is None else cfg.split_seed + r)  # fmt: skip
            m = finetune(fold_cfg, out / f"seed{seed}_fold{i}", progress=False, plots=False, test=False)
            runs[-1].append(m)
            if progress:
                print(f"cv seed {seed} fold {i + 1}/{folds}: val accuracy {m['val_accuracy']:.4f} "
                      f"(epoch {m['best_epoch'] + 1}, {m['n_val']} windows)", flush=True)  # fmt: skip

    def pooled(ms: list[dict[str, Any]]) -> list[dict[str, float]]:
        n = sum(m["n_val"] for m in ms)
        epochs = min(len(m["val_curve"]) for m in ms)
        # whole windows, so that epochs with as many correct windows tie exactly and the loss decides
        return [{"epoch": e,
                 "val_accuracy": sum(round(m["val_curve"][e]["val_accuracy"] * m["n_val"]) for m in ms) / n,
                 "val_loss": sum(m["val_curve"][e]["val_loss"] * m["n_val"] for m in ms) / n}
                for e in range(epochs)]  # fmt: skip

    def best(curve: list[dict[str, float]]) -> dict[str, float]:
        return max(curve, key=lambda c: selection_score(c, SELECT))  # as one run selects its epoch

    curve = pooled([m for ms in runs for m in ms])
    top = best(curve)
    report = {
        "cv_accuracy": top["val_accuracy"],
        "best_epoch": int(top["epoch"]),
        "folds": folds,
        "repeats": repeats,
        "n_windows": sum(m["n_val"] for m in runs[0]),
        "per_repeat": [{"seed": cfg.fit.seed + r, "cv_accuracy": best(pooled(ms))["val_accuracy"],
                        "fold_val_accuracy": [m["val_accuracy"] for m in ms]} for r, ms in enumerate(runs)],
        "curve": curve,
        "protocol": f"stratified {folds}-fold cross-validation on the training split, {repeats} partition(s); "
                    "validation windows pooled per epoch; the test split is never predicted",
        "config": cfg.to_dict(),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    ev.write_json(out / "cv.json", report)
    return report


def _group_adapted(model: ev.Classifier, cfg: FinetuneConfig, ds: WindowDataset, X_test: np.ndarray,
                   X_val: np.ndarray, va: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """Accuracy of ``model`` adapted per group (BatchNorm statistics of each group's unlabelled windows)."""
    name = cfg.test_adapt_groups  # checked before training
    g_tr, g_te = ds.groups[name]
    g_va = g_tr[va]
    pred = ev.group_adapted_logits(model, X_test, g_te).argmax(1)
    pred_cross = ev.group_adapted_logits(model, X_test, g_te, crossfit_seed=cfg.fit.seed).argmax(1)
    return {
        "groups": name,
        "method": "BatchNorm statistics re-estimated on each group's unlabelled windows (AdaBN); weights unchanged",
        "n_test_groups": int(len(np.unique(g_te))),
        "test_accuracy": ev.accuracy(pred, ds.y_test),
        # each window predicted with the statistics of the other half of its group's windows
        "test_accuracy_crossfit": ev.accuracy(pred_cross, ds.y_test),
        # a diagnostic on the validation windows, grouped the same way; None where a group there has a
        # single window (no statistics to re-estimate), as small validation splits of many users can
        "val_accuracy": ev.accuracy(ev.group_adapted_logits(model, X_val, g_va).argmax(1), ds.y_train[va])
        if len(g_va) and np.unique(g_va, return_counts=True)[1].min() >= 2 else None,
        "confusion_matrix": ev.confusion_matrix(ds.y_test, pred, ds.n_classes).tolist(),
    }


def pseudo_labels(logits: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices and classes of the most confident ``fraction`` of each predicted class (at least one each),
    so that pseudo-labels stay class-balanced as far as the predictions allow."""
    from edgessl.edge_runtime.adapt import softmax

    p = softmax(logits)
    conf, cls = p.max(1), p.argmax(1)
    pick = []
    for c in np.unique(cls):
        rows = np.flatnonzero(cls == c)
        pick.append(rows[np.argsort(-conf[rows], kind="stable")[: max(1, int(round(fraction * len(rows))))]])
    pick = np.sort(np.concatenate(pick)) if pick else np.zeros(0, np.int64)
    return pick, cls[pick]


def _input_moments(ds: WindowDataset, data: DataConfig) -> dict[str, torch.Tensor]:
    """Moments of the raw 3-axis accelerometer signal (units g) over the whole training split (no labels
    needed), at the model's rate and length but before preprocessing: what input-side adaptation matches a
    shifted sensor to. Empty when the model's inputs have no three channels in g."""
    from edgessl.edge_runtime.adapt import MOMENT_LAGS, moment_mismatch, signal_moments

    acc = [i for i, u in enumerate(ds.channel_units) if u == "g"][:3]
    if len(acc) < 3:
        return {}
    X = match_only(ds.X_train[:, acc], ds.rate_hz, data)
    lags = tuple(t for t in MOMENT_LAGS if t < X.shape[-1])  # very short windows keep the lags that fit
    if not lags:
        return {}
    m = signal_moments(X, lags)
    # how far one person's (or one stretch of recording's) moments lie from the whole training split's:
    # the adapter leaves streams within that distance alone
    subject = ds.groups.get("subject")
    if subject is not None:
        groups = [np.flatnonzero(subject[0] == s) for s in np.unique(subject[0])]
    else:
        groups = [np.arange(i, min(i + 128, len(X))) for i in range(0, len(X), 128)]
    eye, zero = np.eye(3), np.zeros(3)
    natural = [moment_mismatch(m, signal_moments(X[g], lags), eye, zero) for g in groups if len(g) >= 32]
    out = {f"input_moments_{k}": torch.from_numpy(np.asarray(v)) for k, v in m.items()}
    out["input_moments_natural"] = torch.tensor(float(max(natural)) if natural else 0.0, dtype=torch.float64)
    return out


def evaluate_encoder(init: str, data: DataConfig, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Frozen-encoder evaluation of a checkpoint: linear probe and cosine k-NN, selected on validation."""
    encoder, enc_cfg = load_pretrained_encoder(init)
    ds, Xtr_all, Xte = labelled(data)
    tr, va = label_budget_split(ds.y_train, val_fraction=val_fraction, seed=seed)
    E_tr, E_va, E_te = ev.embed(encoder, Xtr_all[tr]), ev.embed(encoder, Xtr_all[va]), ev.embed(encoder, Xte)
    predict, info = ev.linear_probe(E_tr, ds.y_train[tr], E_va, ds.y_train[va], ds.n_classes, seed=seed)
    k, knn_val = ev.knn_select(E_tr, ds.y_train[tr], E_va, ds.y_train[va], ds.n_classes)
    return {
        "linear_probe": {**info, "test_accuracy": ev.accuracy(predict(E_te), ds.y_test)},
        "knn": {"k": k, "val_accuracy": knn_val,
                "test_accuracy": ev.accuracy(ev.knn_predict(E_tr, ds.y_train[tr], E_te, k, ds.n_classes), ds.y_test)},
        "dataset": ds.name,
        "init": str(init),
    }  # fmt: skip
