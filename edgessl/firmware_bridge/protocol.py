"""Wire protocol v1 between an IMU microcontroller and the host (specified in docs/protocol.md).

Binary mode: each message is ``header | payload | crc32`` (little-endian), COBS-encoded and terminated
by one 0x00 byte, so a receiver resynchronises at the next zero after any corruption.

    header (13 bytes): version u8 | type u8 | seq u16 | timestamp_us u64 | count u8
    crc32: IEEE 802.3 (zlib.crc32) over header + payload

Text mode: one reading per line, values separated by ``,`` or TAB (Edge Impulse data-forwarder style).

This module is pure Python + numpy and never raises out of :meth:`FrameDecoder.feed`: malformed input is
counted in :class:`DecoderStats` and skipped.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from edgessl.errors import DeviceError

VERSION = 1
HEADER = struct.Struct("<BBHQB")
HEADER_SIZE = HEADER.size  # 13
CRC_SIZE = 4
MAX_FRAME = 1024  # decoded bytes; longer input without a delimiter is dropped
DELIM = b"\x00"


class MsgType(enum.IntEnum):
    DEVICE_INFO = 0x01  # header ``count``: capability flags (revision 3), see DEVICE_FLAG_MODEL
    SAMPLES = 0x02
    MODEL_INFO = 0x03  # revision 3: the model a board runs, in answer to CMD_EVENTS
    EVENT = 0x04  # revision 3: a gesture the board classified
    CMD_START = 0x10
    CMD_STOP = 0x11
    CMD_SET_RATE = 0x12
    CMD_SET_RANGE = 0x13
    CMD_IDENTIFY = 0x14
    CMD_CUE = 0x15  # payload: a UTF-8 label; the device prompts (LED, display) or, simulated, performs it
    CMD_EVENTS = 0x16  # revision 3: payload ``mode u8`` (EventsMode); only to a device with DEVICE_FLAG_MODEL
    ACK = 0x20


class AckStatus(enum.IntEnum):
    OK = 0
    BAD_ARGUMENT = 1
    UNSUPPORTED = 2
    BUSY = 3


class EventsMode(enum.IntEnum):
    """What a board that runs a model sends while streaming (CMD_EVENTS)."""

    OFF = 0  # SAMPLES only: the mode after a reset, so a host that never asks sees a revision-2 device
    ALONGSIDE = 1  # SAMPLES and EVENT
    ONLY = 2  # EVENT only (a slow link)


# DEVICE_INFO header ``count`` bits (revision 3; revision-2 hosts ignore the field)
DEVICE_FLAG_MODEL = 0x01  # the device runs an exported model and answers CMD_EVENTS


class EventReason(enum.IntEnum):
    """Why an EVENT's answer is what it is (the runtime's decision rules, run on the board)."""

    OK = 0
    LOW_CONFIDENCE = 1
    OUT_OF_DISTRIBUTION = 2
    NOISE = 3  # the segment is noise or vibration, not a movement (checked first)


class Unit(enum.IntEnum):
    G = 0
    RAD_PER_S = 1
    DEG_PER_S = 2
    OTHER = 3


UNIT_NAMES = {Unit.G: "g", Unit.RAD_PER_S: "rad/s", Unit.DEG_PER_S: "deg/s", Unit.OTHER: "other"}


class BridgeError(DeviceError):
    """Base of every firmware-bridge error."""


class FrameError(BridgeError):
    """A frame could not be decoded (raised only by the strict single-frame helpers)."""


class DeviceLost(BridgeError):
    """The device went away (unplugged, port closed) and did not come back in time."""


class ProtocolError(BridgeError):
    """The device answered something the protocol does not allow (wrong ack, bad info)."""


@dataclasses.dataclass(frozen=True)
class DeviceIdentity:
    """What must stay the same for two stretches of a stream to be mixed: who the device is and what its
    samples mean. Text-mode devices have no id, and their rate is compared only when the user gave it."""

    device_id: int | None
    channels: tuple[str, ...]
    units: tuple[str, ...]
    rate_hz: float | None

    @classmethod
    def from_info(cls, info: DeviceInfo) -> DeviceIdentity:
        return cls(info.device_id, tuple(info.channels), tuple(info.unit_names), float(info.rate_hz))

    def __str__(self) -> str:
        who = "text device" if self.device_id is None else f"device 0x{self.device_id:08x}"
        rate = "" if self.rate_hz is None else f" at {self.rate_hz:g} Hz"  # a text board's: measured, not said
        return f"{who} with {len(self.channels)} channels {list(self.channels)} in {list(self.units)}{rate}"


class DeviceChanged(BridgeError):
    """The device behind the port is no longer the one the stream started with (a re-announcement with other
    channels, units, rate or id; another board after a replug; a text device whose line width changed).

    Raised by :meth:`ImuStream.read` after every sample of the old device was delivered and before any of the
    new one; the stream has already switched to ``new``. A consumer that cannot use it stops (the CLI maps
    every :class:`BridgeError` to the device exit code); one that can re-maps its channels and keeps reading:
    the next read starts with a :class:`Gap` of reason ``"device-changed"``.
    """

    def __init__(self, port: str, old: DeviceIdentity, new: DeviceIdentity):
        self.port, self.old, self.new = port, old, new
        super().__init__(f"{port}: the device changed from {old} to {new}; its samples are not mixed with the old ones")


# ----------------------------------------------------------------------------------------------
# CRC-32 and COBS


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the output holds no 0x00 byte."""
    out = bytearray()
    for block in data.split(b"\x00"):
        # each zero-free run becomes code blocks of at most 254 data bytes
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises :class:`FrameError` on malformed input."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise FrameError("malformed COBS block")
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    if b"\x00" in data:
        raise FrameError("zero byte inside a COBS frame")
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# frames


