"""The C live path (essl_stream) against GestureRuntime's segment mode on the same sample stream."""

import json

import numpy as np
import pytest

from edgessl.errors import UsageError
from edgessl.export.c_model import STATE_FILE, export_c
from tests.export.c_harness import RUN_STREAM, build, compiler, run_stream

pytest.importorskip("torch")  # the bundle comes from the session's small fine-tuned model


@pytest.fixture(scope="module")
def stream_exe(small_bundle, tmp_path_factory):
    compiler()
    out = tmp_path_factory.mktemp("c_stream")
    export_c(small_bundle, out)
    return build(out, RUN_STREAM, "run_stream", ["essl_model.c", "essl_stream.c"])


def python_events(bundle, samples, t_ms, state=None):
    """The runtime's events, fed as a board delivers them (frames of 10 samples); unknown ones reported."""
    from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime

    with GestureRuntime(bundle, decision=DecisionConfig(report_unknown=True), user_state=state) as rt:
        events = []
        for i in range(0, len(samples), 10):
            events += rt.feed(samples[i : i + 10], t_ms[i : i + 10] / 1000.0)
        labels = rt.labels
    return [(labels.index(e.label) if e.label in labels else -1, e.window_start * 1e3, e.window_end * 1e3,
             e.confidence, e.reason) for e in events], rt.stats  # fmt: skip


def test_c_stream_emits_the_runtimes_events(small_bundle, stream_exe):
    from edgessl.synthetic import SyntheticConfig, make_stream

    st = make_stream(SyntheticConfig(), n_gestures=40)
    x = st.signal.T.astype(np.float32)
    t = (np.arange(len(x)) * 10 + 4_294_000_000).astype(np.int64)  # the millisecond clock wraps in the middle
    keep = np.ones(len(x), bool)
    keep[3000:3011] = False  # 120 ms lost: bridged by interpolation
    keep[6000:6200] = False  # 2 s lost: the segmentation restarts
    x, t = x[keep], t[keep]
    t[9000:] -= 50_000  # the device clock jumps back: a new timeline (the suppression is cleared too)
    t[4000] = t[3999]  # a repeated millisecond, and a step 5 ms back: a clock's jitter on both sides, not a restart
    t[5000] = t[4999] - 5
    # then 3 bursts of vibration (white noise, 0.3 g, 1 s) with the board at rest between them, 5 s of shaking
    # (longer than any gesture: not classified) and a 0.1 s bump (shorter than any)
    rng = np.random.default_rng(0)
    rest = x[-1]
    extra = np.concatenate([rest + rng.normal(0, s, (n, x.shape[1]))
                            for s, n in [((0.003, 200), (0.3, 100))[i % 2] for i in range(6)]
                            + [(0.003, 200), (0.3, 500), (0.003, 200), (0.5, 10), (0.003, 200)]])  # fmt: skip
    x = np.concatenate([x, extra.astype(np.float32)])
    t = np.concatenate([t, t[-1] + 10 * np.arange(1, len(extra) + 1)])
    t_ms = (t % 2**32).astype(np.uint32)
    c_events, stats = run_stream(stream_exe, x, t_ms)
    py_events, py_stats = python_events(small_bundle, x, t.astype(np.float64))
    assert len(py_events) >= 30 and any(e[0] == -1 for e in py_events) and any(e[0] >= 0 for e in py_events)
    assert [e[0] for e in c_events] == [e[0] for e in py_events]
    for c, p in zip(c_events, py_events, strict=True):
        assert abs(c[1] - p[1] % 2**32) <= 10 and abs(c[2] - p[2] % 2**32) <= 10  # within one sample (100 Hz)
        assert c[3] == pytest.approx(p[3], abs=2e-3)
    samples, segments, events, suppressed, window_resets, timeline_resets, too_short, too_long, not_in_g, cut_off, jittered = stats
    assert jittered == 2 == py_stats["jittered_timestamps"]
    assert not_in_g == 0  # a stream in g
    assert samples == len(x) and events == len(py_events) and segments >= events
    assert window_resets == 1 == py_stats["window_resets"] and timeline_resets == 1 == py_stats["backwards_timestamps"]
    # movements never classified are counted alike on both sides: the shaking and the bump at least
    assert too_long == py_stats["movements_too_long"] >= 1 and too_short == py_stats["movements_too_short"] >= 1
    assert cut_off == py_stats["movements_cut_off"]
    reasons = {e[5] for e in c_events if e[0] == -1}
    assert reasons <= {1, 2, 3} and all(e[5] == 0 for e in c_events if e[0] >= 0)
    # the noise gate, on both sides: the 3 bursts and nothing else
    words = {0: None, 1: "low_confidence", 2: "out_of_distribution", 3: "noise"}
    assert [words[e[5]] for e in c_events] == [e[4] for e in py_events]
    # (the 5 s of shaking are one movement too long to be a gesture, its tail included: not classified)
    assert [e[4] for e in py_events].count("noise") == py_stats["unknown_noise"] == 3
    assert [e[4] for e in py_events][-3:] == ["noise"] * 3


