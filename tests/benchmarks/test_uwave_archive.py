"""benchmarks/uwave_archive.py: the uWave archive rows rebuilt from their raw templates (``like=``, ``outside=``,
the UCR procedure) and the axes' relative scale read back from the sensor-step lattice (``quantum=``)."""

import re

import numpy as np
import pytest
import uwave_archive as U
from uwave_archive import QuantumError, lattice_steps, restore_axis_scales

from edgessl import datasets as D
from edgessl.preprocess import resample_to_length, standardize

Q = np.array([1 / 26, 1 / 26, 1 / 25])  # the uWave sensor: g per count on x, y, z


def archive_rows(rng: np.random.Generator, n: int = 80, length: int = 315):
    """Rows made as the UCR archive made UWaveGestureLibrary, from the embedded generator's gestures (in g):
    each gesture at a uWave-like length (median 88 samples), in whole counts of the uWave sensor, stretched to
    the longest gesture of its (user, day) (uWave: median 2.3 times its length), then to ``length``, then
    z-normalised per axis. Returns the rows, the stretched windows in g and their axis stds."""
    g = D.load(f"synthetic:reps={max(1, n // 32 + 1)},seed={int(rng.integers(1000))}")
    gestures = np.concatenate([g.X_train, g.X_test]).astype(np.float64)[:n]
    rows, stretched = [], []
    for x in gestures:
        t = int(np.clip(np.exp(rng.normal(np.log(88), 0.45)), 25, 243))
        longest = int(np.clip(t * np.exp(rng.normal(np.log(2.27), 0.4)), t, length))
        counts = np.round(resample_to_length(x, t) / Q[:, None])
        s = resample_to_length(resample_to_length(counts * Q[:, None], longest), length)
        rows.append(standardize(s, ddof=1))
        stretched.append(s)
    stretched = np.stack(stretched)
    return np.stack(rows).astype(np.float32), stretched, stretched.std(axis=-1, ddof=1)


