"""The uWave archive rows of the benchmarks: what the UCR/UEA archives did to the raw uWave templates, undone.

Benchmark code, not a loader of the product: each function here exists for one archive. Importing this
module registers the ``uwave:`` dataset scheme, so every spec below works wherever a spec string is taken
(``DataConfig.spec``, ``FinetuneConfig.unlabelled``, ``edgessl.datasets.load``):

=========================================  =================================================================
``uwave:FILE?quantum=Q``                    windowed rows whose channels were z-normalised one by one, made
                                            from integer sensor counts (``FILE`` an ``.npz`` window layout or
                                            a UCR/UEA file or prefix): each window's relative axis scales read
                                            back from the sensor-step lattice (below); ``Q`` the unit per
                                            count, one value or one per channel joined by ``:``, e.g.
                                            ``uwave:uwave_gesture_ucr.npz?quantum=1/26:1/26:1/25``
``uwave:RAW?like=FILE[,length=N]``          the rows of the windowed ``FILE`` (its split, order, labels)
                                            rebuilt from the recordings of the stream layout ``RAW`` they
                                            match by label and shared ids, e.g.
                                            ``uwave:uwave_raw.npz?like=uwave_gesture_uea.npz,length=315``
``uwave:RAW?outside=FILE[,length=N]``       the labelled recordings *none* of ``FILE``'s rows was made from
                                            (train; the matched ones are the test split): an unlabelled pool
                                            that holds no gesture of ``FILE``
=========================================  =================================================================

Axis scales from the lattice (``quantum=``)
-------------------------------------------
Give back the relative scale of the axes that a per-channel z-normalisation took away.

The UCR and UEA archives z-normalise every channel of every series on its own: an axis that barely moved
comes out as large as the axis that carried the gesture, and the ratio between the axes (the direction of
the movement) is gone. It is still in the numbers, through the sensor's quantisation. A digital sensor
reports whole counts, so a raw channel moves in steps of ``q`` (its unit per count, e.g. 1/26 g). Linear
interpolation to a common length keeps each stretch between two raw samples a straight line, so inside such
a stretch the first differences of the stretched series are ``k · q · f`` for a whole number ``k`` of counts
and a stretch factor ``f`` that every channel of the series shares. Dividing by the channel's standard
deviation ``σ`` turns that into ``k · (q f / σ)``: the first differences of each z-normalised channel lie on
a lattice whose step ``w = q f / σ`` we can read off, and ``q / w = σ / f`` is the channel's scale up to the
factor ``f`` the channels share. Multiplying each channel by ``q / w`` and dividing the window by one common
scale gives the window standardised with one scale, as :func:`edgessl.preprocess.standardize` with
``per_channel=False`` would have made it from the raw signal — the relative amplitude of the axes is back.

:func:`lattice_steps` finds ``w`` per channel: the differences are grouped into values that repeat (the
interior of a raw stretch repeats its difference once per stretched sample; the corners, where the
interpolation cuts across a raw sample, give isolated values), the frequent ones are kept, and ``w`` is the
step of which they are whole multiples. It fails on series that never came from integer counts (no
difference repeats); :func:`restore_axis_scales` says so instead of inventing scales.

On the UCR training rows of UWaveGestureLibrary, checked against the raw uWave templates they were made
from (inputs only, no labels), 98.9 % of the estimated ratios between two axes are within 5 % of the true
ratio, and 0.7 % are off by more than 35 % (the uWave sensor's axes are in steps of 1/26, 1/26 and 1/25 g);
98.7 % on the test rows; 92 % on gestures of the embedded generator put through the same procedure. The
settings were chosen on the training rows and the generator's gestures.
"""

from __future__ import annotations

import dataclasses
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from edgessl.datasets import (
    DataFormatError,
    StreamDataset,
    WindowDataset,
    load_ucr,
    parse_options,
    read_npz,
    register_source,
    resolve_path,
)
from edgessl.preprocess import resample_to_length, standardize

__all__ = [
    "QuantumError",
    "lattice_steps",
    "load_uwave",
    "restore_axis_scales",
    "uwave_ucr_windows",
    "windows_like",
    "windows_outside",
]


class QuantumError(ValueError):
    """The windows carry no sensor-step lattice, or the quantum does not fit them."""


def _explained(w: float, values: np.ndarray, counts: np.ndarray, tol: float) -> float:
    """How many differences lie on whole multiples of ``w``, beyond what chance would put there."""
    m = values / w
    k = np.round(m)
    hit = (k >= 1) & (np.abs(m - k) < tol * np.maximum(k, 1))
    return float((counts * hit).sum() - (counts * np.minimum(1.0, 2 * tol * np.maximum(m, 1))).sum())


