import numpy as np
import pytest

from edgessl.edge_runtime.bundle import SegmentParams
from edgessl.edge_runtime.stream import RingBuffer, StreamWindower
from edgessl.synthetic import SyntheticConfig, make_stream


def test_ring_buffer_wraps_and_refuses_evicted_samples():
    rb = RingBuffer(2, 5)
    for i in range(3):
        rb.push(np.full((2, 3), i, np.float32), np.arange(3) + 3.0 * i)
    x, t = rb.last(5)
    np.testing.assert_array_equal(t, [4, 5, 6, 7, 8])
    np.testing.assert_array_equal(x[0], [1, 1, 2, 2, 2])
    with pytest.raises(IndexError):
        rb.last(3, end=3)


def _feed(w, sig, t, chunk=7):
    out = []
    for i in range(0, sig.shape[1], chunk):
        out += w.push(sig[:, i : i + chunk].T, t[i : i + chunk])
    return out


def test_sliding_windows_at_stride_and_exact_values():
    sig = np.random.default_rng(0).normal(size=(3, 1000)).astype(np.float32)
    t = np.arange(1000) / 100.0
    w = StreamWindower(3, 100.0, window=100, stride=25, mode="sliding")
    wins = _feed(w, sig, t)
    assert len(wins) == (1000 - 100) // 25 + 1
    np.testing.assert_allclose(wins[3].x, sig[:, 75:175], atol=1e-6)
    assert wins[3].t_start == pytest.approx(0.75) and not wins[3].filled_gap


def test_resampling_80hz_device_to_100hz_model():
    t = np.arange(800) / 80.0
    sig = np.stack([np.sin(2 * np.pi * 0.5 * t)] * 3).astype(np.float32)
    w = StreamWindower(3, 100.0, window=100, stride=100, mode="sliding")
    wins = _feed(w, sig, t)
    assert len(wins) == 9  # ~10 s at 100 Hz
    tt = wins[2].t_start + np.arange(100) / 100.0
    np.testing.assert_allclose(wins[2].x[0], np.sin(2 * np.pi * 0.5 * tt), atol=2e-3)


def test_a_device_slower_than_the_model_has_no_holes_but_its_own_missing_samples_are_counted():
    """A 50 Hz board into a 100 Hz bundle: every step is twice the model's, and none of them is a hole (a
    walkthrough's run counted 12,009 'filled gaps' in 12,010 samples and flagged every event); 2 samples the
    board lost are one filled hole, and a 2 s silence restarts the windows."""
    sig = np.random.default_rng(2).normal(size=(3, 1000)).astype(np.float32)
    t = np.arange(1000) / 50.0
    w = StreamWindower(3, 100.0, window=100, stride=50, mode="sliding")
    wins = _feed(w, sig, t)
    assert len(wins) == (2000 - 100) // 50 + 1 - 1 and not any(win.filled_gap for win in wins)
    assert w.time_gaps == {"filled": 0, "reset": 0}
    t2 = t.copy()
    t2[500:] += 0.04  # 2 samples lost at 50 Hz (bridged: at most max_fill_s = 0.05 s)
    t2[800:] += 2.0
    w2 = StreamWindower(3, 100.0, window=100, stride=50, mode="sliding")
    flagged = [win for win in _feed(w2, sig, t2) if win.filled_gap]
    assert w2.time_gaps == {"filled": 1, "reset": 1}
    assert flagged and all(win.t_start <= 10.04 <= win.t_end + 0.05 for win in flagged)


def test_no_window_spans_a_gap_but_short_gaps_are_filled_and_flagged():
    sig = np.random.default_rng(1).normal(size=(3, 600)).astype(np.float32)
    t = np.arange(600) / 100.0
    t[300:] += 2.0  # a 2 s hole
    w = StreamWindower(3, 100.0, window=100, stride=50, mode="sliding")
    for win in _feed(w, sig, t):
        assert not (win.t_start < 3.0 < win.t_end + 0.01 and win.t_end > 4.9), "a window spans the gap"
        assert win.t_end - win.t_start == pytest.approx(0.99)
    t2 = np.arange(600) / 100.0
    t2[300:] += 0.03  # 3 missing samples: filled by interpolation, flagged
    flagged = [win for win in _feed(StreamWindower(3, 100.0, 100, 50, "sliding"), sig, t2) if win.filled_gap]
    assert flagged and all(win.t_start <= 3.0 <= win.t_end + 0.05 for win in flagged)


def test_nan_and_shape_errors():
    w = StreamWindower(3, 100.0, 100, 50, "sliding")
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        w.push(np.zeros((5, 2)), np.arange(5.0))
    with pytest.raises(ValueError, match="NaN"):
        w.push(np.full((5, 3), np.nan), np.arange(5.0))


