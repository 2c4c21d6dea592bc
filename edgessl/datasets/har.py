"""The UCI HAR folder layout: ``train/Inertial Signals/*_train.txt``, ``y_train.txt``, ``subject_train.txt`` ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgessl.datasets.registry import need_path
from edgessl.datasets.types import DataFormatError, WindowDataset, unit_from_channel
from edgessl.preprocess import fill_missing

__all__ = ["HAR_SIGNALS", "load_har", "load_har_spec"]


def load_har_spec(arg: str) -> WindowDataset:
    """``har:DIR``: the UCI HAR folder (or the folder holding ``UCI HAR Dataset``)."""
    return load_har(need_path("har", arg))


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
    units = [unit_from_channel(c) for c in HAR_SIGNALS]
    (Xtr, ytr, str_), (Xte, yte, ste) = splits["train"], splits["test"]
    return WindowDataset(Xtr, ytr, Xte, yte, classes, list(HAR_SIGNALS), units, 50.0, {"subject": (str_, ste)}, "uci_har")