def test_c_stream_of_a_gentle_cut_bundle_emits_the_runtimes_events(small_bundle, tmp_path):
    """A bundle trained on a slow person's takes carries the gentle cut (``edgessl export``); the C library
    cuts with the bundle's segmentation: the same events as the runtime on that person's stream."""
    import dataclasses

    from edgessl.datasets.synthetic import GESTURES, SyntheticPerson
    from edgessl.edge_runtime.bundle import MANIFEST, open_bundle
    from edgessl.export.bundle import write_bundle
    from edgessl.segmenter import SegmentParams, profile

    compiler()
    b = open_bundle(small_bundle)
    gentle = profile(b.segmentation or SegmentParams(), "gentle")
    manifest = {k: v for k, v in b.manifest.items() if k not in {"members", "schema_version", "edgessl_version"}}
    bundle = tmp_path / "gentle.essl"
    write_bundle(bundle, {**manifest, "segmentation": dataclasses.asdict(gentle)},
                 {n: d for n, d in b.members.items() if n != MANIFEST})  # fmt: skip
    out = tmp_path / "c"
    export_c(bundle, out)
    exe = build(out, RUN_STREAM, "run_stream", ["essl_model.c", "essl_stream.c"])
    person = SyntheticPerson("D", 3, perform=",".join(GESTURES * 2))
    x = person.next(6000).T.astype(np.float32)
    t = (np.arange(len(x)) * 10).astype(np.int64)
    c_events, stats = run_stream(exe, x, t.astype(np.uint32))
    py_events, py_stats = python_events(bundle, x, t.astype(np.float64))
    assert len(py_events) >= 14 and py_stats["movements_too_short"] <= 1  # the slow gestures cut whole
    assert [e[0] for e in c_events] == [e[0] for e in py_events]
    for c, p in zip(c_events, py_events, strict=True):
        assert abs(c[1] - p[1]) <= 10 and abs(c[2] - p[2]) <= 10 and c[3] == pytest.approx(p[3], abs=2e-3)


