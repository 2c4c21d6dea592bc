import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgessl import preprocess as pp


def test_standardize_zero_mean_unit_std_per_window_channel():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 5, size=(4, 3, 100)).astype(np.float32)
    z = pp.standardize(x)
    np.testing.assert_allclose(z.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(-1), 1, atol=1e-4)
    assert z.dtype == np.float32


def test_standardize_ddof1_matches_ucr_normalisation():
    x = np.arange(10, dtype=np.float64).reshape(1, 1, 10)
    z = pp.standardize(x, ddof=1)
    np.testing.assert_allclose(z, (x - 4.5) / np.std(x, ddof=1))


def test_standardize_one_scale_per_window_keeps_axis_ratios():
    """per_channel=False: means per channel, one scale per window = the RMS of the channels' stds."""
    x = np.array([[[1.0, 3.0, 1.0, 3.0], [10.0, 10.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0]]])  # stds 1, 0, 2
    z = pp.standardize(x, per_channel=False)
    scale = np.sqrt((1.0 + 0.0 + 4.0) / 3)
    np.testing.assert_allclose(z, (x - x.mean(-1, keepdims=True)) / scale)
    np.testing.assert_allclose((z**2).mean(), 1.0)  # unit mean variance over the window's channels
    # the direction survives: channel 2 moves twice as much as channel 0 (per channel, both would be 1)
    np.testing.assert_allclose(z[0, 2].std() / z[0, 0].std(), 2.0)
    np.testing.assert_allclose(pp.standardize(z, per_channel=False), z, atol=1e-12)  # idempotent
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 3, 30)) * rng.uniform(0.1, 10, size=(5, 3, 1))
    ref = np.stack([(v - v.mean(1, keepdims=True)) / np.sqrt(np.mean(np.var(v, axis=1, ddof=1)))
                    for v in w])  # fmt: skip
    np.testing.assert_allclose(pp.standardize(w, ddof=1, per_channel=False), ref, rtol=1e-10)
    assert np.all(pp.standardize(np.ones((1, 3, 8)), per_channel=False) == 0)


def test_standardize_constant_channel_gives_zeros_not_nan():
    z = pp.standardize(np.ones((1, 2, 8)))
    assert np.all(z == 0)


def test_minmax_scale_range():
    x = np.random.default_rng(1).normal(size=(5, 3, 50))
    y = pp.minmax_scale(x, -1, 1)
    np.testing.assert_allclose(y.min(-1), -1, atol=1e-6)
    np.testing.assert_allclose(y.max(-1), 1, atol=1e-6)
    with pytest.raises(ValueError, match="high > low"):
        pp.minmax_scale(x, 1, 1)


def test_clip_outliers_clips_only_beyond_z():
    x = np.zeros((1, 1, 101))
    x[0, 0, 50] = 100.0
    y = pp.clip_outliers(x, z=3)
    m, s = x.mean(), x.std()
    assert y[0, 0, 50] == pytest.approx(m + 3 * s)
    np.testing.assert_array_equal(np.delete(y[0, 0], 50), 0)


def test_moving_average_matches_convolution_in_interior():
    x = np.random.default_rng(2).normal(size=(2, 3, 40))
    y = pp.moving_average(x, 5)
    ref = np.apply_along_axis(lambda v: np.convolve(v, np.ones(5) / 5, mode="valid"), -1, x)
    np.testing.assert_allclose(y[..., 2:-2], ref, atol=1e-6)
    assert y.shape == x.shape
    with pytest.raises(ValueError, match="odd"):
        pp.moving_average(x, 4)


def test_resample_polyphase_preserves_a_low_frequency_sine():
    t50 = np.arange(500) / 50.0
    x = np.sin(2 * np.pi * 1.0 * t50)[None, None]
    y = pp.resample(x, 50, 100)
    assert y.shape[-1] == 1000
    t100 = np.arange(1000) / 100.0
    np.testing.assert_allclose(y[0, 0, 50:-50], np.sin(2 * np.pi * t100)[50:-50], atol=0.02)
    assert pp.rational_ratio(80, 100) == (5, 4)


def test_resample_to_length_keeps_endpoints_and_linear_ramps():
    x = np.linspace(0, 1, 17)[None, None]
    y = pp.resample_to_length(x, 33)
    np.testing.assert_allclose(y[0, 0], np.linspace(0, 1, 33), atol=1e-6)


def test_counts_to_units_per_channel():
    counts = np.array([[[26, -52]], [[25, 50]]]).reshape(1, 2, 2)
    g = pp.counts_to_units(counts, [26, 25])
    np.testing.assert_allclose(g, [[[1, -2], [1, 2]]])
    with pytest.raises(ValueError, match="3 entries but the signal has 2 channels"):
        pp.counts_to_units(counts, [1, 2, 3])


def test_fill_missing_forward_then_backward():
    x = np.array([[[np.nan, 1, np.nan, np.nan, 4, np.nan]]], np.float32)
    np.testing.assert_array_equal(pp.fill_missing(x)[0, 0], [1, 1, 1, 1, 4, 4])


def test_fill_missing_whole_channel_names_file_and_channel():
    x = np.zeros((2, 3, 5), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"rec\.csv: series 1, channel acc_z is entirely missing"):
        pp.fill_missing(x, "rec.csv", ["acc_x", "acc_y", "acc_z"])


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (2, 3, 12), elements=st.one_of(st.floats(-5, 5, width=32), st.just(np.nan))))
def test_fill_missing_property(x):
    full_missing = np.isnan(x).all(-1).any()
    if full_missing:
        with pytest.raises(ValueError):
            pp.fill_missing(x)
        return
    y = pp.fill_missing(x)
    assert not np.isnan(y).any()
    ok = ~np.isnan(x)
    np.testing.assert_array_equal(y[ok], x[ok])  # known values untouched


