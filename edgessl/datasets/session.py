"""Recording sessions: a CSV of samples (the ``csv:`` format) plus a JSON sidecar (device, units, rate, segments).

:class:`SessionWriter` streams samples to the CSV as they arrive (flushed at least every
``FLUSH_INTERVAL_S``) and rewrites the sidecar atomically after every kept or redone performance, so a crash
loses at most the last performance's metadata, never samples. :func:`read_session` reads one back, and
:func:`load_csv_spec` is the ``csv:`` spec loader (any CSV recording, with or without a sidecar).
``docs/data.md`` describes both files; :mod:`edgessl.datasets.folder` reads a folder of them (``dir:``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

import edgessl.datasets.csv_recording as csv_recording
from edgessl.atomic import atomic_write
from edgessl.datasets.labelled import attach_window_options
from edgessl.datasets.registry import need_path, parse_options
from edgessl.datasets.types import FLOAT32_MAX, DataFormatError, SpecOptionError, StreamDataset, to_canonical_units
from edgessl.preprocess import MAX_FILL_S
from edgessl.units import UNIT_CHOICES, canonical_unit, declare_units

__all__ = ["FLAG_BITS", "SESSION_FORMAT", "SessionWriter", "load_csv_spec", "read_session", "read_sidecar", "runs_of_labels"]

SESSION_FORMAT = "edgessl-session"
SESSION_VERSION = 1
FLUSH_INTERVAL_S = 1.0
# a segment's flags as bits of extra["segments"][:, 3]; any flag not listed here sets the "other" bit
FLAG_BITS = {"gap": 1, "other": 2}


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _atomic_write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=1) + "\n").encode("utf-8")))


class SessionWriter:
    """Write one recording session: ``<stem>.csv`` (samples, gaps as comments) and ``<stem>.json`` (sidecar).

    The stem is ``YYYYMMDD-HHMMSS-<user>-<kind>`` (UTC), with ``-2``, ``-3`` ... appended when a session of
    that name exists already: existing files are never touched, and the CSV is opened exclusively.

    Times: ``append``'s ``t_s`` are the device's seconds. The CSV's ``timestamp_ms`` axis is the device's
    time plus an offset that grows on a timeline reset (and on any timestamp that would not rise), so the
    axis always increases; ``add_segment`` and ``gap`` take device seconds and are mapped with the offset of
    the newest stretch of the device clock that holds them (the current offset otherwise).

    Args:
        folder: where the two files go (created if needed).
        kind: ``"labelled"`` or ``"unlabelled"``.
        user: who performs (a name; unsafe characters become ``_`` in the file name).
        device: the device's identity (port, name, firmware, serial, mode).
        rate_hz: the device's sample rate.
        channels, units: one name and one unit per channel.
        segmentation: the segmenter parameters used to cut performances (``SegmentParams`` as a dict).
    """

    def __init__(self, folder: str | Path, *, kind: str, user: str, device: dict[str, Any], rate_hz: float,
                 channels: list[str], units: list[str], segmentation: dict[str, Any] | None = None):  # fmt: skip
        if kind not in ("labelled", "unlabelled"):
            raise ValueError(f"session kind must be 'labelled' or 'unlabelled'; got {kind!r}")
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a finite number of Hz > 0; got {rate_hz}")
        if not channels or len(units) != len(channels):
            raise ValueError(f"need one unit per channel; got channels {channels} and units {units}")
        if len(set(channels)) != len(channels) or any("," in c or not c.strip() for c in channels):
            raise ValueError(f"channel names must be distinct, non-empty and without commas; got {channels}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        started = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        safe_user = re.sub(r"[^A-Za-z0-9_.-]", "_", str(user)) or "_"
        base = f"{started:%Y%m%d-%H%M%S}-{safe_user}-{kind}"
        stem, k = base, 1
        while (self.folder / f"{stem}.csv").exists() or (self.folder / f"{stem}.json").exists():
            k += 1
            stem = f"{base}-{k}"
        self.session = stem
        self.path_csv = self.folder / f"{stem}.csv"
        self.path_json = self.folder / f"{stem}.json"
        self._csv = open(self.path_csv, "x", encoding="utf-8", newline="")  # noqa: SIM115 (closed by close())
        self._csv.write(",".join(["timestamp_ms", *channels]) + "\n")
        self._csv.flush()
        self.rate_hz = float(rate_hz)
        self.n_channels = len(channels)
        self._offset_s = 0.0  # added to device seconds to get the file's axis
        self._last_s: float | None = None  # last written time on the file's axis (seconds)
        self._pending_reset: float | None = None  # host-measured seconds of a timeline-reset gap
        self._epochs: list[list[float]] = []  # [offset, first, last device second] per stretch of one offset
        self._last_flush = time.monotonic()
        self._closed = False
        self.meta: dict[str, Any] = {
            "format": SESSION_FORMAT, "version": SESSION_VERSION, "session": stem, "user": str(user), "kind": kind,
            "started": started.isoformat(), "ended": None, "device": dict(device), "rate_hz": self.rate_hz,
            "channels": list(channels), "units": list(units), "samples": 0, "segments": [], "gaps": [],
            "timeline_repairs": 0, "counters": {}, "segmentation": dict(segmentation or {}),
        }  # fmt: skip
        self._write_sidecar()

    # -- samples -------------------------------------------------------------------------------------------
    def _axis(self, t_s: np.ndarray) -> np.ndarray:
        """Device seconds -> the file's strictly increasing axis, moving the offset where time fails to rise."""
        step = 1.0 / self.rate_hz
        out = np.empty(len(t_s), np.float64)
        for i, t in enumerate(t_s.tolist()):
            a = t + self._offset_s
            prev = self._last_s
            if self._pending_reset is not None and prev is not None:
                # the device clock restarted: continue after the last sample plus the gap the host measured
                self._offset_s += prev + max(self._pending_reset, step) - a
                self._pending_reset = None
                a = t + self._offset_s
            elif prev is not None and a <= prev:
                # a timestamp that does not rise (a reset nobody reported): continue one sample period on
                self._offset_s += prev + step - a
                self.meta["timeline_repairs"] += 1
                a = t + self._offset_s
            self._pending_reset = None
            if not self._epochs or self._epochs[-1][0] != self._offset_s:
                self._epochs.append([self._offset_s, t, t])
            ep = self._epochs[-1]
            ep[1], ep[2] = min(ep[1], t), max(ep[2], t)
            out[i] = a
            self._last_s = a
        return out

    def _to_axis_s(self, t: float) -> float:
        """Device seconds -> file axis: the newest stretch of the device clock that holds ``t`` (one sample of
        slack), so that a performance that ended before a timeline reset is still placed right."""
        slack = 1.0 / self.rate_hz
        for offset, lo, hi in reversed(self._epochs):
            if lo - slack <= t <= hi + slack:
                return t + offset
        return t + self._offset_s

    def append(self, t_s: np.ndarray, x: np.ndarray) -> None:
        """Write samples: ``t_s [n]`` device seconds, ``x [n, C]`` values (NaN is written as an empty cell)."""
        t_s = np.asarray(t_s, np.float64).reshape(-1)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape != (len(t_s), self.n_channels):
            raise ValueError(f"{self.path_csv}: append needs x [n, {self.n_channels}] for {len(t_s)} times; "
                             f"got {x.shape}")  # fmt: skip
        if not len(t_s):
            return
        axis_ms = self._axis(t_s) * 1000.0
        vals = x.astype(np.float64)
        bad = np.isinf(vals) | (np.abs(np.nan_to_num(vals)) > FLOAT32_MAX)
        if bad.any():  # the csv: loader refuses them; written as missing values (filled on loading), and counted
            self.meta["nonfinite_values"] = self.meta.get("nonfinite_values", 0) + int(bad.sum())
            vals = np.where(bad, np.nan, vals)
        lines = [
            ",".join([repr(round(float(axis_ms[i]), 6))] + ["" if v != v else repr(v) for v in vals[i].tolist()])
            for i in range(len(t_s))
        ]
        self._csv.write("\n".join(lines) + "\n")
        self.meta["samples"] += len(t_s)
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL_S:
            self._csv.flush()
            self._last_flush = time.monotonic()

    def gap(self, at_s: float, seconds: float | None, timeline_reset: bool) -> None:
        """Note a gap in the stream (a comment line in the CSV, an entry in the sidecar).

        Args:
            at_s: device seconds where the gap happened (before a reset, on the old timeline).
            seconds: how long the host measured it, or None when unknown.
            timeline_reset: the device's clock restarted; the next samples continue the file's axis after
                the last sample plus ``seconds``.
        """
        at_ms = self._to_axis_s(float(at_s)) * 1000.0
        if self._last_s is not None:
            at_ms = max(at_ms, self._last_s * 1000.0)
        at_ms = round(at_ms, 6)
        sec = None if seconds is None or not math.isfinite(seconds) else float(seconds)
        self._csv.write(f"# gap at_ms={at_ms!r} seconds={'unknown' if sec is None else repr(sec)} "
                        f"timeline_reset={int(bool(timeline_reset))}\n")  # fmt: skip
        self.meta["gaps"].append({"at_ms": at_ms, "seconds": sec, "timeline_reset": bool(timeline_reset)})
        if timeline_reset:
            self._pending_reset = sec or 0.0

    # -- performances --------------------------------------------------------------------------------------
    def add_segment(self, label: str, start_s: float, end_s: float, *, energy: float,
                    flags: list[str], bridged: bool = False) -> dict[str, Any]:  # fmt: skip
        """Keep a performance ``[start_s, end_s)`` (device seconds); a gap inside it adds the flag ``gap``.
        ``bridged``: its gaps are short enough for the loader to fill (``bridge_short_holes``): it still counts.

        Returns:
            The stored record, with its ``take`` (1, 2 ... per label in this session).
        """
        if not str(label).strip() or "," in str(label):
            raise ValueError(f"a label is a non-empty name without commas; got {label!r}")
        # to the nanosecond, as the samples' times are written (9820.0, not 9819.999999999998)
        start_ms = round(self._to_axis_s(float(start_s)) * 1000.0, 6)
        end_ms = round(self._to_axis_s(float(end_s)) * 1000.0, 6)
        if not end_ms > start_ms:
            raise ValueError(f"a segment must end after it starts; got {start_s} .. {end_s} s")
        flags = list(dict.fromkeys(flags))
        if "gap" not in flags and any(start_ms <= g["at_ms"] < end_ms for g in self.meta["gaps"]):
            flags.append("gap")
        take = take_counts(self.meta["segments"], usable=None).get(str(label), 0) + 1  # flagged ones too: unique
        rec = {"label": str(label), "start_ms": start_ms, "end_ms": end_ms, "take": take,
               "energy": float(energy), "flags": flags}  # fmt: skip
        if bridged and flags == ["gap"]:
            rec["bridged"] = True
        self.meta["segments"].append(rec)
        self.flush()
        return rec

    def drop_last_segment(self) -> dict[str, Any] | None:
        """Redo: forget the last kept performance (its samples stay in the CSV). Returns it, or None."""
        if not self.meta["segments"]:
            return None
        rec: dict[str, Any] = self.meta["segments"].pop()
        self.flush()
        return rec

    def counts(self, flagged: bool = False) -> dict[str, int]:
        """Kept performances per label that training uses (:func:`usable_take`); with ``flagged``, those it
        leaves out."""
        return take_counts(self.meta["segments"], usable=not flagged)

    def set_segmentation(self, segmentation: dict[str, Any]) -> None:
        """The segmenter parameters the capture cuts with from now on (the gentle cut for slow gestures)."""
        self.meta["segmentation"] = dict(segmentation)
        self.flush()

    def set_rate(self, rate_hz: float) -> None:
        """The rate measured over the whole session (a text device's, estimated from its lines' arrivals: the
        first seconds' estimate varies by a percent or two between sessions of one board), saved with the next
        sidecar write; the samples' times stay as written."""
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a finite number of Hz > 0; got {rate_hz}")
        self.meta["rate_hz"] = float(rate_hz)

    def set_counters(self, counters: dict[str, Any]) -> None:
        """The bridge's counters (rejected values and frames ...), saved with the next sidecar write."""
        self.meta["counters"] = dict(counters)

    # -- files ---------------------------------------------------------------------------------------------
    def _write_sidecar(self) -> None:
        _atomic_write_json(self.path_json, self.meta)

    def flush(self) -> None:
        """Flush the CSV to disk and rewrite the sidecar (atomically)."""
        if self._closed:
            return
        self._csv.flush()
        os.fsync(self._csv.fileno())
        self._last_flush = time.monotonic()
        self._write_sidecar()

    def close(self) -> None:
        """Finish: set ``ended`` and write the final sidecar. Safe to call twice."""
        if self._closed:
            return
        self.meta["ended"] = _now_iso()
        self.flush()
        self._csv.close()
        self._closed = True

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()


