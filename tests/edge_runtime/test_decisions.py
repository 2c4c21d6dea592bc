"""Gestures answered 'unknown' are counted with their reason and can be shown (``run --show-unknown``)."""

import numpy as np

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
    everything, _ = _run(small_bundle, DecisionConfig(confidence=0.0, ood_threshold=float("inf")))
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
