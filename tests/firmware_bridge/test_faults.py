"""Field faults at the bridge: a scripted fake device on a pseudo-terminal (and the simulator) sends what real
boards send on a bad day; the stream must count what it removes, never mix devices or timelines, and wait
when asked. Every wait is bounded by a deadline; nothing sleeps and then asserts."""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import tty

import numpy as np
import pytest

from edgessl.errors import ExitCode
from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.simulator import MOUNT_AXIS, Faults, SimulatedImu, load_source
from edgessl.firmware_bridge.transport import Gap, ImuStream, SampleBlock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminal semantics")

RATE = 100.0
N = 10  # samples per frame
CPU = 4096.0  # counts per g at ±8 g
INFO = P.DeviceInfo(0x1234, (1, 0, 0), ("acc_x", "acc_y", "acc_z"), (P.Unit.G,) * 3, RATE, 8, (CPU,) * 3)


class FakeDevice:
    """A scripted device on a pty: answers IDENTIFY (DEVICE_INFO + ACK), START and STOP like the reference
    firmware, and otherwise sends exactly the bytes a test gives it."""

    def __init__(self, info: P.DeviceInfo | None = INFO):
        self.info = info
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.commands: list[int] = []
        self.started = threading.Event()
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        dec = P.FrameDecoder()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for cmd in dec.feed(data):
                self.commands.append(cmd.type)
                out = b""
                if cmd.type == P.MsgType.CMD_IDENTIFY and self.info is not None:
                    out += self.frame(P.MsgType.DEVICE_INFO, 0, self.info.to_payload(), 0)
                if cmd.type == P.MsgType.CMD_START:
                    self.started.set()
                out += self.frame(P.MsgType.ACK, 0, P.make_ack(0, 0, cmd, P.AckStatus.OK).payload, 0)
                self.send(out)

    def frame(self, mtype: P.MsgType, count: int, payload: bytes, t_us: int, seq: int | None = None) -> bytes:
        with self._lock:
            if seq is not None:
                self._seq = seq
            f = P.Frame(mtype, self._seq & 0xFFFF, t_us, count, payload)
            self._seq += 1
        return P.encode_frame(f)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def samples(self, t_s: float, values: np.ndarray, seq: int | None = None) -> None:
        """One SAMPLES frame of ``values [n, C]`` in g, the first taken at device time ``t_s``."""
        counts = np.round(np.asarray(values) * CPU).astype(np.int16)
        self.send(self.frame(P.MsgType.SAMPLES, len(counts), P.samples_payload(counts), int(round(t_s * 1e6)), seq))

    def announce(self, info: P.DeviceInfo) -> None:
        self.send(self.frame(P.MsgType.DEVICE_INFO, 0, info.to_payload(), 0))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            os.close(fd)


@pytest.fixture
def device():
    dev = FakeDevice()
    yield dev
    dev.close()


@pytest.fixture
def text_device():
    dev = FakeDevice(info=None)
    yield dev
    dev.close()


def _stream(path: str, mode: str = "binary", device: FakeDevice | None = None, preamble: bytes = b"", **kw) -> ImuStream:
    """A stream to open; ``preamble`` is what ``device`` sends as soon as the port is open (opening a port
    flushes what arrived before, as on a real UART)."""
    kw.setdefault("stall_timeout", 60.0)  # the scripts pause between frames: not a stalled device

    def hook(state: str) -> None:
        if state == "streaming" and device is not None and preamble:
            device.send(preamble)

    return ImuStream(path, mode=mode, on_state=hook, **kw)


def read_until(stream: ImuStream, pred, timeout: float = 5.0) -> list[SampleBlock | Gap]:
    events: list[SampleBlock | Gap] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += stream.read(0.05)
        if pred(events):
            return events
    raise AssertionError(f"not reached within {timeout} s: {_summary(events)} {stream.counters()}")


def _summary(events) -> list:
    return [f"block[{len(e.values)}]" if isinstance(e, SampleBlock) else f"gap {e.reason} {e.missing}" for e in events]


def _n(events) -> int:
    return sum(len(e.values) for e in events if isinstance(e, SampleBlock))


def _gaps(events) -> list[Gap]:
    return [e for e in events if isinstance(e, Gap)]


def _times(events) -> np.ndarray:
    return np.concatenate([e.t_device for e in events if isinstance(e, SampleBlock)])


