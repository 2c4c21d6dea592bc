"""The simulated board performs on request: a synthetic person (user, session), scripts, cues and the log."""

import hashlib
import json
import time

import numpy as np
import pytest

from edgessl.cli import main
from edgessl.datasets.synthetic import GESTURES, SyntheticPerson, user_id
from edgessl.errors import ExitCode
from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge.simulator import SimulatedImu, make_source
from edgessl.firmware_bridge.transport import ImuStream, SampleBlock
from edgessl.segmenter import segment_signal

RATE = 100.0


# ------------------------------------------------------------------------------------------------
# the person: who (user) and which session (seed)


def test_seeds_are_sessions_of_one_person_and_users_are_other_people():
    a1, a1_again, a2 = (SyntheticPerson("A", s).next(3000) for s in (1, 1, 2))
    np.testing.assert_array_equal(a1, a1_again)  # deterministic in (user, seed)
    assert not np.array_equal(a1[:, :500], a2[:, :500])
    # at rest the gravity direction shows the grip (mounting) and the gain: the user's, whatever the session
    rest = {(u, s): SyntheticPerson(u, s, perform="cue").next(2000).mean(axis=1) for u in ("A", "B") for s in (1, 2)}
    assert np.abs(rest["A", 1] - rest["A", 2]).max() < 0.02
    assert np.abs(rest["B", 1] - rest["B", 2]).max() < 0.02
    assert np.abs(rest["A", 1] - rest["B", 1]).max() > 0.2


def test_user_ids_named_and_numbered():
    assert user_id("A") == user_id("A") != user_id("B")
    assert user_id("A") >= 2**32  # never one of a data set's integer users
    assert user_id(3) == user_id("3") == 3
    with pytest.raises(ValueError):
        user_id("")


def test_ten_minutes_never_repeat():
    x = SyntheticPerson("A", 0).next(int(600 * RATE))
    w = int(2 * RATE)
    raw = np.ascontiguousarray(x.T)
    seen = {hashlib.blake2b(raw[i : i + w].tobytes(), digest_size=16).digest() for i in range(0, len(raw) - w, 7)}
    assert len(seen) == len(range(0, len(raw) - w, 7))  # no 2-s stretch (at any 7-sample step) comes back


def test_the_cli_source_is_the_unbounded_person():
    src, rate, channels, _ = make_source("synthetic:seed=3", None, user="A", perform="up:2")
    assert isinstance(src, SyntheticPerson) and src.seed == 3 and src.user == "A" and rate == RATE
    assert channels == ["acc_x", "acc_y", "acc_z"]
    assert src.next(50_000).shape == (3, 50_000)  # longer than the old fixed ~156 s loop allows for free
    with pytest.raises(ValueError, match="synthetic source"):
        make_source("csv:nowhere.csv", None, user="A")


# ------------------------------------------------------------------------------------------------
# scripts and cues, on the source itself


def test_a_script_is_performed_in_order_and_the_segmenter_finds_each():
    p = SyntheticPerson("A", 1, perform="circle_cw:3,left:2")
    x = p.next(int(40 * RATE))
    assert [q.label for q in p.performances] == ["circle_cw"] * 3 + ["left"] * 2
    segs = segment_signal(x, RATE)
    assert len(segs) == 5
    for (s, e), q in zip(segs, p.performances, strict=True):
        assert s < q.end and q.start < e  # each cut overlaps the performance it belongs to
    assert len(p.performances) == 5 and p.next(int(20 * RATE)).shape[1] == 2000  # then idle forever
    assert len(p.performances) == 5


def test_a_cue_is_performed_next_after_a_reaction_time():
    p = SyntheticPerson("B", 0, perform="cue")
    p.next(150)
    assert p.performances == []
    p.cue("up")
    p.cue("down")  # queued: after "up" and a rest
    p.next(600)
    up, down = p.performances
    assert (up.label, up.cued, down.label) == ("up", True, "down")
    assert 0.3 * RATE <= up.start - 150 <= 0.6 * RATE
    assert down.start >= up.end + 0.5 * RATE
    with pytest.raises(ValueError, match="circle_cw"):
        p.cue("circle")


# ------------------------------------------------------------------------------------------------
# the wire: CMD_CUE over a pty, and the log on the device clock


def _read_until(stream, cond, timeout):
    blocks = []
    deadline = time.monotonic() + timeout
    while not cond(blocks) and time.monotonic() < deadline:
        blocks += [b for b in stream.read(0.05) if isinstance(b, SampleBlock)]
    return blocks


