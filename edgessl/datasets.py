"""Dataset loaders (numpy only), shared by the trainer, the simulator and the benchmarks.

A *dataset spec* string selects a source:

=====================  ======================================================================
``npz:PATH``           our ``.npz`` layout (``X_train [n, C, T]``, ``y_train`` ...) or a stream layout
                       (``signal`` + ``offsets`` / ``experiment_offsets``), see ``shared/data/README.md``
``npz:PATH?split=S``   a stream layout of labelled recordings as windows: each recording stretched to
                       ``length=N`` samples (default the longest), train/test by the per-recording array
                       ``S`` (0 / 1), e.g. ``npz:uwave_raw.npz?split=ucr_split,length=315``: the UCR
                       split of the raw uWave templates, in g; or ``like=FILE``: the rows of the windowed
                       ``FILE`` (its split and order) rebuilt from the recordings they match by label and
                       shared ids, e.g. ``npz:uwave_raw.npz?like=uwave_gesture_uea.npz``; or
                       ``outside=FILE``: the recordings *none* of ``FILE``'s rows was made from (train;
                       its matched rows are the test split), e.g. an unlabelled pool that holds no
                       gesture of the UEA file: ``npz:uwave_raw.npz?outside=uwave_gesture_uea.npz``
``ucr:PATH``           UCR/UEA archive files: ``NAME_TRAIN.ts|.arff|.tsv`` (the ``_TEST`` partner is found
                       beside it) or the common prefix ``DIR/NAME``
``...?quantum=Q``      (``npz:`` windows and ``ucr:``) rows whose channels were z-normalised one by one,
                       made from integer sensor counts: the relative scale of the channels is read back
                       from the sensor-step lattice (:mod:`edgessl.quantum`) and the rows come out with
                       one scale per window; ``Q`` is the unit per count, one value or one per channel
                       joined by ``:``, e.g. ``npz:uwave_gesture_ucr.npz?quantum=1/26:1/26:1/25``
``har:DIR``            the UCI HAR folder (``train/Inertial Signals/*.txt``, ``y_train.txt`` ...)
``csv:PATH``           a CSV recording: a timestamp column then one column per channel, header required
``synthetic[:k=v,..]`` the embedded synthetic IMU gesture generator (see :mod:`edgessl.synthetic`)
=====================  ======================================================================

Windowed sources give a :class:`WindowDataset`; continuous sources give a :class:`StreamDataset`.
Missing values are forward- then backward-filled along time per channel; a channel that is entirely
missing is an error naming the file and the channel. Malformed files raise :class:`DataFormatError`
naming the file and the line.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.preprocess import PreprocessError, fill_missing, resample_to_length

__all__ = [
    "DataFormatError",
    "StreamDataset",
    "WindowDataset",
    "default_data_dir",
    "load",
    "load_stream",
    "load_windows",
    "read_arff",
    "read_csv_recording",
    "read_ts",
    "read_tsv",
    "resolve_channels",
    "write_ts",
]

DATA_DIR_ENV = "EDGESSL_DATA_DIR"

# Sample rates and units of the shared files, which the .npz arrays do not carry themselves.
# A file of ours may carry ``rate_hz`` and ``channel_units`` arrays, which take precedence.
_KNOWN_FILES: dict[str, dict[str, Any]] = {
    "uwave_gesture_ucr": {"rate_hz": None, "units": "z-score"},
    "uwave_gesture_uea": {"rate_hz": None, "units": "z-score"},
    "uwave_raw": {"rate_hz": 100.0, "units": "g"},
    "uci_har": {"rate_hz": 50.0, "units": None},  # per channel, from the name
    "hapt_raw_streams": {"rate_hz": 50.0, "units": None},
}


class DataFormatError(ValueError):
    """A data file is malformed or inconsistent; the message names the file (and line where known)."""


def default_data_dir() -> Path:
    """Where the shared data sets live: ``$EDGESSL_DATA_DIR`` or ``../shared/data`` beside the project."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _unit_from_channel(name: str) -> str:
    n = name.lower()
    if "gyro" in n:
        return "rad/s"
    if "acc" in n:
        return "g"
    return "unknown"


