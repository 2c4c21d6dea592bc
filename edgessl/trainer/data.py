"""From dataset specs to model-ready windows: channel selection by name, rate and length matching,
the shared preprocessing, unlabeled pools for pretraining, and label-budget splits for fine-tuning.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from edgessl import preprocess as pp
from edgessl.datasets import (
    DataFormatError,
    StreamDataset,
    WindowDataset,
    is_labelled_stream,
    labelled_windows,
    load,
    pool_windows,
    resolve_channels,
)
from edgessl.datasets.labelled import ACTIVITY_WINDOW


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How to turn a spec into model inputs; saved with the weights and written into the bundle.

    Attributes:
        spec: dataset spec; several joined with ``+`` are pooled (pretraining only).
        channels: channel names (aliases accepted) or None for all.
        rate_hz: resample windows whose source rate is known to this rate.
        length: stretch each window to this many samples (None keeps the source length).
        preprocess: a :class:`edgessl.preprocess.PreprocessSpec` as a dict.
        stream_window: window length (samples at the source rate) cut from stream layouts, and its stride.
    """

    spec: str = "synthetic"
    channels: tuple[str, ...] | None = None
    rate_hz: float | None = None
    length: int | None = None
    preprocess: dict[str, Any] = dataclasses.field(
        default_factory=lambda: pp.PreprocessSpec((pp.Step("standardize"),)).to_dict()
    )
    stream_window: tuple[int, int] = (128, 64)
    max_windows: int | None = None  # pretraining pool: a fixed random subset of at most this many windows

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**fields)


def standardize_spec(mode: str) -> dict[str, Any]:
    """The preprocessing of a per-window z-score mode: ``channel`` (each channel by its own std, the
    default), ``window`` (one scale per window, keeping the ratios between axes) or ``none`` (units kept)."""
    steps = {"channel": (pp.Step("standardize"),), "window": (pp.Step("standardize", {"per_channel": False}),),
             "none": ()}  # fmt: skip
    if mode not in steps:
        raise ValueError(f"standardize mode must be one of {sorted(steps)}; got {mode!r}")
    return pp.PreprocessSpec(steps[mode]).to_dict()


def match_only(X: np.ndarray, rate: float | None, cfg: DataConfig) -> np.ndarray:
    """Windows at the model's rate and length, in their source units (before preprocessing)."""
    if cfg.rate_hz and rate and abs(rate - cfg.rate_hz) > 1e-6:
        X = pp.resample(X, rate, cfg.rate_hz)
    if cfg.length and X.shape[-1] != cfg.length:
        X = pp.resample_to_length(X, cfg.length)
    return X


def _match(X: np.ndarray, rate: float | None, cfg: DataConfig) -> np.ndarray:
    return pp.apply(pp.PreprocessSpec.from_dict(cfg.preprocess), match_only(X, rate, cfg)).astype(np.float32)