def _frame_values(k: int, width: int = 3) -> np.ndarray:
    """Distinct, in-range values for frame ``k``: sample i of it is 0.001 * (10 k + i) on every channel."""
    return np.repeat(((10 * k + np.arange(N)) * 0.001)[:, None], width, axis=1)


def _stream_frames(dev: FakeDevice, first: int, count: int, t0: float = 0.0) -> None:
    for k in range(first, first + count):
        dev.samples(t0 + (k - first) * N / RATE, _frame_values(k))


# ------------------------------------------------------------------------------------------------
# 1. simulate --link never removes or replaces what it did not create


@pytest.mark.parametrize("kind", ["file", "dir", "foreign-symlink", "dangling-symlink"])
def test_simulator_refuses_an_existing_link_path(tmp_path, kind):
    link = tmp_path / "imu"
    if kind == "file":
        link.write_text("precious")
    elif kind == "dir":
        link.mkdir()
    elif kind == "foreign-symlink":
        (tmp_path / "target").write_text("theirs")
        link.symlink_to(tmp_path / "target")
    else:
        link.symlink_to(tmp_path / "nowhere")
    before = os.readlink(link) if link.is_symlink() else None
    sim = SimulatedImu(np.zeros((3, 100), np.float32), RATE, ["x", "y", "z"], link=str(link))
    with pytest.raises(ValueError, match=f"{link} already exists") as e:
        sim.start()
    assert "\n" not in str(e.value)
    assert os.path.lexists(link)
    if kind == "file":
        assert link.read_text() == "precious"
    elif kind == "dir":
        assert link.is_dir()
    else:
        assert os.readlink(link) == before
    assert sim.master is None and sim.slave is None  # the pty it opened is closed again


def test_simulator_removes_only_its_own_link(tmp_path):
    link = tmp_path / "imu"
    sim = SimulatedImu(np.zeros((3, 100), np.float32), RATE, ["x", "y", "z"], link=str(link))
    sim.start()
    assert os.readlink(link) == sim.slave_path
    link.unlink()
    link.write_text("a user's file put there meanwhile")
    sim.stop()
    assert link.read_text() == "a user's file put there meanwhile"

    link.unlink()
    with SimulatedImu(np.zeros((3, 100), np.float32), RATE, ["x", "y", "z"], link=str(link)) as sim:
        assert link.is_symlink()
    assert not os.path.lexists(link)  # its own link, still pointing where it set it: removed


def test_simulator_replug_leaves_a_foreign_file_alone(tmp_path):
    link = tmp_path / "imu"
    faults = Faults(unplug_every=0.2, unplug_for=0.4)
    with SimulatedImu(np.zeros((3, 100), np.float32), RATE, ["x", "y", "z"], faults=faults, link=str(link)) as sim:
        deadline = time.monotonic() + 5
        while os.path.lexists(link):  # wait for the unplug
            assert time.monotonic() < deadline, "the simulator never unplugged"
            time.sleep(0.005)
        link.write_text("mine")
        while sim.link_refused == 0:
            assert time.monotonic() < deadline, "the simulator never replugged"
            time.sleep(0.005)
    assert link.read_text() == "mine"


def test_simulate_cli_refuses_an_existing_file(tmp_path, capsys):
    from edgessl.cli import main

    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    assert main(["simulate", "--link", str(f), "--seconds", "0.1"]) != 0
    assert f.read_text() == "keep me"
    err = capsys.readouterr().err
    assert str(f) in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# 2. malformed values never reach the consumer; each removal is counted and leaves a gap


def test_text_non_finite_and_out_of_range_values_are_rejected_and_counted(text_device):
    good = [f"0.{i:02d},0.02,0.98\r\n".encode() for i in range(40)]
    with _stream(text_device.path, "text", text_device, b"".join(good[:20]), rate_hz=RATE) as s:
        text_device.send(b"0.01,1e308,0.98\r\nnan,0,0\r\n0.01,inf,1\r\n0.01,-2e6,0\r\n" + b"".join(good[20:]))
        events = read_until(s, lambda ev: _n(ev) >= 40)
        assert s.rejected_samples == {"out-of-range": 2, "non-finite": 2}
        assert s.counters()["rejected_lines"] == {"out-of-range": 2, "non-finite": 2}
    vals = np.concatenate([e.values for e in events if isinstance(e, SampleBlock)])
    assert np.isfinite(vals).all() and np.abs(vals).max() <= 1.0
    (gap,) = _gaps(events)
    assert gap.reason == "rejected" and gap.missing == 4
    before = [e for e in events[: events.index(gap)] if isinstance(e, SampleBlock)]
    assert _n(before) == 20  # the gap sits exactly where the four lines were
    assert np.all(np.diff(_times(events)) > 0)


