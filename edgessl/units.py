"""Is an accelerometer said to be in g really in g? (numpy only: the data loaders and the live commands).

An accelerometer in g reads about 1 at rest (0 with gravity removed), and a person's movements keep the median
magnitude far below :data:`MAX_MEDIAN_G`; a median near 9.8 is m/s², near 1000 is mg. Values in another unit
under a g label train a model, or feed one, that never sees the gestures it was made for, so the loaders refuse
them and the live commands warn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["CONVERTIBLE", "MAX_MEDIAN_G", "MAX_P90_RAD_S", "UNIT_CHOICES", "UnitWatch", "canonical_unit", "declare_units",
           "g_channels", "gyro_problem_text", "rad_s_channels", "unit_from_channel", "unit_problem_text",
           "with_units_flag"]

MAX_MEDIAN_G = 4.0
# a hand turns at most a few rad/s (20 rad/s is beyond a ±1000 °/s gyroscope): 90 % of a gyroscope's samples in rad/s
# stay far below; in °/s (×57.3) or raw counts (an MPU-6050 at ±250 °/s: 131 per °/s) moving samples are far above
MAX_P90_RAD_S = 20.0
# common accelerometers' raw counts per g: MPU-6050 / LSM6DS3 at ±2, 4, 8, 16 g; ADXL345 at full resolution
RAW_COUNTS_PER_G = (16384, 8192, 4096, 2048, 256)
# what the problem texts say of values in another unit (with_units_flag reads them back)
_LIKE_M_S2, _LIKE_MG, _LIKE_DEG_S = "they look like m/s² (gravity reads 9.8)", "they look like mg (gravity reads 1000)", \
    "they look like °/s (divide them by 57.3)"


G0 = 9.80665  # m/s² per g (standard gravity)
# units a data file may declare that the loaders convert to the unit models are trained in: (unit, factor)
CONVERTIBLE: dict[str, tuple[str, float]] = {
    **{u: ("g", 1.0 / G0) for u in ("m/s²", "m/s^2", "m/s2", "ms^-2", "ms-2")},
    "mg": ("g", 1e-3),
    **{u: ("rad/s", float(np.pi / 180.0)) for u in ("deg/s", "°/s", "dps")},
}


# a sensor's raw counts, by its datasheet's sensitivity: "16384LSB/g" (an MPU-6050 at ±2 g), "131LSB/dps" (at ±250 °/s)
_COUNTS = re.compile(r"^(\d+(?:\.\d+)?)lsb/(g|dps|deg/s|°/s)$")
# what the unit options and flags accept, in words (their error messages)
UNIT_CHOICES = {"g": "g, m/s2, mg, or raw counts as NLSB/g (16384LSB/g: an MPU-6050 at ±2 g)",
                "rad/s": "rad/s, deg/s, or raw counts as NLSB/dps (131LSB/dps: an MPU-6050 at ±250 °/s)"}


def canonical_unit(unit: str) -> tuple[str, float]:
    """``(unit, factor)``: what a value in ``unit`` is in the unit models use (g, rad/s), times ``factor``;
    ``(unit, 1.0)`` for a unit already canonical or not convertible. Raw counts are named by the datasheet's
    sensitivity: ``16384LSB/g`` is ``("g", 1 / 16384)``, ``131LSB/dps`` is ``("rad/s", π / 180 / 131)``."""
    u = unit.lower().replace(" ", "")
    if u in CONVERTIBLE:
        return CONVERTIBLE[u]
    if (m := _COUNTS.match(u)) and float(m.group(1)) > 0:
        per = float(m.group(1))
        return ("g", 1.0 / per) if m.group(2) == "g" else ("rad/s", float(np.pi / 180.0) / per)
    return unit, 1.0


def declare_units(units: Sequence[str], acc: str | None, gyro: str | None) -> list[str]:
    """``units`` with the accelerometer's (the channels read as g) declared ``acc`` and the gyroscope's (read as
    rad/s) declared ``gyro``: a data spec's ``acc=`` and ``gyro=`` options, for files whose names say the sensor
    but not the unit (an Edge Impulse CSV's accX is in m/s²)."""
    out = list(units)
    for i, u in enumerate(units):
        if acc and u == "g":
            out[i] = acc
        elif gyro and u == "rad/s":
            out[i] = gyro
    return out


def unit_from_channel(name: str) -> str:
    """The unit a channel name implies (where nothing says it): ``rad/s`` for gyroscopes, ``g`` for
    accelerometers, else ``unknown``; the data loaders and a text board's header are read alike."""
    n = name.lower()
    # (the common Arduino sketches' names ax .. gz, and Edge Impulse's gyrX: aliases of acc_x ... and gyro_x ...)
    if "gyr" in n or n in ("gx", "gy", "gz"):
        return "rad/s"
    if "acc" in n or n in ("ax", "ay", "az"):
        return "g"
    return "unknown"


def triad(units: Sequence[str], unit: str) -> list[int]:
    """The first three channels in ``unit`` (a sensor's axes)."""
    return [i for i, u in enumerate(units) if u == unit][:3]


def sensor_triads(units: Sequence[str]) -> list[list[int]]:
    """Every three channels in g (an accelerometer; UCI HAR's body and total acceleration are two) and in rad/s
    (a gyroscope), in their order: the axes a turned board turns (edgessl.edge_runtime.mounting, the simulator)."""
    out = []
    for unit in ("g", "rad/s"):
        idx = [i for i, u in enumerate(units) if u == unit]
        out += [idx[k : k + 3] for k in range(0, len(idx) - len(idx) % 3, 3)]
    return out


def g_channels(units: Sequence[str]) -> list[int]:
    """The first three channels in g (the accelerometer)."""
    return triad(units, "g")


def _with_option(spec: str, option: str) -> str:
    """``spec`` with ``option`` (``key=value``) added to its options, replacing the same key's."""
    path, _, opts = spec.partition("?")
    key = option.partition("=")[0]
    kept = [o for o in opts.split(",") if o and o.partition("=")[0].strip() != key]
    return f"{path}?{','.join([*kept, option])}"


def unit_problem_text(names: Sequence[str], values: np.ndarray, spec: str | None = None) -> str | None:
    """``values [n, 3]`` of the accelerometer channels ``names`` said to be in g: what is wrong, or None
    (``spec``: the data spec read, whose ``acc=`` option the remedy names)."""
    mag = np.linalg.norm(np.asarray(values, np.float64), axis=1)
    mag = mag[np.isfinite(mag)]
    if not len(mag):
        return None
    med = float(np.median(mag))
    if med <= MAX_MEDIAN_G:
        return None
    counts = next((k for k in RAW_COUNTS_PER_G if 0.85 * k <= med <= 1.2 * k), None)
    if 6 <= med <= 14:
        like, k = _LIKE_M_S2, "9.81"
    elif counts:
        sensor = "an ADXL345 at full resolution" if counts == 256 else f"an MPU-6050 or LSM6DS3 at ±{32768 // counts} g"
        like, k = f"they look like a sensor's raw counts ({counts} per g, e.g. {sensor})", str(counts)
    elif 300 <= med <= 3000:
        like, k = _LIKE_MG, "1000"
    else:
        like, k = "they are not in g", ""
    fix = f"divide them by {k} (in the firmware, or in the CSV files) to have g" if k else "convert them to g"
    if spec and k:  # a data file: its unit can be declared instead
        unit = {"9.81": "m/s2", "1000": "mg"}.get(k, f"{k}LSB/g")
        fix += f", or declare the unit and it is converted: {_with_option(spec, f'acc={unit}')}"
    return (f"the accelerometer channels {list(names)} are read as g, but their magnitude is {med:.4g} at the "
            f"median (gravity alone is 1 g): {like}; {fix}")  # fmt: skip


def with_units_flag(problem: str, channels: str | None = None, declared: dict[str, str] | None = None) -> str:
    """A live board's unit problem (:func:`unit_problem_text`, :func:`gyro_problem_text`) with the remedy a text
    board has without a firmware change: ``--units`` of the commands that open a port, and ``--channels
    CHANNELS`` with it for a board whose values have no names (``--units`` converts named values only).
    ``declared``: the units ``--units`` already gave (``{"gyro": "dps"}``): values still wrong after that
    conversion are not that sensor's, so the remedy is the channel order, not the unit."""
    # (°/s or the gyroscope's raw counts: gyro_problem_text cannot tell them apart, so both are named)
    gyro = "gyro=deg/s (raw counts: gyro=131LSB/dps for an MPU-6050 at ±250 °/s)"
    flags = [f for like, f in ((_LIKE_M_S2, "acc=m/s2"), (_LIKE_MG, "acc=mg"), (_LIKE_DEG_S, gyro)) if like in problem]
    if counts := re.search(r"raw counts \((\d+) per g", problem):
        flags.append(f"acc={counts.group(1)}LSB/g")
    given = [f"{k}={v}" for k, v in (declared or {}).items() if any(f.startswith(f"{k}=") for f in flags)]
    if given:  # converted as declared and still not that sensor's values: another sensor's, in another order
        # (``channels`` is the model's list, not the board's order: not suggested here)
        return (f"{problem} — after --units {','.join(given)} converted them: these are likely another sensor's "
                "values, so check the channel order: --channels must name the board's values in the order it "
                "sends them")  # fmt: skip
    if not flags:
        return problem
    names = f" --channels {channels} (the board's values have no names; --units converts the named ones)" if channels else ""
    return f"{problem}; a text board's values are converted as they arrive with --units {','.join(flags)}{names}"


def rad_s_channels(units: Sequence[str]) -> list[int]:
    """The first three channels in rad/s (the gyroscope)."""
    return triad(units, "rad/s")


def gyro_problem_text(names: Sequence[str], values: np.ndarray, spec: str | None = None) -> str | None:
    """``values [n, 3]`` of the gyroscope channels ``names`` said to be in rad/s: what is wrong, or None (a
    recording at rest says nothing either way: °/s at rest stay small too; ``spec``: the data spec read, whose
    ``gyro=`` option the remedy names)."""
    mag = np.linalg.norm(np.asarray(values, np.float64), axis=1)
    mag = mag[np.isfinite(mag)]
    if not len(mag):
        return None
    p90 = float(np.percentile(mag, 90))
    if p90 <= MAX_P90_RAD_S:
        return None
    declare = (f", or declare the unit and it is converted: {_with_option(spec, 'gyro=deg/s')} (raw counts: "
               f"gyro=131LSB/dps for an MPU-6050 at ±250 °/s)" if spec else "")  # fmt: skip
    return (f"the gyroscope channels {list(names)} are read as rad/s, but 10 % of their magnitudes exceed {p90:.4g} (a "
            f"hand turns at most a few rad/s): {_LIKE_DEG_S} or raw counts (an MPU-6050 at "
            f"±250 °/s: divide by 7506), in the firmware or the CSV files, to have rad/s{declare}")  # fmt: skip


class UnitWatch:
    """A live stream's first ``samples`` of the channels in g, checked once: :meth:`add` returns the problem
    (:func:`unit_problem_text`) when they are done, else None."""

    def __init__(self, names: Sequence[str], units: Sequence[str], samples: int = 200) -> None:
        g, r = g_channels(units), rad_s_channels(units)
        self.g, self.r = (g if len(g) == 3 else []), (r if len(r) == 3 else [])  # each checked when complete
        self.idx = self.g + self.r
        self.names = [names[i] for i in self.idx]
        self.samples = samples
        self._seen: list[np.ndarray] = []
        self.done = not self.idx

    def add(self, values: np.ndarray) -> str | None:
        """``values [n, C]`` in the channel order given; the problem once enough samples came, else None."""
        if self.done:
            return None
        self._seen.append(np.asarray(values)[:, self.idx])
        if sum(len(v) for v in self._seen) < self.samples:
            return None
        self.done = True
        seen, self._seen = np.concatenate(self._seen), []
        k = len(self.g)
        problems = [p for p in (unit_problem_text(self.names[:k], seen[:, :k]) if k else None,
                                gyro_problem_text(self.names[k:], seen[:, k:]) if self.r else None) if p]  # fmt: skip
        return "; ".join(problems) or None