def test_spec_round_trip_and_apply():
    spec = pp.PreprocessSpec((pp.Step("clip_outliers", {"z": 3.0}), pp.Step("standardize")))
    again = pp.PreprocessSpec.from_dict(spec.to_dict())
    assert again == spec
    x = np.random.default_rng(3).normal(size=(2, 3, 30))
    np.testing.assert_allclose(pp.apply(again, x), pp.standardize(pp.clip_outliers(x, 3.0)))
    with pytest.raises(ValueError, match="unknown preprocessing step 'fft'"):
        pp.Step("fft")


# -- statistics shared by the trainer and the runtime ---------------------------------------------------


def test_softmax_is_stable_and_normalised():
    z = np.array([[1000.0, 1001.0, 999.0], [0.0, 0.0, 0.0]])
    p = pp.softmax(z)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    np.testing.assert_allclose(p[1], 1 / 3)
    e = np.exp([1.0, 2.0, 0.0])
    np.testing.assert_allclose(p[0], e / e.sum())  # shift-invariant: the same as without the huge offset


def _ar_signal(rng, n, T=64):
    """Windows of a 3-axis signal with gravity and axis-specific autocorrelation (distinct lag structure)."""
    x = np.zeros((n, 3, T))
    e = rng.normal(size=(n, 3, T)) * np.array([0.3, 0.2, 0.1])[None, :, None]
    for t in range(1, T):
        x[:, :, t] = np.array([0.95, 0.6, 0.2])[None] * x[:, :, t - 1] + e[:, :, t]
    return x + np.array([0.1, -0.2, 0.97])[None, :, None]


def test_moments_match_direct_computation():
    rng = np.random.default_rng(0)
    X = _ar_signal(rng, 20, 40)
    m = pp.signal_moments(X, lags=(1, 3))
    flat = X.transpose(0, 2, 1).reshape(-1, 3)
    mu = flat.mean(0)
    np.testing.assert_allclose(m["mean"], mu)
    np.testing.assert_allclose(m["cov"], np.cov(flat.T, bias=True), atol=1e-12)
    for i, lag in enumerate((1, 3)):  # loop over every pair of samples `lag` apart inside a window
        S, n = np.zeros((3, 3)), 0
        for w in X:
            for t in range(40 - lag):
                S += np.outer(w[:, t] - mu, w[:, t + lag] - mu)
                n += 1
        np.testing.assert_allclose(m["lagcov"][i], (S / n + S.T / n) / 2, atol=1e-12)
    # accumulating window by window gives the same numbers as one batch
    acc = pp.MomentAccumulator(lags=(1, 3))
    for w in X:
        acc.add(w)
    for k in ("mean", "cov", "lagcov"):
        np.testing.assert_allclose(acc.moments()[k], m[k], atol=1e-12)
    # hand values: a constant window has its value as mean and no covariance
    c = pp.signal_moments(np.ones((2, 3, 5)) * np.array([1.0, 2.0, 3.0])[None, :, None], lags=(1,))
    np.testing.assert_allclose(c["mean"], [1, 2, 3])
    np.testing.assert_allclose(c["cov"], np.zeros((3, 3)), atol=1e-12)


def test_moment_mismatch_is_zero_for_the_same_moments_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    X = _ar_signal(rng, 50)
    m = pp.signal_moments(X)
    eye, zero = np.eye(3), np.zeros(3)
    assert pp.moment_mismatch(m, m, eye, zero) == 0.0
    # a gain of 2 on x: the sum of the relative squared differences of the three moments
    G = np.diag([2.0, 1.0, 1.0])
    shifted = pp.signal_moments(np.einsum("ij,njt->nit", G, X))
    d = pp.moment_mismatch(m, shifted, eye, zero)
    rel = lambda a, b: ((a - b) ** 2).sum() / (b**2).sum()  # noqa: E731
    want = rel(shifted["mean"], m["mean"]) + rel(shifted["cov"], m["cov"]) + rel(shifted["lagcov"], m["lagcov"])
    assert d == pytest.approx(want) and d > 0.1
    # undoing the gain with A restores the moments
    assert pp.moment_mismatch(m, shifted, np.linalg.inv(G), zero) == pytest.approx(0.0, abs=1e-12)


def test_roughness_separates_noise_from_movement_and_ignores_scale_offset_and_rotation():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.3, (200, 3, 64))
    assert pp.roughness(noise).mean() == pytest.approx(2.0, abs=0.05)  # white noise: steps as large as swings
    t = np.linspace(0, 1, 64)
    move = np.stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t) - 1, 0.2 * t])
    quiet_axis = move.copy()
    quiet_axis[2] = 1.0 + rng.normal(0, 0.002, 64)  # an axis that does not move: its noise barely counts
    assert pp.roughness(move) < 0.02 and pp.roughness(quiet_axis) < 0.02
    a = np.deg2rad(40)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    x = move + 0.01 * rng.normal(size=move.shape)
    assert pp.roughness(3.0 * (R @ x) + 5.0) == pytest.approx(pp.roughness(x), rel=1e-9)
    assert pp.roughness(np.ones((3, 64))) == 0.0 and pp.roughness(noise).shape == (200,)
    counts = np.array([[-32768, 32767] * 32, [0, 1] * 32, [5] * 64], np.int16)  # int16 steps would wrap
    assert pp.roughness(counts) == pytest.approx(pp.roughness(counts.astype(np.float64)))