def test_text_lines_of_the_wrong_width_are_counted_not_silently_dropped(text_device):
    with _stream(text_device.path, "text", text_device, b"0.1,0.2,0.9\r\n" * 5, rate_hz=RATE) as s:
        text_device.send(b"0.1,0.2\r\n0.1,0.2,0.9,0.4\r\n0.1,0.\xff2,0.9\r\nIMU log: battery ok\r\n" + b"0.1,0.2,0.9\r\n" * 5)
        events = read_until(s, lambda ev: _n(ev) >= 10)
        assert s.rejected_samples == {"width": 2, "garbled": 1}
        assert s.lines.stats.rejected_lines == {"width": 2, "unparsed": 1, "garbled": 1}
    assert [g.missing for g in _gaps(events)] == [3]


def test_binary_values_beyond_the_announced_full_scale_are_rejected():
    info = P.DeviceInfo(7, (1, 0, 0), ("x", "y", "z"), (P.Unit.G,) * 3, RATE, 2, (CPU,) * 3)  # ±2 g, counts reach 8
    dev = FakeDevice(info)
    try:
        with _stream(dev.path) as s:
            vals = _frame_values(0)
            vals[4:6, 1] = 5.0  # 5 g from a ±2 g sensor
            dev.samples(0.0, vals)
            dev.samples(0.1, _frame_values(1))
            events = read_until(s, lambda ev: _n(ev) >= 18)
            assert s.rejected_samples == {"out-of-range": 2} and s.delivered_samples == 18
    finally:
        dev.close()
    assert [(g.reason, g.missing, g.t_start, g.t_end) for g in _gaps(events)] == [("rejected", 2, 0.04, 0.06)]
    assert np.abs(np.concatenate([e.values for e in events if isinstance(e, SampleBlock)])).max() <= 2.0


def test_binary_frames_wider_than_announced_are_counted_then_refused():
    dev = FakeDevice()  # announces 3 channels
    try:
        with _stream(dev.path, max_bad_frames=3) as s:
            for k in range(10):
                dev.samples(k * 0.1, _frame_values(k, width=6))
            with pytest.raises(P.ProtocolError, match=r"announces 3 channels .* sends 6-value samples"):
                read_until(s, lambda ev: False)
            assert s.delivered_samples == 0
            assert s.rejected_frames["width"] == 6 and s.rejected_samples["width"] == 60
            assert dev.commands.count(P.MsgType.CMD_IDENTIFY) == 2  # asked once more who it is before refusing
    finally:
        dev.close()


def test_binary_samples_before_device_info_are_counted(tmp_path):
    dev = FakeDevice()
    try:
        with _stream(dev.path) as s:
            s.info = None  # as if the device streamed before it was asked who it is
            dev.samples(0.0, _frame_values(0))
            read_until(s, lambda ev: s.rejected_frames["no-info"] == 1)
            assert s.rejected_samples == {"no-info": N}
    finally:
        dev.close()


# ------------------------------------------------------------------------------------------------
# 3. clock restarts and time jumps: a gap with its reason, a new timeline, times still increasing


def test_device_clock_restart_is_a_gap_and_a_new_timeline(device):
    with _stream(device.path) as s:
        _stream_frames(device, 0, 10)  # device time 0 .. 1 s
        before = read_until(s, lambda ev: _n(ev) >= 100)
        device.samples(0.0, _frame_values(10), seq=0)  # watchdog reset: clock and seq from 0
        _stream_frames(device, 11, 9, t0=0.1)
        after = read_until(s, lambda ev: _n(ev) >= 100)
        assert s.gap_counts == {"clock-restart": 1}
    (gap,) = _gaps(after)
    assert gap.reason == "clock-restart" and gap.timeline_reset
    assert after[0] is gap  # before any sample of the new timeline
    t = _times(before + after)
    assert np.all(np.diff(t) > 0), "stream times must never go back"
    assert gap.t_start == pytest.approx(1.0) and gap.t_end >= gap.t_start
    # the new timeline keeps its own spacing
    t_new = _times(after)
    np.testing.assert_allclose(np.diff(t_new), 1 / RATE, atol=1e-9)
    vals = np.concatenate([e.values[:, 0] for e in after if isinstance(e, SampleBlock)])
    np.testing.assert_allclose(vals, (100 + np.arange(100)) * 0.001, atol=1 / CPU)