@dataclasses.dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    timestamp_us: int
    count: int
    payload: bytes
    version: int = VERSION


def encode_message(frame: Frame) -> bytes:
    """``header | payload | crc32`` (not yet COBS-encoded)."""
    body = HEADER.pack(frame.version, frame.type, frame.seq & 0xFFFF, frame.timestamp_us, frame.count) + frame.payload
    return body + struct.pack("<I", crc32(body))


def encode_frame(frame: Frame) -> bytes:
    """The bytes on the wire: COBS(message) + 0x00."""
    return cobs_encode(encode_message(frame)) + DELIM


def decode_message(msg: bytes) -> Frame:
    """Parse and validate one de-COBSed message; raises :class:`FrameError` with the reason."""
    if len(msg) < HEADER_SIZE + CRC_SIZE:
        raise FrameError(f"frame too short: {len(msg)} bytes, need at least {HEADER_SIZE + CRC_SIZE}")
    body, (crc,) = msg[:-CRC_SIZE], struct.unpack("<I", msg[-CRC_SIZE:])
    if crc32(body) != crc:
        raise FrameError("CRC mismatch")
    version, mtype, seq, ts, count = HEADER.unpack_from(body)
    if version != VERSION:
        raise FrameError(f"protocol version {version}, this host speaks {VERSION}")
    payload = body[HEADER_SIZE:]
    if mtype == MsgType.SAMPLES:
        if not payload or len(payload) != 1 + 2 * count * payload[0] or payload[0] == 0:
            raise FrameError(f"SAMPLES payload of {len(payload)} bytes does not hold {count} samples")
    elif mtype not in MsgType._value2member_map_:
        raise FrameError(f"unknown message type 0x{mtype:02x}")
    return Frame(mtype, seq, ts, count, bytes(payload), version)


def decode_frame(wire: bytes) -> Frame:
    """Decode exactly one wire frame (with or without its trailing 0x00)."""
    return decode_message(cobs_decode(wire.rstrip(b"\x00")))


# ----------------------------------------------------------------------------------------------
# payloads


def samples_payload(samples: np.ndarray) -> bytes:
    """``samples [n, C]`` int16 counts -> SAMPLES payload (``u8 C`` then sample-major int16 LE)."""
    s = np.asarray(samples)
    if s.ndim != 2 or not 1 <= s.shape[1] <= 255 or not 1 <= s.shape[0] <= 255:
        raise ValueError(f"samples must be [n<=255, C<=255] int16 counts; got shape {s.shape}")
    if s.dtype.kind == "f" or s.min(initial=0) < -32768 or s.max(initial=0) > 32767:
        raise ValueError("samples must be integer counts within int16")
    return bytes([s.shape[1]]) + s.astype("<i2").tobytes()


def parse_samples(frame: Frame) -> np.ndarray:
    """SAMPLES frame -> ``[count, C]`` int16."""
    c = frame.payload[0]
    return np.frombuffer(frame.payload, dtype="<i2", offset=1).reshape(frame.count, c)


