import numpy as np
import pytest

from edgessl import datasets as D

SHARED = ["uwave_gesture_ucr.npz", "uwave_gesture_uea.npz", "uwave_raw.npz", "uci_har.npz", "hapt_raw_streams.npz"]


@pytest.mark.parametrize("name", SHARED)
def test_shared_files_agree_with_manifest(data_dir, manifest, name):
    ds = D.load(f"npz:{data_dir / name}")
    arrays = manifest[name]["arrays"]
    if isinstance(ds, D.WindowDataset):
        assert list(ds.X_train.shape) == arrays["X_train"]["shape"]
        assert list(ds.X_test.shape) == arrays["X_test"]["shape"]
        assert ds.y_train.shape[0] == arrays["y_train"]["shape"][0]
        assert len(ds.class_names) == arrays["class_names"]["shape"][0]
        assert ds.groups["subject"][0].shape == ds.y_train.shape
    else:
        assert list(ds.signal.shape) == arrays["signal"]["shape"]
        off_key = "offsets" if "offsets" in arrays else "experiment_offsets"
        assert ds.n_recordings == arrays[off_key]["shape"][0] - 1
        assert len(ds.channel_names) == arrays["channel_names"]["shape"][0]


def test_bare_shared_name_resolves_and_known_rates(data_dir):
    assert D.load("npz:uci_har.npz").rate_hz == 50.0
    raw = D.load_stream("npz:uwave_raw.npz")
    assert raw.rate_hz == 100.0 and raw.recording_labels is not None
    assert set(raw.recording_groups) >= {"subject", "day", "repetition", "ucr_index"}
    hapt = D.load_stream("npz:hapt_raw_streams.npz")
    assert hapt.sample_labels is not None and "subject" in hapt.recording_groups
    with pytest.raises(D.DataFormatError, match="continuous-stream dataset"):
        D.load_windows("npz:uwave_raw.npz")


def test_uwave_raw_templates_rebuild_ucr_rows(data_dir):
    """The UCR procedure (stretch to 315, z-normalise with ddof=1) on raw templates gives the UCR rows."""
    raw = D.load_stream("npz:uwave_raw.npz")
    ucr = D.load_windows("npz:uwave_gesture_ucr.npz")
    split, index = raw.recording_groups["ucr_split"], raw.recording_groups["ucr_index"]
    X = D.uwave_ucr_windows(raw)
    for s, X_ucr, y_ucr in ((0, ucr.X_train, ucr.y_train), (1, ucr.X_test, ucr.y_test)):
        ks = np.flatnonzero(split == s)
        const = np.flatnonzero(np.ptp(X_ucr[index[ks]], axis=-1).min(-1) < 1e-3)  # the one constant channel
        ks = np.delete(ks, const)
        np.testing.assert_allclose(X[ks], X_ucr[index[ks]], atol=1e-4)
        np.testing.assert_array_equal(raw.recording_labels[ks], y_ucr[index[ks]])


def test_uwave_raw_templates_with_the_ucr_split_in_g(data_dir):
    """npz:uwave_raw.npz?split=ucr_split: the UCR split's gestures, in g, row for row the UCR rows' sources."""
    ds = D.load("npz:uwave_raw.npz?split=ucr_split,length=315")
    ucr = D.load_windows("npz:uwave_gesture_ucr.npz")
    assert (len(ds.y_train), len(ds.y_test)) == (896, 3582) and ds.channel_units == ["g"] * 3
    assert ds.rate_hz is None and "split" in ds.name and "ucr_split" not in ds.groups
    for key in ("train", "test"):
        index = ds.groups["ucr_index"][0 if key == "train" else 1]
        np.testing.assert_array_equal(getattr(ds, f"y_{key}"), getattr(ucr, f"y_{key}")[index])
        np.testing.assert_array_equal(ds.groups["subject"][0 if key == "train" else 1],
                                      ucr.groups["subject"][0 if key == "train" else 1][index])  # fmt: skip
    # gravity is still in the windows (about 1 g), unlike the archive's z-normalised rows
    assert 0.8 < np.median(np.linalg.norm(ds.X_train.mean(-1), axis=1)) < 1.2


