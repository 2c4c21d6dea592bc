"""Gestures answered 'unknown' are counted with their reason and can be shown (``run --show-unknown``)."""

import numpy as np
import pytest

from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_stream


def _run(bundle, decision: DecisionConfig) -> tuple[list, dict]:
    st = make_stream(SyntheticConfig(seed=0, reps=6), n_gestures=8)
    t = np.arange(st.signal.shape[1]) / 100.0
    with GestureRuntime(bundle, decision=decision) as rt:
        assert rt.metadata["input_mode"] == "segment"
        events = [e for i in range(0, len(t), 50) for e in rt.feed(st.signal[:, i : i + 50].T, t[i : i + 50])]
        return events, dict(rt.stats)


def test_unknown_gestures_are_counted_by_reason_and_shown_on_request(small_bundle):
    everything, _ = _run(small_bundle, DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf")))
    assert len(everything) >= 6  # 8 gestures performed: the segments the runtime cut
    # an out-of-distribution threshold nothing meets: every segment is 'unknown', each one counted
    hidden, stats = _run(small_bundle, DecisionConfig(confidence=0.0, ood_threshold=-1.0))
    assert hidden == [] and stats["unknown_out_of_distribution"] == len(everything)
    shown, _ = _run(small_bundle, DecisionConfig(confidence=0.0, ood_threshold=-1.0, report_unknown=True))
    assert len(shown) == len(everything) and {e.label for e in shown} == {"unknown"}
    # each shown one says why (JSON and terminal); a reported gesture has no reason
    assert {e.reason for e in shown} == {"out_of_distribution"} and all(e.to_json()["reason"] for e in shown)
    assert all(e.reason is None and "reason" not in e.to_json() for e in everything)
    low, _ = _run(small_bundle, DecisionConfig(confidence=1.01, ood_threshold=float("inf"), report_unknown=True))
    assert {e.reason for e in low} == {"low_confidence"}
    # a confidence nothing reaches: counted as low confidence instead
    hidden, stats = _run(small_bundle, DecisionConfig(confidence=1.01, ood_threshold=float("inf")))
    assert hidden == [] and stats["unknown_low_confidence"] == len(everything)
    assert stats.get("unknown_out_of_distribution", 0) == 0


def test_many_more_unknown_answers_than_calibrated_point_to_enrollment(small_bundle):
    """`run` compares the share of gestures answered `unknown` as unsure or unlike training with the share the
    export calibrated (2 % of its validation gestures): far more is a person or mounting the model lacks, and
    the advice is enrollment (a walkthrough's new person saw 40 % `unknown` and no word why)."""
    from edgessl.edge_runtime.cli import unfamiliar_text
    from edgessl.edge_runtime.runtime import UNFAMILIAR_MIN_GESTURES

    st = make_stream(SyntheticConfig(seed=0, reps=6), n_gestures=40)
    t = np.arange(st.signal.shape[1]) / 100.0
    cmd = "edgessl enroll m.essl --port P --state you.npz"

    def decided(decision: DecisionConfig, until: float | None = None) -> tuple[dict, int]:
        with GestureRuntime(small_bundle, decision=decision) as rt:
            named = sum(e.label != "unknown" for i in range(0, len(t), 50) if until is None or t[i] < until
                        for e in rt.feed(st.signal[:, i : i + 50].T, t[i : i + 50]))  # fmt: skip
            share = rt.unknown_share()  # (the Python API's: a walkthrough's service wanted run's advice too)
            assert share is not None and share["decided"] - share["unknown"] == named
            return share, named

    # a gate no gesture passes: every decided gesture is `unknown`, far above the calibrated 2 %
    share, named = decided(DecisionConfig(confidence=1.01))
    assert named == 0 and share["unknown"] == share["decided"] >= UNFAMILIAR_MIN_GESTURES and share["share"] == 1.0
    assert share["calibrated"] >= 0.02 and share["unfamiliar"]  # the export's target: 2 %
    said = unfamiliar_text(share, cmd, None)
    assert said.startswith(f"{share['unknown']} of {share['decided']} gestures (100%) answered unknown")
    assert f"calibrated {share['calibrated']:.0%}" in said and said.endswith(f"{cmd} --calibrate teaches the model "
                                                                             "theirs and finds a turned mounting (each "
                                                                             "gesture once; with this run stopped: the "
                                                                             "port is one program's at a time). If "
                                                                             "those were no gestures but everyday "
                                                                             "movement (getting up, turning round), "
                                                                             "`unknown` was the right answer: "
                                                                             "enrolling will not help there")  # fmt: skip
    assert "enrollment in anna.npz" in unfamiliar_text(share, cmd, "anna.npz")
    # too few gestures to judge: nothing said yet
    early, _ = decided(DecisionConfig(confidence=1.01), until=t[-1] * 0.2)
    assert 0 < early["decided"] < UNFAMILIAR_MIN_GESTURES and not early["unfamiliar"] and unfamiliar_text(early, cmd, None) == ""
    # every gesture answered: nothing to say
    none_, named = decided(DecisionConfig(confidence=0.0, ood_threshold=float("inf")))
    assert none_["unknown"] == 0 and none_["decided"] == named >= UNFAMILIAR_MIN_GESTURES and not none_["unfamiliar"]
    assert unfamiliar_text(none_, cmd, None) == ""
    # advised live, then the share fell below the advice's point by the end: the summary says so, not nothing
    fell = unfamiliar_text(none_, cmd, None, said=True)
    assert fell.startswith(f"0 of {none_['decided']} gestures (0%) answered unknown") and "fewer than when enrolling was " \
        "advised above" in fell and cmd not in fell


def test_noise_and_vibration_are_answered_unknown_before_the_model_and_gestures_are_not(small_bundle):
    """A segment as rough as sensor noise (a vibrating table, a loose connector, a knock) is answered `unknown`
    with reason "noise" by the bundle's default decisions — the model is not asked, and no adapter learns from
    it — while every gesture the user performs passes the noise gate."""
    from edgessl.edge_runtime.adapt import Adapter

    class Seen(Adapter):
        def __init__(self):
            super().__init__()
            self.windows = 0

        def observe(self, window, e, probs, ood=None, src=None):
            self.windows += 1

    st = make_stream(SyntheticConfig(seed=3, reps=6), n_gestures=12)
    rest = st.signal[:, -1:]
    rng = np.random.default_rng(1)
    bursts = [rest + rng.normal(0, s, (3, n)) for s in (0.05, 0.3, 1.0) for n in (60, 150)]
    still = rest + np.zeros((3, 200))
    x = np.concatenate([st.signal] + [p for b in bursts for p in (still, b)] + [still], axis=1).T
    t = np.arange(len(x)) / 100.0
    with GestureRuntime(small_bundle, decision=DecisionConfig(report_unknown=True), adapter=Seen()) as rt:
        assert rt.roughness_threshold is not None and 0 < rt.roughness_threshold < 1.0  # white noise scores 2
        events = [e for i in range(0, len(t), 50) for e in rt.feed(x[i : i + 50], t[i : i + 50])]
        observed, stats = rt.adapter.windows, dict(rt.stats)
    noise = [e for e in events if e.reason == "noise"]
    assert len(noise) == len(bursts) == stats["unknown_noise"]
    assert all(e.window_start >= st.signal.shape[1] / 100.0 for e in noise)  # the bursts, not the gestures
    assert all(e.roughness > rt.roughness_threshold and e.to_json()["reason"] == "noise" for e in noise)
    gestures = [e for e in events if e.window_end <= st.signal.shape[1] / 100.0]
    assert len(gestures) >= 10 and all(e.reason != "noise" for e in gestures)
    assert observed == len(events) - len(noise)  # the adapter saw every segment but the noise
    # a bundle's calibration record says how the gate was set
    from edgessl.edge_runtime.bundle import open_bundle

    cal = open_bundle(small_bundle).manifest["roughness_calibration"]
    assert cal["source"] == "labelled windows" and cal["windows"] > 50 and cal["rejection"] <= 0.01


def test_movements_no_gesture_can_be_are_counted_not_dropped_without_a_trace(small_bundle):
    """Shaking longer than any gesture (the segmenter's maximum) and a bump shorter than any are never
    classified; the runtime counts them, and every counter a reader looks up is there from the start."""
    with GestureRuntime(small_bundle) as rt:
        keys = ("unknown_noise", "unknown_low_confidence", "unknown_out_of_distribution", "movements_too_short",
                "movements_too_long")  # fmt: skip
        assert all(rt.stats[k] == 0 for k in keys) and set(keys) <= set(dict(rt.stats))
        rng = np.random.default_rng(0)
        rest = np.array([0.0, 0.0, 1.0])
        x = np.concatenate([rest + rng.normal(0, s, (n, 3)) for s, n in
                            ((0.003, 200), (0.3, 400), (0.003, 300), (0.5, 3), (0.003, 300))]).astype(np.float32)  # fmt: skip
        t = np.arange(len(x)) / 100.0
        for i in range(0, len(x), 50):
            rt.feed(x[i : i + 50], t[i : i + 50])
        assert rt.stats["movements_too_long"] == 1 and rt.stats["movements_too_short"] == 1, dict(rt.stats)
        # the shaking's tail after the segmenter's 3.2 s is no gesture either: nothing of it was classified
        assert rt.stats["unknown_noise"] == 0 and rt.latencies_ms == [], dict(rt.stats)


def test_the_noise_gate_never_lets_white_noise_through_however_few_the_windows():
    """A log-normal fitted to a handful of windows can put its 99.9 % quantile above white noise's roughness (2):
    a walkthrough's 8-window model let a vibrating board through as confident gestures. The cap holds it at 1."""
    import torch

    from edgessl.export.pipeline import ROUGHNESS_CAP, _roughness_threshold

    few = {"window_roughness": torch.tensor([0.02, 0.5, 0.03, 0.9, 0.04, 0.01, 0.6, 0.05])}
    thr, cal = _roughness_threshold(few, segment=True)
    assert thr == ROUGHNESS_CAP == 1.0 and cal["capped_from"] > 2.0 and cal["rejection"] == 0.0
    rough = {"window_roughness": torch.tensor([0.02, 1.3, 0.03, 0.04, 0.01, 0.05, 0.02, 0.03])}
    assert _roughness_threshold(rough, segment=True)[0] == pytest.approx(1.3)  # never below a labelled window
    many = {"window_roughness": torch.from_numpy(np.random.default_rng(0).lognormal(np.log(0.04), 0.3, 500))}
    thr, cal = _roughness_threshold(many, segment=True)
    assert thr < ROUGHNESS_CAP and "capped_from" not in cal
