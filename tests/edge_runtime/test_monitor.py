"""``edgessl monitor`` against a simulated IMU on a pty, in-process and sped up: what a person at the terminal
sees (sparklines, rate, counters; a model's probabilities and events), what a script reads (--json), and a
clean Ctrl-C."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
import time

import pytest

from edgessl.edge_runtime import monitor as M
from edgessl.firmware_bridge.simulator import SimulatedImu, load_source

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pty semantics")


class _Terminal(io.StringIO):
    """What a UTF-8 terminal looks like to the monitor."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    M.register(p.add_subparsers())
    return p.parse_args(["monitor", *argv])


@pytest.fixture
def sim(tmp_path):
    with SimulatedImu(*load_source("synthetic", None), speed=4.0, link=str(tmp_path / "imu")) as s:
        yield s


def test_terminal_shows_sparklines_values_rate_and_counters_in_place(sim):
    out = _Terminal()
    t0 = time.monotonic()
    assert M.monitor(_args("--port", sim.path, "--seconds", "1.5"), out=out) == 0
    assert time.monotonic() - t0 < 5
    text = out.getvalue()
    assert "\x1b[4F\x1b[J" in text  # redrawn in place: 3 channels + the status line
    blocks = text.split("\x1b[4F\x1b[J")
    assert len(blocks) >= 4  # a few times a second
    last = blocks[-2].splitlines()  # the final block, before the last redraw cleared for the stop line
    for name, line in zip(("acc_x", "acc_y", "acc_z"), last[:3], strict=True):
        assert line.split()[0] == name and any(ch in line for ch in "▁▂▃▄▅▆▇█")
    rate = float(last[3].split()[1])
    assert 200 < rate < 600  # 100 Hz played 4x faster
    assert "dropped 0  rejected 0  gaps 0  reconnects 0" in last[3]
    assert text.rstrip().splitlines()[-1].startswith("# stopped (seconds):")


def test_plain_output_prints_periodic_blocks_without_escapes(sim):
    out = io.StringIO()  # a pipe: no tty, no UTF-8 promise
    assert M.monitor(_args("--port", sim.path, "--seconds", "2.3"), out=out) == 0
    text = out.getvalue()
    assert "\x1b[" not in text
    assert text.count("\n-- ") >= 2  # one block a second
    rows = [ln for ln in text.splitlines() if ln.strip().startswith("acc_z")]
    assert rows and all(ch in " .:-=+*#" for ch in rows[-1].split()[2])  # ASCII sparkline
    assert "Hz (device 100)" in text


def test_json_lines_summarise_the_samples_of_each_update(sim):
    out = io.StringIO()
    assert M.monitor(_args("--port", sim.path, "--seconds", "2.5", "--json"), out=out) == 0
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0] == {"device": {"state": "streaming", "port": sim.path}} and set(lines[-1]) == {"stats"}
    samples = [x["samples"] for x in lines if "samples" in x]
    assert len(samples) >= 2
    s = samples[-1]
    assert s["channels"] == ["acc_x", "acc_y", "acc_z"] and s["n"] > 100 and len(s["latest"]) == 3
    assert all(lo <= m <= hi for lo, m, hi in zip(s["min"], s["mean"], s["max"], strict=True))
    assert s["rate_hz"] > 200 and (s["dropped"], s["rejected"], s["gaps"], s["reconnects"]) == (0, 0, 0, 0)
    assert sum(x["n"] for x in samples) <= lines[-1]["stats"]["device"]["delivered_samples"]


def test_unnamed_values_are_said_to_need_names_before_their_units_are_checked(tmp_path):
    """A headerless text board sends values without names (ch0, ch1, ch2), so nothing can check their units: a
    walkthrough's board in m/s² showed +10.3 and no hint. One line says to name them."""
    sig, rate, _, _ = load_source("synthetic", None)
    with SimulatedImu(sig * 9.81, rate, ["acc_x", "acc_y", "acc_z"], mode="csv", link=str(tmp_path / "imu")) as s:
        out = io.StringIO()
        assert M.monitor(_args("--port", s.path, "--seconds", "1.5", "--rate", str(rate)), out=out) == 0
    said = [ln for ln in out.getvalue().splitlines() if "have no names" in ln]
    assert len(said) == 1 and "--channels acc_x,acc_y,acc_z" in said[0] and "units are not checked" in said[0], said


def test_with_a_model_it_shows_probabilities_and_events_as_run_decides(small_bundle, sim):
    from edgessl.edge_runtime.runtime import GestureRuntime

    labels = GestureRuntime(small_bundle).labels
    out = io.StringIO()
    assert M.monitor(_args("--port", sim.path, "--model", str(small_bundle), "--seconds", "4", "--json"), out=out) == 0
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    preds = [x["prediction"] for x in lines if "prediction" in x]
    assert preds and list(preds[-1]["probs"]) == labels
    assert abs(sum(preds[-1]["probs"].values()) - 1) < 1e-3
    events = [x for x in lines if "label" in x]
    assert events and lines[-1]["stats"]["events"] == len(events)
    assert all(e["label"] in labels for e in events)

    term = _Terminal()
    assert M.monitor(_args("--port", sim.path, "--model", str(small_bundle), "--seconds", "2"), out=term) == 0
    text = term.getvalue()
    assert "model: latest" in text and f"{labels[0]} [" in text  # a bar per class


def test_ctrl_c_stops_cleanly_like_run(sim):
    out = io.StringIO()
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        rc = M.monitor(_args("--port", sim.path, "--seconds", "20"), out=out)
    finally:
        timer.cancel()
    assert rc == 0 and time.monotonic() - t0 < 5
    assert "# stopped (SIGINT):" in out.getvalue()


def test_a_missing_port_fails_with_wait_0_pointing_at_edgessl_devices(tmp_path):
    from edgessl.errors import DeviceError

    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"nothing-here.*edgessl devices"):
        M.monitor(_args("--port", str(tmp_path / "nothing-here"), "--wait", "0"), out=io.StringIO())
    assert time.monotonic() - t0 < 3