def test_split_option_turns_labelled_recordings_into_windows(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 8, 1, 6, 7]
    sig = rng.normal(size=(2, sum(lengths))).astype(np.float32)
    p = tmp_path / "rec.npz"
    np.savez(p, signal=sig, offsets=np.concatenate([[0], np.cumsum(lengths)]), label=np.array([0, 1, 0, 1, 0]),
             where=np.array([0, 0, 1, 1, -1]), subject=np.array([1, 2, 3, 4, 5]),
             channel_names=np.array(["a", "b"]), class_names=np.array(["x", "y"]))  # fmt: skip
    ds = D.load(f"npz:{p}?split=where")
    assert ds.X_train.shape == (2, 2, 8) and ds.X_test.shape == (1, 2, 8)  # the length-1 recording is dropped
    np.testing.assert_array_equal(ds.y_train, [0, 1])
    np.testing.assert_array_equal(ds.groups["subject"][1], [4])
    np.testing.assert_allclose(ds.X_train[1], sig[:, 5:13])  # the longest recording is not stretched
    np.testing.assert_allclose(ds.X_train[0][:, [0, -1]], sig[:, [0, 4]])  # endpoints kept
    assert D.load(f"npz:{p}?split=where,length=4").X_test.shape == (1, 2, 4)
    with pytest.raises(D.DataFormatError, match="no per-recording split array 'nope'"):
        D.load(f"npz:{p}?split=nope")
    with pytest.raises(ValueError, match="unknown npz option"):
        D.load(f"npz:{p}?splitt=where")
    with pytest.raises(ValueError, match="length= must be a whole number"):
        D.load(f"npz:{p}?split=where,length=4.5")
    with pytest.raises(ValueError, match="length= applies with split="):
        D.load(f"npz:{p}?length=4")
    np.savez(tmp_path / "one.npz", signal=sig, offsets=np.concatenate([[0], np.cumsum(lengths)]),
             label=np.zeros(5, int), where=np.zeros(5, int))  # fmt: skip
    with pytest.raises(D.DataFormatError, match=r"some 1 \(test\)"):
        D.load(f"npz:{tmp_path / 'one.npz'}?split=where")
    X, y = _xy()
    np.savez(tmp_path / "win.npz", X_train=X, y_train=y, X_test=X, y_test=y)
    with pytest.raises(D.DataFormatError, match="already windowed"):
        D.load(f"npz:{tmp_path / 'win.npz'}?split=where")


def test_uea_rows_rebuilt_from_raw_templates(data_dir):
    """npz:uwave_raw.npz?like=uwave_gesture_uea.npz: the UEA split, order and labels, in g."""
    ds = D.load("npz:uwave_raw.npz?like=uwave_gesture_uea.npz,length=315")
    uea = D.load_windows("npz:uwave_gesture_uea.npz")
    np.testing.assert_array_equal(ds.y_test, uea.y_test)
    assert ds.X_train.shape == uea.X_train.shape and ds.channel_units == ["g"] * 3
    # z-normalised, each row is the archive's row up to the archive's two-step stretching
    from edgessl.preprocess import standardize

    assert np.abs(standardize(ds.X_test, ddof=1) - uea.X_test).mean() < 0.01


