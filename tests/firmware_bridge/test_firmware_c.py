"""The reference firmware compiled with the host compiler agrees with Python byte for byte."""

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge import vectors as V
from edgessl.firmware_bridge.transport import ImuStream, SampleBlock

FIRMWARE = Path(P.__file__).parent / "firmware"


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    if shutil.which("make") is None or (shutil.which("cc") is None and shutil.which("gcc") is None):
        pytest.skip("no host C compiler / make")
    out = tmp_path_factory.mktemp("fw")
    r = subprocess.run(["make", "-s", "-C", str(FIRMWARE), f"OUT={out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # -Wall -Wextra -pedantic -Werror
    return out


def tool(build: Path, *args: str) -> str:
    r = subprocess.run([str(build / "essl_tool"), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_c_passes_every_shared_vector(build):
    r = subprocess.run([str(build / "vectors_test"), str(V.PATH)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    n_good, n_bad = len(V.good_frames()), len(V.bad_frames())
    assert f"{n_good + n_bad} vectors checked, 0 failures" in r.stdout


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(list(P.MsgType)), st.integers(0, 65535), st.integers(0, 2**64 - 1), st.integers(0, 255),
       st.binary(max_size=300))  # fmt: skip
def test_c_and_python_encode_and_decode_each_other(build, mtype, seq, ts, count, payload):
    if mtype == P.MsgType.SAMPLES:  # keep the payload consistent with its count for SAMPLES
        count = len(payload) // 6
        payload = bytes([3]) + payload[: count * 6]
        if count == 0:
            return
    f = P.Frame(mtype, seq, ts, count, payload)
    wire_py = P.encode_frame(f).hex()
    wire_c = tool(build, "encode", str(int(mtype)), str(seq), str(ts), str(count), payload.hex() or "-")
    assert wire_c == wire_py
    assert tool(build, "decode", wire_py) == f"{int(mtype)} {seq} {ts} {count} {payload.hex() or '-'}"


def test_c_rejects_what_python_rejects(build):
    for name, wire, code in V.bad_frames():
        assert tool(build, "decode", wire.hex()) == f"error {code}", name


def test_c_payload_builders_match_python(build):
    counts = np.array([[1, -2, 3], [-32768, 32767, 0]])
    assert tool(build, "samples", "2", "3", *map(str, counts.ravel())) == P.samples_payload(counts).hex()
    assert tool(build, "info") == V.DEMO_INFO.to_payload().hex()
    assert tool(build, "crc", b"123456789".hex()) == "cbf43926"  # the CRC-32 check value


def test_virtual_device_on_a_pty_streams_the_pattern(build):
    proc = subprocess.Popen([str(build / "virtual_device"), "--rate", "200", "--seconds", "20"], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/")
        with ImuStream(path, mode="auto") as s:
            assert s.mode == "binary" and s.info == V.DEMO_INFO.__class__(**{**V.DEMO_INFO.__dict__, "rate_hz": 200.0})
            got = []
            deadline = time.monotonic() + 5
            while sum(len(b.values) for b in got) < 100 and time.monotonic() < deadline:
                got += [e for e in s.read(0.1) if isinstance(e, SampleBlock)]
            values = np.concatenate([b.values for b in got])
            t = np.concatenate([b.t_device for b in got])
            idx = np.round(t * 200).astype(int)
            expected = ((idx[:, None] * 37 + np.arange(3)[None] * 1000) % 4096 - 2048) / 16384.0
            np.testing.assert_allclose(values, expected, atol=1e-6)  # decoded C frames, exactly
            assert np.all(np.diff(idx) == 1)
            s.set_rate(100.0)  # SET_RATE handled by essl_device_handle, confirmed by a new DEVICE_INFO
            assert s.info.rate_hz == 100.0
            assert s.command(P.MsgType.CMD_SET_RANGE, P.set_range_arg(3)) == P.AckStatus.BAD_ARGUMENT
            assert s.command(P.MsgType.CMD_SET_RANGE, P.set_range_arg(4)) == P.AckStatus.OK
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("prompt", [1, 0])
def test_virtual_device_answers_cues(build, prompt):
    """CMD_CUE: a device with a prompt shows it (ACK OK); one without answers UNSUPPORTED, which the host tolerates."""
    proc = subprocess.Popen([str(build / "virtual_device"), "--seconds", "20", "--cue", str(prompt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        path = proc.stdout.readline().strip()
        with ImuStream(path, mode="binary") as s:
            if prompt:
                assert s.cue("circle_cw") == P.AckStatus.OK and s.cue_supported is True
                assert s.command(P.MsgType.CMD_CUE, b"") == P.AckStatus.BAD_ARGUMENT
                assert s.command(P.MsgType.CMD_CUE, b"x" * 33) == P.AckStatus.BAD_ARGUMENT
            else:
                assert s.cue("circle_cw") == P.AckStatus.UNSUPPORTED and s.cue_supported is False
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert ("cue circle_cw" in err.splitlines()) == bool(prompt)
