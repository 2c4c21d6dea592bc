import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset, make_stream


def test_metadata_from_bundle_and_input_errors(small_bundle):
    with GestureRuntime(small_bundle) as rt:
        md = rt.metadata
        assert md["labels"] == rt.labels and md["window"] == 128 and md["channels"] == ["acc_x", "acc_y", "acc_z"]
        with pytest.raises(ValueError, match=r"expected a window of shape \[3, 128\]"):
            rt.classify(np.zeros((2, 128)))
        with pytest.raises(ValueError, match="NaN"):
            rt.classify(np.full((3, 128), np.nan))
        p = rt.classify(make_dataset(SyntheticConfig(reps=1, length=128)).X_test[0])
        assert p.probs.shape == (8,) and abs(p.probs.sum() - 1) < 1e-5 and p.latency_ms > 0


def test_unknown_for_out_of_distribution_input(small_bundle):
    with GestureRuntime(small_bundle, decision=DecisionConfig(confidence=0.0)) as rt:  # the OOD score alone decides
        rng = np.random.default_rng(0)
        odd = [rt.classify(rng.normal(0, 3, size=(3, 128)) ** 3) for _ in range(40)]  # not a gesture at all
        real = [rt.classify(x) for x in make_dataset(SyntheticConfig(reps=6, length=128)).X_train[:40]]
        unknown_odd = np.mean([p.label == "unknown" for p in odd])
        unknown_real = np.mean([p.label == "unknown" for p in real])
        # this weakly trained fixture model scores its own validation windows up to about 0.18 and these up
        # from about 0.2: the gate, set so that about 1 % of valid gestures are answered unknown (its tail
        # estimated with the model's cross-fitted scores), lets part of them through (measured 0.425; 0.5-0.55
        # when the tail came from its 56 validation windows alone, which rejected more valid gestures)
        assert unknown_odd >= 0.35 and unknown_real <= 0.2, (unknown_odd, unknown_real)


def test_stream_spotting_reports_each_gesture_once(small_bundle):
    st = make_stream(SyntheticConfig(seed=0, reps=6), n_gestures=15)  # user 8: held out in training
    t = np.arange(st.signal.shape[1]) / 100.0
    # every segment becomes an event (the weakly trained fixture model is under-confident): this tests spotting
    with GestureRuntime(small_bundle, decision=DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))) as rt:
        events = []
        for i in range(0, st.signal.shape[1], 10):
            events += rt.feed(st.signal[:, i : i + 10].T, t[i : i + 10])
    truth = st.extra["events"]
    matched = 0
    for s, e, _lab in truth:
        hits = [ev for ev in events if ev.window_start < e / 100 + 0.3 and ev.window_end > s / 100 - 0.3]
        assert len(hits) <= 1, "a gesture was reported more than once"
        matched += bool(hits)
    assert matched >= 12
    assert all(set(ev.to_json()) >= {"t", "label", "confidence", "probs", "latency_ms", "window_start", "window_end"}
               for ev in events)  # fmt: skip


def test_sliding_mode_hits_and_suppression(small_bundle, monkeypatch):
    with GestureRuntime(small_bundle, decision=DecisionConfig(confidence=0.0, hits=3, suppression_s=2.0,
                                                            ood_threshold=float("inf"))) as rt:  # fmt: skip
        rt.bundle.manifest["input_mode"] = "sliding"
        x = make_dataset(SyntheticConfig(reps=1, length=128)).X_test[0]
        from edgessl.edge_runtime.stream import ModelInput

        events = [rt._decide(ModelInput(x, i * 0.3, i * 0.3 + 1.28), rt.classify(x)) for i in range(12)]
        fired = [i for i, e in enumerate(events) if e is not None]
        assert fired[0] == 2  # the third consecutive agreeing window
        assert all(b - a >= 2.0 / 0.3 - 1 for a, b in zip(fired, fired[1:], strict=False))  # suppressed in between


