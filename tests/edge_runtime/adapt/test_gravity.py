import dataclasses
import json

import numpy as np
import pytest

from edgessl.edge_runtime.adapt.gravity import GravityCalibration
from edgessl.edge_runtime.adapt.ttt import TTT
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.preprocess import PreprocessSpec, Step, fit_gravity, still_means
from edgessl.synthetic import SyntheticConfig, make_dataset

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def _still(n, rng, axes=None, noise=0.005, T=64):
    """``n`` still windows ``[n, 3, T]`` (g): gravity in random orientations (or around ``axes``), plus noise."""
    v = rng.normal(size=(n, 3)) if axes is None else np.asarray(axes, float)[rng.integers(0, len(axes), n)] + 0.1 * rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v[:, :, None] + noise * rng.normal(size=(n, 3, T))


def _sensor(X, gain, bias):
    return gain[None, :, None] * X + bias[None, :, None]


def test_fit_gravity_recovers_a_sensors_gain_and_offset_relative_to_the_training_sensor():
    rng = np.random.default_rng(0)
    ref_g, ref_b = np.array([0.95, 1.02, 0.99]), np.array([0.03, -0.02, 0.01])  # the training sensor's own errors
    # the training sensor reads gravity x as (x - ref_b) / ref_g; the stream's sensor as gain·x + bias
    train = (_still(400, rng) - ref_b[None, :, None]) / ref_g[None, :, None]
    g0, b0, before, after = fit_gravity(still_means(train))
    np.testing.assert_allclose(g0, ref_g, atol=0.01)
    np.testing.assert_allclose(b0, ref_b, atol=0.01)
    assert after < 0.002 < before
    gain, bias = np.array([0.85, 1.15, 1.05]), np.array([0.08, -0.05, 0.02])
    stream = _sensor(train, gain, bias)
    g, b, before, after = fit_gravity(still_means(stream), g0, b0)
    # the fit undoes the stream's sensor: g ⊙ (gain ⊙ x + bias) + b == x
    np.testing.assert_allclose(g * gain, 1.0, atol=0.01)
    np.testing.assert_allclose(g * bias + b, 0.0, atol=0.01)
    assert before > 0.05 and after < 0.005
    # a refit starts from the previous fit (the runtime's, every few still windows): the same optimum
    gw, bw, before_w, after_w = fit_gravity(still_means(stream), g0, b0, start=(g * 1.01, b + 0.01))
    np.testing.assert_allclose(gw, g, atol=1e-6)
    np.testing.assert_allclose(bw, b, atol=1e-6)
    assert before_w == before and after_w == pytest.approx(after, abs=1e-9)  # "before" is the identity's miss


def test_an_axis_gravity_never_visited_is_left_alone():
    rng = np.random.default_rng(1)
    M = still_means(_sensor(_still(200, rng, axes=[[0, 0, 1], [0, 0.3, 1]]), np.array([1.0, 1.0, 1.1]), np.array([0.0, 0.0, 0.05])))
    g, b, _, after = fit_gravity(M)
    assert abs(g[0] - 1) < 0.02 and abs(b[0]) < 0.02  # x never saw gravity: no evidence, no change
    assert after < 0.01  # while z's error is absorbed
    assert fit_gravity(np.zeros((0, 3)))[0].tolist() == [1, 1, 1]
    moving = rng.normal(size=(10, 3, 64))
    assert still_means(moving).shape == (0, 3)


