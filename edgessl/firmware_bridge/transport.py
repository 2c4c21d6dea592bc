"""Serial transport in pyserial's layers: an I/O thread that only moves bytes, a framing layer, and a
handler that turns frames (or text lines) into timestamped sample blocks and gap events.

Ports are opened with ``serial.serial_for_url``, so ``loop://``, a pseudo-terminal path (the simulator,
the host-built firmware) and real USB serial devices all work the same way. When the device goes away the
reader thread keeps trying to reopen it — by its path, or by VID/PID/serial number when a ``PortMatch`` is
given and the system lists them — and the handler reports the outage as a :class:`Gap` with its length.

What reaches the consumer is checked: samples that are non-finite or beyond the device's full scale, frames
and lines of the wrong width, frames before the device said who it is, all are removed, counted per reason
(:meth:`ImuStream.counters`) and replaced by a :class:`Gap`, so a window never spans them. Stream times are
strictly increasing: a device clock that restarts or jumps starts a new timeline that continues after the
old one (a gap with ``timeline_reset``). A device that comes back as another device raises
:class:`~edgessl.firmware_bridge.protocol.DeviceChanged` instead of mixing the two.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import serial
import serial.tools.list_ports

from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.flags import channels_example
from edgessl.firmware_bridge.protocol import BridgeError, DeviceChanged, DeviceIdentity, DeviceLost, ProtocolError
from edgessl.units import canonical_unit, declare_units, unit_from_channel

__all__ = ["GAP_REASONS", "STATES", "DeviceEvent", "Gap", "ImuStream", "PortMatch", "SampleBlock", "SerialTransport",
           "channels_flag_problem", "list_devices", "units_flag_error"]

STATES = ("waiting", "streaming", "reconnecting", "lost", "closed")
# a text device given --rate whose lines arrive at a rate off by more than this share (over RATE_CHECK_S s of
# arrivals without a pause) is warned about: USB and the host keep jitter far below it over seconds
RATE_TOLERANCE, RATE_CHECK_S = 0.2, 5.0
# a text device's arrivals, (host time, readings so far), kept for the rate over the last ARRIVAL_KEEP_S s, one
# per ARRIVAL_STEP_S at most (a read sooner moves the newest): by time, not by read, since a USB board's lines
# come in reads of a few each and a count of reads spanned too little time to check its rate at all
ARRIVAL_KEEP_S, ARRIVAL_STEP_S = 25.0, 0.02
StateHook = Callable[[str], None]


def channels_flag_problem(dev: ImuStream, port: str) -> str | None:
    """``--channels``, ``--units`` or another ``--rate`` given for a board that announces its own (binary
    protocol): not used."""
    if dev.info is None:
        return None
    said = []
    if dev.channels:
        said.append(f"--channels is not used: the board on {port} announces its channels {list(dev.info.channels)} "
                    "(binary protocol); --channels names a text board's values")  # fmt: skip
    if dev.declared:
        said.append(f"--units is not used: the board on {port} announces its units {list(dev.info.unit_names)} "
                    "(binary protocol; deg/s is delivered as rad/s); --units is for a text board's values")  # fmt: skip
    if dev.rate_hz is not None and abs(dev.rate_hz / dev.info.rate_hz - 1) > 0.01:
        said.append(f"--rate {dev.rate_hz:g} is not used: the board on {port} announces {dev.info.rate_hz:g} Hz "
                    "(binary protocol; each sample carries its time); --rate is a text board's")  # fmt: skip
    return "; ".join(said) or None


def units_flag_error(dev: ImuStream, port: str) -> str | None:
    """``--units`` for a text board none of whose values it can apply to (no header and no ``--channels``: the
    values are ch0, ch1 ... whose sensor nobody said): the command stops rather than convert nothing."""
    if dev.info is not None or not dev.declared:
        return None
    missing = [k for k, u in (("acc", "g"), ("gyro", "rad/s")) if k in dev.declared and u not in dev.named_units]
    if not missing:
        return None
    said = ",".join(f"{k}={dev.declared[k]}" for k in missing)
    return (f"--units {said}: the board on {port} sends values named {dev.channel_names} (no header line), none of "
            f"them {' or '.join('an accelerometer' if k == 'acc' else 'a gyroscope' for k in missing)}; name them with "
            f"--channels, e.g. --channels {channels_example(len(dev.channel_names))}")  # fmt: skip


class TextLinesInstead(ProtocolError):
    """A binary stream's device answered a command with text readings (another firmware behind the port)."""


@dataclasses.dataclass(frozen=True)
class PortMatch:
    """Identify a USB serial device independently of its path (which may change on replug)."""

    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None

    def matches(self, port) -> bool:
        return (
            (self.vid is None or port.vid == self.vid)
            and (self.pid is None or port.pid == self.pid)
            and (self.serial_number is None or port.serial_number == self.serial_number)
        )


def list_devices() -> list[dict]:
    """Serial ports the system lists, with USB ids where known (``edgessl devices``)."""
    out = []
    for p in serial.tools.list_ports.comports():
        out.append({"device": p.device, "description": p.description, "vid": p.vid, "pid": p.pid,
                    "serial_number": p.serial_number, "manufacturer": p.manufacturer})  # fmt: skip
    return out


def _busy(e: BaseException) -> bool:
    """The port is open in another program that locked it (pyserial's ``exclusive``, as edgessl opens ports)."""
    return "exclusively lock" in str(e) or getattr(e, "errno", None) in (errno.EBUSY, errno.EWOULDBLOCK)