def make_samples(seq: int, timestamp_us: int, samples: np.ndarray) -> Frame:
    return Frame(MsgType.SAMPLES, seq & 0xFFFF, timestamp_us, int(np.asarray(samples).shape[0]), samples_payload(samples))


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself (the DEVICE_INFO message)."""

    device_id: int
    firmware: tuple[int, int, int]
    channels: tuple[str, ...]
    units: tuple[Unit, ...]
    rate_hz: float
    range: int  # full-scale range in the channel unit, e.g. 2 for ±2 g
    counts_per_unit: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.units) == len(self.counts_per_unit)) or not self.channels:
            raise ValueError("channels, units and counts_per_unit must be non-empty and of equal length")
        if any(len(c.encode()) > 31 for c in self.channels):
            raise ValueError("channel names are at most 31 bytes")
        if not 0 < self.rate_hz < np.inf or not all(0 < s < np.inf for s in self.counts_per_unit):
            raise ValueError("rate_hz and counts_per_unit must be positive and finite")

    @property
    def unit_names(self) -> list[str]:
        return [UNIT_NAMES[Unit(u)] for u in self.units]

    def to_payload(self) -> bytes:
        out = bytearray(struct.pack("<I3BfHB", self.device_id, *self.firmware, self.rate_hz, self.range, len(self.channels)))
        for name, unit, scale in zip(self.channels, self.units, self.counts_per_unit, strict=True):
            b = name.encode()
            out += bytes([len(b)]) + b + struct.pack("<Bf", int(unit), scale)
        return bytes(out)

    @classmethod
    def from_payload(cls, p: bytes) -> DeviceInfo:
        try:
            dev, a, b, c, rate, rng, n = struct.unpack_from("<I3BfHB", p)
            off = struct.calcsize("<I3BfHB")
            names, units, scales = [], [], []
            for _ in range(n):
                ln = p[off]
                names.append(p[off + 1 : off + 1 + ln].decode())
                unit, scale = struct.unpack_from("<Bf", p, off + 1 + ln)
                units.append(Unit(unit))
                scales.append(scale)
                off += 1 + ln + 5
            if off != len(p):
                raise ValueError(f"{len(p) - off} trailing bytes")
            return cls(dev, (a, b, c), tuple(names), tuple(units), rate, rng, tuple(scales))
        except (struct.error, IndexError, UnicodeDecodeError, ValueError) as e:
            raise ProtocolError(f"malformed DEVICE_INFO payload: {e}") from e


def make_command(mtype: MsgType, seq: int, arg: bytes = b"") -> Frame:
    return Frame(mtype, seq & 0xFFFF, 0, 0, arg)


def set_rate_arg(hz: float) -> bytes:
    return struct.pack("<f", hz)


def set_range_arg(full_scale: int) -> bytes:
    return struct.pack("<H", full_scale)


CUE_MAX_LABEL = 32  # bytes of UTF-8


def cue_arg(label: str) -> bytes:
    """CMD_CUE's payload; raises ValueError for an empty label or one longer than 32 bytes of UTF-8."""
    raw = label.encode("utf-8")
    if not 1 <= len(raw) <= CUE_MAX_LABEL:
        raise ValueError(f"a cue label must be 1 to {CUE_MAX_LABEL} bytes of UTF-8; {label!r} has {len(raw)}")
    return raw


def parse_cue(payload: bytes) -> str:
    """The label of a CMD_CUE payload; raises ValueError when it is empty, too long or not UTF-8."""
    if not 1 <= len(payload) <= CUE_MAX_LABEL:
        raise ValueError(f"a cue label must be 1 to {CUE_MAX_LABEL} bytes; got {len(payload)}")
    return payload.decode("utf-8")  # UnicodeDecodeError is a ValueError


def make_ack(seq: int, timestamp_us: int, acked: Frame, status: AckStatus) -> Frame:
    return Frame(MsgType.ACK, seq & 0xFFFF, timestamp_us, 0, struct.pack("<BHB", acked.type, acked.seq, int(status)))


def parse_ack(frame: Frame) -> tuple[int, int, AckStatus]:
    if len(frame.payload) != 4:
        raise ProtocolError(f"ACK payload must be 4 bytes; got {len(frame.payload)}")
    t, s, st = struct.unpack("<BHB", frame.payload)
    return t, s, AckStatus(st)