def test_device_clock_jump_ahead_is_a_gap_not_a_thousand_seconds_of_loss(device):
    with _stream(device.path) as s:
        _stream_frames(device, 0, 5)
        read_until(s, lambda ev: _n(ev) >= 50)
        _stream_frames(device, 5, 5, t0=1000.0)
        after = read_until(s, lambda ev: _n(ev) >= 50)
    (gap,) = _gaps(after)
    assert gap.reason == "time-jump" and gap.timeline_reset
    assert gap.missing < 1000  # estimated from the host clock, not 100 000 samples
    t = _times(after)
    assert t[0] < 10 and np.all(np.diff(t) > 0)
    assert s.dropped_samples == gap.missing


def test_a_repeated_frame_is_counted_as_overlap_and_never_delivered_twice(device):
    with _stream(device.path) as s:
        _stream_frames(device, 0, 3)
        device.samples(0.25, _frame_values(3))  # half of it repeats device time already delivered
        events = read_until(s, lambda ev: _n(ev) >= 35)
        assert s.rejected_samples == {"overlap": 5}
    assert np.all(np.diff(_times(events)) > 0)


def test_simulator_watchdog_reset_recovers_by_itself(tmp_path):
    """A reset that keeps the link up: the device stops streaming; the stream notices the silence, asks it
    to identify and start again, and reports the clock restart."""
    sig = np.tile(np.linspace(-1, 1, 200, dtype=np.float32), (3, 10))
    faults = Faults(restart_every=0.8)
    with SimulatedImu(sig, RATE, ["x", "y", "z"], faults=faults, speed=1.0, link=str(tmp_path / "imu")) as sim:
        with ImuStream(sim.path, stall_timeout=0.5) as s:
            events = read_until(s, lambda ev: any(g.reason == "clock-restart" for g in _gaps(ev))
                                and _n(ev[ev.index(next(g for g in _gaps(ev) if g.reason == "clock-restart")):]) >= 20,
                                timeout=8)  # fmt: skip
            assert s.stalls >= 1 and sim.restarts >= 1
    assert np.all(np.diff(_times(events)) > 0)


def test_vibration_bursts_come_on_the_device_clock_and_nowhere_else():
    """``--faults vibration=EVERY:FOR:G``: white noise of G rms added to every channel for FOR s every EVERY s of
    device samples (a motor, a loose mount); the samples between bursts are the source's, untouched."""
    assert Faults.parse("vibration=2:0.5:0.2") == Faults(vibration_every=2.0, vibration_for=0.5, vibration_g=0.2)
    assert Faults.parse("vibration=8").vibration_for == 1.0 and Faults.parse("vibration=8").vibration_g == 0.3
    for bad in ("vibration=1:2", "vibration=2:0.5:0", "vibration=0:0"):
        with pytest.raises(ValueError, match="EVERY:FOR"):
            Faults.parse(bad)
    sig = np.zeros((3, 1000), np.float32)
    sim = SimulatedImu(sig, RATE, ["x", "y", "z"], faults=Faults.parse("vibration=2:0.5:0.2"), seed=1)
    x = np.concatenate([sim._pull(25) for _ in range(40)])  # 1000 samples: 10 s at 100 Hz
    burst = (np.arange(1000) % 200) < 50
    assert np.all(x[~burst] == 0) and 0.17 < x[burst].std() < 0.23


