"""``dir:PATH``: a data set folder of recording sessions (``edgessl record`` writes them; ``docs/data.md``).

Every ``*.csv`` under the folder (subfolders too, in name order) is one session, read with
:func:`edgessl.datasets.session.read_session` (its ``.json`` sidecar, where there is one, gives user, rate,
units and labelled segments). An optional ``dataset.json`` gives the default input mode and window length.
All sessions must have the same channels, units and rate (within 1 %); sessions recorded at different
rates are refused, naming both files, rather than resampled behind the user's back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.datasets.labelled import INPUT_MODES, attach_window_options
from edgessl.datasets.registry import need_path, parse_options
from edgessl.datasets.session import SESSION_FORMAT, read_session, sensor_units
from edgessl.datasets.types import DataFormatError, SpecOptionError, StreamDataset, unit_problem

__all__ = ["DATASET_FILE", "load_dir", "read_dataset_json", "sliding_spec"]

DATASET_FILE = "dataset.json"
DATASET_FORMAT = "edgessl-dataset"
RATE_TOLERANCE = 0.01
EI_SPLIT = ("training", "testing")  # an Edge Impulse export's two folders: split=auto keeps its split


def read_dataset_json(path: Path) -> dict[str, Any]:
    """The folder's ``dataset.json`` (``{}`` if absent), checked."""
    if not path.exists():
        return {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid JSON ({e}); expected {{\"format\": \"{DATASET_FORMAT}\", "
                              "\"version\": 1, \"input_mode\": ..., \"length\": ...}") from None  # fmt: skip
    if not isinstance(d, dict) or d.get("format") != DATASET_FORMAT or d.get("version") != 1:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise DataFormatError(f"{path}: expected an object with \"format\": \"{DATASET_FORMAT}\" and \"version\": 1; "
                              f"got format {got!r}")  # fmt: skip
    if d.get("input_mode") not in (None, *INPUT_MODES):
        raise DataFormatError(f"{path}: input_mode must be one of {', '.join(INPUT_MODES)}; got {d['input_mode']!r}")
    n = d.get("length")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 2):
        raise DataFormatError(f"{path}: length must be a whole number of samples >= 2; got {n!r}")
    return d


def _session_files(folder: Path) -> list[Path]:
    # by folder then stem, so that "x-2.csv" (a second session started in the same second) follows "x.csv"
    csvs = sorted((p for p in folder.rglob("*.csv") if p.is_file()), key=lambda p: (str(p.parent), p.stem))
    have = {p.with_suffix(".json") for p in csvs}
    for side in sorted(folder.rglob("*.json")):
        if side.name == DATASET_FILE or side in have:
            continue
        try:
            d = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # not ours
        if isinstance(d, dict) and d.get("format") == SESSION_FORMAT:
            raise DataFormatError(f"{side}: a session sidecar without its samples; expected {side.with_suffix('.csv')}")
    return csvs


def _has_rows(path: Path) -> bool:
    """Whether a CSV has a line besides its header, blank lines and ``#`` comments."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = (ln.strip() for ln in f)
        content = (ln for ln in lines if ln and not ln.startswith("#"))
        return next(content, None) is not None and next(content, None) is not None


def load_dir(arg: str) -> StreamDataset:
    """``dir:PATH[?split=auto|user|session|take,length=N,input=segment|sliding,test=0.25]``: a session folder.

    Returns:
        One recording per session; ``recording_groups`` ``session`` and ``user`` (names in
        ``extra["session_names"]``, ``extra["user_names"]``); ``sample_labels`` from the segments;
        ``class_names`` the sorted union of labels; ``extra["segments"]`` ``[S, 4]`` rows
        ``(start, end, label, flags_bit)`` in global sample indices.
    """
    path, _, opt = need_path("dir", arg).partition("?")
    spec = f"dir:{arg}"
    opts = parse_options(opt)
    if unknown := set(opts) - {"split", "length", "input", "test", "acc", "gyro", "label"}:
        raise SpecOptionError(f"unknown dir option(s) {sorted(unknown)} in {spec!r}; expected "
                              "split=auto|user|session|take|folder, length=N, input=segment|sliding, test=FRACTION, "
                              "acc=g|m/s2|mg, gyro=rad/s|deg/s, label=COLUMN")  # fmt: skip
    acc, gyro = sensor_units(opts, spec)
    label_column = opts.pop("label", "label")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = ("a file, not a folder" + (f"; a single recording reads as csv:{path}" if folder.suffix == ".csv" else "")
                if folder.exists() else "no such folder")  # fmt: skip
        raise FileNotFoundError(f"{folder}: {what} (expected a data set folder of recorded sessions)")
    base = read_dataset_json(folder / DATASET_FILE)
    files = _session_files(folder)
    if not files:
        raise DataFormatError(f"{folder}: no recording sessions (*.csv) in this folder; record some with "
                              "edgessl record --out FOLDER")  # fmt: skip
    # a session that ended before its first sample (header only) holds nothing: skipped, but named in data info
    empty = [f for f in files if not _has_rows(f)]
    files = [f for f in files if f not in empty]
    if not files:
        raise DataFormatError(f"{folder}: its {len(empty)} session(s) hold no samples (header only)")
    sessions = [read_session(f, acc=acc, gyro=gyro, label_column=label_column) for f in files]
    for (ds, _), f in zip(sessions, files, strict=True):  # one session in mg among sessions in g: named, not averaged
        if problem := unit_problem(ds, spec):
            raise DataFormatError(f"{f}: {problem}")
    first, first_path = sessions[0][0], files[0]
    for (ds, _), f in zip(sessions[1:], files[1:], strict=True):
        if ds.channel_names != first.channel_names or ds.channel_units != first.channel_units:
            raise DataFormatError(f"{f}: channels {ds.channel_names} ({ds.channel_units}) differ from "
                                  f"{first_path}'s {first.channel_names} ({first.channel_units}); expected the same "
                                  "in every session of a folder")  # fmt: skip
        if ds.rate_hz is None or first.rate_hz is None or abs(ds.rate_hz - first.rate_hz) > RATE_TOLERANCE * first.rate_hz:
            raise DataFormatError(f"{f}: recorded at {ds.rate_hz} Hz but {first_path} at {first.rate_hz} Hz; expected "
                                  "one rate per data set folder (within 1 %): keep sessions of one rate together "
                                  "(a text board's: `record --rate HZ` stores the rate you give)")
    classes = sorted({c for ds, _ in sessions for c in ds.class_names})
    # a CSV without a sidecar is named by its path in the folder (anna/day1): two people's day1.csv differ
    session_names = [f.relative_to(folder).with_suffix("").as_posix() if not meta else str(ds.extra["session_names"][0])
                     for (ds, meta), f in zip(sessions, files, strict=True)]  # fmt: skip
    dup = sorted({s for s in session_names if session_names.count(s) > 1})
    if dup:
        raise DataFormatError(f"{folder}: session name(s) {dup} appear more than once; expected unique sessions")
    # a CSV without a sidecar belongs to the person its subfolder names (mydata/anna/*.csv), else to "unknown"
    # Edge Impulse's export: training/ and testing/ (its own split; a person's subfolder, if any, below them)
    rel = [f.relative_to(folder).parts for f in files]
    top = {r[0].lower() for r in rel if len(r) > 1}
    ei = top == set(EI_SPLIT) and all(len(r) > 1 for r in rel)
    depth = 1 if ei else 0
    user_of = [rel_f[depth] if not meta and len(rel_f) > depth + 1 else str(ds.extra["user_names"][0])
               for (ds, meta), rel_f in zip(sessions, rel, strict=True)]  # fmt: skip
    users = sorted(set(user_of))
    signals, labels, segments, takes = [], [], [], []
    offsets = [0]
    for ds, _ in sessions:
        remap = np.array([classes.index(c) for c in ds.class_names] + [-1], np.int64)
        lab = ds.sample_labels if ds.sample_labels is not None else np.full(ds.signal.shape[1], -1, np.int64)
        if lab.size and (lab.max() >= len(ds.class_names)):
            raise DataFormatError(f"{ds.name}: label {int(lab.max())} has no class name")
        labels.append(remap[lab])  # -1 indexes the appended -1
        seg = ds.extra["segments"].copy()
        seg[:, :2] += offsets[-1]
        seg[:, 2] = remap[seg[:, 2]]
        segments.append(seg)
        takes.append(ds.extra["takes"])
        signals.append(ds.signal)
        offsets.append(offsets[-1] + ds.signal.shape[1])
    out = StreamDataset(
        np.concatenate(signals, axis=1), np.array(offsets, np.int64), list(first.channel_names),
        list(first.channel_units), classes, first.rate_hz, np.concatenate(labels),
        recording_groups={"session": np.arange(len(sessions), dtype=np.int64),
                          "user": np.array([users.index(u) for u in user_of], np.int64)},
        extra={"segments": np.concatenate(segments).astype(np.int64).reshape(-1, 4),
               "takes": np.concatenate(takes).astype(np.int64), "session_names": np.array(session_names),
               "user_names": np.array(users),
               "segmentation_json": np.array([str(ds.extra["segmentation_json"][0]) for ds, _ in sessions]),
               "empty_sessions": np.array([f.stem for f in empty], dtype=str),
               "bridged_holes": np.array([int(ds.extra.get("bridged_holes", 0)) for ds, _ in sessions], np.int64)},
        name=folder.name or str(folder),
    )  # fmt: skip
    if ei:
        out.extra["testing_sessions"] = np.array([r[0].lower() == "testing" for r in rel])
    converted = sorted({str(c) for ds, _ in sessions for c in ds.extra.get("converted_units", [])})
    if converted:
        out.extra["converted_units"] = np.array(converted)
    attach_window_options(out, opts, spec, base)
    return out


def sliding_spec(spec: str, length: str) -> str | None:
    """``spec`` read as sliding windows of ``length`` (``2.56s``, or samples), or None when it is no recording spec
    (``dir:``, ``csv:``) or already names an input mode (its options or ``dataset.json``'s); a ``length`` the spec
    gives is kept. What ``finetune --recipe activities`` and ``verify`` of a sliding bundle read recordings as."""
    scheme, _, rest = spec.partition(":")
    if scheme not in ("dir", "csv") or "+" in spec:
        return None
    path, _, opt = rest.partition("?")
    try:
        opts = parse_options(opt)
        base = read_dataset_json(Path(path).expanduser() / DATASET_FILE) if scheme == "dir" else {}
    except (ValueError, OSError):  # (the loader names what is wrong)
        return None
    if "input" in opts or base.get("input_mode"):
        return None
    added = ["input=sliding"] + ([] if "length" in opts or base.get("length") else [f"length={length}"])
    return f"{scheme}:{path}?{','.join([*filter(None, opt.split(',')), *added])}"