def stream_windows(ds: StreamDataset, window: int, stride: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Cut ``[n, C, window]`` windows with ``stride`` from each recording; none crosses a recording boundary."""
    out = []
    for k in range(ds.n_recordings):
        if mask is not None and not mask[k]:
            continue
        r = ds.recording(k)
        if r.shape[1] < window:
            continue
        starts = np.arange(0, r.shape[1] - window + 1, stride)
        out.append(np.stack([r[:, s : s + window] for s in starts]))
    return np.concatenate(out) if out else np.zeros((0, ds.signal.shape[0], window), np.float32)


def _select(names: list[str], cfg: DataConfig) -> tuple[list[int], list[str]]:
    if cfg.channels is None:
        return list(range(len(names))), names
    idx = resolve_channels(names, list(cfg.channels))
    return idx, list(cfg.channels)


def labelled(cfg: DataConfig) -> tuple[WindowDataset, np.ndarray, np.ndarray]:
    """The labelled dataset of ``cfg.spec`` and its model-ready ``X_train, X_test``."""
    ds = load(cfg.spec)
    if is_labelled_stream(ds):
        # recorded sessions or a labelled CSV: performances become windows (segment or sliding input), split by
        # user, session or performance; --length overrides the data set's window length
        assert isinstance(ds, StreamDataset)
        ds = labelled_windows(ds, cfg.length)
    elif isinstance(ds, StreamDataset):
        raise DataFormatError(f"{cfg.spec}: fine-tuning needs labelled windows; this is a stream layout without "
                              "labelled performances (give a CSV a 'label' column, record labelled sessions into a "
                              "dir: folder with edgessl record --label NAME, or use npz:PATH?split=S)")  # fmt: skip
    idx, names = _select(ds.channel_names, cfg)
    ds = dataclasses.replace(ds, X_train=ds.X_train[:, idx], X_test=ds.X_test[:, idx], channel_names=names,
                             channel_units=[ds.channel_units[i] for i in idx])  # fmt: skip
    return ds, _match(ds.X_train, ds.rate_hz, cfg), _match(ds.X_test, ds.rate_hz, cfg)


def unlabelled_pool(cfg: DataConfig, train_subjects_only: bool = True) -> np.ndarray:
    """Model-ready unlabeled windows from one or more specs joined by ``+``; never a test split.

    Window layouts contribute ``X_train``. Session streams (``dir:``, a labelled ``csv:``) contribute
    :func:`edgessl.datasets.pool_windows` (segmenter cuts or sliding windows of the data set's length, outside
    its test split). Other stream layouts contribute windows cut from their recordings,
    restricted to the training subjects where the file names them (``train_subjects``) or to templates in
    the UCR train split (``ucr_split == 0``) for uWave, so nothing of a test split leaks into pretraining.
    """
    return unlabelled_windows(cfg, train_subjects_only)[0]


def unlabelled_windows(cfg: DataConfig, train_subjects_only: bool = True) -> tuple[np.ndarray, list[str]]:
    """:func:`unlabelled_pool` and the names of its channels (the same in every pooled source)."""
    parts = []
    names: list[str] | None = None
    for spec in cfg.spec.split("+"):
        one = dataclasses.replace(cfg, spec=spec.strip())
        ds = load(one.spec)
        idx, these = _select(ds.channel_names, one)
        if names is not None and list(these) != names:
            raise DataFormatError(f"pooled sources have different channels: {names} and {list(these)} in "
                                  f"{one.spec}; choose the same channels by name with channels / --channels")  # fmt: skip
        names = list(these)
        if isinstance(ds, WindowDataset):
            parts.append(_match(ds.X_train[:, idx], ds.rate_hz, one))
            continue
        if "input_mode" in ds.extra:
            # a session stream (dir:, csv: with labels or a sidecar): the data set's own input mode and window
            # length, so that pretraining sees what fine-tuning and the runtime see; never its test split
            if "activity_classes" in ds.extra:  # (segment input: a folder of activities read as gestures)
                warnings.warn(f"{one.spec}: its classes {[str(c) for c in ds.extra['activity_classes']]} last far "
                              "longer than a gesture (activities), yet pretraining reads it as gestures cut from "
                              "movement; to pretrain on what --recipe activities fine-tunes on, give the spec "
                              f"input=sliding,length={ACTIVITY_WINDOW}", stacklevel=2)  # fmt: skip
            W, rate = pool_windows(ds, one.length)
            parts.append(_match(W[:, idx], rate, one))
            continue
        mask = np.ones(ds.n_recordings, bool)
        if train_subjects_only:
            if "train_subjects" in ds.extra and "subject" in ds.recording_groups:
                mask &= np.isin(ds.recording_groups["subject"], ds.extra["train_subjects"])
            if "ucr_split" in ds.recording_groups:
                mask &= ds.recording_groups["ucr_split"] == 0
        win, stride = one.stream_window
        W = stream_windows(ds, win, stride, mask)[:, idx]
        parts.append(_match(W, ds.rate_hz, one))
    lengths = {p.shape[-1] for p in parts}
    if len(lengths) > 1:
        raise DataFormatError(f"pooled sources have different window lengths {sorted(lengths)}; set length")
    pool = np.concatenate(parts).astype(np.float32)
    if cfg.max_windows is not None and len(pool) > cfg.max_windows:
        pool = pool[np.sort(np.random.default_rng(0).permutation(len(pool))[: cfg.max_windows])]
    return pool, names or []


def label_budget_split(y: np.ndarray, *, per_class: int | None = None, fraction: float | None = None,
                       val_fraction: float = 0.2, seed: int = 0, groups: np.ndarray | None = None,
                       fold: tuple[int, int] | None = None, class_names: list[str] | None = None,
                       units: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Carve a validation split from the training rows, then draw the labelled budget from the rest
    (``class_names``: for the error a too large budget gets).

    Without ``groups`` the validation split is stratified by class. With ``groups`` (one id per row, e.g.
    the subject) it is made of whole groups, drawn at random until they hold ``val_fraction`` of the rows,
    so that validation measures what the test split of a subject-wise benchmark measures: people the model
    has not seen. (Overlapping windows of one recording in both parts would also leak: UCI HAR's windows
    overlap by half.)

    With ``fold=(i, k)`` the validation split is fold ``i`` of a stratified ``k``-fold partition of the rows
    (one partition per ``seed``; ``val_fraction`` is then ``1 / k``): the ``k`` folds of one seed validate on
    every training row once, which is what cross-validation pools when one 20 % split is too small to tell
    two models apart.

    ``units`` (one id per row, each id of one class: :func:`window_units`) keeps rows together in the
    stratified and the k-fold splits: ``val_fraction`` (or the fold) is then drawn over each class's units,
    so that overlapping windows of one performance are not on both sides (without it, a validation window's
    neighbours, sharing half its samples, trained the model that scores it).

    Returns:
        ``(train_idx, val_idx)`` into ``y``. The budget is ``per_class`` rows of each class, or ``fraction``
        of the non-validation rows (stratified, at least one per class), or all of them.
    """
    if per_class is not None and fraction is not None:
        raise ValueError("give per_class or fraction, not both")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1]; got {fraction}")
    if fold is not None:
        i, k = fold
        if k < 2 or not 0 <= i < k:
            raise ValueError(f"fold must be (i, k) with k >= 2 and 0 <= i < k; got {fold}")
        if groups is not None:
            raise ValueError("a k-fold validation split is stratified by class; it does not take groups")
    rng = np.random.default_rng(seed)
    in_val = None
    if groups is not None:
        in_val = _group_validation(y, np.asarray(groups), val_fraction, rng)
    offset = 0  # rotates the first fold per class, so that the folds' sizes differ by at most one row
    train, val = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        rank = unit_rank(rows, units)  # the row's unit, numbered in the permuted order (the row itself without units)
        n_units = int(rank.max()) + 1 if len(rank) else 0
        if in_val is not None:
            val.extend(rows[in_val[rows]])
            rest = rows[~in_val[rows]]
        elif fold is not None:
            member = (rank + offset) % fold[1] == fold[0]
            offset += n_units
            val.extend(rows[member])
            rest = rows[~member]
        else:
            n_val = max(1, int(round(val_fraction * n_units))) if n_units > 1 else 0
            val.extend(rows[rank < n_val])
            rest = rows[rank >= n_val]
        if per_class is not None:
            if per_class > len(rest):
                name = repr(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)
                raise ValueError(f"class {name} has only {len(rest)} training rows outside validation "
                                 f"({len(rows) - len(rest)} of its {len(rows)} are validation); asked {per_class} "
                                 "labelled per class: lower the budget or label more")  # fmt: skip
            take = per_class
        elif fraction is not None:
            take = max(1, int(round(fraction * len(rest))))
        else:
            take = len(rest)
        train.extend(rest[:take])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def window_units(ds: WindowDataset) -> np.ndarray | None:
    """Per training row, the unit of overlapping windows it belongs to (see :func:`label_budget_split`): a
    labelled performance's windows (of a class recorded as a single performance, each half of it, so that the
    class still splits); None when no performance has more than one window (gestures cut one window each,
    or no ``performance`` ids).

    On a walkthrough's activities (27 people; 6 runs) validation read 1.7 pt above test split so, 2.6 pt split
    by single windows; runs of 16 windows gained nothing over whole performances (docs/results.md)."""
    if "performance" not in ds.groups:
        return None
    perf = np.asarray(ds.groups["performance"][0])
    if len(perf) == 0 or len(np.unique(perf)) == len(perf):
        return None
    y = np.asarray(ds.y_train)
    units = perf.astype(np.int64) * 2
    for c in np.unique(y):
        ids = np.unique(perf[y == c])
        if len(ids) == 1:  # one performance: its second half is another unit (a performance's windows are in order)
            rows = np.flatnonzero(perf == ids[0])
            units[rows[len(rows) // 2 :]] += 1
    return units


def unit_rank(rows: np.ndarray, units: np.ndarray | None) -> np.ndarray:
    """For ``rows`` in a random order, each row's unit numbered by first appearance in that order (so the
    units come in a random order too); ``arange`` without units."""
    if units is None:
        return np.arange(len(rows))
    _, first, inverse = np.unique(units[rows], return_index=True, return_inverse=True)
    order = np.empty(len(first), np.int64)
    order[np.argsort(first)] = np.arange(len(first))
    return order[inverse.ravel()]


def train_groups(ds: WindowDataset, name: str | None) -> np.ndarray | None:
    """The per-row ids ``name`` (e.g. ``"subject"``) of the training split, or None for no name."""
    return None if name is None else _groups(ds, name, "a group-wise validation split")[0]


def groups_of_test_split(ds: WindowDataset, name: str) -> np.ndarray:
    """The per-row ids ``name`` (e.g. ``"subject"``) of the test split."""
    return _groups(ds, name, "per-group test-time adaptation")[1]


def _groups(ds: WindowDataset, name: str, purpose: str) -> tuple[np.ndarray, np.ndarray]:
    if name not in ds.groups:
        raise ValueError(f"{ds.name}: no per-row {name!r} ids for {purpose}; "
                         f"this dataset has {sorted(ds.groups) or 'none'}")
    return ds.groups[name]


def _group_validation(y: np.ndarray, groups: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Row mask of a validation split made of whole groups holding about ``val_fraction`` of the rows."""
    if groups.shape != y.shape:
        raise ValueError(f"groups must give one id per training row: {groups.shape} for {y.shape[0]} rows")
    ids = np.unique(groups)
    if len(ids) < 2:
        raise ValueError(f"a group-wise validation split needs at least 2 groups; the training rows have {len(ids)}")
    in_val = np.zeros(len(y), bool)
    for g in rng.permutation(ids)[: len(ids) - 1]:  # at least one group stays for training
        if in_val.mean() >= val_fraction:
            break
        in_val |= groups == g
    missing = sorted(int(c) for c in set(np.unique(y)) - set(np.unique(y[~in_val])))
    if missing:
        raise ValueError(f"the group-wise validation split took every training row of classes {missing}; "
                         f"use fewer validation groups (val_fraction {val_fraction}) or a row-wise split")
    return in_val