def test_a_remounted_board_turns_its_accelerometer_and_gyroscope_from_the_remount_on():
    """``--faults mount=DEG:AT``: from AT s of device time, the accelerometer and gyroscope triads are rotated by
    DEG degrees about one axis, the same in every session (a remount, to rehearse `run`'s adaptation); nothing before it,
    and no other channel, changes."""
    from edgessl.datasets.synthetic import rotation_matrix

    assert Faults.parse("mount=30:2") == Faults(mount_deg=30.0, mount_at=2.0) and Faults.parse("mount=45").mount_at == 0
    for bad in ("mount=0", "mount=200", "mount=30:-1"):
        with pytest.raises(ValueError, match="DEG"):
            Faults.parse(bad)
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(7, 800)).astype(np.float32)  # acc, gyro and a channel of another unit
    names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "temp"]
    units = ["g"] * 3 + ["rad/s"] * 3 + ["unknown"]
    sim = SimulatedImu(sig, RATE, names, units, faults=Faults.parse("mount=30:2"), seed=5)
    x = np.concatenate([sim._pull(40) for _ in range(20)])  # 800 samples: 8 s at 100 Hz, the mount from 2 s
    assert np.array_equal(x[:200], sig[:, :200].T) and np.array_equal(x[:, 6], sig[6])
    R = rotation_matrix(MOUNT_AXIS, np.deg2rad(30))
    for tri in (slice(0, 3), slice(3, 6)):
        np.testing.assert_allclose(x[200:, tri], sig[tri, 200:].T @ R.T, atol=1e-5)
    assert np.degrees(np.arccos((np.trace(R) - 1) / 2)) == pytest.approx(30)
    other = SimulatedImu(sig, RATE, names, units, faults=Faults.parse("mount=30"), seed=6)._pull(10)
    # another session (seed) of the same board: the same turn (a calibration on one session holds for the next)
    np.testing.assert_allclose(other[:, :3], sig[:3, :10].T @ R.T, atol=1e-5)
    # UCI HAR's body and total acceleration are two accelerometer triads: both turn, as the runtime turns them back
    har = SimulatedImu(sig[:6], RATE, ["body_x", "body_y", "body_z", "total_x", "total_y", "total_z"], ["g"] * 6,
                       faults=Faults.parse("mount=30"), seed=7)._pull(10)  # fmt: skip
    np.testing.assert_allclose(har, np.concatenate([sig[:3, :10].T @ R.T, sig[3:6, :10].T @ R.T], axis=1), atol=1e-5)