EVENT_PAYLOAD = struct.Struct("<hBfQQ")  # label, reason, confidence, t_start_us, t_end_us (23 bytes)
SHA256_SIZE = 32


@dataclasses.dataclass(frozen=True)
class EventPayload:
    """An EVENT message: a gesture the board classified, on the device clock.

    Attributes:
        label: class index into the board's model labels (MODEL_INFO), -1 for unknown.
        reason: :class:`EventReason` (why unknown, or OK).
        confidence: the top probability, 0..1.
        t_start_us, t_end_us: the gesture's first and last sample, device clock in µs (as SAMPLES timestamps).
    """

    label: int
    reason: int
    confidence: float
    t_start_us: int
    t_end_us: int

    def to_payload(self) -> bytes:
        return EVENT_PAYLOAD.pack(self.label, self.reason, self.confidence, self.t_start_us, self.t_end_us)

    @classmethod
    def from_payload(cls, p: bytes) -> EventPayload:
        if len(p) != EVENT_PAYLOAD.size:
            raise ProtocolError(f"EVENT payload must be {EVENT_PAYLOAD.size} bytes; got {len(p)}")
        label, reason, conf, t0, t1 = EVENT_PAYLOAD.unpack(p)
        if label < -1 or reason not in EventReason._value2member_map_ or not 0.0 <= conf <= 1.0 or t1 < t0:
            raise ProtocolError(f"EVENT payload out of range: label {label}, reason {reason}, confidence {conf}, "
                                f"times {t0}..{t1} us")  # fmt: skip
        return cls(label, reason, conf, t0, t1)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A MODEL_INFO message: which model the board runs and what its EVENT label indices mean.

    Attributes:
        bundle_sha256: the checksum of the bundle the C model was exported from (SHA-256 of its
            ``manifest.json``, :attr:`edgessl.edge_runtime.bundle.Bundle.checksum`, ``bundle_checksum`` in
            ``essl_model_info.json``); 32 zero bytes when the board does not know it.
        mode: the :class:`EventsMode` now in force.
        labels: the model's class labels (≤ 31 bytes of UTF-8 each), in EVENT index order.
    """

    bundle_sha256: bytes
    mode: int
    labels: tuple[str, ...]

    @property
    def sha256_hex(self) -> str | None:
        """The checksum in hex, as :attr:`Bundle.checksum <edgessl.edge_runtime.bundle.Bundle.checksum>`; None
        when the board does not know it."""
        return None if not any(self.bundle_sha256) else self.bundle_sha256.hex()

    def to_payload(self) -> bytes:
        if len(self.bundle_sha256) != SHA256_SIZE or not 0 <= self.mode <= 255 or len(self.labels) > 255:
            raise ValueError("bundle_sha256 must be 32 bytes, mode a byte and at most 255 labels")
        out = bytearray(self.bundle_sha256 + bytes([self.mode, len(self.labels)]))
        for name in self.labels:
            b = name.encode()
            if len(b) > 31:
                raise ValueError(f"label {name!r} is longer than 31 bytes of UTF-8")
            out += bytes([len(b)]) + b
        return bytes(out)

    @classmethod
    def from_payload(cls, p: bytes) -> ModelInfo:
        try:
            sha, mode, n = p[:SHA256_SIZE], p[SHA256_SIZE], p[SHA256_SIZE + 1]
            off, labels = SHA256_SIZE + 2, list[str]()
            for _ in range(n):
                ln = p[off]
                if ln > 31 or off + 1 + ln > len(p):
                    raise ValueError(f"label {len(labels)} of {ln} bytes runs past the payload or its 31-byte limit")
                labels.append(p[off + 1 : off + 1 + ln].decode())
                off += 1 + ln
            if off != len(p):
                raise ValueError(f"{len(p) - off} trailing bytes")
            return cls(bytes(sha), mode, tuple(labels))
        except (IndexError, UnicodeDecodeError, ValueError) as e:
            raise ProtocolError(f"malformed MODEL_INFO payload: {e}") from e


def events_arg(mode: EventsMode) -> bytes:
    return bytes([int(mode)])


# ----------------------------------------------------------------------------------------------
# stream decoders


@dataclasses.dataclass
class DecoderStats:
    """Counts of what a decoder saw. ``bad_lines`` is the total of ``rejected_lines`` (per reason)."""

    frames: int = 0
    crc_errors: int = 0
    malformed: int = 0
    oversized: int = 0
    bytes_in: int = 0
    lines: int = 0
    bad_lines: int = 0
    rejected_lines: dict[str, int] = dataclasses.field(default_factory=dict)

    def reject_line(self, reason: str) -> None:
        self.bad_lines += 1
        self.rejected_lines[reason] = self.rejected_lines.get(reason, 0) + 1


class FrameDecoder:
    """Bytes in, validated :class:`Frame` objects out. Never raises on bad input; counts it instead."""

    def __init__(self, max_frame: int = MAX_FRAME):
        self._buf = bytearray()
        self.max_encoded = max_frame + max_frame // 254 + 2
        self.stats = DecoderStats()

    def feed(self, data: bytes) -> list[Frame]:
        self.stats.bytes_in += len(data)
        self._buf += data
        if DELIM not in data:
            if len(self._buf) > self.max_encoded:
                self.stats.oversized += 1
                self._buf.clear()
            return []
        *chunks, rest = bytes(self._buf).split(DELIM)
        self._buf = bytearray(rest)
        if len(self._buf) > self.max_encoded:
            self.stats.oversized += 1
            self._buf.clear()
        out = []
        for chunk in chunks:
            if not chunk:
                continue  # idle delimiters
            if len(chunk) > self.max_encoded:
                self.stats.oversized += 1
                continue
            try:
                out.append(decode_message(cobs_decode(chunk)))
            except FrameError as e:
                if str(e) == "CRC mismatch":
                    self.stats.crc_errors += 1
                else:
                    self.stats.malformed += 1
                continue
            self.stats.frames += 1
        return out


MAX_TEXT_VALUE = 1e6  # no IMU reports a million g or rad/s: a larger number is a corrupted line
TIME_COLUMNS = ("t", "time", "time_s", "time_ms", "timestamp", "timestamp_ms", "timestamp_us", "millis", "micros")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")

# rejection reasons of text lines; all but "unparsed" stand for a reading that was lost
LINE_REASONS = ("unparsed", "garbled", "width", "non-finite", "out-of-range")


@dataclasses.dataclass(frozen=True)
class TextLine:
    """One decoded text line.

    Attributes:
        kind: ``"reading"``, ``"header"`` (a CSV header: ``names``) or ``"rejected"`` (``reason``).
        values: the numbers of a reading (and of a rejected line where they parsed).
        timestamp: the leading time column of a reading, when the decoder has one.
        reason: why a line was rejected, one of :data:`LINE_REASONS`. ``"unparsed"`` (banners, logs) is
            not a lost reading; every other reason is.
        names: channel names of a header line (without its time column).
    """

    kind: str
    values: tuple[float, ...] = ()
    timestamp: float | None = None
    reason: str = ""
    names: tuple[str, ...] = ()

    @property
    def lost_reading(self) -> bool:
        return self.kind == "rejected" and self.reason != "unparsed"


class LineDecoder:
    """Text mode: lines of numbers separated by ``,`` or TAB (Edge Impulse data-forwarder style).

    The width (values per reading) is fixed by ``n_channels``, else by a CSV header line (two or more
    names, e.g. ``acc_x,acc_y,acc_z``), else by the first two consecutive readings of equal width, so a
    numeric boot message cannot fix it. Lines are rejected and counted per reason (:data:`LINE_REASONS`):
    text that is not a reading, a reading with the wrong width, a non-finite value, or a value beyond
    ``max_abs``. An optional leading time column is recognised when ``timestamp_column`` is True (or the
    header starts with one of :data:`TIME_COLUMNS`).
    """

    def __init__(self, n_channels: int | None = None, timestamp_column: bool = False, max_line: int = 512,
                 max_abs: float = MAX_TEXT_VALUE):  # fmt: skip
        self._buf = bytearray()
        self.n_channels = n_channels
        self.timestamp_column = timestamp_column
        self.max_line = max_line
        self.max_abs = max_abs
        self.header: tuple[str, ...] | None = None
        self._candidate: TextLine | None = None  # a first reading waiting for a second of its width
        self.stats = DecoderStats()

    def reset_partial(self) -> None:
        """Forget a partial line (the port was reopened: its rest will never come)."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[tuple[float | None, list[float]]]:
        """Bytes in, accepted readings out as ``(timestamp or None, values)``."""
        return [(ln.timestamp, list(ln.values)) for ln in self.decode(data) if ln.kind == "reading"]

    def decode(self, data: bytes) -> list[TextLine]:
        """Bytes in, every complete line out as a :class:`TextLine`, in order."""
        self.stats.bytes_in += len(data)
        self._buf += data
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest if len(rest) <= self.max_line else b"")
        out: list[TextLine] = []
        for raw in lines:
            out += self._line(raw)
        return out

    def recheck(self, line: TextLine) -> list[TextLine]:
        """A line rejected for its width, checked again after ``n_channels`` changed (another device)."""
        if line.kind != "rejected" or line.reason != "width" or len(line.values) != self.n_channels:
            return [line]
        self.stats.bad_lines -= 1
        self.stats.rejected_lines["width"] -= 1
        return self._check(TextLine("reading", line.values))

    def _reject(self, reason: str, values: Sequence[float] = ()) -> list[TextLine]:
        self.stats.reject_line(reason)
        return [TextLine("rejected", tuple(values), reason=reason)]

    def _line(self, raw: bytes) -> list[TextLine]:
        fields = _split(raw)
        if fields is None:
            return self._reject("unparsed")
        try:
            vals = [float(v) for v in fields]
        except ValueError:
            names = tuple(f.strip().strip('"') for f in fields)
            if len(names) >= 2 and all(_NAME.match(n) for n in names):
                return self._on_header(names)
            if self.n_channels is not None and len(fields) == self.n_channels + self.timestamp_column and \
                    any(c.isdigit() for c in "".join(fields)):  # fmt: skip
                return self._reject("garbled")  # a reading with a damaged value
            return self._reject("unparsed")
        ts = None
        if self.timestamp_column and vals:
            ts, vals = vals[0], vals[1:]
        if not vals:
            return self._reject("unparsed")
        if self.n_channels is None:
            return self._lock(TextLine("reading", tuple(vals), ts))
        if len(vals) != self.n_channels:
            return self._reject("width", vals)
        return self._check(TextLine("reading", tuple(vals), ts))

    def _check(self, line: TextLine) -> list[TextLine]:
        v = np.asarray(line.values, np.float64)
        if not np.all(np.isfinite(v)):
            return self._reject("non-finite", line.values)
        if np.any(np.abs(v) > self.max_abs):
            return self._reject("out-of-range", line.values)
        self.stats.lines += 1
        return [line]

    def _lock(self, line: TextLine) -> list[TextLine]:
        cand, self._candidate = self._candidate, line
        if cand is None:
            return []
        if len(cand.values) != len(line.values):
            return self._reject("unparsed")  # the earlier one was a lone number (a boot count, a log), not a reading
        self.n_channels, self._candidate = len(line.values), None
        return self._check(cand) + self._check(line)

    def _on_header(self, names: tuple[str, ...]) -> list[TextLine]:
        if names[0].lower() in TIME_COLUMNS:
            if self.n_channels is None and self.header is None:
                self.timestamp_column = True
            names = names[1:]
        if self.n_channels is None:
            self.n_channels, self._candidate = len(names), None
        self.header = names
        return [TextLine("header", names=names)]


def _split(raw: bytes) -> list[str] | None:
    """The fields of a line (bytes that are not ASCII become U+FFFD: the line is damaged), None if blank."""
    line = raw.decode("ascii", errors="replace").strip()
    if not line:
        return None
    return line.split("\t" if "\t" in line else ",")


def parse_reading(raw: bytes) -> list[float] | None:
    """One text line -> finite floats, or None when it is not a reading."""
    fields = _split(raw)
    if fields is None:
        return None
    try:
        vals = [float(v) for v in fields]
    except ValueError:
        return None
    return vals if all(np.isfinite(vals)) else None


def format_reading(values: Sequence[float], sep: str = ",") -> bytes:
    return (sep.join(f"{v:.5g}" if isinstance(v, float) else str(v) for v in values) + "\r\n").encode()


def detect_mode(sample: bytes) -> str | None:
    """``'binary'`` if ``sample`` holds a valid frame, ``'text'`` if it holds two readings, else None."""
    dec = FrameDecoder()
    if dec.feed(sample):
        return "binary"
    lines = LineDecoder()
    if len(lines.feed(sample)) >= 2:
        return "text"
    return None
