"""A board mounted another way: found from the calibration takes, kept in the user state, applied by ``run``."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from edgessl.cli import build_parser, main
from edgessl.edge_runtime.enroll import StateMismatch, UserState
from edgessl.edge_runtime.mounting import MIN_GAIN, fit_mounting, mount_angle, mount_matrix
from edgessl.edge_runtime.runtime import GestureRuntime

from .test_enroll import performances

TURN = Rotation.from_rotvec(np.deg2rad(120) * np.array([1.0, 2.0, 3.0]) / np.sqrt(14)).as_matrix()  # board = TURN @ x


def turned(X: np.ndarray, R: np.ndarray = TURN) -> np.ndarray:
    return np.einsum("ij,njt->nit", R, X).astype(np.float32)


def angle_between(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(a @ b.T).magnitude()))


def template_model(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eight classes of 3-axis windows (gravity on z plus a movement each) and a head that scores a window by its
    squared distance to each class's template: a model whose best rotation of the board is known exactly."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 40)
    T = np.stack([np.stack([np.sin(2 * np.pi * (k + 1) * t + rng.uniform(0, 6)) * rng.uniform(0.3, 1)
                            for _ in range(3)]) for k in range(8)]).astype(np.float32)  # fmt: skip
    T[:, 2] += 1.0  # gravity
    X = T + rng.normal(0, 0.05, T.shape).astype(np.float32)  # one take of each
    return T, X, np.arange(8)


def test_the_fit_finds_the_turn_and_keeps_a_straight_board_as_it_is():
    T, X, y = template_model()

    def logits(w: np.ndarray) -> np.ndarray:
        return -((w[:, None] - T[None]) ** 2).sum(axis=(2, 3)) / 4.0

    units = ["g", "g", "g"]
    fit = fit_mounting(logits, turned(X), y, units)
    assert fit.accepted and fit.right_after == 8 and fit.right_before < 8, fit
    assert angle_between(fit.rotation, TURN.T) < 3, fit  # the turn undone
    assert fit.angle_deg == pytest.approx(120, abs=3) and "your board is turned 120°" in fit.text()
    assert mount_angle(fit.rotation) == pytest.approx(fit.angle_deg, abs=0.01)
    assert fit.to_json()["accepted"] is True and np.array(fit.to_json()["rotation"]).shape == (3, 3)
    straight = fit_mounting(logits, X, y, units)
    assert not straight.accepted and straight.gain < MIN_GAIN and "as in training" in straight.text(), straight
    again = fit_mounting(logits, turned(X), y, units, current=fit.rotation)  # the mounting in use already
    assert not again.accepted and abs(again.gain) < MIN_GAIN, again
    with pytest.raises(ValueError, match="accelerometer"):
        fit_mounting(logits, X, y, ["rad/s"] * 3)


def test_a_turned_board_is_found_from_one_take_each_through_the_runtime(small_bundle):
    """The test bundle, a board turned 120° about an oblique axis: one take of each gesture finds a turn under
    which the held-out performances are answered as before (measured: 0.22 as mounted, 1.00 with the fit; 0.81
    straight); the takes enrolled afterwards are kept in the training data's axes."""
    rt = GestureRuntime(small_bundle)
    X, y = performances(rt.labels, "B", 1, seed=1)
    Xt, yt = performances(rt.labels, "B", 4, seed=2)

    def right(Z: np.ndarray) -> float:
        return float(np.mean([p.index == c for p, c in zip(rt.classify(Z), yt, strict=True)]))

    as_mounted = right(turned(Xt))
    fit = rt.fit_mounting({lb: turned(X[y == c]) for c, lb in enumerate(rt.labels)})
    assert fit.accepted and fit.right_after > fit.right_before, fit
    assert rt.user_state is not None and rt.user_state.mounting is not None
    np.testing.assert_array_equal(rt.user_state.mounting, fit.rotation)
    corrected = right(turned(Xt))  # classify() turns the board's windows with the state's mounting
    assert corrected >= 0.9 and corrected >= as_mounted + 0.3, (as_mounted, corrected)
    assert rt.enroll(rt.labels[0], turned(X[y == 0])).accepted
    assert rt.user_state.windows is not None
    np.testing.assert_allclose(rt.user_state.windows[0], fit.rotation @ TURN @ X[0], atol=1e-4)


def test_a_states_mounting_turns_every_window_before_the_model(small_bundle, tmp_path):
    """A state holding the inverse of the board's turn: the turned board is answered exactly as a straight one."""
    rt = GestureRuntime(small_bundle)
    Xt, _ = performances(rt.labels, "A", 2, seed=2)
    straight = rt.classify(Xt)
    state = UserState(rt.bundle.checksum, rt.labels, dim=rt.W.shape[1], mounting=TURN.T)
    path = tmp_path / "turned.npz"
    state.save(path)
    with GestureRuntime(small_bundle, user_state=path) as turned_rt:
        for a, b in zip(straight, turned_rt.classify(turned(Xt)), strict=True):
            assert a.label == b.label and a.confidence == pytest.approx(b.confidence, abs=1e-3)


