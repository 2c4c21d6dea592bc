"""The dataset types every loader returns, their errors and the channel-name rules (numpy only).

This module imports no loader and no generator: loaders and :mod:`edgessl.datasets.synthetic` import it,
never the other way round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgessl.errors import DataError, UsageError
from edgessl.preprocess import resample_to_length
from edgessl.units import (
    canonical_unit,
    g_channels,
    gyro_problem_text,
    rad_s_channels,
    unit_from_channel,
    unit_problem_text,
)

__all__ = [
    "CHANNEL_ALIASES",
    "DataFormatError",
    "SpecOptionError",
    "StreamDataset",
    "WindowDataset",
    "parse_float",
    "resolve_channels",
    "unit_from_channel",
]


class DataFormatError(DataError, ValueError):
    """A data file is malformed or inconsistent; the message names the file (and line where known)."""


class SpecOptionError(UsageError, ValueError):
    """A data spec's option (``dir:PATH?test=0.3``) is unknown or has a bad value: a usage error, naming it."""


def _check_rate(name: str, rate_hz: float | None) -> None:
    if rate_hz is not None and not (np.isfinite(rate_hz) and rate_hz > 0):
        raise DataFormatError(f"{name}: the sample rate must be a finite number of Hz > 0; got {rate_hz}")


# Names that mean the same physical channel in different sources and devices (the gravity-including
# accelerometer; the gyroscope as Arduino sketches and Edge Impulse name it).
CHANNEL_ALIASES = {
    "acc_x": ("acc_x", "total_acc_x", "accx", "ax", "x"),
    "acc_y": ("acc_y", "total_acc_y", "accy", "ay", "y"),
    "acc_z": ("acc_z", "total_acc_z", "accz", "az", "z"),
    "gyro_x": ("gyro_x", "body_gyro_x", "gyrox", "gyrx", "gx"),
    "gyro_y": ("gyro_y", "body_gyro_y", "gyroy", "gyry", "gy"),
    "gyro_z": ("gyro_z", "body_gyro_z", "gyroz", "gyrz", "gz"),
}


def resolve_channels(available: list[str], wanted: list[str]) -> list[int]:
    """Indices of ``wanted`` channels in ``available``: exact names first, then aliases (case-insensitive)."""
    low = [a.lower() for a in available]
    out = []
    for w in wanted:
        if w in available:
            out.append(available.index(w))
            continue
        group = next((names for names in CHANNEL_ALIASES.values() if w.lower() in names), (w.lower(),))
        hit = next((low.index(a) for a in group if a in low), None)
        if hit is None:
            raise DataFormatError(f"no channel {w!r} (or an alias of it) among {available}")
        out.append(hit)
    return out


def _units_text(units: list[str]) -> str:
    """``in g `` (one unit), ``in ['g', 'g', 'g', 'rad/s', ...] ``; empty where no unit is known."""
    if all(u == "unknown" for u in units):
        return ""
    return f"in {units[0]} " if len(set(units)) == 1 else f"in {units} "