def test_simulate_cli_names_a_bad_fault(capsys):
    from edgessl.cli import main

    assert main(["simulate", "--faults", "vibration=1:2", "--seconds", "1"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--faults vibration=1:2" in err[0] and "EVERY:FOR" in err[0]


# ------------------------------------------------------------------------------------------------
# 4. re-announcements and other devices


def test_same_device_announcing_itself_again_just_continues(device):
    with _stream(device.path) as s:
        _stream_frames(device, 0, 3)
        device.announce(INFO)
        device.send(device.frame(P.MsgType.DEVICE_INFO, 0, b"\x01\x02", 0))  # a mangled one: counted
        _stream_frames(device, 3, 3, t0=0.3)
        events = read_until(s, lambda ev: _n(ev) >= 60)
        assert s.reannouncements == 1 and s.device_changes == 0 and s.rejected_frames == {"bad-info": 1}
    assert _gaps(events) == []


def test_device_announcing_other_channels_is_never_mixed(device):
    six = P.DeviceInfo(0x1234, (1, 0, 0), ("ax", "ay", "az", "gx", "gy", "gz"), (P.Unit.G,) * 3 + (P.Unit.RAD_PER_S,) * 3,
                       RATE, 8, (CPU,) * 6)  # fmt: skip
    with _stream(device.path) as s:
        _stream_frames(device, 0, 3)
        device.announce(six)
        for k in range(3, 6):
            device.samples(0.3 + (k - 3) * 0.1, _frame_values(k, width=6))
        old: list = []
        with pytest.raises(P.DeviceChanged) as e:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                old += s.read(0.05)
        assert e.value.old.channels == ("acc_x", "acc_y", "acc_z") and len(e.value.new.channels) == 6
        assert "changed" in str(e.value) and "\n" not in str(e.value)
        assert _n(old) == 30 and all(b.values.shape[1] == 3 for b in old if isinstance(b, SampleBlock))
        assert s.channel_names == list(six.channels)  # the stream has switched; a consumer may re-map and go on
        new = read_until(s, lambda ev: _n(ev) >= 30)
    assert isinstance(new[0], Gap) and new[0].reason == "device-changed" and new[0].timeline_reset
    assert all(b.values.shape[1] == 6 for b in new if isinstance(b, SampleBlock))
    assert np.all(np.diff(_times(old + new)) > 0)


def test_another_device_behind_the_same_path_after_a_replug(tmp_path):
    link = str(tmp_path / "imu")
    sig = np.zeros((3, 400), np.float32)
    sim = SimulatedImu(sig, RATE, ["x", "y", "z"], link=link, device_id=1)
    sim.start()
    try:
        s = ImuStream(link, reconnect_timeout=10).open()
        read_until(s, lambda ev: _n(ev) >= 10)
    finally:
        sim.stop()
    other = SimulatedImu(np.zeros((3, 400), np.float32), RATE, ["x", "y", "z"], link=link, device_id=2)
    other.start()
    try:
        with pytest.raises(P.DeviceChanged, match="device 0x00000001 .* to device 0x00000002"):
            read_until(s, lambda ev: False, timeout=8)
        assert s.identity is not None and s.identity.device_id == 2
    finally:
        s.close()
        other.stop()


def test_a_text_firmware_behind_a_binary_streams_path_stops_it_with_one_line(tmp_path):
    """A board reflashed (or swapped) to text lines while a binary stream reads it: the run went on at 0 Hz
    forever, counting refused frames (walkthrough); now a protocol error (the device exit code) says what."""
    link = str(tmp_path / "imu")
    sim = SimulatedImu(np.zeros((3, 400), np.float32), RATE, ["x", "y", "z"], link=link)
    sim.start()
    try:
        s = ImuStream(link, reconnect_timeout=10, handshake_timeout=1.0).open()
        read_until(s, lambda ev: _n(ev) >= 10)
    finally:
        sim.stop()
    text = SimulatedImu(np.zeros((3, 4000), np.float32), RATE, ["x", "y", "z"], link=link, mode="csv")
    text.start()
    try:
        with pytest.raises(P.ProtocolError, match="now sends text lines, not the binary frames") as e:
            read_until(s, lambda ev: False, timeout=15)
        assert link in str(e.value) and "--mode auto" in str(e.value) and "\n" not in str(e.value)
    finally:
        s.close()
        text.stop()


def test_text_device_whose_width_changes_is_another_device(text_device):
    with _stream(text_device.path, "text", text_device, b"0.1,0.2,0.9\r\n" * 5, rate_hz=RATE, relock_lines=4) as s:
        text_device.send(b"0.1,0.2,0.9,0.5,0.5,0.5\r\n" * 6)
        with pytest.raises(P.DeviceChanged, match="3 channels .* 6 channels"):
            read_until(s, lambda ev: False)
        after = read_until(s, lambda ev: _n(ev) >= 2)
        assert s.channel_names == [f"ch{i}" for i in range(6)]
    assert all(b.values.shape[1] == 6 for b in after if isinstance(b, SampleBlock))


# ------------------------------------------------------------------------------------------------
# 5. waiting for a port, and for an unplugged device, with a visible state


def test_waits_for_a_port_that_does_not_exist_yet(tmp_path):
    link = str(tmp_path / "imu")
    sim = SimulatedImu(np.zeros((3, 400), np.float32), RATE, ["x", "y", "z"], link=link)
    states: list[str] = []

    def hook(state: str) -> None:
        states.append(state)
        if state == "waiting":
            sim.start()  # the board is plugged in while the stream waits for it

    try:
        with ImuStream(link, wait_for_port=10, on_state=hook) as s:
            assert s.state == "streaming"
            read_until(s, lambda ev: _n(ev) >= 10)
    finally:
        sim.stop()
    assert states[:2] == ["waiting", "streaming"]


def test_gives_up_on_a_missing_port_after_the_wait_it_was_given(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(P.DeviceLost, match=r"cannot open .*nothing-here \(waited 0.3 s\)") as err:
        ImuStream(str(tmp_path / "nothing-here"), wait_for_port=0.3).open()
    assert 0.3 <= time.monotonic() - t0 < 3
    # said once, with where to look, not the driver's errno twice
    assert "no such port" in str(err.value) and "edgessl devices" in str(err.value) and "Errno" not in str(err.value)


def test_an_unplug_longer_than_any_timeout_is_waited_out_when_asked(tmp_path):
    link = str(tmp_path / "imu")
    sig = np.tile(np.linspace(-1, 1, 200, dtype=np.float32), (3, 10))
    states: list[str] = []
    sim = SimulatedImu(sig, RATE, ["x", "y", "z"], link=link)
    sim.start()
    try:
        s = ImuStream(link, reconnect_timeout=None, on_state=states.append).open()
        read_until(s, lambda ev: _n(ev) >= 10)
    finally:
        sim.stop()
    try:
        # longer than the 0.5 s after which reconnect_timeout=0.5 gives up (test_device_lost_after_timeout)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            s.read(0.05)
        assert s.state == "reconnecting" and "reconnecting" in states
        sim = SimulatedImu(sig, RATE, ["x", "y", "z"], link=link)
        sim.start()
        events = read_until(s, lambda ev: _n(ev) >= 10, timeout=8)
        gap = next(g for g in _gaps(events) if g.reason == "disconnect")
        assert gap.missing >= 1.5 * RATE * 0.9  # the outage, measured by the host clock
        assert s.state == "streaming" and states[-1] == "streaming"
    finally:
        s.close()
        sim.stop()


# ------------------------------------------------------------------------------------------------
# 6. text mode against the project's own CSV simulator; CSV headers


def test_text_mode_against_the_csv_simulator_names_its_channels(tmp_path):
    from edgessl.edge_runtime.cli import channel_map

    sig = np.tile(np.linspace(-1, 1, 200, dtype=np.float32), (3, 10))
    with SimulatedImu(sig, RATE, ["ax", "ay", "az"], mode="csv", link=str(tmp_path / "imu")) as sim:
        with ImuStream(sim.path, mode="text") as s:
            assert s.channel_names == ["ch0", "ch1", "ch2"]  # known at open, before any read
            assert channel_map(s.channel_names, s.unit_names, ["acc_x", "acc_y", "acc_z"], ["g"] * 3) == [0, 1, 2]
            events = read_until(s, lambda ev: _n(ev) >= 50)
    assert all(b.values.shape[1] == 3 for b in events if isinstance(b, SampleBlock))


def test_text_mode_fails_clearly_when_no_reading_comes(text_device):
    with pytest.raises(P.ProtocolError, match="no text readings within 0.3 s"):
        _stream(text_device.path, "text", handshake_timeout=0.3).open()


def test_text_header_names_the_channels_and_a_numeric_banner_does_not_fix_the_width(text_device):
    preamble = b"42\r\nIMU v2 ready\r\ntimestamp_ms,acc_x,acc_y,acc_z\r\n" + b"".join(
        f"{10 * i},0.1,0.2,0.9\r\n".encode() for i in range(20))
    with _stream(text_device.path, "text", text_device, preamble, rate_hz=RATE) as s:
        assert s.channel_names == ["acc_x", "acc_y", "acc_z"]
        events = read_until(s, lambda ev: _n(ev) >= 20)
    np.testing.assert_allclose(np.concatenate([e.values for e in events if isinstance(e, SampleBlock)]),
                               np.tile([0.1, 0.2, 0.9], (20, 1)), atol=1e-6)  # fmt: skip


def test_line_decoder_waits_for_two_readings_of_one_width():
    dec = P.LineDecoder()
    assert dec.feed(b"1234\r\n0.1,0.2,0.3\r\n") == []
    assert dec.n_channels is None
    assert [v for _, v in dec.feed(b"0.4,0.5,0.6\r\n")] == [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
    assert dec.n_channels == 3 and dec.stats.rejected_lines == {"unparsed": 1}


# ------------------------------------------------------------------------------------------------
# 7. the seed reaches the synthetic source


def test_simulate_seed_changes_the_synthetic_signal(monkeypatch, tmp_path):
    a, b, a2 = (load_source("synthetic", None, seed=k)[0] for k in (1, 2, 1))
    assert not np.array_equal(a[:, :500], b[:, :500])
    np.testing.assert_array_equal(a, a2)
    spec_seed = load_source("synthetic:seed=2", None, seed=1)[0]  # a seed in the spec wins
    np.testing.assert_array_equal(spec_seed, b)

    from edgessl.firmware_bridge import simulator

    seen = []

    def spy(source, rate, seed=0, **kw):  # the CLI plays make_source's person (tests/firmware_bridge/test_perform.py)
        seen.append(seed)
        return np.zeros((3, 100), np.float32), RATE, ["x", "y", "z"], ["g"] * 3

    monkeypatch.setattr(simulator, "make_source", spy)
    from edgessl.cli import main

    assert main(["simulate", "--seed", "7", "--seconds", "0", "--link", str(tmp_path / "imu")]) == 0
    assert seen == [7]