class SerialTransport:
    """Owns the port and one reader thread that only moves bytes into a queue.

    Queue items: ``("data", bytes, t_host)``, ``("down", None, t_host)`` when the port failed,
    ``("up", None, t_host)`` when it was reopened, ``("lost", message, t_host)`` when reconnection gave up.

    Args:
        url: anything ``serial_for_url`` opens.
        reconnect_timeout: seconds to keep reopening a port that went away; None keeps trying until closed.
        wait_for_port: seconds :meth:`open` waits for a port that does not exist yet; 0 fails at once,
            None waits until it appears (or :meth:`close` is called from another thread).
        on_state: called with each new :attr:`state`: from the thread that calls :meth:`open` while
            waiting, from the reader thread afterwards. Keep it short (it runs on the I/O path).

    Attributes:
        state: one of :data:`STATES`: ``"waiting"`` (open() waits for the port), ``"streaming"`` (the port
            is open), ``"reconnecting"`` (it went away; being reopened), ``"lost"`` (gave up), ``"closed"``.
        overflow_bytes: bytes dropped because the consumer stopped reading and the queue filled up.
    """

    def __init__(self, url: str, baudrate: int = 115200, *, match: PortMatch | None = None,
                 reconnect_timeout: float | None = 10.0, wait_for_port: float | None = 0.0, read_size: int = 4096,
                 on_state: StateHook | None = None):  # fmt: skip
        self.url, self.baudrate, self.match = url, baudrate, match
        self.reconnect_timeout = reconnect_timeout
        self.wait_for_port = wait_for_port
        self.read_size = read_size
        self.on_state = on_state
        self.state = "closed"
        self.overflow_bytes = 0
        self.queue: queue.Queue = queue.Queue(maxsize=10000)
        self._ser: serial.SerialBase | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    def _resolve(self) -> str:
        if self.match is None:
            return self.url
        for p in serial.tools.list_ports.comports():
            if self.match.matches(p):
                return p.device
        return self.url

    def _open(self) -> serial.SerialBase:
        # a local port is locked (flock) for as long as it is open: a second edgessl reading it (run while
        # enroll or record has it, the service and a terminal) would steal every other byte of both streams
        url = self._resolve()
        lock = {"exclusive": True} if "://" not in url and os.name == "posix" else {}
        return serial.serial_for_url(url, baudrate=self.baudrate, timeout=0.05, write_timeout=1.0, **lock)

    def _why(self, e: BaseException) -> str:
        """Why a port did not open, in the user's words: a local path that is not there says so once and
        where to look, instead of the driver's errno repeated."""
        if "://" not in self.url and not os.path.exists(self.url):
            return "no such port (`edgessl devices` lists the boards it finds)"
        if _busy(e):
            from edgessl.firmware_bridge.ports import in_use_text

            return in_use_text(self.url) or ("in use by another program: one program at a time reads a port; "
                                             "stop the other first")  # fmt: skip
        if self._not_a_device():
            return "not a serial port (a regular file or a folder); expected the board's device, e.g. /dev/ttyACM0 (`edgessl devices` lists the boards it finds)"
        return str(e)

    def _not_a_device(self) -> bool:
        """A local path that exists and is no character device (a file, a folder): waiting cannot help."""
        if "://" in self.url:
            return False
        try:
            return not stat.S_ISCHR(os.stat(self.url).st_mode)
        except OSError:
            return False

    def open(self) -> SerialTransport:
        """Open the port (waiting for it as ``wait_for_port`` says) and start the reader thread.

        Raises:
            DeviceLost: the port could not be opened in time (the message names it and why).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.url} is already open")  # two readers would steal each other's bytes
        self._stop.clear()
        deadline = None if self.wait_for_port is None else time.monotonic() + self.wait_for_port
        while True:
            try:
                ser = self._open()
                break
            except ValueError as e:  # a malformed URL never starts to work: no point in waiting
                self._set_state("closed")
                raise DeviceLost(f"cannot open {self.url}: {e}") from e
            except (serial.SerialException, OSError) as e:
                if self._not_a_device():  # a file given for a port never becomes one
                    self._set_state("closed")
                    raise DeviceLost(f"cannot open {self.url}: {self._why(e)}") from e
                if deadline is not None and time.monotonic() >= deadline:
                    self._set_state("closed")
                    waited = f" (waited {self.wait_for_port:g} s)" if self.wait_for_port else ""
                    raise DeviceLost(f"cannot open {self.url}{waited}: {self._why(e)}") from e
                self._set_state("waiting")
                if self._stop.wait(0.1):
                    self._set_state("closed")
                    raise DeviceLost(f"cannot open {self.url}: closed while waiting for it") from e
        with self._lock:
            self._ser = ser
        self._set_state("streaming")
        self._thread = threading.Thread(target=self._run, name=f"serial-reader {self.url}", daemon=True)
        self._thread.start()
        return self

    def _put(self, item: tuple) -> None:
        if item[0] == "data":
            try:
                self.queue.put(item, timeout=0.5)
            except queue.Full:
                # the consumer stalled; dropping is what a UART FIFO would do. Counted, and the gap shows downstream
                self.overflow_bytes += len(item[1])
            return
        while not self._stop.is_set():  # a state change must reach the consumer, however late
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            ser = self._ser
            if ser is None:
                if not self._reconnect():
                    return
                continue
            try:
                data = ser.read(max(1, min(self.read_size, ser.in_waiting or 1)))
            except (serial.SerialException, OSError, TypeError, AttributeError):
                # TypeError/AttributeError: pyserial internals when the fd vanished under a read
                with self._lock:
                    self._close_port()
                if self._stop.is_set():
                    return
                self._set_state("reconnecting")
                self._put(("down", None, time.monotonic()))
                continue
            if data:
                self._put(("data", data, time.monotonic()))

    def _reconnect(self) -> bool:
        deadline = None if self.reconnect_timeout is None else time.monotonic() + self.reconnect_timeout
        while not self._stop.is_set():
            try:
                ser = self._open()
            except (serial.SerialException, OSError, ValueError):
                if deadline is not None and time.monotonic() > deadline:
                    self._set_state("lost")
                    self._put(("lost", f"{self.url} did not come back within {self.reconnect_timeout:g} s", time.monotonic()))
                    return False
                self._stop.wait(0.05)
                continue
            with self._lock:
                self._ser = ser
            self._set_state("streaming")
            self._put(("up", None, time.monotonic()))
            return True
        return False

    def _close_port(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
            self._ser = None

    def write(self, data: bytes) -> None:
        with self._lock:
            ser = self._ser
            if ser is None:
                raise DeviceLost(f"{self.url} is disconnected")
            try:
                ser.write(data)
                ser.flush()
            except (serial.SerialException, OSError) as e:
                raise DeviceLost(f"write to {self.url} failed: {e}") from e

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._close_port()
        self._set_state("closed")

    def __enter__(self) -> SerialTransport:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class SampleBlock:
    """Consecutive samples from the device.

    Attributes:
        values: float32 ``[n, C]`` in physical units (g, rad/s); always finite and within the full scale.
        t_device: float64 ``[n]`` stream time of each sample in seconds: the device clock (unwrapped, from the
            frame header; in text mode, accumulated sample periods), shifted at each timeline reset so that it
            is strictly increasing over the whole stream.
        t_host: host monotonic time when the block arrived.
        seq: frame sequence number (binary mode) or -1.
    """

    values: np.ndarray
    t_device: np.ndarray
    t_host: float
    seq: int = -1


# why samples are missing between two blocks
GAP_REASONS = {
    "sequence": "frames were lost on the link",
    "timestamp": "the device skipped samples",
    "disconnect": "the port went away and came back",
    "rejected": "samples arrived but were removed (non-finite, out of range, wrong width, garbled)",
    "clock-restart": "the device clock went backwards (a reset); a new timeline starts",
    "time-jump": "the device clock jumped ahead of the host's; a new timeline starts",
    "device-changed": "another device (or channel set) took over the port; a new timeline starts",
}


@dataclasses.dataclass(frozen=True)
class Gap:
    """Samples that never reached the consumer, between stream times ``t_start`` and ``t_end``: about
    ``missing`` of them (estimated from host time when the device clock cannot tell).

    Attributes:
        reason: one of :data:`GAP_REASONS`.
        timeline_reset: the device clock was restarted, jumped or belongs to another device: device times
            before and after are unrelated (the stream times stay increasing). A consumer resets anything
            keyed to time (smoothing, event suppression).
    """

    t_start: float
    t_end: float
    missing: int
    reason: str
    timeline_reset: bool = False

    @property
    def seconds(self) -> float:
        return self.t_end - self.t_start


@dataclasses.dataclass(frozen=True)
class DeviceEvent:
    """A gesture the board itself classified (an EVENT message, protocol revision 3).

    Attributes:
        index: class index in the board's model (MODEL_INFO labels), -1 for unknown.
        label: that class's label as the board names it, ``"unknown"``, or ``"#<index>"`` when the board's
            MODEL_INFO does not name it.
        confidence: the board's top probability.
        reason: ``"ok"``, ``"low-confidence"`` or ``"out-of-distribution"``.
        t_start, t_end: the gesture's first and last sample in stream time (the same clock as
            :attr:`SampleBlock.t_device`).
        t_host: host monotonic time when the message arrived.
    """

    index: int
    label: str
    confidence: float
    reason: str
    t_start: float
    t_end: float
    t_host: float

    def to_json(self) -> dict:
        return {"index": self.index, "label": self.label, "confidence": round(self.confidence, 4),
                "reason": self.reason, "t_start": round(self.t_start, 4), "t_end": round(self.t_end, 4)}  # fmt: skip


EVENT_REASONS = {P.EventReason.OK: "ok", P.EventReason.LOW_CONFIDENCE: "low-confidence",
                 P.EventReason.OUT_OF_DISTRIBUTION: "out-of-distribution", P.EventReason.NOISE: "noise"}  # fmt: skip


class ImuStream:
    """The handler: speaks to a device over a :class:`SerialTransport` and yields samples and gaps.

    Args:
        url: anything ``serial_for_url`` opens (a path, ``loop://``, ``/dev/ttyACM0``).
        mode: ``"binary"``, ``"text"`` or ``"auto"`` (detect from the first bytes, sending IDENTIFY to
            provoke a binary device).
        rate_hz: the sample rate of a text-mode device (estimated from arrival times when None).
        channels: channel names of a text-mode device (default: its CSV header if it prints one, else ``ch0..``).
        units: units of a text-mode device's values.
        handshake_timeout: seconds to wait for DEVICE_INFO and acknowledgements (text mode: for the first
            readings, which fix the width).
        reconnect_timeout: seconds to wait for an unplugged device to come back; None waits forever.
        wait_for_port: seconds :meth:`open` waits for a port that does not exist yet; 0 fails at once,
            None waits forever.
        on_state: status hook, called with each new :attr:`state` (see :class:`SerialTransport`).
        max_abs: text mode: values beyond this magnitude are rejected (binary: the announced full scale).
        max_time_jump: seconds the device clock may run ahead of the host clock across a gap before it
            counts as a jump (a new timeline) rather than lost samples. A simulator playing at ``speed`` > 1
            runs ahead by ``outage × (speed − 1)``.
        stall_timeout: seconds without a SAMPLES frame while the port is open before a binary device is
            asked again to identify and start (a watchdog reset that kept the USB link up). None: three
            frame periods, at least 1 s.
        max_bad_frames: consecutive SAMPLES frames whose width disagrees with DEVICE_INFO before the device
            is asked to identify again; after twice as many, :class:`ProtocolError`.
        relock_lines: text mode: consecutive readings of another width that mean another device
            (:class:`DeviceChanged`).
        events: ask a board that runs a model (DEVICE_INFO flag, protocol revision 3) to send its gesture
            events alongside the samples (CMD_EVENTS); read them with :meth:`take_events`, see which model
            it runs in :attr:`model_info`. Without it such a board is asked for samples only, and a device
            without a model is never sent anything new.

    Counters (cumulative; :meth:`counters` gives a JSON-ready snapshot):
        delivered_samples: samples handed to the consumer.
        dropped_samples: samples that never arrived (the gaps' ``missing``, without ``"rejected"`` ones).
        rejected_samples: per reason, samples that arrived and were removed: ``"non-finite"``,
            ``"out-of-range"``, ``"width"``, ``"garbled"`` (text), ``"overlap"`` (device time already
            delivered), ``"no-info"`` (before DEVICE_INFO).
        rejected_frames: per reason, binary frames: ``"width"``, ``"no-info"``, ``"bad-info"`` (plus the
            decoder's ``"crc"``, ``"malformed"``, ``"oversized"`` in :meth:`counters`).
        gap_counts: gaps per reason.
        reannouncements, device_changes, stalls, handshake_failures: as named.
    """

    def __init__(self, url: str, mode: str = "auto", *, rate_hz: float | None = None, channels: list[str] | None = None,
                 units: list[str] | None = None, baudrate: int = 115200, match: PortMatch | None = None,
                 handshake_timeout: float = 2.0, reconnect_timeout: float | None = 10.0,
                 wait_for_port: float | None = 0.0, on_state: StateHook | None = None,
                 max_abs: float = P.MAX_TEXT_VALUE, max_time_jump: float = 10.0, stall_timeout: float | None = None,
                 max_bad_frames: int = 20, relock_lines: int = 10, events: bool = False,
                 declared: dict[str, str] | None = None):  # fmt: skip
        if mode not in ("auto", "binary", "text"):
            raise ValueError(f"mode must be auto, binary or text; got {mode!r}")
        self.transport = SerialTransport(url, baudrate, match=match, reconnect_timeout=reconnect_timeout,
                                         wait_for_port=wait_for_port, on_state=on_state)  # fmt: skip
        self.mode = mode
        self.rate_hz = rate_hz
        self.channels = channels
        self.units = units
        self.declared = dict(declared or {})  # a text board's units, by sensor ("acc", "gyro"): converted on arrival
        self.handshake_timeout = handshake_timeout
        self.max_time_jump = max_time_jump
        self.stall_timeout = stall_timeout
        self.max_bad_frames = max_bad_frames
        self.relock_lines = relock_lines
        self.info: P.DeviceInfo | None = None
        self.frames = P.FrameDecoder()
        self.lines = P.LineDecoder(max_abs=max_abs)
        # decoded items not yet handed out, in arrival order: ("frame", Frame, t) ("lines", [TextLine], t)
        # ("down" | "up", None, t) ("lost", message, t)
        self._pending: collections.deque[tuple] = collections.deque()
        self._backlog: list[bytes] = []
        self._fatal: BridgeError | None = None  # raised by the next read(), after what came before it
        self._announced: DeviceIdentity | None = None
        self._expect_change = False
        self._reset_reason: str | None = None  # the next samples start a new timeline, for this reason
        self._bounds: np.ndarray | None = None
        self._counts_per_value = np.ones(0, np.float64)  # counts per delivered value, per channel (from INFO)
        self._cmd_seq = 0
        self._last_seq: int | None = None
        self._next_t: float | None = None  # expected stream time of the next sample
        self._offset = 0.0  # stream time - device time in the current timeline
        self._last_host = 0.0  # host time of the last samples
        self._last_frame_host = 0.0  # ... of the last SAMPLES frame, accepted or not
        self._last_handshake = 0.0
        self._frame_period = 0.1
        self._down_since: float | None = None
        self._rejected_pending = False
        self._width_run = 0
        self._line_width_run: tuple[int, int] = (0, 0)  # (width, consecutive lines of it)
        self._text_t = 0.0
        self._text_count = 0
        self._text_times: collections.deque[tuple[float, int]] = collections.deque()
        self._rate_checked, self._rate_said = float("-inf"), False  # new_rate_problem's
        self._held_rows: list[tuple[float, ...] | None] = []
        self._held_reasons: list[str] = []
        self.rate_wait = 5.0  # text mode without rate_hz: longest hold of the first readings for the estimate
        self.playback_speed = 1.0  # lines per second / rate: k for a simulator at --speed k (set on opening)
        self.simulator: list[str] | None = None  # a text board that is `edgessl simulate --mode csv`: its command line
        self.delivered_samples = 0
        self.dropped_samples = 0
        self.rejected_samples: collections.Counter[str] = collections.Counter()
        self.rejected_frames: collections.Counter[str] = collections.Counter()
        self.gap_counts: collections.Counter[str] = collections.Counter()
        self.reannouncements = 0
        self.device_changes = 0
        self.stalls = 0
        self.handshake_failures = 0
        self.unanswered_cues = 0
        self.cue_supported: bool | None = None  # unknown until the device answers a CMD_CUE
        self.want_events = events
        self.device_flags = 0  # DEVICE_INFO header count: protocol DEVICE_FLAG_* bits
        self.model_info: P.ModelInfo | None = None  # the board's model, once it answered CMD_EVENTS
        self.events_refused = 0  # CMD_EVENTS not answered OK
        self.device_events = 0  # EVENT messages delivered to take_events()
        self._events: list[DeviceEvent] = []
        self.gaps: list[Gap] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> ImuStream:
        """Open the port, identify the device (binary) or read until the line width is known (text).

        Raises:
            DeviceLost: the port cannot be opened (after ``wait_for_port``).
            ProtocolError: a binary device does not answer, or a text device sends no readings.
        """
        self.transport.open()
        try:
            if self.mode in ("auto", "binary"):
                try:
                    self._handshake()
                    self.mode = "binary"
                except ProtocolError:
                    if self.mode == "binary":
                        raise
                    self.mode = "text"
                    self._pending.append(("lines", self.lines.decode(b"".join(self._backlog)), time.monotonic()))
            self._backlog.clear()
            if self.mode == "text":
                self._await_text()
                from edgessl.firmware_bridge.ports import simulator_argv, simulator_speed

                # `edgessl simulate --speed k` plays a text board k times faster than its rate: not a wrong --rate
                self.simulator = simulator_argv(self.transport.url)
                self.playback_speed = simulator_speed(self.transport.url, self.simulator) or 1.0
        except BaseException:
            self.transport.close()
            raise
        self._announced = self.identity
        self._last_frame_host = self._last_handshake = time.monotonic()
        return self

    def _await_text(self) -> None:
        deadline = time.monotonic() + self.handshake_timeout
        while self.lines.n_channels is None:
            if time.monotonic() > deadline:
                raise ProtocolError(f"{self.transport.url}: no text readings within {self.handshake_timeout:g} s "
                                    "(expected lines of numbers like 0.01,-0.98,0.11); is it the IMU's port "
                                    "(`edgessl devices` lists the boards it finds), and does the board stream?")  # fmt: skip
            self._ingest(self._drain(0.05))
        if self.channels is not None and len(self.channels) != self.lines.n_channels:
            raise ProtocolError(f"{self.transport.url}: the device sends {self.lines.n_channels} values per line "
                                f"but {len(self.channels)} channel names were given")  # fmt: skip

    def close(self) -> None:
        if self.mode == "binary":
            try:
                self._send(P.MsgType.CMD_STOP)
            except BridgeError:
                pass
        self.transport.close()

    def __enter__(self) -> ImuStream:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def state(self) -> str:
        """``"waiting"``, ``"streaming"``, ``"reconnecting"``, ``"lost"`` or ``"closed"`` (see :data:`STATES`)."""
        return self.transport.state

    # -- binary commands -----------------------------------------------------------------------------
    def _send(self, mtype: P.MsgType, arg: bytes = b"") -> P.Frame:
        f = P.make_command(mtype, self._cmd_seq, arg)
        self._cmd_seq = (self._cmd_seq + 1) & 0xFFFF
        self.transport.write(P.encode_frame(f))
        return f

    def command(self, mtype: P.MsgType, arg: bytes = b"") -> P.AckStatus:
        """Send one command and wait for its acknowledgement (frames that arrive meanwhile are kept)."""
        sent = self._send(mtype, arg)
        deadline = time.monotonic() + self.handshake_timeout
        status: P.AckStatus | None = None
        heard: list[bytes] = []  # what a binary stream's device sent instead of frames (the first few KiB)
        any_frames = False
        while time.monotonic() < deadline:
            got_frames = False
            for kind, data, t in self._drain(0.05):
                if kind != "data":
                    self._pending.append((kind, data, t))
                    continue
                if self.mode == "auto":
                    self._backlog.append(data)  # replayed into the text decoder if this is not a binary device
                elif sum(map(len, heard)) < 4096:
                    heard.append(data)
                for f in self.frames.feed(data):
                    got_frames = any_frames = True
                    if f.type == P.MsgType.ACK:
                        try:
                            a_type, a_seq, a_status = P.parse_ack(f)
                        except (ProtocolError, ValueError):
                            self.rejected_frames["bad-ack"] += 1
                            continue
                        if a_type == sent.type and a_seq == sent.seq:
                            status = a_status
                    elif f.type == P.MsgType.DEVICE_INFO:
                        self._on_info(f.payload, f.count)
                    elif f.type == P.MsgType.MODEL_INFO:
                        self._on_model_info(f.payload)
                    else:
                        self._pending.append(("frame", f, t))
            if status is not None:
                return status
            if self.mode == "auto" and not got_frames and P.detect_mode(b"".join(self._backlog)) == "text":
                raise ProtocolError("the device streams text lines")
        if self.mode == "binary" and not any_frames and P.detect_mode(b"".join(heard)) == "text":
            raise TextLinesInstead(f"{self.transport.url}: the device sends text lines, not binary frames")
        raise ProtocolError(f"no acknowledgement of {mtype.name} within {self.handshake_timeout:g} s")

    def _handshake(self) -> None:
        self._last_handshake = time.monotonic()
        status = self.command(P.MsgType.CMD_IDENTIFY)
        if status != P.AckStatus.OK or self.info is None:
            raise ProtocolError(f"IDENTIFY answered {status.name} without DEVICE_INFO")
        self._ask_events()
        status = self.command(P.MsgType.CMD_START)
        if status != P.AckStatus.OK:
            raise ProtocolError(f"START answered {status.name}")

    def _ask_events(self) -> None:
        """Tell a board that runs a model (it said so in DEVICE_INFO) whether to send events; IDENTIFY set it
        back to samples only, so this follows every IDENTIFY. A device without the flag is left alone."""
        if not self.device_flags & P.DEVICE_FLAG_MODEL:
            self.model_info = None
            return
        mode = P.EventsMode.ALONGSIDE if self.want_events else P.EventsMode.OFF
        try:
            status = self.command(P.MsgType.CMD_EVENTS, P.events_arg(mode))
        except ProtocolError:
            status = None  # no answer: counted; the samples still flow
        if status != P.AckStatus.OK:
            self.events_refused += 1
            self.model_info = None

    def take_events(self) -> list[DeviceEvent]:
        """The board's gesture events that arrived since the last call (with ``events=True``), in order."""
        out, self._events = self._events, []
        return out

    def _on_model_info(self, payload: bytes) -> None:
        try:
            self.model_info = P.ModelInfo.from_payload(payload)
        except ProtocolError:
            self.rejected_frames["bad-model-info"] += 1

    def _on_event(self, f: P.Frame, t_host: float) -> None:
        if not self.want_events:
            self.rejected_frames["unrequested-event"] += 1  # a board left in events mode by someone else
            return
        try:
            e = P.EventPayload.from_payload(f.payload)
        except ProtocolError:
            self.rejected_frames["bad-event"] += 1
            return
        labels = self.model_info.labels if self.model_info is not None else ()
        label = "unknown" if e.label < 0 else labels[e.label] if e.label < len(labels) else f"#{e.label}"
        # the device clock of the current timeline, as the samples around it are shifted
        self.device_events += 1
        self._events.append(DeviceEvent(e.label, label, float(e.confidence), EVENT_REASONS[P.EventReason(e.reason)],
                                        e.t_start_us * 1e-6 + self._offset, e.t_end_us * 1e-6 + self._offset,
                                        t_host))  # fmt: skip

    def _try_handshake(self) -> None:
        try:
            self._handshake()
        except TextLinesInstead:  # another firmware behind the port (a text one, after a reflash or a swap)
            self.handshake_failures += 1
            self._fatal = ProtocolError(
                f"{self.transport.url}: the device now sends text lines, not the binary frames this stream began "
                "with (another firmware, or another board?); start the command again: --mode auto (the default) "
                "finds out which it speaks")  # fmt: skip
        except BridgeError:
            self.handshake_failures += 1  # tried again at the next stall

    def set_rate(self, hz: float) -> None:
        status = self.command(P.MsgType.CMD_SET_RATE, P.set_rate_arg(hz))
        if status != P.AckStatus.OK:
            raise ProtocolError(f"device refused rate {hz:g} Hz ({status.name})")
        self._expect_change = True  # the new DEVICE_INFO names the new rate: asked for, not another device
        try:
            self.command(P.MsgType.CMD_IDENTIFY)
            self._ask_events()
        finally:
            self._expect_change = False
        self._announced = self.identity

    def cue(self, label: str) -> P.AckStatus:
        """Ask the device to prompt ``label`` now (CMD_CUE): a board shows it, the simulator performs it.

        Returns:
            OK; BAD_ARGUMENT (the device does not know that label); or UNSUPPORTED, without raising: from a
            text-mode device (nothing is sent), a device that answered UNSUPPORTED, or one whose first cue got
            no acknowledgement (firmware older than CMD_CUE drops it as an unknown type; counted in
            ``unanswered_cues``). Once a device said it does not support cues, later cues are not sent.

        Raises:
            ValueError: ``label`` is empty or longer than 32 bytes of UTF-8.
            DeviceLost: the port is disconnected at the moment.
        """
        arg = P.cue_arg(label)
        if self.mode != "binary" or self.cue_supported is False:
            return P.AckStatus.UNSUPPORTED
        try:
            status = self.command(P.MsgType.CMD_CUE, arg)
        except ProtocolError:
            self.unanswered_cues += 1
            if not self.cue_supported:
                self.cue_supported = False
            return P.AckStatus.UNSUPPORTED
        if status == P.AckStatus.UNSUPPORTED:
            self.cue_supported = False
        elif status == P.AckStatus.OK:
            self.cue_supported = True
        return status

    # -- identity ------------------------------------------------------------------------------------
    @property
    def identity(self) -> DeviceIdentity | None:
        """Who is streaming (None while unknown); a change of it is never mixed into one stream."""
        if self.info is not None:
            return DeviceIdentity.from_info(self.info)
        if self.mode == "text" and self.lines.n_channels:
            return DeviceIdentity(None, tuple(self.channel_names), tuple(self.unit_names), self.rate_hz)
        return None

    def _on_info(self, payload: bytes, flags: int = 0) -> None:
        try:
            new = P.DeviceInfo.from_payload(payload)
        except ProtocolError:
            self.rejected_frames["bad-info"] += 1
            return
        old, self.info = self.info, new
        self.device_flags = flags
        counts = np.asarray(new.counts_per_unit, np.float64)
        # counts per delivered value: a channel the board announces in deg/s is delivered in rad/s (as models
        # and recordings take it), its unit said so by unit_names
        self._counts_per_value = counts / np.array([canonical_unit(u)[1] for u in new.unit_names], np.float64)
        # ``range`` is specified in g (CMD_SET_RANGE): it bounds the g channels; one count of rounding allowed
        g = np.array([u == P.Unit.G for u in new.units]) & (new.range > 0)
        self._bounds = np.where(g, new.range + 1.0 / counts, np.inf)
        if old is None:
            return
        self.reannouncements += 1
        before, now = DeviceIdentity.from_info(old), DeviceIdentity.from_info(new)
        if self._expect_change or before == now:
            return
        self._switch(self._announced or before, now)

    def _switch(self, old: DeviceIdentity, new: DeviceIdentity) -> None:
        self.device_changes += 1
        self.cue_supported = None  # another device: it may support cues
        self._announced = new
        self._fatal = DeviceChanged(self.transport.url, old, new)
        self._reset_reason = "device-changed"

    # -- reading -------------------------------------------------------------------------------------
    def _drain(self, timeout: float) -> list[tuple]:
        items = []
        try:
            items.append(self.transport.queue.get(timeout=timeout))
            while True:
                items.append(self.transport.queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _ingest(self, items: list[tuple]) -> None:
        for kind, data, t in items:
            if kind != "data":
                self._pending.append((kind, data, t))
            elif self.mode == "binary":
                self._pending.extend(("frame", f, t) for f in self.frames.feed(data))
            else:
                self._pending.append(("lines", self.lines.decode(data), t))

    @property
    def channel_names(self) -> list[str]:
        if self.info is not None:
            return list(self.info.channels)
        if self.channels:
            return list(self.channels)
        if self.lines.header is not None and len(self.lines.header) == self.lines.n_channels:
            return list(self.lines.header)
        return [f"ch{i}" for i in range(self.lines.n_channels or 0)]

    @property
    def unit_names(self) -> list[str]:
        if self.info is not None:
            return [canonical_unit(u)[0] for u in self.info.unit_names]  # as delivered (deg/s -> rad/s)
        return [canonical_unit(u)[0] for u in self.text_units]  # as delivered (m/s² -> g ...)

    @property
    def named_units(self) -> list[str]:
        """A text board's units as given (``units``) or as its channel names say (acc -> g, gyro -> rad/s)."""
        return list(self.units) if self.units else [unit_from_channel(n) for n in self.channel_names]

    @property
    def text_units(self) -> list[str]:
        """A text board's units as its lines carry them: :attr:`named_units` with ``declared`` (``--units
        acc=m/s2``) in place of g / rad/s."""
        return declare_units(self.named_units, self.declared.get("acc"), self.declared.get("gyro"))

    @property
    def sample_rate(self) -> float | None:
        if self.info is not None:
            return float(self.info.rate_hz)
        if self.rate_hz is not None:
            return self.rate_hz
        # (arrival time, samples so far) pairs: the slope over a few seconds is the device's rate (a simulator
        # played k times faster: its lines arrive k times faster than the rate it plays)
        ts = self._text_times
        if len(ts) >= 2 and ts[-1][1] - ts[0][1] >= 50 and ts[-1][0] > ts[0][0]:
            return (ts[-1][1] - ts[0][1]) / (ts[-1][0] - ts[0][0]) / self.playback_speed
        return None

    def arrival_rate(self, span_s: float = RATE_CHECK_S, longest: bool = False) -> float | None:
        """Text mode: readings per second of host time over the last ``span_s`` s of arrivals with no pause
        of a second or more between them (an unplug or a stalled board is no rate); None until that much came.
        With ``longest``, over all such arrivals kept (:data:`ARRIVAL_KEEP_S`), if they span ``span_s`` s or more.
        The oldest arrival's readings are not counted: they may have waited in the port's buffer."""
        ts = self._text_times
        if self.info is not None or len(ts) < 2:
            return None
        j = len(ts) - 1
        while j > 0 and ts[j][0] - ts[j - 1][0] < 1.0 and (longest or ts[-1][0] - ts[j][0] < span_s):
            j -= 1
        span, n = ts[-1][0] - ts[j][0], ts[-1][1] - ts[j][1]
        return n / span if span >= span_s and n >= 50 else None

    def new_rate_problem(self, now: float) -> str | None:
        """:meth:`rate_problem` for a live command's loop: looked at once a second (host ``now``), returned the
        first time only."""
        if self._rate_said or now - self._rate_checked < 1.0:
            return None
        self._rate_checked = now
        problem = self.rate_problem()
        self._rate_said = problem is not None
        return problem

    def rate_problem(self) -> str | None:
        """A text device given its rate (``rate_hz``) whose lines arrive at another one (by more than
        :data:`RATE_TOLERANCE` over :data:`RATE_CHECK_S` s): what is wrong, else None. Text lines carry no
        time, so the samples are spaced by the given rate: a wrong one stretches or squeezes every movement."""
        if self.rate_hz is None:
            return None
        arriving = self.arrival_rate()
        if arriving is None or abs(arriving / (self.rate_hz * self.playback_speed) - 1) <= RATE_TOLERANCE:
            return None
        ratio = self.rate_hz / arriving
        k = round(1 / ratio)
        # the simulator at --speed k sends k times its rate: named with its numbers where they fit
        sim = (f"`edgessl simulate --speed {k}` sends {k}x its rate: there --rate {self.rate_hz:g} is right"
               if k >= 2 and abs(k * ratio - 1) <= RATE_TOLERANCE else
               "a simulation played at --speed S arrives S times faster than its rate: then --rate is right")  # fmt: skip
        return (f"its lines arrive at {arriving:.4g} per second but --rate says {self.rate_hz:g} Hz, so every "
                f"movement reads {max(ratio, 1 / ratio):.2g}x too {'long' if ratio < 1 else 'short'}; give --rate "
                f"{arriving:.0f}, or leave --rate out and it is measured ({sim})")  # fmt: skip

    @property
    def lost_samples(self) -> int:
        """Every sample the consumer did not get: dropped on the way plus rejected on arrival."""
        return self.dropped_samples + sum(self.rejected_samples.values())

    def counters(self) -> dict:
        """A JSON-ready snapshot of the state and every counter (for a status line or a ``--json`` record)."""
        fs = self.frames.stats
        frames = dict(self.rejected_frames)
        for key, n in (("crc", fs.crc_errors), ("malformed", fs.malformed), ("oversized", fs.oversized)):
            if n:
                frames[key] = n
        return {"state": self.state, "delivered_samples": self.delivered_samples,
                "dropped_samples": self.dropped_samples, "rejected_samples": dict(self.rejected_samples),
                "rejected_frames": frames, "rejected_lines": dict(self.lines.stats.rejected_lines),
                "gaps": dict(self.gap_counts), "reannouncements": self.reannouncements,
                "device_changes": self.device_changes, "stalls": self.stalls,
                "handshake_failures": self.handshake_failures, "overflow_bytes": self.transport.overflow_bytes,
                **({"unanswered_cues": self.unanswered_cues} if self.unanswered_cues else {}),
                **({"device_events": self.device_events, "events_refused": self.events_refused}
                   if self.want_events else {})}  # fmt: skip

    def read(self, timeout: float = 0.1) -> list[SampleBlock | Gap]:
        """Everything that arrived within ``timeout`` seconds: sample blocks and gaps, in order.

        Raises:
            DeviceChanged: another device took over the port (after the old one's samples were returned);
                reading on continues with the new one.
            DeviceLost: the device did not come back within ``reconnect_timeout``.
            ProtocolError: a binary device keeps sending samples that disagree with its DEVICE_INFO.
        """
        self._raise_fatal()
        events: list[SampleBlock | Gap] = []
        self._process(events)
        if self._fatal is None:
            self._ingest(self._drain(0.0 if events else timeout))
            self._process(events)
        if self._fatal is None:
            self._check_stall()
            self._process(events)
        if not events:
            self._raise_fatal()
        return events

    def blocks(self, duration: float | None = None, timeout: float = 0.1) -> Iterator[SampleBlock | Gap]:
        end = None if duration is None else time.monotonic() + duration
        while end is None or time.monotonic() < end:
            yield from self.read(timeout)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            exc, self._fatal = self._fatal, None
            raise exc

    def _process(self, events: list[SampleBlock | Gap]) -> None:
        while self._pending and self._fatal is None:
            kind, data, t = self._pending.popleft()
            if kind == "frame":
                events += self._on_frame(data, t)
            elif kind == "lines":
                events += self._on_lines(data, t)
            elif kind == "down":
                if self._down_since is None:
                    self._down_since = t
            elif kind == "up":
                events += self._on_reconnect(t)
            elif kind == "lost":
                self._fatal = DeviceLost(data)

    def _check_stall(self) -> None:
        if self.mode != "binary" or self.transport.state != "streaming":
            return
        limit = self.stall_timeout if self.stall_timeout is not None else max(1.0, 3 * self._frame_period)
        now = time.monotonic()
        if now - max(self._last_frame_host, self._last_handshake) > limit:
            self.stalls += 1
            self._try_handshake()

    def _on_reconnect(self, t: float) -> list[SampleBlock | Gap]:
        if self.mode == "binary":
            # the device may have restarted, or be another one: ask again who it is and to stream
            self._try_handshake()
            return []
        self.lines.reset_partial()
        down = self._down_since if self._down_since is not None else t
        self._down_since = None
        rate = self.sample_rate or 1.0
        missing = int(round((t - down) * rate))
        gap = Gap(self._text_t, self._text_t + missing / rate, missing, "disconnect")
        self._text_t = gap.t_end
        return [self._gap(gap)]

    def _gap(self, gap: Gap) -> Gap:
        self.gaps.append(gap)
        self.gap_counts[gap.reason] += 1
        if gap.reason != "rejected":
            self.dropped_samples += gap.missing
        return gap

    def _deliver(self, values: np.ndarray, t: np.ndarray, t_host: float, seq: int, rate: float,
                 reasons: np.ndarray) -> list[SampleBlock | Gap]:  # fmt: skip
        """Blocks of the acceptable rows of ``values [n, C]`` and a ``"rejected"`` gap for each run of the
        others; ``reasons [n]`` is "" for rows not rejected yet."""
        reasons = reasons.astype(object)
        ok = reasons == ""
        finite = np.isfinite(values).all(axis=1)
        reasons[ok & ~finite] = "non-finite"
        if self._bounds is not None and self.mode == "binary":
            inside = (np.abs(np.where(np.isfinite(values), values, 0)) <= self._bounds).all(axis=1)
            reasons[(reasons == "") & ~inside] = "out-of-range"
        ok = reasons == ""
        n = len(values)
        self._next_t = float(t[-1]) + 1.0 / rate
        self._last_host = t_host
        if ok.all():
            self.delivered_samples += n
            return [SampleBlock(values.astype(np.float32), t, t_host, seq)]
        events: list[SampleBlock | Gap] = []
        edges = np.flatnonzero(np.diff(ok.astype(np.int8))) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, n], strict=True):
            if ok[a]:
                self.delivered_samples += int(b - a)
                events.append(SampleBlock(values[a:b].astype(np.float32), t[a:b], t_host, seq))
            else:
                for r in reasons[a:b]:
                    self.rejected_samples[r] += 1
                t_end = float(t[b]) if b < n else self._next_t
                events.append(self._gap(Gap(float(t[a]), t_end, int(b - a), "rejected")))
        return events

    def _on_frame(self, f: P.Frame, t_host: float) -> list[SampleBlock | Gap]:
        if f.type == P.MsgType.DEVICE_INFO:
            self._on_info(f.payload, f.count)
            return []
        if f.type == P.MsgType.MODEL_INFO:
            self._on_model_info(f.payload)
            return []
        if f.type == P.MsgType.EVENT:
            self._on_event(f, t_host)
            return []
        if f.type != P.MsgType.SAMPLES:
            return []
        self._last_frame_host = t_host
        if self.info is None:
            self.rejected_frames["no-info"] += 1
            self.rejected_samples["no-info"] += f.count
            self._rejected_pending = True
            return []
        counts = P.parse_samples(f)
        if counts.shape[1] != len(self.info.channels):
            return self._on_bad_width(f)
        self._width_run = 0
        rate = float(self.info.rate_hz)
        n = counts.shape[0]
        self._frame_period = n / rate
        t0 = f.timestamp_us * 1e-6 + self._offset
        events: list[SampleBlock | Gap] = []
        if self._next_t is not None:
            reason, missing, reset = None, 0, False
            dt = t0 - self._next_t
            step = int(round(dt * rate))
            host_dt = t_host - self._last_host
            if self._reset_reason is not None:
                reason, reset = self._reset_reason, True
            elif step < -n or (step < 0 and self._down_since is not None):
                # back by more than a frame, or back at all across a reconnect (nothing is resent across one)
                reason, reset = "clock-restart", True
            elif step > 0 and dt - host_dt > self.max_time_jump:
                reason, reset = "time-jump", True
            if reset:
                # a new timeline: continue after the old one, with the outage the host clock measured
                missing = max(0, int(round(host_dt * rate)) - n)
                new_t0 = self._next_t + missing / rate
                self._offset += new_t0 - t0
                t0 = new_t0
                if self._down_since is not None and reason == "clock-restart":
                    reason = "disconnect"
            elif step > 0:
                missing = step
                seq_missing = (f.seq - self._last_seq - 1) & 0xFFFF if self._last_seq is not None else 0
                reason = ("disconnect" if self._down_since is not None else "rejected" if self._rejected_pending
                          else "sequence" if seq_missing else "timestamp")  # fmt: skip
            elif step < 0:
                # the frame repeats device time already delivered (a retransmission): only its new part counts
                k = min(n, -step)
                self.rejected_samples["overlap"] += k
                counts, t0, n = counts[k:], t0 + k / rate, n - k
                if n == 0:
                    self._last_host = t_host
                    return []
            if reason is not None:
                events.append(self._gap(Gap(self._next_t, t0, missing, reason, reset)))
        self._reset_reason = None
        self._down_since = None
        self._rejected_pending = False
        self._last_seq = f.seq
        scale = self._counts_per_value
        t = t0 + np.arange(n) / rate
        events += self._deliver(counts / scale, t, t_host, f.seq, rate, np.full(n, "", object))
        return events

    def _on_bad_width(self, f: P.Frame) -> list[SampleBlock | Gap]:
        assert self.info is not None
        self.rejected_frames["width"] += 1
        self.rejected_samples["width"] += f.count
        self._rejected_pending = True
        self._width_run += 1
        width = f.payload[0]
        if self._width_run == self.max_bad_frames:
            self._try_handshake()  # perhaps the device changed and will say so
        elif self._width_run >= 2 * self.max_bad_frames:
            self._width_run = 0
            self._fatal = ProtocolError(
                f"{self.transport.url}: the device announces {len(self.info.channels)} channels "
                f"{list(self.info.channels)} but sends {width}-value samples "
                f"({self.rejected_frames['width']} frames rejected)")  # fmt: skip
        return []

    def _on_lines(self, lines: list[P.TextLine], t_host: float) -> list[SampleBlock | Gap]:
        rows: list[tuple[float, ...] | None] = []
        reasons: list[str] = []
        reset, switched = self._reset_reason, False
        for i, ln in enumerate(lines):
            if self._text_line_switches(ln):
                # this line and the rest were decoded for the old device: read them again as the new one's
                self._pending.appendleft(("lines", [r for x in lines[i:] for r in self.lines.recheck(x)], t_host))
                switched = True
                break
            if ln.kind == "reading":
                rows.append(ln.values)
                reasons.append("")
            elif ln.lost_reading:
                rows.append(None)
                reasons.append(ln.reason)
        events: list[SampleBlock | Gap] = []
        if not rows:
            return events
        self._text_count += len(rows)
        ts = self._text_times
        if len(ts) >= 2 and t_host - ts[-2][0] < ARRIVAL_STEP_S:
            ts[-1] = (t_host, self._text_count)
        else:
            ts.append((t_host, self._text_count))
        while t_host - ts[0][0] > ARRIVAL_KEEP_S:
            ts.popleft()
        rate = self.sample_rate
        if rate is None or self._held_rows:
            # hold the first readings until their arrival times tell the rate: no made-up spacing goes out
            self._held_rows += rows
            self._held_reasons += reasons
            if rate is None:
                t_first, n_first = self._text_times[0]
                if t_host - t_first < self.rate_wait:
                    return events
                rate = (self._text_count - n_first) / (t_host - t_first) / self.playback_speed if t_host > t_first else 1.0
            rows, reasons = self._held_rows, self._held_reasons
            self._held_rows, self._held_reasons = [], []
        n = len(rows)
        width = self.lines.n_channels or 1
        vals = np.array([r if r is not None and len(r) == width else (np.nan,) * width for r in rows], np.float64)
        if self.declared:  # delivered in g / rad/s (``--units``)
            factor = np.array([canonical_unit(u)[1] for u in self.text_units], np.float64)
            if len(factor) == width:
                vals *= factor
        if reset is not None:
            events.append(self._gap(Gap(self._text_t, self._text_t, 0, reset, True)))
            if not switched:
                self._reset_reason = None
        # accumulated periods, not index / rate: the estimated rate changes, the times must not go back
        t = self._text_t + np.arange(n) / rate
        self._text_t += n / rate
        events += self._deliver(vals, t, t_host, -1, rate, np.array(reasons, object))
        return events

    def _text_line_switches(self, ln: P.TextLine) -> bool:
        """Track a text device's identity; True when ``ln`` shows another device (the switch is made)."""
        old = self._announced
        if ln.kind == "header":
            if old is None or self.channels is not None:
                return False
            if len(ln.names) != self.lines.n_channels:
                self.lines.n_channels = len(ln.names)
        elif ln.kind == "rejected" and ln.reason == "width":
            w = len(ln.values)
            run = self._line_width_run[1] + 1 if self._line_width_run[0] == w else 1
            self._line_width_run = (w, run)
            if old is None or run < self.relock_lines:
                return False
            self.lines.n_channels, self.lines.header = w, None
            self._line_width_run = (0, 0)
        else:
            if ln.kind == "reading":
                self._line_width_run = (0, 0)
            return False
        new = self.identity
        if old is None or new is None or new == old:
            return False
        self._switch(old, new)
        return True