def _step(d: np.ndarray, rtol: float, atol: float, min_repeats: int, min_share: float, tol: float) -> float:
    """The lattice step of one channel's first differences ``d`` (NaN: none found; 0: a constant channel)."""
    a = np.abs(d)
    top = float(a.max(initial=0.0))
    if top <= 10 * atol:
        return 0.0  # the channel never moved by more than rounding: nothing to scale
    v = np.sort(a[a > max(1e-5 * top, 10 * atol)])
    # group the sorted values into runs of (nearly) equal differences
    new = np.empty(len(v), bool)
    new[0] = True
    new[1:] = np.diff(v) > rtol * v[1:] + atol
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(v)))
    values = np.add.reduceat(v, starts) / counts
    if counts.max() < min_repeats:
        return float("nan")  # nothing repeats often enough: not a stretched series of whole counts
    kept = values[counts >= max(3, min_share * counts.max())]
    # two readings: the largest step of which every frequent value is a whole multiple (fails when a
    # corner value repeats), and the most repeated value or its half, third or quarter where that is
    # frequent too (fails when one count of movement is rare); the one that explains more differences wins
    common = float(kept.min())
    for w in np.sort(np.concatenate([kept / k for k in (1, 2, 3)]))[::-1]:
        m = kept / w
        k = np.round(m)
        if np.all((k >= 1) & (np.abs(m - k) < tol * k)):
            common = float(w)
            break
    mode = most = float(values[np.argmax(counts)])
    for k in (2, 3, 4):
        if np.any(np.abs(kept - most / k) < tol * most / k):
            mode = most / k
    return common if _explained(common, values, counts, tol) >= _explained(mode, values, counts, tol) else mode


def lattice_steps(x: np.ndarray, *, rtol: float = 1e-3, atol: float = 3e-6, min_repeats: int = 6,
                  min_share: float = 0.25, tol: float = 0.02) -> np.ndarray:  # fmt: skip
    """The step of each channel's first-difference lattice.

    Args:
        x: ``[..., C, T]`` windows.
        rtol, atol: two differences closer than ``rtol · value + atol`` are the same value (float32 rows,
            or text with 7 significant digits, are far inside the defaults; 5 digits, as the UEA files,
            too).
        min_repeats: the most repeated difference must repeat this often, or the channel has no lattice
            (uWave rows: at least 15 in 99 % of the channels; a random walk of 315 samples: 3, at most 8).
        min_share: a value counts when it repeats at least 3 times and at least this share of the most
            repeated value's count; rarer values are corners of the interpolation.
        tol: how far from a whole multiple of the step a kept value may lie, relative to the multiple.

    Returns:
        ``[..., C]`` float64: the step, 0 for a channel that does not move, NaN where no difference repeats
        ``min_repeats`` times.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[-1] < 3:
        raise QuantumError(f"lattice_steps needs windows [..., channels, time] of at least 3 samples; got {x.shape}")
    d = np.diff(x, axis=-1).reshape(-1, x.shape[-1] - 1)
    out = np.array([_step(row, rtol, atol, min_repeats, min_share, tol) for row in d])
    return out.reshape(x.shape[:-1])


def restore_axis_scales(X: np.ndarray, quantum: np.ndarray | list[float], *, name: str = "windows",
                        max_failed: float = 0.5) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per-channel z-normalised windows back to one scale per window (see the module docstring).

    Args:
        X: ``[n, C, T]`` windows, each channel z-normalised on its own, made from integer sensor counts by
            linear interpolation.
        quantum: ``[C]`` the sensor's unit per count for each channel (only their ratios matter).
        name: what the windows are, for messages.
        max_failed: the share of windows without a lattice (in some channel) that is tolerated; those keep
            their per-channel scales, and a warning counts them (an axis that hardly moved may show too few
            steps: 2 of the 4478 uWave rows). More is an error: these windows were not made from integer
            counts, or were rounded too coarsely.

    Returns:
        ``(windows, scales)``: float32 ``[n, C, T]`` with each channel multiplied by its relative scale,
        and the scales ``[n, C]`` (root mean square 1 over the channels of a window).
    """
    X = np.asarray(X)
    q = np.asarray(quantum, dtype=np.float64)
    if X.ndim != 3:
        raise QuantumError(f"{name}: expected windows [n, channels, time]; got shape {X.shape}")
    if q.shape != (X.shape[1],) or not np.all(np.isfinite(q) & (q > 0)):
        raise QuantumError(f"{name}: quantum needs one positive step per channel ({X.shape[1]}); got {q.tolist()}")
    w = lattice_steps(X)
    failed = np.isnan(w).any(axis=1)
    if len(X) and failed.mean() > max_failed:
        raise QuantumError(
            f"{name}: {int(failed.sum())} of {len(X)} windows show no sensor-step lattice (no first difference "
            "repeats); quantum= restores the axis scales of per-channel z-normalised rows that were made from "
            "integer sensor counts by linear interpolation, and these rows were not"
        )
    if failed.any():
        warnings.warn(f"{name}: {int(failed.sum())} of {len(X)} windows show no sensor-step lattice; they keep "
                      "their per-channel scales", stacklevel=2)  # fmt: skip
    s = np.where(w > 0, q / np.where(w > 0, w, 1.0), 0.0)  # 0 for a channel that never moved
    s[failed] = 1.0
    rms = np.sqrt((s**2).mean(axis=1, keepdims=True))
    s = np.where(rms > 0, s / np.where(rms > 0, rms, 1.0), 1.0)
    return (X * s[:, :, None]).astype(np.float32), s


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
    E.g. ``uwave:uwave_raw.npz?outside=uwave_gesture_uea.npz``: the uWave library without any gesture of the
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
    lengths = np.diff(raw.offsets)
    subj, day = raw.recording_groups["subject"], raw.recording_groups["day"]
    out = np.full((raw.n_recordings, len(raw.channel_names), length), np.nan, np.float32)
    for s, d in set(zip(subj.tolist(), day.tolist(), strict=True)):
        ks = np.flatnonzero((subj == s) & (day == d))
        longest = int(lengths[ks].max())
        for k in ks.tolist():
            if lengths[k] >= 2:
                out[k] = resample_to_length(resample_to_length(raw.recording(k), longest), length)
    ok = lengths >= 2
    out[ok] = standardize(out[ok], ddof=1)
    return out


