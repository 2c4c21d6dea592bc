"""Transport and handler against the simulated device on a pseudo-terminal, with faults."""

import sys
import time

import numpy as np
import pytest
import serial

from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.simulator import Faults, SimulatedImu
from edgessl.firmware_bridge.transport import Gap, ImuStream, SampleBlock, SerialTransport, channels_flag_problem

RATE = 100.0


def _signal(n=3000):
    t = np.arange(n) / RATE
    return np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t), 1 + 0.1 * np.sin(t)]).astype(np.float32)


def _collect(stream, seconds):
    blocks, gaps = [], []
    for ev in stream.blocks(duration=seconds):
        (blocks if isinstance(ev, SampleBlock) else gaps).append(ev)
    return blocks, gaps


def _check_intact(blocks, sig, scale):
    """Every received sample equals the source sample its device timestamp names (to one count)."""
    vals = np.concatenate([b.values for b in blocks])
    idx = np.round(np.concatenate([b.t_device for b in blocks]) * RATE).astype(int) % sig.shape[1]
    np.testing.assert_allclose(vals, sig[:, idx].T, atol=1.0 / scale + 1e-6)
    return idx


def test_loop_url_moves_bytes():
    with SerialTransport("loop://") as t:
        f = P.encode_frame(P.make_command(P.MsgType.CMD_START, 1))
        t.write(f)
        got = b""
        while len(got) < len(f):
            kind, data, _ = t.queue.get(timeout=2)
            assert kind == "data"
            got += data
        assert got == f


def test_binary_stream_from_simulator(tmp_path):
    sig = _signal()
    with SimulatedImu(sig, RATE, ["acc_x", "acc_y", "acc_z"], speed=2.0, link=str(tmp_path / "imu")) as sim:
        with ImuStream(sim.path) as s:
            assert s.mode == "binary" and s.channel_names == ["acc_x", "acc_y", "acc_z"] and s.sample_rate == RATE
            blocks, gaps = _collect(s, 1.0)
    assert gaps == [] and sum(len(b.values) for b in blocks) >= 100
    idx = _check_intact(blocks, sig, sim.scale)
    assert np.all(np.diff(idx) == 1)


def test_a_gyroscope_announced_in_deg_s_is_delivered_in_rad_s(tmp_path):
    """The protocol lets a board announce deg/s (most MPU-6050 firmware's unit); models and recordings take rad/s
    (`run` refused such a board: "channel gyro_x is in deg/s but the model expects rad/s")."""
    sig = np.concatenate([_signal(), 5.0 * _signal()[:2]])  # the gyroscope within the simulated ±8 range
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y"]
    with SimulatedImu(sig, RATE, names, ["g"] * 3 + ["deg/s"] * 2, speed=2.0, link=str(tmp_path / "imu")) as sim:
        with ImuStream(sim.path) as s:
            blocks, gaps = _collect(s, 1.0)
            assert s.info is not None and s.info.unit_names[3:] == ["deg/s", "deg/s"]
            assert s.unit_names == ["g", "g", "g", "rad/s", "rad/s"]
    expect = sig.copy()
    expect[3:] *= np.pi / 180.0
    _check_intact(blocks, expect, sim.scale)
    assert gaps == [] and np.abs(np.concatenate([b.values for b in blocks])[:, 3:]).max() < 5.0 * np.pi / 180 + 1e-3


def test_csv_mode_with_banner_and_estimated_rate(tmp_path):
    sig = _signal()
    with SimulatedImu(sig, RATE, ["ax", "ay", "az"], mode="csv", faults=Faults(banner="IMU booting"),
                      link=str(tmp_path / "imu")) as sim:  # fmt: skip
        with ImuStream(sim.path, mode="auto") as s:
            blocks, _ = _collect(s, 2.5)
            assert s.mode == "text"
            assert s.sample_rate == pytest.approx(RATE, rel=0.1)
    vals = np.concatenate([b.values for b in blocks])
    assert vals.shape[1] == 3 and len(vals) > 150
    # text values are the source rounded to 5 significant digits; find the run in the source
    start = int(np.argmin(np.abs(sig[0] - vals[0, 0]) + np.abs(sig[1] - vals[0, 1])))
    np.testing.assert_allclose(vals[:50], sig[:, start : start + 50].T, atol=1e-4)


