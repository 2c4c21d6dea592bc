"""Pretraining and fine-tuning jobs built from typed configs (what the CLI and the demo call)."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgessl import preprocess as pp
from edgessl.datasets import DataFormatError, WindowDataset, load, resolve_channels
from edgessl.errors import UsageError
from edgessl.templates import class_templates
from edgessl.trainer import evaluate as ev
from edgessl.trainer.augment import axis_triads
from edgessl.trainer.config_file import drop_retired
from edgessl.trainer.data import (
    DataConfig,
    label_budget_split,
    labelled,
    match_only,
    train_groups,
    unit_rank,
    unlabelled_windows,
    window_units,
)
from edgessl.trainer.distributed import DistEnv, setup
from edgessl.trainer.encoders import EncoderConfig, build_encoder
from edgessl.trainer.fit import FitConfig, fit, load_checkpoint, load_saved, save_atomic, selection_score
from edgessl.trainer.methods import LABELLED_METHODS, MethodConfig, build_method
from edgessl.trainer.run_dir import check_not_init, run_in
from edgessl.trainer.supervised import Classifier, FixMatch, SupervisedMethod, TransformPrediction, finetune_augment
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

    def __post_init__(self) -> None:
        check_label_budget(self.labels_per_class, self.label_fraction)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pretrain", "data": self.data.to_dict(), "encoder": self.encoder.to_dict(),
                "method": self.method.to_dict(), "fit": self.fit.to_dict(), "labels_per_class": self.labels_per_class,
                "label_fraction": self.label_fraction, "exclude_classes": list(self.exclude_classes),
                "descriptions": self.descriptions}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        return cls(DataConfig.from_dict(d["data"]), EncoderConfig.from_dict(d["encoder"]),
                   MethodConfig.from_dict(d["method"]), FitConfig.from_dict(d["fit"]), d.get("labels_per_class"),
                   d.get("label_fraction"), tuple(d.get("exclude_classes", ())), d.get("descriptions"))  # fmt: skip


def check_label_budget(labels_per_class: int | None, label_fraction: float | None) -> None:
    """Refuse a label budget no split can take, naming the config key."""
    if labels_per_class is not None and (isinstance(labels_per_class, bool) or labels_per_class < 1):
        raise ValueError(f"labels_per_class must be a whole number >= 1 (or unset: every window); got {labels_per_class!r}")
    if label_fraction is not None and not 0 < label_fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1] (or unset: every window); got {label_fraction!r}")
    if labels_per_class is not None and label_fraction is not None:
        raise ValueError("labels_per_class and label_fraction are two label budgets; set one of them")


def labelled_pairs(cfg: PretrainConfig) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Training windows, labels remapped to the kept classes, the kept class names and the channel names
    (for ``clip``)."""
    ds, X_train_all, _ = labelled(cfg.data)
    unknown = set(cfg.exclude_classes) - set(ds.class_names)
    if unknown:
        raise ValueError(f"exclude_classes {sorted(unknown)} are not classes of {cfg.data.spec} ({ds.class_names})")
    tr, _ = label_budget_split(ds.y_train, per_class=cfg.labels_per_class, fraction=cfg.label_fraction,
                               seed=cfg.fit.seed, class_names=list(ds.class_names))  # fmt: skip
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
    # weight of a joint transform-prediction head (the first round's ``ttt`` needed it; the forward-only ``ttt``
    # does not); 0 = no head, the default
    ssl_weight: float = 0.0
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
    # fine-tuning views also rotate the sensor's (x, y, z) channel triads (found by name) by up to this many
    # degrees, one rotation per window for all its triads; 0 = off
    rotate_degrees: float = 0.0
    # mixup of labelled windows in pairs with weights ~ Beta(alpha, alpha); 0 = off
    mixup_alpha: float = 0.0
    # seed of the label budget and validation split (None: fit.seed, which also seeds the initialisation,
    # batch order and views): models of one split that differ in everything else
    split_seed: int | None = None

    def __post_init__(self) -> None:
        check_label_budget(self.labels_per_class, self.label_fraction)
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1); got {self.val_fraction}")
        if self.val_fold is not None:
            object.__setattr__(self, "val_fold", tuple(int(v) for v in self.val_fold))  # JSON gives a list
            i, k = self.val_fold
            if k < 2 or not 0 <= i < k or self.val_groups:
                raise ValueError(f"val_fold must be (i, k) with k >= 2 and 0 <= i < k, without val_groups; got "
                                 f"{self.val_fold}, val_groups={self.val_groups!r}")  # fmt: skip
        if not self.ssl_weight >= 0:
            raise ValueError(f"ssl_weight must be >= 0 (0: no transform-prediction head); got {self.ssl_weight}")
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
        d = drop_retired({k: v for k, v in d.items() if k != "kind"}, RETIRED_FINETUNE, "finetune config")
        d.update(data=DataConfig.from_dict(d["data"]), encoder=EncoderConfig.from_dict(d["encoder"]),
                 fit=FitConfig.from_dict(d["fit"]))  # fmt: skip
        return cls(**d)


# options measured to add nothing and removed (docs/results.md); old saved configs hold them at these values
RETIRED_FINETUNE = {"test_adapt_groups": None, "teachers": (), "distill_weight": 0.5, "distill_temperature": 1.0,
                    "distill_unlabelled": False}  # fmt: skip


PY_FORCE = "pass force=True"  # how a Python caller replaces a run (the CLI's messages say --force)
FEW_PRETRAIN_WINDOWS = 64  # below this many unlabeled windows, pretraining says it will learn little