def test_c_stream_with_a_user_state_turns_a_mounted_board_as_the_runtime_does(small_bundle, stream_exe, tmp_path):
    """``export-c --state``: a board turned 90° in its case (the state's mounting, from ``enroll --calibrate``)
    and the state's gentle cut go into the C stream, which then emits the runtime-with-the-state's events; the
    library without the state answers the turned board otherwise. Enrolled takes cannot go, and are counted."""
    from edgessl.edge_runtime.bundle import open_bundle
    from edgessl.edge_runtime.enroll import UserState
    from edgessl.export.c_model import describe
    from edgessl.synthetic import SyntheticConfig, make_stream, rotation_matrix

    b = open_bundle(small_bundle)
    R = rotation_matrix(np.array([1.0, 2.0, 3.0]), np.pi / 2)  # board axes -> the training data's
    acc = [i for i, u in enumerate(b.units) if u == "g"][:3]
    x = make_stream(SyntheticConfig(seed=5), n_gestures=30).signal.T.astype(np.float32)
    x[:, acc] = x[:, acc] @ R  # what the turned board sends: R.T @ each sample
    t = (np.arange(len(x)) * 10).astype(np.int64)
    state = tmp_path / "user.npz"
    takes = np.ones((2, b.adaptation()["prototypes"].shape[1]), np.float32)
    UserState(b.checksum, b.labels, takes=takes, classes=np.array([0, 0]), mounting=R, segmentation="gentle").save(state)
    out = tmp_path / "c"
    info = export_c(small_bundle, out, state=state)
    exe = build(out, RUN_STREAM, "run_stream", ["essl_model.c", "essl_stream.c"])
    c_events, _ = run_stream(exe, x, t.astype(np.uint32))
    # the state as the C holds it (no takes) is written beside the sources: run with it decides as the board
    py_events, _ = python_events(small_bundle, x, t.astype(np.float64), state=out / STATE_FILE)
    assert len(py_events) >= 20
    assert [e[0] for e in c_events] == [e[0] for e in py_events]
    for c, p in zip(c_events, py_events, strict=True):
        assert abs(c[1] - p[1]) <= 10 and abs(c[2] - p[2]) <= 10 and c[3] == pytest.approx(p[3], abs=2e-3)
    plain, _ = run_stream(stream_exe, x, t.astype(np.uint32))
    assert [e[0] for e in plain] != [e[0] for e in c_events]  # the turn changes what the board's gestures read as
    us = info["user_state"]
    assert us["mounting_deg"] == pytest.approx(90.0, abs=0.1) and us["segmentation"] == "gentle"
    assert us["not_carried"] == {"enrolled_takes": 2, "classes": {b.labels[0]: 2}, "new_classes": []}
    said = describe(info, str(out))
    assert "the board turned 90°" in said and "2 enrolled take(s) of 1 gesture(s) are not in the C library" in said
    assert f"{out / STATE_FILE} holds them alone" in said and "wrote 6 files" in said
    assert UserState.load(state).counts() == {b.labels[0]: 2}  # the user's state is read, never changed
    assert json.loads((out / "essl_model_info.json").read_text())["stream"]["mounting"]["triads"] == [acc]
    with pytest.raises(UsageError, match="the file this export writes"):
        export_c(small_bundle, out, state=out / STATE_FILE, force=True)
    export_c(small_bundle, out, force=True)  # a library without the turn: the earlier export's state goes with it
    assert not (out / STATE_FILE).exists()


@pytest.mark.parametrize(("scale", "flagged"), [(1.0, 0), (9.81, 1), (1000.0, 1)])
def test_c_stream_flags_an_accelerometer_not_in_g(stream_exe, scale, flagged):
    """Firmware that pushes m/s² or mg got no event and no reason but `too_long` (walkthrough): the first 2 s
    are checked, as the Python runtime does, and `stats.not_in_g` says so."""
    from edgessl.synthetic import SyntheticConfig, make_stream

    st = make_stream(SyntheticConfig(seed=0, reps=6), n_gestures=6)
    x = (st.signal.T * scale).astype(np.float32)
    t_ms = (np.arange(len(x)) * 10).astype(np.uint32)
    _, stats = run_stream(stream_exe, x, t_ms)
    assert stats[8] == flagged  # (not_in_g)


