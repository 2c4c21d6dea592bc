"""Units said by a channel's name, checked against its values (edgessl.units)."""

from __future__ import annotations

import numpy as np


def test_a_gyroscope_in_degrees_a_second_or_raw_counts_is_named():
    """A gyroscope said to be in rad/s (a `gyro_*` name) but printed in °/s, as most MPU-6050 sketches do, or in
    raw counts: 10 % of a moving hand's samples reach far beyond what a hand turns; rad/s pass, rest says nothing."""
    from edgessl.units import UnitWatch, gyro_problem_text

    rng = np.random.default_rng(0)
    moving = np.concatenate([rng.normal(0, 0.03, (150, 3)), rng.normal(0, 3.0, (50, 3))])  # rad/s: rest, then turns
    names = ["gyro_x", "gyro_y", "gyro_z"]
    assert gyro_problem_text(names, moving) is None
    said = gyro_problem_text(names, moving * 57.3)
    assert said is not None and "look like °/s (divide them by 57.3)" in said and "gyro_x" in said
    assert gyro_problem_text(names, moving * 7506) is not None
    assert gyro_problem_text(names, rng.normal(0, 0.5, (200, 3))) is None  # °/s at rest: nothing either way
    acc = np.tile([0.0, 0.0, 1.0], (200, 1))
    w = UnitWatch(["acc_x", "acc_y", "acc_z", *names], ["g"] * 3 + ["rad/s"] * 3, samples=200)
    assert w.add(np.concatenate([acc, moving * 57.3], axis=1)) is not None
    w = UnitWatch(["acc_x", "acc_y", "acc_z", *names], ["g"] * 3 + ["rad/s"] * 3, samples=200)
    assert w.add(np.concatenate([acc, moving], axis=1)) is None
    w = UnitWatch(["acc_x", "acc_y", "acc_z", *names], ["g"] * 3 + ["rad/s"] * 3, samples=200)
    both = w.add(np.concatenate([acc * 1000, moving * 57.3], axis=1))
    assert both is not None and "look like mg" in both and "°/s" in both


def test_values_still_wrong_after_the_declared_unit_point_to_the_channel_order():
    """A walkthrough's 6-axis board sends acc (mg) then gyro (°/s) but --channels named gyro first: with --units
    gyro=dps the accelerometer's mg, converted as °/s, look like °/s still; naming the unit again would not help."""
    from edgessl.units import gyro_problem_text, with_units_flag

    rng = np.random.default_rng(1)
    mg = np.tile([10.0, -980.0, 40.0], (200, 1)) + rng.normal(0, 400, (200, 3))  # a moving accelerometer in mg
    problem = gyro_problem_text(["gyro_x", "gyro_y", "gyro_z"], mg * np.pi / 180)  # converted as if °/s
    assert problem is not None
    plain = with_units_flag(problem)
    assert "--units gyro=deg/s" in plain and "channel order" not in plain
    said = with_units_flag(problem, "gyro_x,gyro_y,gyro_z,acc_x,acc_y,acc_z", {"acc": "mg", "gyro": "dps"})
    assert "after --units gyro=dps converted them" in said and "check the channel order" in said
    assert "--units gyro=deg/s" not in said and "gyro_x,gyro_y,gyro_z,acc_x" not in said
    # another sensor's unit declared: this one's remedy is still its unit
    assert "--units gyro=deg/s" in with_units_flag(problem, None, {"acc": "mg"})
