"""edgessl.quantum: the axes' relative scale read back from the sensor-step lattice of z-normalised rows."""

import re

import numpy as np
import pytest

from edgessl import datasets as D
from edgessl.preprocess import resample_to_length, standardize
from edgessl.quantum import QuantumError, lattice_steps, restore_axis_scales

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
        D.load(f"npz:{path}?quantum=0.01")
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
    ds = D.load(f"npz:{path}?quantum=1/26:1/26:1/25")
    np.testing.assert_allclose(ds.X_train, restore_axis_scales(rows[:12], Q)[0])
    assert "axis scales restored" in ds.name and ds.X_test.shape == (8, 3, 315)
    one = D.load(f"npz:{path}?quantum=0.04")  # one unit for every channel: x, y lose 4 % against z
    assert one.X_train.shape == ds.X_train.shape
    D.write_ts(tmp_path / "G_TRAIN.ts", rows[:12], np.arange(12) % 2, ["a", "b"])
    D.write_ts(tmp_path / "G_TEST.ts", rows[12:], np.arange(8) % 2, ["a", "b"])
    np.testing.assert_allclose(D.load(f"ucr:{tmp_path / 'G'}?quantum=1/26:1/26:1/25").X_test, ds.X_test, atol=1e-5)
    for bad, msg in (("1/26:1/25", "one positive step per channel"), ("x", "unit per sensor count"),
                     ("1/0", "unit per sensor count"), ("-1", "one positive step per channel")):  # fmt: skip
        with pytest.raises((ValueError, D.DataFormatError), match=msg):
            D.load(f"npz:{path}?quantum={bad}")
    with pytest.raises(ValueError, match="unknown ucr option"):
        D.load(f"ucr:{tmp_path / 'G'}?length=3")
    with pytest.raises(QuantumError, match="at least 3 samples"):
        lattice_steps(np.zeros((3, 2)))


def test_uwave_archive_rows_against_their_raw_templates(data_dir):
    """On the UCR training rows, the estimated ratio between two axes is within 5 % of the raw templates' for
    97 % of the pairs (98.9 % measured)."""
    raw = D.load_stream("npz:uwave_raw.npz")
    with pytest.warns(UserWarning, match="2 of 3582 windows show no sensor-step lattice"):  # the test split
        ucr = D.load("npz:uwave_gesture_ucr.npz?quantum=1/26:1/26:1/25")
    split, index = raw.recording_groups["ucr_split"], raw.recording_groups["ucr_index"]
    ks = np.flatnonzero(split == 0)
    std = np.stack([raw.recording(k).std(axis=-1) for k in ks])
    rms = ucr.X_train[index[ks]].std(axis=-1)  # the restored rows' per-axis scale
    err = np.abs(np.log((rms[:, 1:] / rms[:, :1]) / (std[:, 1:] / std[:, :1])))
    assert np.mean(err < 0.05) >= 0.97, np.mean(err < 0.05)
