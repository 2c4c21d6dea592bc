"""Flags of the commands that open a port (``run``, ``monitor``, ``record``, ``enroll``): what a text board's
lines do not say. Light on purpose: every parser is built at start-up, before anything opens a port."""

from __future__ import annotations

import argparse

__all__ = ["add_text_board_flags"]


def _channel_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct comma-separated names such as acc_x,acc_y,acc_z")
    return names


def add_text_board_flags(p: argparse.ArgumentParser) -> None:
    """``--rate`` and ``--channels``: what a text board's lines do not say (the commands that open a port)."""
    p.add_argument("--rate", type=float, default=None,
                   help="sample rate of a text-mode device (default: estimated from its lines' arrivals)")
    p.add_argument("--channels", type=_channel_names, default=None, metavar="NAMES",
                   help="names of a text board's values, e.g. acc_x,acc_y,acc_z, when it prints no header line "
                        "(else they are ch0, ch1 ... in unknown units); units follow the names as in the data "
                        "files: acc -> g, gyro -> rad/s")  # fmt: skip
