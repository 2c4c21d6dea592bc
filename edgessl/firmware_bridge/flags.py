"""Flags of the commands that open a port (``run``, ``monitor``, ``record``, ``enroll``): what a text board's
lines do not say. Light on purpose: every parser is built at start-up, before anything opens a port."""

from __future__ import annotations

import argparse

__all__ = ["add_text_board_flags", "board_flags_text", "channels_example", "units_flag"]


def _channel_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct comma-separated names such as acc_x,acc_y,acc_z")
    return names


def channels_example(n: int) -> str:
    """An example ``--channels`` value for a board of ``n`` values: ``acc_x,acc_y,acc_z`` (then the gyroscope's)."""
    usual = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    return ",".join(usual[:n]) + (",..." if n > len(usual) else "")


def units_flag(text: str) -> dict[str, str]:
    """``acc=m/s2,gyro=deg/s`` -> ``{"acc": "m/s2", "gyro": "deg/s"}``: units the host converts to g / rad/s."""
    from edgessl.units import UNIT_CHOICES, canonical_unit

    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, unit = (x.strip() for x in part.partition("="))
        want = {"acc": "g", "gyro": "rad/s"}.get(key)
        if not eq or want is None or key in out:
            raise argparse.ArgumentTypeError(f"{text!r}: expected acc=UNIT and/or gyro=UNIT, e.g. acc=m/s2 or "
                                             "acc=mg,gyro=deg/s")  # fmt: skip
        if canonical_unit(unit)[0] != want:
            raise argparse.ArgumentTypeError(f"{key}={unit}: not a unit edgessl converts to {want}; expected "
                                             f"{UNIT_CHOICES[want]}")  # fmt: skip
        out[key] = unit
    return out


def add_text_board_flags(p: argparse.ArgumentParser) -> None:
    """``--rate``, ``--channels`` and ``--units``: what a text board's lines do not say (the commands that open
    a port)."""
    p.add_argument("--rate", type=float, default=None,
                   help="sample rate of a text-mode device (default: estimated from its lines' arrivals)")
    p.add_argument("--channels", type=_channel_names, default=None, metavar="NAMES",
                   help="names of a text board's values, e.g. acc_x,acc_y,acc_z, when it prints no header line "
                        "(else they are ch0, ch1 ... in unknown units); units follow the names as in the data "
                        "files: acc -> g, gyro -> rad/s")  # fmt: skip
    p.add_argument("--units", type=units_flag, default=None, metavar="acc=UNIT,gyro=UNIT",
                   help="units of a text board's values when they are not g and rad/s, converted as they arrive: "
                        "acc=m/s2 (Edge Impulse's data-forwarder sketches print m/s²), acc=mg, gyro=deg/s, or raw "
                        "counts by the datasheet's sensitivity: acc=16384LSB/g,gyro=131LSB/dps (an MPU-6050 at "
                        "±2 g, ±250 °/s)")  # fmt: skip


def board_flags_text(args: argparse.Namespace) -> str:
    """The port flags given to this command that the next command on the same board needs too (`` --mode text
    --rate 50 --channels acc_x,acc_y,acc_z --units acc=m/s2``; "" for none): a suggested command without them
    fails on a text board (walkthrough)."""
    import shlex

    out = []
    if getattr(args, "mode", "auto") not in (None, "auto"):
        out.append(f"--mode {args.mode}")
    if getattr(args, "rate", None) is not None:
        out.append(f"--rate {args.rate:g}")
    if getattr(args, "channels", None):
        out.append(f"--channels {','.join(args.channels)}")
    if getattr(args, "units", None):
        out.append("--units " + shlex.quote(",".join(f"{k}={v}" for k, v in args.units.items())))
    return "".join(" " + f for f in out)