def test_faulty_link_never_crashes_and_reports_gaps(tmp_path):
    sig = _signal()
    faults = Faults(drop=0.002, corrupt=0.002, garbage=0.05, banner="boot")
    with SimulatedImu(sig, RATE, ["x", "y", "z"], faults=faults, speed=4.0, link=str(tmp_path / "imu"), seed=3) as sim:
        with ImuStream(sim.path) as s:
            blocks, gaps = _collect(s, 2.0)
            stats = s.frames.stats
    assert stats.crc_errors + stats.malformed > 0  # faults happened
    assert gaps and all(g.missing > 0 and g.reason in ("sequence", "timestamp") for g in gaps)
    _check_intact(blocks, sig, sim.scale)  # no corrupted sample got through


def test_unplug_replug_resumes_within_2s_with_gap_length(tmp_path):
    sig = _signal()
    faults = Faults(unplug_every=1.0, unplug_for=0.6)
    with SimulatedImu(sig, RATE, ["x", "y", "z"], faults=faults, link=str(tmp_path / "imu")) as sim:
        with ImuStream(sim.path, reconnect_timeout=5) as s:
            events = []
            t_end = time.monotonic() + 3.2
            while time.monotonic() < t_end:
                events += [(time.monotonic(), e) for e in s.read(0.05)]
    gaps = [(t, e) for t, e in events if isinstance(e, Gap)]
    assert gaps, "the outage must be reported"
    t_gap, gap = gaps[0]
    assert gap.reason == "disconnect"
    assert gap.missing == pytest.approx(0.6 * RATE, abs=12)  # the samples lost while unplugged
    before = [e for t, e in events if isinstance(e, SampleBlock) and t < t_gap]
    after = [e for t, e in events if isinstance(e, SampleBlock) and t >= t_gap]
    assert before and after
    last_before = max(t for t, e in events if isinstance(e, SampleBlock) and t < t_gap)
    first_after = min(t for t, e in events if isinstance(e, SampleBlock) and t >= t_gap)
    assert first_after - last_before < 0.6 + 2.0  # resumed within 2 s of the device coming back
    _check_intact(before + after, sig, sim.scale)
    assert sim.unplugs >= 1


def test_device_lost_after_timeout(tmp_path):
    sim = SimulatedImu(_signal(), RATE, ["x", "y", "z"], link=str(tmp_path / "imu"))
    sim.start()
    s = ImuStream(sim.path, reconnect_timeout=0.5).open()
    sim.stop()  # unplugged for good
    with pytest.raises(P.DeviceLost, match="did not come back"):
        for _ in s.blocks(duration=5):
            pass
    s.close()


def test_open_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(P.DeviceLost, match="cannot open"):
        ImuStream(str(tmp_path / "nothing-here")).open()


def test_binary_device_that_never_answers(tmp_path):
    with pytest.raises(P.ProtocolError, match="no acknowledgement of CMD_IDENTIFY"):
        ImuStream("loop://", mode="binary", handshake_timeout=0.3).open()


@pytest.mark.skipif(sys.platform != "linux", reason="pty semantics")
def test_devices_command_runs(capsys):
    from edgessl.cli import main

    assert main(["devices", "--json", "--no-probe"]) == 0  # probing would disturb simulators of other tests
    assert capsys.readouterr().out.strip().startswith("[")


def test_fault_spec_parsing():
    f = Faults.parse("drop=0.001,corrupt=0.01,garbage=0.1,banner,drift=200,rate=98,unplug=10:1.5")
    assert (f.drop, f.corrupt, f.garbage, f.drift_ppm, f.actual_rate_hz, f.unplug_every, f.unplug_for) == (
        0.001, 0.01, 0.1, 200, 98, 10, 1.5)  # fmt: skip
    assert f.banner
    with pytest.raises(ValueError, match="unknown fault 'meteor'"):
        Faults.parse("meteor=1")
    assert serial.__version__


