"""Our ``.npz`` layouts: windows (``X_train [n, C, T]`` ...) or a stream of recordings (``signal`` + offsets).

``npz:PATH`` reads either layout; ``npz:PATH?split=S[,length=N]`` turns the labelled recordings of a stream
layout into windows, train/test by the per-recording array ``S`` (see :meth:`StreamDataset.split_windows`).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.datasets.registry import DATA_DIR_ENV, default_data_dir, need_path, parse_options, resolve_path
from edgessl.datasets.types import (
    DataFormatError,
    SpecOptionError,
    StreamDataset,
    WindowDataset,
    check_finite,
    unit_from_channel,
)
from edgessl.errors import npz_load_text
from edgessl.preprocess import fill_missing

__all__ = ["SHARED_FILES", "load_npz", "read_npz"]

# Sample rates and units of the shared data files (default_data_dir()), which their arrays do not carry.
# A file may carry ``rate_hz`` and ``channel_units`` arrays, which take precedence. The archive rows are
# z-scores, not g, whatever their channel names say: input-side adaptation must not treat them as g.
SHARED_FILES: dict[str, dict[str, Any]] = {
    "uwave_gesture_ucr": {"rate_hz": None, "units": "z-score"},
    "uwave_gesture_uea": {"rate_hz": None, "units": "z-score"},
    "uwave_raw": {"rate_hz": 100.0, "units": "g"},
    "uci_har": {"rate_hz": 50.0, "units": None},  # per channel, from the name
    "hapt_raw_streams": {"rate_hz": 50.0, "units": None},
}


def load_npz(arg: str) -> WindowDataset | StreamDataset:
    """``npz:PATH[?split=S[,length=N]]``: a window or stream layout, or a stream's labelled recordings as windows."""
    path, _, opt = need_path("npz", arg).partition("?")
    spec = f"npz:{arg}"
    ds = read_npz(resolve_path(path))
    opts = parse_options(opt)
    if unknown := set(opts) - {"split", "length"}:
        raise SpecOptionError(f"unknown npz option(s) {sorted(unknown)} in {spec!r}; expected split=NAME and length=N")
    if "split" not in opts:
        if "length" in opts:
            raise SpecOptionError(f"{spec!r}: length= applies with split= (labelled recordings to windows)")
        return ds
    if not isinstance(ds, StreamDataset):
        raise DataFormatError(f"{spec}: split= turns labelled recordings of a stream layout into windows; this file "
                              "is already windowed")  # fmt: skip
    return ds.split_windows(opts["split"], parse_length(opts, spec))


def parse_length(opts: dict[str, str], spec: str) -> int | None:
    """The ``length=N`` option (samples per window), or None when absent."""
    if "length" not in opts:
        return None
    if not opts["length"].isdigit():
        raise SpecOptionError(f"{spec!r}: length= must be a whole number of samples; got {opts['length']!r}")
    return int(opts["length"])


def _float_array(path: Path, z: Any, key: str) -> np.ndarray:
    """``z[key]`` as float32, refusing values that are not numbers or that float32 cannot hold."""
    a = z[key]
    if a.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: {key} must hold numbers; its dtype is {a.dtype}")
    if a.dtype.kind == "f":
        check_finite(a, f"{path}: {key}")
    return a.astype(np.float32)


def _check_labels(path: Path, key: str, y: np.ndarray, classes: list[str], allow_unlabelled: bool) -> None:
    """Every label must index ``classes`` (``-1``, unlabelled, only where ``allow_unlabelled``)."""
    lo = -1 if allow_unlabelled else 0
    bad = np.unique(y[(y < lo) | (y >= len(classes))])
    if len(bad):
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise DataFormatError(f"{path}: {key} holds label value(s) {shown} outside the {len(classes)} class_names "
                              f"{classes} (expected {lo}..{len(classes) - 1})")  # fmt: skip


def _str_list(a: np.ndarray) -> list[str]:
    return [str(s) for s in a.tolist()]


def _group(path: Path, z: Any, key: str, n: int) -> np.ndarray:
    """The group array ``key`` (``subject_train`` ...): one whole number per window of its split.

    Raises:
        DataFormatError: another shape or values that are not whole numbers (naming the file and the array).
    """
    a = z[key]
    whole = a.dtype.kind in "iub" or (a.dtype.kind == "f" and bool(np.all(np.isfinite(a) & (a == np.round(a)))))
    if a.ndim != 1 or len(a) != n or not whole:
        raise DataFormatError(f"{path}: {key} holds {a.dtype} values of shape {a.shape}; expected one whole number "
                              f"per window of its split ({n}), e.g. the subject of each")  # fmt: skip
    return a.astype(np.int64)


def _npz_meta(path: Path, z: Any, channel_names: list[str]) -> tuple[float | None, list[str]]:
    known = SHARED_FILES.get(path.stem, {})
    rate = float(z["rate_hz"]) if "rate_hz" in z.files else known.get("rate_hz")
    if "channel_units" in z.files:
        units = _str_list(z["channel_units"])
    elif known.get("units"):
        units = [known["units"]] * len(channel_names)
    else:
        units = [unit_from_channel(c) for c in channel_names]
    return rate, units


def read_npz(path: str | Path) -> WindowDataset | StreamDataset:
    """Read our ``.npz`` layout (windows) or one of the two stream layouts."""
    path = Path(path)
    if not path.exists():
        where = (f"looked in {Path.cwd()} and {default_data_dir()} (set {DATA_DIR_ENV} for another data folder)"
                 if len(path.parts) == 1 else "check the path")  # fmt: skip
        raise FileNotFoundError(f"{path}: no such file; {where}")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataFormatError(f"{path}: not a readable .npz archive without pickles ({e})") from e
    try:
        with z:
            return _read_opened(path, z)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:  # a member read lazily from a damaged archive
        raise DataFormatError(f"{path}: a damaged .npz archive (reading its arrays: {npz_load_text(e)})") from e


def _read_opened(path: Path, z: Any) -> WindowDataset | StreamDataset:
    files = set(z.files)
    if "signal" in files:
        return _read_stream_npz(path, z)
    need = {"X_train", "y_train", "X_test", "y_test"}
    if not need <= files:
        raise DataFormatError(
            f"{path}: expected arrays {sorted(need)} (window layout) or 'signal' + offsets (stream layout); "
            f"found {sorted(files)}"
        )
    X_train, X_test = (_float_array(path, z, k) for k in ("X_train", "X_test"))
    n_ch = X_train.shape[1] if X_train.ndim == 3 else 0
    channels = _str_list(z["channel_names"]) if "channel_names" in files else [f"ch{i}" for i in range(n_ch)]
    y_train, y_test = z["y_train"].astype(np.int64), z["y_test"].astype(np.int64)
    if "class_names" in files:
        classes = _str_list(z["class_names"])
    else:
        classes = [str(i) for i in range(int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1)]
    for split, y in (("y_train", y_train), ("y_test", y_test)):
        _check_labels(path, split, y, classes, allow_unlabelled=False)
    groups = {
        k[: -len("_train")]: (_group(path, z, k, len(y_train)), _group(path, z, k[: -len("_train")] + "_test", len(y_test)))
        for k in sorted(files)
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
    signal = _float_array(path, z, "signal")
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
    if classes:
        for name, lab in (("label", sample_labels), ("label", recording_labels)):
            if lab is not None:
                _check_labels(path, name, lab, classes, allow_unlabelled=True)
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
