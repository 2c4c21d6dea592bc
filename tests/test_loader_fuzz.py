"""Bad files of every file loader through ``edgessl data info``: random bytes and structured-but-wrong
content (CSV recordings, our .npz layouts, UCR/UEA .ts/.arff/.tsv). The CLI boundary may accept a file or
refuse it, never crash: exit 0, or a usage/data error (2, 3) on exactly one stderr line that names the file.
What it accepts is usable: finite values and labels inside the class list (issue #27's "1e308 in a CSV
passes data info, then training fails" and "npz labels outside class_names pass data info")."""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgessl.cli import main
from edgessl.datasets import StreamDataset, load

ACCEPTED_CODES = {0, 2, 3}  # ok, usage, data; never 70 (internal) nor anything else
FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip


def _data_info(spec: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning is not an outcome; what was loaded is checked below
        code = main(["data", "info", spec])
    return code, out.getvalue(), err.getvalue()


def check_spec(spec: str, path: Path) -> None:
    """The contract of ``edgessl data info`` on one (probably bad) file."""
    code, out, err = _data_info(spec)
    assert code in ACCEPTED_CODES, f"exit {code} for {spec}: {err.strip()}"
    assert "Traceback" not in err and "internal error" not in err, err
    if code != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgessl data info: error: "), err
        # the file it is about: for a UCR pair, either side or their common prefix
        name = path.name.split("_TRAIN")[0] if "_TRAIN" in path.name else path.name
        assert name in lines[0], f"the message does not name the file: {lines[0]}"
        return
    assert out.strip(), "accepted but printed no summary"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load(spec)
    assert ds.rate_hz is None or (np.isfinite(ds.rate_hz) and ds.rate_hz > 0), f"{spec}: accepted rate {ds.rate_hz}"
    n_classes = len(ds.class_names)
    if isinstance(ds, StreamDataset):
        assert np.isfinite(ds.signal).all(), f"{spec}: accepted a stream with non-finite values"
        for lab in (ds.sample_labels, ds.recording_labels):
            if lab is not None and len(lab) and n_classes:
                assert lab.min() >= -1 and lab.max() < n_classes, f"{spec}: labels {lab} outside {ds.class_names}"
    else:
        for split, X, y in (("train", ds.X_train, ds.y_train), ("test", ds.X_test, ds.y_test)):
            assert np.isfinite(X).all(), f"{spec}: accepted X_{split} with non-finite values"
            if len(y):
                assert y.min() >= 0 and y.max() < n_classes, f"{spec}: y_{split} {y} outside {ds.class_names}"


# ------------------------------------------------------------------------------------------------
# strategies: cells and lines that real files get wrong

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),  # nan, inf, 1e+308, 5e-324 ...
    st.integers(-(10**40), 10**40).map(str),
    st.floats(-2, 2, allow_nan=False).map(lambda v: f"{v:.4f}"),
)
ODD = st.sampled_from(["", "?", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e39", "3.4e38", "abc", " 1 ",
                       "0x10", "1_000", "1,5", '"', "'", "\x00", "é", "--1", "1e", ".", "∞", "  "])  # fmt: skip
CELL = st.one_of(NUMBERS, ODD)
RANDOM_BYTES = st.binary(max_size=600)


def _as_bytes(text: str, bom: bool, crlf: bool, latin1_tail: bool) -> bytes:
    data = (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")
    return (b"\xef\xbb\xbf" if bom else b"") + data + (b"\xe9\xff\n" if latin1_tail else b"")


@st.composite
def csv_recordings(draw: st.DrawFn) -> bytes:
    tcol = draw(st.sampled_from(["time_s", "timestamp", "timestamp_ms", "t_us", "t", "time (s)", "frame", "1.5", ""]))
    chans = draw(st.lists(st.sampled_from(["acc_x", "acc_y", "acc_z", "gyr_x", "label", "temp", "", "acc_x"]),
                          max_size=4))  # fmt: skip
    delim = draw(st.sampled_from([",", ";", "\t", " "]))
    width = 1 + len(chans)
    n = draw(st.integers(0, 12))
    monotonic = draw(st.booleans())
    lines = [delim.join([tcol, *chans])] if draw(st.integers(0, 9)) else []
    for i in range(n):
        kind = draw(st.sampled_from(["row", "row", "row", "comment", "blank", "short", "long"]))
        if kind == "comment":
            lines.append("# gap t_start=0 t_end=1 missing=3 reason=disconnect")
            continue
        if kind == "blank":
            lines.append("")
            continue
        k = width + {"row": 0, "short": -1, "long": 1}[kind]
        t = repr(i * 0.01) if monotonic else draw(CELL)
        cells = [t, *(draw(st.one_of(NUMBERS, ODD, st.sampled_from(["a", "b", "1", "-1"]))) for _ in range(max(0, k - 1)))]
        lines.append(delim.join(cells))
    text = "\n".join(lines) + ("\n" if draw(st.booleans()) else "")
    return _as_bytes(text, draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 9)) == 0)


