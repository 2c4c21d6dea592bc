"""Synthetic 3-axis accelerometer gestures: the embedded default when no data is given (numpy only).

The physics, in brief. The hand moves the device along a 2-D path drawn in the vertical plane that
faces the user (world x to the right, z up, y forward), with a minimum-jerk velocity profile on each
stroke. The accelerometer measures specific force in its own frame, in g:

    f_device(t) = R(t)^T · (a_world(t) / 9.81 + [0, 0, 1])

where ``R(t)`` is the device orientation: the user's grip (a per-user rotation), plus a wrist roll
and pitch that follow the hand's displacement (people rotate the wrist while drawing, so gravity
leaks between axes — the dominant cue in real uWave data), plus slow drift. On top come physiological
tremor (8–12 Hz), sensor noise, a per-device bias and gain, and optional quantisation to integer
counts. Users differ in speed, size, shape distortion, grip, wrist coupling and tremor, so a held-out
user is a genuine domain shift. Idle periods are the device at rest in the user's grip with tremor
and drift.

The 8 gestures follow the kind of vocabulary uWave used (directional strokes, circles, a square and a
V); they are modelled, not copied from the uWave figure.
"""

from __future__ import annotations

import collections
import dataclasses
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgessl.datasets.registry import parse_options
from edgessl.datasets.types import SpecOptionError, StreamDataset, WindowDataset
from edgessl.preprocess import resample_to_length

__all__ = [
    "CHANNELS",
    "DEFAULT_USER",
    "GESTURES",
    "Performance",
    "SyntheticConfig",
    "SyntheticPerson",
    "UserProfile",
    "describe_gesture",
    "load_synthetic",
    "make_dataset",
    "make_gesture",
    "make_idle",
    "make_stream",
    "make_user",
    "parse_perform",
    "rotation_matrix",
    "user_id",
]

G = 9.81
CHANNELS = ["acc_x", "acc_y", "acc_z"]

# Each gesture: list of strokes. ("line", dx, dz) moves by (dx, dz); ("arc", turns) draws a circle of
# unit diameter starting at the bottom (turns > 0 counter-clockwise as seen by the user).
_STROKES: dict[str, list[tuple]] = {
    "square": [("line", 0.0, 1.0), ("line", 1.0, 0.0), ("line", 0.0, -1.0), ("line", -1.0, 0.0)],
    "right": [("line", 1.0, 0.0)],
    "left": [("line", -1.0, 0.0)],
    "up": [("line", 0.0, 1.0)],
    "down": [("line", 0.0, -1.0)],
    "circle_ccw": [("arc", 1.0)],
    "circle_cw": [("arc", -1.0)],
    "v_shape": [("line", 0.5, -1.0), ("line", 0.5, 1.0)],
}
GESTURES = list(_STROKES)


def describe_gesture(name: str) -> str:
    """Words for a synthetic gesture, read off its stroke list (e.g. "stroke up, then stroke right, ...")."""
    words = []
    for kind, *args in _STROKES[name]:
        if kind == "arc":
            words.append("one round circle " + ("counterclockwise" if args[0] > 0 else "clockwise"))
        else:
            dx, dz = args
            parts = (["up"] if dz > 0 else ["down"] if dz < 0 else []) + (["right"] if dx > 0 else ["left"] if dx < 0 else [])
            words.append("stroke " + " and ".join(parts))
    return ", then ".join(words)