def test_calibration_applies_only_to_a_stream_whose_gravity_is_off():
    rng = np.random.default_rng(2)
    ref = (np.ones(3), np.zeros(3), 0.004)
    cal = GravityCalibration(*ref)
    assert not any(cal.observe(w) for w in _still(200, rng))  # a calibrated sensor: nothing to change
    assert not cal.active and cal.miss < 0.01
    assert not any(cal.observe(w) for w in rng.normal(size=(100, 3, 64)))  # motion teaches nothing
    gain, bias = np.array([1.2, 0.9, 0.85]), np.array([-0.07, 0.05, 0.1])
    # the same device with a sensor whose gain and offset are off (a remount: the old still windows are forgotten,
    # and a full memory is refitted once a quarter of it is new)
    assert any([cal.observe(w) for w in _sensor(_still(cal.means.maxlen * 5 // 4, rng), gain, bias)])
    assert cal.active and cal.miss > 0.05
    np.testing.assert_allclose(cal.gain * gain, 1.0, atol=0.02)
    np.testing.assert_allclose(cal.gain * bias + cal.bias, 0.0, atol=0.02)
    wild = GravityCalibration(*ref)  # an "error" no sensor has (gain 2) is not applied
    for w in _sensor(_still(64, rng), np.array([2.0, 1.0, 1.0]), np.zeros(3)):
        wild.observe(w)
    assert not wild.active


@pytest.mark.parametrize("shifted", [True, False])
def test_ttt_calibrates_on_gravity_before_the_encoder_and_keeps_it_in_its_state(small_bundle, tmp_path, shifted):
    """A bundle whose training sensor's gravity is recorded: still windows between the gestures calibrate a
    sensor with gain and offset errors (the encoder then sees the corrected signal) and leave a good one alone."""
    with GestureRuntime(small_bundle, decision=ANY) as rt:
        ctx = rt.adapt_context()
    m = dataclasses.replace(ctx.input_moments, gravity=(np.ones(3), np.zeros(3), 0.004))
    # a model on raw units (one that standardises each window per axis never sees per-axis gain and offset)
    ctx = dataclasses.replace(ctx, input_moments=m, preprocess=PreprocessSpec(()))
    per_window = TTT()
    per_window.attach(dataclasses.replace(ctx, preprocess=PreprocessSpec((Step("standardize"),))))
    assert per_window.gravity is None
    ad = TTT(every=10**9)
    ad.attach(ctx)
    acc = ad.acc
    rng = np.random.default_rng(3)
    X = make_dataset(SyntheticConfig(reps=4, length=128)).X_test[:40]
    S = np.zeros_like(X)
    S[:, acc] = _still(40, rng, T=X.shape[-1])
    gain, bias = (np.array([1.15, 0.9, 1.1]), np.array([0.06, -0.04, 0.03])) if shifted else (np.ones(3), np.zeros(3))
    ad.theta = np.full(12, 0.01)  # a refinement searched before the calibration: dropped when it comes in
    ad._compose()
    for x, s in zip(X, S, strict=True):
        for w in (x, s):
            w = np.array(w, np.float32)
            w[acc] = _sensor(w[acc][None], gain, bias)[0]
            ad.observe(w, np.asarray(ctx.prototypes[:1]), np.full(len(ctx.labels), 1 / len(ctx.labels)))
    assert ad.gravity is not None and ad.gravity.active == shifted
    assert (not ad.theta.any()) == shifted
    if shifted:
        np.testing.assert_allclose(np.diag(ad.A) * gain, 1.0, atol=0.03)  # the applied map contains the calibration
        w = np.zeros((1, len(ctx.units), X.shape[-1]), np.float32)
        w[0, acc] = _sensor(np.array([[0.0], [0.0], [1.0]]) * np.ones((1, 3, X.shape[-1])), gain, bias)[0]
        np.testing.assert_allclose(ad.transform_input(w)[0, acc, 0], [0, 0, 1], atol=0.03)
    # the search rests while the calibration is in use (it cost up to 1.9 pt on activity streams), not before
    assert ad.calibrated == shifted and ad.summary()["calibrated"] == shifted
    json.dumps(ad.summary())  # run --json's stats (a walkthrough's run ended on a numpy bool here)
    cal = ad.summary()["calibration"]  # what run says when it comes in (a walkthrough found it only in the state)
    if shifted:
        np.testing.assert_allclose(np.array(cal["gain"]) * gain, 1.0, atol=0.03)
        np.testing.assert_allclose(np.array(cal["gain"]) * bias + np.array(cal["offset_g"]), 0.0, atol=0.03)
    else:
        assert cal is None
    # a collapse reset goes back to the source model and keeps the sensor's calibration (it never depends on the
    # answers; a walkthrough's activity stream was reset three times and calibrated again each time)
    A_before, detector = ad.A.copy(), ad.collapsed
    ad.collapsed = lambda: True
    for _ in range(ad.sg.check_every):
        ad.observe(np.array(S[0], np.float32), np.asarray(ctx.prototypes[:1]), np.full(len(ctx.labels), 1 / len(ctx.labels)))
    ad.collapsed = detector
    assert ad.resets == 1 and ad.calibrated == shifted
    if shifted:
        np.testing.assert_allclose(ad.A, A_before, atol=0.02)  # (the still window above may refit it a little)
    calls = []
    ad._search = lambda: calls.append(1)
    ad._gated, ad._next = 10**9, 0
    for _ in range(ad.buffer):
        ad.update(S[0], np.asarray(ctx.prototypes[:1]), np.full(len(ctx.labels), 1 / len(ctx.labels)), 0)
    assert bool(calls) != shifted
    ad.save(tmp_path / "s.npz")
    back = TTT(every=10**9, state_path=str(tmp_path / "s.npz"))
    back.attach(ctx)
    assert back.restore() and back.gravity.active == shifted
    np.testing.assert_allclose(back.A, ad.A)


def test_trainer_records_the_training_sensors_gravity_only_when_it_saw_still_windows():
    pytest.importorskip("torch")
    from edgessl.datasets import load_windows
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.pipeline import GRAVITY_MIN_STILL, _input_moments

    ds = load_windows("synthetic:reps=5,length=128")
    assert not any("gravity" in k for k in _input_moments(ds, DataConfig(spec="synthetic")))  # gestures only
    rng = np.random.default_rng(4)
    gain, bias = np.array([0.95, 1.03, 1.0]), np.array([0.02, 0.0, -0.03])
    still = np.zeros((GRAVITY_MIN_STILL, *ds.X_train.shape[1:]), np.float32)
    acc = [i for i, u in enumerate(ds.channel_units) if u == "g"][:3]
    still[:, acc] = _sensor(_still(GRAVITY_MIN_STILL, rng, T=ds.X_train.shape[-1]), gain, bias)
    n = len(ds.X_train)
    k = GRAVITY_MIN_STILL
    with_idle = dataclasses.replace(ds, X_train=np.concatenate([ds.X_train, still]), y_train=np.concatenate([ds.y_train, ds.y_train[:k]]),
                                    groups={g: (np.concatenate([tr, tr[:k]]), te) for g, (tr, te) in ds.groups.items()})  # fmt: skip
    m = _input_moments(with_idle, DataConfig(spec="synthetic"))
    assert len(with_idle.X_train) == n + GRAVITY_MIN_STILL
    np.testing.assert_allclose(m["input_moments_gravity_gain"].numpy() * gain, 1.0, atol=0.02)
    assert float(m["input_moments_gravity_residual"]) < 0.01
