import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgessl.firmware_bridge import protocol as P
from edgessl.firmware_bridge import vectors as V


def test_vector_file_matches_the_python_implementation():
    assert V.PATH.read_text() == V.render(), "run python -m edgessl.firmware_bridge.vectors and review the diff"


@pytest.mark.parametrize("name,frame", V.good_frames(), ids=[n for n, _ in V.good_frames()])
def test_good_vectors_round_trip(name, frame):
    wire = P.encode_frame(frame)
    assert wire.count(0) == 1 and wire.endswith(b"\x00")
    assert P.decode_frame(wire) == frame


@pytest.mark.parametrize("name,wire,code", V.bad_frames(), ids=[n for n, _, _ in V.bad_frames()])
def test_bad_vectors_refused(name, wire, code):
    with pytest.raises(P.FrameError):
        P.decode_frame(wire)
    dec = P.FrameDecoder()
    assert dec.feed(wire) == []
    assert dec.stats.crc_errors + dec.stats.malformed == 1


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert P.cobs_decode(enc) == data
    assert len(enc) <= len(data) + len(data) // 254 + 1


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_decoder_never_raises_on_garbage(data):
    dec = P.FrameDecoder()
    for f in dec.feed(data):  # anything accepted must be a self-consistent frame
        assert P.decode_message(P.encode_message(f)) == f


frames_strategy = st.builds(
    lambda n, c, seq, ts, seed: P.make_samples(seq, ts, np.random.default_rng(seed).integers(-32768, 32768, (n, c))),
    st.integers(1, 20), st.integers(1, 6), st.integers(0, 65535), st.integers(0, 2**64 - 1), st.integers(0, 2**32),
)


@settings(max_examples=200)
@given(st.lists(frames_strategy, min_size=2, max_size=6), st.integers(0, 10**6), st.sampled_from(["flip", "cut", "junk"]))
def test_corruption_is_never_accepted_and_later_frames_recover(frames, seed, how):
    rng = np.random.default_rng(seed)
    wires = [P.encode_frame(f) for f in frames]
    k = int(rng.integers(len(wires)))
    bad = bytearray(wires[k])
    if how == "flip":
        i = int(rng.integers(len(bad) - 1))
        bad[i] ^= 1 << int(rng.integers(8))
        if bad[i] == 0:
            bad[i] = 0x55  # a new delimiter would split the frame; still corrupt
    elif how == "cut":
        bad = bad[: int(rng.integers(1, len(bad) - 1))] + b"\x00"
    else:
        # junk glued to the frame; bytes from 2 so that flipping bit 0 never makes a 0x00 delimiter (which would
        # cut the junk off and leave the frame intact: that frame then rightly arrives)
        bad = bytes(rng.integers(2, 256, size=int(rng.integers(1, 40)), dtype=np.uint8)) + bytes(bad)
        bad = bytearray(bad)
        bad[0] ^= 0x01  # never valid
    stream = b"".join(wires[:k]) + bytes(bad) + b"".join(wires[k + 1 :])
    dec = P.FrameDecoder()
    got = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        got += dec.feed(stream[i : i + 7])
    # the damaged frame is refused (CRC-32), every other frame arrives, in order
    assert got == frames[:k] + frames[k + 1 :]


def test_device_info_round_trip_and_errors():
    p = V.DEMO_INFO.to_payload()
    assert P.DeviceInfo.from_payload(p) == V.DEMO_INFO
    assert V.DEMO_INFO.unit_names == ["g", "g", "g"]
    with pytest.raises(P.ProtocolError, match="malformed DEVICE_INFO"):
        P.DeviceInfo.from_payload(p[:-2])
    with pytest.raises(ValueError):
        P.DeviceInfo(1, (1, 0, 0), ("a",), (P.Unit.G,), 0.0, 2, (1.0,))


def test_samples_payload_validation():
    with pytest.raises(ValueError, match="integer counts within int16"):
        P.samples_payload(np.array([[40000, 0, 0]]))
    with pytest.raises(ValueError, match="integer counts"):
        P.samples_payload(np.array([[0.5, 0, 0]]))
    f = P.make_samples(1, 2, np.array([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(P.parse_samples(f), [[1, 2], [3, 4]])


def test_ack_and_commands():
    cmd = P.make_command(P.MsgType.CMD_SET_RATE, 9, P.set_rate_arg(50))
    ack = P.make_ack(3, 10, cmd, P.AckStatus.BAD_ARGUMENT)
    assert P.parse_ack(P.decode_frame(P.encode_frame(ack))) == (P.MsgType.CMD_SET_RATE, 9, P.AckStatus.BAD_ARGUMENT)
    assert struct.unpack("<f", cmd.payload)[0] == 50.0


def test_line_decoder_edge_impulse_style():
    dec = P.LineDecoder()
    out = dec.feed(b"booting IMU v1.2...\r\n0.1,0.2,0.98\r\n0.1\t0.2\t0.97\n0.1,0.2\n0.1,nan,1\n0.1,0.2,")
    assert [v for _, v in out] == [[0.1, 0.2, 0.98], [0.1, 0.2, 0.97]]
    assert dec.stats.bad_lines == 3  # the banner, the short line and the NaN line
    assert dec.feed(b"0.99\n")[0][1] == [0.1, 0.2, 0.99]


def test_detect_mode():
    assert P.detect_mode(P.encode_frame(P.make_command(P.MsgType.CMD_START, 1))) == "binary"
    assert P.detect_mode(b"hello\r\n1,2,3\r\n4,5,6\r\n") == "text"
    assert P.detect_mode(b"\x01\x02garbage") is None


def test_oversized_input_without_delimiter_is_dropped():
    dec = P.FrameDecoder()
    dec.feed(b"\x01" * 5000)
    assert dec.stats.oversized >= 1
    f = P.make_command(P.MsgType.CMD_STOP, 4)
    assert dec.feed(b"\x00" + P.encode_frame(f)) == [f]