# Relative duration of each gesture for the same user (longer paths take longer).
_DURATION = {"square": 1.6, "right": 0.7, "left": 0.7, "up": 0.7, "down": 0.7, "circle_ccw": 1.3, "circle_cw": 1.3,
             "v_shape": 1.0}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the generator. Defaults give a uWave-like data set: 8 users × 8 gestures × 10 reps.

    Attributes:
        seed: everything is a deterministic function of this seed.
        rate_hz: sample rate of the simulated accelerometer.
        n_users: number of users; the last ``n_test_users`` form the test split.
        n_test_users: held-out users (a new-user shift, like the uWave protocol).
        reps: repetitions of each gesture per user.
        length: window length; each gesture is stretched to it (``windowing='resample'``) or centred in a
            window of that many samples (``windowing='fixed'``).
        windowing: ``'resample'`` (what uWave's button + the UCR archive did) or ``'fixed'``.
        noise_g: white sensor noise std in g.
        counts_per_g: quantise to integer counts (e.g. 26 like the Wii remote); None keeps floats.
    """

    seed: int = 0
    rate_hz: float = 100.0
    n_users: int = 8
    n_test_users: int = 2
    reps: int = 10
    length: int = 128
    windowing: str = "resample"
    noise_g: float = 0.015
    counts_per_g: float | None = None

    def __post_init__(self) -> None:
        if self.n_users < 1 or not 0 <= self.n_test_users < self.n_users:
            raise ValueError(f"need n_users >= 1 and 0 <= n_test_users < n_users; got {self.n_users}, {self.n_test_users}")
        if self.windowing not in ("resample", "fixed"):
            raise ValueError(f"windowing must be 'resample' or 'fixed'; got {self.windowing!r}")
        if self.rate_hz <= 0 or self.length < 8 or self.reps < 1:
            raise ValueError("rate_hz must be > 0, length >= 8 and reps >= 1")

    @classmethod
    def from_options(cls, opts: dict[str, str]) -> SyntheticConfig:
        """Build from ``synthetic:key=value,...`` spec options, converting each to its field's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in opts.items():
            if k not in fields:
                raise SpecOptionError(f"unknown synthetic option {k!r}; expected one of {sorted(fields)}")
            default = fields[k].default
            if default is None or isinstance(default, float):
                kw[k] = None if v.lower() == "none" else float(v)
            elif isinstance(default, int):
                kw[k] = int(v)
            else:
                kw[k] = v
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class UserProfile:
    """How one user (and their device) performs gestures."""

    user_id: int
    speed: float  # duration multiplier (< 1 is faster)
    size_m: float  # gesture size in metres
    shear: float  # shape distortion of the drawn path
    aspect: float
    depth: float  # out-of-plane (forward) motion as a fraction of size
    grip: np.ndarray  # 3x3 rotation of the device in the hand
    wrist_roll: float  # rad of roll per metre of horizontal displacement
    wrist_pitch: float  # rad of pitch per metre of vertical displacement
    tremor_g: float
    tremor_hz: float
    bias_g: np.ndarray  # [3]
    gain: np.ndarray  # [3]


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about ``axis`` (Rodrigues)."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def make_user(seed: int, user_id: int) -> UserProfile:
    """A user profile, deterministic in ``(seed, user_id)``."""
    rng = np.random.default_rng([seed, user_id, 1])
    grip = rotation_matrix(rng.normal(size=3), np.deg2rad(rng.normal(0, 30)))
    return UserProfile(
        user_id=user_id,
        speed=float(np.exp(rng.normal(0, 0.3))),
        size_m=float(0.18 * np.exp(rng.normal(0, 0.3))),
        shear=float(rng.normal(0, 0.25)),
        aspect=float(np.exp(rng.normal(0, 0.15))),
        depth=float(rng.normal(0, 0.3)),
        grip=grip,
        wrist_roll=float(rng.uniform(0.5, 2.5)),
        wrist_pitch=float(rng.uniform(0.5, 2.5)),
        tremor_g=float(rng.uniform(0.005, 0.03)),
        tremor_hz=float(rng.uniform(8, 12)),
        bias_g=rng.normal(0, 0.03, size=3),
        gain=1 + rng.normal(0, 0.03, size=3),
    )


def _min_jerk(tau: np.ndarray) -> np.ndarray:
    tau = np.clip(tau, 0.0, 1.0)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


def _path(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-size 2-D path ``[n, 2]`` (x, z) of gesture ``name`` with per-repetition stroke timing."""
    strokes = _STROKES[name]
    weights = np.array([np.hypot(s[1], s[2]) if s[0] == "line" else 2.5 for s in strokes])
    weights = weights * np.exp(rng.normal(0, 0.1, size=len(weights)))
    bounds = np.concatenate([[0], np.cumsum(weights) / weights.sum()])
    u = np.linspace(0, 1, n)
    pos = np.zeros((n, 2))
    start = np.zeros(2)
    for i, s in enumerate(strokes):
        sel = u >= bounds[i]
        prog = _min_jerk((u[sel] - bounds[i]) / (bounds[i + 1] - bounds[i]))
        if s[0] == "line":
            pos[sel] = start + prog[:, None] * np.array([s[1], s[2]])
            start = start + np.array([s[1], s[2]])
        else:
            th = 2 * np.pi * s[1] * prog - np.pi / 2
            pos[sel] = start + 0.5 * np.stack([np.cos(th), 1 + np.sin(th)], -1)
    return pos


def make_gesture(label: int, user: UserProfile, rate_hz: float, rng: np.random.Generator, noise_g: float = 0.015) -> np.ndarray:
    """One gesture performed by ``user``: float32 ``[3, T]`` specific force in g, device frame."""
    name = GESTURES[label]
    dur = 0.75 * _DURATION[name] * user.speed * np.exp(rng.normal(0, 0.12))
    fs = 1000.0  # simulate finely, then average down to the sensor rate (the sensor's own low-pass)
    n_fine = max(int(round(dur * fs)), 50)
    path = _path(name, n_fine, rng)
    size = user.size_m * np.exp(rng.normal(0, 0.12))
    shear = user.shear + rng.normal(0, 0.12)
    x = path[:, 0] + shear * path[:, 1]
    z = path[:, 1] * user.aspect
    y = user.depth * np.sin(np.pi * np.linspace(0, 1, n_fine)) * rng.uniform(0.5, 1.5)
    p = np.stack([x, y, z], -1) * size  # metres
    acc = np.gradient(np.gradient(p, 1 / fs, axis=0), 1 / fs, axis=0) / G  # world frame, g
    # the wrist rolls with horizontal motion and pitches with vertical motion
    roll = user.wrist_roll * (p[:, 0] - p[:, 0].mean()) * rng.uniform(0.8, 1.2)
    pitch = user.wrist_pitch * (p[:, 2] - p[:, 2].mean()) * rng.uniform(0.8, 1.2)
    jitter = rotation_matrix(rng.normal(size=3), np.deg2rad(rng.normal(0, 10)))
    R = user.grip @ jitter @ _rot_y(roll) @ _rot_x(pitch)  # [n, 3, 3]: device -> world
    spec = acc + np.array([0.0, 0.0, 1.0])
    f = np.einsum("nji,nj->ni", R, spec)  # R^T · spec
    step = int(round(fs / rate_hz))
    n_out = n_fine // step
    f = f[: n_out * step].reshape(n_out, step, 3).mean(1).T if step >= 1 else f.T
    return _sensor(f, user, rate_hz, rng, noise_g)


def _sensor(f: np.ndarray, user: UserProfile, rate_hz: float, rng: np.random.Generator, noise_g: float) -> np.ndarray:
    """Tremor, gain, bias and white noise on a ``[3, T]`` specific force."""
    t = np.arange(f.shape[1]) / rate_hz
    phase = rng.uniform(0, 2 * np.pi, size=(3, 1))
    tremor = user.tremor_g * rng.uniform(0.5, 1.0, size=(3, 1)) * np.sin(2 * np.pi * user.tremor_hz * t + phase)
    out = user.gain[:, None] * (f + tremor) + user.bias_g[:, None] + rng.normal(0, noise_g, size=f.shape)
    return out.astype(np.float32)


def make_idle(n: int, user: UserProfile, rate_hz: float, rng: np.random.Generator, noise_g: float = 0.015) -> np.ndarray:
    """``n`` samples of the device held at rest in ``user``'s grip: ``[3, n]`` in g."""
    drift = np.cumsum(rng.normal(0, np.deg2rad(0.05), size=(n, 2)), axis=0)
    R = user.grip @ _rot_y(drift[:, 0]) @ _rot_x(drift[:, 1])
    f = np.einsum("nji,j->ni", R, np.array([0.0, 0.0, 1.0])).T
    return _sensor(f, user, rate_hz, rng, noise_g)


def _quantise(x: np.ndarray, counts_per_g: float | None) -> np.ndarray:
    return x if counts_per_g is None else (np.round(x * counts_per_g) / counts_per_g).astype(np.float32)


def _window(g: np.ndarray, cfg: SyntheticConfig, user: UserProfile, rng: np.random.Generator) -> np.ndarray:
    if cfg.windowing == "resample":
        return resample_to_length(g, cfg.length)
    n = cfg.length
    if g.shape[1] >= n:
        s = (g.shape[1] - n) // 2
        return g[:, s : s + n]
    pad = n - g.shape[1]
    left = int(rng.integers(0, pad + 1))
    before = make_idle(left, user, cfg.rate_hz, rng, cfg.noise_g)
    after = make_idle(pad - left, user, cfg.rate_hz, rng, cfg.noise_g)
    return np.concatenate([before, g, after], axis=1)


def make_dataset(cfg: SyntheticConfig = SyntheticConfig()) -> WindowDataset:
    """Labelled windows: train on users ``1..n_users-n_test_users``, test on the rest (new users)."""
    X: list[np.ndarray] = []
    y: list[int] = []
    subj: list[int] = []
    reps: list[int] = []
    for uid in range(1, cfg.n_users + 1):
        user = make_user(cfg.seed, uid)
        rng = np.random.default_rng([cfg.seed, uid, 2])
        for rep in range(1, cfg.reps + 1):
            for label in range(len(GESTURES)):
                g = make_gesture(label, user, cfg.rate_hz, rng, cfg.noise_g)
                X.append(_quantise(_window(g, cfg, user, rng), cfg.counts_per_g))
                y.append(label)
                subj.append(uid)
                reps.append(rep)
    Xa, ya, sa, ra = np.stack(X).astype(np.float32), np.array(y), np.array(subj), np.array(reps)
    test = sa > cfg.n_users - cfg.n_test_users
    rate = cfg.rate_hz if cfg.windowing == "fixed" else None
    return WindowDataset(
        Xa[~test], ya[~test], Xa[test], ya[test], list(GESTURES), list(CHANNELS), ["g"] * 3, rate,
        {"subject": (sa[~test], sa[test]), "repetition": (ra[~test], ra[test])}, name=f"synthetic(seed={cfg.seed})",
    )  # fmt: skip


def load_synthetic(arg: str) -> WindowDataset:
    """``synthetic[:key=value,...]``: labelled windows from the generator, options as :class:`SyntheticConfig`."""
    return make_dataset(SyntheticConfig.from_options(parse_options(arg)))


def make_stream(
    cfg: SyntheticConfig = SyntheticConfig(),
    user_id: int | None = None,
    n_gestures: int = 40,
    idle_s: tuple[float, float] = (1.0, 3.0),
    stream_seed: int = 0,
) -> StreamDataset:
    """A continuous recording of one user: idle periods and gestures, each gesture's interval annotated.

    Returns:
        A one-recording :class:`StreamDataset` whose ``sample_labels`` are −1 while idle and the gesture
        index inside a gesture, and whose ``extra['events']`` is ``[n_gestures, 3]`` rows of
        ``(start_sample, end_sample, label)``.
    """
    uid = cfg.n_users if user_id is None else user_id
    user = make_user(cfg.seed, uid)
    rng = np.random.default_rng([cfg.seed, uid, 3, stream_seed])
    parts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    events = []
    pos = 0
    for _ in range(n_gestures):
        n_idle = int(rng.uniform(*idle_s) * cfg.rate_hz)
        parts.append(make_idle(n_idle, user, cfg.rate_hz, rng, cfg.noise_g))
        labels.append(np.full(n_idle, -1))
        pos += n_idle
        label = int(rng.integers(len(GESTURES)))
        g = make_gesture(label, user, cfg.rate_hz, rng, cfg.noise_g)
        parts.append(g)
        labels.append(np.full(g.shape[1], label))
        events.append((pos, pos + g.shape[1], label))
        pos += g.shape[1]
    n_idle = int(idle_s[0] * cfg.rate_hz)
    parts.append(make_idle(n_idle, user, cfg.rate_hz, rng, cfg.noise_g))
    labels.append(np.full(n_idle, -1))
    signal = _quantise(np.concatenate(parts, axis=1), cfg.counts_per_g)
    return StreamDataset(
        signal, np.array([0, signal.shape[1]]), list(CHANNELS), ["g"] * 3, list(GESTURES), cfg.rate_hz,
        sample_labels=np.concatenate(labels).astype(np.int64), recording_groups={"subject": np.array([uid])},
        extra={"events": np.array(events, np.int64)}, name=f"synthetic-stream(seed={cfg.seed}, user={uid})",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# a streaming person: the simulated board's wearer

DEFAULT_USER = 8  # make_stream's default user (the last, held-out user of the default data set)


def user_id(user: str | int) -> int:
    """The integer id of a synthetic user: integers (and strings of digits) as they are; a name such as
    ``"A"`` maps to a stable id of at least 2**32, so named users never coincide with a data set's users."""
    if isinstance(user, int):
        if user < 0:
            raise ValueError(f"a synthetic user id must be >= 0; got {user}")
        return user
    name = str(user).strip()
    if not name:
        raise ValueError("a synthetic user needs a name or an integer id; got an empty string")
    if name.isdigit():
        return int(name)
    return 2**32 + zlib.crc32(name.encode())


def parse_perform(text: str) -> str | list[tuple[str, int]]:
    """``"random"``, ``"cue"`` or a script ``"LABEL:N,LABEL:N,..."`` (``LABEL`` alone performs it once).

    Raises:
        ValueError: an unknown label or a bad count; the message lists the gesture names.
    """
    text = text.strip()
    if text in ("random", "cue"):
        return text
    script: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, sep, count = part.partition(":")
        if label not in GESTURES:
            raise ValueError(f"unknown gesture {label!r} in {text!r}; expected random, cue or LABEL:N,... with "
                             f"LABEL one of {', '.join(GESTURES)}")  # fmt: skip
        try:
            n = int(count) if sep else 1
        except ValueError:
            n = -1
        if n < 1:
            raise ValueError(f"count {count!r} of {label!r} in {text!r} must be an integer >= 1")
        script.append((label, n))
    if not script:
        raise ValueError(f"empty performance script {text!r}; expected random, cue or LABEL:N,...")
    return script


@dataclasses.dataclass(frozen=True)
class Performance:
    """One gesture a :class:`SyntheticPerson` performed: samples ``[start, end)`` of its stream."""

    label: str
    start: int
    end: int
    cued: bool = False


class SyntheticPerson:
    """An unbounded session of one synthetic user holding the board: idle, and gestures when asked.

    The profile (style, grip i.e. mounting rotation, gain, bias, tremor) depends on ``user`` only: it is
    :func:`make_user` of the default data set's seed, so integer users 1..8 are that data set's users. The
    session's randomness (timing, each repetition's variation, idle drift) depends on ``(user, seed)``: two
    seeds are two sessions of the same person. The stream is generated piece by piece and never repeats.

    Args:
        user: a name (``"A"``) or an integer id (see :func:`user_id`).
        seed: the session's randomness.
        rate_hz: sample rate.
        perform: ``"random"`` (idle and random gestures forever), ``"cue"`` (idle until :meth:`cue`) or a script
            ``[(label, n), ...]`` (those gestures in order with idle between, then idle forever); a string is
            parsed by :func:`parse_perform`.
        noise_g, counts_per_g: as :class:`SyntheticConfig`.
        idle_s: range of the idle time between planned gestures, in seconds.
        reaction_s: range of the delay between a cue and the gesture it asks for, in seconds.
        rest_s: range of the rest after any gesture before the next one may start, in seconds.
        attend_s: after a cue, a person moving at random (or from a script) performs only what is cued until this
            long after the last cue: someone being prompted does what the prompts ask (`enroll` on a simulator
            started without ``--perform cue`` took random gestures as the prompted ones: walkthrough).

    Attributes:
        pos: samples produced so far (the stream position of the next sample).
        performances: every gesture started so far, in order (its end may still lie ahead of ``pos``).
    """

    channels = CHANNELS
    units = ["g", "g", "g"]
    labels = GESTURES

    def __init__(self, user: str | int = DEFAULT_USER, seed: int = 0, *, rate_hz: float = 100.0,
                 perform: str | list[tuple[str, int]] = "random", noise_g: float = 0.015,
                 counts_per_g: float | None = None, idle_s: tuple[float, float] = (1.0, 3.0),
                 reaction_s: tuple[float, float] = (0.3, 0.6), rest_s: tuple[float, float] = (0.5, 1.0),
                 attend_s: float = 10.0):  # fmt: skip
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0; got {rate_hz}")
        self.user = str(user)
        self.user_id = user_id(user)
        self.seed = int(seed)
        self.rate_hz = float(rate_hz)
        self.noise_g, self.counts_per_g = noise_g, counts_per_g
        self.idle_s, self.reaction_s, self.rest_s, self.attend_s = idle_s, reaction_s, rest_s, attend_s
        self._attend_until = 0  # no planned gesture starts before this (samples): the person follows cues
        self.profile = make_user(SyntheticConfig().seed, self.user_id)
        self.rng = np.random.default_rng([self.user_id, 4, self.seed])
        self.perform = parse_perform(perform) if isinstance(perform, str) else list(perform)
        for label, _ in self.perform if isinstance(self.perform, list) else []:
            if label not in GESTURES:
                raise ValueError(f"unknown gesture {label!r}; expected one of {', '.join(GESTURES)}")
        self._plan = self._planned_labels()
        self.pos = 0
        self.performances: list[Performance] = []
        self._buf = np.zeros((3, 0), np.float32)
        self._idle = True  # what the buffer holds
        self._cues: collections.deque[tuple[str, int]] = collections.deque()  # (label, earliest start)
        self._rest_until = 0
        self._next: tuple[str, int] | None = None  # the next planned gesture and when it starts
        self._schedule(0)

    def _planned_labels(self) -> Iterator[str]:
        if self.perform == "random":
            while True:
                yield GESTURES[int(self.rng.integers(len(GESTURES)))]
        elif isinstance(self.perform, list):
            for label, n in self.perform:
                yield from [label] * n

    def _samples(self, seconds: tuple[float, float]) -> int:
        return max(1, int(round(self.rng.uniform(*seconds) * self.rate_hz)))

    def _schedule(self, after: int) -> None:
        """Plan the next scripted/random gesture (keeping one already planned) an idle time after ``after``."""
        label = self._next[0] if self._next is not None else next(self._plan, None)
        self._next = None if label is None else (label, after + self._samples(self.idle_s))

    def cue(self, label: str) -> None:
        """Ask for ``label``: it is performed next, a reaction time from now (after any gesture in progress).

        Raises:
            ValueError: ``label`` is not one of :attr:`labels`.
        """
        if label not in GESTURES:
            raise ValueError(f"unknown gesture {label!r}; expected one of {', '.join(GESTURES)}")
        at = self.pos + self._samples(self.reaction_s)
        self._cues.append((label, at))
        self._attend_until = at + int(round(self.attend_s * self.rate_hz))
        if self._idle and len(self._cues) == 1:  # stop idling when the cue is due (a gesture is finished first)
            due = max(0, max(at, self._rest_until) - self.pos)
            self._buf = self._buf[:, :due]

    def _refill(self) -> None:
        if self._cues:
            target: tuple[str, int] | None = (self._cues[0][0], max(self._cues[0][1], self._rest_until))
        elif self._next is not None and self._next[1] < self._attend_until:  # prompted lately: only cues for now
            target = self._next = (self._next[0], self._attend_until)
        else:
            target = self._next
        if target is not None and self.pos >= target[1]:
            cued = bool(self._cues)
            if cued:
                self._cues.popleft()
            else:
                self._next = None
            g = make_gesture(GESTURES.index(target[0]), self.profile, self.rate_hz, self.rng, self.noise_g)
            self.performances.append(Performance(target[0], self.pos, self.pos + g.shape[1], cued))
            self._buf, self._idle = g, False
            self._rest_until = self.pos + g.shape[1] + self._samples(self.rest_s)
            self._schedule(self.pos + g.shape[1])
            return
        n = self._samples(self.idle_s)
        if target is not None:
            n = min(n, target[1] - self.pos)
        self._buf, self._idle = make_idle(n, self.profile, self.rate_hz, self.rng, self.noise_g), True

    def next(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the session: float32 ``[3, n]`` in g."""
        parts = []
        need = int(n)
        while need > 0:
            if self._buf.shape[1] == 0:
                self._refill()
            take = min(need, self._buf.shape[1])
            parts.append(self._buf[:, :take])
            self._buf = self._buf[:, take:]
            self.pos += take
            need -= take
        out = np.concatenate(parts, axis=1) if parts else np.zeros((3, 0), np.float32)
        return _quantise(out, self.counts_per_g)