# Names that mean the same physical channel in different sources and devices (gravity-included accelerometer).
CHANNEL_ALIASES = {
    "acc_x": ("acc_x", "total_acc_x", "accx", "ax", "x"),
    "acc_y": ("acc_y", "total_acc_y", "accy", "ay", "y"),
    "acc_z": ("acc_z", "total_acc_z", "accz", "az", "z"),
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
            f"{self.n_channels} channels {self.channel_names} x {self.length} samples ({rate}), "
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
            f"{len(self.channel_names)} channels {self.channel_names} ({rate})"
        )

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
        X = np.stack([resample_to_length(self.recording(k), length) for k in idx]) if len(idx) else np.zeros(
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


def _matched_recordings(raw: StreamDataset, like: WindowDataset) -> dict[str, np.ndarray]:
    """For each split of ``like``, the recording of ``raw`` each row was made from (see :func:`windows_like`)."""
    if raw.recording_labels is None:
        raise DataFormatError(f"{raw.name}: recordings carry no labels, so they cannot be matched to {like.name}'s rows")
    keys = sorted(set(like.groups) & set(raw.recording_groups))
    if not keys:
        raise DataFormatError(f"{raw.name} and {like.name} share no per-row ids to match rows with: "
                              f"{sorted(raw.recording_groups)} vs {sorted(like.groups)}")  # fmt: skip
    table: dict[tuple[int, ...], list[int]] = {}
    cols = [raw.recording_labels] + [raw.recording_groups[k] for k in keys]
    for r, key in enumerate(zip(*(c.tolist() for c in cols), strict=True)):
        table.setdefault(key, []).append(r)
    picked = {}
    for i, split in enumerate(("train", "test")):
        y = getattr(like, f"y_{split}")
        rows = list(zip(y.tolist(), *(like.groups[k][i].tolist() for k in keys), strict=True))
        found = [table.get(key, []) for key in rows]
        bad = [(j, key, len(f)) for j, (key, f) in enumerate(zip(rows, found, strict=True)) if len(f) != 1]
        if bad:
            j, key, n = bad[0]
            raise DataFormatError(f"{like.name}: {len(bad)} {split} row(s) match no single recording of {raw.name} "
                                  f"by (label, {', '.join(keys)}); e.g. row {j} {key} matches {n}")  # fmt: skip
        picked[split] = np.array([f[0] for f in found], np.int64)
    return picked


def windows_like(raw: StreamDataset, like: WindowDataset, length: int | None = None) -> WindowDataset:
    """The rows of a windowed dataset rebuilt from the labelled recordings they were made from.

    Each row of ``like`` (train and test, in its order) is matched to the one recording of ``raw`` with the
    same label and the same value of every per-row id the two share (e.g. subject, day, repetition); that
    recording, stretched to ``length`` samples (default: the longest one used), becomes the row. So a
    published split (the UEA archive's uWave rows) can be read in the raw recordings' units.
    """
    picked = _matched_recordings(raw, like)
    lengths = np.diff(raw.offsets)
    used = np.concatenate(list(picked.values()))
    if np.any(lengths[used] < 2):
        raise DataFormatError(f"{like.name}: {int(np.sum(lengths[used] < 2))} row(s) come from recordings shorter "
                              "than 2 samples")  # fmt: skip
    length = int(lengths[used].max()) if length is None else length
    X = {k: np.stack([resample_to_length(raw.recording(r), length) for r in v]).astype(np.float32)
         for k, v in picked.items()}  # fmt: skip
    return WindowDataset(X["train"], like.y_train, X["test"], like.y_test, list(like.class_names),
                         list(raw.channel_names), list(raw.channel_units), None, dict(like.groups),
                         name=f"{like.name} rows from {raw.name} (stretched to {length})")  # fmt: skip


def windows_outside(raw: StreamDataset, like: WindowDataset, length: int | None = None) -> WindowDataset:
    """The labelled recordings of ``raw`` that none of ``like``'s rows was made from, as windows.

    The train split holds every usable recording (at least 2 samples) matched by no row of ``like`` (train
    or test; matched as in :func:`windows_like`); the test split holds the recordings its rows were made
    from, so what is kept out stays visible. Each is stretched to ``length`` samples (default: the longest).
    E.g. ``npz:uwave_raw.npz?outside=uwave_gesture_uea.npz``: the uWave library without any gesture of the
    UEA file, an unlabelled pool for a model that is tested on the UEA test rows.
    """
    picked = _matched_recordings(raw, like)
    split = np.zeros(raw.n_recordings, np.int64)
    split[np.concatenate(list(picked.values()))] = 1
    if not np.any((split == 0) & (np.diff(raw.offsets) >= 2)):
        raise DataFormatError(f"{raw.name}: every usable recording (2 samples or more) was made into a row of "
                              f"{like.name}; none is left outside it")  # fmt: skip
    ds = dataclasses.replace(raw, recording_groups={**raw.recording_groups, "_outside": split})
    out = ds.split_windows("_outside", length)
    return dataclasses.replace(out, name=f"{raw.name} outside the rows of {like.name} (stretched to "
                                         f"{out.X_train.shape[-1]}; test: the {int(split.sum())} recordings of those rows)")


def uwave_ucr_windows(raw: StreamDataset, length: int = 315) -> np.ndarray:
    """Apply the UCR archive's procedure to raw uWave templates: ``[R, 3, length]`` (NaN for length-1 ones).

    Each template is stretched to the longest template of its own (user, day) archive, then to ``length``,
    then z-normalised per axis with ddof=1 — this reproduces ``uwave_gesture_ucr.npz`` row for row.
    """
    from edgessl.preprocess import standardize

    lengths = np.diff(raw.offsets)
    subj, day = raw.recording_groups["subject"], raw.recording_groups["day"]
    out = np.full((raw.n_recordings, len(raw.channel_names), length), np.nan, np.float32)
    for s, d in set(zip(subj.tolist(), day.tolist(), strict=True)):
        ks = np.flatnonzero((subj == s) & (day == d))
        longest = int(lengths[ks].max())
        for k in ks:
            if lengths[k] >= 2:
                out[k] = resample_to_length(resample_to_length(raw.recording(k), longest), length)
    ok = lengths >= 2
    out[ok] = standardize(out[ok], ddof=1)
    return out


# ----------------------------------------------------------------------------------------------
# .npz


def _str_list(a: np.ndarray) -> list[str]:
    return [str(s) for s in a.tolist()]


def _npz_meta(path: Path, z: Any, channel_names: list[str]) -> tuple[float | None, list[str]]:
    known = _KNOWN_FILES.get(path.stem, {})
    rate = float(z["rate_hz"]) if "rate_hz" in z.files else known.get("rate_hz")
    if "channel_units" in z.files:
        units = _str_list(z["channel_units"])
    elif known.get("units"):
        units = [known["units"]] * len(channel_names)
    else:
        units = [_unit_from_channel(c) for c in channel_names]
    return rate, units


def read_npz(path: str | Path) -> WindowDataset | StreamDataset:
    """Read our ``.npz`` layout (windows) or one of the two stream layouts."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (set {DATA_DIR_ENV} to point at the shared data folder)")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataFormatError(f"{path}: not a readable .npz archive without pickles ({e})") from e
    with z:
        files = set(z.files)
        if "signal" in files:
            return _read_stream_npz(path, z)
        need = {"X_train", "y_train", "X_test", "y_test"}
        if not need <= files:
            raise DataFormatError(
                f"{path}: expected arrays {sorted(need)} (window layout) or 'signal' + offsets (stream layout); "
                f"found {sorted(files)}"
            )
        X_train = z["X_train"].astype(np.float32)
        X_test = z["X_test"].astype(np.float32)
        n_ch = X_train.shape[1] if X_train.ndim == 3 else 0
        channels = _str_list(z["channel_names"]) if "channel_names" in files else [f"ch{i}" for i in range(n_ch)]
        y_train, y_test = z["y_train"].astype(np.int64), z["y_test"].astype(np.int64)
        if "class_names" in files:
            classes = _str_list(z["class_names"])
        else:
            classes = [str(i) for i in range(int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1)]
        groups = {
            k[: -len("_train")]: (z[k].astype(np.int64), z[k[: -len("_train")] + "_test"].astype(np.int64))
            for k in files
            if k.endswith("_train") and k not in ("X_train", "y_train") and k[: -len("_train")] + "_test" in files
        }
        rate, units = _npz_meta(path, z, channels)
        X_train = fill_missing(X_train, str(path), channels)
        X_test = fill_missing(X_test, str(path), channels) if len(X_test) else X_test
    return WindowDataset(X_train, y_train, X_test, y_test, classes, channels, units, rate, groups, name=path.name)


def _read_stream_npz(path: Path, z: Any) -> StreamDataset:
    files = set(z.files)
    off_key = "offsets" if "offsets" in files else "experiment_offsets" if "experiment_offsets" in files else None
    if off_key is None:
        raise DataFormatError(f"{path}: stream layout needs 'offsets' or 'experiment_offsets'; found {sorted(files)}")
    signal = z["signal"].astype(np.float32)
    channels = _str_list(z["channel_names"]) if "channel_names" in files else [f"ch{i}" for i in range(len(signal))]
    classes = _str_list(z["class_names"]) if "class_names" in files else []
    offsets = z[off_key].astype(np.int64)
    n_rec = len(offsets) - 1
    sample_labels = recording_labels = None
    if "label" in files:
        lab = z["label"].astype(np.int64)
        if len(lab) == signal.shape[1]:
            sample_labels = lab
        elif len(lab) == n_rec:
            recording_labels = lab
        else:
            raise DataFormatError(
                f"{path}: 'label' has {len(lab)} entries; expected one per sample ({signal.shape[1]}) "
                f"or one per recording ({n_rec})"
            )
    groups: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    for k in files - {"signal", off_key, "label", "channel_names", "class_names", "rate_hz", "channel_units"}:
        a = z[k]
        key = k[len("experiment_") :] if k.startswith("experiment_") else k
        if a.ndim == 1 and len(a) == n_rec and a.dtype.kind in "iu":
            groups[key] = a.astype(np.int64)
        else:
            extra[k] = a
    rate, units = _npz_meta(path, z, channels)
    signal = fill_missing(signal, str(path), channels)
    return StreamDataset(
        signal, offsets, channels, units, classes, rate, sample_labels, recording_labels, groups, None, extra, path.name
    )


# ----------------------------------------------------------------------------------------------
# UCR / UEA .ts


def _parse_float(tok: str, path: Path, lineno: int) -> float:
    tok = tok.strip()
    if tok in ("?", "NaN", "nan", ""):
        return float("nan")
    try:
        return float(tok)
    except ValueError:
        raise DataFormatError(f"{path}:{lineno}: expected a number or '?', got {tok!r}") from None


def _stack_series(series: list[np.ndarray], path: Path, unequal: str) -> np.ndarray:
    """Stack ``[C, T_i]`` series into ``[n, C, T]``; unequal lengths are stretched to the longest."""
    lengths = {s.shape[1] for s in series}
    if len(lengths) == 1:
        return np.stack(series).astype(np.float32)
    if unequal != "resample":
        raise DataFormatError(f"{path}: series have unequal lengths {sorted(lengths)[:5]}...; pass unequal='resample'")
    target = max(lengths)
    out = []
    for s in series:
        # fill before stretching so missing values do not smear into their neighbours
        s = fill_missing(s[None], str(path))[0] if np.isnan(s).any() else s
        out.append(resample_to_length(s, target))
    return np.stack(out).astype(np.float32)


def _labels_to_index(raw: list[str], declared: list[str] | None) -> tuple[np.ndarray, list[str]]:
    if declared:
        classes = list(declared)
    else:
        uniq = sorted(set(raw))
        try:
            uniq = sorted(uniq, key=float)
        except ValueError:
            pass
        classes = uniq
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[r] for r in raw], np.int64), classes


def read_ts(path: str | Path, unequal: str = "resample") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a UCR/UEA ``.ts`` file (sktime format): equal or unequal length, missing values as ``?``.

    Returns:
        ``(X [n, C, T] float32 with NaN for missing, y [n] int64, class_names)``. Unequal-length
        series are stretched to the longest one (``unequal='resample'``).
    """
    path = Path(path)
    header: dict[str, str] = {}
    declared: list[str] | None = None
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    n_dims: int | None = None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, raw_line in enumerate(f, 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise DataFormatError(f"{path}:{lineno}: expected a '@' header line or '@data'; got {line[:40]!r}")
                key, _, val = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                    if "classlabel" not in header:
                        raise DataFormatError(f"{path}:{lineno}: '@data' before '@classLabel' header")
                    continue
                header[key] = val.strip()
                if key == "classlabel":
                    parts = val.split()
                    if not parts or parts[0].lower() not in ("true", "false"):
                        raise DataFormatError(f"{path}:{lineno}: '@classLabel' must be 'true <labels...>' or 'false'")
                    if parts[0].lower() == "true":
                        declared = parts[1:]
                        if not declared:
                            raise DataFormatError(f"{path}:{lineno}: '@classLabel true' lists no labels")
                continue
            if header.get("timestamps", "false").lower() == "true":
                raise DataFormatError(f"{path}:{lineno}: timestamped .ts series are not supported")
            dims = line.split(":")
            if declared is None:
                raise DataFormatError(f"{path}:{lineno}: unlabelled .ts files carry no classes to learn")
            label = dims[-1].strip()
            dims = dims[:-1]
            if n_dims is None:
                n_dims = len(dims)
                want = header.get("dimensions")
                if want is not None and want.isdigit() and int(want) != n_dims:
                    raise DataFormatError(f"{path}:{lineno}: header says {want} dimensions; row has {n_dims}")
            if len(dims) != n_dims or n_dims == 0:
                raise DataFormatError(f"{path}:{lineno}: expected {n_dims} dimensions separated by ':'; got {len(dims)}")
            if label not in declared:
                raise DataFormatError(f"{path}:{lineno}: class label {label!r} is not among {declared}")
            rows = [[_parse_float(t, path, lineno) for t in d.split(",")] for d in dims]
            lens = {len(r) for r in rows}
            if len(lens) != 1:
                raise DataFormatError(f"{path}:{lineno}: dimensions of one series have different lengths {sorted(lens)}")
            series.append(np.array(rows, np.float64))
            labels.append(label)
    if not in_data:
        raise DataFormatError(f"{path}: no '@data' section")
    if not series:
        raise DataFormatError(f"{path}: '@data' section is empty")
    y, classes = _labels_to_index(labels, declared)
    return _stack_series(series, path, unequal), y, classes


def write_ts(path: str | Path, X: np.ndarray, y: np.ndarray, class_names: list[str], name: str = "data") -> None:
    """Write ``X [n, C, T]`` (NaN as ``?``) and labels to a ``.ts`` file; the inverse of :func:`read_ts`."""
    X = np.asarray(X)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"@problemName {name}\n@timeStamps false\n@missing {str(bool(np.isnan(X).any())).lower()}\n")
        f.write(f"@univariate {str(X.shape[1] == 1).lower()}\n@dimensions {X.shape[1]}\n@equalLength true\n")
        f.write(f"@seriesLength {X.shape[2]}\n@classLabel true {' '.join(class_names)}\n@data\n")
        for xi, yi in zip(X, y, strict=True):
            dims = [",".join("?" if np.isnan(v) else repr(float(v)) for v in ch) for ch in xi]
            f.write(":".join(dims) + f":{class_names[int(yi)]}\n")


# ----------------------------------------------------------------------------------------------
# .arff (univariate UCR and relational multivariate UEA)


def read_arff(path: str | Path, unequal: str = "resample") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a UCR (numeric attributes) or UEA (one relational attribute) ``.arff`` file."""
    path = Path(path)
    attrs: list[tuple[str, str]] = []
    declared: list[str] | None = None
    relational = False
    in_rel = False
    in_data = False
    series: list[np.ndarray] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw_line in enumerate(f, 1):
            line = raw_line.strip()
            if not line or line.startswith("%"):
                continue
            low = line.lower()
            if not in_data:
                if low.startswith("@relation") and not in_rel:
                    continue
                if low.startswith("@attribute"):
                    m = re.match(r"@attribute\s+('[^']*'|\"[^\"]*\"|\S+)\s+(.*)$", line, re.I)
                    if not m:
                        raise DataFormatError(f"{path}:{lineno}: malformed @attribute line {line[:60]!r}")
                    aname, atype = m.group(1).strip("'\""), m.group(2).strip()
                    if in_rel:
                        continue  # inner attributes of the relational block: one per time step
                    if atype.lower().startswith("relational"):
                        relational = in_rel = True
                    elif atype.startswith("{"):
                        declared = [c.strip().strip("'\"") for c in atype.strip("{}").split(",")]
                    attrs.append((aname, atype))
                    continue
                if low.startswith("@end"):
                    in_rel = False
                    continue
                if low.startswith("@data"):
                    in_data = True
                    if declared is None:
                        raise DataFormatError(f"{path}:{lineno}: no nominal class attribute before @data")
                    continue
                raise DataFormatError(f"{path}:{lineno}: unexpected header line {line[:60]!r}")
            if relational:
                m = re.match(r"^(['\"])(.*)\1\s*,\s*(.+)$", line)
                if not m:
                    raise DataFormatError(f"{path}:{lineno}: expected 'dim1\\ndim2...',label for a relational row")
                body = m.group(2).replace("\\n", "\n")
                rows = [[_parse_float(t, path, lineno) for t in r.split(",")] for r in body.split("\n") if r.strip()]
                label = m.group(3).strip().strip("'\"")
            else:
                toks = line.split(",")
                if len(toks) != len(attrs):
                    raise DataFormatError(f"{path}:{lineno}: expected {len(attrs)} values; got {len(toks)}")
                rows = [[_parse_float(t, path, lineno) for t in toks[:-1]]]
                label = toks[-1].strip().strip("'\"")
            if len({len(r) for r in rows}) != 1:
                raise DataFormatError(f"{path}:{lineno}: dimensions of one series have different lengths")
            if label not in declared:  # type: ignore[operator]
                raise DataFormatError(f"{path}:{lineno}: class label {label!r} is not among {declared}")
            series.append(np.array(rows, np.float64))
            labels.append(label)
    if not series:
        raise DataFormatError(f"{path}: no data rows")
    y, classes = _labels_to_index(labels, declared)
    return _stack_series(series, path, unequal), y, classes


def write_arff(path: str | Path, X: np.ndarray, y: np.ndarray, class_names: list[str], name: str = "data") -> None:
    """Write a UEA-style relational ``.arff`` (multivariate) file; the inverse of :func:`read_arff`."""
    X = np.asarray(X)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"@relation {name}\n@attribute series relational\n")
        for t in range(X.shape[2]):
            f.write(f"  @attribute t{t} numeric\n")
        f.write("@end series\n")
        f.write("@attribute target {" + ",".join(class_names) + "}\n@data\n")
        for xi, yi in zip(X, y, strict=True):
            body = "\\n".join(",".join("?" if np.isnan(v) else repr(float(v)) for v in ch) for ch in xi)
            f.write(f"'{body}',{class_names[int(yi)]}\n")


# ----------------------------------------------------------------------------------------------
# UCR .tsv (univariate: label, then values; NaN pads unequal lengths)


def read_tsv(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a UCR 2018 ``.tsv`` file (one series per line: label then values, tab-separated)."""
    path = Path(path)
    rows: list[list[float]] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw_line in enumerate(f, 1):
            line = raw_line.rstrip("\n\r")
            if not line.strip():
                continue
            toks = line.split("\t")
            if len(toks) < 2:
                raise DataFormatError(f"{path}:{lineno}: expected a label and values separated by tabs")
            labels.append(toks[0].strip())
            rows.append([_parse_float(t, path, lineno) for t in toks[1:]])
    if not rows:
        raise DataFormatError(f"{path}: no data rows")
    length = max(len(r) for r in rows)
    X = np.full((len(rows), 1, length), np.nan, np.float32)
    for i, r in enumerate(rows):
        X[i, 0, : len(r)] = r
    y, classes = _labels_to_index(labels, None)
    return X, y, classes


def write_tsv(path: str | Path, X: np.ndarray, y: np.ndarray, class_names: list[str]) -> None:
    """Write univariate ``X [n, 1, T]`` to a UCR ``.tsv`` file."""
    X = np.asarray(X)
    if X.shape[1] != 1:
        raise ValueError(f"UCR .tsv holds univariate series; got {X.shape[1]} channels")
    with open(path, "w", encoding="utf-8") as f:
        for xi, yi in zip(X, y, strict=True):
            f.write(class_names[int(yi)] + "\t" + "\t".join("NaN" if np.isnan(v) else repr(float(v)) for v in xi[0]) + "\n")


_UCR_READERS = {".ts": read_ts, ".arff": read_arff, ".tsv": read_tsv}


def _ucr_pair(spec_path: str) -> tuple[Path, Path]:
    p = Path(spec_path)
    if p.is_file():
        m = re.match(r"(.*)_(TRAIN|TEST)(\.\w+)$", p.name, re.I)
        if not m:
            raise DataFormatError(f"{p}: UCR/UEA file names end in _TRAIN.<ext> or _TEST.<ext>")
        stem, ext = m.group(1), m.group(3)
        return p.with_name(f"{stem}_TRAIN{ext}"), p.with_name(f"{stem}_TEST{ext}")
    for ext in (".ts", ".arff", ".tsv"):
        tr, te = Path(f"{spec_path}_TRAIN{ext}"), Path(f"{spec_path}_TEST{ext}")
        if tr.exists():
            return tr, te
        d = Path(spec_path)
        tr, te = d / f"{d.name}_TRAIN{ext}", d / f"{d.name}_TEST{ext}"
        if tr.exists():
            return tr, te
    raise FileNotFoundError(f"ucr:{spec_path}: found no NAME_TRAIN.ts/.arff/.tsv there")


def load_ucr(spec_path: str) -> WindowDataset:
    """Load a UCR/UEA train/test pair (``.ts``, ``.arff`` or ``.tsv``)."""
    tr, te = _ucr_pair(spec_path)
    if not te.exists():
        raise FileNotFoundError(f"{te}: the _TEST partner of {tr.name} is missing")
    reader = _UCR_READERS.get(tr.suffix.lower())
    if reader is None:
        raise DataFormatError(f"{tr}: unknown extension; expected one of {sorted(_UCR_READERS)}")
    X_train, y_train, c_train = reader(tr)
    X_test, y_test, c_test = reader(te)
    classes = list(c_train)
    for c in c_test:
        if c not in classes:
            classes.append(c)
    remap_tr = np.array([classes.index(c) for c in c_train])
    remap_te = np.array([classes.index(c) for c in c_test])
    y_train, y_test = remap_tr[y_train], remap_te[y_test]
    if X_train.shape[1:] != X_test.shape[1:]:
        if X_train.shape[1] != X_test.shape[1]:
            raise DataFormatError(f"{tr} has {X_train.shape[1]} channels but {te} has {X_test.shape[1]}")
        length = max(X_train.shape[2], X_test.shape[2])
        X_train, X_test = resample_to_length(X_train, length), resample_to_length(X_test, length)
    channels = [f"dim_{i}" for i in range(X_train.shape[1])]
    X_train = fill_missing(X_train, str(tr), channels)
    X_test = fill_missing(X_test, str(te), channels)
    units = ["unknown"] * len(channels)
    return WindowDataset(
        X_train, y_train.astype(np.int64), X_test, y_test.astype(np.int64), classes, channels, units, None, {}, tr.stem[:-6]
    )


# ----------------------------------------------------------------------------------------------
# UCI HAR folder

HAR_SIGNALS = [
    "body_acc_x", "body_acc_y", "body_acc_z",
    "body_gyro_x", "body_gyro_y", "body_gyro_z",
    "total_acc_x", "total_acc_y", "total_acc_z",
]  # fmt: skip


def _loadtxt(path: Path, dtype: Any = np.float32, ndmin: int = 2) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing from the UCI HAR folder layout")
    rows = []
    width = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            toks = line.split()
            if not toks:
                continue
            if width is None:
                width = len(toks)
            elif len(toks) != width:
                raise DataFormatError(f"{path}:{lineno}: expected {width} values; got {len(toks)}")
            try:
                rows.append([float(t) for t in toks])
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: non-numeric value in {line.strip()[:60]!r}") from None
    a = np.array(rows, dtype=np.float64)
    return a.astype(dtype) if ndmin == 2 else a.reshape(-1).astype(dtype)


def load_har(directory: str | Path) -> WindowDataset:
    """Load the UCI HAR folder layout (``train/Inertial Signals/*_train.txt``, ``y_train.txt`` ...)."""
    root = Path(directory)
    if not (root / "train").is_dir() and (root / "UCI HAR Dataset" / "train").is_dir():
        root = root / "UCI HAR Dataset"
    splits = {}
    for split in ("train", "test"):
        d = root / split
        X = np.stack([_loadtxt(d / "Inertial Signals" / f"{s}_{split}.txt") for s in HAR_SIGNALS], axis=1)
        y = _loadtxt(d / f"y_{split}.txt", np.int64, ndmin=1) - 1
        subj = _loadtxt(d / f"subject_{split}.txt", np.int64, ndmin=1)
        if not (len(X) == len(y) == len(subj)):
            raise DataFormatError(f"{d}: {len(X)} windows, {len(y)} labels and {len(subj)} subjects do not agree")
        splits[split] = (fill_missing(X, str(d / "Inertial Signals"), HAR_SIGNALS), y, subj)
    labels_file = root / "activity_labels.txt"
    if labels_file.exists():
        classes = [ln.split(maxsplit=1)[1].strip() for ln in labels_file.read_text().splitlines() if ln.strip()]
    else:
        classes = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
    units = [_unit_from_channel(c) for c in HAR_SIGNALS]
    (Xtr, ytr, str_), (Xte, yte, ste) = splits["train"], splits["test"]
    return WindowDataset(Xtr, ytr, Xte, yte, classes, list(HAR_SIGNALS), units, 50.0, {"subject": (str_, ste)}, "uci_har")


# ----------------------------------------------------------------------------------------------
# CSV recordings

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def read_csv_recording(path: str | Path, rate_hz: float | None = None) -> StreamDataset:
    """Read a CSV recording: header required; first column a timestamp, then one column per channel.

    The timestamp unit comes from the column name's suffix (``time_s``, ``timestamp_ms``, ``t_us``);
    a bare ``timestamp`` is milliseconds, as in Edge Impulse's CSV format. An optional ``label`` column
    (integers or names) gives per-sample classes. Empty cells and ``NaN`` are missing values.
    ``,``, ``;`` and TAB delimiters are accepted. The rate is estimated from the timestamps (median
    interval) unless ``rate_hz`` is given.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if not text.strip():
        raise DataFormatError(f"{path}: empty file; expected a header line then rows")
    first = text.splitlines()[0]
    delim = max([",", "\t", ";"], key=first.count)
    rows = list(csv.reader(text.splitlines(), delimiter=delim))
    header = [h.strip() for h in rows[0]]
    if len(header) < 2:
        raise DataFormatError(f"{path}:1: expected a header with a timestamp column and channel columns")
    if all(re.fullmatch(r"[-+]?[\d.eE+-]+", h) for h in header if h):
        raise DataFormatError(f"{path}:1: the first line must be a header (column names), got numbers")
    tname = header[0].lower()
    m = re.search(r"[_\(\[ ](s|sec|ms|us|ns)[\)\]]?$", tname)
    if m:
        t_scale = _TIME_UNITS[m.group(1)]
    elif tname in ("timestamp", "ts"):
        t_scale = 1e-3
    elif tname in ("t", "time", "seconds"):
        t_scale = 1.0
    else:
        raise DataFormatError(
            f"{path}:1: first column {header[0]!r} must be a timestamp (timestamp, time_s, timestamp_ms, t_us ...)"
        )
    label_col = next((i for i, h in enumerate(header) if h.lower() == "label"), None)
    ch_cols = [i for i in range(1, len(header)) if i != label_col]
    channels = [header[i] for i in ch_cols]
    times: list[float] = []
    values: list[list[float]] = []
    raw_labels: list[str] = []
    for lineno, row in enumerate(rows[1:], 2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{path}:{lineno}: expected {len(header)} columns like the header; got {len(row)}")
        ts = _parse_float(row[0], path, lineno)
        if np.isnan(ts):
            raise DataFormatError(f"{path}:{lineno}: missing timestamp")
        times.append(ts * t_scale)
        values.append([_parse_float(row[i], path, lineno) for i in ch_cols])
        if label_col is not None:
            raw_labels.append(row[label_col].strip())
    if not values:
        raise DataFormatError(f"{path}: header but no data rows")
    t = np.array(times, np.float64)
    dt = np.diff(t)
    if np.any(dt <= 0):
        bad = int(np.flatnonzero(dt <= 0)[0]) + 3
        raise DataFormatError(f"{path}:{bad}: timestamps must increase strictly")
    if rate_hz is None:
        rate_hz = float(1.0 / np.median(dt)) if len(dt) else None
    signal = np.array(values, np.float32).T
    signal = fill_missing(signal, str(path), channels)
    classes: list[str] = []
    sample_labels = None
    if label_col is not None:
        labs = [lab if lab else "-1" for lab in raw_labels]
        if all(re.fullmatch(r"-?\d+", lab) for lab in labs):
            sample_labels = np.array([int(lab) for lab in labs], np.int64)
        else:
            classes = sorted({lab for lab in labs if lab != "-1"})
            sample_labels = np.array([classes.index(lab) if lab != "-1" else -1 for lab in labs], np.int64)
    units = [_unit_from_channel(c) for c in channels]
    return StreamDataset(
        signal, np.array([0, signal.shape[1]]), channels, units, classes, rate_hz, sample_labels,
        timestamps=t - t[0], name=path.name,
    )  # fmt: skip


def write_csv_recording(path: str | Path, signal: np.ndarray, rate_hz: float, channel_names: list[str]) -> None:
    """Write ``signal [C, N]`` as a CSV recording with a ``timestamp_ms`` column."""
    t = np.arange(signal.shape[1]) * 1000.0 / rate_hz
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp_ms", *channel_names])
        for i in range(signal.shape[1]):
            w.writerow([repr(float(t[i]))] + ["" if np.isnan(v) else repr(float(v)) for v in signal[:, i]])


# ----------------------------------------------------------------------------------------------
# spec strings


def _parse_kv(s: str) -> dict[str, str]:
    out = {}
    for part in filter(None, s.split(",")):
        k, eq, v = part.partition("=")
        if not eq:
            raise ValueError(f"expected key=value in dataset options, got {part!r}")
        out[k.strip()] = v.strip()
    return out


def resolve_path(p: str) -> Path:
    """A bare file name that does not exist here is looked up in the shared data folder."""
    path = Path(p).expanduser()
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1:
        alt = default_data_dir() / path
        if alt.exists():
            return alt
    return path


def _restore_scales(ds: WindowDataset, value: str, spec: str) -> WindowDataset:
    """``quantum=Q``: the relative scale of the channels back from the sensor-step lattice."""
    from fractions import Fraction

    from edgessl.quantum import QuantumError, restore_axis_scales

    try:
        q = [float(Fraction(v.strip())) for v in value.split(":")]
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{spec!r}: quantum= takes the unit per sensor count, one number or one per channel "
                         f"joined by ':' (e.g. 1/26:1/26:1/25); got {value!r}") from None  # fmt: skip
    if len(q) == 1:
        q *= ds.n_channels
    try:
        X_train, _ = restore_axis_scales(ds.X_train, q, name=f"{spec} (train)")
        X_test, _ = restore_axis_scales(ds.X_test, q, name=f"{spec} (test)")
    except QuantumError as e:
        raise DataFormatError(str(e)) from e
    return dataclasses.replace(ds, X_train=X_train, X_test=X_test, name=f"{ds.name} (axis scales restored)")


def load(spec: str) -> WindowDataset | StreamDataset:
    """Load a dataset from a spec string (see the module docstring)."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic":
        from edgessl.synthetic import SyntheticConfig, make_dataset

        opts = _parse_kv(arg)
        return make_dataset(SyntheticConfig.from_options(opts))
    if not arg:
        raise ValueError(f"dataset spec {spec!r} needs a path: npz:PATH, ucr:PATH, har:DIR, csv:PATH or synthetic")
    try:
        if kind == "npz":
            path, _, opt = arg.partition("?")
            ds = read_npz(resolve_path(path))
            opts = _parse_kv(opt)
            if unknown := set(opts) - {"split", "like", "outside", "length", "quantum"}:
                raise ValueError(f"unknown npz option(s) {sorted(unknown)} in {spec!r}; expected split=NAME, "
                                 "like=FILE or outside=FILE, and length=N; or quantum=Q")  # fmt: skip
            given = [k for k in ("split", "like", "outside") if k in opts]
            if len(given) > 1:
                raise ValueError(f"{spec!r}: give one of split=, like= and outside=, not both {given}")
            if "quantum" in opts:
                if given or not isinstance(ds, WindowDataset):
                    raise ValueError(f"{spec!r}: quantum= applies to a windowed file of per-channel z-normalised "
                                     "rows, alone; not to a stream layout or with split=, like= or outside=")  # fmt: skip
                return _restore_scales(ds, opts["quantum"], spec)
            if not given:
                if "length" in opts:
                    raise ValueError(f"{spec!r}: length= applies with split=, like= or outside= (labelled "
                                     "recordings to windows)")  # fmt: skip
                return ds
            if not isinstance(ds, StreamDataset):
                raise DataFormatError(f"{spec}: {given[0]}= turns labelled recordings of a stream layout into "
                                      "windows; this file is already windowed")  # fmt: skip
            length = None
            if "length" in opts:
                if not opts["length"].isdigit():
                    raise ValueError(f"{spec!r}: length= must be a whole number of samples; got {opts['length']!r}")
                length = int(opts["length"])
            if "like" in opts or "outside" in opts:
                key = given[0]
                like = read_npz(resolve_path(opts[key]))
                if not isinstance(like, WindowDataset):
                    raise DataFormatError(f"{spec}: {key}= names a windowed file whose rows to match; "
                                          f"{opts[key]} is a stream layout")  # fmt: skip
                return (windows_like if key == "like" else windows_outside)(ds, like, length)
            return ds.split_windows(opts["split"], length)
        if kind == "ucr":
            path, _, opt = arg.partition("?")
            opts = _parse_kv(opt)
            if unknown := set(opts) - {"quantum"}:
                raise ValueError(f"unknown ucr option(s) {sorted(unknown)} in {spec!r}; expected quantum=Q")
            ds = load_ucr(path)
            return _restore_scales(ds, opts["quantum"], spec) if "quantum" in opts else ds
        if kind == "har":
            return load_har(arg)
        if kind == "csv":
            path, _, opt = arg.partition("?")
            rate = _parse_kv(opt).get("rate")
            return read_csv_recording(path, float(rate) if rate else None)
    except PreprocessError as e:
        raise DataFormatError(str(e)) from e
    raise ValueError(f"unknown dataset kind {kind!r} in {spec!r}; expected npz, ucr, har, csv or synthetic")


def load_windows(spec: str) -> WindowDataset:
    """Load a windowed dataset; a stream layout is an error that says how to get windows from it."""
    ds = load(spec)
    if isinstance(ds, StreamDataset):
        raise DataFormatError(
            f"{spec}: this is a continuous-stream dataset ({ds.summary()}); cut windows from it with "
            "StreamDataset.to_windows() or use a windowed source"
        )
    return ds


def load_stream(spec: str) -> StreamDataset:
    """Load a continuous-stream dataset."""
    ds = load(spec)
    if not isinstance(ds, StreamDataset):
        raise DataFormatError(f"{spec}: expected a stream layout (signal + offsets); this is a windowed dataset")
    return ds