def test_like_option_matches_rows_by_label_and_shared_ids(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 8, 6, 7]
    sig = rng.normal(size=(2, sum(lengths))).astype(np.float32)
    off = np.concatenate([[0], np.cumsum(lengths)])
    np.savez(tmp_path / "rec.npz", signal=sig, offsets=off, label=np.array([0, 1, 0, 1]), subject=np.array([1, 1, 2, 2]),
             channel_names=np.array(["a", "b"]), class_names=np.array(["x", "y"]))  # fmt: skip
    X = np.zeros((2, 2, 3), np.float32)
    np.savez(tmp_path / "win.npz", X_train=X, y_train=np.array([1, 0]), X_test=X[:1], y_test=np.array([0]),
             subject_train=np.array([2, 1]), subject_test=np.array([2]))  # fmt: skip
    ds = D.load(f"npz:{tmp_path / 'rec.npz'}?like={tmp_path / 'win.npz'},length=4")
    np.testing.assert_allclose(ds.X_train[0][:, [0, -1]], sig[:, [off[3], off[4] - 1]])  # label 1, subject 2
    np.testing.assert_allclose(ds.X_test[0][:, [0, -1]], sig[:, [off[2], off[3] - 1]])
    np.testing.assert_array_equal(ds.y_train, [1, 0])
    np.savez(tmp_path / "bad.npz", X_train=X, y_train=np.array([1, 1]), X_test=X[:1], y_test=np.array([0]),
             subject_train=np.array([2, 3]), subject_test=np.array([2]))  # fmt: skip
    with pytest.raises(D.DataFormatError, match=r"1 train row\(s\) match no single recording"):
        D.load(f"npz:{tmp_path / 'rec.npz'}?like={tmp_path / 'bad.npz'}")
    with pytest.raises(ValueError, match="not both"):
        D.load(f"npz:{tmp_path / 'rec.npz'}?like={tmp_path / 'win.npz'},split=subject")


def test_outside_option_keeps_the_recordings_no_row_was_made_from(tmp_path):
    rng = np.random.default_rng(0)
    lengths = [5, 8, 6, 7, 1]
    sig = rng.normal(size=(2, sum(lengths))).astype(np.float32)
    off = np.concatenate([[0], np.cumsum(lengths)])
    np.savez(tmp_path / "rec.npz", signal=sig, offsets=off, label=np.array([0, 1, 0, 1, 0]),
             subject=np.array([1, 1, 2, 2, 3]), channel_names=np.array(["a", "b"]), class_names=np.array(["x", "y"]))  # fmt: skip
    X = np.zeros((1, 2, 3), np.float32)
    np.savez(tmp_path / "win.npz", X_train=X, y_train=np.array([1]), X_test=X, y_test=np.array([0]),
             subject_train=np.array([2]), subject_test=np.array([1]))  # fmt: skip
    ds = D.load(f"npz:{tmp_path / 'rec.npz'}?outside={tmp_path / 'win.npz'},length=4")
    # rows of win.npz were made from recordings 3 (label 1, subject 2) and 0 (label 0, subject 1); the
    # 1-sample recording 4 is no window; so 1 and 2 remain, in order
    assert ds.X_train.shape == (2, 2, 4) and ds.y_train.tolist() == [1, 0] and ds.y_test.tolist() == [0, 1]
    np.testing.assert_allclose(ds.X_train[0][:, [0, -1]], sig[:, [off[1], off[2] - 1]])
    np.testing.assert_allclose(ds.X_train[1][:, [0, -1]], sig[:, [off[2], off[3] - 1]])
    np.testing.assert_array_equal(ds.groups["subject"][0], [1, 2])
    np.savez(tmp_path / "all.npz", X_train=np.zeros((2, 2, 3), np.float32), y_train=np.array([1, 0]),
             X_test=np.zeros((2, 2, 3), np.float32), y_test=np.array([0, 1]), subject_train=np.array([1, 2]),
             subject_test=np.array([1, 2]))  # fmt: skip
    with pytest.raises(D.DataFormatError, match="none is left outside it"):
        D.load(f"npz:{tmp_path / 'rec.npz'}?outside={tmp_path / 'all.npz'}")
    with pytest.raises(ValueError, match="give one of"):
        D.load(f"npz:{tmp_path / 'rec.npz'}?outside={tmp_path / 'win.npz'},like={tmp_path / 'win.npz'}")