def test_whole_runtime_path_without_torch_against_simulated_device(small_bundle, tmp_path):
    """torch blocked: bundle -> runtime -> transport -> simulated serial IMU -> events."""
    script = textwrap.dedent(f"""
        import sys, json
        sys.modules["torch"] = None
        import numpy as np
        from edgessl.edge_runtime.runtime import GestureRuntime, DecisionConfig
        from edgessl.firmware_bridge.simulator import SimulatedImu
        from edgessl.firmware_bridge.transport import ImuStream, SampleBlock, Gap
        from edgessl.synthetic import SyntheticConfig, make_stream
        st = make_stream(SyntheticConfig(seed=0), n_gestures=6, idle_s=(0.8, 1.2))
        sim = SimulatedImu(st.signal, 100.0, st.channel_names, st.channel_units, speed=4.0, loop=False,
                           link={str(tmp_path / "imu")!r})
        sim.start()
        events = []
        with GestureRuntime({str(small_bundle)!r}, decision=DecisionConfig(confidence=0.0)) as rt, ImuStream(sim.path) as dev:
            for ev in dev.blocks(duration=4.5):
                if isinstance(ev, Gap):
                    rt.gap()
                else:
                    events += [e.to_json() for e in rt.feed(ev.values, ev.t_device)]
        sim.stop()
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
        print(json.dumps({{"events": events, "truth": st.extra["events"].tolist()}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["events"]) >= 4
    assert all(e["label"] for e in out["events"])


def test_run_cli_json_lines(small_bundle, tmp_path):
    from edgessl.firmware_bridge.simulator import SimulatedImu

    st = make_stream(SyntheticConfig(seed=0), n_gestures=5, idle_s=(0.8, 1.2))
    with SimulatedImu(st.signal, 100.0, st.channel_names, st.channel_units, speed=4.0, link=str(tmp_path / "imu")) as sim:
        r = subprocess.run([sys.executable, "-m", "edgessl", "run", str(small_bundle), "--port", sim.path, "--json",
                            "--seconds", "3", "--confidence", "0.3", "--record", str(tmp_path / "rec.csv")],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    events = [x for x in lines if "label" in x]  # the other lines say what they are: device, gap, stats
    assert events and set(events[0]) >= {"t", "label", "confidence", "probs", "latency_ms", "window_start", "window_end"}
    assert lines[0] == {"providers": ["CPUExecutionProvider"]} and lines[-1]["stats"]["providers"] == lines[0]["providers"]
    assert lines[1] == {"device": {"state": "streaming", "port": sim.path}} and set(lines[-1]) == {"stats"}
    assert lines[-1]["stats"]["events"] == len(events) and lines[-1]["stats"]["device"]["delivered_samples"] > 200
    share = lines[-1]["stats"]["unknown_share"]  # judged against the calibrated gates only: --confidence moved one
    assert share["decided"] >= len(events) and share["calibrated"] > 0 and share["unfamiliar"] is False
    from edgessl.datasets import load

    rec = load(f"csv:{tmp_path / 'rec.csv'}")
    assert rec.signal.shape[0] == 3 and rec.signal.shape[1] > 200  # lossless: the simulator's int16 counts / scale
    counts = rec.signal * (32768 / 8.0)
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)


def test_providers_fallback_warns(small_bundle):
    with pytest.warns(UserWarning, match="not in this onnxruntime"):  # a provider of another platform's builds
        rt = GestureRuntime(small_bundle, providers=["CoreMLExecutionProvider", "CPUExecutionProvider"])
    assert rt.providers == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="'NoSuch' is not an onnxruntime execution provider"):
        GestureRuntime(small_bundle, providers=["NoSuch", "CPU"])


@pytest.mark.parametrize(("scale", "clock", "expected"), [
    (1.0, 1.0, None),  # g and seconds: nothing to say
    (1000.0, 1.0, "look like mg"),
    (9.81, 1.0, "look like m/s²"),
    (16384.0, 1.0, "raw counts (16384 per g, e.g. an MPU-6050 or LSM6DS3 at ±2 g); divide them by 16384"),
    (1.0, 1000.0, "look like milliseconds: divide by 1000"),
    (1.0, 1e6, "look like microseconds: divide by 1e+06"),
])  # fmt: skip
def test_feed_says_once_when_units_or_timestamps_are_wrong(small_bundle, scale, clock, expected):
    """An app feeding its own samples (no bridge, no `run`) in mg or with millisecond timestamps got no
    event and no word (walkthrough): the first 2 s are checked, a problem is warned once and kept."""
    import warnings

    from edgessl.edge_runtime.runtime import InputWarning

    st = make_stream(SyntheticConfig(seed=0, reps=6), n_gestures=4)
    t = np.arange(st.signal.shape[1]) / 100.0 * clock
    with warnings.catch_warnings(record=True) as caught, GestureRuntime(small_bundle) as rt:
        warnings.simplefilter("always")
        for i in range(0, st.signal.shape[1], 10):
            rt.feed(st.signal[:, i : i + 10].T * scale, t[i : i + 10])
    said = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    if expected is None:
        assert said == [] and rt.input_problems == []
    else:
        assert len(said) == 1 and expected in said[0] and said[0].startswith("GestureRuntime.feed: "), said
        assert rt.input_problems == [said[0].removeprefix("GestureRuntime.feed: ")]


def test_a_closed_runtime_says_so(small_bundle):
    with GestureRuntime(small_bundle) as rt:
        window = np.zeros((len(rt.channels), rt.window), np.float32)
        rt.classify(window)
    with pytest.raises(RuntimeError, match="this GestureRuntime is closed"):
        rt.classify(window)