def pretrain(cfg: PretrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
             stop_after_epoch: int | None = None, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Self-supervised pretraining on the unlabeled training windows of ``cfg.data``, written to ``out_dir``.

    A folder that holds another run is refused (:class:`~edgessl.errors.UsageError`) unless ``resume`` (that
    run continues) or ``force`` (its run files are replaced; nothing else in the folder is touched), as
    ``edgessl pretrain`` does.
    """
    with run_in(out_dir, force=force, resume=resume, flag="out_dir", force_hint=PY_FORCE):
        return _pretrain(cfg, out_dir, resume, progress, stop_after_epoch)


def _pretrain(cfg: PretrainConfig, out_dir: str | Path, resume: bool, progress: bool,
              stop_after_epoch: int | None) -> dict[str, Any]:  # fmt: skip
    torch.manual_seed(cfg.fit.seed)
    mcfg = cfg.method
    if mcfg.name in LABELLED_METHODS:
        X, y, kept, channels = labelled_pairs(cfg)
        mcfg = dataclasses.replace(mcfg, class_texts=tuple(describe(kept, cfg.descriptions)))
        tensors: tuple[torch.Tensor, ...] = (torch.from_numpy(X), torch.from_numpy(y))
    else:
        X, channels = unlabelled_windows(cfg.data)
        if not len(X):  # (a batch of none would fail deep inside the first epoch)
            raise DataFormatError(f"{cfg.data.spec}: no unlabeled windows to pretrain on (no movement the segmenter "
                                  "cuts, or recordings shorter than a window, outside the test split); expected "
                                  f"recordings of movement: see edgessl data info {cfg.data.spec}")  # fmt: skip
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
    prepare = getattr(method, "prepare", None)  # methods that fit something to the data first (beit's codebook)
    if prepare is not None:
        prepare(tensors[0])
    if progress:
        print(f"pretrain {cfg.method.name}: {len(X)} unlabeled windows {tuple(X.shape[1:])}, "
              f"{sum(p.numel() for p in method.encoder.parameters())} encoder parameters", flush=True)  # fmt: skip
        if len(X) < FEW_PRETRAIN_WINDOWS:  # it runs, and learns little: say so rather than look like it worked
            print(f"note: {len(X)} windows are few for self-supervised pretraining (fewer than "
                  f"{FEW_PRETRAIN_WINDOWS}); free recordings of everyday movement add many (edgessl record "
                  "--seconds 180)", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    inputs = _pretrain_inputs(cfg.data, channels, int(X.shape[-1]))
    history = fit(method, tensors, cfg.fit, out_dir, {**cfg.to_dict(), "inputs": inputs}, resume=resume,
                  progress=progress, stop_after_epoch=stop_after_epoch)  # fmt: skip
    return {"history": history, "n_windows": len(X), "seconds": time.perf_counter() - t0, "inputs": inputs}


def _pretrain_inputs(data: DataConfig, channels: list[str], length: int) -> dict[str, Any]:
    """What the encoder is pretrained on, saved with the weights as ``config["inputs"]`` so that fine-tuning
    takes the same: channel names and units, the rate the windows were cut at (``data.rate_hz`` or the
    sources' common rate; None when unknown, e.g. windows stretched to a fixed length), and the window length."""
    units: list[str] | None = None
    rates = set()
    for spec in data.spec.split("+"):
        ds = load(spec.strip())
        idx = resolve_channels(list(ds.channel_names), list(data.channels)) if data.channels else range(len(ds.channel_names))
        units = units or [ds.channel_units[i] for i in idx]
        # a data set cut into performances stretched to one length (segment input) has no rate
        segments = str(getattr(ds, "extra", {}).get("input_mode", "")) == "segment"
        rates.add(None if segments else ds.rate_hz)
    rate = data.rate_hz or (rates.pop() if len(rates) == 1 else None)
    return {"channels": list(channels), "units": units, "rate_hz": rate, "length": int(length)}


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


# ---------------------------------------------------------------------------------------------------------
# One data contract across stages: fine-tuning an encoder feeds it what it was pretrained on (channels,
# rate, length, standardisation), unless the user says otherwise, and then it says so.


@dataclasses.dataclass(frozen=True)
class PretrainedInputs:
    """The data settings a pretrained encoder saw, read from its checkpoint.

    Attributes:
        source: the checkpoint given as ``init``.
        channels: channel names, or None where an old checkpoint did not record them.
        units: one unit per channel, or None.
        rate_hz: the rate windows were cut or resampled at, or None (unknown, or stretched windows).
        length: the window length the encoder saw, or None.
        preprocess: the :class:`edgessl.preprocess.PreprocessSpec` dict.
        stream_window: window and stride cut from stream layouts.
        in_channels: the encoder's input channels.
    """

    source: str
    channels: tuple[str, ...] | None
    units: tuple[str, ...] | None
    rate_hz: float | None
    length: int | None
    preprocess: dict[str, Any]
    stream_window: tuple[int, int]
    in_channels: int
    spec: str = ""  # the data set it was trained on (a data spec)


def pretrained_inputs(init: str | Path) -> PretrainedInputs:
    """What the encoder of ``init`` (a pretrain or finetune folder or checkpoint) was trained on. Checkpoints
    written before ``config["inputs"]`` existed give what their data config and method say."""
    cfg = load_checkpoint(init)["config"]
    if cfg.get("kind") not in ("pretrain", "finetune"):
        raise ValueError(f"{init}: checkpoint of unknown kind {cfg.get('kind')!r}")
    data, seen = DataConfig.from_dict(cfg["data"]), cfg.get("inputs", {})
    channels = seen.get("channels") or data.channels
    units = seen.get("units")
    return PretrainedInputs(str(init), tuple(channels) if channels else None, tuple(units) if units else None,
                            seen.get("rate_hz", data.rate_hz), seen.get("length") or data.length
                            or cfg.get("method", {}).get("window"), data.preprocess, data.stream_window,
                            int(cfg["encoder"]["in_channels"]), data.spec)  # fmt: skip


def standardisation(preprocess: dict[str, Any]) -> str:
    """A preprocessing spec in words: ``per-channel standardisation``, ``units kept`` ..."""
    steps = [(s["op"], s.get("params", {})) for s in preprocess.get("steps", [])]
    if not steps:
        return "no standardisation (units kept)"
    if steps == [("standardize", {})]:
        return "per-channel standardisation"
    if steps == [("standardize", {"per_channel": False})]:
        return "per-window standardisation"
    return "preprocessing " + " + ".join(op + (f"{p}" if p else "") for op, p in steps)


def _keeps_units(preprocess: dict[str, Any]) -> bool:
    return not any(s["op"] in ("standardize", "minmax_scale") for s in preprocess.get("steps", []))


def _same_channels(a: list[str] | tuple[str, ...], b: list[str] | tuple[str, ...]) -> bool:
    """Whether two channel lists name the same channels in the same order (aliases such as ``ax`` for
    ``acc_x`` count as the same)."""
    if len(a) != len(b):
        return False
    try:
        return all(resolve_channels([x], [y]) == [0] for x, y in zip(a, b, strict=True))
    except DataFormatError:
        return False


def _channels_error(pre: PretrainedInputs, names: list[str] | tuple[str, ...], what: str) -> UsageError:
    want = list(pre.channels) if pre.channels else f"{pre.in_channels} channels"
    return UsageError(f"{what} {list(names)}, but {pre.source} was pretrained on {want}; choose those channels by "
                      "name (or alias) with --channels, or fine-tune from scratch")  # fmt: skip


def _same_rate(a: float, b: float) -> bool:
    """Rates estimated from timestamps differ in the last digits; 1 % is no change of time scale."""
    return abs(a - b) <= 0.01 * max(a, b)


def inherit_inputs(data: DataConfig, init: str | Path, explicit: dict[str, str], uses_streams: bool = False,
                   data_flag: str = "--data") -> tuple[DataConfig, list[str]]:  # fmt: skip
    """``data`` with the settings of the pretrained encoder ``init`` wherever the user set none.

    Taken from the checkpoint unless in ``explicit``: ``channels``, ``length``, ``preprocess`` and
    ``stream_window``. (The rate is matched once the data's own rate is known, in fine-tuning itself.) A key
    in ``explicit`` (mapped to where it was set: ``--length``, a config file, a recipe) that differs from the
    checkpoint's is kept, and reported as an override.

    Returns:
        The data config and the lines to print: what was taken, then one line per override.

    Raises:
        UsageError: explicit channels that are not the pretrained ones (count or names), naming both; no data set
            given (``spec`` not in ``explicit``: the default, the synthetic generator) for an encoder pretrained on
            another (a walkthrough fine-tuned on synthetic data after pretraining on its own recordings, silently);
            ``data_flag``: how the caller names the data set in that message.
    """
    pre = pretrained_inputs(init)
    if "spec" not in explicit and pre.spec and data.spec == DataConfig().spec and pre.spec != data.spec:
        import shlex

        raise UsageError(f"{data_flag} not given: the default data set ({data.spec}) would be used, but {init} was "
                         f"trained on {pre.spec}; give {data_flag} {shlex.quote(pre.spec)} for the same data (or "
                         f"{data_flag} {data.spec} if that is what you mean)")  # fmt: skip
    taken: list[str] = []
    lines: list[str] = []

    def said(key: str, value: str) -> str:
        src = explicit[key]
        return f"{src} {value}" if src.startswith("--") else f"{src} ({key} {value})"

    if pre.channels is not None or data.channels is not None:
        if "channels" in explicit and data.channels is not None:
            if len(data.channels) != pre.in_channels or (pre.channels and not _same_channels(data.channels, pre.channels)):
                src = explicit["channels"]
                raise _channels_error(pre, data.channels, f"{src}: chose" if src.startswith("--") else
                                      f"--channels: {src} chose")  # fmt: skip
        elif pre.channels is not None:
            data = dataclasses.replace(data, channels=pre.channels)
            taken.append(f"channels {','.join(pre.channels)}")
    if pre.length is not None:
        if "length" in explicit:
            if data.length != pre.length:
                mine = data.length if data.length is not None else "(the source's length)"
                lines.append(f"{said('length', str(mine))} overrides the pretrained {pre.length}: the encoder sees "
                             "windows of another length than it was pretrained on")  # fmt: skip
        else:
            data = dataclasses.replace(data, length=pre.length)
            taken.insert(0, f"length {pre.length}")
    if "preprocess" in explicit:
        if data.preprocess.get("steps") != pre.preprocess.get("steps"):
            mode = {"per-channel standardisation": "channel", "per-window standardisation": "window",
                    "no standardisation (units kept)": "none"}.get(standardisation(data.preprocess))  # fmt: skip
            value = mode if explicit["preprocess"] == "--standardize" and mode else standardisation(data.preprocess)
            again = f" (pretrain with --standardize {mode} to match)" if mode else ""
            lines.append(f"{said('preprocess', value)} overrides the pretrained {standardisation(pre.preprocess)}: "
                         f"the encoder sees windows scaled otherwise than it was pretrained on{again}")  # fmt: skip
    else:
        data = dataclasses.replace(data, preprocess=pre.preprocess)
        taken.append(standardisation(pre.preprocess))
    if "rate_hz" in explicit and pre.rate_hz and data.rate_hz and not _same_rate(data.rate_hz, pre.rate_hz):
        lines.append(f"{said('rate_hz', f'{data.rate_hz:g}')} overrides the pretrained {pre.rate_hz:g} Hz: the "
                     "encoder sees motion at another time scale than it was pretrained on")  # fmt: skip
    if "stream_window" in explicit:
        if tuple(data.stream_window) != tuple(pre.stream_window):
            lines.append(f"{said('stream_window', '/'.join(map(str, data.stream_window)))} overrides the pretrained "
                         f"stream windows {'/'.join(map(str, pre.stream_window))}")  # fmt: skip
    elif tuple(data.stream_window) != tuple(pre.stream_window):
        data = dataclasses.replace(data, stream_window=pre.stream_window)
        if uses_streams:
            taken.append(f"stream windows {'/'.join(map(str, pre.stream_window))}")
    if taken:
        lines.insert(0, f"using {', '.join(taken)} from {pre.source} (what it was pretrained on)")
    return data, lines


def _labelled_like_init(cfg: FinetuneConfig, progress: bool) -> tuple[FinetuneConfig, WindowDataset, np.ndarray, np.ndarray]:
    """The labelled windows of ``cfg.data`` (as :func:`labelled`) checked against the encoder of
    ``cfg.init``: its channels (count, names up to aliases), units where the windows keep them, and its
    rate (windows of another known rate are resampled to it unless ``cfg.data.rate_hz`` says otherwise).

    Raises:
        UsageError: channels or units that cannot feed the pretrained encoder, naming both and the flag.
    """
    assert cfg.init
    pre = pretrained_inputs(cfg.init)
    data = cfg.data
    ds, X_train_all, X_test = labelled(dataclasses.replace(data, channels=None))
    names = list(data.channels) if data.channels is not None else list(ds.channel_names)
    try:
        idx = resolve_channels(list(ds.channel_names), names)
    except DataFormatError as e:
        if pre.channels is None or not _same_channels(names, pre.channels):
            raise UsageError(f"--channels {','.join(names)}: {e}") from None
        raise UsageError(f"--channels: {data.spec} has channels {list(ds.channel_names)}, but {pre.source} was "
                         f"pretrained on {list(pre.channels)}; fine-tune on data with those channels (by name "
                         "or alias), or from scratch without --init") from None  # fmt: skip
    if len(idx) != pre.in_channels or (pre.channels and not _same_channels(names, pre.channels)):
        raise _channels_error(pre, names, f"--channels: the data {data.spec} give")
    units = [ds.channel_units[i] for i in idx]
    if pre.units and _keeps_units(data.preprocess) and list(pre.units) != units:
        raise UsageError(f"--standardize: the channels of {data.spec} are in {units}, but {pre.source} was "
                         f"pretrained on {list(pre.units)} and the windows keep their units "
                         f"({standardisation(data.preprocess)}); convert the data or standardise them")  # fmt: skip
    if data.rate_hz is None and pre.rate_hz and ds.rate_hz and not _same_rate(ds.rate_hz, pre.rate_hz):
        data = dataclasses.replace(data, rate_hz=pre.rate_hz)
        print(f"resampling {data.spec} from {ds.rate_hz:g} Hz to {pre.rate_hz:g} Hz, the rate {pre.source} was "
              "pretrained at", file=sys.stderr, flush=True)  # fmt: skip
    subset = idx != list(range(ds.n_channels))
    ds = dataclasses.replace(ds, X_train=ds.X_train[:, idx], X_test=ds.X_test[:, idx], channel_names=names,
                             channel_units=units)  # fmt: skip
    if subset or data.rate_hz != cfg.data.rate_hz:  # else the windows made above are these
        X_train_all, X_test = (_model_ready(X, ds.rate_hz, data) for X in (ds.X_train, ds.X_test))
    if progress and pre.length and data.length == pre.length and ds.length != pre.length:
        print(f"windows of {data.spec} ({ds.length} samples) are stretched to {pre.length}, the length "
              f"{pre.source} was pretrained on", file=sys.stderr, flush=True)  # fmt: skip
    return dataclasses.replace(cfg, data=data), ds, X_train_all, X_test


def _model_ready(X: np.ndarray, rate: float | None, data: DataConfig) -> np.ndarray:
    """Windows at the model's rate and length, preprocessed (as :func:`edgessl.trainer.data.labelled` makes them)."""
    return pp.apply(pp.PreprocessSpec.from_dict(data.preprocess), match_only(X, rate, data)).astype(np.float32)


@dataclasses.dataclass
class _Run:
    """One fine-tuning job's data, split once, and what every training pass of it shares.

    ``U`` holds the unlabelled windows: first those of the training split outside the label budget and the
    validation split (``U[i]`` is ``X_train_all[pool[i]]`` for ``i < len(pool)``; their labels are never
    read), then the training windows of ``cfg.unlabelled``.
    """

    cfg: FinetuneConfig
    ds: WindowDataset
    X_train_all: np.ndarray
    X_test: np.ndarray
    tr: np.ndarray
    va: np.ndarray
    pool: np.ndarray
    U: np.ndarray
    triads: tuple[tuple[int, int, int], ...]
    env: DistEnv
    out: Path
    progress: bool
    notes: list[str]  # settings the data could not take, dropped (metrics["recipe_notes"])

    @property
    def Xtr(self) -> np.ndarray:
        return self.X_train_all[self.tr]

    @property
    def ytr(self) -> np.ndarray:
        return self.ds.y_train[self.tr]

    @property
    def Xva(self) -> np.ndarray:
        return self.X_train_all[self.va]

    @property
    def yva(self) -> np.ndarray:
        return self.ds.y_train[self.va]

    @property
    def consistency(self) -> bool:
        """Whether FixMatch runs: a weight, a network that trains, and windows to draw from."""
        return self.cfg.consistency_weight > 0 and self.cfg.mode == "finetune" and len(self.U) > 0


def _prepare(cfg: FinetuneConfig, out: Path, progress: bool) -> _Run:
    """Load and split the data, fix the encoder's architecture, gather the unlabelled pool; every check that
    can fail runs here, before any training."""
    if cfg.init:
        cfg, ds, X_train_all, X_test = _labelled_like_init(cfg, progress)
    else:
        ds, X_train_all, X_test = labelled(cfg.data)
    tr, va = label_budget_split(ds.y_train, per_class=cfg.labels_per_class, fraction=cfg.label_fraction,
                                val_fraction=cfg.val_fraction, seed=_split_seed(cfg),
                                groups=train_groups(ds, cfg.val_groups), fold=cfg.val_fold,
                                class_names=list(ds.class_names),
                                units=None if cfg.val_groups else window_units(ds))  # fmt: skip
    if cfg.init:
        _, enc_cfg = load_pretrained_encoder(cfg.init)
    else:
        enc_cfg = dataclasses.replace(cfg.encoder, in_channels=ds.n_channels)
    cfg = dataclasses.replace(cfg, encoder=enc_cfg)
    triads = tuple(axis_triads(ds.channel_names))
    notes: list[str] = []
    if cfg.rotate_degrees > 0 and not triads:
        # a recipe (the default one too) must run on any channels: drop the view it cannot make, and say so
        notes.append(f"rotation views ({cfg.rotate_degrees:g} degrees) dropped: they need (x, y, z) channel triads "
                     f"named like acc_x, acc_y, acc_z; the channels are {list(ds.channel_names)}")  # fmt: skip
        cfg = dataclasses.replace(cfg, rotate_degrees=0.0)
    env = setup(cfg.fit.device)
    pool = np.setdiff1d(np.arange(len(ds.y_train)), np.concatenate([tr, va]))
    U = X_train_all[pool]
    if cfg.unlabelled:
        U = np.concatenate([U, _extra_unlabelled(cfg, ds, X_train_all, np.concatenate([X_train_all[va], X_test]))])
    if len(U) == 0 and cfg.mode == "finetune" and (cfg.consistency_weight > 0 or cfg.self_train_rounds > 0):
        # the recipe's unlabelled part has nothing to work on: say so rather than run a plain fine-tune silently
        note = ("consistency training and self-training are off: no unlabelled windows (every training window of "
                f"{cfg.data.spec} outside validation is in the label budget); they use the windows beyond the budget "
                "and the training windows of the config's `unlabelled` data set (a recording's free sessions reach "
                "the model through `edgessl pretrain` and --init)")  # fmt: skip
        notes.append(note)
    if act := re.search(r"activities (\[[^\]]*\]) cut as gestures", ds.name):  # (data info says more)
        from edgessl.datasets.labelled import ACTIVITY_WINDOW

        notes.append(f"class(es) {act.group(1)} last far longer than a gesture: activities, not gestures; --recipe "
                     f"activities reads recordings as sliding windows (or give the spec "
                     f"input=sliding,length={ACTIVITY_WINDOW})")  # fmt: skip
    if rest := re.search(r"rest class\(es\) \[[^\]]*\] left out", ds.name):  # (labelled rest: data info says more)
        notes.append(f"{rest.group(0)}: their spans hold no movement the gesture cut finds (see edgessl data info)")
    untested = [c for i, c in enumerate(ds.class_names) if len(X_test) and not (ds.y_test == i).any()]
    if untested:  # the test accuracy says nothing of them
        notes.append(f"class(es) {untested} have no test windows: the test accuracy does not cover them")
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return _Run(cfg, ds, X_train_all, X_test, tr, va, pool, U, triads, env, out, progress, notes)


def _extra_unlabelled(cfg: FinetuneConfig, ds: WindowDataset, X_train_all: np.ndarray, held_out: np.ndarray
                      ) -> np.ndarray:  # fmt: skip
    """The training windows of ``cfg.unlabelled``, prepared like the labelled ones, none of them a window of
    ``held_out`` (the validation and test windows)."""
    assert cfg.unlabelled is not None
    extra, names = unlabelled_windows(dataclasses.replace(cfg.data, spec=cfg.unlabelled))
    if names != list(ds.channel_names) or extra.shape[1:] != X_train_all.shape[1:]:
        raise ValueError(f"unlabelled windows of {cfg.unlabelled} are {list(extra.shape[1:])} with channels {names}; "
                         f"the labelled ones are {list(X_train_all.shape[1:])} with {ds.channel_names}: choose "
                         "the same channels by name and a common length")  # fmt: skip
    seen = {w.tobytes() for w in held_out}
    if n_same := sum(w.tobytes() in seen for w in extra):
        raise ValueError(f"{n_same} unlabelled window(s) of {cfg.unlabelled} are validation or test windows of "
                         f"{cfg.data.spec}; an unlabelled pool must hold none of the windows a model is selected "
                         "or tested on")  # fmt: skip
    return extra


def _validator(run: _Run) -> Callable[[torch.nn.Module], dict[str, float]]:
    Xva, yva = run.Xva, run.yva

    def validate(m: torch.nn.Module) -> dict[str, float]:
        assert isinstance(m, SupervisedMethod)
        logits = ev.predict_logits(m.model, Xva)
        nll = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(yva).long())
        return {"val_accuracy": ev.accuracy(logits.argmax(1), yva), "val_loss": float(nll)}

    return validate


def _supervised_method(run: _Run) -> SupervisedMethod:
    """A fresh classifier from the initialisation (seeded) with the loss terms the config asks for."""
    cfg = run.cfg
    torch.manual_seed(cfg.fit.seed)
    encoder = load_pretrained_encoder(cfg.init)[0] if cfg.init else build_encoder(cfg.encoder)
    model = Classifier(encoder, run.ds.n_classes, cfg.encoder.out_dim).to(run.env.device)
    if cfg.mode == "linear":
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    fixmatch = (FixMatch(torch.from_numpy(run.U), cfg.consistency_weight, cfg.consistency_threshold,
                         cfg.unlabelled_ratio) if run.consistency else None)  # fmt: skip
    ttt = TransformPrediction(cfg.encoder.out_dim, cfg.ssl_weight) if cfg.ssl_weight > 0 and cfg.mode == "finetune" else None
    return SupervisedMethod(model, finetune_augment(cfg.rotate_degrees, run.triads), frozen_encoder=cfg.mode == "linear",
                            mixup_alpha=cfg.mixup_alpha, fixmatch=fixmatch, ttt=ttt)  # fmt: skip


def _train(run: _Run, X: np.ndarray, y: np.ndarray, stop_after_epoch: int | None = None
           ) -> tuple[Classifier, SupervisedMethod, list[dict]]:  # fmt: skip
    """A fresh model from the initialisation, fitted on ``(X, y)`` and selected on the validation split
    (or, with ``stop_after_epoch``, trained to that epoch without selection: the refit)."""
    cfg = run.cfg
    method = _supervised_method(run)
    if run.consistency:
        # an epoch passes over the unlabelled windows once; the few labelled ones repeat (fresh views
        # each time) so that every step still has a full labelled batch beside its unlabelled draw
        reps = max(1, math.ceil(max(len(run.U) / cfg.unlabelled_ratio, cfg.fit.batch_size) / len(X)))
        X, y = np.tile(X, (reps, 1, 1)), np.tile(y, reps)
    fit_cfg = dataclasses.replace(cfg.fit, batch_size=min(cfg.fit.batch_size, len(X)))
    selecting = stop_after_epoch is None
    history = fit(method, (torch.from_numpy(X), torch.from_numpy(y)), fit_cfg, run.out, cfg.to_dict(),
                  validate=_validator(run) if selecting else None, select=SELECT if selecting else None,
                  stop_after_epoch=stop_after_epoch, progress=run.progress, env=run.env)  # fmt: skip
    return method.model, method, history


def _self_train(run: _Run, model: Classifier, method: SupervisedMethod, history: list[dict]):
    """``cfg.self_train_rounds`` rounds: pseudo-label the unlabelled windows with the current model, keep the
    most confident ``pseudo_fraction`` of each predicted class, train again from the initialisation on the
    budget + those. Returns the last model, its method, history, the windows and labels it trained on, and
    one report per round."""
    X_fit, y_fit = run.Xtr, run.ytr
    rounds = []
    for r in range(run.cfg.self_train_rounds):
        if not len(run.U):
            break
        pick, pseudo = pseudo_labels(ev.predict_logits(model, run.U), run.cfg.pseudo_fraction)
        own = pick < len(run.pool)  # picked from the training split (the others come from cfg.unlabelled)
        X_fit, y_fit = np.concatenate([run.Xtr, run.U[pick]]), np.concatenate([run.ytr, pseudo])
        if run.progress:  # before its epochs (a walkthrough read the line after them as the next round's)
            print(f"self-training round {r + 1}/{run.cfg.self_train_rounds}: training again, on the labelled windows and "
                  f"{len(pick)} pseudo-labelled ones", flush=True)  # fmt: skip
        model, method, history = _train(run, X_fit, y_fit)
        rounds.append({"round": r + 1, "pseudo_labels": len(pick),
                       "val_accuracy": float(max(h["val_accuracy"] for h in history)),
                       # a diagnostic only, after the fact, on the training split's windows: these labels
                       # took no part in training
                       "pseudo_label_accuracy_diagnostic": float(np.mean(pseudo[own] == run.ds.y_train[run.pool[pick[own]]]))
                       if own.any() else None})  # fmt: skip
    return model, method, history, X_fit, y_fit, rounds


def finetune(cfg: FinetuneConfig, out_dir: str | Path, progress: bool = True, plots: bool = True,
             test: bool = True, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Fine-tune (or linearly probe) on a label budget, select on validation, test once, write a report.

    Steps: prepare the data and pool, train and select, self-train, refit, test once, write the model and
    its report. Writes ``metrics.json``, ``model.pt`` (everything export needs), ``checkpoint.pt``,
    ``metrics.jsonl``, ``confusion.png`` and ``embedding.png`` to ``out_dir``. With ``test=False`` it stops
    after selection (no refit, no test prediction, nothing written but the training checkpoint and log) and
    returns the validation figures alone: a model-selection run, as ``cross_validate`` makes. A folder that
    holds another run is refused (:class:`~edgessl.errors.UsageError`) unless ``force`` (its run files are
    replaced; nothing else in the folder is touched), as ``edgessl finetune`` does.
    """
    check_not_init(out_dir, cfg.init, flag="out_dir", init_flag="cfg.init")
    with run_in(out_dir, force=force, flag="out_dir", force_hint=PY_FORCE):
        return _finetune(cfg, out_dir, progress, plots, test)


def _finetune(cfg: FinetuneConfig, out_dir: str | Path, progress: bool, plots: bool, test: bool) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.fit.seed)
    run = _prepare(cfg, out, progress)
    cfg = run.cfg  # with the encoder's input channels
    if progress:
        what = "linear probe, frozen encoder" if cfg.mode == "linear" else "the whole network"
        # a label budget bounds the training labels only (a walkthrough took "40 labelled, 192 validation" for
        # a 5-per-class run): said, with what the validation labels decide
        budget = cfg.labels_per_class is not None or cfg.label_fraction is not None
        beyond = (" (labelled, beyond the label budget: they select the epoch and set the export's unknown-answer "
                  "gates)" if budget and len(run.va) else "")  # fmt: skip
        print(f"finetune ({what}): {len(run.tr)} labelled training windows, {len(run.va)} validation{beyond}, "
              f"{len(run.X_test)} test; init={cfg.init or 'scratch'}", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    model, method, history = _train(run, run.Xtr, run.ytr)
    model, method, history, X_fit, y_fit, self_training = _self_train(run, model, method, history)
    best_epoch = int(max(history, key=lambda r: _score(r))["epoch"])
    val_acc = ev.accuracy(ev.predict_logits(model, run.Xva).argmax(1), run.yva)
    if not test:
        return {"val_accuracy": val_acc, "best_epoch": best_epoch, "n_val": len(run.va), "n_train_labels": len(run.tr),
                # per epoch, for pooling folds (weighted by n_val): validation accuracy and loss
                "val_curve": [{"epoch": int(h["epoch"]), "val_accuracy": float(h["val_accuracy"]),
                               "val_loss": float(h["val_loss"])} for h in history],
                "seconds": time.perf_counter() - t0, "recipe_notes": run.notes}  # fmt: skip
    # the refit trains on the validation windows: their decision scores under the model selected on them,
    # which never trained on them, are what export sets the unknown-answer gates on (never the test split)
    held_scores = _selection_scores(run, model) if cfg.refit and len(run.va) else {}
    if cfg.refit:
        if progress:
            pseudo = f" (and {len(X_fit) - len(run.tr)} pseudo-labelled)" if len(X_fit) > len(run.tr) else ""
            print(f"refit on {len(X_fit) + len(run.va)} training{pseudo} + validation windows for "
                  f"{best_epoch + 1} epochs (the selected epoch, on the {run.cfg.fit.epochs}-epoch learning-rate "
                  "schedule the selection ran)", flush=True)  # fmt: skip
        # (the k-NN diagnostic and the prototypes below keep using the training part alone)
        model, method, _ = _train(run, np.concatenate([X_fit, run.Xva]), np.concatenate([y_fit, run.yva]),
                                  stop_after_epoch=best_epoch)  # fmt: skip
    metrics, E_tr = _test_report(run, model, history, best_epoch, val_acc, len(X_fit), self_training, t0, plots)
    info = {**_bundle_info(run, model, method, metrics, E_tr), **held_scores}
    n_held = _calibration_windows(run)
    if n_held < CROSS_FIT_BELOW:
        if progress:
            print(f"decision evidence: {CROSS_FIT_FOLDS} more models score the {len(run.tr) + len(run.va)} labelled "
                  f"windows, each the {1 / CROSS_FIT_FOLDS:.0%} it did not train on ({n_held} held-out windows "
                  "alone are too few to set the unknown-answer gates; export sets them on both)", flush=True)  # fmt: skip
        info.update(_cross_fit(run, best_epoch))
        metrics["seconds"] = time.perf_counter() - t0
    save_atomic(info, out / MODEL_FILE)
    ev.write_json(out / "metrics.json", metrics)
    return metrics


def _test_report(run: _Run, model: Classifier, history: list[dict], best_epoch: int, val_acc: float, n_fit: int,
                 self_training: list[dict], t0: float, plots: bool) -> tuple[dict[str, Any], np.ndarray]:  # fmt: skip
    """The test split, touched once here with the validation-selected weights (or the refit to that epoch):
    accuracy, k-NN (k chosen on validation), confusion matrix, plots. Returns the report and the training
    windows' embeddings."""
    cfg, ds = run.cfg, run.ds
    logits = ev.predict_logits(model, run.X_test)
    pred = logits.argmax(1)
    test_acc = ev.accuracy(pred, ds.y_test)
    E_tr, E_va, E_te = (ev.embed(model.encoder, X) for X in (run.Xtr, run.Xva, run.X_test))
    k, knn_val = ev.knn_select(E_tr, run.ytr, E_va, run.yva, ds.n_classes)
    knn_test = ev.accuracy(ev.knn_predict(E_tr, run.ytr, E_te, k, ds.n_classes), ds.y_test)
    cm = ev.confusion_matrix(ds.y_test, pred, ds.n_classes)
    metrics = {
        "test_accuracy": test_acc,
        "val_accuracy": val_acc,
        "n_train_labels": len(run.tr) + (len(run.va) if cfg.refit else 0),
        "n_val": len(run.va),
        # with refit, val_accuracy is the selection run's: the tested model has trained on those windows
        "refit": {"epochs": best_epoch + 1, "windows": n_fit + len(run.va)} if cfg.refit else None,
        "n_test": len(run.X_test),
        "best_epoch": best_epoch,
        "knn": {"k": k, "val_accuracy": knn_val, "test_accuracy": knn_test},
        "dataset": ds.name,
        "init": cfg.init,
        "mode": cfg.mode,
        "seed": cfg.fit.seed,
        "split_seed": _split_seed(cfg),
        "protocol": "validation split carved from the training data ("
        + (f"whole {cfg.val_groups} groups" if cfg.val_groups else "stratified"
           + (", a performance's overlapping windows kept together" if window_units(ds) is not None else ""))
        + "); epoch and k selected on it; test split evaluated once with the selected weights",
        "confusion_matrix": cm.tolist(),
        "class_names": ds.class_names,
        "seconds": time.perf_counter() - t0,
        "self_training": self_training,
        "recipe_notes": run.notes,
        "consistency": {"weight": cfg.consistency_weight, "threshold": cfg.consistency_threshold,
                        "unlabelled_windows": len(run.U),
                        "final_mask_rate": history[-1].get("mask_rate")} if run.consistency else None,
    }  # fmt: skip
    if plots:
        ev.plot_confusion(cm, ds.class_names, run.out / "confusion.png", f"{ds.name}: test accuracy {test_acc:.3f}")
        ev.plot_embedding(E_te, ds.y_test, ds.class_names, run.out / "embedding.png",
                          f"{ds.name}: test embeddings (PCA)")  # fmt: skip
    if run.progress:
        same = ("; its test windows are other takes of the training session(s): a new session scores lower, record "
                "another holding every gesture for an honest figure" if "split by take" in ds.name else "")  # fmt: skip
        which = " before the refit, which then trained on those windows" if cfg.refit else ""
        print(f"val accuracy {val_acc:.4f} (epoch {best_epoch + 1}{which}), test accuracy {test_acc:.4f} on "
              f"{len(ds.y_test)} windows, k-NN test {knn_test:.4f} (k={k}){same}", flush=True)  # fmt: skip
    return metrics, E_tr


# Export calibrates the decision gates on held-out windows: the validation split (after a refit, which
# trains on it, their scores under the model selected before: ``_selection_scores``). A gate's 1-2 % tail
# cannot be read from a few dozen of them (a sample quantile of 16 rejects about
# 1/17 of new data by construction; in the own-board journey, benchmarks/own_data.py, the gates set on 16
# windows answered `unknown` to 5.7 % of a new session's gestures against a 2 % target). Below this many,
# fine-tuning adds cross-fitted evidence: CROSS_FIT_FOLDS fresh models, each trained like the final one on
# all labelled windows but one fold, score the fold they never saw.
CROSS_FIT_BELOW = 64
CROSS_FIT_FOLDS = 4


def _calibration_windows(run: _Run) -> int:
    """How many held-out windows export will calibrate the decision gates on (see export's
    ``_held_out_scores``): the validation split's."""
    return len(run.va)


def _selection_scores(run: _Run, model: Classifier) -> dict[str, torch.Tensor]:
    """The validation windows' decision scores under ``model``, the one selected on them before a refit
    trains on them too: ``held_out_ood`` (1 − the largest cosine similarity to its class prototypes from
    the training split, as the runtime scores) and ``held_out_confidence`` (its top softmax probability),
    both fp32. A refit model has no held-out windows of its own; these stand in for them at export."""
    prototypes = _class_prototypes(ev.embed(model.encoder, run.Xtr), run.ytr, run.ds.n_classes)
    ood = _prototype_ood(ev.embed(model.encoder, run.Xva), prototypes)
    conf = pp.softmax(ev.predict_logits(model, run.Xva)).max(1)
    return {"held_out_ood": torch.from_numpy(ood.astype(np.float32)),
            "held_out_confidence": torch.from_numpy(conf.astype(np.float32))}  # fmt: skip


def _cross_fit(run: _Run, best_epoch: int) -> dict[str, torch.Tensor]:
    """Out-of-fold decision scores of every labelled window (training and validation split):
    ``cross_fit_ood`` (1 − the largest cosine similarity to the fold model's class prototypes, as the runtime
    scores) and ``cross_fit_confidence`` (the fold model's top softmax probability), fp32 models trained for
    ``best_epoch + 1`` epochs like a refit, on labelled windows only (no self-training's pseudo-labels).
    Folds are stratified by class (a performance's overlapping windows in one fold: ``window_units``);
    nothing when a class has fewer windows (units) than folds. The final model is
    not touched (its checkpoint neither: folds train elsewhere)."""
    import tempfile

    X, y = np.concatenate([run.Xtr, run.Xva]), np.concatenate([run.ytr, run.yva])
    all_units = window_units(run.ds)
    units = None if all_units is None else np.concatenate([all_units[run.tr], all_units[run.va]])
    counts = np.array([len(np.unique(units[y == c])) if units is not None else int((y == c).sum())
                       for c in range(run.ds.n_classes)])  # fmt: skip
    if counts[counts > 0].min() < CROSS_FIT_FOLDS:
        return {}
    rng = np.random.default_rng(_split_seed(run.cfg) + 1)
    fold = np.zeros(len(y), int)
    for c in np.flatnonzero(counts):
        idx = rng.permutation(np.flatnonzero(y == c))  # (a performance's overlapping windows in one fold)
        fold[idx] = (unit_rank(idx, units) + rng.integers(CROSS_FIT_FOLDS)) % CROSS_FIT_FOLDS
    ood, conf = np.zeros(len(y), np.float32), np.zeros(len(y), np.float32)
    with tempfile.TemporaryDirectory() as td:
        quiet = dataclasses.replace(run, out=Path(td), progress=False)
        for k in range(CROSS_FIT_FOLDS):
            held = fold == k
            model, _, _ = _train(quiet, X[~held], y[~held], stop_after_epoch=best_epoch)
            E = _unit(ev.embed(model.encoder, X))
            ood[held] = _prototype_ood(E[held], _class_prototypes(E[~held], y[~held], run.ds.n_classes))
            conf[held] = pp.softmax(ev.predict_logits(model, X[held])).max(1)
    return {"cross_fit_ood": torch.from_numpy(ood), "cross_fit_confidence": torch.from_numpy(conf)}


MIN_ADAPTED = 16  # moving training windows needed for the embedding statistics to be taken over them alone


def _adapted_windows(run: _Run) -> np.ndarray:
    """Which training windows (``run.tr``) the runtime's adapters would learn from: for inputs in raw units,
    not the still ones (every channel's std below :data:`edgessl.preprocess.STILL_STD`; the adapters skip
    idle windows); all of them otherwise, or when fewer than ``MIN_ADAPTED`` move. An adapter compares the
    running statistics of the windows it learns from with the bundle's: on activity data, where half the
    training windows are still (sitting, lying), the mean over all of them is not what a stream's moving
    windows should be shifted back to (on UCI HAR it cost ``ttt`` up to 2.7 pt on clean validation streams)."""
    keep = np.ones(len(run.tr), bool)
    if run.ds.channel_units and run.ds.channel_units[0] == "g":
        raw = match_only(run.ds.X_train[run.tr], run.ds.rate_hz, run.cfg.data)
        moving = ~pp.is_still(raw)
        if moving.sum() >= MIN_ADAPTED:
            keep = moving
    return keep


def _unit(E: np.ndarray) -> np.ndarray:
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)


def _prototype_ood(E: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """``1 − max cos(embedding, prototype)`` of each row of ``E [N, D]``: the runtime's out-of-distribution score."""
    return 1.0 - (_unit(E) @ _unit(prototypes).T).max(1)


def _class_prototypes(E: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n_classes, D]`` float32: the mean unit embedding of each class in ``E [N, D]`` (zeros for a class
    without windows); the bundle's prototypes, which the runtime scores against after normalising them."""
    En = _unit(E)
    return np.stack([En[y == c].mean(0) if np.any(y == c) else np.zeros(E.shape[1]) for c in range(n_classes)]
                    ).astype(np.float32)  # fmt: skip


def _bundle_info(run: _Run, model: Classifier, method: SupervisedMethod, metrics: dict[str, Any], E_tr: np.ndarray
                 ) -> dict[str, Any]:  # fmt: skip
    """``model.pt``: what export and the runtime need: the model, its data contract, embedding statistics,
    class prototypes, input moments, calibration windows, and the TTT head when one was trained."""
    cfg, ds = run.cfg, run.ds
    prototypes = _class_prototypes(E_tr, run.ytr, ds.n_classes)
    templates, template_labels = class_templates(run.Xtr, run.ytr, ds.n_classes)
    adapted = _adapted_windows(run)
    info = {
        "format": "edgessl-model/1",
        "config": cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(ds.class_names),
        "channel_names": list(ds.channel_names),
        "channel_units": list(ds.channel_units),
        "rate_hz": cfg.data.rate_hz or ds.rate_hz,
        "window": int(run.X_test.shape[-1]),
        "metrics": {k: metrics[k] for k in ("test_accuracy", "val_accuracy", "n_train_labels")},
        # over the windows the runtime's adapters learn from, which they compare their running statistics with
        "embedding_mean": torch.from_numpy(E_tr[adapted].mean(0).astype(np.float32)),
        "embedding_std": torch.from_numpy(E_tr[adapted].std(0).astype(np.float32)),
        "prototypes": torch.from_numpy(prototypes),
        **_input_moments(ds, cfg.data),
        "calibration_windows": torch.from_numpy(run.X_train_all[np.sort(np.concatenate([run.tr, run.va]))][:512]),
        # how rough each labelled window is in its source units (before preprocessing): what export sets the
        # runtime's noise gate from (the saved windows above are standardised per channel)
        "window_roughness": torch.from_numpy(pp.roughness(match_only(
            ds.X_train[np.sort(np.concatenate([run.tr, run.va]))], ds.rate_hz, cfg.data))),
        # typical labelled performances of each class: what an enrolled user's takes are compared with
        "class_templates": torch.from_numpy(templates),
        "class_template_labels": torch.from_numpy(template_labels),
        # export calibrates the out-of-distribution threshold on these: windows the selected model never
        # trained on (unless refit, which trains on them too, and says so)
        **_validation_windows(run),
    }
    if method.ttt is not None:
        info["ssl_head_weight"] = method.ttt.head.weight.detach().cpu()
        info["ssl_head_bias"] = method.ttt.head.bias.detach().cpu()
    return info


def _validation_windows(run: _Run, limit: int = 2048) -> dict[str, Any]:
    """The validation windows and labels (at most ``limit``, evenly spread) and whether the saved model is
    still blind to them; nothing when the run had no validation split."""
    if not len(run.va):
        return {}
    keep = np.unique(np.linspace(0, len(run.va) - 1, min(limit, len(run.va))).round().astype(int))
    return {"validation_windows": torch.from_numpy(np.ascontiguousarray(run.Xva[keep])),
            "validation_labels": torch.from_numpy(np.asarray(run.yva[keep], np.int64)),
            "validation_held_out": not run.cfg.refit}  # fmt: skip


def load_classifier(folder_or_file: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a fine-tuned classifier (eval mode) and its saved metadata from ``model.pt`` alone."""
    info = load_saved(folder_or_file, MODEL_FILE, "edgessl-model/1", "fine-tuned model")
    enc_cfg = EncoderConfig.from_dict(info["config"]["encoder"])
    model = Classifier(build_encoder(enc_cfg), len(info["class_names"]), enc_cfg.out_dim)
    model.load_state_dict(info["model"])
    return model.eval(), info


def _score(row: dict[str, float]) -> tuple[float, ...]:
    """How one epoch ranks in model selection (``SELECT``, as ``fit`` ranks them)."""
    score = selection_score(row, SELECT)
    assert score is not None
    return score


def _split_seed(cfg: FinetuneConfig) -> int:
    return cfg.fit.seed if cfg.split_seed is None else cfg.split_seed


def cross_validate(cfg: FinetuneConfig, folds: int, out_dir: str | Path, repeats: int = 1,
                   progress: bool = True, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Stratified ``folds``-fold cross-validation of a fine-tuning recipe on the training split alone.

    Each of ``repeats`` partitions (seeds ``cfg.fit.seed``, ``+1``, ...) trains ``folds`` models, each
    validated on one fold; the test split is never predicted. Per epoch, the folds' validation windows are
    pooled (every training window counted once per repeat), and the recipe's score is the pooled accuracy
    of the best epoch (ties to the lower pooled loss): one maximum over ``folds`` times more windows than a
    single 20 % split has, which is what separates recipes whose single-split accuracies tie.

    Writes ``cv.json`` to ``out_dir`` and returns it: ``cv_accuracy``, ``best_epoch``, the pooled curve, and
    per repeat the pooled accuracy at its own best epoch and each fold's selected accuracy. The fold models go
    to ``out_dir/seed<S>_fold<I>``; a folder that holds another run is refused unless ``force``, as in
    :func:`finetune`.
    """
    check_not_init(out_dir, cfg.init, flag="out_dir", init_flag="cfg.init")
    with run_in(out_dir, force=force, flag="out_dir", force_hint=PY_FORCE):
        return _cross_validate(cfg, folds, out_dir, repeats, progress, force)


def _cross_validate(cfg: FinetuneConfig, folds: int, out_dir: str | Path, repeats: int, progress: bool,
                    force: bool) -> dict[str, Any]:  # fmt: skip
    if cfg.val_groups:
        raise ValueError(f"cross-validation validates on stratified folds; it does not take val_groups "
                         f"({cfg.val_groups!r})")  # fmt: skip
    if cfg.refit:
        cfg = dataclasses.replace(cfg, refit=False)  # it acts after selection only
    out = Path(out_dir)
    runs: list[list[dict[str, Any]]] = []
    for r in range(repeats):
        seed = cfg.fit.seed + r
        runs.append([])
        for i in range(folds):
            fold_cfg = dataclasses.replace(cfg, val_fold=(i, folds), fit=dataclasses.replace(cfg.fit, seed=seed),
                                           split_seed=None if cfg.split_seed is None else cfg.split_seed + r)  # fmt: skip
            m = finetune(fold_cfg, out / f"seed{seed}_fold{i}", progress=False, plots=False, test=False,
                             force=force)
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
        return max(curve, key=_score)  # as one run selects its epoch

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


def pseudo_labels(logits: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices and classes of the most confident ``fraction`` of each predicted class (at least one each),
    so that pseudo-labels stay class-balanced as far as the predictions allow."""
    from edgessl.preprocess import softmax

    p = softmax(logits)
    conf, cls = p.max(1), p.argmax(1)
    picks: list[np.ndarray] = []
    for c in np.unique(cls):
        rows = np.flatnonzero(cls == c)
        picks.append(rows[np.argsort(-conf[rows], kind="stable")[: max(1, int(round(fraction * len(rows))))]])
    pick = np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
    return pick, cls[pick]


GRAVITY_MIN_STILL = 64  # still training windows needed to record the training sensor's gravity calibration


def _input_moments(ds: WindowDataset, data: DataConfig) -> dict[str, torch.Tensor]:
    """Moments of the raw 3-axis accelerometer signal (units g) over the whole training split (no labels
    needed), at the model's rate and length but before preprocessing: what input-side adaptation matches a
    shifted sensor to. Empty when the model's inputs have no three channels in g."""
    from edgessl.preprocess import MOMENT_LAGS, fit_gravity, moment_mismatch, signal_moments, still_means

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
    # how the training sensor reads gravity (its still windows' gain and offset): the runtime maps a stream
    # to this sensor. Gesture recordings cut at the motion hold no still windows: then nothing is recorded.
    M = still_means(X)
    if len(M) >= GRAVITY_MIN_STILL:
        gain, bias, _, residual = fit_gravity(M)
        out["input_moments_gravity_gain"] = torch.from_numpy(gain)
        out["input_moments_gravity_bias"] = torch.from_numpy(bias)
        out["input_moments_gravity_residual"] = torch.tensor(residual, dtype=torch.float64)
    return out


def evaluate_encoder(init: str, data: DataConfig, val_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Frozen-encoder evaluation of a checkpoint: linear probe and cosine k-NN, selected on validation."""
    encoder, enc_cfg = load_pretrained_encoder(init)
    ds, Xtr_all, Xte = labelled(data)
    tr, va = label_budget_split(ds.y_train, val_fraction=val_fraction, seed=seed, units=window_units(ds))
    E_tr, E_va, E_te = ev.embed(encoder, Xtr_all[tr]), ev.embed(encoder, Xtr_all[va]), ev.embed(encoder, Xte)
    predict, info = ev.linear_probe(E_tr, ds.y_train[tr], E_va, ds.y_train[va], ds.n_classes, seed=seed)
    k, knn_val = ev.knn_select(E_tr, ds.y_train[tr], E_va, ds.y_train[va], ds.n_classes)
    return {
        "linear_probe": {**info, "test_accuracy": ev.accuracy(predict(E_te), ds.y_test)},
        "knn": {"k": k, "val_accuracy": knn_val,
                "test_accuracy": ev.accuracy(ev.knn_predict(E_tr, ds.y_train[tr], E_te, k, ds.n_classes), ds.y_test)},
        "dataset": ds.name,
        "init": str(init),
        # what the probe and k-NN learned from: every labelled training window but validation's (a walkthrough
        # took the probe's figure for a few-label one)
        "protocol": f"fitted on {len(tr)} labelled training windows (all but the {len(va)} of validation, which "
                    "selects weight decay and k); test split scored once",
    }  # fmt: skip