@dataclasses.dataclass
class WindowDataset:
    """Fixed-length labelled windows with a train/test split.

    Attributes:
        X_train: float32 ``[n_train, C, T]``.
        y_train: int64 ``[n_train]`` class indices into ``class_names``.
        X_test: float32 ``[n_test, C, T]``.
        y_test: int64 ``[n_test]``.
        class_names: one name per class.
        channel_names: one name per channel.
        channel_units: one unit per channel (``g``, ``rad/s``, ``z-score`` ...).
        rate_hz: sample rate, or None when the windows were stretched to a fixed length.
        groups: extra per-row integer arrays, e.g. ``{"subject": (train, test)}``.
        name: where the data came from.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    channel_names: list[str]
    channel_units: list[str]
    rate_hz: float | None
    groups: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        _check_rate(self.name, self.rate_hz)
        for split in ("train", "test"):
            X, y = getattr(self, f"X_{split}"), getattr(self, f"y_{split}")
            if X.ndim != 3:
                raise DataFormatError(f"{self.name}: X_{split} must be [n, channels, length]; got {X.shape}")
            if len(X) != len(y):
                raise DataFormatError(f"{self.name}: X_{split} has {len(X)} rows but y_{split} has {len(y)}")
            if X.shape[1] != len(self.channel_names):
                raise DataFormatError(
                    f"{self.name}: X_{split} has {X.shape[1]} channels but {len(self.channel_names)} channel names"
                )
        if self.X_train.shape[1:] != self.X_test.shape[1:] and len(self.X_test):
            raise DataFormatError(f"{self.name}: train {self.X_train.shape[1:]} and test {self.X_test.shape[1:]} differ")

    @property
    def n_channels(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def length(self) -> int:
        return int(self.X_train.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def select_channels(self, names: list[str]) -> WindowDataset:
        """Return a copy holding only the named channels, in the given order."""
        missing = [n for n in names if n not in self.channel_names]
        if missing:
            raise DataFormatError(f"{self.name}: no channel(s) {missing}; available: {self.channel_names}")
        idx = [self.channel_names.index(n) for n in names]
        return dataclasses.replace(
            self,
            X_train=self.X_train[:, idx],
            X_test=self.X_test[:, idx],
            channel_names=list(names),
            channel_units=[self.channel_units[i] for i in idx],
        )

    def summary(self) -> str:
        rate = f"{self.rate_hz:g} Hz" if self.rate_hz else "no fixed rate"
        return (
            f"{self.name}: {len(self.X_train)} train / {len(self.X_test)} test windows, "
            f"{self.n_channels} channels {self.channel_names} {_units_text(self.channel_units)}x {self.length} "
            f"samples ({rate}), "
            f"{self.n_classes} classes"
        )


@dataclasses.dataclass
class StreamDataset:
    """Continuous recordings concatenated along time and cut by ``offsets``.

    Attributes:
        signal: float32 ``[C, N]``.
        offsets: int64 ``[R + 1]``; recording ``k`` is ``signal[:, offsets[k]:offsets[k+1]]``.
        channel_names, channel_units, class_names, rate_hz: as in :class:`WindowDataset`.
        sample_labels: int ``[N]`` per-sample class (−1 unlabelled), or None.
        recording_labels: int ``[R]`` one class per recording (e.g. a uWave template), or None.
        recording_groups: per-recording integer arrays (``subject``, ``day`` ...).
        timestamps: float64 ``[N]`` seconds, where the source had them.
    """

    signal: np.ndarray
    offsets: np.ndarray
    channel_names: list[str]
    channel_units: list[str]
    class_names: list[str]
    rate_hz: float | None
    sample_labels: np.ndarray | None = None
    recording_labels: np.ndarray | None = None
    recording_groups: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    timestamps: np.ndarray | None = None
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        _check_rate(self.name, self.rate_hz)
        if self.signal.ndim != 2:
            raise DataFormatError(f"{self.name}: signal must be [channels, samples]; got {self.signal.shape}")
        off = self.offsets
        if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != self.signal.shape[1] or np.any(np.diff(off) < 0):
            raise DataFormatError(
                f"{self.name}: offsets must rise from 0 to the signal length {self.signal.shape[1]}; "
                f"got {len(off)} offsets from {off[:1]} to {off[-1:]}"
            )

    @property
    def n_recordings(self) -> int:
        return len(self.offsets) - 1

    def recording(self, k: int) -> np.ndarray:
        """Recording ``k`` as ``[C, n_k]``."""
        return self.signal[:, self.offsets[k] : self.offsets[k + 1]]

    def recordings(self) -> Iterator[np.ndarray]:
        for k in range(self.n_recordings):
            yield self.recording(k)

    def summary(self) -> str:
        rate = f"{self.rate_hz:g} Hz" if self.rate_hz else "unknown rate"
        return (
            f"{self.name}: {self.n_recordings} recordings, {self.signal.shape[1]} samples, "
            f"{len(self.channel_names)} channels {self.channel_names} {_units_text(self.channel_units)}({rate})"
        ) + (f"; converted {', '.join(map(str, self.extra['converted_units']))}" if "converted_units" in self.extra else "")

    def to_windows(self, length: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stretch each labelled recording to ``length`` samples (what the UCR archive did to uWave).

        Returns:
            ``(X [n, C, length], y [n])`` over the recordings selected by ``mask`` that have at least
            two samples.
        """
        if self.recording_labels is None:
            raise DataFormatError(f"{self.name}: recordings carry no labels, so they cannot become labelled windows")
        sel = np.ones(self.n_recordings, bool) if mask is None else np.asarray(mask, bool)
        lengths = np.diff(self.offsets)
        sel &= lengths >= 2
        idx = np.flatnonzero(sel)
        X = np.stack([resample_to_length(self.recording(k), length) for k in idx.tolist()]) if len(idx) else np.zeros(
            (0, len(self.channel_names), length), np.float32
        )
        return X.astype(np.float32), self.recording_labels[idx].astype(np.int64)

    def split_windows(self, split: str, length: int | None = None) -> WindowDataset:
        """Labelled recordings as a :class:`WindowDataset` with the train/test split of a per-recording array.

        Each labelled recording (e.g. a uWave template) is stretched to ``length`` samples (default: the
        longest selected recording). ``recording_groups[split]`` says where each goes: 0 train, 1 test, any
        other value (e.g. -1) nowhere. The other per-recording ids (subject, day ...) become per-row groups.
        """
        if split not in self.recording_groups:
            raise DataFormatError(f"{self.name}: no per-recording split array {split!r}; the file has "
                                  f"{sorted(self.recording_groups)}")  # fmt: skip
        if self.recording_labels is None:
            raise DataFormatError(f"{self.name}: recordings carry no labels, so they cannot become labelled windows")
        where = self.recording_groups[split]
        usable = np.diff(self.offsets) >= 2
        if not np.any((where == 0) & usable) or not np.any((where == 1) & usable):
            raise DataFormatError(f"{self.name}: split {split!r} must mark some recordings 0 (train) and some 1 "
                                  f"(test); found values {sorted(set(where.tolist()))}")  # fmt: skip
        if length is None:
            length = int(np.diff(self.offsets)[(where == 0) | (where == 1)].max())
        if length < 2:
            raise DataFormatError(f"{self.name}: windows need at least 2 samples; got length={length}")
        parts, groups = {}, {}
        for code, key in ((0, "train"), (1, "test")):
            mask = (where == code) & usable
            parts[key] = self.to_windows(length, mask)
            groups[key] = {g: a[mask] for g, a in self.recording_groups.items() if g != split}
        return WindowDataset(
            parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1], list(self.class_names),
            list(self.channel_names), list(self.channel_units), None,
            {g: (groups["train"][g], groups["test"][g]) for g in groups["train"]},
            name=f"{self.name} ({split} split, recordings stretched to {length})",
        )


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_finite(x: np.ndarray, where: str) -> None:
    """Refuse ``inf`` (NaN is a missing value, filled later) and numbers float32 cannot hold.

    Raises:
        DataFormatError: naming ``where``, how many values are bad and the first one's index.
    """
    bad = np.isinf(x) | (np.abs(np.nan_to_num(x.astype(np.float64, copy=False), nan=0.0)) > FLOAT32_MAX)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataFormatError(f"{where}: {int(bad.sum())} value(s) are infinite or beyond float32 (first at index "
                              f"{list(first)}: {x[first]!r}); missing values are NaN")  # fmt: skip