def ratio_errors(scales: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """|log| of estimated over true ratio, for the axis pairs (x, y), (x, z), (y, z) of each window."""
    pairs = [(0, 1), (0, 2), (1, 2)]
    return np.stack([np.abs(np.log((scales[:, b] / scales[:, a]) / (stds[:, b] / stds[:, a]))) for a, b in pairs], 1)


def test_axis_ratios_come_back_from_the_lattice():
    rows, stretched, stds = archive_rows(np.random.default_rng(0), n=160)
    with pytest.warns(UserWarning, match="of 160 windows show no sensor-step lattice") as w:
        restored, scales = restore_axis_scales(rows, Q)
    failed = int(re.search(r"(\d+) of 160", str(w[0].message)).group(1))
    assert failed <= 16  # axes of the generator that hardly move show too few steps (13 here; uWave 2 of 4478)
    err = ratio_errors(scales, stds)
    # 0.87 measured (the windows without a lattice keep their per-channel scales and count as misses);
    # 0.99 on the uWave training rows (test below)
    assert np.mean(err < 0.05) >= 0.8, np.mean(err < 0.05)
    # the restored rows are the windows standardised with one scale per window, where the estimate held
    ok = (err < 0.05).all(axis=1)
    want = standardize(stretched[ok], per_channel=False, ddof=1)
    np.testing.assert_allclose(restored[ok], want, atol=0.05 * np.abs(want).max())
    assert np.allclose(np.sqrt((scales**2).mean(axis=1)), 1.0)


@pytest.mark.filterwarnings("ignore:.*sensor-step lattice")
def test_steps_are_the_quantum_over_std_times_the_shared_stretch():
    rows, _, stds = archive_rows(np.random.default_rng(1), n=30)
    w = lattice_steps(rows)
    c = w * stds / Q  # the stretch factor: one per window, the same on every axis
    spread = c.max(axis=1) / c.min(axis=1)
    assert np.nanmedian(spread) < 1.01 and w.shape == (30, 3)


@pytest.mark.filterwarnings("ignore:.*sensor-step lattice")
def test_constant_channel_scales_to_zero_and_all_constant_keeps_one():
    rows, _, _ = archive_rows(np.random.default_rng(2), n=10)
    rows[0, 2] = -np.sqrt(314 / 315)  # the archive's one constant axis
    rows[1] = 0.5
    restored, scales = restore_axis_scales(rows, Q)
    assert scales[0, 2] == 0 and np.all(restored[0, 2] == 0) and np.all(scales[0, :2] > 0)
    np.testing.assert_array_equal(scales[1], 1.0)
    assert np.isfinite(restored).all()


def test_rows_without_a_lattice_are_refused_with_a_reason(tmp_path):
    rng = np.random.default_rng(3)
    smooth = np.cumsum(rng.normal(size=(40, 3, 315)), axis=-1)  # continuous values: no repeated step
    with pytest.raises(QuantumError, match="40 of 40 windows show no sensor-step lattice"):
        restore_axis_scales(standardize(smooth), Q)
    path = tmp_path / "f.npz"
    np.savez(path, X_train=standardize(smooth).astype(np.float32), y_train=np.zeros(40, int),
             X_test=standardize(smooth[:5]).astype(np.float32), y_test=np.zeros(5, int))  # fmt: skip
    with pytest.raises(D.DataFormatError, match="integer sensor counts"):
        D.load(f"uwave:{path}?quantum=0.01")
    rows, _, _ = archive_rows(rng, n=40)
    rows[:1] = standardize(smooth[:1])  # one window in 40 is tolerated and kept as it was, with a warning
    with pytest.warns(UserWarning, match="of 40 windows show no sensor-step lattice"):
        restored, scales = restore_axis_scales(rows, Q)
    np.testing.assert_array_equal(scales[0], 1.0)
    np.testing.assert_array_equal(restored[0], rows[0])


@pytest.mark.filterwarnings("ignore:.*sensor-step lattice")
def test_quantum_option_of_the_loaders(tmp_path):
    rows, _, _ = archive_rows(np.random.default_rng(4), n=20)
    path = tmp_path / "g.npz"
    np.savez(path, X_train=rows[:12], y_train=np.arange(12) % 2, X_test=rows[12:], y_test=np.arange(8) % 2)
    ds = D.load(f"uwave:{path}?quantum=1/26:1/26:1/25")
    np.testing.assert_allclose(ds.X_train, restore_axis_scales(rows[:12], Q)[0])
    assert "axis scales restored" in ds.name and ds.X_test.shape == (8, 3, 315)
    one = D.load(f"uwave:{path}?quantum=0.04")  # one unit for every channel: x, y lose 4 % against z
    assert one.X_train.shape == ds.X_train.shape
    D.write_ts(tmp_path / "G_TRAIN.ts", rows[:12], np.arange(12) % 2, ["a", "b"])
    D.write_ts(tmp_path / "G_TEST.ts", rows[12:], np.arange(8) % 2, ["a", "b"])
    np.testing.assert_allclose(D.load(f"uwave:{tmp_path / 'G'}?quantum=1/26:1/26:1/25").X_test, ds.X_test, atol=1e-5)
    for bad, msg in (("1/26:1/25", "one positive step per channel"), ("x", "unit per sensor count"),
                     ("1/0", "unit per sensor count"), ("-1", "one positive step per channel")):  # fmt: skip
        with pytest.raises((ValueError, D.DataFormatError), match=msg):
            D.load(f"uwave:{path}?quantum={bad}")
    with pytest.raises(ValueError, match="quantum= applies to a windowed file"):
        D.load(f"uwave:{path}?quantum=0.04,length=3")
    with pytest.raises(ValueError, match="unknown npz option"):  # the product's loader has no such option
        D.load(f"npz:{path}?quantum=0.04")
    with pytest.raises(QuantumError, match="at least 3 samples"):
        lattice_steps(np.zeros((3, 2)))


def test_uwave_archive_rows_against_their_raw_templates(data_dir):
    """On the UCR training rows, the estimated ratio between two axes is within 5 % of the raw templates' for
    97 % of the pairs (98.9 % measured)."""
    raw = D.load_stream("npz:uwave_raw.npz")
    with pytest.warns(UserWarning, match="2 of 3582 windows show no sensor-step lattice"):  # the test split
        ucr = D.load("uwave:uwave_gesture_ucr.npz?quantum=1/26:1/26:1/25")
    split, index = raw.recording_groups["ucr_split"], raw.recording_groups["ucr_index"]
    ks = np.flatnonzero(split == 0)
    std = np.stack([raw.recording(k).std(axis=-1) for k in ks])
    rms = ucr.X_train[index[ks]].std(axis=-1)  # the restored rows' per-axis scale
    err = np.abs(np.log((rms[:, 1:] / rms[:, :1]) / (std[:, 1:] / std[:, :1])))
    assert np.mean(err < 0.05) >= 0.97, np.mean(err < 0.05)


def test_uwave_raw_templates_rebuild_ucr_rows(data_dir):
    """The UCR procedure (stretch to 315, z-normalise with ddof=1) on raw templates gives the UCR rows."""
    raw = D.load_stream("npz:uwave_raw.npz")
    ucr = D.load_windows("npz:uwave_gesture_ucr.npz")
    split, index = raw.recording_groups["ucr_split"], raw.recording_groups["ucr_index"]
    X = U.uwave_ucr_windows(raw)
    for s, X_ucr, y_ucr in ((0, ucr.X_train, ucr.y_train), (1, ucr.X_test, ucr.y_test)):
        ks = np.flatnonzero(split == s)
        const = np.flatnonzero(np.ptp(X_ucr[index[ks]], axis=-1).min(-1) < 1e-3)  # the one constant channel
        ks = np.delete(ks, const)
        np.testing.assert_allclose(X[ks], X_ucr[index[ks]], atol=1e-4)
        np.testing.assert_array_equal(raw.recording_labels[ks], y_ucr[index[ks]])


def test_uea_rows_rebuilt_from_raw_templates(data_dir):
    """uwave:uwave_raw.npz?like=uwave_gesture_uea.npz: the UEA split, order and labels, in g."""
    ds = D.load("uwave:uwave_raw.npz?like=uwave_gesture_uea.npz,length=315")
    uea = D.load_windows("npz:uwave_gesture_uea.npz")
    np.testing.assert_array_equal(ds.y_test, uea.y_test)
    assert ds.X_train.shape == uea.X_train.shape and ds.channel_units == ["g"] * 3
    # z-normalised, each row is the archive's row up to the archive's two-step stretching
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
    ds = D.load(f"uwave:{tmp_path / 'rec.npz'}?like={tmp_path / 'win.npz'},length=4")
    np.testing.assert_allclose(ds.X_train[0][:, [0, -1]], sig[:, [off[3], off[4] - 1]])  # label 1, subject 2
    np.testing.assert_allclose(ds.X_test[0][:, [0, -1]], sig[:, [off[2], off[3] - 1]])
    np.testing.assert_array_equal(ds.y_train, [1, 0])
    np.savez(tmp_path / "bad.npz", X_train=X, y_train=np.array([1, 1]), X_test=X[:1], y_test=np.array([0]),
             subject_train=np.array([2, 3]), subject_test=np.array([2]))  # fmt: skip
    with pytest.raises(D.DataFormatError, match=r"1 train row\(s\) match no single recording"):
        D.load(f"uwave:{tmp_path / 'rec.npz'}?like={tmp_path / 'bad.npz'}")
    with pytest.raises(ValueError, match=r"unknown uwave option\(s\) \['split'\]"):
        D.load(f"uwave:{tmp_path / 'rec.npz'}?like={tmp_path / 'win.npz'},split=subject")
    with pytest.raises(D.DataFormatError, match="already windowed"):
        D.load(f"uwave:{tmp_path / 'win.npz'}?like={tmp_path / 'win.npz'}")
    with pytest.raises(ValueError, match="unknown npz option"):  # the product's loader has no such option
        D.load(f"npz:{tmp_path / 'rec.npz'}?like={tmp_path / 'win.npz'}")


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
    ds = D.load(f"uwave:{tmp_path / 'rec.npz'}?outside={tmp_path / 'win.npz'},length=4")
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
        D.load(f"uwave:{tmp_path / 'rec.npz'}?outside={tmp_path / 'all.npz'}")
    with pytest.raises(ValueError, match="give one of"):
        D.load(f"uwave:{tmp_path / 'rec.npz'}?outside={tmp_path / 'win.npz'},like={tmp_path / 'win.npz'}")


def test_uwave_library_outside_the_uea_file_holds_none_of_its_gestures(data_dir):
    ds = D.load("uwave:uwave_raw.npz?outside=uwave_gesture_uea.npz,length=315")
    uea = D.load_windows("npz:uwave_gesture_uea.npz")
    assert len(ds.X_train) == 4478 - 440 and len(ds.X_test) == 440

    def gestures(d, i):  # (label, subject, day, repetition) of split i's rows
        y = (d.y_train, d.y_test)[i]
        return set(zip(y.tolist(), *(d.groups[k][i].tolist() for k in ("subject", "day", "repetition")), strict=True))

    assert len(gestures(ds, 0)) == len(ds.X_train)
    assert not gestures(ds, 0) & (gestures(uea, 0) | gestures(uea, 1))
    assert gestures(ds, 1) == gestures(uea, 0) | gestures(uea, 1)


def test_finetune_unlabelled_pool_takes_a_uwave_spec(tmp_path):
    """FinetuneConfig.unlabelled reads its spec through the registry: the uwave: scheme works there."""
    pytest.importorskip("torch")
    from edgessl.trainer.data import DataConfig, unlabelled_windows

    rng = np.random.default_rng(0)
    lengths = [40, 50, 45, 60]
    sig = rng.normal(size=(3, sum(lengths))).astype(np.float32)
    np.savez(tmp_path / "rec.npz", signal=sig, offsets=np.concatenate([[0], np.cumsum(lengths)]),
             label=np.array([0, 1, 0, 1]), subject=np.array([1, 1, 2, 2]),
             channel_names=np.array(["acc_x", "acc_y", "acc_z"]))  # fmt: skip
    X = np.zeros((1, 3, 8), np.float32)
    np.savez(tmp_path / "win.npz", X_train=X, y_train=np.array([1]), X_test=X, y_test=np.array([0]),
             subject_train=np.array([2]), subject_test=np.array([1]))  # fmt: skip
    spec = f"uwave:{tmp_path / 'rec.npz'}?outside={tmp_path / 'win.npz'},length=32"
    W, names = unlabelled_windows(DataConfig(spec=spec, length=32, preprocess={"steps": []}))
    # the two recordings outside win.npz's rows (label 1 subject 1, label 0 subject 2), stretched to 32
    assert W.shape == (2, 3, 32) and names == ["acc_x", "acc_y", "acc_z"]
    np.testing.assert_allclose(W[0][:, [0, -1]], sig[:, [40, 89]], rtol=1e-6)
