"""How the user's board is mounted, from their calibration takes (numpy + scipy): the rotation that turns the
board's axes into the training data's.

A board mounted turned in its case, worn the other way round or built on a new revision with the IMU chip
rotated sends every gesture in other axes: a model trained on one mounting answers a board turned 90° on
about a third of its gestures, and enrollment cannot win it back (a gesture turned 90° is another gesture:
``down`` becomes ``right``). With one labelled take of each of the bundle's gestures (``edgessl enroll
--calibrate``) the turn is found by the bundle's own model: the rotation under which the takes are best
explained, by the mean log-probability the bundle's head gives each take's label, over 24 axis-aligned and 200
other starting rotations refined by Nelder–Mead (a fraction of a second). It is kept in the user state
(:attr:`~edgessl.edge_runtime.enroll.UserState.mounting`) and applied to the accelerometer's axes (and the
gyroscope's, which turn with the board) before the model sees a window.

It is kept only when it explains the takes far better than the mounting in use: a mean gain of at least
:data:`MIN_GAIN` nats per take, or half the takes more answered right (a model with soft probabilities). A
person's own way of holding or wearing the sensor is a smaller turn too: on uWave's real users the best
rotation of one take per gesture gained 0.00–0.87 nats and at most 3 of 8 takes, and applying it anyway cost
their enrolled accuracy 1.2 pt on average, so such fits are left to enrollment; a board turned 90° or 180° gains
1.9–2.6 nats and 5–7 takes of 8 (docs/results.md, "A board mounted another way").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from edgessl.units import sensor_triads

__all__ = ["MIN_GAIN", "MountFit", "fit_mounting", "mount_angle", "mount_matrix"]

# nats of mean log-probability per take the turn must add over the mounting in use (see the module docstring)
MIN_GAIN = 1.0
N_RANDOM_STARTS = 200  # starts beside the 24 axis-aligned rotations (a fixed set: the fit is repeatable)
N_REFINED = 3  # the best starts refined
MAX_EVALS = 60  # Nelder–Mead evaluations per refined start


@dataclasses.dataclass(frozen=True)
class MountFit:
    """What :func:`fit_mounting` found.

    Attributes:
        rotation: ``[3, 3]``, board axes → the training data's (``model = rotation @ board``): the fit.
        accepted: whether it replaces the mounting in use (see the module's docstring).
        angle_deg, axis: the fitted turn (degrees, unit axis in the board's frame).
        gain: mean log-probability per take, the fit's minus the mounting in use's.
        right_before, right_after: takes whose label the bundle's head answers, with the mounting in use and
            with the fit; ``takes``: how many were scored.
    """

    rotation: np.ndarray
    accepted: bool
    angle_deg: float
    axis: tuple[float, float, float]
    gain: float
    right_before: int
    right_after: int
    takes: int

    def text(self) -> str:
        ax = ", ".join(f"{v:+.2f}" for v in self.axis)
        if self.accepted:
            return (f"mounting: your board is turned {self.angle_deg:.0f}° (about the axis {ax}) from the training "
                    f"data's (how it sits and how it is held, together); corrected from now on (the bundle answers {self.right_after} of {self.takes} takes "
                    f"right, {self.right_before} as mounted)")  # fmt: skip
        return (f"mounting: as in training (the best turn, {self.angle_deg:.0f}°, explains the takes by "
                f"{self.gain:+.2f} nats per take and {self.right_after - self.right_before:+d} take(s) right: short of a "
                f"turned board's {MIN_GAIN:g} nat or half the takes)")  # fmt: skip

    def to_json(self) -> dict:
        return {"accepted": self.accepted, "angle_deg": round(self.angle_deg, 1), "axis": [round(v, 3) for v in self.axis],
                "gain": round(self.gain, 3), "right_before": self.right_before, "right_after": self.right_after,
                "takes": self.takes, "rotation": np.round(self.rotation, 5).tolist()}  # fmt: skip


def mount_matrix(rotation: np.ndarray, units: list[str]) -> np.ndarray:
    """The ``[C, C]`` matrix that turns a window's channels: ``rotation`` on every
    :func:`~edgessl.units.sensor_triads` triad, the other channels as they are."""
    M = np.eye(len(units), dtype=np.float32)
    for tri in sensor_triads(units):
        M[np.ix_(tri, tri)] = rotation
    return M


def mount_angle(rotation: np.ndarray) -> float:
    """How far ``rotation [3, 3]`` turns, in degrees (0 to 180)."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))


def fit_mounting(logits: Callable[[np.ndarray], np.ndarray], windows: np.ndarray, classes: np.ndarray,
                 units: list[str], current: np.ndarray | None = None) -> MountFit:  # fmt: skip
    """The rotation of the board under which ``windows [N, C, T]`` (board axes) best match their ``classes [N]``.

    Args:
        logits: the bundle's head on a batch of windows in the training data's axes, ``[M, C, T] -> [M, K]``.
        units: the windows' channel units (the accelerometer: the first three in g).
        current: the mounting in use (``[3, 3]``; None: the board's axes are the training data's).

    Raises:
        ValueError: no accelerometer (three channels in g), or no windows.
    """
    from scipy.optimize import minimize
    from scipy.spatial.transform import Rotation
    from scipy.special import log_softmax

    from edgessl.units import triad

    if len(triad(units, "g")) != 3:
        raise ValueError(f"a mounting needs an accelerometer's three axes in g; the channels' units are {units}")
    X = np.asarray(windows, np.float32)
    y = np.asarray(classes, np.int64)
    if X.ndim != 3 or not len(X) or len(y) != len(X):
        raise ValueError(f"expected windows [N >= 1, C, T] and N classes; got {X.shape} and {y.shape}")

    def score(Rs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean log-probability of the labels and takes answered right, per rotation ``[R, 3, 3]``."""
        turned = np.einsum("rij,njt->rnit", np.stack([mount_matrix(R, units) for R in Rs]), X)
        L = logits(turned.reshape(-1, *X.shape[1:]).astype(np.float32)).astype(np.float64).reshape(len(Rs), len(X), -1)
        logp = log_softmax(L, axis=-1)
        return np.take_along_axis(logp, y[None, :, None], -1)[..., 0].mean(-1), (L.argmax(-1) == y).sum(-1)

    now = np.eye(3) if current is None else np.asarray(current, np.float64)
    starts = np.concatenate([now[None], Rotation.create_group("O").as_matrix(),
                             Rotation.random(N_RANDOM_STARTS, random_state=0).as_matrix()])  # fmt: skip
    ll, _ = score(starts)
    best_v, best_ll = Rotation.from_matrix(now).as_rotvec(), float(ll[0])
    for i in np.argsort(-ll)[:N_REFINED]:
        res = minimize(lambda v: -float(score(Rotation.from_rotvec(v).as_matrix()[None])[0][0]),
                       Rotation.from_matrix(starts[i]).as_rotvec(), method="Nelder-Mead",
                       options={"maxfev": MAX_EVALS, "xatol": 1e-3, "fatol": 1e-3})  # fmt: skip
        if -res.fun > best_ll:
            best_v, best_ll = res.x, float(-res.fun)
    turn = Rotation.from_rotvec(best_v)
    R = turn.as_matrix()
    (ll_now, ll_fit), (right_now, right_fit) = score(np.stack([now, R]))
    gain = float(ll_fit - ll_now)
    # far better explained: by the probabilities, or (a model whose probabilities are soft) by half the takes
    # more answered right; on uWave's real users no fit did either (at most 3 of 8 more)
    accepted = right_fit >= right_now and gain > 0 and (gain >= MIN_GAIN or right_fit - right_now >= len(X) / 2)
    v = turn.as_rotvec()  # (the search's vector may run past 180°; this one does not)
    norm = float(np.linalg.norm(v))
    axis = v / norm if norm > 0 else np.array([0.0, 0.0, 1.0])
    return MountFit(R.astype(np.float32), bool(accepted), mount_angle(R),
                    (float(axis[0]), float(axis[1]), float(axis[2])), gain, int(right_now), int(right_fit), len(X))  # fmt: skip
