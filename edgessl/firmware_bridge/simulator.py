"""A simulated IMU device on a pseudo-terminal: the whole stack runs with no hardware.

The simulator opens a pty pair, keeps the master side and exposes the slave path (optionally through a
stable symlink, the way a udev rule names a real board). It behaves like the reference firmware in binary
mode (answers IDENTIFY / START / STOP / SET_RATE / SET_RANGE / CUE, streams SAMPLES while started) or like an
Edge Impulse data-forwarder sketch in CSV mode (streams text lines from power-up), and can inject the
faults that real serial links show.

It plays either a recording (looped) or a :class:`~edgessl.datasets.synthetic.SyntheticPerson`: an unbounded
session of one synthetic user that performs gestures at random, from a script, or when the host cues them
(CMD_CUE), and logs every performance on the device clock.

With a :class:`ModelBoard` (``edgessl simulate --board-model``) the protocol is not spoken here but by the
reference firmware itself, compiled on the host with an exported C model (``firmware/host/model_device.c``):
the simulator relays the host's bytes to it, feeds it the person's samples as its sensor, and relays what it
sends (SAMPLES, and EVENT frames for the gestures it classifies) to the pty.

The simulator never removes or replaces a file it did not create: an existing ``link`` path is refused, and
on unplug or stop only its own symlink (still pointing where it set it) is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from edgessl.errors import ModelError, UsageError
from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.flags import units_flag as _units_flag
from edgessl.units import sensor_triads

FIRMWARE = Path(__file__).parent / "firmware"


# the axis a board turned on its mount (``mount=DEG``) is turned about: oblique, the same for every session (until
# the twenty-fourth session it was drawn from the session's seed, so a calibration never held for the next session)
MOUNT_AXIS = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)


@dataclasses.dataclass(frozen=True)
class Faults:
    """Faults to inject. Probabilities are per byte (drop, corrupt) or per frame/line (garbage).

    Attributes:
        drop: probability of dropping each byte.
        corrupt: probability of flipping a random bit of each byte.
        garbage: probability of a burst of 1–64 random bytes before a frame.
        banner: a text line the device prints at power-up (and after each replug).
        drift_ppm: the device clock runs fast (+) or slow (−) by this many parts per million.
        actual_rate_hz: the rate the device really samples at, when it differs from the nominal one.
        unplug_every: seconds between unplugs (0: never).
        unplug_for: seconds the device stays unplugged.
        restart_every: seconds between device resets that keep the link up (a watchdog reset behind a USB
            bridge chip): sequence numbers and the clock start again at 0 and a binary device waits for
            CMD_START, as docs/protocol.md says (0: never).
        vibration_every: device seconds between bursts of vibration (white noise added to every channel: a
            motor, a loose mount, a vibrating table; 0: never).
        vibration_for: device seconds each burst lasts.
        vibration_g: the bursts' rms, in the signal's units (g).
        mount_deg: the board is mounted turned by this many degrees (about :data:`MOUNT_AXIS`, the same in every
            session: a mounting belongs to the board, so a calibration on one session holds for the next): the
            accelerometer and gyroscope triads are rotated, what a remounted sensor or another way of wearing it
            does to the signal (0: as the data).
        mount_at: device seconds from which it is (a remount during the session; 0: from the start).
    """

    drop: float = 0.0
    corrupt: float = 0.0
    garbage: float = 0.0
    banner: str | None = None
    drift_ppm: float = 0.0
    actual_rate_hz: float | None = None
    unplug_every: float = 0.0
    unplug_for: float = 1.0
    restart_every: float = 0.0
    vibration_every: float = 0.0
    vibration_for: float = 1.0
    vibration_g: float = 0.3
    mount_deg: float = 0.0
    mount_at: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> Faults:
        """``"drop=0.001,corrupt=0.001,garbage=0.01,banner,drift=200,rate=98,unplug=10:1.5,restart=20,vibration=8:1:0.3"``."""
        if not text:
            return cls()
        kw: dict = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, val = part.partition("=")
            try:
                cls._parse_one(kw, key, val)
            except ValueError as e:
                if key not in FAULT_FORMS or "expected" in str(e):
                    raise
                raise ValueError(f"expected {key}={FAULT_FORMS[key]}") from None
        return cls(**kw)

    @staticmethod
    def _parse_one(kw: dict, key: str, val: str) -> None:
        if key == "banner":
            kw["banner"] = val or "edgessl simulated IMU v1 (binary protocol) booting..."
        elif key in ("drop", "corrupt", "garbage"):
            kw[key] = float(val)
        elif key == "drift":
            kw["drift_ppm"] = float(val)
        elif key == "rate":
            kw["actual_rate_hz"] = float(val)
        elif key == "unplug":
            every, _, dur = val.partition(":")
            kw["unplug_every"], kw["unplug_for"] = float(every), float(dur or 1.0)
        elif key == "restart":
            kw["restart_every"] = float(val)
        elif key == "vibration":
            every, _, rest = val.partition(":")
            dur, _, g = rest.partition(":")
            kw["vibration_every"], kw["vibration_for"] = float(every), float(dur or 1.0)
            kw["vibration_g"] = float(g or 0.3)
            if not 0 < kw["vibration_for"] < kw["vibration_every"] or kw["vibration_g"] <= 0:
                raise ValueError(f"vibration={val}: expected EVERY:FOR[:G] seconds with 0 < FOR < EVERY and G > 0")
        elif key == "mount":
            deg, _, at = val.partition(":")
            kw["mount_deg"], kw["mount_at"] = float(deg), float(at or 0.0)
            if not 0 < abs(kw["mount_deg"]) <= 180 or kw["mount_at"] < 0:
                raise ValueError(f"mount={val}: expected DEG[:AT] with 0 < |DEG| <= 180 degrees and AT >= 0 seconds")
        else:
            raise ValueError(f"unknown fault {key!r}; expected {', '.join(['banner', *FAULT_FORMS])}")


FAULT_FORMS = {"drop": "P (a share of frames, 0 to 1)", "corrupt": "P (a share of frames)", "garbage": "P (a share of frames)",
               "drift": "PPM (clock error)", "rate": "HZ (the rate the board really samples at)",
               "unplug": "EVERY[:FOR] (seconds)", "restart": "EVERY (seconds)",
               "vibration": "EVERY:FOR[:G] (seconds, seconds, g)", "mount": "DEG[:AT] (degrees, seconds)"}  # fmt: skip


class PersonSource(Protocol):
    """What a simulator needs of a performing source (:class:`~edgessl.datasets.synthetic.SyntheticPerson`)."""

    labels: list[str]
    pos: int
    performances: list  # items with .label, .start, .end (samples of the source's stream) and .cued

    def next(self, n: int) -> np.ndarray: ...

    def cue(self, label: str) -> None: ...


def build_board(model: str | Path, workdir: Path) -> tuple[Path, str | None]:
    """Compile the reference firmware with an exported C model into ``workdir``: the board
    :class:`ModelBoard` runs. Returns the program and the bundle checksum it reports (None: unknown).

    Args:
        model: a bundle (``.essl``: exported to C here with ``edgessl export-c``) or a folder ``edgessl
            export-c`` wrote. The board reports the bundle's checksum (``bundle_checksum`` in the folder's
            ``essl_model_info.json``; unknown without it).
        workdir: an empty folder of the caller's (the generated C and the program go there).

    Raises:
        UsageError: ``model`` is neither, no C compiler, or the compiler refused the code (its first error).
    """
    path = Path(model)
    sha: str | None = None
    if path.is_dir():
        model_dir = path
    elif path.is_file():  # `edgessl export-c` in a child: the bridge does not import the export side
        model_dir = workdir / "model"
        done = subprocess.run([sys.executable, "-m", "edgessl", "export-c", str(path), "--out", str(model_dir)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UsageError(f"--board-model {model}: edgessl export-c failed: {why}")
    else:
        raise UsageError(f"--board-model {model}: no such file or folder; expected a bundle (.essl) or a folder "
                         "written by edgessl export-c")  # fmt: skip
    sources = [model_dir / f for f in ("essl_model.c", "essl_stream.c")]
    missing = [f.name for f in [*sources, model_dir / "essl_model.h", model_dir / "essl_stream.h"] if not f.is_file()]
    if missing:
        raise UsageError(f"--board-model {model}: missing {', '.join(missing)}; expected a folder written by "
                         "edgessl export-c")  # fmt: skip
    with contextlib.suppress(ValueError, OSError):
        got = json.loads((model_dir / "essl_model_info.json").read_text()).get("bundle_checksum")
        sha = got if isinstance(got, str) and re.fullmatch(r"[0-9a-f]{64}", got) else None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise UsageError(f"--board-model {model}: no C compiler to build the board's firmware; install cc or gcc "
                         "(or set CC)")  # fmt: skip
    program = workdir / "model_device"
    cmd = [cc, "-std=c99", "-O2", f"-I{model_dir}", *([f'-DESSL_BOARD_SHA256="{sha}"'] if sha else []),
           "-o", str(program), str(FIRMWARE / "host" / "model_device.c"), str(FIRMWARE / "essl_protocol.c"),
           *map(str, sources), "-lm"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:300])
        raise ModelError(f"--board-model {model}: {Path(cc).name} could not build the board's firmware: {first}")
    return program, sha


class ModelBoard:
    """The host-built firmware running an exported model (:func:`build_board`), as a child process on pipes.

    Its stdin takes wire frames: the host's commands, and SAMPLES frames that stand for its sensor; its stdout
    is what the board sends; its stderr says ``cue LABEL`` when it shows a cue. See ``host/model_device.c``.

    Args:
        program: from :func:`build_board`.
        info: the identity the board announces (channels, units, rate, counts per unit, range, id).
    """

    def __init__(self, program: Path, info: P.DeviceInfo | None = None):
        self.program, self.info = program, info
        self.proc: subprocess.Popen | None = None
        self._err = b""
        self.messages: list[str] = []  # stderr lines that are not cues
        self.restarts = 0

    def start(self) -> None:
        """Start the board (again: a power cycle). Raises UsageError when it refuses its arguments."""
        self.stop()
        i = self.info
        if i is None:
            raise ValueError("the board needs an identity (info) before it starts")
        args = [str(self.program), "--channels", ",".join(i.channels), "--units", ",".join(str(int(u)) for u in i.units),
                "--counts-per-unit", repr(float(i.counts_per_unit[0])), "--range", str(i.range),
                "--rate", repr(float(i.rate_hz)), "--device-id", str(i.device_id)]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            code = self.proc.wait(0.2)  # a board that refuses its arguments exits at once, saying why
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
            self.proc = None
            raise UsageError(f"--board-model: the board's firmware refused to start: {err or f'exit code {code}'}")
        assert self.proc.stdout is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def send(self, data: bytes) -> None:
        if self.proc is None or self.proc.stdin is None or not data:
            return
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the board died: poll() shows it; nothing more reaches it

    def read(self) -> bytes:
        """What the board sent since the last call (non-blocking)."""
        if self.proc is None or self.proc.stdout is None:
            return b""
        out = b""
        with contextlib.suppress(BlockingIOError, OSError, TypeError):
            while chunk := os.read(self.proc.stdout.fileno(), 65536):
                out += chunk
        return out

    def cues(self) -> list[str]:
        """Labels of the cues the board showed since the last call."""
        if self.proc is None or self.proc.stderr is None:
            return []
        with contextlib.suppress(BlockingIOError, OSError, TypeError):
            while chunk := os.read(self.proc.stderr.fileno(), 65536):
                self._err += chunk
        *lines, self._err = self._err.split(b"\n")
        labels = []
        for raw in lines:
            line = raw.decode(errors="replace")
            if line.startswith("cue "):
                labels.append(line[4:])
            elif line.strip():
                self.messages.append(line)
        return labels

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the board exits at the end of its input
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2.0)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


class SimulatedImu:
    """Streams ``signal [C, N]`` (physical units), or a performing person, on a pty, in real time × ``speed``.

    Args:
        signal: the recording to play, ``[C, N]`` in ``units``; or a :class:`PersonSource` (a
            :class:`~edgessl.datasets.synthetic.SyntheticPerson`), played without end. Only a person answers
            CMD_CUE (a recording answers UNSUPPORTED) and has performances to log.
        rate_hz: nominal sample rate (what DEVICE_INFO says).
        channels, units: channel names and units.
        mode: ``"binary"`` (protocol v1) or ``"csv"`` (text lines).
        faults: what to inject.
        speed: 1.0 is real time; larger plays faster (timestamps stay in device time).
        loop: restart the recording at its end (else stop streaming).
        link: a path to keep pointing at the current slave (a stable name across replugs). It must not
            exist: :meth:`start` raises ValueError rather than replace someone's file.
        per_frame: samples per SAMPLES frame.
        full_scale: ±range of the simulated sensor in its unit; counts_per_unit = 32768 / full_scale.
        seed: for the fault injection.
        on_performance: called (from the simulator's thread) with each finished performance of a person,
            ``{"label", "start_s", "end_s", "cued"}`` with times on the device clock (the timestamps' seconds).
        board: the host-built firmware running a model (binary mode only): it speaks the protocol, with the
            identity given here, and the samples played are its sensor. It is started by :meth:`start`,
            power-cycled by a ``restart`` fault (an unplug leaves it running) and stopped by :meth:`stop`.

    Attributes:
        performances: every finished performance, as given to ``on_performance``.
    """

    def __init__(self, signal: np.ndarray | PersonSource, rate_hz: float, channels: list[str],
                 units: list[str] | None = None, *, mode: str = "binary", faults: Faults = Faults(),
                 speed: float = 1.0, loop: bool = True, link: str | None = None, per_frame: int = 10,
                 full_scale: float = 8.0, seed: int = 0, device_id: int = 0x5151A7ED,
                 on_performance: Callable[[dict], None] | None = None, board: ModelBoard | None = None,
                 text_scale: Sequence[float] | None = None):  # fmt: skip
        if mode not in ("binary", "csv"):
            raise ValueError(f"mode must be binary or csv; got {mode!r}")
        if board is not None and mode != "binary":
            raise ValueError("a board running a model speaks the binary protocol; mode must be binary")
        self.person: PersonSource | None = None
        if isinstance(signal, np.ndarray) or not hasattr(signal, "next"):
            self.signal = np.asarray(signal, np.float32)
            if self.signal.ndim != 2 or self.signal.shape[0] != len(channels):
                raise ValueError(f"signal must be [channels={len(channels)}, samples]; got {self.signal.shape}")
        else:
            self.person = signal
            self.signal = np.zeros((len(channels), 0), np.float32)
        self.on_performance = on_performance
        self.performances: list[dict] = []
        self._started: dict[int, float] = {}  # performance index -> device start time, until it ends
        self._logged = 0  # performances before this index are finished and logged
        self.rate_hz, self.channels, self.mode, self.faults = rate_hz, list(channels), mode, faults
        self.units = list(units or ["g"] * len(channels))
        self.speed, self.loop, self.per_frame = speed, loop, per_frame
        self.scale = 32768.0 / full_scale
        self.full_scale = full_scale
        unit_codes = {"g": P.Unit.G, "rad/s": P.Unit.RAD_PER_S, "deg/s": P.Unit.DEG_PER_S}
        self.info = P.DeviceInfo(device_id, (1, 0, 0), tuple(self.channels),
                                 tuple(unit_codes.get(u, P.Unit.OTHER) for u in self.units), float(rate_hz),
                                 int(round(full_scale)), (self.scale,) * len(self.channels))  # fmt: skip
        # csv mode: each channel's values times this as printed (a board printing m/s²: 9.80665 on the g channels)
        self.text_scale = None if text_scale is None else np.asarray(text_scale, np.float64)
        self.board = board
        if board is not None:
            board.info = self.info
        self._board_out = b""  # board output up to its next frame delimiter
        self.rng = np.random.default_rng(seed)
        self._mount: np.ndarray | None = None
        self._mount_triads = [np.asarray(t) for t in sensor_triads(self.units)]  # every one, as the runtime turns
        if faults.mount_deg and self._mount_triads:
            from edgessl.datasets.synthetic import rotation_matrix

            self._mount = rotation_matrix(MOUNT_AXIS, np.deg2rad(faults.mount_deg)).astype(np.float32)
        self.link = link
        self._link_target: str | None = None  # where our symlink points, while it exists
        self.link_refused = 0  # replugs that found someone else's file at ``link`` (left alone)
        self.master: int | None = None
        self.slave: int | None = None
        self.slave_path: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.streaming = mode == "csv"
        self.sample_index = 0
        self.seq = 0
        self.unplugs = 0
        self.restarts = 0
        self.sent_samples = 0

    # -- pty -------------------------------------------------------------------------------------
    def _plug(self, first: bool = False) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_path = os.ttyname(self.slave)
        if self.link:
            self._make_link(first)
        if self.faults.banner:
            self._write((self.faults.banner + "\r\n").encode(), raw=True)

    def _make_link(self, first: bool) -> None:
        assert self.link and self.slave_path
        try:
            os.symlink(self.slave_path, self.link)  # fails if anything is there: nothing is ever replaced
        except FileExistsError:
            if first:
                self._close_pty()
                raise ValueError(f"link path {self.link} already exists and was not created by this simulator; "
                                 "remove it or choose another --link") from None  # fmt: skip
            self.link_refused += 1  # someone put a file there while we were unplugged: theirs now
            return
        self._link_target = self.slave_path

    def _remove_link(self) -> None:
        """Remove our symlink, only if it is still ours (a symlink pointing where we set it)."""
        target, self._link_target = self._link_target, None
        if not self.link or target is None:
            return
        with contextlib.suppress(OSError):
            if os.path.islink(self.link) and os.readlink(self.link) == target:
                os.unlink(self.link)

    def _close_pty(self) -> None:
        for fd in (self.master, self.slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = None

    def _unplug(self) -> None:
        self._close_pty()
        self._remove_link()

    @property
    def path(self) -> str:
        """What a host should open: the stable link if any, else the current slave path."""
        return self.link or self.slave_path or ""

    # -- bytes out -------------------------------------------------------------------------------
    def _inject(self, data: bytes) -> bytes:
        f = self.faults
        b = np.frombuffer(data, np.uint8).copy()
        if f.corrupt > 0:
            hit = self.rng.random(len(b)) < f.corrupt
            b[hit] ^= (1 << self.rng.integers(0, 8, size=int(hit.sum()))).astype(np.uint8)
        if f.drop > 0:
            b = b[self.rng.random(len(b)) >= f.drop]
        out = b.tobytes()
        if f.garbage > 0 and self.rng.random() < f.garbage:
            out = self.rng.integers(0, 256, size=int(self.rng.integers(1, 65)), dtype=np.uint8).tobytes() + out
        return out

    def _write(self, data: bytes, raw: bool = False) -> None:
        if self.master is None:
            return
        if not raw:
            data = self._inject(data)
        try:
            os.write(self.master, data)
        except BlockingIOError:
            pass  # nobody reads: the UART's buffer overflows and the bytes are lost
        except OSError as e:
            if e.errno not in (errno.EIO, errno.EAGAIN):
                raise

    def _frame(self, mtype: P.MsgType, count: int, payload: bytes, t_us: int) -> bytes:
        f = P.Frame(mtype, self.seq, t_us, count, payload)
        self.seq = (self.seq + 1) & 0xFFFF
        return P.encode_frame(f)

    def _device_us(self, index: int) -> int:
        rate = self.faults.actual_rate_hz or self.rate_hz
        return int(index / rate * 1e6 * (1 + self.faults.drift_ppm * 1e-6))

    # -- commands --------------------------------------------------------------------------------
    def _handle(self, dec: P.FrameDecoder) -> None:
        if self.master is None:
            return
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return
        if self.mode == "csv":
            return  # a text-mode sketch does not speak the binary protocol
        if self.board is not None:
            self.board.send(data)  # the firmware answers; here only whether it streams is followed
            for cmd in dec.feed(data):
                if cmd.type in (P.MsgType.CMD_START, P.MsgType.CMD_STOP):
                    self.streaming = cmd.type == P.MsgType.CMD_START
            return
        for cmd in dec.feed(data):
            status = P.AckStatus.OK
            out = b""
            t_us = self._device_us(self.sample_index)
            if cmd.type == P.MsgType.CMD_START:
                self.streaming = True
            elif cmd.type == P.MsgType.CMD_STOP:
                self.streaming = False
            elif cmd.type == P.MsgType.CMD_IDENTIFY:
                out += self._frame(P.MsgType.DEVICE_INFO, 0, self.info.to_payload(), t_us)
            elif cmd.type == P.MsgType.CMD_SET_RATE:
                (hz,) = struct.unpack("<f", cmd.payload) if len(cmd.payload) == 4 else (0.0,)
                if 1 <= hz <= 1000:
                    self.rate_hz = hz
                    self.info = dataclasses.replace(self.info, rate_hz=hz)
                else:
                    status = P.AckStatus.BAD_ARGUMENT
            elif cmd.type == P.MsgType.CMD_SET_RANGE:
                status = P.AckStatus.UNSUPPORTED  # the simulated sensor has a fixed range
            elif cmd.type == P.MsgType.CMD_CUE:
                status = self._cue(cmd.payload)
            else:
                status = P.AckStatus.UNSUPPORTED
            out += self._frame(P.MsgType.ACK, 0, P.make_ack(0, 0, cmd, status).payload, t_us)
            self._write(out, raw=True)  # faults apply to the sample stream only

    def _relay(self) -> None:
        """Pass what the board sent on to the pty (faults on SAMPLES and EVENT frames, as on the sample stream
        of the simulated firmware) and let the person perform the cues it showed."""
        assert self.board is not None
        *frames, self._board_out = (self._board_out + self.board.read()).split(P.DELIM)
        for raw in frames:
            if not raw:
                continue
            try:
                mtype = P.decode_message(P.cobs_decode(raw)).type
            except P.FrameError:
                mtype = None
            self._write(raw + P.DELIM, raw=mtype not in (P.MsgType.SAMPLES, P.MsgType.EVENT))
        for label in self.board.cues():
            if self.person is not None and label in self.person.labels:
                self.person.cue(label)

    def _cue(self, payload: bytes) -> P.AckStatus:
        """CMD_CUE: the person performs the label next; a recording cannot (UNSUPPORTED)."""
        if self.person is None:
            return P.AckStatus.UNSUPPORTED
        try:
            label = P.parse_cue(payload)
        except ValueError:
            return P.AckStatus.BAD_ARGUMENT
        if label not in self.person.labels:
            return P.AckStatus.BAD_ARGUMENT
        self.person.cue(label)
        return P.AckStatus.OK

    # -- samples ---------------------------------------------------------------------------------
    def _pull(self, n: int) -> np.ndarray | None:
        """The next ``n`` samples ``[n, C]`` at device index :attr:`sample_index` (advanced); None at the end of
        a recording that does not loop."""
        if self.person is None:
            n_total = self.signal.shape[1]
            idx = (self.sample_index + np.arange(n)) % n_total if self.loop else self.sample_index + np.arange(n)
            if not self.loop and idx[-1] >= n_total:
                return None
            block = self.signal[:, idx].T
        else:
            p0 = self.person.pos
            block = np.asarray(self.person.next(n), np.float32).T
            self._log_performances(p0, n)
        f = self.faults
        if f.vibration_every > 0:  # bursts of white noise on the device's sample clock
            i = (self.sample_index + np.arange(n)) % int(round(f.vibration_every * self.rate_hz))
            shaking = i < int(round(f.vibration_for * self.rate_hz))
            if shaking.any():
                block = block.copy()
                block[shaking] += self.rng.normal(0, f.vibration_g, (int(shaking.sum()), block.shape[1]))
        if self._mount is not None:  # the board turned on its mount: the triads rotate with it
            turned = self.sample_index + np.arange(n) >= int(round(f.mount_at * self.rate_hz))
            if turned.any():
                block = block.copy()
                for tri in self._mount_triads:
                    block[np.ix_(turned, tri)] = block[np.ix_(turned, tri)] @ self._mount.T
        self.sample_index += n
        return block

    def _log_performances(self, p0: int, n: int) -> None:
        """Put the person's performances that start or end within samples ``[p0, p0 + n)`` on the device clock
        (sample ``p0`` is at device index :attr:`sample_index`) and report the finished ones."""
        assert self.person is not None
        perf = self.person.performances
        for i in range(self._logged, len(perf)):
            p = perf[i]
            if p0 <= p.start < p0 + n:
                self._started[i] = self._device_us(self.sample_index + p.start - p0) / 1e6
            if i == self._logged and p.end <= p0 + n:
                start_s = self._started.pop(i, self._device_us(self.sample_index + p.start - p0) / 1e6)
                rec = {"label": p.label, "start_s": round(start_s, 6),
                       "end_s": round(self._device_us(self.sample_index + p.end - p0) / 1e6, 6), "cued": bool(p.cued)}
                self._logged += 1
                self.performances.append(rec)
                if self.on_performance is not None:
                    self.on_performance(rec)

    # -- main loop -------------------------------------------------------------------------------
    def start(self) -> str:
        """Open the pty and start streaming in a thread; returns the path a host should open.

        Raises:
            ValueError: ``link`` already exists.
            UsageError: the board's firmware refused its identity (channels, rate) and did not start.
        """
        self._plug(first=True)
        if self.board is not None:
            try:
                self.board.start()
            except BaseException:
                self._unplug()  # its link goes with it
                raise
        self._thread = threading.Thread(target=self._run, name="simulated-imu", daemon=True)
        self._thread.start()
        return self.path

    def _run(self) -> None:
        dec = P.FrameDecoder()
        rate = self.faults.actual_rate_hz or self.rate_hz
        t_start = time.monotonic()
        next_unplug = t_start + self.faults.unplug_every if self.faults.unplug_every > 0 else None
        next_restart = t_start + self.faults.restart_every if self.faults.restart_every > 0 else None
        emitted_at = 0  # samples emitted since the streaming clock was (re)anchored
        anchor = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if next_unplug is not None and now >= next_unplug:
                self._unplug()
                self.unplugs += 1
                # the device keeps sampling while its link is down: those samples are lost
                self._stop.wait(self.faults.unplug_for)
                lost = int(self.faults.unplug_for * rate * self.speed)
                if self.person is not None:
                    self._pull(lost)  # the person goes on moving while nobody listens
                else:
                    self.sample_index += lost
                if self._stop.is_set():
                    break
                self._plug()
                dec = P.FrameDecoder()
                next_unplug = time.monotonic() + self.faults.unplug_every
                anchor, emitted_at = time.monotonic(), 0
                continue
            if next_restart is not None and now >= next_restart:
                self._restart()
                dec = P.FrameDecoder()
                next_restart = now + self.faults.restart_every
                anchor, emitted_at = now, 0
                continue
            self._handle(dec)
            if self.board is not None:
                self._relay()
            if not self.streaming:
                anchor, emitted_at = time.monotonic(), 0
                self._stop.wait(0.01)
                continue
            due = int((now - anchor) * rate * self.speed)
            if due - emitted_at < self.per_frame:
                self._stop.wait(min(0.01, self.per_frame / (rate * self.speed) / 2))
                continue
            n = self.per_frame
            t_us = self._device_us(self.sample_index)
            block = self._pull(n)
            if block is None:
                self.streaming = False
                continue
            if self.mode == "binary":
                counts = np.clip(np.round(block * self.scale), -32768, 32767).astype(np.int16)
                if self.board is not None:  # the board's sensor: it streams and classifies them itself
                    self.board.send(P.encode_frame(P.make_samples(0, t_us, counts)))
                else:
                    self._write(self._frame(P.MsgType.SAMPLES, n, P.samples_payload(counts), t_us))
            else:
                shown = block if self.text_scale is None else block * self.text_scale
                self._write(b"".join(P.format_reading([float(v) for v in row]) for row in shown))
            self.sent_samples += n
            emitted_at += n

    def _restart(self) -> None:
        """A reset that keeps the link: counters and clock from 0, a binary device waits for CMD_START."""
        self.restarts += 1
        self.seq = 0
        self.sample_index = 0
        self.streaming = self.mode == "csv"
        if self.board is not None:
            self.board.start()  # a power cycle: the firmware forgets its state and waits for CMD_START
            self._board_out = b""
        if self.faults.banner:
            self._write((self.faults.banner + "\r\n").encode(), raw=True)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._unplug()
        if self.board is not None:
            self.board.stop()

    def __enter__(self) -> SimulatedImu:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def load_source(source: str, rate_hz: float | None, seed: int = 0) -> tuple[np.ndarray, float, list[str], list[str]]:
    """A finite signal to play: the synthetic generator's fixed stream (60 gestures of the default user), a
    stream dataset, or windows laid end to end. ``edgessl simulate`` plays :func:`make_source` instead."""
    from edgessl.datasets import StreamDataset, load

    if source == "synthetic" or source.startswith("synthetic:"):
        from edgessl.synthetic import SyntheticConfig, make_stream

        opts: dict[str, str] = {}
        for kv in filter(None, source.partition(":")[2].split(",")):
            key, sep, val = kv.partition("=")
            if not sep:
                raise ValueError(f"synthetic option {kv!r} in {source!r} must be key=value")
            opts[key] = val
        opts.setdefault("seed", str(seed))  # a seed in the spec wins over the argument
        cfg = SyntheticConfig.from_options(opts)
        st = make_stream(cfg, n_gestures=60)
        return st.signal, float(st.rate_hz or 100.0), st.channel_names, st.channel_units
    ds = load(source)
    if isinstance(ds, StreamDataset):
        sig, rate = ds.signal, ds.rate_hz
    else:
        sig, rate = np.concatenate(list(ds.X_test), axis=1), ds.rate_hz
    rate = rate_hz or rate
    if rate is None:
        raise ValueError(f"{source} has no sample rate; pass --rate")
    return sig, float(rate), ds.channel_names, ds.channel_units


def _is_synthetic(source: str) -> bool:
    return source == "synthetic" or source.startswith("synthetic:")


def make_source(source: str, rate_hz: float | None, *, seed: int = 0, user: str | int | None = None,
                perform: str = "random") -> tuple[np.ndarray | PersonSource, float, list[str], list[str]]:
    """What ``edgessl simulate`` plays: for ``synthetic[:key=value,...]`` a
    :class:`~edgessl.datasets.synthetic.SyntheticPerson` (unbounded, performing as ``perform`` says, as ``user``
    with session ``seed``; a seed in the spec wins), else :func:`load_source`'s recording, looped.

    Raises:
        ValueError: a bad spec option, an unknown gesture in ``perform``, or ``user``/``perform`` with a
            recording (it cannot perform).
    """
    if not _is_synthetic(source):
        if user is not None or perform != "random":
            raise ValueError(f"--user and --perform need a synthetic source; {source!r} is a recording, played as is")
        return load_source(source, rate_hz, seed=seed)
    from edgessl.datasets.registry import parse_options
    from edgessl.datasets.synthetic import DEFAULT_USER, SyntheticConfig, SyntheticPerson

    opts = parse_options(source.partition(":")[2])
    opts.setdefault("seed", str(seed))
    cfg = SyntheticConfig.from_options(opts)
    person = SyntheticPerson(DEFAULT_USER if user is None else user, cfg.seed, rate_hz=rate_hz or cfg.rate_hz,
                             perform=perform, noise_g=cfg.noise_g, counts_per_g=cfg.counts_per_g)  # fmt: skip
    return person, person.rate_hz, list(person.channels), list(person.units)


def _open_log(path: str) -> IO[str]:
    try:
        return open(path, "x", encoding="utf-8")  # noqa: SIM115 (closed by the caller)
    except FileExistsError:
        raise UsageError(f"--log {path}: the file exists; choose a new path (a log is never overwritten)") from None


def printed_scale(units: list[str], declared: dict[str, str] | None) -> list[float] | None:
    """What a text board printing its accelerometer / gyroscope in ``declared`` units (``--units acc=m/s2``)
    multiplies each channel of ``units`` (g, rad/s) by; None when it prints them as they are."""
    if not declared:
        return None
    from edgessl.units import canonical_unit, declare_units

    return [1.0 / canonical_unit(u)[1] for u in declare_units(units, declared.get("acc"), declared.get("gyro"))]


def _cmd_simulate(args) -> int:
    from edgessl.datasets.synthetic import parse_perform, user_id

    if args.perform == "cue" and args.mode == "csv":
        raise UsageError("--perform cue needs --mode binary: a text-mode device cannot receive cues")
    for flag, check, value in (("--perform", parse_perform, args.perform), ("--user", user_id, args.user)):
        try:
            if value is not None:
                check(value)
        except ValueError as e:
            raise UsageError(f"{flag}: {e}") from None
    if not _is_synthetic(args.source) and (args.user is not None or args.perform != "random" or args.log):
        raise UsageError(f"--user, --perform and --log need --source synthetic; {args.source} is a recording, "
                         "played as it is")  # fmt: skip
    if not (math.isfinite(args.speed) and args.speed > 0):
        raise UsageError(f"--speed {args.speed:g}: expected a playback speed > 0 (1 = real time)")
    if args.units and args.mode != "csv":
        raise UsageError(f"--units {','.join(f'{k}={v}' for k, v in args.units.items())} needs --mode csv: a binary "
                         "board announces its units (the protocol's g, rad/s, deg/s)")  # fmt: skip
    if args.board_model and args.mode == "csv":
        raise UsageError("--board-model needs --mode binary: the board's firmware speaks the binary protocol")
    try:
        faults = Faults.parse(args.faults)
    except ValueError as e:
        raise UsageError(f"--faults {args.faults}: {e}") from None
    src, rate, channels, units = make_source(args.source, args.rate, seed=args.seed, user=args.user,
                                             perform=args.perform)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgessl-board-") as work:  # the built firmware goes with it
        board, sha = None, None
        if args.board_model:
            program, sha = build_board(args.board_model, Path(work))
            board = ModelBoard(program)
        return _simulate(args, src, rate, channels, units, board, sha, faults)


def _simulate(args, src: np.ndarray | PersonSource, rate: float, channels: list[str], units: list[str],
              board: ModelBoard | None, sha: str | None, faults: Faults) -> int:  # fmt: skip
    log = _open_log(args.log) if args.log else None

    def write(rec: dict) -> None:
        assert log is not None
        log.write(json.dumps(rec) + "\n")
        log.flush()  # a reader (a benchmark) may follow the file while the simulator runs

    link = args.link or str(Path(tempfile.gettempdir()) / f"edgessl-imu-{os.getpid()}")
    started = False

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (kill, systemd) stops like Ctrl-C: the link it made is removed

    old_term = signal.signal(signal.SIGTERM, terminate)
    try:
        sim = SimulatedImu(src, args.rate or rate, channels, units, mode=args.mode, faults=faults,
                           speed=args.speed, link=link, seed=args.seed,
                           on_performance=write if log is not None else None, board=board,
                           text_scale=printed_scale(units, args.units))  # fmt: skip
        path = sim.start()
        started = True
        try:  # from here on a signal at any point stops the board, which removes its link
            print(path, flush=True)
            from edgessl.datasets.synthetic import DEFAULT_USER

            user = args.user or f"{DEFAULT_USER} (default)"
            who = (f", playing {args.source} ({src.shape[-1] / sim.rate_hz:.0f} s; then again from its start, the time "
                   "running on)" if isinstance(src, np.ndarray) else f", user {user} performing {args.perform}")  # fmt: skip
            if board is not None:
                who += (f", the board's firmware runs {args.board_model} "
                        f"(bundle checksum {sha[:12] + '...' if sha else 'unknown'})")  # fmt: skip
            if args.faults:
                who += f", faults {args.faults}"
            # stdout is the path alone (`P=$(edgessl simulate ... | head -1)`, a file to read it from); what the
            # board is goes to stderr
            print(f"# simulated IMU: {len(channels)} channels {channels} at {sim.rate_hz:g} Hz, {args.mode} mode"
                  f"{who}, slave {sim.slave_path}; Ctrl-C to stop", file=sys.stderr, flush=True)  # fmt: skip
            end = None if args.seconds is None else time.monotonic() + args.seconds
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if log is not None:
            log.close()
            if not started:  # the log this command created is removed when the board never started
                Path(args.log).unlink(missing_ok=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("simulate", help="a simulated IMU on a pseudo-terminal (prints the device path)")
    p.add_argument("--source", default="synthetic", help="synthetic, or a dataset spec (npz:uwave_raw.npz, csv:rec.csv ...: a recording, played in a "
                        "loop)")
    p.add_argument("--rate", type=float, default=None, help="nominal sample rate in Hz (default: the source's; a synthetic person samples at it)")
    p.add_argument("--mode", choices=["binary", "csv"], default="binary",
                   help="binary: the reference firmware's protocol; csv: text lines without a header, as the Edge "
                        "Impulse data forwarder prints them (give --channels acc_x,acc_y,acc_z to the commands that "
                        "open the port; it cannot be cued: rehearse record --label and enroll in binary mode)")  # fmt: skip
    p.add_argument("--units", type=_units_flag, default=None, metavar="acc=UNIT,gyro=UNIT",
                   help="--mode csv: print the accelerometer in m/s² (acc=m/s2, as Edge Impulse's data-forwarder "
                        "sketches do), mg or raw counts (acc=16384LSB/g), the gyroscope in deg/s; the commands that "
                        "read it take the same --units")  # fmt: skip
    p.add_argument("--faults", default=None,
                   help="e.g. drop=0.001,corrupt=0.001,garbage=0.01,banner,drift=200,rate=98,unplug=10:1.5,restart=20 "
                        "(drop/corrupt: probability per byte, and a frame that loses or garbles one byte is rejected whole: "
                        "drop=0.001 loses ~10%% of the ~110-byte binary frames; garbage: probability of a burst of random bytes per frame; "
                        "drift: clock ppm; rate: the real sample rate; "
                        "unplug=EVERY:FOR: unplug every EVERY s for FOR s, wall-clock, so the device loses FOR x "
                        "--speed s of samples; restart=EVERY: a reset every EVERY s; vibration=EVERY:FOR[:G]: a burst of "
                        "white noise (G g rms, default 0.3) for FOR s every EVERY s of device time: a motor, a "
                        "loose mount; mount=DEG[:AT]: the board turned DEG degrees on its mount (about one oblique "
                        "axis, whatever the --seed), from AT s of device time on: a remount, to watch `run`'s adaptation follow it)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="playback speed (1 = real time); other commands' --seconds count wall-clock time, so at "
                        "--speed 4 `record --seconds 180` holds 720 s of samples; --mode csv lines carry no time: "
                        "on Linux the commands that open the port find this simulator and divide the rate they "
                        "measure by its speed (elsewhere give them --rate with the data's own rate, e.g. 100)")  # fmt: skip
    p.add_argument("--link", default=None,
                   help="stable path to keep pointing at the device; must not exist (default: a temp path)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--seed", type=int, default=0,
                   help="the synthetic session's randomness (same --user, other seed: another session of that person) "
                        "and the faults'")
    p.add_argument("--user", default=None,
                   help="who holds the synthetic board: a name (A, B ...) or an integer id; users differ in style, "
                        "grip and gain (default: user 8 of the built-in data set)")
    p.add_argument("--perform", default="random",
                   help="random (gestures at random, without end), cue (idle until the host sends CMD_CUE) or a "
                        "script LABEL:N,... such as circle_cw:10,left:5 (then idle); a cue is performed next in "
                        "every mode")
    p.add_argument("--board-model", default=None, metavar="BUNDLE_OR_DIR",
                   help="play a board whose firmware runs this model: a bundle (.essl, exported to C here) or a "
                        "folder written by edgessl export-c; the reference firmware is compiled with it (needs cc) "
                        "and sends its own gesture EVENTs, which edgessl run shows (default: a plain IMU)")
    p.add_argument("--log", default=None,
                   help="write each performance as a JSON line {label, start_s, end_s, cued} on the device clock "
                        "(a synthetic source only; binary mode: the times run shows; text lines carry no time, so "
                        "run's clock starts at the first line it reads); the file must not exist (default: no log)")
    p.set_defaults(func=_cmd_simulate)