def _valid_windows(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "X_train": rng.normal(size=(6, 3, 8)).astype(np.float32), "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "X_test": rng.normal(size=(3, 3, 8)).astype(np.float32), "y_test": np.array([0, 1, 2]),
        "class_names": np.array(["a", "b", "c"]), "channel_names": np.array(["acc_x", "acc_y", "acc_z"]),
        "channel_units": np.array(["g", "g", "g"]), "rate_hz": np.array(100.0),
        "subject_train": np.array([1, 1, 2, 2, 3, 3]), "subject_test": np.array([4, 4, 4]),
    }  # fmt: skip


def _valid_stream(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "signal": rng.normal(size=(3, 50)).astype(np.float32), "offsets": np.array([0, 20, 50]),
        "label": np.array([0, 1]), "class_names": np.array(["a", "b"]),
        "channel_names": np.array(["acc_x", "acc_y", "acc_z"]), "rate_hz": np.array(50.0),
        "subject": np.array([1, 2]),
    }  # fmt: skip


ANY_ARRAY: st.SearchStrategy[np.ndarray] = hnp.arrays(
    dtype=st.sampled_from([np.dtype(t) for t in ("f4", "f8", "i8", "i1", "u2", "?", "c8", "U4", "S3")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
)


@st.composite
def npz_contents(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """A valid window or stream layout with one to three things wrong."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = _valid_windows(rng) if draw(st.booleans()) else _valid_stream(rng)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(arrays) + ["offsets", "experiment_offsets", "label", "signal", "X_train"]))
        how = draw(st.sampled_from(["drop", "random", "nan", "inf", "huge", "labels", "negative", "shape", "empty"]))
        a = arrays.get(key)
        if how == "drop":
            arrays.pop(key, None)
        elif how == "random" or a is None:
            arrays[key] = draw(ANY_ARRAY)
        elif a.dtype.kind == "f" and how in ("nan", "inf", "huge"):
            a = a.astype(np.float64)
            flat = a.reshape(-1)
            if flat.size:
                idx = draw(st.integers(0, flat.size - 1))
                flat[idx if draw(st.booleans()) else slice(None)] = {"nan": np.nan, "inf": -np.inf, "huge": 1e308}[how]
            arrays[key] = a
        elif a.dtype.kind in "iu" and how in ("labels", "negative"):
            arrays[key] = a.astype(np.int64) + (99 if how == "labels" else -7)  # unsigned arrays cannot hold -7
        elif how == "shape":
            arrays[key] = a.reshape(-1) if a.ndim != 1 else a[: len(a) // 2]
        elif how == "empty":
            arrays[key] = a[:0] if a.ndim else np.array([])
    return arrays


def _ts_text(draw: st.DrawFn) -> str:
    header = draw(st.lists(st.sampled_from([
        "@problemName x", "@timeStamps false", "@timeStamps true", "@missing true", "@univariate true",
        "@dimensions 2", "@dimensions x", "@equalLength false", "@seriesLength 4", "@classLabel true a b",
        "@classLabel false", "@classLabel", "@classLabel true", "problemName", "# a comment",
    ]), max_size=6))  # fmt: skip
    if draw(st.integers(0, 5)):
        header.append("@data")
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        dims = [",".join(draw(st.lists(CELL, min_size=1, max_size=4))) for _ in range(draw(st.integers(0, 3)))]
        rows.append(":".join([*dims, draw(st.sampled_from(["a", "b", "c", "", "a b"]))]))
    return "\n".join(header + rows) + "\n"


def _arff_text(draw: st.DrawFn) -> str:
    relational = draw(st.booleans())
    header = ["@relation x"]
    if relational:
        header += ["@attribute series relational", "@attribute t0 numeric", "@attribute t1 numeric", "@end series"]
    else:
        header += ["@attribute t0 numeric", "@attribute t1 numeric"]
    header += draw(st.lists(st.sampled_from(["@attribute target {a,b}", "@attribute 'bad", "@attribute target {}",
                                             "@end series", "% comment", "@relation y", "junk"]), max_size=3))  # fmt: skip
    if draw(st.integers(0, 5)):
        header.append("@data")
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        label = draw(st.sampled_from(["a", "b", "c", "'a'", ""]))
        if relational and draw(st.integers(0, 4)):
            dims = [",".join(draw(st.lists(CELL, min_size=1, max_size=3))) for _ in range(draw(st.integers(1, 3)))]
            rows.append(f"'{chr(92).join(d + 'n' for d in dims)[:-1]}',{label}")
        else:
            rows.append(",".join([*draw(st.lists(CELL, max_size=4)), label]))
    return "\n".join(header + rows) + "\n"


def _tsv_text(draw: st.DrawFn) -> str:
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        label = draw(st.sampled_from(["1", "2", "a", "", "-1"]))
        rows.append("\t".join([label, *draw(st.lists(CELL, max_size=5))]))
    return "\n".join(rows) + ("\n" if draw(st.booleans()) else "")


UCR_TEXT = {".ts": _ts_text, ".arff": _arff_text, ".tsv": _tsv_text}


@st.composite
def ucr_files(draw: st.DrawFn) -> tuple[str, bytes, bytes]:
    """``(extension, TRAIN bytes, TEST bytes)``; each side random bytes or structured text."""
    ext = draw(st.sampled_from(sorted(UCR_TEXT)))

    def one() -> bytes:
        if draw(st.integers(0, 4)) == 0:
            return draw(RANDOM_BYTES)
        return _as_bytes(UCR_TEXT[ext](draw), False, draw(st.booleans()), draw(st.integers(0, 9)) == 0)

    return ext, one(), one()


# ------------------------------------------------------------------------------------------------
# the tests


def _write(tmp: str, name: str, data: bytes) -> Path:
    path = Path(tmp) / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.one_of(RANDOM_BYTES, csv_recordings()), rate=st.sampled_from(["", "?rate=50", "?rate=-1", "?rate=x"]))
def test_csv_recordings_never_crash_the_cli(data, rate):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "rec.csv", data)
        check_spec(f"csv:{path}{rate}", path)


@FUZZ
@given(data=RANDOM_BYTES)
def test_npz_random_bytes_never_crash_the_cli(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, "bad.npz", data)
        check_spec(f"npz:{path}", path)


@FUZZ
@given(arrays=npz_contents(), compressed=st.booleans())
def test_npz_wrong_arrays_never_crash_the_cli(arrays, compressed):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wrong.npz"
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
        check_spec(f"npz:{path}", path)


@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flip=st.integers(0, 10**6), mode=st.sampled_from(["cut", "flip"]))
@example(cut=0.0, flip=610172, mode="flip")  # a member offset past the end: seek raised EINVAL without the file's name
def test_npz_truncated_or_damaged_archives_never_crash_the_cli(cut, flip, mode):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.npz"
        np.savez(path, **_valid_windows(np.random.default_rng(0)))
        data = bytearray(path.read_bytes())
        if mode == "cut":
            data = data[: int(cut * len(data))]
        else:
            data[flip % len(data)] ^= 1 << (flip % 8)
        path.write_bytes(bytes(data))
        check_spec(f"npz:{path}", path)


def test_npz_with_a_pickled_member_is_refused_as_data(tmp_path):
    path = tmp_path / "pickled.npz"
    arrays = _valid_windows(np.random.default_rng(0))
    arrays["class_names"] = np.array(["a", None, 3], dtype=object)
    np.savez(path, **arrays)
    code, _, err = _data_info(f"npz:{path}")
    assert code in (2, 3) and "pickled.npz" in err and len(err.strip().splitlines()) == 1, err
    with zipfile.ZipFile(path) as z:  # the fixture really holds a pickle, not something numpy refuses earlier
        assert any(n.startswith("class_names") for n in z.namelist())


@FUZZ
@given(files=ucr_files(), spec_side=st.sampled_from(["TRAIN", "TEST", "prefix"]))
def test_ucr_archive_files_never_crash_the_cli(files, spec_side):
    ext, train, test = files
    with tempfile.TemporaryDirectory() as tmp:
        tr = _write(tmp, f"Fuzz_TRAIN{ext}", train)
        _write(tmp, f"Fuzz_TEST{ext}", test)
        spec_path = str(Path(tmp) / "Fuzz") if spec_side == "prefix" else str(Path(tmp) / f"Fuzz_{spec_side}{ext}")
        check_spec(f"ucr:{spec_path}", tr)


def _npz(path: Path, arrays: dict[str, Any]) -> None:
    np.savez(path, **arrays)


def _windows_with(**changes: np.ndarray) -> dict[str, np.ndarray]:
    return {**_valid_windows(np.random.default_rng(0)), **changes}


def _stream_with(**changes: np.ndarray) -> dict[str, np.ndarray]:
    return {**_valid_stream(np.random.default_rng(0)), **changes}


def _flip(path: Path, at: int, arrays: dict[str, Any]) -> None:
    """Saves ``arrays`` to ``path``, then flips one bit of byte ``at``."""
    _npz(path, arrays)
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


# Cases the fuzzing above found (2026-12, issue #27), kept as fixed examples so they run every time.
KNOWN = {
    "npz-empty-file": ("x.npz", lambda p: p.write_bytes(b"")),
    "npz-rate-1d": ("x.npz", lambda p: _npz(p, _windows_with(rate_hz=np.array([1.0, 2.0])))),
    "npz-rate-nan": ("x.npz", lambda p: _npz(p, _windows_with(rate_hz=np.array(np.nan)))),
    "npz-units-0d": ("x.npz", lambda p: _npz(p, _windows_with(channel_units=np.array(1.5)))),
    "npz-offsets-0d": ("x.npz", lambda p: _npz(p, _stream_with(offsets=np.array(5)))),
    "npz-signal-1d": ("x.npz", lambda p: _npz(p, _stream_with(signal=np.zeros(150, np.float32)))),
    "npz-bad-crc": ("x.npz", lambda p: _flip(p, 200, _windows_with())),
    "npz-label-outside": ("x.npz", lambda p: _npz(p, _windows_with(y_test=np.array([0, 1, 99])))),
    "npz-inf": ("x.npz", lambda p: _npz(p, _windows_with(X_train=np.full((6, 3, 8), np.inf, np.float32)))),
    "csv-1e308": ("x.csv", lambda p: p.write_text("time_s,acc_x\n0,1e308\n0.01,1\n0.02,1\n")),
    "csv-rate-not-a-number": ("x.csv?rate=x", lambda p: p.write_text("time_s,acc_x\n0,1\n0.01,1\n")),
    "csv-rate-negative": ("x.csv?rate=-1", lambda p: p.write_text("time_s,acc_x\n0,1\n0.01,1\n")),
    "csv-not-utf8": ("x.csv", lambda p: p.write_bytes(b"time_s,acc_x\n0,1\xe9\n")),
}


# cases still open (none now); strict, so a fix turns the xfail into a failure that says to delete the entry
OPEN: dict[str, str] = {}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=OPEN[c])) if c in OPEN
                                  else c for c in sorted(KNOWN)])  # fmt: skip
def test_known_bad_files(case, tmp_path):
    name, make = KNOWN[case]
    path = tmp_path / name.partition("?")[0]
    make(path)
    scheme = path.suffix.lstrip(".")
    check_spec(f"{scheme}:{tmp_path / name}", path)


def test_the_contract_itself_fails_on_a_crashing_loader(tmp_path, monkeypatch):
    """The check above is not vacuous: a loader that raises an unexpected exception is caught by it."""
    from edgessl.datasets import csv_recording

    def boom(path, rate_hz=None, label_column="label"):  # a bug, not a bad file: the registry turns malformed-file errors into
        raise ZeroDivisionError("division by zero")  # data errors, but not this

    monkeypatch.setattr(csv_recording, "read_csv_recording", boom)
    path = _write(str(tmp_path), "rec.csv", b"time_s,acc_x\n0,1\n")
    with pytest.raises(AssertionError, match="exit 70"):
        check_spec(f"csv:{path}", path)


@pytest.mark.parametrize("subject_test", [np.array(0.0, np.float32), np.array([1, 2]), np.array([0.5] * 40)])
def test_npz_group_arrays_of_another_shape_are_a_data_error(tmp_path, subject_test):
    """A fuzz case: a scalar ``subject_test`` reached ``data info``'s group counts (exit 70, TypeError)."""
    path = tmp_path / "groups.npz"
    arrays = _valid_windows(np.random.default_rng(0))
    arrays["subject_train"] = np.arange(len(arrays["y_train"])) % 3
    arrays["subject_test"] = subject_test if subject_test.ndim == 0 or len(subject_test) != 40 else subject_test[: len(arrays["y_test"])]
    np.savez(path, **arrays)
    code, _, err = _data_info(f"npz:{path}")
    assert code == 3 and "subject_test" in err and "groups.npz" in err and len(err.strip().splitlines()) == 1, err
