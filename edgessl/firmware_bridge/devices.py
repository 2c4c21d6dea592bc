"""``edgessl devices``: every candidate port, and what each answers to IDENTIFY.

Candidates are the ports pyserial lists, the ``/dev/serial/by-id`` symlinks (shown with their target), the
links a running ``edgessl simulate`` keeps in the temp folder, and any path given (a pty, a symlink). Each is
probed with a short conversation (:func:`probe`): listen a moment (a text-mode board streams CSV lines from
power-up), else send IDENTIFY (binary protocol, docs/protocol.md) until DEVICE_INFO comes or the timeout
passes, then STOP, so no board is left streaming. A port another process has open is not probed (IDENTIFY
and STOP would disturb that reader): it is reported busy, with the process.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import glob
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any, TextIO

import numpy as np
import serial

from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.flags import channels_example
from edgessl.firmware_bridge.ports import argv_flag, port_holders, simulate_processes, simulator_speed
from edgessl.firmware_bridge.transport import list_devices
from edgessl.units import g_channels, unit_from_channel, unit_problem_text, with_units_flag

__all__ = ["ANSWERS", "Probe", "candidates", "port_holders", "probe", "probe_all", "register"]

ANSWERS = ("binary", "text", "no answer", "busy", "permission denied", "missing", "error")
LISTEN_S = 0.25  # how long to listen before speaking: a text-mode board is never sent binary bytes
RESEND_S = 0.4  # IDENTIFY again after this long (a board that was still booting missed the first)
TEXT_RATE_S = 0.6  # how long to count a text board's lines for its rate
SIMULATOR_LINKS = "edgessl-imu-*"  # `edgessl simulate`'s default link names in the temp folder
HINT = ("A USB board appears as /dev/ttyACM* or /dev/ttyUSB* when plugged in (`dmesg | tail` names it); "
        "to open it without root, join the dialout group (sudo usermod -aG dialout $USER, then log in again) or "
        "install the udev rule in docs/deploy.md, which also gives it a stable name. A simulator's path is what "
        "`edgessl simulate` prints: pass it as an argument.")  # fmt: skip


@dataclasses.dataclass
class Probe:
    """What a port answered.

    Attributes:
        answer: one of :data:`ANSWERS`.
        detail: one line for a person.
        info: binary: the DEVICE_INFO fields; text: ``values_per_line``, ``header``, ``rate_hz`` (estimated).
        was_streaming: samples were arriving before IDENTIFY (a board left started; it was sent STOP).
        seconds: how long the probe took.
    """

    answer: str
    detail: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    was_streaming: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's, but running
    return True


def _simulator_links() -> list[str]:
    """Links running simulators keep: the default names in the temp folder, and (Linux) the ``--link`` paths
    of running ``edgessl simulate`` processes. One left by a killed simulator is skipped (its pty number may
    have been reused by another program since)."""
    links = sorted(glob.glob(os.path.join(tempfile.gettempdir(), SIMULATOR_LINKS)))
    found = [p for p in links if os.path.islink(p) and os.path.exists(p) and _alive(p.rsplit("-", 1)[1])]
    return found + [p for p in _linked_simulators() if p not in found]


def _linked_simulators() -> list[str]:
    """The ``--link`` paths of the running ``edgessl simulate`` processes that still point at a device."""
    out: list[str] = []
    for _, cwd, argv in simulate_processes():
        if link := argv_flag(argv, "--link"):
            path = os.path.normpath(os.path.join(cwd, link))
            if os.path.islink(path) and os.path.exists(path) and path not in out:
                out.append(path)
    return sorted(out)


def candidates(paths: list[str] | tuple[str, ...] = (), *, discover: bool = True) -> list[dict[str, Any]]:
    """Every candidate port, one dict each, the same device once however many names it has.

    Args:
        paths: ports given by the user (a pty, a symlink, a URL such as ``loop://``).
        discover: also list pyserial's ports, ``/dev/serial/by-id`` and running simulators' links.

    Returns:
        ``{"device", "resolved", "links", "source", "description", "vid", "pid", "serial_number",
        "manufacturer"}`` dicts; ``resolved`` is the real path (None for a URL or a missing path), ``links``
        the other names of it, ``source`` ``"system"``, ``"simulator"`` or ``"argument"``.
    """
    rows: list[dict[str, Any]] = []
    by_real: dict[str, dict[str, Any]] = {}

    def real(path: str) -> str | None:
        if "://" in path or not os.path.lexists(path):
            return None
        return os.path.realpath(path)

    def add(path: str, source: str, **usb: Any) -> None:
        r = real(path)
        row = by_real.get(r) if r is not None else next((x for x in rows if x["device"] == path), None)
        if row is not None:
            if path != row["device"] and path not in row["links"]:
                row["links"].append(path)
            return
        row = {"device": path, "resolved": r, "links": [], "source": source, "description": usb.get("description"),
               "vid": usb.get("vid"), "pid": usb.get("pid"), "serial_number": usb.get("serial_number"),
               "manufacturer": usb.get("manufacturer")}  # fmt: skip
        rows.append(row)
        if r is not None:
            by_real[r] = row

    if discover:
        for d in list_devices():
            add(d["device"], "system", **{k: v for k, v in d.items() if k != "device"})
        for link in sorted(glob.glob("/dev/serial/by-id/*")):
            add(link, "system")
        for link in _simulator_links():
            add(link, "simulator", description="edgessl simulate")
    for path in paths:
        add(path, "argument")
    return rows


def _open_failure(e: Exception) -> Probe:
    no = getattr(e, "errno", None)
    text = " ".join(str(e).split())
    if no == errno.EACCES or "Permission denied" in text:
        return Probe("permission denied", "this user may not open it (the dialout group or a udev rule allows it)")
    if no == errno.EBUSY or "exclusively lock" in text or "Device or resource busy" in text:
        return Probe("busy", "another program has it open exclusively")
    if no == errno.ENOENT or "No such file" in text:
        return Probe("missing", "no such port")
    return Probe("error", f"cannot open it: {text}")


def _info_json(info: P.DeviceInfo) -> dict[str, Any]:
    return {"device_id": f"0x{info.device_id:08x}", "firmware": ".".join(map(str, info.firmware)),
            "channels": list(info.channels), "units": info.unit_names, "rate_hz": float(info.rate_hz),
            "range": info.range}  # fmt: skip


def _converse(ser: serial.SerialBase, timeout: float) -> Probe:
    """Listen, then IDENTIFY (again every :data:`RESEND_S`), until an answer or ``timeout``; STOP a binary one."""
    frames, lines = P.FrameDecoder(), P.LineDecoder()
    t0 = time.monotonic()
    deadline = t0 + timeout
    info: P.DeviceInfo | None = None
    status: P.AckStatus | None = None
    binary = was_streaming = False
    readings, width, header = 0, 0, None
    values: list[tuple[float, ...]] = []  # the first readings: what their units look like
    # text rate: readings that arrived after the first chunk (what was buffered before the port opened is no rate)
    first_chunk: float | None = None
    last_chunk = 0.0
    counted_from = 0
    sent_at: float | None = None
    seq = 0

    def identify(now: float) -> None:
        nonlocal seq, sent_at
        ser.write(P.encode_frame(P.make_command(P.MsgType.CMD_IDENTIFY, seq)))
        ser.flush()
        seq, sent_at = seq + 1, now

    while time.monotonic() < deadline:
        data = ser.read(4096)
        now = time.monotonic()
        for f in frames.feed(data) if data else []:
            binary = True
            if f.type == P.MsgType.SAMPLES and sent_at is None:
                was_streaming = True
            elif f.type == P.MsgType.DEVICE_INFO:
                try:
                    info = P.DeviceInfo.from_payload(f.payload)
                except P.ProtocolError:
                    pass  # a garbled one: IDENTIFY is sent again
            elif f.type == P.MsgType.ACK:
                try:
                    a_type, _, st = P.parse_ack(f)
                except (P.ProtocolError, ValueError):
                    continue
                if a_type == P.MsgType.CMD_IDENTIFY:
                    status = st
        if data and not binary:
            for ln in lines.decode(data):
                if ln.kind == "header":
                    header = list(ln.names)
                elif ln.kind == "reading":
                    readings += 1
                    width = len(ln.values)
                    last_chunk = now
                    if len(values) < 200:
                        values.append(ln.values)
            if readings and first_chunk is None and now - t0 > 0.05:
                first_chunk, counted_from = now, readings
        if info is not None or (status is not None and status != P.AckStatus.OK):
            break
        if not binary and readings >= 2 and now - (first_chunk or t0) >= TEXT_RATE_S:
            break
        if binary and sent_at is None:
            identify(now)  # it streams frames already: ask at once
        elif not binary and readings < 2 and now - t0 >= LISTEN_S and (sent_at is None or now - sent_at >= RESEND_S):
            identify(now)
    if binary:
        # whatever it was doing before, a probed board is left quiet (as after power-up)
        ser.write(P.encode_frame(P.make_command(P.MsgType.CMD_STOP, seq)))
        ser.flush()
        time.sleep(0.05)  # let the STOP leave before the port closes (some USB bridges drop unsent bytes)
        if info is not None:
            i = _info_json(info)
            detail = (f"binary protocol, device {i['device_id']}, firmware {i['firmware']}, {len(i['channels'])} "
                      f"channels {i['channels']} in {i['units']} at {i['rate_hz']:g} Hz, range ±{i['range']} g")  # fmt: skip
            if was_streaming:
                detail += "; it was streaming, sent STOP"
            return Probe("binary", detail, i, was_streaming)
        why = f"IDENTIFY answered {status.name}" if status is not None else "no DEVICE_INFO"
        return Probe("binary", f"binary frames, but {why} within {timeout:g} s; sent STOP", {}, was_streaming)
    if readings >= 2:
        span = last_chunk - first_chunk if first_chunk is not None else 0.0
        rate = (readings - counted_from) / span if span >= 0.2 else None
        # no header line seen (a sketch that prints one at power-up only, or none): the values need names
        example = channels_example(width)
        names = f" {header}" if header else f" (no header line: name them, e.g. --channels {example})"
        about = f" at about {rate:.0f} Hz" if rate else ""
        port = getattr(ser, "port", None)  # the path it was opened with
        speed = simulator_speed(port) if rate and isinstance(port, str) else None
        if rate and speed and speed != 1.0:  # `edgessl simulate --speed k` sends its lines k times faster
            rate /= speed
            about = f" at about {rate:.0f} Hz (lines arrive {speed:g}x faster: the simulator's --speed)"
        units = _text_units_hint(values, width, header, example)
        return Probe("text", f"text lines (CSV), {width} values per line{names}{about}{units}",
                     {"values_per_line": width, "header": header, "rate_hz": rate})  # fmt: skip
    return Probe("no answer", f"nothing understood within {timeout:g} s")


def _text_units_hint(values: list[tuple[float, ...]], width: int, header: list[str] | None, example: str) -> str:
    """``"; …"``: what a text board's accelerometer values look like when not g (mg, m/s², raw counts), with the
    flags that convert them; the accelerometer is the header's ``acc`` channels, else the first three values
    (a walkthrough's board printed mg and °/s, which `devices` did not say; `monitor` does once they are named)."""
    rows = np.array([v for v in values if len(v) == width], np.float64)
    idx = g_channels([unit_from_channel(n) for n in header]) if header else [0, 1, 2]
    if len(rows) < 10 or len(idx) != 3 or max(idx) >= width:
        return ""
    problem = unit_problem_text([header[i] if header else f"value {i + 1}" for i in idx], rows[:, idx])
    return f"; {with_units_flag(problem, None if header else example)}" if problem else ""


def probe(path: str, timeout: float = 1.0) -> Probe:
    """Ask the device at ``path`` who it is (see the module's docstring); never longer than about ``timeout``."""
    t0 = time.monotonic()
    holders = port_holders(path)
    if holders:
        who = ", ".join(f"{name} (pid {pid})" for pid, name in holders)
        return Probe("busy", f"open in {who}; not probed", seconds=round(time.monotonic() - t0, 3))
    try:
        ser = serial.serial_for_url(path, baudrate=115200, timeout=0.05, write_timeout=0.5, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as e:
        result = _open_failure(e)
    else:
        try:
            result = _converse(ser, timeout)
        except (serial.SerialException, OSError) as e:
            result = Probe("error", f"the port failed while probing: {' '.join(str(e).split())}")
        finally:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def probe_all(paths: list[str], timeout: float = 1.0) -> list[Probe]:
    """:func:`probe` each path, in parallel; a probe stuck in the system (an ``open`` that blocks) is given up
    ``timeout`` + 1.5 s after the start and reported as no answer."""
    results: list[Probe | None] = [None] * len(paths)

    def one(i: int, path: str) -> None:
        try:
            results[i] = probe(path, timeout)
        except Exception as e:  # noqa: BLE001 - one odd port must not hide the others' answers
            results[i] = Probe("error", " ".join(f"{type(e).__name__}: {e}".split()))

    threads = [threading.Thread(target=one, args=(i, p), daemon=True, name=f"probe {p}") for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout + 1.5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [r if r is not None else Probe("no answer", f"still opening after {timeout + 1.5:g} s; given up", seconds=timeout + 1.5)
            for r in results]  # fmt: skip


def _names(row: dict[str, Any]) -> str:
    names = row["device"]
    if row["resolved"] and row["resolved"] != row["device"]:
        names += f" -> {row['resolved']}"
    for link in row["links"]:
        names += f"  (also {link})"
    return names


def devices(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``devices`` command."""
    out = out or sys.stdout  # resolved per call: a default bound at import misses a redirected stdout
    rows = candidates(args.paths)
    probes = probe_all([r["device"] for r in rows], args.timeout) if args.probe and rows else []
    for row, pr in zip(rows, probes, strict=False):
        row["probe"] = pr.to_json()
    if args.json:
        print(json.dumps(rows), file=out, flush=True)
        return 0
    if not rows:
        print(f"no serial ports found. {HINT}", file=out, flush=True)
        return 0
    for row in rows:
        ids = f"{row['vid']:04x}:{row['pid']:04x}" if row["vid"] is not None else "-"
        usb = f"  {ids}  {row['serial_number'] or '-'}  {row['description']}" if row["source"] == "system" else ""
        src = f"  [{row['source']}]" if row["source"] != "system" else ""
        print(f"{_names(row)}{usb}{src}", file=out)
        if "probe" in row:
            pr = row["probe"]
            print(f"    {pr['answer']}: {pr['detail']}" if pr["detail"] else f"    {pr['answer']}", file=out)
    answers = [row["probe"]["answer"] for row in rows if "probe" in row]
    if answers and not any(a in ("binary", "text") for a in answers):
        print(f"# no port answered as an IMU. {HINT}", file=out)
    out.flush()
    return 0


def _timeout(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v <= 60:
        raise argparse.ArgumentTypeError(f"expected seconds in (0, 60]; got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list candidate serial ports and what each answers to IDENTIFY")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="more ports to look at: a pty or symlink (what `edgessl simulate` prints), a URL")
    p.add_argument("--json", action="store_true", help="one JSON list on stdout: each port, its names and its answer")
    p.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                   help="ask each port who it is (IDENTIFY, or listen for CSV lines), then STOP it (default: on)")
    p.add_argument("--timeout", type=_timeout, default=1.0,
                   help="seconds each probe waits for an answer, all probed at once (default 1; a board that "
                        "resets when the port opens, like an Arduino Uno, needs about 3)")  # fmt: skip
    p.set_defaults(func=devices)
