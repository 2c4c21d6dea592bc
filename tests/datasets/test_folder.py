"""``dir:`` folders and labelled CSVs: splits that never leak, windows, pretraining pools, data info, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edgessl.cli import main
from edgessl.datasets import DataFormatError, describe, load, load_windows, pool_windows
from edgessl.preprocess import resample_to_length
from edgessl.segmenter import SegmentParams, segment_signal
from edgessl.trainer.data import (
    DataConfig,
    label_budget_split,
    labelled,
    unlabelled_windows,
    window_units,
)

from .helpers import LABELS, activity_csv, write_session

PLAN = LABELS * 5  # 5 performances of each class


@pytest.fixture(scope="module")
def two_users(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_users")
    write_session(root / "A", "A", PLAN, seed=1)
    write_session(root / "A", "A", [], seed=2, kind="unlabelled")
    write_session(root / "B", "B", PLAN, seed=3)
    write_session(root / "B", "B", [], seed=4, kind="unlabelled")
    return root


def test_folder_loads_sessions_users_and_segments(two_users):
    ds = load(f"dir:{two_users}")
    assert ds.n_recordings == 4 and ds.class_names == sorted(LABELS) and ds.rate_hz == 50.0
    assert [str(u) for u in ds.extra["user_names"]] == ["A", "B"]
    np.testing.assert_array_equal(ds.recording_groups["user"], [0, 0, 1, 1])
    assert len(ds.extra["segments"]) == 2 * len(PLAN)
    for a, b, c, _ in ds.extra["segments"].tolist():  # global sample indices, labels in the union's order
        assert (ds.sample_labels[a:b] == c).all() and ds.offsets[0] <= a < b <= ds.offsets[-1]


def test_user_split_keeps_users_and_their_sessions_apart(two_users):
    wd = load_windows(f"dir:{two_users}")
    assert "split by user" in wd.name and wd.length == 64 and wd.rate_hz is None
    users_train, users_test = wd.groups["user"]
    assert set(users_train.tolist()) == {0} and set(users_test.tolist()) == {1}
    assert len(wd.y_train) == len(wd.y_test) == len(PLAN)
    # nothing of user B (the test split), not even B's unlabelled session, reaches pretraining: the pool is
    # exactly the segmenter's cuts of A's two sessions, stretched to 64
    ds = load(f"dir:{two_users}")
    X, rate = pool_windows(ds)
    assert rate is None and X.shape[1:] == (3, 64)
    expect = []
    for k in np.flatnonzero(ds.recording_groups["user"] == 0).tolist():
        rec = ds.recording(k)
        cuts = segment_signal(rec, 50.0, SegmentParams(threshold_g=0.05))
        expect += [resample_to_length(rec[:, a:b], 64) for a, b in cuts.tolist()]
    assert len(expect) >= len(PLAN)
    np.testing.assert_allclose(X, np.stack(expect), rtol=1e-6)


def test_session_split_for_one_user_and_pool_without_the_test_session(tmp_path):
    for seed in (1, 2, 3):
        write_session(tmp_path, "A", PLAN, seed=seed)
    ds = load(f"dir:{tmp_path}")
    wd = load_windows(f"dir:{tmp_path}")
    assert "split by session" in wd.name
    s_train, s_test = wd.groups["session"]
    assert set(s_test.tolist()) == {2} and set(s_train.tolist()) == {0, 1}  # the newest session is the test
    X, _ = pool_windows(ds)
    # the pool holds exactly the segmenter's cuts of the two training sessions
    expect = []
    for k in (0, 1):
        rec = ds.recording(k)
        expect += [resample_to_length(rec[:, a:b], 64) for a, b in segment_signal(rec, 50.0).tolist()]
    assert len(expect) >= 2 * len(PLAN)
    np.testing.assert_allclose(X, np.stack(expect), rtol=1e-6)


def test_take_split_never_splits_a_performance_and_warns(tmp_path):
    write_session(tmp_path, "A", PLAN, seed=5)
    wd = load_windows(f"dir:{tmp_path}?input=sliding,length=16")
    assert "split by take" in wd.name and wd.rate_hz == 50.0 and wd.length == 16
    p_train, p_test = wd.groups["performance"]
    assert not set(p_train.tolist()) & set(p_test.tolist())
    assert len(set(p_test.tolist())) == 3 and len(wd.y_train) > len(set(p_train.tolist()))  # overlapping windows
    for c in range(3):  # per class, the last performance is the test one
        assert (wd.y_test == c).any() and (wd.y_train == c).any()
    info = describe(load(f"dir:{tmp_path}"))
    assert info["split"]["by"] == "take" and any("take" in w for w in info["warnings"])
    assert any("one session" in w for w in info["warnings"])
    # the pool (sliding, 16 samples) leaves out every window touching a test performance
    ds = load(f"dir:{tmp_path}?input=sliding,length=16")
    X, rate = pool_windows(ds)
    assert rate == 50.0 and X.shape[1:] == (3, 16)
    test_windows = {tuple(w.ravel()) for w in wd.X_test}
    assert not any(tuple(w.ravel()) in test_windows for w in X)


def test_validation_keeps_a_performances_overlapping_windows_together(tmp_path):
    # sliding windows overlap by half: a validation window whose neighbours trained the model is no held-out
    # evidence (a walkthrough's activities read 0.969 on such a split against 0.953 on whole performances)
    for seed in (1, 2, 3):
        write_session(tmp_path, "A", PLAN, seed=seed)
    wd = load_windows(f"dir:{tmp_path}?input=sliding,length=16")
    units = window_units(wd)
    assert units is not None and len(units) == len(wd.y_train)
    perf = wd.groups["performance"][0]
    for u in np.unique(units):  # a unit is one performance's windows
        rows = np.flatnonzero(units == u)
        assert len(set(perf[rows].tolist())) == 1 and np.all(np.diff(rows) == 1)
        assert set(rows.tolist()) == set(np.flatnonzero(perf == perf[rows[0]]).tolist())
    for seed in range(3):
        tr, va = label_budget_split(wd.y_train, seed=seed, units=units)
        assert len(va) and set(units[tr]).isdisjoint(units[va])
        assert set(wd.y_train[va].tolist()) == set(wd.y_train.tolist())  # still stratified by class
        folds = [label_budget_split(wd.y_train, seed=seed, units=units, fold=(i, 4))[1] for i in range(4)]
        assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(units)))
        assert all(set(units[f]).isdisjoint(units[g]) for i, f in enumerate(folds) for g in folds[i + 1:])
    assert window_units(load_windows(f"dir:{tmp_path}")) is None  # gestures: one window per performance
    # a class recorded as one performance splits in two halves (else it would have no validation windows)
    one = dataclasses.replace(wd, y_train=np.where(perf == perf[wd.y_train == 2][0], 3, wd.y_train))
    halves = window_units(one)[one.y_train == 3]
    assert len(set(halves.tolist())) == 2 and np.all(np.diff(halves) >= 0)
    assert 3 in one.y_train[label_budget_split(one.y_train, seed=0, units=window_units(one))[1]]


def test_flagged_performances_are_left_out_and_reported(tmp_path):
    write_session(tmp_path, "A", PLAN, seed=6, gap_in=4)
    wd = load_windows(f"dir:{tmp_path}")
    assert len(wd.y_train) + len(wd.y_test) == len(PLAN) - 1 and "1 flagged" in wd.name
    info = describe(load(f"dir:{tmp_path}"))
    assert info["flagged"] == 1 and any("overlap a gap" in w for w in info["warnings"])
    assert info["per_class"]["left"] == 4  # counts are of usable performances


def test_data_info_counts_and_warnings(tmp_path, capsys):
    write_session(tmp_path / "A", "A", ["circle"] * 6 + ["left"] * 2 + ["up"] * 6, seed=7)
    write_session(tmp_path / "B", "B", ["circle", "up"], seed=8)
    assert main(["data", "info", f"dir:{tmp_path}", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    info = json.loads(out[-1])
    assert info["kind"] == "stream" and info["per_class"] == {"circle": 7, "left": 2, "up": 7}
    assert info["per_user"] == {"A": {"sessions": 1, "performances": 14}, "B": {"sessions": 1, "performances": 2}}
    assert info["split"]["by"] == "user" and info["split"]["test_users"] == ["B"]
    warnings = "\n".join(info["warnings"])
    assert "fewer than 5 performances for class(es) {'left': 2}" in warnings
    assert "class imbalance: 7 vs 2" in warnings
    assert "['left'] have no test windows" in warnings
    text = "\n".join(out[:-1])
    assert "per class: circle 7, left 2, up 7" in text and "warning: class imbalance" in text
    assert "split by user: 14 train / 2 test windows" in text
    # split by session of one user: a user only in one split is named
    write_session(tmp_path / "B", "B", ["circle", "left", "up"], seed=9)
    info = describe(load(f"dir:{tmp_path}?split=session"))
    assert any("user 'A' is only in the" in w for w in info["warnings"]), info["warnings"]


def test_edge_impulse_csv_with_labels_fine_tunes(tmp_path):
    """timestamp (ms) + label columns: runs of one label are performances; finetune's data side accepts it."""
    rng = np.random.default_rng(0)
    rows, t = [], 0
    for k in range(12):
        lab = LABELS[k % 3]
        for i in range(70):
            label = lab if 15 <= i < 55 else ""
            v = rng.normal(0, 0.05, 3) + (0.5 * np.sin(i / 5.0) if label else 0.0)
            rows.append(f"{t},{float(v[0])!r},{float(v[1])!r},{float(v[2])!r},{label}")
            t += 20
    path = tmp_path / "ei.csv"
    path.write_text("timestamp,accX,accY,accZ,label\n" + "\n".join(rows) + "\n")
    ds, X_train, X_test = labelled(DataConfig(spec=f"csv:{path}"))
    assert ds.class_names == sorted(LABELS) and X_train.shape == (9, 3, 64) and X_test.shape == (3, 3, 64)
    np.testing.assert_allclose(X_train.mean(axis=-1), 0, atol=1e-4)  # the default standardisation
    # pretraining on the same CSV gives windows of the same length and preprocessing
    U, names = unlabelled_windows(DataConfig(spec=f"csv:{path}"))
    assert U.shape[1:] == X_train.shape[1:] and names == ["accX", "accY", "accZ"]
    slid = load_windows(f"csv:{path}?input=sliding,length=20")
    assert slid.rate_hz == pytest.approx(50.0) and len(slid.y_train) == 9 * 3  # 40-sample runs: windows at 0, 10, 20
    # a plain CSV without labels is still a stream that cannot be fine-tuned on, with a hint
    (tmp_path / "plain.csv").write_text("timestamp,ax\n0,1\n20,2\n40,3\n")
    with pytest.raises(DataFormatError, match="label"):
        labelled(DataConfig(spec=f"csv:{tmp_path / 'plain.csv'}"))


