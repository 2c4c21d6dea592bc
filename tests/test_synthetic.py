import numpy as np
import pytest

from edgessl import datasets as D
from edgessl.preprocess import standardize
from edgessl.synthetic import GESTURES, SyntheticConfig, make_dataset, make_idle, make_stream, make_user


def _ridge_accuracy(ds, feat):
    A, B = feat(ds.X_train), feat(ds.X_test)
    Y = np.eye(ds.n_classes)[ds.y_train]
    W = np.linalg.solve(A.T @ A + 10 * np.eye(A.shape[1]), A.T @ Y)
    return float((np.argmax(B @ W, 1) == ds.y_test).mean())


def test_deterministic_from_seed():
    a = make_dataset(SyntheticConfig(seed=3, reps=2))
    b = make_dataset(SyntheticConfig(seed=3, reps=2))
    c = make_dataset(SyntheticConfig(seed=4, reps=2))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.allclose(a.X_train, c.X_train)


def test_layout_split_by_user_and_spec():
    ds = D.load("synthetic:reps=2,length=64,seed=1")
    assert ds.X_train.shape == (6 * 8 * 2, 3, 64) and ds.X_test.shape == (2 * 8 * 2, 3, 64)
    assert set(ds.groups["subject"][0]) == set(range(1, 7)) and set(ds.groups["subject"][1]) == {7, 8}
    assert ds.class_names == GESTURES and ds.channel_units == ["g"] * 3
    with pytest.raises(ValueError, match="unknown synthetic option 'foo'"):
        D.load("synthetic:foo=1")


def test_physically_plausible():
    ds = make_dataset(SyntheticConfig(reps=3))
    mag = np.linalg.norm(ds.X_train, axis=1)
    assert 0.9 < np.median(mag) < 1.3  # gravity dominates, motion adds to it (uWave: median 1.16 g)
    assert np.abs(ds.X_train).max() < 8  # no absurd accelerations (uWave range is about ±4.5 g)
    idle = make_idle(500, make_user(0, 1), 100.0, np.random.default_rng(0))
    assert np.linalg.norm(idle.mean(1)) == pytest.approx(1.0, abs=0.08)  # at rest the sensor reads 1 g
    assert idle.std(1).max() < 0.05


def test_neither_trivial_nor_hopeless_on_held_out_users():
    """A small linear classifier on z-normalised windows does well, not perfectly, on new users."""
    accs = [_ridge_accuracy(make_dataset(SyntheticConfig(seed=s)), lambda X: standardize(X).reshape(len(X), -1))
            for s in range(3)]
    assert 0.6 < np.mean(accs) < 0.97, accs
    # a trivial feature (per-channel mean = the grip's gravity direction) is much weaker
    triv = [_ridge_accuracy(make_dataset(SyntheticConfig(seed=s)), lambda X: X.mean(-1)) for s in range(3)]
    assert np.mean(triv) < np.mean(accs) - 0.25, (triv, accs)


def test_stream_annotations_match_signal():
    cfg = SyntheticConfig(seed=2)
    st = make_stream(cfg, n_gestures=6)
    ev = st.extra["events"]
    assert ev.shape == (6, 3)
    assert st.sample_labels.shape == (st.signal.shape[1],)
    for s, e, lab in ev:
        assert np.all(st.sample_labels[s:e] == lab)
        assert st.sample_labels[s - 1] == -1
        # gestures move: more motion energy than the idle just before them
        assert st.signal[:, s:e].std(1).sum() > 2 * st.signal[:, s - 50 : s].std(1).sum()
    assert np.all(np.diff(ev[:, 0]) > 0)


def test_fixed_windowing_centres_gesture_in_idle():
    ds = make_dataset(SyntheticConfig(reps=1, windowing="fixed", length=300))
    assert ds.rate_hz == 100.0 and ds.X_train.shape[-1] == 300


def test_quantised_counts():
    ds = make_dataset(SyntheticConfig(reps=1, counts_per_g=26))
    counts = ds.X_train * 26
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