# -- reading ---------------------------------------------------------------------------------------------------
def _expect(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise DataFormatError(f"{path}: {what}")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read and check a session sidecar; anything malformed is a :class:`DataFormatError` naming the file."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); expected an edgessl session "
                              "sidecar object") from None  # fmt: skip
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not UTF-8 text; expected an edgessl session sidecar (JSON)") from None
    _expect(isinstance(meta, dict), path, f"expected a JSON object; got {type(meta).__name__}")
    _expect(meta.get("format") == SESSION_FORMAT, path,
            f"'format' must be {SESSION_FORMAT!r}; got {meta.get('format')!r}")  # fmt: skip
    version = meta.get("version")
    _expect(isinstance(version, int) and 1 <= version <= SESSION_VERSION, path,
            f"'version' must be 1..{SESSION_VERSION} (this edgessl reads up to {SESSION_VERSION}); got {version!r}")
    channels = meta.get("channels")
    _expect(isinstance(channels, list) and bool(channels) and all(isinstance(c, str) for c in channels), path,
            f"'channels' must be a list of channel names; got {channels!r}")
    units = meta.get("units", ["unknown"] * len(channels))
    _expect(isinstance(units, list) and len(units) == len(channels) and all(isinstance(u, str) for u in units),
            path, f"'units' must be a list of {len(channels)} unit names (one per channel); got {units!r}")
    rate = meta.get("rate_hz")
    _expect(isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0,
            path, f"'rate_hz' must be a number of Hz > 0; got {rate!r}")
    for key in ("user", "session", "kind"):
        _expect(isinstance(meta.get(key, ""), str), path, f"{key!r} must be a string; got {meta.get(key)!r}")
    segments = meta.get("segments", [])
    _expect(isinstance(segments, list), path, f"'segments' must be a list; got {type(segments).__name__}")
    for i, s in enumerate(segments):
        where = f"segments[{i}]"
        _expect(isinstance(s, dict), path, f"{where} must be an object with label, start_ms, end_ms")
        _expect(isinstance(s.get("label"), str) and bool(s["label"].strip()), path,
                f"{where}.label must be a non-empty string; got {s.get('label')!r}")
        a, b = s.get("start_ms"), s.get("end_ms")
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b))
        _expect(ok and b > a, path, f"{where}: start_ms and end_ms must be numbers with end_ms > start_ms; "
                                    f"got {a!r} .. {b!r}")  # fmt: skip
        flags = s.get("flags", [])
        _expect(isinstance(flags, list) and all(isinstance(f, str) for f in flags), path,
                f"{where}.flags must be a list of strings; got {flags!r}")
    gaps = meta.get("gaps", [])
    _expect(isinstance(gaps, list), path, f"'gaps' must be a list; got {type(gaps).__name__}")
    return meta


