"""SessionWriter -> read_session: lossless samples, gaps, timeline resets, segments, redo, crash safety."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgessl.datasets import DataFormatError, SessionWriter, load, load_windows, read_session
from edgessl.datasets.session import FLAG_BITS
from edgessl.preprocess import resample_to_length

from .helpers import CHANNELS, RATE, performance, write_session


def _writer(folder, **kw):
    args = dict(kind="labelled", user="A", device={"port": "p"}, rate_hz=RATE, channels=CHANNELS, units=["g"] * 3)
    return SessionWriter(folder, **{**args, **kw})


def test_round_trip_is_lossless_and_segments_map_to_the_samples(tmp_path):
    rng = np.random.default_rng(1)
    w = _writer(tmp_path)
    x = rng.normal(0, 1, (200, 3)).astype(np.float32) * np.float32(1e-3) + np.float32([0.1, -3.3e-7, 1.0])
    t = 1000.0 + np.arange(200) / RATE
    w.append(t[:77], x[:77])
    w.append(t[77:], x[77:])
    w.add_segment("circle", t[20], t[60], energy=0.5, flags=[])  # end exclusive: samples 20..59
    w.close()
    ds, meta = read_session(w.path_csv)
    np.testing.assert_array_equal(ds.signal, x.T)  # bit for bit
    assert ds.channel_names == CHANNELS and ds.channel_units == ["g"] * 3 and ds.rate_hz == RATE
    assert meta["samples"] == 200 and meta["ended"] is not None and meta["session"] == w.session
    assert ds.class_names == ["circle"]
    np.testing.assert_array_equal(ds.extra["segments"], [[20, 60, 0, 0]])
    assert (ds.sample_labels[20:60] == 0).all() and (ds.sample_labels[:20] == -1).all() and ds.sample_labels[60] == -1


def test_gaps_and_timeline_resets_keep_the_axis_rising_and_performances_in_place(tmp_path):
    plan = ["circle", "left", "up", "circle", "left", "up"]
    w, kept = write_session(tmp_path, "A", plan, seed=2, gap_in=1, reset_at=3)
    text = w.path_csv.read_text()
    gaps = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert len(gaps) == 2 and "timeline_reset=1" in gaps[1] and gaps[0].startswith("# gap at_ms=")
    ds, meta = read_session(w.path_csv)
    t_ms = ds.timestamps * 1000 + float(ds.extra["t0_s"]) * 1000
    assert np.all(np.diff(t_ms) > 0)
    # after the reset the axis continues after the last sample plus the host-measured gap (0.7 s)
    first_after = kept[3][1]
    assert t_ms[first_after] - t_ms[first_after - 1] == pytest.approx(700.0)
    assert [g["timeline_reset"] for g in meta["gaps"]] == [False, True]
    segs = ds.extra["segments"]
    assert [(ds.class_names[c], a, b) for a, b, c, _ in segs.tolist()] == [(lab, a, b) for lab, a, b in kept]
    # the performance a gap went through is flagged, by the writer, without the caller saying so
    assert meta["segments"][1]["flags"] == ["gap"] and segs[1, 3] == FLAG_BITS["gap"]
    assert (segs[np.arange(len(segs)) != 1, 3] == 0).all()


def test_segments_become_windows_of_exactly_their_samples(tmp_path):
    w, kept = write_session(tmp_path, "A", ["circle", "left", "up"] * 2, seed=3)
    ds, _ = read_session(w.path_csv)
    wd = load_windows(f"csv:{w.path_csv}?length=40")
    assert wd.rate_hz is None and wd.length == 40 and "split by take" in wd.name
    X = np.concatenate([wd.X_train, wd.X_test])
    y = np.concatenate([wd.y_train, wd.y_test])
    # each window is the samples the segmenter cuts of its performance (as run cuts live): these labels hug the
    # bursts, the cuts differ by the samples the energy window takes to rise and fall
    cut = load(f"csv:{w.path_csv}").extra["segments"]
    assert len(cut) == len(kept) and np.abs(cut[:, :2] - [[a, b] for _, a, b in kept]).max() <= 3
    expect = {(lab, tuple(np.round(resample_to_length(ds.signal[:, a:b], 40), 6).ravel()))
              for (lab, _, _), (a, b) in zip(kept, cut[:, :2].tolist(), strict=True)}  # fmt: skip
    got = {(wd.class_names[c], tuple(np.round(xx, 6).ravel())) for xx, c in zip(X, y, strict=True)}
    assert got == expect


def test_redo_counts_takes_and_a_crash_keeps_samples_and_kept_performances(tmp_path):
    w = _writer(tmp_path, segmentation={"threshold_g": 0.05})
    rng = np.random.default_rng(0)
    x = performance("circle", 300, rng)
    t = np.arange(300) / RATE
    w.append(t, x)
    assert w.add_segment("circle", t[10], t[40], energy=1, flags=[])["take"] == 1
    assert w.add_segment("circle", t[50], t[90], energy=1, flags=[])["take"] == 2
    assert w.drop_last_segment()["start_ms"] == pytest.approx(t[50] * 1000)
    assert w.add_segment("circle", t[100], t[140], energy=1, flags=[])["take"] == 2
    assert w.add_segment("left", t[150], t[190], energy=1, flags=["weak"])["take"] == 1
    assert w.counts() == {"circle": 2} and w.counts(flagged=True) == {"left": 1}  # training leaves a flagged one out
    w.set_counters({"crc_errors": 3})
    w.flush()
    # no close(): what a crash leaves behind is readable, every sample and every kept performance in it
    meta = json.loads(w.path_json.read_text())
    assert meta["ended"] is None and meta["counters"] == {"crc_errors": 3} and len(meta["segments"]) == 3
    assert meta["segmentation"] == {"threshold_g": 0.05}
    ds, _ = read_session(w.path_csv)
    assert ds.signal.shape[1] == 300 and ds.extra["segments"][2, 3] == FLAG_BITS["other"]
    np.testing.assert_array_equal(ds.extra["takes"], [1, 2, 1])
    assert not list(tmp_path.glob("*.tmp"))  # the sidecar is replaced atomically, nothing left over
    w.close()


def test_writer_never_touches_existing_files(tmp_path):
    a = _writer(tmp_path)
    b = _writer(tmp_path)  # same second, same user and kind: another name, not the same files
    assert a.path_csv != b.path_csv and a.path_json != b.path_json
    a.append(np.arange(3) / RATE, np.array([[0, 0, 0], [np.inf, 0, 1e300], [0, np.nan, 0]]))
    a.close()
    b.close()
    assert len(a.path_csv.read_text().splitlines()) == 4 and len(b.path_csv.read_text().splitlines()) == 1
    # values the csv: loader would refuse are written as missing, and counted (the file stays readable)
    assert json.loads(a.path_json.read_text())["nonfinite_values"] == 2
    assert read_session(a.path_csv)[0].signal[:, 1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="kind"):
        _writer(tmp_path, kind="other")
    with pytest.raises(ValueError, match="x \\[n, 3\\]"):
        a2 = _writer(tmp_path / "x")
        a2.append(np.arange(2), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: json.dumps({**m, "format": "other"}), "'format' must be 'edgessl-session'"),
        (lambda m: json.dumps({**m, "channels": ["a", "b", "c"]}), "do not match the columns"),
        (lambda m: json.dumps({**m, "rate_hz": 25.0}), "rate_hz 25 does not match the timestamps"),
        (lambda m: json.dumps({**m, "rate_hz": "fast"}), "'rate_hz' must be a number"),
        (lambda m: json.dumps({**m, "segments": [{"label": "x", "start_ms": 5, "end_ms": 1}]}), "end_ms > start_ms"),
        (lambda m: json.dumps({**m, "segments": [{"label": "x", "start_ms": 9e9, "end_ms": 9.1e9}]}), "holds no sample"),
    ],
)
def test_a_malformed_sidecar_is_a_data_error_naming_it(tmp_path, edit, match):
    w, _ = write_session(tmp_path, "A", ["circle"])
    w.path_json.write_text(edit(json.loads(w.path_json.read_text())))
    for spec in (f"csv:{w.path_csv}", f"dir:{tmp_path}"):
        with pytest.raises(DataFormatError, match=match) as e:
            load(spec)
        assert w.path_json.name in str(e.value)
