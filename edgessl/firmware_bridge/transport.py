"""Serial transport in pyserial's layers: an I/O thread that only moves bytes, a framing layer, and a
handler that turns frames (or text lines) into timestamped sample blocks and gap events.

Ports are opened with ``serial.serial_for_url``, so ``loop://``, a pseudo-terminal path (the simulator,
the host-built firmware) and real USB serial devices all work the same way. When the device goes away the
reader thread keeps trying to reopen it — by its path, or by VID/PID/serial number when a ``PortMatch`` is
given and the system lists them — and the handler reports the outage as a :class:`Gap` with its length.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Iterator

import numpy as np
import serial
import serial.tools.list_ports

from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.protocol import BridgeError, DeviceLost, ProtocolError

__all__ = ["Gap", "ImuStream", "PortMatch", "SampleBlock", "SerialTransport", "list_devices"]


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


class SerialTransport:
    """Owns the port and one reader thread that only moves bytes into a queue.

    Queue items: ``("data", bytes, t_host)``, ``("down", None, t_host)`` when the port failed,
    ``("up", None, t_host)`` when it was reopened, ``("lost", message, t_host)`` when reconnection gave up.
    """

    def __init__(self, url: str, baudrate: int = 115200, *, match: PortMatch | None = None,
                 reconnect_timeout: float = 10.0, read_size: int = 4096):  # fmt: skip
        self.url, self.baudrate, self.match = url, baudrate, match
        self.reconnect_timeout = reconnect_timeout
        self.read_size = read_size
        self.queue: queue.Queue = queue.Queue(maxsize=10000)
        self._ser: serial.SerialBase | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _resolve(self) -> str:
        if self.match is None:
            return self.url
        for p in serial.tools.list_ports.comports():
            if self.match.matches(p):
                return p.device
        return self.url

    def _open(self) -> serial.SerialBase:
        return serial.serial_for_url(self._resolve(), baudrate=self.baudrate, timeout=0.05, write_timeout=1.0)

    def open(self) -> SerialTransport:
        try:
            self._ser = self._open()
        except (serial.SerialException, OSError, ValueError) as e:
            raise DeviceLost(f"cannot open {self.url}: {e}") from e
        self._thread = threading.Thread(target=self._run, name=f"serial-reader {self.url}", daemon=True)
        self._thread.start()
        return self

    def _put(self, item) -> None:
        try:
            self.queue.put(item, timeout=0.5)
        except queue.Full:
            pass  # the consumer stalled; dropping is what a UART FIFO would do, and the gap shows downstream

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
                self._put(("down", None, time.monotonic()))
                continue
            if data:
                self._put(("data", data, time.monotonic()))

    def _reconnect(self) -> bool:
        deadline = time.monotonic() + self.reconnect_timeout
        while not self._stop.is_set():
            try:
                ser = self._open()
            except (serial.SerialException, OSError, ValueError):
                if time.monotonic() > deadline:
                    self._put(("lost", f"{self.url} did not come back within {self.reconnect_timeout:g} s", time.monotonic()))
                    return False
                self._stop.wait(0.05)
                continue
            with self._lock:
                self._ser = ser
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

    def __enter__(self) -> SerialTransport:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class SampleBlock:
    """Consecutive samples from the device.

    Attributes:
        values: float32 ``[n, C]`` in physical units (g, rad/s).
        t_device: float64 ``[n]`` device time of each sample in seconds (unwrapped, from the frame header;
            in text mode, sample index / rate).
        t_host: host monotonic time when the block arrived.
        seq: frame sequence number (binary mode) or -1.
    """

    values: np.ndarray
    t_device: np.ndarray
    t_host: float
    seq: int = -1


@dataclasses.dataclass(frozen=True)
class Gap:
    """Samples that never arrived: between ``t_start`` and ``t_end`` (device seconds, or host seconds for
    a disconnect of a device whose clock restarted), about ``missing`` samples."""

    t_start: float
    t_end: float
    missing: int
    reason: str  # "sequence", "timestamp", "disconnect"

    @property
    def seconds(self) -> float:
        return self.t_end - self.t_start


class ImuStream:
    """The handler: speaks to a device over a :class:`SerialTransport` and yields samples and gaps.

    Args:
        url: anything ``serial_for_url`` opens (a path, ``loop://``, ``/dev/ttyACM0``).
        mode: ``"binary"``, ``"text"`` or ``"auto"`` (detect from the first bytes, sending IDENTIFY to
            provoke a binary device).
        rate_hz: the sample rate of a text-mode device (estimated from arrival times when None).
        channels: channel names of a text-mode device (default ``ch0..``).
        units: units of a text-mode device's values.
        handshake_timeout: seconds to wait for DEVICE_INFO and acknowledgements.
    """

    def __init__(self, url: str, mode: str = "auto", *, rate_hz: float | None = None, channels: list[str] | None = None,
                 units: list[str] | None = None, baudrate: int = 115200, match: PortMatch | None = None,
                 handshake_timeout: float = 2.0, reconnect_timeout: float = 10.0):  # fmt: skip
        if mode not in ("auto", "binary", "text"):
            raise ValueError(f"mode must be auto, binary or text; got {mode!r}")
        self.transport = SerialTransport(url, baudrate, match=match, reconnect_timeout=reconnect_timeout)
        self.mode = mode
        self.rate_hz = rate_hz
        self.channels = channels
        self.units = units
        self.handshake_timeout = handshake_timeout
        self.info: P.DeviceInfo | None = None
        self.frames = P.FrameDecoder()
        self.lines = P.LineDecoder()
        self._pending: list[P.Frame] = []
        self._pending_lines: list = []
        self._backlog: list[bytes] = []
        self._cmd_seq = 0
        self._last_seq: int | None = None
        self._next_t: float | None = None  # expected device time of the next sample
        self._down_since: float | None = None
        self._text_count = 0
        self._text_times: list[tuple[float, int]] = []
        self.dropped_samples = 0
        self.gaps: list[Gap] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> ImuStream:
        self.transport.open()
        if self.mode in ("auto", "binary"):
            try:
                self._handshake()
                self.mode = "binary"
            except ProtocolError:
                if self.mode == "binary":
                    self.close()
                    raise
                self.mode = "text"
                self._pending_lines = self.lines.feed(b"".join(self._backlog))
        self._backlog.clear()
        return self

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
        while time.monotonic() < deadline:
            frames = self._read_frames(0.05)
            if self.mode == "auto" and not frames and P.detect_mode(b"".join(self._backlog)) == "text":
                raise ProtocolError("the device streams text lines")
            for f in frames:
                if f.type == P.MsgType.ACK:
                    t, s, status = P.parse_ack(f)
                    if t == sent.type and s == sent.seq:
                        return status
                elif f.type == P.MsgType.DEVICE_INFO:
                    self.info = P.DeviceInfo.from_payload(f.payload)
                else:
                    self._pending.append(f)
        raise ProtocolError(f"no acknowledgement of {mtype.name} within {self.handshake_timeout:g} s")

    def _handshake(self) -> None:
        status = self.command(P.MsgType.CMD_IDENTIFY)
        if status != P.AckStatus.OK or self.info is None:
            raise ProtocolError(f"IDENTIFY answered {status.name} without DEVICE_INFO")
        status = self.command(P.MsgType.CMD_START)
        if status != P.AckStatus.OK:
            raise ProtocolError(f"START answered {status.name}")

    def set_rate(self, hz: float) -> None:
        status = self.command(P.MsgType.CMD_SET_RATE, P.set_rate_arg(hz))
        if status != P.AckStatus.OK:
            raise ProtocolError(f"device refused rate {hz:g} Hz ({status.name})")
        self.command(P.MsgType.CMD_IDENTIFY)

    # -- reading -------------------------------------------------------------------------------------
    def _read_frames(self, timeout: float) -> list[P.Frame]:
        out: list[P.Frame] = []
        for kind, data, _t in self._drain(timeout):
            if kind == "data":
                out += self.frames.feed(data)
                if self.mode == "auto":
                    self._backlog.append(data)  # replayed into the text decoder if this is not a binary device
        return out

    def _drain(self, timeout: float) -> list[tuple]:
        items = []
        try:
            items.append(self.transport.queue.get(timeout=timeout))
            while True:
                items.append(self.transport.queue.get_nowait())
        except queue.Empty:
            pass
        return items

    @property
    def channel_names(self) -> list[str]:
        if self.info is not None:
            return list(self.info.channels)
        return self.channels or [f"ch{i}" for i in range(self.lines.n_channels or 0)]

    @property
    def unit_names(self) -> list[str]:
        if self.info is not None:
            return self.info.unit_names
        return self.units or ["unknown"] * len(self.channel_names)

    @property
    def sample_rate(self) -> float | None:
        if self.info is not None:
            return float(self.info.rate_hz)
        if self.rate_hz is not None:
            return self.rate_hz
        # (arrival time, samples so far) pairs: the slope over a few seconds is the device's rate
        ts = self._text_times
        if len(ts) >= 2 and ts[-1][1] - ts[0][1] >= 50 and ts[-1][0] > ts[0][0]:
            return (ts[-1][1] - ts[0][1]) / (ts[-1][0] - ts[0][0])
        return None

    def read(self, timeout: float = 0.1) -> list[SampleBlock | Gap]:
        """Everything that arrived within ``timeout`` seconds: sample blocks and gaps, in order."""
        events: list[SampleBlock | Gap] = []
        for f in self._pending:
            events += self._on_frame(f, time.monotonic())
        self._pending.clear()
        if self._pending_lines:
            events += self._on_lines(self._pending_lines, time.monotonic())
            self._pending_lines = []
        for kind, data, t in self._drain(timeout):
            if kind == "data":
                if self.mode == "binary":
                    for f in self.frames.feed(data):
                        events += self._on_frame(f, t)
                else:
                    events += self._on_lines(self.lines.feed(data), t)
            elif kind == "down":
                self._down_since = t
            elif kind == "up":
                events += self._on_reconnect(t)
            elif kind == "lost":
                raise DeviceLost(data)
        return events

    def blocks(self, duration: float | None = None, timeout: float = 0.1) -> Iterator[SampleBlock | Gap]:
        end = None if duration is None else time.monotonic() + duration
        while end is None or time.monotonic() < end:
            yield from self.read(timeout)

    def _on_reconnect(self, t: float) -> list[SampleBlock | Gap]:
        if self.mode == "binary":
            # the device may have restarted: ask again who it is and to stream
            try:
                self._handshake()
            except BridgeError:
                pass
        return []

    def _on_frame(self, f: P.Frame, t_host: float) -> list[SampleBlock | Gap]:
        if f.type == P.MsgType.DEVICE_INFO:
            self.info = P.DeviceInfo.from_payload(f.payload)
            return []
        if f.type != P.MsgType.SAMPLES or self.info is None:
            return []
        counts = P.parse_samples(f)
        if counts.shape[1] != len(self.info.channels):
            return []  # a frame that disagrees with DEVICE_INFO cannot be interpreted
        rate = float(self.info.rate_hz)
        t0 = f.timestamp_us * 1e-6
        events: list[SampleBlock | Gap] = []
        if self._next_t is not None:
            missing = int(round((t0 - self._next_t) * rate))
            seq_missing = (f.seq - self._last_seq - 1) & 0xFFFF if self._last_seq is not None else 0
            if missing > 0:
                reason = "disconnect" if self._down_since is not None else ("sequence" if seq_missing else "timestamp")
                gap = Gap(self._next_t, t0, missing, reason)
                events.append(gap)
                self.gaps.append(gap)
                self.dropped_samples += missing
            elif missing < -counts.shape[0]:
                # the device clock went backwards: it restarted. Start a new timeline; report the outage in host time.
                if self._down_since is not None:
                    gap = Gap(self._down_since, t_host, int(round((t_host - self._down_since) * rate)), "disconnect")
                    events.append(gap)
                    self.gaps.append(gap)
        self._down_since = None
        self._last_seq = f.seq
        n = counts.shape[0]
        self._next_t = t0 + n / rate
        scale = np.asarray(self.info.counts_per_unit, np.float32)
        events.append(SampleBlock((counts / scale).astype(np.float32), t0 + np.arange(n) / rate, t_host, f.seq))
        return events

    def _on_lines(self, readings: list, t_host: float) -> list[SampleBlock | Gap]:
        if not readings:
            return []
        vals = np.array([v for _, v in readings], np.float32)
        n = len(vals)
        start = self._text_count
        self._text_count += n
        self._text_times.append((t_host, self._text_count))
        self._text_times = self._text_times[-500:]
        rate = self.sample_rate or 1.0
        return [SampleBlock(vals, (start + np.arange(n)) / rate, t_host, -1)]