def _ei_csv(path: Path, seed: int) -> None:
    """An Edge Impulse style labelled CSV (timestamp ms, a label column): 6 performances, idle between."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for k in range(6):
        for i in range(70):
            label = LABELS[k % 3] if 15 <= i < 55 else ""
            v = rng.normal(0, 0.05, 3) + (0.5 * np.sin(i / 5.0) if label else 0.0)
            rows.append(f"{t},{float(v[0])!r},{float(v[1])!r},{float(v[2])!r},{label}")
            t += 20
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,accX,accY,accZ,label\n" + "\n".join(rows) + "\n")


def test_csv_files_without_sidecars_belong_to_the_person_their_subfolder_names(tmp_path):
    for user in ("anna", "bob", "cleo"):
        for day in (1, 2):
            _ei_csv(tmp_path / "mine" / user / f"day{day}.csv", seed=day)
    ds = load(f"dir:{tmp_path / 'mine'}")
    assert sorted(ds.extra["user_names"].tolist()) == ["anna", "bob", "cleo"]
    info = describe(ds)
    assert info["split"]["by"] == "user" and info["split"]["test_users"] == ["cleo"], info["split"]
    # files directly in the folder: users unknown, split by session, and the warning says how to name them
    for day in (1, 2, 3):
        _ei_csv(tmp_path / "flat" / f"day{day}.csv", seed=day)
    info = describe(load(f"dir:{tmp_path / 'flat'}"))
    assert info["split"]["by"] == "session"
    assert any(w.startswith("users unknown") and "subfolder named after them" in w for w in info["warnings"]), info


def test_pretrain_and_finetune_get_the_same_windows_by_default(two_users):
    spec = f"dir:{two_users}"
    _, X_train, _ = labelled(DataConfig(spec=spec))
    U, _ = unlabelled_windows(DataConfig(spec=spec))
    assert U.shape[1:] == X_train.shape[1:] == (3, 64)
    _, X_train, _ = labelled(DataConfig(spec=spec, length=32))
    U, _ = unlabelled_windows(DataConfig(spec=spec, length=32))
    assert U.shape[1:] == X_train.shape[1:] == (3, 32)


def test_folder_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(DataFormatError, match=f"{tmp_path}: no recording sessions"):
        load(f"dir:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load(f"dir:{tmp_path / 'missing'}")
    a, _ = write_session(tmp_path / "a", "A", ["circle"])
    with pytest.raises(ValueError, match="unknown dir option"):
        load(f"dir:{tmp_path}?lenght=3")
    with pytest.raises(DataFormatError, match="split=user needs labelled performances of at least 2 users"):
        load_windows(f"dir:{tmp_path}?split=user")
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "edgessl-dataset", "version": 1, "length": "x"}))
    with pytest.raises(DataFormatError, match="dataset.json: length must be"):
        load(f"dir:{tmp_path}")
    (tmp_path / "dataset.json").write_text(json.dumps({"format": "edgessl-dataset", "version": 1,
                                                       "input_mode": "sliding", "length": 24}))  # fmt: skip
    assert load_windows(f"dir:{tmp_path}").length == 24 and "sliding" in load_windows(f"dir:{tmp_path}").name
    b, _ = write_session(tmp_path / "b", "B", ["circle"])
    meta = json.loads(b.path_json.read_text())
    # a session at another rate: refused naming both files (the CSV timestamps say 50 Hz, so rewrite them)
    lines = b.path_csv.read_text().splitlines()
    out = [lines[0]] + [f"{float(ln.split(',', 1)[0]) / 2!r},{ln.split(',', 1)[1]}" for ln in lines[1:]
                        if not ln.startswith("#")]  # fmt: skip
    b.path_csv.write_text("\n".join(out) + "\n")
    b.path_json.write_text(json.dumps({**meta, "rate_hz": 100.0, "segments": []}))
    with pytest.raises(DataFormatError, match="recorded at 100.0 Hz but .* at 50.0 Hz") as e:
        load(f"dir:{tmp_path}")
    assert a.path_csv.name in str(e.value) and b.path_csv.name in str(e.value)
    b.path_csv.unlink()
    with pytest.raises(DataFormatError, match="a session sidecar without its samples"):
        load(f"dir:{tmp_path}")


def test_a_session_without_samples_is_skipped_and_reported(tmp_path):
    write_session(tmp_path, "A", PLAN, seed=1)
    w, _ = write_session(tmp_path, "A", [], seed=2, kind="unlabelled")
    w.path_csv.write_text(w.path_csv.read_text().splitlines()[0] + "\n")  # stopped before the first sample
    ds = load(f"dir:{tmp_path}")
    assert ds.n_recordings == 1
    info = describe(ds)
    assert info["empty_sessions"] == [w.session] and any("hold no samples" in x for x in info["warnings"])


def test_data_info_counts_a_performance_too_short_for_a_window(tmp_path, capsys):
    _ei_csv(tmp_path / "mine" / "anna" / "day1.csv", seed=1)
    _ei_csv(tmp_path / "mine" / "bob" / "day1.csv", seed=2)
    f = tmp_path / "mine" / "bob" / "day1.csv"
    f.write_text(f.read_text() + "".join(f"{100000 + 20 * i},0.0,0.0,1.0,{lab}\n" for i, lab in enumerate(["", "up", ""])))
    info = describe(load(f"dir:{tmp_path / 'mine'}"))
    assert "1 performance(s) shorter than 2 samples are left out" in info["warnings"], info["warnings"]


def test_one_session_in_mg_among_sessions_in_g_is_named(tmp_path):
    _ei_csv(tmp_path / "mine" / "anna" / "day1.csv", seed=1)
    _ei_csv(tmp_path / "mine" / "anna" / "day2.csv", seed=2)
    f = tmp_path / "mine" / "anna" / "day2.csv"
    rows = f.read_text().splitlines()
    f.write_text("\n".join([rows[0]] + [",".join([r.split(",")[0], *(str(1000 * (float(v) + (i == 2)))
                                                                      for i, v in enumerate(r.split(",")[1:4])),
                                                   r.split(",")[4]]) for r in rows[1:]]) + "\n")  # fmt: skip
    with pytest.raises(DataFormatError, match=r"day2.csv: the accelerometer channels .* they look like mg"):
        load(f"dir:{tmp_path / 'mine'}")


def test_an_arduino_sketchs_ax_ay_az_in_raw_counts_is_named(tmp_path):
    """`ax,ay,az` (the common sketches' header) mean an accelerometer: in g, so raw counts are caught."""
    from edgessl.units import unit_from_channel

    assert [unit_from_channel(n) for n in ("ax", "AY", "az", "x")] == ["g", "g", "g", "unknown"]
    _ei_csv(tmp_path / "mine" / "anna" / "day1.csv", seed=1)
    f = tmp_path / "mine" / "anna" / "day1.csv"
    rows = f.read_text().splitlines()
    head = rows[0].split(",")
    f.write_text("\n".join([",".join([head[0], "ax", "ay", "az", *head[4:]])]
                           + [",".join([r.split(",")[0], *(str(round(16384 * (float(v) + (i == 2))))
                                                           for i, v in enumerate(r.split(",")[1:4])),
                                        *r.split(",")[4:]]) for r in rows[1:]]) + "\n")  # fmt: skip
    with pytest.raises(DataFormatError, match=r"day1.csv: the accelerometer channels \['ax', 'ay', 'az'\] .* raw counts "
                                              r"\(16384 per g"):  # fmt: skip
        load(f"dir:{tmp_path / 'mine'}")


def test_data_info_says_when_takes_of_one_label_ran_together(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"{20 * i},{rng.normal(0, 0.3)!r},0.0,1.0,{'up' if 10 <= i < 400 else ''}" for i in range(420)]
    (tmp_path / "one.csv").write_text("timestamp,accX,accY,accZ,label\n" + "\n".join(rows) + "\n")
    info = describe(load(f"dir:{tmp_path}"))
    assert any(w.startswith("1 labelled performance(s) longer than 3.2 s") for w in info["warnings"]), info["warnings"]


def test_a_gyroscope_named_gx_or_gyrx_is_one_and_a_unit_declared_for_no_column_is_an_error(tmp_path):
    """A walkthrough's recordings named their gyroscope gx,gy,gz (the Arduino sketches' names; Edge Impulse's are
    gyrX ..): read as unknown, `?gyro=deg/s` converted nothing, silently, and the model trained on deg/s."""
    from edgessl.units import unit_from_channel

    assert [unit_from_channel(n) for n in ("gx", "GY", "gz", "gyrX", "gyro_z")] == ["rad/s"] * 5
    rng = np.random.default_rng(0)
    rows, t = [], 0
    for k in range(6):
        for i in range(70):
            label = LABELS[k % 3] if 15 <= i < 55 else ""
            v = rng.normal(0, 0.05, 6) + (0.5 * np.sin(i / 5.0) if label else 0.0)
            v[2] += 9.81  # m/s²
            v[3:] *= 57.3 * 4  # deg/s: a turn of a few rad/s
            rows.append(f"{t},{','.join(repr(float(x)) for x in v)},{label}")
            t += 20
    f = tmp_path / "mine" / "anna" / "day1.csv"
    f.parent.mkdir(parents=True)
    f.write_text("timestamp,ax,ay,az,gx,gy,gz,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"gyroscope channels \['gx', 'gy', 'gz'\] are read as rad/s.* declare the "
                                              r"unit and it is converted: dir:.*mine\?acc=m/s2,gyro=deg/s"):  # fmt: skip
        load(f"dir:{tmp_path / 'mine'}?acc=m/s2")
    ds = load(f"dir:{tmp_path / 'mine'}?acc=m/s2,gyro=deg/s")
    assert list(ds.channel_units) == ["g"] * 3 + ["rad/s"] * 3
    # the gyroscope named as such: as many channels in the model as in the file, converted to rad/s
    assert float(np.abs(ds.signal[3:]).max()) < 20, float(np.abs(ds.signal[3:]).max())
    # a unit declared for a sensor no column is: an error naming the file, the columns and the names expected
    f.write_text("timestamp,ax,ay,az,label\n" + "\n".join(",".join(r.split(",")[:4] + r.split(",")[-1:]) for r in rows)
                 + "\n")  # fmt: skip
    with pytest.raises(DataFormatError, match=r"day1.csv: gyro=deg/s declares the gyroscope's unit, but no column is "
                                              r"read as one .*expected its columns named gyro_x,gyro_y,gyro_z"):  # fmt: skip
        load(f"dir:{tmp_path / 'mine'}?acc=m/s2,gyro=deg/s")


def test_activity_recordings_with_their_own_label_column_are_named_as_activities(tmp_path):
    """A walkthrough's activity recordings (labels in an `activity` column, the gyroscope as gx,gy,gz): the column
    is named by `label=`, the first text after empty cells says so, and read as gestures (the default) the long
    classes are named as activities, with the options that read them as such."""
    for user in ("anna", "bob", "cleo"):
        activity_csv(tmp_path / "rec" / user / "day1.csv", seed=len(user))
    spec = f"dir:{tmp_path / 'rec'}?acc=m/s2,gyro=deg/s"
    with pytest.raises(DataFormatError, match=r"got 'WALKING' \(column 'activity'\): a column of names is read as the "
                                              r"labels only when it is called 'label' \(or named by the spec's option "
                                              r"label=activity\)"):  # fmt: skip
        load(spec)
    with pytest.raises(DataFormatError, match=r"no column 'mood' \(label=\) in the header"):
        load(f"{spec},label=mood")
    info = describe(load(f"{spec},label=activity"))
    said = next(w for w in info["warnings"] if "far longer than a gesture" in w)
    assert said.startswith("class(es) ['SITTING', 'WALKING'] last 15 s, 15 s at the median") and (
        "input=sliding,length=2.56s" in said and "--recipe activities" in said), said
    with pytest.warns(UserWarning, match=r"last far longer than a gesture \(activities\), yet pretraining reads it"):
        unlabelled_windows(DataConfig(spec=f"{spec},label=activity"))
    # read as activities: windows of 2.56 s at the data's rate, every class kept
    wd = load_windows(f"{spec},label=activity,input=sliding,length=2.56s")
    assert wd.X_train.shape[1:] == (6, 128) and sorted(wd.class_names) == ["SITTING", "SIT_TO_STAND", "WALKING"]
    assert not any("longer than 3.2 s" in w for w in describe(load(f"{spec},label=activity,input=sliding")).get(
        "warnings", [])), "a gesture's length limit said of sliding windows"  # fmt: skip
    from edgessl.datasets.types import SpecOptionError

    with pytest.raises(SpecOptionError, match=r"length= must be a whole number of samples >= 2 \(or, with "
                                              r"input=sliding, a duration such as 2.56s\); got '2.56s'"):  # fmt: skip
        load(f"{spec},label=activity,length=2.56s")  # (segment windows are stretched: no rate to count seconds in)
