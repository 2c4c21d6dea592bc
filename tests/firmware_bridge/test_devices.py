"""``edgessl devices``: lists candidate ports under every name they have, and probes each one quickly without
hanging on a silent port, disturbing a port someone else reads, or leaving a board streaming."""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest
import serial

from edgessl.firmware_bridge import devices as D
from edgessl.firmware_bridge.simulator import SimulatedImu, load_source

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pty semantics")


def _run(*argv: str) -> str:
    p = argparse.ArgumentParser()
    D.register(p.add_subparsers())
    args = p.parse_args(["devices", *argv])
    out = io.StringIO()
    assert D.devices(args, out) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def source():
    return load_source("synthetic", None)


def test_binary_device_answers_identify_and_is_left_stopped(source, tmp_path):
    with SimulatedImu(*source, link=str(tmp_path / "imu")) as sim:
        sim.streaming = True  # a board someone left started
        pr = D.probe(sim.path, timeout=3.0)
        assert pr.answer == "binary" and pr.was_streaming
        assert pr.info["channels"] == ["acc_x", "acc_y", "acc_z"] and pr.info["rate_hz"] == 100.0
        assert pr.info["device_id"] == "0x5151a7ed" and pr.info["firmware"] == "1.0.0"
        deadline = time.monotonic() + 2
        while sim.streaming and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not sim.streaming  # STOP was sent
        assert pr.seconds < 3.0  # it answered: no waiting for the timeout


def test_text_device_is_recognised_by_its_lines_and_rate(source, tmp_path):
    with SimulatedImu(*source, mode="csv", link=str(tmp_path / "imu")) as sim:
        pr = D.probe(sim.path, timeout=1.5)
    assert pr.answer == "text" and pr.info["values_per_line"] == 3
    assert pr.info["rate_hz"] is not None and 60 < pr.info["rate_hz"] < 150  # 100 Hz, measured over ~0.6 s
    # its lines carry no header (as the Edge Impulse forwarder's): what to do is said where the port is found
    assert pr.info["header"] is None and "(no header line: name them, e.g. --channels acc_x,acc_y,acc_z)" in pr.detail


def test_a_text_device_in_mg_is_said_with_the_flags_that_convert_it(source, tmp_path):
    """A walkthrough's board printed mg (and °/s) without a header; `devices` found it and said nothing of its
    units (`monitor` warned only once its values were named). The probe now says what they look like."""
    with SimulatedImu(*source, mode="csv", link=str(tmp_path / "imu"), text_scale=[1000.0] * 3) as sim:
        pr = D.probe(sim.path, timeout=1.5)
    assert pr.answer == "text" and "they look like mg" in pr.detail, pr.detail
    assert "--units acc=mg --channels acc_x,acc_y,acc_z" in pr.detail
    with SimulatedImu(*source, mode="csv", link=str(tmp_path / "imu2")) as sim:  # in g: nothing to say
        assert "look like" not in D.probe(sim.path, timeout=1.5).detail


def test_a_silent_port_and_a_missing_one_do_not_hang(tmp_path):
    master, slave = os.openpty()  # nobody answers on the other side
    try:
        t0 = time.monotonic()
        results = D.probe_all([os.ttyname(slave), str(tmp_path / "gone")], timeout=0.8)
        took = time.monotonic() - t0
    finally:
        os.close(master)
        os.close(slave)
    assert [r.answer for r in results] == ["no answer", "missing"]
    assert took < 0.8 + 3.0  # not hung (a loaded machine may take a while to open and close)


def test_a_port_another_process_reads_is_busy_and_left_alone(source, tmp_path):
    with SimulatedImu(*source, link=str(tmp_path / "imu")) as sim:
        reader = subprocess.Popen([sys.executable, "-c", "import os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | "
                                   "os.O_NOCTTY); print('open', flush=True); time.sleep(30)", sim.path],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
            sim.streaming = True
            pr = D.probe(sim.path)
            assert pr.answer == "busy" and f"pid {reader.pid}" in pr.detail
            assert sim.streaming  # not sent STOP: its reader keeps its stream
        finally:
            reader.kill()
            reader.wait(5)
        assert D.probe(sim.path).answer == "binary"  # the simulator's own hold on its pty is no reader


def test_listing_shows_symlinks_both_ways_and_finds_running_simulators(source, tmp_path):
    link = tmp_path / "my-imu"
    auto = os.path.join(tempfile.gettempdir(), f"edgessl-imu-{os.getpid()}")  # what `edgessl simulate` makes
    if os.path.lexists(auto):
        pytest.skip(f"{auto} exists")
    with SimulatedImu(*source, link=str(link)) as a, SimulatedImu(*source, mode="csv", link=auto) as b:
        text = _run(str(link), "--timeout", "3")  # a loaded CI machine can take over 1 s to answer
        rows = {r["resolved"]: r for r in json.loads(_run(str(link), "--no-probe", "--json"))}
        assert a.slave_path and b.slave_path
        assert f"{link} -> {a.slave_path}  [argument]" in text
        assert f"{auto} -> {b.slave_path}  [simulator]" in text
        lines = text.splitlines()
        assert lines[lines.index(f"{link} -> {a.slave_path}  [argument]") + 1].startswith("    binary: binary protocol")
        assert lines[lines.index(f"{auto} -> {b.slave_path}  [simulator]") + 1].startswith("    text: text lines")
        assert rows[a.slave_path]["device"] == str(link) and "probe" not in rows[a.slave_path]
        # the same device given again under its other name is one row with both names
        again = json.loads(_run(str(link), a.slave_path, "--no-probe", "--json"))
        mine = [r for r in again if r["resolved"] == a.slave_path]
        assert len(mine) == 1 and mine[0]["links"] == [a.slave_path]


def test_nothing_found_says_how_to_find_and_allow_the_board(monkeypatch):
    monkeypatch.setattr(D, "list_devices", lambda: [])
    monkeypatch.setattr(D, "_simulator_links", lambda: [])
    monkeypatch.setattr(D.glob, "glob", lambda pattern: [])
    text = _run()
    assert text.startswith("no serial ports found")
    assert "dialout" in text and "docs/deploy.md" in text and "edgessl simulate" in text
    assert json.loads(_run("--json")) == []


@pytest.mark.parametrize(("exc", "answer"), [
    (serial.SerialException(errno.EACCES, "could not open port /dev/ttyACM0: [Errno 13] Permission denied"),
     "permission denied"),
    (serial.SerialException("Could not exclusively lock port /dev/ttyACM0: [Errno 11]"), "busy"),
    (serial.SerialException(errno.ENOENT, "could not open port x: [Errno 2] No such file or directory"), "missing"),
    (serial.SerialException(errno.EIO, "could not open port x: [Errno 5] Input/output error"), "error"),
])  # fmt: skip
def test_open_failures_are_named(exc, answer):
    assert D._open_failure(exc).answer == answer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="running simulators are found through /proc")
def test_a_simulator_on_a_link_of_its_own_is_found(tmp_path):
    """`edgessl simulate --link PATH` (the README's way) was missing from `edgessl devices` (walkthrough):
    only the default names in the temp folder were looked at."""
    link = tmp_path / "board"
    sim = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", "--link", str(link)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = {r["device"]: r for r in D.candidates()}
        assert str(link) in rows and rows[str(link)]["source"] == "simulator", rows
    finally:
        sim.terminate()
        sim.wait(10)
    assert str(link) not in {r["device"] for r in D.candidates()}  # gone with its simulator