def test_uwave_library_outside_the_uea_file_holds_none_of_its_gestures(data_dir):
    ds = D.load("npz:uwave_raw.npz?outside=uwave_gesture_uea.npz,length=315")
    uea = D.load_windows("npz:uwave_gesture_uea.npz")
    assert len(ds.X_train) == 4478 - 440 and len(ds.X_test) == 440

    def gestures(d, i):  # (label, subject, day, repetition) of split i's rows
        y = (d.y_train, d.y_test)[i]
        return set(zip(y.tolist(), *(d.groups[k][i].tolist() for k in ("subject", "day", "repetition")), strict=True))

    assert len(gestures(ds, 0)) == len(ds.X_train)
    assert not gestures(ds, 0) & (gestures(uea, 0) | gestures(uea, 1))
    assert gestures(ds, 1) == gestures(uea, 0) | gestures(uea, 1)


def _xy(n=6, c=3, t=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c, t)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("ext", [".ts", ".arff"])
def test_ts_arff_round_trip_multivariate(tmp_path, ext):
    X, y = _xy()
    Xt, yt = _xy(4, seed=1)
    classes = ["a", "b", "c"]
    w = D.write_ts if ext == ".ts" else D.write_arff
    w(tmp_path / f"Toy_TRAIN{ext}", X, y, classes)
    w(tmp_path / f"Toy_TEST{ext}", Xt, yt, classes)
    ds = D.load(f"ucr:{tmp_path / 'Toy'}")
    np.testing.assert_allclose(ds.X_train, X, rtol=1e-6)
    np.testing.assert_allclose(ds.X_test, Xt, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, y)
    assert ds.class_names == classes
    again = D.load(f"ucr:{tmp_path / f'Toy_TEST{ext}'}")  # partner found from either file
    np.testing.assert_allclose(again.X_train, X, rtol=1e-6)


def test_ts_missing_values_are_filled(tmp_path):
    X, y = _xy(3, 2, 8)
    X[0, 1, 0] = np.nan
    X[1, 0, 3:5] = np.nan
    D.write_ts(tmp_path / "m_TRAIN.ts", X, y, ["a", "b", "c"])
    D.write_ts(tmp_path / "m_TEST.ts", X, y, ["a", "b", "c"])
    ds = D.load(f"ucr:{tmp_path / 'm_TRAIN.ts'}")
    assert ds.X_train[0, 1, 0] == pytest.approx(X[0, 1, 1])  # backward fill at the start
    assert ds.X_train[1, 0, 3] == ds.X_train[1, 0, 4] == pytest.approx(X[1, 0, 2])  # forward fill


def test_ts_unequal_length_is_stretched(tmp_path):
    text = (
        "@problemName u\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true x y\n@data\n"
        "0,1,2:0,2,4:x\n0,1,2,3,4:4,3,2,1,0:y\n"
    )
    (tmp_path / "u_TRAIN.ts").write_text(text)
    (tmp_path / "u_TEST.ts").write_text(text)
    ds = D.load(f"ucr:{tmp_path / 'u'}")
    assert ds.X_train.shape == (2, 2, 5)
    np.testing.assert_allclose(ds.X_train[0, 0], [0, 0.5, 1, 1.5, 2])


def test_ts_whole_channel_missing_names_file_and_channel(tmp_path):
    text = "@problemName u\n@dimensions 2\n@classLabel true x y\n@data\n1,2,3:?,?,?:x\n"
    (tmp_path / "u_TRAIN.ts").write_text(text)
    (tmp_path / "u_TEST.ts").write_text(text)
    with pytest.raises(D.DataFormatError, match=r"u_TRAIN\.ts: series 0, channel dim_1 is entirely missing"):
        D.load(f"ucr:{tmp_path / 'u'}")