def test_segmentation_finds_the_synthetic_gestures():
    st = make_stream(SyntheticConfig(seed=1), n_gestures=20)
    w = StreamWindower(3, 100.0, window=128, stride=32, mode="segment", segment=SegmentParams())
    segs = _feed(w, st.signal, np.arange(st.signal.shape[1]) / 100.0, chunk=10)
    truth = st.extra["events"] / 100.0
    hits = 0
    for s, e, _ in truth:
        hits += any(seg.t_start < e and seg.t_end > s for seg in segs)
    assert hits >= 18 and len(segs) <= 24  # nearly every gesture found, few spurious segments
    assert all(seg.x.shape == (3, 128) for seg in segs)


def test_segments_start_and_end_where_the_motion_does():
    """The trailing energy window lags the motion; the segment's ends are moved back so that a gesture is
    cut where it starts and stops (as the uWave button did), not an energy window late."""
    rate, rng = 100.0, np.random.default_rng(0)
    rest = np.array([[0.1], [0.2], [0.97]]) + rng.normal(0, 0.005, (3, 600))
    sig = rest.copy()
    s, e = 200, 300  # one second of motion
    tt = np.arange(e - s) / rate
    sig[:, s:e] += np.stack([0.6 * np.sin(2 * np.pi * 2 * tt), 0.4 * np.cos(2 * np.pi * 2 * tt) - 0.4, 0 * tt])
    w = StreamWindower(3, rate, window=63, stride=16, mode="segment", segment=SegmentParams())
    segs = _feed(w, sig.astype(np.float32), np.arange(sig.shape[1]) / rate, chunk=10)
    assert len(segs) == 1
    assert abs(segs[0].t_start - s / rate) <= 0.1 and abs(segs[0].t_end - (e - 1) / rate) <= 0.1, (segs[0].t_start, segs[0].t_end)
    # the old setting (no release lag, a whole energy window of onset lag) cut a quarter second wide on each side
    old = StreamWindower(3, rate, window=63, stride=16, mode="segment",
                         segment=SegmentParams(onset_lag_s=0.2, release_lag_s=0.0))  # fmt: skip
    o = _feed(old, sig.astype(np.float32), np.arange(sig.shape[1]) / rate, chunk=10)[0]
    assert o.t_start < s / rate - 0.15 and o.t_end > (e - 1) / rate + 0.15


def test_a_whole_recording_in_one_call_gives_the_segments_of_board_sized_frames():
    """One push of thousands of samples (a file replayed at once) cuts the same gestures as 10-sample frames;
    before, the ring buffer had dropped the early gestures by the time their segments ended."""
    st = make_stream(SyntheticConfig(seed=2), n_gestures=30)
    t = np.arange(st.signal.shape[1]) / 100.0
    framed = _feed(StreamWindower(3, 100.0, 128, 32, "segment", SegmentParams()), st.signal, t, chunk=10)
    whole = StreamWindower(3, 100.0, 128, 32, "segment", SegmentParams()).push(st.signal.T, t)
    assert len(framed) >= 25 and len(whole) == len(framed)
    for a, b in zip(whole, framed, strict=True):
        assert a.t_start == pytest.approx(b.t_start) and a.t_end == pytest.approx(b.t_end)
        np.testing.assert_allclose(a.x, b.x, atol=1e-5)


def test_a_gyroscope_beside_the_accelerometer_does_not_move_the_live_cut():
    """The live cut of a model with a gyroscope measures the accelerometer (segmenter.motion_rows), as `record`
    does: the same gestures as the accelerometer alone, each window carrying all six channels."""
    st = make_stream(SyntheticConfig(seed=2), n_gestures=12)
    t = np.arange(st.signal.shape[1]) / 100.0
    gyro = np.random.default_rng(1).normal(0.0, 0.05, (3, st.signal.shape[1])).astype(np.float32)
    x6 = np.concatenate([st.signal, gyro])
    acc = _feed(StreamWindower(3, 100.0, 128, 32, "segment", SegmentParams()), st.signal, t)
    six = _feed(StreamWindower(6, 100.0, 128, 32, "segment", SegmentParams(), motion=[0, 1, 2]), x6, t)
    assert len(acc) >= 10 and len(six) == len(acc)
    for a, b in zip(acc, six, strict=True):
        assert a.t_start == pytest.approx(b.t_start) and b.x.shape == (6, 128)
        np.testing.assert_allclose(b.x[:3], a.x, atol=1e-5)
    every = _feed(StreamWindower(6, 100.0, 128, 32, "segment", SegmentParams()), x6, t)
    assert len(every) < len(acc) // 2  # the gyroscope's rest noise alone keeps every channel's energy up