def _flag_bits(flags: list[str]) -> int:
    return sum(FLAG_BITS.get(f, 0) for f in set(flags)) | (FLAG_BITS["other"] if set(flags) - set(FLAG_BITS) else 0)


def runs_of_labels(labels: np.ndarray) -> np.ndarray:
    """Contiguous runs of one label (>= 0) as ``[R, 3]`` int64 rows ``(start, end, label)``, end exclusive."""
    labels = np.asarray(labels)
    if not len(labels):
        return np.zeros((0, 3), np.int64)
    change = np.flatnonzero(np.diff(labels) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    keep = labels[starts] >= 0
    return np.stack([starts[keep], ends[keep], labels[starts][keep]], axis=1).astype(np.int64).reshape(-1, 3)


def usable_take(rec: dict[str, Any]) -> bool:
    """A kept take that training uses: no flag, or only gaps short enough to bridge (``"bridged"``)."""
    flags = rec.get("flags") or []
    return not flags or (flags == ["gap"] and bool(rec.get("bridged")))


def take_counts(segments: list[dict[str, Any]], usable: bool | None) -> dict[str, int]:
    """Takes per label among ``segments``: the usable ones (:func:`usable_take`), the others, or all (None)."""
    out: dict[str, int] = {}
    for rec in segments:
        if usable is None or usable_take(rec) == usable:
            out[rec["label"]] = out.get(rec["label"], 0) + 1
    return out


def bridge_short_holes(ds: StreamDataset, resets_ms: Sequence[float] = ()) -> int:
    """Fill every hole in ``ds``'s samples of at most ``MAX_FILL_S`` by linear interpolation, in place, as
    ``edgessl run`` bridges one live (and the generated C): lost frames inside a take then cost it nothing. A hole
    at a timeline reset (``resets_ms``, on ``ds.timestamps`` × 1000) or a longer one is left as it is. Inserted
    samples take the label of their neighbours when both have the same one, else −1. Returns the holes filled.
    """
    t, rate = ds.timestamps, ds.rate_hz
    if t is None or not rate or len(t) < 2:
        return 0
    period = 1.0 / rate
    dt = np.diff(t)
    idx = [int(i) for i in np.flatnonzero((dt > 1.5 * period) & (dt - period <= MAX_FILL_S + 0.5 * period))
           if not any(t[i] * 1000.0 - 0.5 * period * 1000.0 <= r < t[i + 1] * 1000.0 for r in resets_ms)]
    if not idx:
        return 0
    ts, xs, ls, start = [], [], [], 0
    lab = ds.sample_labels
    for i in idx:
        k = int(round(dt[i] / period)) - 1  # samples missing between i and i + 1
        frac = np.arange(1, k + 1) / (k + 1)
        ts += [t[start : i + 1], t[i] + frac * dt[i]]
        xs += [ds.signal[:, start : i + 1], ds.signal[:, i : i + 1] + frac * (ds.signal[:, i + 1 : i + 2] - ds.signal[:, i : i + 1])]
        if lab is not None:
            ls += [lab[start : i + 1], np.full(k, lab[i] if lab[i] == lab[i + 1] else -1, lab.dtype)]
        start = i + 1
    ts.append(t[start:])
    xs.append(ds.signal[:, start:])
    ds.timestamps = np.concatenate(ts)
    ds.signal = np.concatenate(xs, axis=1).astype(ds.signal.dtype)
    if lab is not None:
        ls.append(lab[start:])
        ds.sample_labels = np.concatenate(ls)
    ds.offsets = np.array([0, ds.signal.shape[1]], np.int64)
    return len(idx)


def sensor_units(opts: dict[str, str], spec: str) -> tuple[str | None, str | None]:
    """A spec's ``acc=`` and ``gyro=`` options (popped): the units its accelerometer and gyroscope columns are in.

    Raises:
        SpecOptionError: a unit the loaders cannot convert, naming the spec.
    """
    out: list[str | None] = []
    for key, unit in (("acc", "g"), ("gyro", "rad/s")):
        u = opts.pop(key, None)
        if u is not None and canonical_unit(u)[0] != unit and u != unit:
            raise SpecOptionError(f"{spec!r}: {key}= must be a unit of {'acceleration' if key == 'acc' else 'turn rate'}"
                                  f" ({UNIT_CHOICES[unit]}); got {u!r}")  # fmt: skip
        out.append(u)
    return out[0], out[1]


def read_session(csv_path: str | Path, rate_hz: float | None = None, *, acc: str | None = None,
                 gyro: str | None = None, label_column: str = "label") -> tuple[StreamDataset, dict[str, Any]]:  # fmt: skip
    """One session: its samples as a one-recording :class:`StreamDataset`, and its sidecar (``{}`` if none).

    The stream's ``extra["segments"]`` holds ``[S, 4]`` int64 rows ``(start, end, label, flags_bit)`` in
    sample indices (``FLAG_BITS``), from the sidecar's segments or else from the runs of a ``label``
    column; ``sample_labels`` marks the segments' samples (−1 elsewhere); ``extra["takes"]`` holds each
    segment's take (``label_column``: that column's name). The sidecar's rate, units and channel names must
    agree with the CSV. ``acc`` and ``gyro`` declare the units of the channels read as g and rad/s (:func:`edgessl.units.declare_units`);
    values in m/s², mg or deg/s are converted to g and rad/s.

    Raises:
        DataFormatError: naming the CSV or the sidecar and what was expected.
    """
    csv_path = Path(csv_path)
    side = csv_path.with_suffix(".json")
    meta = read_sidecar(side) if side.exists() else {}
    # (a session recorded by edgessl has its labels in the sidecar: a folder may mix it with other tools' files)
    ds = csv_recording.read_csv_recording(csv_path, rate_hz, "label" if meta else label_column)  # (tests replace it)
    n = ds.signal.shape[1]
    if meta:
        if meta["channels"] != ds.channel_names:
            raise DataFormatError(f"{side}: channels {meta['channels']} do not match the columns of {csv_path.name} "
                                  f"{ds.channel_names}; expected the same names in the same order")  # fmt: skip
        measured = ds.rate_hz
        if rate_hz is None and measured and abs(measured - meta["rate_hz"]) > 0.05 * meta["rate_hz"]:
            raise DataFormatError(f"{side}: rate_hz {meta['rate_hz']:g} does not match the timestamps of "
                                  f"{csv_path.name} ({measured:.4g} Hz); expected them within 5 %")  # fmt: skip
        ds.rate_hz = float(rate_hz or meta["rate_hz"])
        ds.channel_units = list(meta["units"])
    for key, given, unit, sensor, names in (("acc", acc, "g", "accelerometer", "acc_x,acc_y,acc_z (or ax,ay,az, accX ..)"),
                                            ("gyro", gyro, "rad/s", "gyroscope", "gyro_x,gyro_y,gyro_z (or gx,gy,gz, gyrX ..)")):  # fmt: skip
        if given is not None and not any(canonical_unit(u)[0] == unit for u in ds.channel_units):
            # a unit declared for no column would convert nothing, silently (a walkthrough's gyroscope, named
            # gx,gy,gz, stayed in deg/s)
            raise DataFormatError(f"{csv_path}: {key}={given} declares the {sensor}'s unit, but no column is read as "
                                  f"one (columns {ds.channel_names}, read as {ds.channel_units}); expected its columns "
                                  f"named {names}")  # fmt: skip
    ds.channel_units = declare_units(ds.channel_units, acc, gyro)
    to_canonical_units(ds)
    t0_ms = float(ds.extra.get("t0_s", np.array(0.0))) * 1000.0
    resets = [float(g["at_ms"]) for g in meta.get("gaps", []) if g.get("timeline_reset")]  # on the file's axis
    if ds.timestamps is not None and ds.rate_hz:
        ds.extra["bridged_holes"] = np.array(bridge_short_holes(ds, [r - t0_ms for r in resets]))
        n = ds.signal.shape[1]
    t_ms = (ds.timestamps if ds.timestamps is not None else np.arange(n) / (ds.rate_hz or 1.0)) * 1000.0
    t_ms = t_ms + t0_ms
    takes: list[int] = []
    if meta and meta.get("segments"):
        classes = sorted({s["label"] for s in meta["segments"]})
        eps = 250.0 / (ds.rate_hz or 1000.0)
        rows = []
        for i, s in enumerate(meta["segments"]):
            # a quarter sample of slack: the CSV's times went through seconds and back, not bit for bit
            a, b = (int(np.searchsorted(t_ms, s[k] - eps, "left")) for k in ("start_ms", "end_ms"))
            if b - a < 1:
                raise DataFormatError(f"{side}: segments[{i}] ({s['label']!r}, {s['start_ms']} .. {s['end_ms']} ms) "
                                      f"holds no sample of {csv_path.name} (its timestamps run "
                                      f"{t_ms[0]:g} .. {t_ms[-1]:g} ms)")  # fmt: skip
            rows.append((a, b, classes.index(s["label"]), _flag_bits(s.get("flags", []))))
            take = s.get("take")
            takes.append(int(take) if isinstance(take, int) and not isinstance(take, bool) else len(takes) + 1)
        segments = np.array(rows, np.int64).reshape(-1, 4)
        if ds.timestamps is not None and ds.rate_hz:
            # a take flagged 'gap' whose holes were all bridged above is whole again, as edgessl run sees it live
            holes = np.flatnonzero(np.diff(ds.timestamps) > 1.5 / ds.rate_hz)  # unbridged: between i and i + 1
            for row in segments:
                a, b = int(row[0]), int(row[1])
                whole = not ((holes >= a - 1) & (holes < b)).any() and not any(
                    t_ms[max(a - 1, 0)] <= r < t_ms[min(b, n - 1)] for r in resets)
                if whole:
                    row[3] &= ~FLAG_BITS["gap"]
        labels = np.full(n, -1, np.int64)
        for a, b, c, _ in segments.tolist():
            labels[a:b] = c
        ds.sample_labels, ds.class_names = labels, classes
    elif ds.sample_labels is not None:
        runs = runs_of_labels(ds.sample_labels)
        if not ds.class_names and len(runs):  # integer labels: classes named by their numbers
            ds.class_names = [str(i) for i in range(int(runs[:, 2].max()) + 1)]
        segments = np.concatenate([runs, np.zeros((len(runs), 1), np.int64)], axis=1)
        per_label: dict[int, int] = {}
        for c in runs[:, 2].tolist():
            per_label[c] = per_label.get(c, 0) + 1
            takes.append(per_label[c])
    else:
        segments = np.zeros((0, 4), np.int64)
    ds.extra["segments"] = segments
    ds.extra["takes"] = np.array(takes, np.int64)
    ds.recording_groups.update(session=np.zeros(1, np.int64), user=np.zeros(1, np.int64))
    ds.extra["session_names"] = np.array([str(meta.get("session") or csv_path.stem)])
    ds.extra["user_names"] = np.array([str(meta.get("user") or "unknown")])
    ds.extra["segmentation_json"] = np.array([json.dumps(meta.get("segmentation") or {})])
    return ds, meta


def load_csv_spec(arg: str) -> StreamDataset:
    """``csv:PATH[?rate=HZ,input=segment|sliding,length=N,split=take,test=F,acc=UNIT,gyro=UNIT,label=COLUMN]``: one
    recording.

    ``rate`` overrides the rate estimated from the timestamps. A session sidecar beside the file
    (``PATH`` with ``.json``) gives its rate, units and labelled segments; a ``label`` column gives
    performances as runs of one label. Such a labelled stream carries how it becomes windows
    (:mod:`edgessl.datasets.labelled`); the other options choose that and need labels.
    """
    path, _, opt = need_path("csv", arg).partition("?")
    opts = parse_options(opt)
    if unknown := set(opts) - {"rate", "input", "length", "split", "test", "acc", "gyro", "label"}:
        raise SpecOptionError(f"unknown csv option(s) {sorted(unknown)} in 'csv:{arg}'; expected rate=HZ, "
                              "input=segment|sliding, length=N, split=take, test=FRACTION, acc=g|m/s2|mg, "
                              "gyro=rad/s|deg/s, label=COLUMN")  # fmt: skip
    acc, gyro = sensor_units(opts, f"csv:{arg}")
    label_column = opts.pop("label", "label")
    rate = opts.pop("rate", None)
    try:
        rate_hz = float(rate) if rate else None
    except ValueError:
        raise SpecOptionError(f"'csv:{arg}': rate= must be a number of Hz; got {rate!r}") from None
    ds, _ = read_session(path, rate_hz, acc=acc, gyro=gyro, label_column=label_column)
    if len(ds.extra["segments"]) or opts:
        attach_window_options(ds, opts, f"csv:{arg}")
    return ds
