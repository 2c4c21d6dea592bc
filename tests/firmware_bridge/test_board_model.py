"""The board classifies (protocol revision 3): EVENT / MODEL_INFO / CMD_EVENTS in Python and C, the host-built
firmware running a C model as a simulated board, and ``edgessl run`` showing and comparing its events.

The firmware-path tests use a hand-written stand-in model (an event every 100 samples, labels cycling through
unknown and three classes), so event times and labels are known exactly; ``test_board_running_the_exported_model``
runs the real thing: a bundle exported to C, the board on a pty, ``edgessl run`` comparing it with the host.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgessl.edge_runtime.device_events import EventComparison, model_mismatch
from edgessl.edge_runtime.runtime import Event
from edgessl.errors import UsageError
from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge import vectors as V
from edgessl.firmware_bridge.simulator import FIRMWARE, ModelBoard, SimulatedImu, build_board
from edgessl.firmware_bridge.transport import DeviceEvent, ImuStream, SampleBlock

STUB_LABELS = ("circle_cw", "left", "shake")
STUB_CHECKSUM = "ab" * 32
STUB = {
    "essl_model.h": """#ifndef ESSL_MODEL_H
#define ESSL_MODEL_H
#define ESSL_MODEL_CHANNELS 3
#define ESSL_MODEL_LENGTH 63
#define ESSL_MODEL_CLASSES 3
#define ESSL_MODEL_EMBED_DIM 4
#define ESSL_MODEL_RATE_HZ 100.0f
extern const char *const essl_model_labels[ESSL_MODEL_CLASSES];
int essl_model_run(const float *window, float *logits, float *embedding);
#endif
""",
    "essl_model.c": """#include "essl_model.h"
const char *const essl_model_labels[ESSL_MODEL_CLASSES] = {"circle_cw", "left", "shake"};
int essl_model_run(const float *window, float *logits, float *embedding) {
    (void)window; (void)embedding;
    for (int k = 0; k < ESSL_MODEL_CLASSES; k++) logits[k] = (float)k;
    return 0;
}
""",
    "essl_stream.h": """#ifndef ESSL_STREAM_H
#define ESSL_STREAM_H
#include <stdint.h>
#include "essl_model.h"
typedef struct { int32_t label; float confidence; float ood_score; uint32_t t_start_ms, t_end_ms; uint8_t reason; }
    essl_event_t;
typedef struct { uint32_t n; uint32_t first_ms; } essl_stream_t;
void essl_stream_init(essl_stream_t *s);
int essl_stream_push(essl_stream_t *s, const float *sample, uint32_t t_ms, essl_event_t *ev);
#endif
""",
    # one "gesture" per 100 samples; labels -1 (low confidence), 0, 1, 2, -1, ...; confidence 0.5
    "essl_stream.c": """#include "essl_stream.h"