def restore_scales(ds: WindowDataset, value: str, spec: str) -> WindowDataset:
    """``quantum=Q``: the relative scale of the channels back from the sensor-step lattice."""
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


def load_uwave(arg: str) -> WindowDataset | StreamDataset:
    """``uwave:PATH?quantum=Q``, ``uwave:RAW?like=FILE[,length=N]`` or ``uwave:RAW?outside=FILE[,length=N]``."""
    spec = f"uwave:{arg}"
    path, _, opt = arg.partition("?")
    if not path:
        raise ValueError(f"{spec!r} needs a file: uwave:FILE?quantum=Q, uwave:RAW?like=FILE or uwave:RAW?outside=FILE")
    opts = parse_options(opt)
    if unknown := set(opts) - {"like", "outside", "length", "quantum"}:
        raise ValueError(f"unknown uwave option(s) {sorted(unknown)} in {spec!r}; expected like=FILE or "
                         "outside=FILE, and length=N; or quantum=Q")  # fmt: skip
    given = [k for k in ("like", "outside", "quantum") if k in opts]
    if len(given) != 1:
        raise ValueError(f"{spec!r}: give one of like=, outside= and quantum=; got {given or 'none'}")
    key = given[0]
    npz = Path(path).suffix.lower() == ".npz"
    ds = read_npz(resolve_path(path)) if npz else load_ucr(path)
    if key == "quantum":
        if "length" in opts or not isinstance(ds, WindowDataset):
            raise ValueError(f"{spec!r}: quantum= applies to a windowed file of per-channel z-normalised rows, "
                             "alone; not to a stream layout or with length=")  # fmt: skip
        return restore_scales(ds, opts["quantum"], spec)
    if not isinstance(ds, StreamDataset):
        raise DataFormatError(f"{spec}: {key}= turns labelled recordings of a stream layout into windows; this "
                              "file is already windowed")  # fmt: skip
    length = None
    if "length" in opts:
        if not opts["length"].isdigit():
            raise ValueError(f"{spec!r}: length= must be a whole number of samples; got {opts['length']!r}")
        length = int(opts["length"])
    like = read_npz(resolve_path(opts[key]))
    if not isinstance(like, WindowDataset):
        raise DataFormatError(f"{spec}: {key}= names a windowed file whose rows to match; {opts[key]} is a stream "
                              "layout")  # fmt: skip
    return (windows_like if key == "like" else windows_outside)(ds, like, length)


register_source("uwave", load_uwave)
