import dataclasses

import numpy as np
import pytest

from edgessl.edge_runtime.adapt import build_adapter
from edgessl.edge_runtime.adapt.align import align_moments
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.preprocess import MOMENT_LAGS, signal_moments
from edgessl.synthetic import SyntheticConfig, make_dataset
from tests.test_preprocess import _ar_signal  # the one AR test signal, shared with the moment tests

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def _accuracy(rt, X, y):
    return float(np.mean([rt.classify(x).index == yi for x, yi in zip(X, y, strict=True)]))


@pytest.mark.parametrize("deg", [30, 90, 150])
def test_align_moments_recovers_a_rotation(deg):
    from edgessl.synthetic import rotation_matrix

    rng = np.random.default_rng(deg)
    src = signal_moments(_ar_signal(rng, 1000))
    R = rotation_matrix(rng.normal(size=3), np.deg2rad(deg))
    shifted = np.einsum("ij,njt->nit", R, _ar_signal(rng, 1000))  # fresh draws: estimates, not identities
    Am, c, _ = align_moments(src, signal_moments(shifted))
    np.testing.assert_allclose(Am @ R, np.eye(3), atol=0.1)
    assert np.abs(c).max() < 0.1


def test_align_moments_recovers_per_axis_gain_and_bias():
    rng = np.random.default_rng(5)
    src = signal_moments(_ar_signal(rng, 1000))
    gain, bias = np.array([0.8, 1.15, 1.05]), np.array([0.05, -0.1, 0.08])
    shifted = gain[None, :, None] * _ar_signal(rng, 1000) + bias[None, :, None]
    Am, c, _ = align_moments(src, signal_moments(shifted))
    np.testing.assert_allclose(Am, np.diag(1 / gain), atol=0.1)
    np.testing.assert_allclose(c, -bias / gain, atol=0.1)


def _rotated_stream(rt, X, R):
    idx = [rt.channels.index(c) for c in ("acc_x", "acc_y", "acc_z")]
    Y = X.copy()
    Y[:, idx] = np.einsum("ij,njt->nit", R, X[:, idx])
    return Y.astype(np.float32)


@pytest.mark.slow
def test_input_correction_undoes_a_mounting_rotation_and_leaves_a_clean_stream_alone(small_bundle):
    from edgessl.synthetic import rotation_matrix

    ds = make_dataset(SyntheticConfig(reps=40, length=128))  # the bundle's held-out users, more repetitions
    X, y = ds.X_test, ds.y_test
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    with GestureRuntime(small_bundle, decision=ANY) as rt:
        clean = _accuracy(rt, X, y)
        R = rotation_matrix(np.array([1.0, 0.3, -0.2]), np.deg2rad(90))
        Xr = _rotated_stream(rt, X, R)
        shifted = _accuracy(rt, Xr, y)
    assert shifted < clean - 0.1, (clean, shifted)  # the shift matters
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter("input")) as rt:
        adapted = _accuracy(rt, Xr, y)
        assert rt.adapter.active and rt.adapter.updates > 0
    # the accuracy comes back (the estimate itself is checked against known rotations above)
    assert adapted > shifted + 0.5 * (clean - shifted), (clean, shifted, adapted)
    # on the unshifted stream nothing changes: predictions equal the source model's
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter("input")) as rt:
        same = _accuracy(rt, X, y)
        assert not rt.adapter.active and rt.adapter.updates == 0
    assert same == clean


def test_input_correction_needs_moments_in_g(small_bundle):
    """A bundle that records no input moments (an older export, or inputs not in g) is refused clearly."""
    with GestureRuntime(small_bundle) as rt:
        ctx = rt.adapt_context()
    assert ctx.input_moments is not None and ctx.input_moments.natural > 0
    build_adapter("input").attach(ctx)  # the real context is accepted
    with pytest.raises(ValueError, match="training moments"):
        build_adapter("input").attach(dataclasses.replace(ctx, input_moments=None))
    with pytest.raises(ValueError, match="z-score"):  # inputs not in g: no accelerometer to correct
        build_adapter("input").attach(dataclasses.replace(ctx, units=("z-score",) * 3))


def test_trainer_records_moments_with_the_lags_that_fit_the_window():
    pytest.importorskip("torch")
    from edgessl.datasets import load_windows
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.pipeline import _input_moments

    ds = load_windows("synthetic:reps=5,length=128")  # 40 windows per training user: the natural level is measured
    assert _input_moments(ds, DataConfig(spec="synthetic", length=2)) == {}  # no lag fits: nothing recorded
    short = _input_moments(ds, DataConfig(spec="synthetic", length=8))
    assert short["input_moments_lags"].tolist() == [2, 4] and short["input_moments_lagcov"].shape == (2, 3, 3)
    full = _input_moments(ds, DataConfig(spec="synthetic", length=63))
    assert full["input_moments_lags"].tolist() == list(MOMENT_LAGS) and float(full["input_moments_natural"]) > 0