def to_canonical_units(ds: WindowDataset | StreamDataset) -> list[str]:
    """Convert, in place, the channels in a unit the loaders know (m/s², mg, deg/s: :data:`edgessl.units.CONVERTIBLE`)
    to the unit models are trained and boards stream in (g, rad/s); the conversions made, as ``"m/s² -> g"`` texts
    (also kept in ``ds.extra["converted_units"]`` of a stream, for ``data info``)."""
    done: list[str] = []
    for i, u in enumerate(ds.channel_units):
        unit, k = canonical_unit(u)
        if unit == u:
            continue
        if isinstance(ds, StreamDataset):
            ds.signal[i] *= np.float32(k)
        else:
            for X in (ds.X_train, ds.X_test):
                X[:, i] *= np.float32(k)
        ds.channel_units[i] = unit
        if f"{u} -> {unit}" not in done:
            done.append(f"{u} -> {unit}")
    if done and isinstance(ds, StreamDataset):
        ds.extra["converted_units"] = np.array(done)
    return done


def unit_problem(ds: WindowDataset | StreamDataset, spec: str | None = None) -> str | None:
    """What is wrong with the values of the channels said to be in g or rad/s (:mod:`edgessl.units`), or None
    (``spec``: the data spec read, for the remedy)."""

    def values(idx: list[int]) -> np.ndarray:
        S = ds.signal[idx] if isinstance(ds, StreamDataset) else np.moveaxis(ds.X_train[:, idx], 1, 0).reshape(len(idx), -1)
        return S[:, :: max(1, S.shape[1] // 200_000)].T  # a sample of a long recording is enough for a median

    g, r = g_channels(ds.channel_units), rad_s_channels(ds.channel_units)
    problems = [unit_problem_text([ds.channel_names[i] for i in g], values(g), spec) if len(g) == 3 else None,
                gyro_problem_text([ds.channel_names[i] for i in r], values(r), spec) if len(r) == 3 else None]  # fmt: skip
    return "; ".join(p for p in problems if p) or None


def parse_float(tok: str, path: Path, lineno: int) -> float:
    """One number of a text file; ``?``, ``NaN`` and an empty cell are missing (NaN)."""
    tok = tok.strip()
    if tok in ("?", "NaN", "nan", ""):
        return float("nan")
    try:
        v = float(tok)
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: expected a number or '?', got {tok!r}") from None
    # inf, or a number float32 cannot hold (it would become inf): refused, not taken for a missing value
    if not abs(v) <= FLOAT32_MAX:
        raise DataFormatError(f"{path}:{lineno}: value {tok!r} is not a finite float32 number (|x| <= "
                              f"{FLOAT32_MAX:.4g}); missing values are written '', '?' or NaN")  # fmt: skip
    return v