@pytest.mark.parametrize(
    "body, msg",
    [
        ("@classLabel true x y\n@data\n1,2,3:1,2,3:z\n", r"bad\.ts:3: class label 'z' is not among"),
        ("@classLabel true x y\n@data\n1,2,3:1,oops,3:x\n", r"bad\.ts:3: expected a number or '\?', got 'oops'"),
        ("@classLabel true x y\n@data\n1,2,3:1,2,3:x\n1,2,3:x\n", r"bad\.ts:4: expected 2 dimensions"),
        ("@classLabel true x y\n@data\n1,2,3:1,2:x\n", r"bad\.ts:3: dimensions of one series have different lengths"),
        ("@classLabel true x y\n", r"bad\.ts: no '@data' section"),
        ("hello\n", r"bad\.ts:1: expected a '@' header line"),
    ],
)
def test_ts_malformed_errors_name_file_and_line(tmp_path, body, msg):
    p = tmp_path / "bad.ts"
    p.write_text(body)
    with pytest.raises(D.DataFormatError, match=msg):
        D.read_ts(p)


def test_arff_univariate_and_malformed(tmp_path):
    p = tmp_path / "uni.arff"
    p.write_text("@relation r\n@attribute a0 numeric\n@attribute a1 numeric\n@attribute c {1,2}\n@data\n0.5,?,1\n1,2,2\n")
    X, y, classes = D.read_arff(p)
    assert X.shape == (2, 1, 2) and np.isnan(X[0, 0, 1]) and list(y) == [0, 1] and classes == ["1", "2"]
    p.write_text("@relation r\n@attribute a0 numeric\n@attribute c {1,2}\n@data\n0.5,1\n1,2,2\n")
    with pytest.raises(D.DataFormatError, match=r"uni\.arff:6: expected 2 values; got 3"):
        D.read_arff(p)


def test_tsv_round_trip_with_nan_padding(tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 1, 9)).astype(np.float32)
    y = np.array([0, 1, 1, 0])
    D.write_tsv(tmp_path / "T_TRAIN.tsv", X, y, ["1", "2"])
    X2 = X.copy()
    X2[0, 0, 6:] = np.nan  # UCR pads unequal series with NaN at the end
    D.write_tsv(tmp_path / "T_TEST.tsv", X2, y, ["1", "2"])
    ds = D.load(f"ucr:{tmp_path / 'T'}")
    np.testing.assert_allclose(ds.X_train, X, rtol=1e-6)
    assert np.all(ds.X_test[0, 0, 6:] == X2[0, 0, 5])
    (tmp_path / "bad.tsv").write_text("1\t0.5\t0.2\n2\n")
    with pytest.raises(D.DataFormatError, match=r"bad\.tsv:2: expected a label and values"):
        D.read_tsv(tmp_path / "bad.tsv")


def test_csv_recording_round_trip_and_rate(tmp_path):
    sig = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    sig[1, 10] = np.nan
    D.write_csv_recording(tmp_path / "r.csv", sig, 80.0, ["acc_x", "acc_y", "acc_z"])
    st = D.load(f"csv:{tmp_path / 'r.csv'}")
    assert st.rate_hz == pytest.approx(80.0)
    assert st.channel_names == ["acc_x", "acc_y", "acc_z"] and st.channel_units == ["g"] * 3
    ok = ~np.isnan(sig)
    np.testing.assert_allclose(st.signal[ok], sig[ok], rtol=1e-6)
    assert st.signal[1, 10] == pytest.approx(sig[1, 9])
    assert D.load(f"csv:{tmp_path / 'r.csv'}?rate=100").rate_hz == 100.0


def test_csv_tab_separated_with_labels_edge_impulse_style(tmp_path):
    p = tmp_path / "ei.csv"
    p.write_text("timestamp\taccX\taccY\tlabel\n0\t1\t2\tidle\n10\t1.5\t2\twave\n20\t1\t2\twave\n")
    st = D.read_csv_recording(p)
    assert st.rate_hz == pytest.approx(100.0)  # bare 'timestamp' is milliseconds
    assert st.class_names == ["idle", "wave"] and list(st.sample_labels) == [0, 1, 1]