def test_a_cue_over_the_port_makes_the_gesture_appear_and_logs_it(tmp_path):
    log: list[dict] = []
    person = SyntheticPerson("A", 5, perform="cue")
    with SimulatedImu(person, RATE, person.channels, person.units, speed=4.0, link=str(tmp_path / "imu"),
                      on_performance=log.append) as sim, ImuStream(sim.path) as imu:  # fmt: skip
        blocks = _read_until(imu, lambda b: sum(len(x.values) for x in b) >= 100, 5)
        assert imu.cue("circle") == P.AckStatus.BAD_ARGUMENT  # not one of the person's gestures
        assert imu.cue("v_shape") == P.AckStatus.OK
        t_cue = blocks[-1].t_device[-1]
        blocks += _read_until(imu, lambda b: log and b and b[-1].t_device[-1] > log[0]["end_s"] + 0.5, 10)
    assert [(r["label"], r["cued"]) for r in log] == [("v_shape", True)]  # the bad cue performed nothing
    rec = log[0]
    # the cue reached the device after the last sample we had seen; the person reacts within 0.3-0.6 s
    assert 0.3 <= rec["start_s"] - t_cue <= 1.0
    t = np.concatenate([b.t_device for b in blocks])
    x = np.concatenate([b.values for b in blocks]).T
    segs = segment_signal(x, RATE)
    assert len(segs) == 1  # the gesture is in the stream the host received, where the log says
    assert abs(t[segs[0, 0]] - rec["start_s"]) < 0.2 and abs(t[segs[0, 1] - 1] - rec["end_s"]) < 0.3


def test_a_recording_and_a_text_device_answer_unsupported(tmp_path):
    sig = np.zeros((3, 500), np.float32)
    with SimulatedImu(sig, RATE, ["x", "y", "z"], link=str(tmp_path / "imu")) as sim, ImuStream(sim.path) as imu:
        assert imu.cue("up") == P.AckStatus.UNSUPPORTED
        assert imu.cue_supported is False
        assert imu.command(P.MsgType.CMD_CUE, P.cue_arg("up")) == P.AckStatus.UNSUPPORTED
    with SimulatedImu(sig, RATE, ["x", "y", "z"], mode="csv", link=str(tmp_path / "imu2")) as sim:
        with ImuStream(sim.path, mode="text", rate_hz=RATE) as imu:
            assert imu.cue("up") == P.AckStatus.UNSUPPORTED  # nothing sent to a text device


def test_a_device_that_never_answers_a_cue_is_tolerated(monkeypatch):
    imu = ImuStream("loop://")
    imu.mode = "binary"
    calls = []

    def no_ack(mtype, arg=b""):
        calls.append(mtype)
        raise P.ProtocolError("no acknowledgement")  # firmware older than CMD_CUE drops the frame

    monkeypatch.setattr(imu, "command", no_ack)
    assert imu.cue("up") == P.AckStatus.UNSUPPORTED and imu.cue("up") == P.AckStatus.UNSUPPORTED
    assert calls == [P.MsgType.CMD_CUE] and imu.unanswered_cues == 1  # not asked again
    assert imu.counters()["unanswered_cues"] == 1
    with pytest.raises(ValueError, match="32 bytes"):
        imu.cue("x" * 33)


# ------------------------------------------------------------------------------------------------
# the command line


def test_simulate_performs_a_script_and_logs_it(tmp_path):
    log = tmp_path / "performed.jsonl"
    argv = ["simulate", "--mode", "csv", "--speed", "40", "--seconds", "1.5", "--perform", "circle_cw:3,left:2",
            "--user", "A", "--seed", "1", "--log", str(log), "--link", str(tmp_path / "imu")]  # fmt: skip
    assert main(argv) == 0
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["label"] for r in recs] == ["circle_cw"] * 3 + ["left"] * 2
    starts, ends = np.array([r["start_s"] for r in recs]), np.array([r["end_s"] for r in recs])
    assert np.all(ends > starts) and np.all(starts[1:] > ends[:-1])
    # the same session as the source object plays it (device seconds = samples / rate)
    p = SyntheticPerson("A", 1, perform="circle_cw:3,left:2")
    p.next(int(ends[-1] * RATE) + 10)
    np.testing.assert_allclose(starts, [q.start / RATE for q in p.performances], atol=2e-6)  # whole µs

    assert main(argv) == ExitCode.USAGE  # the log exists: refused, left as it was
    assert len(log.read_text().splitlines()) == 5


@pytest.mark.parametrize(("argv", "needle"), [
    (["--perform", "circle:3"], "circle_cw"),  # an unknown label: the message lists the gestures
    (["--perform", "left:0"], ">= 1"),
    (["--perform", "cue", "--mode", "csv"], "binary"),
    (["--source", "csv:rec.csv", "--user", "A"], "synthetic"),
])  # fmt: skip
def test_simulate_refuses_bad_performances(tmp_path, capsys, argv, needle):
    assert main(["simulate", "--seconds", "0", "--link", str(tmp_path / "imu"), *argv]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    if "circle:3" in argv:
        assert all(g in err for g in GESTURES)
    assert not (tmp_path / "imu").exists()