def test_mounting_round_trips_and_a_state_without_one_stays_readable_by_earlier_runtimes(small_bundle, tmp_path):
    rt = GestureRuntime(small_bundle)
    X, y = performances(rt.labels, "A", 1, seed=1)
    assert rt.enroll(rt.labels[0], X[y == 0]).accepted
    assert rt.user_state is not None
    plain = tmp_path / "plain.npz"
    rt.user_state.save(plain)
    with np.load(plain) as z:
        assert int(z["version"]) == 3 and "mounting" not in z.files
    rt.user_state.mounting = TURN.T.astype(np.float32)
    turned_state = tmp_path / "turned.npz"
    rt.user_state.save(turned_state)
    with np.load(turned_state) as z:
        assert int(z["version"]) == 4  # an earlier runtime refuses it rather than ignore the turn
        np.testing.assert_allclose(z["mounting"], TURN.T, atol=1e-6)
        damaged = {k: z[k] for k in z.files}
    damaged["mounting"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "damaged.npz", **damaged)
    with pytest.raises(StateMismatch, match="damaged user state"):
        UserState.load(tmp_path / "damaged.npz")


def test_the_mounting_turns_the_accelerometer_and_gyroscope_axes_only():
    M = mount_matrix(TURN, ["g", "g", "g", "rad/s", "rad/s", "rad/s", "unknown"])
    np.testing.assert_allclose(M[:3, :3], TURN)
    np.testing.assert_allclose(M[3:6, 3:6], TURN)
    assert M[6, 6] == 1 and np.count_nonzero(M[:3, 3:]) == 0 and np.count_nonzero(M[6, :6]) == 0
    # UCI HAR's layout: body acceleration, gyroscope, total acceleration: every triad turns with the board
    H = mount_matrix(TURN, ["g"] * 3 + ["rad/s"] * 3 + ["g"] * 3)
    for tri in (slice(0, 3), slice(3, 6), slice(6, 9)):
        np.testing.assert_allclose(H[tri, tri], TURN)
    assert np.count_nonzero(H[:3, 6:]) == 0


def test_a_model_update_carries_the_mounting_and_does_not_turn_the_takes_twice(small_bundle, tmp_path):
    rt = GestureRuntime(small_bundle)
    X, y = performances(rt.labels, "B", 1, seed=1)
    rt.fit_mounting({lb: turned(X[y == c]) for c, lb in enumerate(rt.labels)})
    for c, lb in enumerate(rt.labels):
        rt.enroll(lb, turned(X[y == c]))
    assert rt.user_state is not None and rt.user_state.mounting is not None
    old = tmp_path / "old.npz"
    rt.user_state.save(old)
    carried = GestureRuntime(small_bundle)
    carried.carry_over(old)
    assert carried.user_state is not None and carried.user_state.mounting is not None
    assert rt.user_state.windows is not None and carried.user_state.windows is not None
    np.testing.assert_allclose(carried.user_state.windows, rt.user_state.windows, atol=1e-6)
    np.testing.assert_allclose(carried.user_state.mounting, rt.user_state.mounting)


@pytest.mark.slow
def test_cli_calibration_on_a_turned_board_says_so_and_run_answers_its_gestures(small_bundle, tmp_path, capsys):
    """`edgessl simulate --faults mount=120`: calibrate finds the turn and says it; run --state answers the
    turned board's gestures."""
    from edgessl.firmware_bridge.simulator import Faults, SimulatedImu, make_source

    state, link = tmp_path / "a.npz", str(tmp_path / "imu")
    faults = Faults(mount_deg=120.0)
    with SimulatedImu(*make_source("synthetic", None, seed=5, user="A", perform="cue"), speed=4.0, link=link,
                      faults=faults):  # fmt: skip
        main(["enroll", str(small_bundle), "--port", link, "--calibrate", "--countdown", "0", "--state", str(state),
              "--seconds", "90"])  # fmt: skip
    out = capsys.readouterr().out
    assert "# mounting: your board is turned" in out, out[-2000:]
    assert f"export-c {small_bundle} --out DIR --state {state}" in out  # the microcontroller's way to the turn
    st = UserState.load(state)
    assert st.mounting is not None and sum(st.counts().values()) >= 6
    with SimulatedImu(*make_source("synthetic", None, seed=7, user="A", perform="square:3"), speed=4.0, link=link,
                      faults=faults):  # fmt: skip
        args = build_parser().parse_args(["run", str(small_bundle), "--port", link, "--state", str(state),
                                          "--seconds", "6", "--adapt", "none"])  # fmt: skip
        buf = io.StringIO()
        args.func(args, out=buf)
    said = buf.getvalue()
    assert said.count(" square ") >= 2, said[-2000:]
    assert f"(board turned {mount_angle(st.mounting):.0f}°: corrected)" in said  # run's first line says it
    with SimulatedImu(*make_source("synthetic", None, seed=7, user="A", perform="square:1"), speed=4.0, link=link,
                      faults=faults):  # fmt: skip
        assert main(["run", str(small_bundle), "--port", link, "--state", str(state), "--seconds", "3", "--json"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    head = next(ln["user_state"] for ln in lines if "user_state" in ln)
    stats = next(ln["stats"] for ln in lines if "stats" in ln)
    assert head["mounting_deg"] == stats["user_state"]["mounting_deg"] == round(mount_angle(st.mounting), 1)