@pytest.mark.parametrize(
    "body, msg",
    [
        ("0,1,2\n1,1,2\n", r"r\.csv:1: the first line must be a header"),
        ("time_s,ax\n0,1\n0.01,1,3\n", r"r\.csv:3: expected 2 columns like the header; got 3"),
        ("time_s,ax\n0,1\n0.01,abc\n", r"r\.csv:3: expected a number or '\?', got 'abc'"),
        ("time_s,ax\n0,1\n0,2\n", r"r\.csv:3: timestamps must increase strictly"),
        ("foo,ax\n0,1\n", r"r\.csv:1: first column 'foo' must be a timestamp"),
        ("time_s,ax,ay\n0,1,\n0.01,2,\n", r"r\.csv: channel ay is entirely missing"),
    ],
)
def test_csv_malformed(tmp_path, body, msg):
    p = tmp_path / "r.csv"
    p.write_text(body)
    with pytest.raises(D.DataFormatError, match=msg):
        D.load(f"csv:{p}")


def _write_har(root, n_train=5, n_test=3, t=16):
    rng = np.random.default_rng(0)
    truth = {}
    for split, n in (("train", n_train), ("test", n_test)):
        d = root / split / "Inertial Signals"
        d.mkdir(parents=True)
        X = rng.normal(size=(n, 9, t))
        for c, name in enumerate(D.HAR_SIGNALS):
            np.savetxt(d / f"{name}_{split}.txt", X[:, c], fmt="%.8e")
        y = rng.integers(1, 7, n)
        np.savetxt(root / split / f"y_{split}.txt", y, fmt="%d")
        np.savetxt(root / split / f"subject_{split}.txt", rng.integers(1, 31, n), fmt="%d")
        truth[split] = (X, y - 1)
    return truth


def test_har_folder_round_trip(tmp_path):
    truth = _write_har(tmp_path)
    ds = D.load(f"har:{tmp_path}")
    np.testing.assert_allclose(ds.X_train, truth["train"][0], rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, truth["test"][1])
    assert ds.rate_hz == 50 and ds.channel_names == D.HAR_SIGNALS
    assert ds.select_channels(["total_acc_x", "total_acc_y", "total_acc_z"]).n_channels == 3


def test_har_folder_malformed(tmp_path):
    _write_har(tmp_path)
    p = tmp_path / "train" / "Inertial Signals" / "body_gyro_y_train.txt"
    lines = p.read_text().splitlines()
    lines[2] = lines[2] + " 1.0"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(D.DataFormatError, match=r"body_gyro_y_train\.txt:3: expected 16 values; got 17"):
        D.load(f"har:{tmp_path}")
    (tmp_path / "test" / "y_test.txt").unlink()
    p.write_text("\n".join(lines[:2] + lines[3:]) + "\n")


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "x.npz", foo=np.zeros(3))
    with pytest.raises(D.DataFormatError, match="expected arrays"):
        D.load(f"npz:{tmp_path / 'x.npz'}")
    with pytest.raises(FileNotFoundError, match="EDGESSL_DATA_DIR"):
        D.load(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(ValueError, match="unknown dataset kind"):
        D.load("zip:foo")


def test_npz_window_layout_round_trip_with_units(tmp_path):
    X, y = _xy()
    np.savez(tmp_path / "w.npz", X_train=X, y_train=y, X_test=X[:2], y_test=y[:2], rate_hz=np.array(25.0),
             channel_names=np.array(["a", "b", "c"]), channel_units=np.array(["g", "g", "rad/s"]))
    ds = D.load(f"npz:{tmp_path / 'w.npz'}")
    assert ds.rate_hz == 25.0 and ds.channel_units == ["g", "g", "rad/s"]
    np.testing.assert_array_equal(ds.X_train, X)
