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
    with pytest.raises(FileNotFoundError, match="nope.npz: no such file; check the path"):
        D.load(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(FileNotFoundError, match="looked in .* and .*EDGESSL_DATA_DIR"):
        D.load("npz:no_such_file_anywhere.npz")  # a bare name: here, then the shared data folder
    with pytest.raises(ValueError, match="unknown dataset kind"):
        D.load("zip:foo")


def test_npz_window_layout_round_trip_with_units(tmp_path):
    X, y = _xy()
    np.savez(tmp_path / "w.npz", X_train=X, y_train=y, X_test=X[:2], y_test=y[:2], rate_hz=np.array(25.0),
             channel_names=np.array(["a", "b", "c"]), channel_units=np.array(["g", "g", "rad/s"]))
    ds = D.load(f"npz:{tmp_path / 'w.npz'}")
    assert ds.rate_hz == 25.0 and ds.channel_units == ["g", "g", "rad/s"]
    np.testing.assert_array_equal(ds.X_train, X)


def test_registry_dispatches_on_the_scheme(monkeypatch, tmp_path):
    from edgessl.datasets import registry

    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    assert set(D.registered_sources()) >= {"npz", "ucr", "har", "csv", "synthetic"}  # and what benchmarks add
    X, y = _xy()
    seen = []

    def toy(arg):
        seen.append(arg)
        return D.WindowDataset(X, y, X[:2], y[:2], ["a", "b", "c"], ["acc_x", "acc_y", "acc_z"], ["g"] * 3, 10.0)

    D.register_source("toy", toy)
    ds = D.load_windows("Toy:some/path?k=v")  # the scheme is case-insensitive; the rest reaches the loader as is
    assert seen == ["some/path?k=v"] and ds.rate_hz == 10.0
    np.testing.assert_array_equal(ds.X_train, X)
    D.register_source("toy", toy)  # the same loader again is harmless
    with pytest.raises(ValueError, match="already registered"):
        D.register_source("toy", lambda arg: toy(arg))
    with pytest.raises(ValueError, match="already registered"):
        D.register_source("npz", toy)
    D.register_source("toy", lambda arg: toy("again"), replace=True)
    D.load("toy:")
    assert seen[-1] == "again"
    with pytest.raises(ValueError, match="lower-case word"):
        D.register_source("Bad scheme", toy)
    with pytest.raises(ValueError, match=r"unknown dataset kind 'zip'.*npz.*synthetic.*toy"):
        D.load("zip:foo")
    with pytest.raises(ValueError, match="needs a path"):
        D.load("npz:")


def test_npz_spec_takes_split_and_length_only(tmp_path):
    X, y = _xy()
    np.savez(tmp_path / "w.npz", X_train=X, y_train=y, X_test=X[:2], y_test=y[:2])
    for opt in ("quantum=1/26", "like=w.npz", "outside=w.npz"):
        with pytest.raises(ValueError, match="unknown npz option"):
            D.load(f"npz:{tmp_path / 'w.npz'}?{opt}")
    with pytest.raises(ValueError, match="unknown ucr option"):
        D.load(f"ucr:{tmp_path / 'W'}?length=3")


def test_synthetic_source_is_registered_like_the_others():
    from edgessl.datasets.synthetic import load_synthetic

    ds = D.load("SYNTHETIC:reps=1,length=32,seed=2")
    np.testing.assert_array_equal(ds.X_train, load_synthetic("reps=1,length=32,seed=2").X_train)
    assert ds.name == "synthetic(seed=2)" and ds.X_test.shape == (16, 3, 32)  # 2 test users x 8 gestures
