"""The segmenter's gentle cut and the choice between the two cuts (``edgessl enroll`` makes it per user)."""

from __future__ import annotations

import numpy as np
import pytest

from edgessl.datasets.synthetic import GESTURES, SyntheticPerson
from edgessl.segmenter import GENTLE, SegmentParams, choose_segmentation, profile, segment_signal

RATE = 100.0


def calibration(user: str | int, seed: int = 2) -> tuple[np.ndarray, list]:
    """Each gesture once, stillness between: what ``edgessl enroll --calibrate`` records."""
    p = SyntheticPerson(user, seed, perform=",".join(GESTURES))
    x = p.next(int(40 * RATE))
    return x, [pf for pf in p.performances if pf.end <= x.shape[1]]


def whole(x: np.ndarray, perf: list, params: SegmentParams) -> int:
    """Performances cut as one segment covering at least 80 % of it."""
    segs = segment_signal(x, RATE, params)
    n = 0
    for p in perf:
        ov = [(s, e) for s, e in segs if min(e, p.end) > max(s, p.start)]
        n += len(ov) == 1 and min(ov[0][1], p.end) - max(ov[0][0], p.start) >= 0.8 * (p.end - p.start)
    return n


def test_profiles_change_only_the_gentle_keys_of_the_bundles_own_parameters():
    own = SegmentParams(threshold_g=0.08, max_duration_s=4.0)
    assert profile(own, None) == own and profile(own, "default") == own
    g = profile(own, "gentle")
    assert (g.threshold_g, g.max_duration_s) == (0.08, 4.0)
    assert {k: getattr(g, k) for k in GENTLE} == GENTLE
    with pytest.raises(ValueError, match="unknown segmentation profile 'slow'"):
        profile(own, "slow")


def test_a_slow_users_gestures_are_cut_whole_by_the_gentle_cut_which_is_chosen_for_them_only():
    """Simulated user D (the slowest, small gestures): the default cut splits several of the 8 into pieces, the
    gentle cut keeps all whole and is chosen; a brisk user (A) keeps the default."""
    x, perf = calibration("D")
    assert len(perf) == 8
    c = choose_segmentation(x, RATE)
    assert c.profile == "gentle" and c.split >= 2
    assert whole(x, perf, SegmentParams()) <= 6 and whole(x, perf, profile(SegmentParams(), "gentle")) == 8
    xa, perf_a = calibration("A")
    ca = choose_segmentation(xa, RATE)
    assert ca.profile == "default" and ca.split == 0 and whole(xa, perf_a, SegmentParams()) == 8


def test_bumps_alone_do_not_choose_the_gentle_cut():
    """Knocks are too short under both cuts: they never make a user 'slow'."""
    rng = np.random.default_rng(0)
    x = np.zeros((3, 3000)) + np.array([[0.0], [0.0], [1.0]]) + rng.normal(0, 0.003, (3, 3000))
    for at in range(200, 2800, 400):
        x[:, at : at + 3] += rng.normal(0, 0.8, (3, 3))
    c = choose_segmentation(x, RATE)
    assert c.default_fragments >= 2 and c.profile == "default"


def test_the_cut_measures_the_accelerometer_beside_a_gyroscope():
    """A 6-axis board (acceleration in g, rotation in rad/s): a gyroscope's rest noise alone is above the cut's
    threshold in g, so the motion energy is measured on the accelerometer (walkthrough: `record` found no take
    on such a board while `run` cut the same stream on the model's accelerometer); an accelerometer alone, or
    channels of one unit, keep every channel."""
    from edgessl.segmenter import motion_rows

    assert motion_rows(["g"] * 3) is None and motion_rows(["g"] * 6) is None and motion_rows(["unknown"] * 6) is None
    assert motion_rows(["g", "g", "g", "rad/s", "rad/s", "rad/s"]) == [0, 1, 2]
    assert motion_rows(["rad/s"] * 3 + ["g"] * 3) == [3, 4, 5]
    x, perf = calibration(1)
    rng = np.random.default_rng(0)
    gyro = rng.normal(0.0, 0.05, (3, x.shape[1]))  # a hand-held board's gyroscope at rest, rad/s
    x6 = np.concatenate([x, gyro]).astype(np.float32)
    acc_only = segment_signal(x, RATE, SegmentParams())
    np.testing.assert_array_equal(segment_signal(x6, RATE, SegmentParams(), [0, 1, 2]), acc_only)
    assert len(acc_only) >= len(perf) - 1
    assert len(segment_signal(x6, RATE, SegmentParams())) < len(perf) // 2  # every channel: the rest never rests
    assert choose_segmentation(x6, RATE, SegmentParams(), [0, 1, 2]) == choose_segmentation(x, RATE, SegmentParams())