void essl_stream_init(essl_stream_t *s) { s->n = 0; s->first_ms = 0; }
int essl_stream_push(essl_stream_t *s, const float *sample, uint32_t t_ms, essl_event_t *ev) {
    (void)sample;
    if (s->n % 100u == 0) s->first_ms = t_ms;
    s->n++;
    if (s->n % 100u) return 0;
    ev->label = (int32_t)((s->n / 100u) % 4u) - 1;
    ev->reason = ev->label < 0 ? 1 : 0;
    ev->confidence = 0.5f;
    ev->ood_score = 0.0f;
    ev->t_start_ms = s->first_ms;
    ev->t_end_ms = t_ms;
    return 1;
}
""",
    "essl_model_info.json": json.dumps({"bundle_checksum": STUB_CHECKSUM, "labels": list(STUB_LABELS)}),
}


def _need_cc() -> None:
    if shutil.which("make") is None or (shutil.which("cc") is None and shutil.which("gcc") is None):
        pytest.skip("no host C compiler / make")


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stub_model")
    for name, text in STUB.items():
        (d / name).write_text(text)
    return d


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Path:
    _need_cc()
    out = tmp_path_factory.mktemp("fw")
    r = subprocess.run(["make", "-s", "-C", str(FIRMWARE), f"OUT={out}", f"{out}/essl_tool"], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def stub_board(stub_dir, tmp_path_factory) -> tuple[Path, str | None]:
    _need_cc()
    return build_board(stub_dir, tmp_path_factory.mktemp("board"))


# ----------------------------------------------------------------------------------------------
# the messages


def test_event_and_model_info_round_trip_and_refuse_bad_payloads():
    assert P.EventPayload.from_payload(V.DEMO_EVENT.to_payload()) == V.DEMO_EVENT
    assert len(V.DEMO_EVENT.to_payload()) == P.EVENT_PAYLOAD.size == 23
    assert P.ModelInfo.from_payload(V.DEMO_MODEL.to_payload()) == V.DEMO_MODEL
    assert V.DEMO_MODEL.sha256_hex == bytes(range(32)).hex()
    assert P.ModelInfo(bytes(32), 0, ("a",)).sha256_hex is None  # zeros: the board does not know
    for bad in (b"", V.DEMO_EVENT.to_payload()[:-1], P.EVENT_PAYLOAD.pack(-2, 0, 0.5, 0, 1),
                P.EVENT_PAYLOAD.pack(0, 4, 0.5, 0, 1), P.EVENT_PAYLOAD.pack(0, 0, 1.5, 0, 1),
                P.EVENT_PAYLOAD.pack(0, 0, 0.5, 2, 1)):  # fmt: skip
        with pytest.raises(P.ProtocolError):
            P.EventPayload.from_payload(bad)
    good = V.DEMO_MODEL.to_payload()
    for bad in (good[:20], good[:-1], good + b"x", good[:34] + bytes([40]) + b"x" * 40):
        with pytest.raises(P.ProtocolError):
            P.ModelInfo.from_payload(bad)
    with pytest.raises(ValueError):
        P.ModelInfo(bytes(32), 1, ("x" * 32,)).to_payload()


def test_c_builds_the_same_event_and_model_info_payloads(tools):
    def tool(*args: str) -> str:
        return subprocess.run([str(tools / "essl_tool"), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()  # fmt: skip

    e = V.DEMO_EVENT
    assert tool("event", str(e.label), str(e.reason), repr(e.confidence), str(e.t_start_us), str(e.t_end_us)) == \
        e.to_payload().hex()  # fmt: skip
    m = V.DEMO_MODEL
    assert tool("modelinfo", m.bundle_sha256.hex(), str(m.mode), *m.labels) == m.to_payload().hex()
    assert tool("event", "-2", "0", "0.5", "0", "1") == "error -9"  # what Python refuses, C refuses to build
    assert tool("event", "0", "0", "0.5", "5", "1") == "error -9"
    assert tool("modelinfo", "00" * 32, "1", "x" * 32) == "error -9"


def test_the_model_device_builds_with_the_makefile_strictly(stub_dir, tmp_path):
    _need_cc()
    r = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "model_device", f"OUT={tmp_path}", f"MODEL_DIR={stub_dir}",
                        f"BUNDLE_SHA256={STUB_CHECKSUM}"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr  # -std=c99 -Wall -Wextra -pedantic -Werror
    assert (tmp_path / "model_device").is_file()
    r = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "model_device", f"OUT={tmp_path}"], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode != 0 and "MODEL_DIR" in r.stderr


# ----------------------------------------------------------------------------------------------
# the board on a pty (in process)


def _person_signal(n: int = 6000) -> np.ndarray:
    t = np.arange(n) / 100.0
    return np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t), 1 + 0.1 * np.sin(t)]).astype(np.float32)


@contextlib.contextmanager
def _board_sim(stub_board, **kw) -> Iterator[SimulatedImu]:
    program, _ = stub_board
    sim = SimulatedImu(_person_signal(), 100.0, ["acc_x", "acc_y", "acc_z"], speed=4.0, board=ModelBoard(program), **kw)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _read(s: ImuStream, seconds: float) -> tuple[list[SampleBlock], list[DeviceEvent]]:
    blocks, events = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        blocks += [b for b in s.read(0.05) if isinstance(b, SampleBlock)]
        events += s.take_events()
    return blocks, events


def test_board_sends_samples_and_its_events_to_a_host_that_asks(stub_board):
    sig = _person_signal()
    with _board_sim(stub_board) as sim, ImuStream(sim.path, events=True) as s:
        assert s.device_flags & P.DEVICE_FLAG_MODEL
        assert s.model_info is not None and s.model_info.labels == STUB_LABELS
        assert s.model_info.sha256_hex == STUB_CHECKSUM and s.model_info.mode == P.EventsMode.ALONGSIDE
        blocks, events = _read(s, 2.5)
        # the samples are the person's, relayed by the firmware unchanged (to one count)
        vals = np.concatenate([b.values for b in blocks])
        idx = np.round(np.concatenate([b.t_device for b in blocks]) * 100).astype(int)
        np.testing.assert_allclose(vals, sig[:, idx].T, atol=1 / 4096 + 1e-6)
        assert np.all(np.diff(idx) == 1)
        # the stand-in decides every 100 samples from the start of streaming; times on the samples' clock
        assert len(events) >= 5
        first = idx[0]
        for k, e in enumerate(events, start=1):
            assert e.t_end == pytest.approx((first + 100 * k - 1) / 100, abs=1e-3)
            assert e.t_start == pytest.approx((first + 100 * (k - 1)) / 100, abs=1e-3)
            want = k % 4 - 1
            assert e.index == want and e.confidence == 0.5
            assert e.label == ("unknown" if want < 0 else STUB_LABELS[want])
            assert e.reason == ("low-confidence" if want < 0 else "ok")
        c = s.counters()
        assert c["device_events"] == len(events) and c["events_refused"] == 0 and not c["rejected_frames"]


def test_a_host_that_does_not_ask_gets_a_plain_imu(stub_board):
    """The board sends events only while asked; IDENTIFY (every session's first command) turns them off, so a
    host after one that asked (or one that predates revision 3) never sees an EVENT frame."""
    with _board_sim(stub_board) as sim:
        with ImuStream(sim.path, events=True) as s:
            assert _read(s, 0.8)[1]
        with ImuStream(sim.path) as s:
            blocks, events = _read(s, 1.5)
            assert blocks and not events and s.model_info is not None and s.model_info.mode == P.EventsMode.OFF
            c = s.counters()
            assert not c["rejected_frames"] and "device_events" not in c
            # what a revision-2 host does: IDENTIFY and START only; the board sends no EVENT frame
            s.command(P.MsgType.CMD_IDENTIFY)
            s.command(P.MsgType.CMD_START)
            assert not _read(s, 1.2)[1] and not s.counters()["rejected_frames"]
            assert s.command(P.MsgType.CMD_EVENTS, bytes([3])) == P.AckStatus.BAD_ARGUMENT


def test_events_only_mode_and_a_fixed_rate(stub_board):
    with _board_sim(stub_board) as sim, ImuStream(sim.path, events=True) as s:
        assert s.command(P.MsgType.CMD_EVENTS, P.events_arg(P.EventsMode.ONLY)) == P.AckStatus.OK
        assert s.model_info is not None and s.model_info.mode == P.EventsMode.ONLY
        s.stall_timeout = 60.0  # no samples on purpose
        frames = []
        end = time.monotonic() + 10  # two events come within ~1 s; a loaded machine may take longer
        while time.monotonic() < end and sum(f.type == P.MsgType.EVENT for f in frames) < 2:
            for kind, data, _ in s._drain(0.05):
                if kind == "data":
                    frames += s.frames.feed(data)
        types = Counter(f.type for f in frames)
        assert types[P.MsgType.EVENT] >= 2 and types[P.MsgType.SAMPLES] == 0
        with pytest.raises(P.ProtocolError):
            s.set_rate(50.0)  # the model fixes the rate


def test_a_device_without_a_model_is_never_asked():
    sim = SimulatedImu(_person_signal(), 100.0, ["acc_x", "acc_y", "acc_z"], speed=4.0)
    with sim, ImuStream(sim.path, events=True) as s:
        assert s.device_flags == 0 and s.model_info is None
        blocks, events = _read(s, 0.5)
        assert blocks and not events and s.counters()["events_refused"] == 0


def test_board_refusing_its_identity_is_a_usage_error(stub_board):
    program, _ = stub_board
    sim = SimulatedImu(_person_signal(), 50.0, ["acc_x", "acc_y", "acc_z"], board=ModelBoard(program))
    with pytest.raises(UsageError, match="exported for 100 Hz"):
        sim.start()
    assert sim.master is None  # nothing left open
    sim = SimulatedImu(_person_signal()[:2], 100.0, ["acc_x", "acc_y"], board=ModelBoard(program))
    with pytest.raises(UsageError, match="takes 3 channels"):
        sim.start()


def test_build_board_refuses_what_it_cannot_build(tmp_path, stub_dir):
    with pytest.raises(UsageError, match="no such file"):
        build_board(tmp_path / "nothing", tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "essl_model.c").write_text("")
    with pytest.raises(UsageError, match="missing essl_stream.c, essl_model.h, essl_stream.h; expected a folder"):
        build_board(tmp_path / "half", tmp_path)


# ----------------------------------------------------------------------------------------------
# comparing board and host


def _host(label: str, t0: float, t1: float) -> Event:
    return Event(t1, label, 0.9, {}, 0.1, t0, t1)


def _board(label: str, t0: float, t1: float) -> DeviceEvent:
    return DeviceEvent(0, label, 0.8, "ok", t0, t1, 0.0)


def test_event_comparison_pairs_by_overlap():
    c = EventComparison(horizon_s=2.0)
    assert c.add_board(_board("left", 1.0, 2.0)) == []
    [pair] = c.add_host(_host("left", 1.02, 2.01))
    assert pair.agree and pair.kind == "agree" and pair.to_json()["board"]["label"] == "left"
    [pair] = c.add_board(_board("up", 3.0, 4.0)) + c.add_host(_host("down", 3.5, 4.2))
    assert pair.kind == "disagree"
    assert c.add_host(_host("shake", 10.0, 11.0)) == [] and c.add_board(_board("left", 12.0, 13.0)) == []
    assert c.advance(12.5) == []  # within the horizon
    assert [p.kind for p in c.advance(13.5)] == ["host_only"]
    assert [p.kind for p in c.finish()] == ["board_only"]
    assert c.counts == {"agree": 1, "disagree": 1, "board_only": 1, "host_only": 1}
    assert "board agrees 1/4" in c.summary()


def test_the_host_names_a_board_running_another_bundle():
    info = P.ModelInfo(bytes.fromhex(STUB_CHECKSUM), 1, STUB_LABELS)
    assert model_mismatch(info, "m.essl", STUB_CHECKSUM, list(STUB_LABELS)) is None
    msg = model_mismatch(info, "dir/m.essl", "cd" * 32, list(STUB_LABELS))
    assert msg is not None and "abababababab" in msg and "m.essl (cdcdcdcdcdcd" in msg
    unknown = P.ModelInfo(bytes(32), 1, STUB_LABELS)
    assert model_mismatch(unknown, "m.essl", "cd" * 32, list(STUB_LABELS)) is None  # same labels: cannot tell
    assert "does not say which bundle" in (model_mismatch(unknown, "m.essl", "cd" * 32, ["a", "b"]) or "")


# ----------------------------------------------------------------------------------------------
# end to end: edgessl simulate --board-model, edgessl run


@contextlib.contextmanager
def _simulate(tmp: Path, model: Path, speed: float = 10.0) -> Iterator[str]:
    link = tmp / "board"
    p = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", "--board-model", str(model), "--speed",
                          str(speed), "--link", str(link), "--seed", "3"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        assert line == str(link), p.stderr.read() if p.stderr else ""
        yield line
    finally:
        p.terminate()
        p.wait(10)
    assert not link.exists()


def _run(bundle: Path, port: str, seconds: float) -> tuple[list[dict], str]:
    r = subprocess.run([sys.executable, "-m", "edgessl", "run", str(bundle), "--port", port, "--json", "--adapt",
                        "none", "--seconds", str(seconds)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()], r.stderr


@pytest.mark.slow
def test_run_shows_a_stub_board_running_another_bundle(small_bundle, stub_dir, tmp_path):
    """A board whose model is not the bundle given: its events are shown with its own labels, and the host says
    which checksum it runs."""
    _need_cc()
    with _simulate(tmp_path, stub_dir) as port:
        records, err = _run(small_bundle, port, 3.0)
    assert "abababababab" in err and small_bundle.name in err  # one warning line naming both
    [model] = [r["board_model"] for r in records if "board_model" in r]
    assert model == {"checksum": STUB_CHECKSUM, "labels": list(STUB_LABELS), "matches_bundle": False}
    board = [r["board_event"] for r in records if "board_event" in r]
    assert len(board) >= 10 and {e["label"] for e in board} == {"unknown", *STUB_LABELS}
    stats = records[-1]["stats"]
    assert stats["board"]["events"] == len(board) == stats["device"]["device_events"]


@pytest.mark.slow
def test_board_running_the_exported_model(small_bundle, tmp_path):
    """The acceptance path: the bundle exported to C runs in the host-built firmware of a simulated board;
    ``edgessl run`` shows the board's events and classifies the same samples itself; they agree."""
    _need_cc()
    from edgessl.edge_runtime.bundle import open_bundle

    if open_bundle(small_bundle).manifest["input_mode"] != "segment":
        pytest.skip("the C stream covers segment-mode bundles; the small bundle is not one")
    with _simulate(tmp_path, small_bundle) as port:
        records, err = _run(small_bundle, port, 6.0)
    assert "warning" not in err, err
    [model] = [r["board_model"] for r in records if "board_model" in r]
    assert model["matches_bundle"] is True and model["labels"] == open_bundle(small_bundle).labels
    board = [r["board_event"] for r in records if "board_event" in r]
    compared = Counter(r["compare"]["result"] for r in records if "compare" in r)
    stats = records[-1]["stats"]["board"]
    print(f"board events {len(board)}, comparisons {dict(compared)}")  # the figure for the report (-s)
    assert len(board) >= 5
    assert stats["events"] == len(board) and sum(compared.values()) >= len(board)
    assert compared["agree"] >= 0.9 * sum(compared.values())