def test_every_gap_reason_has_words_for_a_summary_line():
    from edgessl.console import GAP_WORDS, gaps_text
    from edgessl.firmware_bridge.transport import GAP_REASONS

    assert set(GAP_WORDS) == set(GAP_REASONS)
    assert gaps_text({"sequence": 2, "disconnect": 1}) == "3 (frames lost 2, unplugged 1)" and gaps_text({}) == "0"


def test_refused_frames_are_counted_once_in_a_summary_line():
    from edgessl.edge_runtime.cli import refused_frames_text

    assert refused_frames_text({"rejected_frames": {"crc": 12}}) == "; frames refused 12 (crc 12): their samples are counted above"
    assert refused_frames_text({"rejected_frames": {}}) == "" and refused_frames_text({}) == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the simulator through /proc")
def test_a_text_simulator_played_faster_is_no_wrong_rate(tmp_path):
    """`edgessl simulate --mode csv --rate 62.5 --speed 4` sends 250 lines a second of a 62.5 Hz board: the host
    knows the simulator and its speed, so --rate 62.5 is not called wrong and, without --rate, 62.5 is measured
    (walkthrough: every record and run warned, and a recording without --rate stored 250 Hz)."""
    import subprocess

    from edgessl.firmware_bridge.ports import simulator_speed

    link = tmp_path / "imu"
    sim = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", "--mode", "csv", "--rate", "62.5", "--speed", "4",
                            "--seconds", "30", "--link", str(link)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        sim.stdout.readline()  # the path: the link exists
        assert simulator_speed(str(link)) == 4.0 and simulator_speed(str(tmp_path / "other")) is None
        from edgessl.firmware_bridge.devices import probe

        seen = probe(str(link), timeout=3.0)  # `devices` gives the board's rate, not its lines' (walkthrough: 396 Hz)
        assert seen.answer == "text" and "(lines arrive 4x faster: the simulator's --speed)" in seen.detail, seen
        assert 50 <= seen.info["rate_hz"] <= 75, seen
        for rate in (62.5, None):
            with ImuStream(str(link), rate_hz=rate, channels=["acc_x", "acc_y", "acc_z"]) as s:
                assert s.mode == "text" and s.playback_speed == 4.0
                t_end = time.monotonic() + 7
                while time.monotonic() < t_end:
                    s.read(0.1)
                assert s.arrival_rate() == pytest.approx(250, rel=0.1)
                assert s.rate_problem() is None and s.sample_rate == pytest.approx(62.5, rel=0.05)
                assert s.simulator is not None and "simulate" in s.simulator
        # a labelled capture from it would keep random movements under the labels (walkthrough: an enrollment
        # from it made `run --state` wrong on 16 of 30): refused, naming the simulator that can be cued
        r = subprocess.run([sys.executable, "-m", "edgessl", "record", "--port", str(link), "--label", "up", "--count", "1",
                            "--out", str(tmp_path / "rec"), "--channels", "acc_x,acc_y,acc_z", "--wait", "0"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 2 and "cannot be cued" in r.stderr and "--perform cue" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not list((tmp_path / "rec").glob("*.csv"))
    finally:
        sim.terminate()
        sim.wait(10)


def test_a_text_device_given_a_wrong_rate_is_named_pauses_and_backlog_are_no_rate():
    """Text lines carry no time: the given --rate spaces them, so a wrong one stretches every movement.
    The rate they arrive at is read over 5 s of arrivals without a pause of a second or more."""
    s = ImuStream("loop://", mode="text", rate_hz=100.0)
    assert s.arrival_rate() is None and s.rate_problem() is None
    # a backlog of 500 readings in the first block, then 20 blocks of 10 per 0.05 s: 200 per second
    s._text_times = [(0.0, 500)] + [(0.05 * i, 500 + 10 * i) for i in range(1, 121)]
    assert s.arrival_rate() == pytest.approx(200.0)
    problem = s.rate_problem()
    assert problem is not None and "--rate says 100 Hz" in problem and "give --rate 200" in problem
    assert "2x too long" in problem and "(`edgessl simulate --speed 2` sends 2x its rate: there --rate 100 is right)" in problem
    s.rate_hz = 180.0  # within 20 %: jitter, a crystal's error
    assert s.rate_problem() is None
    s.rate_hz = 100.0
    # an unplug of 3 s: only the arrivals since are read, and 1 s of them is too little to tell
    s._text_times += [(9.0 + 0.05 * i, 1700 + 10 * i) for i in range(20)]
    assert s.arrival_rate() is None and s.rate_problem() is None
    s.rate_hz = None  # no rate given: it is measured, so nothing can be wrong with it
    s._text_times += [(10.0 + 0.05 * i, 1900 + 10 * i) for i in range(120)]
    assert s.arrival_rate() == pytest.approx(200.0) and s.rate_problem() is None


def test_a_wrong_rate_is_named_when_a_board_sends_its_lines_in_many_small_reads():
    """A USB-CDC board at 208 Hz read 2 lines at a time (about 100 reads a second): the arrivals kept span
    enough time to check the given rate (a walkthrough's --rate 100 went unnoticed when 500 reads were kept:
    2.4 s of them, never the 5 s the check needs)."""
    s = ImuStream("loop://", mode="text", rate_hz=100.0)
    s.lines.decode(b"0.0,0.0,1.0\n")  # the width, as the handshake reads it
    line = b"0.01,-0.02,0.98\n"
    for i in range(1040):  # 10 s: 2080 readings
        s._on_lines(s.lines.decode(line * 2), 1000.0 + i / 104.0)
    assert s.arrival_rate() == pytest.approx(208.0, rel=0.01)
    problem = s.rate_problem()
    assert problem is not None and "--rate says 100 Hz" in problem and "give --rate 208" in problem
    assert len(s._text_times) < 600  # by time, not by read: one arrival per 20 ms at most


@pytest.mark.parametrize("header, channels, names, units", [
    (b"acc_x,acc_y,acc_z\n", None, ["acc_x", "acc_y", "acc_z"], ["g"] * 3),  # a header names them: units as the loaders
    (b"", None, ["ch0", "ch1", "ch2"], ["unknown"] * 3),
    (b"", ["acc_x", "acc_y", "acc_z"], ["acc_x", "acc_y", "acc_z"], ["g"] * 3),  # --channels
    (b"ax,ay,gyro_z\n", ["acc_x", "acc_y", "acc_z"], ["acc_x", "acc_y", "acc_z"], ["g"] * 3),  # --channels wins
])
def test_a_text_boards_channels_and_units_come_from_its_header_or_channels(header, channels, names, units):
    s = ImuStream("loop://", mode="text", rate_hz=RATE, channels=channels)
    s.lines.decode(header + b"0.01,-0.98,0.12\n0.02,-0.97,0.11\n")
    assert s.channel_names == names and s.unit_names == units



def test_channels_for_a_board_that_names_its_own_is_said_to_be_unused(tmp_path):
    with SimulatedImu(_signal(), RATE, ["acc_x", "acc_y", "acc_z"], link=str(tmp_path / "imu")) as sim:
        with ImuStream(sim.path, channels=["x", "y", "z"]) as s:
            assert s.channel_names == ["acc_x", "acc_y", "acc_z"]  # the board's DEVICE_INFO
            problem = channels_flag_problem(s, "/dev/imu")
        with ImuStream(sim.path) as s:
            assert channels_flag_problem(s, "/dev/imu") is None
        with ImuStream(sim.path, rate_hz=RATE) as s:  # the rate it announces: nothing to say
            assert channels_flag_problem(s, "/dev/imu") is None
        # all of them at once (walkthrough: --rate 62.5 to a 100 Hz binary board went unsaid, and --units was
        # hidden behind the --channels warning)
        with ImuStream(sim.path, channels=["x", "y", "z"], declared={"acc": "m/s2"}, rate_hz=62.5) as s:
            every = channels_flag_problem(s, "/dev/imu")
    assert problem is not None and "--channels is not used" in problem and "['acc_x', 'acc_y', 'acc_z']" in problem
    assert every is not None and "--channels is not used" in every and "--units is not used" in every
    assert f"--rate 62.5 is not used: the board on /dev/imu announces {RATE:g} Hz" in every


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lock is flock; the holder's name is read from /proc")
def test_a_port_another_reader_holds_is_refused_with_its_holder(tmp_path):
    """Two readers of one port would steal each other's bytes (enroll while the service runs): the second
    open is refused, naming who holds it; once the first closes, it opens."""
    import os

    with SimulatedImu(_signal(), RATE, ["acc_x", "acc_y", "acc_z"], speed=2.0, link=str(tmp_path / "imu")) as sim:
        first = SerialTransport(sim.path).open()
        try:
            with pytest.raises(P.DeviceLost, match=r"cannot open .*imu.*: in use by .*\(pid " + str(os.getpid()) + r"\)"):
                SerialTransport(sim.path, wait_for_port=0.0).open()
        finally:
            first.close()
        SerialTransport(sim.path, wait_for_port=0.0).open().close()


def test_a_service_waiting_for_a_held_port_logs_who_holds_it(monkeypatch):
    """`run --json` under systemd, while `enroll` holds the port: the events log and the journal say who
    keeps it waiting (it waits forever, so the open error that names the holder never comes)."""
    import warnings

    from edgessl.firmware_bridge import ports
    from edgessl.firmware_bridge.states import StateReporter

    monkeypatch.setattr(ports, "port_holders", lambda path: [(4242, "edgessl")])
    lines: list[dict] = []
    rep = StateReporter("/dev/imu", None, json_mode=True, emit=lines.append, note=print)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep.report("waiting")
    assert lines[0]["device"]["state"] == "waiting" and "edgessl (pid 4242)" in lines[0]["device"]["why"]
    assert len(caught) == 1 and "in use by edgessl (pid 4242)" in str(caught[0].message)


def test_a_service_waiting_for_a_port_that_is_not_there_says_so_in_its_journal(monkeypatch, tmp_path):
    """A walkthrough's service with a mistyped port waited forever, saying so only in its events file (stdout):
    the journal (stderr) says once that the port is not there and how to find the right name."""
    import warnings

    from edgessl.firmware_bridge import ports
    from edgessl.firmware_bridge.states import StateReporter

    monkeypatch.setattr(ports, "port_holders", lambda path: [])
    lines: list[dict] = []
    rep = StateReporter(str(tmp_path / "ttyACM7"), None, json_mode=True, emit=lines.append, note=print)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep.report("waiting")
        rep.report("streaming")
        rep.report("waiting")  # (once)
    assert [x["device"]["state"] for x in lines] == ["waiting", "streaming", "waiting"]
    assert len(caught) == 1 and "it is not there" in str(caught[0].message) and "edgessl devices" in str(caught[0].message)
    there = tmp_path / "ttyACM0"
    there.touch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        StateReporter(str(there), None, json_mode=True, emit=lines.append, note=print).report("waiting")
    assert not caught


def test_a_suggested_command_keeps_the_text_board_flags():
    """`enroll` ended with `(edgessl run ... --port P --state S)` without the --channels and --units it was given:
    copied, it exited 3 on the walkthrough's text board. Suggested commands carry the port flags given."""
    import shlex

    from edgessl.cli import build_parser
    from edgessl.firmware_bridge.flags import board_flags_text

    parser = build_parser()
    a = parser.parse_args(["enroll", "m.essl", "--port", "/dev/ttyACM0", "--state", "s.npz", "--calibrate"])
    assert board_flags_text(a) == ""
    a = parser.parse_args(["enroll", "m.essl", "--port", "/dev/ttyACM0", "--state", "s.npz", "--calibrate", "--mode",
                           "text", "--rate", "62.5", "--channels", "acc_x,acc_y,acc_z", "--units", "acc=m/s2"])  # fmt: skip
    flags = board_flags_text(a)
    assert flags == " --mode text --rate 62.5 --channels acc_x,acc_y,acc_z --units acc=m/s2"
    again = parser.parse_args(["run", "m.essl", "--port", "/dev/ttyACM0", *shlex.split(flags)])  # the same flags, parsed
    assert (again.mode, again.rate, again.channels, again.units) == (a.mode, a.rate, a.channels, a.units)