def test_a_movement_under_way_at_the_start_or_after_a_gap_is_counted_not_classified(small_bundle, stream_exe):
    """A stream that starts in the middle of a gesture, or restarts (a 2.5 s gap) in the middle of one: that
    tail is no whole gesture; neither side classifies it (it was cut and named before), both count it."""
    from edgessl.synthetic import SyntheticConfig, make_stream

    st = make_stream(SyntheticConfig(), n_gestures=12)
    spans = st.extra["events"][:, :2]
    x = st.signal.T.astype(np.float32)
    t = np.arange(len(x)) * 10  # ms
    first = int(spans[1].mean())  # the stream starts inside the second gesture
    mid = int(spans[5].mean())  # and loses the 2.5 s before the middle of the sixth
    keep = np.ones(len(x), bool)
    keep[:first] = False
    keep[mid - 250 : mid] = False
    x, t = x[keep], t[keep]
    c_events, stats = run_stream(stream_exe, x, t.astype(np.uint32))
    py_events, py_stats = python_events(small_bundle, x, t.astype(np.float64))
    assert py_stats["movements_cut_off"] == stats[9] == 2 and py_stats["window_resets"] == 1  # (cut_off)
    assert [e[0] for e in c_events] == [e[0] for e in py_events]
    # no event for either tail: each event starts after the tail it follows ended
    tails = [(first * 10, spans[1][1] * 10), (mid * 10, spans[5][1] * 10)]
    assert not [e for e in py_events for a, b in tails if a - 10 <= e[1] < b], py_events
    whole = [s for s in spans if s[0] * 10 >= first * 10 and not (mid - 250 <= s[0] < mid) and not (s[0] < mid <= s[1])]
    assert len(py_events) >= len(whole) - 1  # the whole gestures are still cut (one may be a bump or merged)


@pytest.mark.filterwarnings("ignore:the model answers")  # 3 epochs: the cut is under test, not the model
def test_c_stream_of_a_model_with_a_gyroscope_cuts_on_its_accelerometer(tmp_path):
    """A model of acceleration (g) and rotation (rad/s): both the runtime and the C library measure the cut's
    energy on the accelerometer (segmenter.motion_rows), so a gyroscope's rest noise neither starts a gesture
    nor keeps one going; the same events on both sides."""
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.synthetic import SyntheticConfig, make_dataset, make_stream
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, finetune

    compiler()
    rng = np.random.default_rng(0)
    ds = make_dataset(SyntheticConfig(reps=4, length=128))

    def six(X):  # a hand-held gyroscope's rest noise beside the accelerometer
        return np.concatenate([X, rng.normal(0.0, 0.05, (len(X), 3, X.shape[-1]))], axis=1).astype(np.float32)

    npz = tmp_path / "six.npz"
    np.savez(npz, X_train=six(ds.X_train), y_train=ds.y_train, X_test=six(ds.X_test), y_test=ds.y_test,
             class_names=np.array(ds.class_names), rate_hz=np.array(100.0),
             channel_names=np.array(["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]),
             channel_units=np.array(["g", "g", "g", "rad/s", "rad/s", "rad/s"]))  # fmt: skip
    finetune(FinetuneConfig(data=DataConfig(spec=f"npz:{npz}"), fit=FitConfig(epochs=3, batch_size=64, warmup_epochs=1)),
             tmp_path / "ft", progress=False, plots=False)  # fmt: skip
    bundle = tmp_path / "six.essl"
    export_bundle(tmp_path / "ft", bundle, ExportConfig(min_agreement=0.0, input_mode="segment"), progress=False)
    export_c(bundle, tmp_path / "c")
    assert "#define ESSL_STREAM_MOTION_ROWS   0, 1, 2" in (tmp_path / "c" / "essl_stream.h").read_text()
    exe = build(tmp_path / "c", RUN_STREAM, "run_stream", ["essl_model.c", "essl_stream.c"])
    st = make_stream(SyntheticConfig(), n_gestures=12)
    x = np.concatenate([st.signal, rng.normal(0.0, 0.05, (3, st.signal.shape[1]))]).T.astype(np.float32)
    t = (np.arange(len(x)) * 10).astype(np.int64)
    c_events, _ = run_stream(exe, x, t.astype(np.uint32))
    py_events, py_stats = python_events(bundle, x, t.astype(np.float64))
    assert len(py_events) >= 10 and py_stats["movements_too_long"] == 0
    assert [e[0] for e in c_events] == [e[0] for e in py_events]
    for c, p in zip(c_events, py_events, strict=True):
        assert abs(c[1] - p[1]) <= 10 and abs(c[2] - p[2]) <= 10 and c[3] == pytest.approx(p[3], abs=2e-3)
