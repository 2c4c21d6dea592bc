"""CSV recordings: a header, a timestamp column, then one column per channel (an optional ``label`` column).

The ``csv:`` spec loader (which also reads a session sidecar beside the file) is
:func:`edgessl.datasets.session.load_csv_spec`.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from edgessl.datasets.types import DataFormatError, StreamDataset, parse_float, unit_from_channel
from edgessl.preprocess import fill_missing

__all__ = ["read_csv_recording", "write_csv_recording"]


_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MIN_RATE_HZ, MAX_RATE_HZ = 5.0, 5000.0  # an IMU's sample rate; outside, the timestamp unit was misread


def _parses(tok: str, path: Path, lineno: int) -> bool:
    try:
        parse_float(tok, path, lineno)
    except DataFormatError:
        return False
    return True


def _is_number(tok: str) -> bool:  # the refused cell is a number (non-finite, too large), not a word
    try:
        float(tok)
    except ValueError:
        return False
    return True


def read_csv_recording(path: str | Path, rate_hz: float | None = None, label_column: str = "label") -> StreamDataset:
    """Read a CSV recording: header required; first column a timestamp, then one column per channel.

    The timestamp unit comes from the column name's suffix (``time_s``, ``timestamp_ms``, ``t_us``);
    a bare ``timestamp`` is milliseconds, as in Edge Impulse's CSV format. An optional ``label`` column
    (integers or names; another name: ``label_column``) gives per-sample classes, an empty cell none. Empty
    cells and ``NaN`` in a channel are missing values. Lines that start with ``#`` are comments (``edgessl run
    --record`` notes each gap in one) and are skipped. ``,``, ``;`` and TAB delimiters are accepted. The rate is estimated from the timestamps (median
    interval) unless ``rate_hz`` is given.
    """
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if not text.strip():
        raise DataFormatError(f"{path}: empty file; expected a header line then rows")
    # comment lines become blank ones, so the line numbers in messages stay the file's
    lines = ["" if ln.lstrip().startswith("#") else ln for ln in text.splitlines()]
    h = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    delim = max([",", "\t", ";"], key=lines[h].count)
    rows = list(csv.reader(lines, delimiter=delim))
    header = [c.strip() for c in rows[h]]
    if len(header) < 2:
        raise DataFormatError(f"{path}:{h + 1}: expected a header with a timestamp column and channel columns")
    if all(re.fullmatch(r"[-+]?[\d.eE+-]+", c) for c in header if c):
        raise DataFormatError(f"{path}:{h + 1}: the first line must be a header (column names), got numbers")
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
            f"{path}:{h + 1}: first column {header[0]!r} must be a timestamp (timestamp, time_s, timestamp_ms, t_us ...)"
        )
    label_col = next((i for i, h in enumerate(header) if h.lower() == label_column.lower()), None)
    if label_col is None and label_column.lower() != "label":
        raise DataFormatError(f"{path}:{h + 1}: no column {label_column!r} (label=) in the header {header}; expected "
                              "the name of the column that holds the labels")  # fmt: skip
    ch_cols = [i for i in range(1, len(header)) if i != label_col]
    channels = [header[i] for i in ch_cols]
    times: list[float] = []
    values: list[list[float]] = []
    raw_labels: list[str] = []
    for lineno, row in enumerate(rows[h + 1 :], h + 2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{path}:{lineno}: expected {len(header)} columns like the header; got {len(row)}")
        ts = parse_float(row[0], path, lineno)
        if np.isnan(ts):
            raise DataFormatError(f"{path}:{lineno}: missing timestamp")
        times.append(ts * t_scale)
        try:
            values.append([parse_float(row[i], path, lineno) for i in ch_cols])
        except DataFormatError as e:
            bad = next(i for i in ch_cols if not _parses(row[i], path, lineno))
            col = header[bad]
            j = ch_cols.index(bad)
            # a column of names: text on its first line, or the first text after empty cells (unlabelled samples)
            names = not _is_number(row[bad]) and all(math.isnan(v[j]) for v in values)
            if label_col is not None or not names:  # a stray value in a column of numbers
                raise DataFormatError(f"{e} (column {col!r})") from None
            raise DataFormatError(f"{e} (column {col!r}): a column of names is read as the labels only when it is "
                                  f"called 'label' (or named by the spec's option label={col}); every other column "
                                  "is a channel of numbers") from None  # fmt: skip
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
        # (rounded: 16 ms steps give 62.5 Hz, not 62.49999999999994)
        rate_hz = float(np.format_float_positional(1.0 / np.median(dt), 6, fractional=False)) if len(dt) else None
        if rate_hz is not None and not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            unit = next(u for u, f in _TIME_UNITS.items() if f == t_scale)
            raise DataFormatError(
                f"{path}:{h + 1}: the timestamps of column {header[0]!r}, read as {unit}, give {rate_hz:.4g} Hz, "
                f"not an IMU's rate ({MIN_RATE_HZ:g} to {MAX_RATE_HZ:g} Hz): name the column by its unit "
                "(time_s, timestamp_ms, t_us; a bare timestamp is ms, a bare time s)"
            )
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
    units = [unit_from_channel(c) for c in channels]
    return StreamDataset(
        signal, np.array([0, signal.shape[1]]), channels, units, classes, rate_hz, sample_labels,
        timestamps=t - t[0], extra={"t0_s": np.array(t[0])}, name=path.name,
    )  # fmt: skip


def write_csv_recording(path: str | Path, signal: np.ndarray, rate_hz: float, channel_names: list[str]) -> None:
    """Write ``signal [C, N]`` as a CSV recording with a ``timestamp_ms`` column."""
    t = np.arange(signal.shape[1]) * 1000.0 / rate_hz
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp_ms", *channel_names])
        for i in range(signal.shape[1]):
            w.writerow([repr(float(t[i]))] + ["" if np.isnan(v) else repr(float(v)) for v in signal[:, i]])
