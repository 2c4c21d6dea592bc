"""Fault injection against the real command line: ``edgessl run --json`` (a subprocess) against ``edgessl
simulate`` (a subprocess), an in-process SimulatedImu, or a scripted device on a pseudo-terminal. Writes
benchmarks/results/faults.json.

For each scenario: what is expected, what was observed (exit code, tracebacks in stderr, the --json events,
gaps, device states and the final ``{"stats": ..}`` line: samples delivered, dropped, rejected), the events
of this run against the clean run's over the same stream (matched by label and device time), and a verdict
with its criterion. Every run uses ``--adapt none`` except the state scenario, so that two runs over the same
stream differ only by the fault. Every wait has a deadline.

    python benchmarks/faults.py [--bundle model.essl] [--speed 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.firmware_bridge import protocol as P

RATE = 100.0  # the synthetic source's rate
MATCH_TOL_S = 0.5  # two events are the same gesture: same label, decision times this close (device time)
EDGE_S = 2.0  # events this close to the end of the shorter run are not compared (one run may stop mid-gesture)
RESULTS = Path(__file__).resolve().parent / "results" / "faults.json"


# ------------------------------------------------------------------------------------------------
# processes


class Proc:
    """A subprocess whose stdout lines (JSON when they parse) and stderr are read on threads."""

    def __init__(self, argv: list[str]):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.q: queue.Queue[tuple[float, Any] | None] = queue.Queue()
        self.lines: list[tuple[float, Any]] = []
        self.err: list[str] = []
        self.t0 = time.monotonic()
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._errs, daemon=True).start()

    def _out(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            if line.strip():
                try:
                    rec: Any = json.loads(line)
                except json.JSONDecodeError:
                    rec = line.rstrip("\n")
                self.q.put((time.monotonic(), rec))
        self.q.put(None)

    def _errs(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.err.append(line.rstrip("\n"))

    def until(self, pred: Callable[[Any], bool], timeout: float) -> tuple[float, Any] | None:
        """The first new line satisfying ``pred`` within ``timeout`` s, or None (the process ended or time ran out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if item is None:
                self.q.put(None)
                return None
            self.lines.append(item)
            if pred(item[1]):
                return item
        return None

    def finish(self, timeout: float) -> int:
        """Wait for the exit (killing it after ``timeout``) and collect every remaining line."""
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            code = self.p.wait(10)
        self.until(lambda r: False, 3)
        time.sleep(0.05)  # the stderr thread: the pipe is closed, this only lets it append its last line
        return code

    def records(self) -> list[Any]:
        return [r for _, r in self.lines]


def edgessl(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgessl", *args]


def wait_path(path: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.lexists(path):
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def simulate(link: str, speed: float, seconds: float, *extra: str) -> Iterator[Proc]:
    sim = Proc(edgessl("simulate", "--link", link, "--speed", str(speed), "--seconds", str(seconds), "--seed", "0",
                       *extra))  # fmt: skip
    try:
        if not wait_path(link):
            raise RuntimeError(f"edgessl simulate never created {link}: {sim.err}")
        yield sim
    finally:
        if sim.p.poll() is None:
            sim.p.send_signal(signal.SIGINT)
        sim.finish(10)


def run_cmd(bundle: str, link: str, seconds: float, *extra: str) -> list[str]:
    return edgessl("run", bundle, "--port", link, "--json", "--seconds", str(seconds), *extra)


# ------------------------------------------------------------------------------------------------
# scripted devices on a pseudo-terminal


class PtyDevice:
    """A pty whose slave a symlink names (like ``simulate --link``); a thread plays a script on the master."""

    def __init__(self, link: str):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.link = link
        os.symlink(os.ttyname(self.slave), link)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def send(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)

    def start(self, target: Callable[[], None]) -> None:
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(3)
        with contextlib.suppress(OSError):
            os.unlink(self.link)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def synthetic_signal() -> np.ndarray:
    from edgessl.firmware_bridge.simulator import load_source

    return load_source("synthetic", None, seed=0)[0]


BAD_LINES = [b"0.01,1e308,0.98\r\n", b"nan,0.0,1.0\r\n", b"0.01,inf,1.0\r\n", b"0.01,-2e6,0.0\r\n"]


def text_device_with_bad_values(link: str, speed: float, started: threading.Event, every: int = 150) -> tuple[PtyDevice, dict]:
    """Plays the synthetic signal as CSV lines (``ax,ay,az``); once ``started`` is set, one bad line of
    :data:`BAD_LINES` follows every ``every`` good ones. Returns the device and its live tally."""
    dev = PtyDevice(link)
    sig = synthetic_signal()
    tally: dict[str, Any] = {"good_lines": 0, "bad_lines": 0, "bad_by_kind": {}}
    kinds = ["out-of-range", "non-finite", "non-finite", "out-of-range"]

    def play() -> None:
        i, t0, since_bad = 0, time.monotonic(), 0
        while not dev.stop.is_set():
            due = int((time.monotonic() - t0) * RATE * speed)
            if i >= due:
                time.sleep(0.005)
                continue
            row = sig[:, i % sig.shape[1]]
            dev.send(P.format_reading([float(v) for v in row]))
            tally["good_lines"] += 1
            i += 1
            since_bad += 1
            if started.is_set() and since_bad >= every:
                k = tally["bad_lines"] % len(BAD_LINES)
                dev.send(BAD_LINES[k])
                tally["bad_lines"] += 1
                tally["bad_by_kind"][kinds[k]] = tally["bad_by_kind"].get(kinds[k], 0) + 1
                since_bad = 0

    dev.start(play)
    return dev, tally


def binary_device_wrong_width(link: str, width: int = 6) -> PtyDevice:
    """Announces 3 channels (acc, g) and, once started, streams SAMPLES frames of ``width``-value samples."""
    dev = PtyDevice(link)
    info = P.DeviceInfo(0x1234, (1, 0, 0), ("acc_x", "acc_y", "acc_z"), (P.Unit.G,) * 3, RATE, 8, (4096.0,) * 3)
    seq = [0]

    def frame(mtype: P.MsgType, count: int, payload: bytes, t_us: int) -> bytes:
        f = P.Frame(mtype, seq[0] & 0xFFFF, t_us, count, payload)
        seq[0] += 1
        return P.encode_frame(f)

    def serve() -> None:
        dec = P.FrameDecoder()
        streaming, k = False, 0
        while not dev.stop.is_set():
            if select.select([dev.master], [], [], 0.01)[0]:
                try:
                    data = os.read(dev.master, 4096)
                except OSError:
                    return
                for cmd in dec.feed(data):
                    out = b""
                    if cmd.type == P.MsgType.CMD_IDENTIFY:
                        out += frame(P.MsgType.DEVICE_INFO, 0, info.to_payload(), 0)
                    if cmd.type == P.MsgType.CMD_START:
                        streaming = True
                    if cmd.type == P.MsgType.CMD_STOP:
                        streaming = False
                    dev.send(out + frame(P.MsgType.ACK, 0, P.make_ack(0, 0, cmd, P.AckStatus.OK).payload, 0))
            if streaming:
                counts = np.full((10, width), 400, np.int16)
                dev.send(frame(P.MsgType.SAMPLES, 10, P.samples_payload(counts), int(k * 0.1 * 1e6)))
                k += 1
                time.sleep(0.02)

    dev.start(serve)
    return dev


# ------------------------------------------------------------------------------------------------
# observations and comparisons


def observe(proc: Proc, code: int) -> dict[str, Any]:
    recs = proc.records()
    events = [r for r in recs if isinstance(r, dict) and "label" in r]
    gaps = [r["gap"] for r in recs if isinstance(r, dict) and "gap" in r]
    states = [r["device"]["state"] for r in recs if isinstance(r, dict) and "device" in r]
    changes = [r["device_changed"] for r in recs if isinstance(r, dict) and "device_changed" in r]
    stats = next((r["stats"] for r in reversed(recs) if isinstance(r, dict) and "stats" in r), None)
    dev = (stats or {}).get("device", {})
    return {
        "exit_code": code,
        "tracebacks": sum("Traceback" in ln for ln in proc.err),
        "stderr": proc.err[-5:],
        "events": len(events),
        "gaps": gaps,
        "device_states": states,
        "device_changed": changes,
        "samples": {"delivered": dev.get("delivered_samples"), "dropped": dev.get("dropped_samples"),
                    "rejected": dev.get("rejected_samples"), "rejected_frames": dev.get("rejected_frames"),
                    "rejected_lines": dev.get("rejected_lines")},  # fmt: skip
        "stats": stats,
        "event_times": [[e["label"], e["t"], e["window_start"]] for e in events],
        "_events": events,
    }


def span_s(obs: dict[str, Any]) -> float:
    """Device seconds of stream this run covered: samples delivered, dropped and rejected."""
    s = obs["samples"]
    n = (s["delivered"] or 0) + (s["dropped"] or 0) + sum((s["rejected"] or {}).values())
    return n / RATE


def compare(clean: list[dict], other: list[dict], t_max: float, offset: float = 0.0,
            gaps: list[dict] | None = None, t_min: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Clean events against another run's, both in [t_min, t_max] of the clean run's device time; ``offset``
    is added to the other run's times first. A missed clean event whose window overlaps a reported gap (or
    rejected samples) is counted apart: its samples were lost, and the loss was reported."""
    c = [e for e in clean if t_min <= e["t"] <= t_max]
    o = [dict(e, t=e["t"] + offset, window_start=e["window_start"] + offset) for e in other]
    o = [e for e in o if t_min <= e["t"] <= t_max]
    used: set[int] = set()
    matched, missed = 0, []
    for e in c:
        best = min((j for j, f in enumerate(o) if j not in used and f["label"] == e["label"]
                    and abs(f["t"] - e["t"]) <= MATCH_TOL_S), key=lambda j: abs(o[j]["t"] - e["t"]), default=None)  # fmt: skip
        if best is None:
            missed.append(e)
        else:
            used.add(best)
            matched += 1
    holes = [(g["t_start"] + offset - 0.2, g["t_end"] + offset + 0.2) for g in gaps or []]
    excused = [e for e in missed if any(a <= e["t"] and e["window_start"] <= b for a, b in holes)]
    return {"window_s": [round(t_min, 2), round(t_max, 2)], "clean_events": len(c), "events": len(o),
            "matched": matched, "missed": len(missed), "missed_overlapping_a_reported_gap": len(excused),
            "missed_unexplained": [(e["label"], e["t"]) for e in missed if e not in excused],
            "extra": len(o) - matched}  # fmt: skip


def best_offset(clean: list[dict], other: list[dict], t_max: float) -> float:
    """The shift of ``other``'s times that matches most clean events (for streams joined mid-way)."""
    cands = {round(e["t"] - f["t"], 2) for e in clean for f in other if e["label"] == f["label"]}
    if not cands:
        return 0.0
    return max(sorted(cands), key=lambda d: compare(clean, other, t_max, d)["matched"])


def verdict(criterion: str, checks: dict[str, bool]) -> dict[str, Any]:
    return {"criterion": criterion, "checks": checks, "pass": all(checks.values())}


# ------------------------------------------------------------------------------------------------
# scenarios


class Bench:
    def __init__(self, bundle: str, speed: float, tmp: Path):
        self.bundle, self.speed, self.tmp = bundle, speed, tmp
        self.clean: dict[str, Any] | None = None
        self.n = 0

    def link(self) -> str:
        self.n += 1
        return str(self.tmp / f"imu{self.n}")

    def simulated_run(self, seconds: float, faults: str | None = None, sim_extra: tuple[str, ...] = (),
                      run_extra: tuple[str, ...] = ("--adapt", "none")) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
        link = self.link()
        extra = (*sim_extra, "--faults", faults) if faults else sim_extra
        with simulate(link, self.speed, seconds + 30, *extra):
            argv = run_cmd(self.bundle, link, seconds, *run_extra)
            proc = Proc(argv)
            code = proc.finish(seconds + 60)
        return observe(proc, code), argv

    def common(self, obs: dict[str, Any], code: int = 0) -> dict[str, bool]:
        return {f"exit code {code}": obs["exit_code"] == code, "no traceback": obs["tracebacks"] == 0}

    def vs_clean(self, obs: dict[str, Any], offset: float = 0.0, t_min: float = 0.0) -> dict[str, Any]:
        assert self.clean is not None
        t_max = min(span_s(self.clean), span_s(obs) + offset) - EDGE_S
        return compare(self.clean["_events"], obs["_events"], t_max, offset, obs["gaps"], t_min)

    # -- the scenarios ---------------------------------------------------------------------------
    def s_clean(self) -> dict[str, Any]:
        obs, argv = self.simulated_run(20)
        self.clean = obs
        checks = self.common(obs)
        checks["no gap, nothing dropped or rejected"] = (not obs["gaps"] and not obs["samples"]["dropped"]
                                                         and not any((obs["samples"]["rejected"] or {}).values()))  # fmt: skip
        checks["events detected"] = obs["events"] >= 5
        return {"command": argv, "expected": "exit 0, events, no gap, nothing dropped", "observed": obs,
                "verdict": verdict("exit 0, no traceback, >= 5 events, no gap, 0 dropped/rejected", checks)}

    def s_faulty_stream(self, faults: str, expected: str) -> dict[str, Any]:
        obs, argv = self.simulated_run(20, faults)
        cmp = self.vs_clean(obs)
        s = obs["samples"]
        lost = (s["dropped"] or 0) + sum((s["rejected"] or {}).values()) + sum((s["rejected_frames"] or {}).values())
        checks = self.common(obs)
        checks["every loss appears as a --json gap"] = lost == 0 or len(obs["gaps"]) > 0
        checks["every clean gesture found, except those overlapping a reported gap"] = not cmp["missed_unexplained"]
        return {"command": argv, "faults": faults, "expected": expected, "observed": obs, "vs_clean": cmp,
                "verdict": verdict("exit 0, no traceback; a gap line whenever samples/frames were lost; every "
                                   f"clean event matched (same label, |dt| <= {MATCH_TOL_S} s) unless its window "
                                   "overlaps a reported gap (counted)", checks)}  # fmt: skip

    def s_restart(self) -> dict[str, Any]:
        obs, argv = self.simulated_run(18, "restart=6")
        restarts = [g for g in obs["gaps"] if g["reason"] == "clock-restart"]
        checks = self.common(obs)
        checks["a clock-restart gap in --json"] = len(restarts) >= 1
        out: dict[str, Any] = {"command": argv, "faults": "restart=6 (host seconds)", "observed": obs,
                               "expected": "a clock-restart gap (timeline reset) per reset; the replayed stream gives "
                                           "the clean run's events again, at the same device times"}  # fmt: skip
        if restarts and self.clean is not None:
            clean = self.clean["_events"]
            before = [e for e in obs["_events"] if e["t"] <= restarts[0]["t_start"]]
            out["vs_clean_before"] = compare(clean, before, restarts[0]["t_start"] - EDGE_S)
            # after each reset the device plays its signal from 0 again: device time t is stream time t_end + t,
            # until the next reset (restart_every repeats)
            ends = [g["t_start"] for g in restarts[1:]] + [span_s(obs)]
            segs = []
            for g, end in zip(restarts, ends, strict=True):
                seg = [e for e in obs["_events"] if g["t_end"] <= e["window_start"] and e["t"] <= end]
                t_max = min(span_s(self.clean), end - g["t_end"]) - EDGE_S
                cmp = compare(clean, seg, t_max, -g["t_end"])
                first_clean = next((e for e in clean if e["t"] <= t_max), None)
                resume = round(seg[0]["t"] - g["t_end"] - first_clean["t"], 3) if seg and first_clean else None
                segs.append(dict(cmp, restart_at=g["t_start"], resume_s=resume))
            out["vs_clean_after_each_restart"] = segs
            checks["events resume within 2 s of the first valid window"] = all(
                sg["resume_s"] is not None and sg["resume_s"] <= 2.0 for sg in segs if sg["clean_events"])
            checks["no unexplained miss after a restart"] = all(not sg["missed_unexplained"] for sg in segs)
        out["verdict"] = verdict("exit 0, no traceback, a clock-restart gap; the first clean event is reported again "
                                 "within 2 s (device time) of where it lies after the reset; no unexplained miss "
                                 "afterwards", checks)  # fmt: skip
        return out

    def s_unplug(self) -> dict[str, Any]:
        """At speed 1: the runtime measures an outage with the host clock, which a faster simulator outruns."""
        faults = "unplug=12:30"
        speed, self.speed = self.speed, 1.0
        try:
            obs, argv = self.simulated_run(12 + 30 + 11, faults)
        finally:
            self.speed = speed
        long_gaps = [g for g in obs["gaps"] if g["missing"] >= 0.9 * 30 * RATE]
        states = obs["device_states"]
        checks = self.common(obs)
        checks["the 30 s gap in --json"] = len(long_gaps) == 1
        checks["states reconnecting then streaming"] = "reconnecting" in states and \
            "streaming" in states[states.index("reconnecting"):]  # fmt: skip
        out: dict[str, Any] = {"command": argv, "faults": f"{faults} (host seconds, simulator at speed 1)",
                               "observed": obs, "expected": "keeps waiting; one gap of ~30 s in --json; events resume "
                               "after the replug like the clean run's at the same device time"}  # fmt: skip
        if long_gaps and self.clean is not None:
            g = long_gaps[0]
            clean = self.clean["_events"]
            before = [e for e in obs["_events"] if e["t"] <= g["t_start"]]
            after = [e for e in obs["_events"] if e["window_start"] >= g["t_end"]]
            out["vs_clean_before"] = compare(clean, before, g["t_start"] - EDGE_S)
            # without a timeline reset, stream time after the outage is device time: the clean run's times
            t_max = min(span_s(self.clean), span_s(obs)) - EDGE_S
            cmp = compare(clean, after, t_max, 0.0, obs["gaps"], t_min=g["t_end"])
            out["vs_clean_after"] = cmp
            clean_after = [e for e in clean if e["window_start"] >= g["t_end"]]
            if after and clean_after:
                out["resume_s"] = round(after[0]["t"] - clean_after[0]["t"], 3)
            checks["events resume within 2 s of the first clean gesture after the replug"] = \
                "resume_s" in out and out["resume_s"] <= 2.0  # fmt: skip
            checks["no unexplained miss after the replug"] = not cmp["missed_unexplained"]
        out["verdict"] = verdict("exit 0, no traceback, one gap >= 27 s of samples, reconnecting -> streaming; the "
                                 "first event after the replug within 2 s of the clean run's; no unexplained miss",
                                 checks)  # fmt: skip
        return out

    def s_text_mode(self) -> dict[str, Any]:
        obs, argv = self.simulated_run(20, None, ("--mode", "csv"),
                                       ("--adapt", "none", "--mode", "text", "--rate", str(RATE)))  # fmt: skip
        out: dict[str, Any] = {"command": argv, "observed": obs,
                               "expected": "text mode reads the CSV simulator (channels by position), events like the "
                                           "clean run's; the stream is joined mid-way, so times are aligned by the "
                                           "best offset"}  # fmt: skip
        checks = self.common(obs)
        checks["events detected"] = obs["events"] >= 5
        if self.clean is not None and obs["_events"]:
            t_max = span_s(self.clean) - EDGE_S
            off = best_offset(self.clean["_events"], obs["_events"], t_max)
            cmp = compare(self.clean["_events"], obs["_events"], t_max, off, obs["gaps"],
                          t_min=max(0.0, min(e["t"] for e in obs["_events"]) + off - 1.0))  # fmt: skip
            out["vs_clean"] = dict(cmp, offset_s=off)
            checks[">= 80 % of the clean events in the overlap matched"] = cmp["matched"] >= 0.8 * max(1, cmp["clean_events"])
        out["verdict"] = verdict("exit 0, no traceback, >= 5 events, >= 80 % of the overlapping clean events matched "
                                 "after the best time offset (text lines carry no device time)", checks)  # fmt: skip
        return out

    def s_bad_values(self) -> dict[str, Any]:
        link = self.link()
        started = threading.Event()
        dev, tally = text_device_with_bad_values(link, self.speed, started)
        argv = run_cmd(self.bundle, link, 16, "--adapt", "none", "--mode", "text", "--rate", str(RATE))
        try:
            proc = Proc(argv)
            if proc.until(lambda r: isinstance(r, dict) and r.get("device", {}).get("state") == "streaming", 30):
                started.set()
                proc.until(lambda r: False, 9)  # inject for 9 s, then stop while the run still reads
                started.clear()
            code = proc.finish(60)
        finally:
            dev.close()
        obs = observe(proc, code)
        rej = obs["samples"]["rejected"] or {}
        bad_in_stream = tally["bad_lines"]
        checks = self.common(obs)
        checks["every bad line counted (rejected == sent after the stream started)"] = sum(rejected_values(rej)) == bad_in_stream
        checks["a --json gap for every rejection"] = sum(g["missing"] for g in obs["gaps"] if g["reason"] == "rejected") \
            == bad_in_stream  # fmt: skip
        checks["events detected"] = obs["events"] >= 3
        return {"command": argv, "device": "scripted pty, CSV lines of the synthetic signal; one of "
                f"{[b.decode().strip() for b in BAD_LINES]} after every 150 good lines for 9 s once the run streams",
                "expected": "bad lines rejected and counted by kind, each a gap; never passed to the model; exit 0",
                "sent": tally, "observed": obs,
                "verdict": verdict("exit 0, no traceback, rejected count == bad lines sent, their gaps in --json, "
                                   ">= 3 events", checks)}  # fmt: skip

    def s_wrong_width(self) -> dict[str, Any]:
        link = self.link()
        dev = binary_device_wrong_width(link)
        argv = run_cmd(self.bundle, link, 20, "--adapt", "none")
        try:
            proc = Proc(argv)
            code = proc.finish(60)
        finally:
            dev.close()
        obs = observe(proc, code)
        msg = " ".join(obs["stderr"])
        checks = self.common(obs, 5)
        checks["one stderr line naming the widths"] = len(obs["stderr"]) == 1 and "3 channels" in msg and "6-value" in msg
        checks["no event from the bad frames"] = obs["events"] == 0
        return {"command": argv, "device": "scripted pty: DEVICE_INFO of 3 channels, SAMPLES frames of 6 values",
                "expected": "a device error (exit 5) in one line saying it announces 3 channels and sends 6-value "
                            "samples, after counting the bad frames; no traceback, no events",
                "observed": obs, "verdict": verdict("exit 5, no traceback, one stderr line naming both widths, "
                                                    "0 events", checks)}  # fmt: skip

    def s_identity_change(self, follow: bool) -> dict[str, Any]:
        from edgessl.firmware_bridge.simulator import SimulatedImu, load_source

        link = self.link()
        src = load_source("synthetic", None, seed=0)
        a = SimulatedImu(*src, speed=self.speed, link=link, device_id=1)
        a.start()
        argv = run_cmd(self.bundle, link, 25, "--adapt", "none", *(("--follow-device",) if follow else ()))
        b = None
        try:
            proc = Proc(argv)
            got = proc.until(lambda r: isinstance(r, dict) and "label" in r, 20)
            a.stop()
            b = SimulatedImu(*src, speed=self.speed, link=link, device_id=2)
            b.start()
            if follow:
                proc.until(lambda r: isinstance(r, dict) and "device_changed" in r, 20)
                proc.until(lambda r: isinstance(r, dict) and "label" in r, 20)
                proc.p.send_signal(signal.SIGTERM)
            code = proc.finish(40)
        finally:
            a.stop()
            if b is not None:
                b.stop()
        obs = observe(proc, code)
        checks = self.common(obs, 0 if follow else 5)
        checks["events from the first device"] = got is not None
        if follow:
            ch = obs["device_changed"]
            checks["a device_changed line, action followed"] = len(ch) == 1 and ch[0]["action"] == "followed"
            t_change = next((t for t, r in proc.lines if isinstance(r, dict) and "device_changed" in r), None)
            checks["events after the switch"] = t_change is not None and any(
                t > t_change and isinstance(r, dict) and "label" in r for t, r in proc.lines)
            expected = "--follow-device: a device_changed line (followed), events from the new device, exit 0 on SIGTERM"
        else:
            msg = " ".join(obs["stderr"])
            checks["one stderr line: changed, --follow-device"] = len(obs["stderr"]) == 1 and "changed" in msg and \
                "--follow-device" in msg  # fmt: skip
            expected = "refused: a device error (exit 5) in one line naming both devices and --follow-device"
        return {"command": argv, "device": "SimulatedImu device_id=1 on the link, stopped after the first event; "
                "then device_id=2 on the same link", "expected": expected, "observed": obs,
                "verdict": verdict(expected, checks)}  # fmt: skip

    def s_port_later(self) -> dict[str, Any]:
        link = self.link()
        argv = run_cmd(self.bundle, link, 25, "--adapt", "none")
        proc = Proc(argv)
        waiting = proc.until(lambda r: isinstance(r, dict) and r.get("device", {}).get("state") == "waiting", 30)
        with simulate(link, self.speed, 40):
            streaming = proc.until(lambda r: isinstance(r, dict) and r.get("device", {}).get("state") == "streaming", 20)
            code = proc.finish(60)
        obs = observe(proc, code)
        checks = self.common(obs)
        checks["waiting then streaming in --json"] = waiting is not None and streaming is not None
        checks["events detected"] = obs["events"] >= 3
        out: dict[str, Any] = {"command": argv, "expected": "waits with a {'device': {'state': 'waiting'}} line, then streams once "
               "the simulator starts; exit 0", "observed": obs}  # fmt: skip
        if self.clean is not None:
            out["vs_clean"] = self.vs_clean(obs)  # a binary device starts its clock at START: same device times
            checks["every clean gesture found"] = not out["vs_clean"]["missed_unexplained"]
        out["verdict"] = verdict("exit 0, no traceback, waiting -> streaming, >= 3 events, every clean event matched "
                                 "over the covered stream", checks)  # fmt: skip
        return out

    def s_sigterm_state(self) -> dict[str, Any]:
        link = self.link()
        state = self.tmp / "adapt_state"  # no suffix: saved and restored exactly as given
        with simulate(link, self.speed, 60):
            argv = run_cmd(self.bundle, link, 40, "--adapt-state", str(state))
            proc = Proc(argv)
            first = proc.until(lambda r: isinstance(r, dict) and "label" in r, 30)
            proc.until(lambda r: False, 2)  # a few more windows adapted
            proc.p.send_signal(signal.SIGTERM)
            code = proc.finish(30)
            obs = observe(proc, code)
            valid, keys = False, []
            with contextlib.suppress(Exception):
                with np.load(state) as z:
                    keys = sorted(z.files)
                    valid = "format" in z.files and "method" in z.files
            argv2 = run_cmd(self.bundle, link, 6, "--adapt-state", str(state))
            proc2 = Proc(argv2)
            code2 = proc2.finish(60)
            obs2 = observe(proc2, code2)
        temps = [p.name for p in self.tmp.iterdir() if p.name.startswith(".") or ".tmp" in p.name or ".bad-" in p.name]
        checks = self.common(obs)
        checks["events before SIGTERM"] = first is not None
        checks["stopped_by SIGTERM"] = (obs["stats"] or {}).get("stopped_by") == "SIGTERM"
        checks["a valid state file at the exact path"] = valid
        checks["no temporary or set-aside file"] = not temps
        checks["the next start restores it"] = obs2["exit_code"] == 0 and \
            (obs2["stats"] or {}).get("adapt_state", {}).get("restored") is True and obs2["tracebacks"] == 0  # fmt: skip
        return {"command": argv, "restart_command": argv2, "expected": "SIGTERM: exit 0, stats.stopped_by SIGTERM, the "
                "state saved atomically at the exact path; the next start restores it (stats.adapt_state.restored)",
                "observed": obs, "state_file_arrays": keys, "observed_restart": obs2,
                "verdict": verdict("exit 0 on SIGTERM with stopped_by SIGTERM, a loadable state file at the path given, "
                                   "no temporary file, and restored: true on the next start", checks)}  # fmt: skip


def rejected_values(rej: dict[str, int]) -> list[int]:
    return [v for k, v in rej.items() if k in ("out-of-range", "non-finite")]


# ------------------------------------------------------------------------------------------------


def make_bundle(out_dir: Path, epochs: int) -> tuple[str, dict[str, Any]]:
    """Fine-tune on the synthetic gestures and export with the default ExportConfig (gate min_agreement 0.99)."""
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, finetune

    cfg = FinetuneConfig(data=DataConfig(spec="synthetic:reps=6,length=128"),
                         fit=FitConfig(epochs=epochs, batch_size=64, warmup_epochs=1, drop_last=False))  # fmt: skip
    finetune(cfg, out_dir / "model", progress=False, plots=False)
    bundle = out_dir / "model.essl"
    manifest = export_bundle(out_dir / "model", bundle, ExportConfig(), progress=False)
    v = manifest.get("verification", {})
    return str(bundle), {"trained": f"FinetuneConfig on synthetic:reps=6,length=128, {epochs} epochs",
                         "export": "ExportConfig() defaults (min_agreement 0.99, not lowered)",
                         "top1_agreement": v.get("top1_agreement"), "accuracy_int8": v.get("accuracy_int8")}  # fmt: skip


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a results file is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def strip(obj: Any) -> Any:
    """Drop the private full event lists (``_events``) before writing."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="an existing bundle (default: train one on synthetic data)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--speed", type=float, default=4.0, help="simulator playback speed")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--only", default=None, help="comma-separated scenario names (clean always runs)")
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgessl-faults-") as tmp_s:
        tmp = Path(tmp_s)
        if args.bundle:
            bundle, bundle_info = args.bundle, {"given": args.bundle}
        else:
            bundle, bundle_info = make_bundle(tmp, args.epochs)
        print(f"bundle ready after {time.monotonic() - t0:.0f} s", flush=True)
        b = Bench(bundle, args.speed, tmp)
        scenarios: dict[str, Callable[[], dict[str, Any]]] = {
            "clean": b.s_clean,
            "readme_faults": lambda: b.s_faulty_stream("drop=0.001,corrupt=0.001,garbage=0.01",
                                                       "the README's fault example: damaged frames dropped and "
                                                       "reported as gaps, every other gesture still found"),
            "banner_garbage": lambda: b.s_faulty_stream("banner,garbage=0.05", "a boot banner and bursts of "
                                                        "garbage before 5 % of frames: skipped, counted"),
            "clock_restart": b.s_restart,
            "unplug_30s": b.s_unplug,
            "text_mode": b.s_text_mode,
            "non_finite_values": b.s_bad_values,
            "wrong_sample_width": b.s_wrong_width,
            "identity_change_refused": lambda: b.s_identity_change(False),
            "identity_change_followed": lambda: b.s_identity_change(True),
            "port_not_there_yet": b.s_port_later,
            "sigterm_state_restore": b.s_sigterm_state,
        }  # fmt: skip
        only = set(args.only.split(",")) | {"clean"} if args.only else set(scenarios)
        results: dict[str, Any] = {}
        for name, fn in scenarios.items():
            if name not in only:
                continue
            t = time.monotonic()
            try:
                results[name] = fn()
            except Exception as e:  # noqa: BLE001 - a harness failure is a result too, recorded as a fail
                results[name] = {"harness_error": f"{type(e).__name__}: {e}", "verdict": {"pass": False}}
            results[name]["wall_s"] = round(time.monotonic() - t, 1)
            print(f"{name:28s} {'PASS' if results[name]['verdict']['pass'] else 'FAIL'}  ({results[name]['wall_s']} s)",
                  flush=True)  # fmt: skip
    out = {
        "description": __doc__.split("\n\n")[0],
        "bundle": bundle_info,
        "speed": args.speed,
        "match_tolerance_s": MATCH_TOL_S,
        "adapt": "none in every scenario but sigterm_state_restore (default method)",
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "summary": {k: v["verdict"]["pass"] for k, v in results.items()},
        "all_pass": all(v["verdict"]["pass"] for v in results.values()),
        "wall_s": round(time.monotonic() - t0, 1),
        "scenarios": strip(results),
    }
    write_json(Path(args.out), out)
    print(f"wrote {args.out}: {sum(out['summary'].values())}/{len(out['summary'])} pass in {out['wall_s']} s")
    return 0 if out["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
