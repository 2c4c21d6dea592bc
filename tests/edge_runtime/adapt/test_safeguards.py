from collections import deque

import numpy as np
import pytest

from edgessl.edge_runtime.adapt import Safeguards, Tent, build_adapter
from edgessl.edge_runtime.adapt.safeguards import PredictionHistory, collapse_reason, collapsed, is_idle, window_moments
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def _accuracy(rt, X, y):
    return float(np.mean([rt.classify(x).index == yi for x, yi in zip(X, y, strict=True)]))


@pytest.mark.parametrize("method", ["t3a", "tent", "ttt", "input", "input+tent"])
@pytest.mark.slow
def test_adversarial_streams_do_not_hurt_the_clean_stream(small_bundle, ttt_bundle, method):
    """10^4 windows of one class, then sensor noise, then a clean stream: within 1 pt of the source model."""
    bundle = ttt_bundle if method == "ttt" else small_bundle  # ttt needs a model fine-tuned with its head
    ds = make_dataset(SyntheticConfig(reps=10, length=128))
    X, y = ds.X_test, ds.y_test
    with GestureRuntime(bundle, decision=ANY) as rt:
        source = _accuracy(rt, X, y)
    rng = np.random.default_rng(0)
    one = ds.X_train[ds.y_train == 0]
    with GestureRuntime(bundle, decision=ANY, adapter=build_adapter(method)) as rt:
        for i in range(10_000):
            rt.classify(one[i % len(one)] + rng.normal(0, 0.01, size=one.shape[1:]).astype(np.float32))
        for _ in range(300):
            rt.classify((np.array([[0.0], [0.0], [1.0]]) + rng.normal(0, 0.02, size=(3, 128))).astype(np.float32))
        adapted = _accuracy(rt, X, y)
    assert adapted >= source - 0.01, (method, source, adapted)


def test_without_safeguards_the_one_class_stream_does_hurt(small_bundle):
    """The safeguards are what keep the previous test green: switch them off and tent collapses."""
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    with GestureRuntime(small_bundle, decision=ANY) as rt:
        source = _accuracy(rt, ds.X_test, ds.y_test)
    off = Safeguards(max_entropy_frac=10, min_history=0, max_class_share=1.0, collapse_entropy_frac=0.0,
                     max_disagreement=1.0, source_penalty=0.0)  # fmt: skip
    one = ds.X_train[ds.y_train == 0]
    with GestureRuntime(small_bundle, decision=ANY, adapter=Tent(safeguards=off, lr=0.5)) as rt:
        for i in range(2000):
            rt.classify(one[i % len(one)])
        unguarded = _accuracy(rt, ds.X_test, ds.y_test)
    assert unguarded < source - 0.05, (source, unguarded)


def test_collapse_detector_resets(small_bundle):
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter("t3a")) as rt:
        ad = rt.adapter
        for k in range(ad.sg.history - 1):  # the classification below completes a multiple of check_every
            ad.recent.record(0, k % 8)  # adapted says 0, source disagrees
        assert ad.collapsed()
        ad.P[0] += 1.0
        rt.classify(make_dataset(SyntheticConfig(reps=1, length=128)).X_test[0])
        assert ad.resets == 1 and np.allclose(ad.P, ad.P0)


def test_prediction_history_keeps_its_histograms_in_step_with_the_pairs():
    rng = np.random.default_rng(0)
    h, ref = PredictionHistory(size=10, n_classes=4), deque(maxlen=10)
    for _ in range(57):
        k, src = (int(v) for v in rng.integers(0, 4, 2))
        h.record(k, src)
        ref.append((k, src))
        assert list(h.pairs) == list(ref)
        np.testing.assert_array_equal(h.adapted, np.bincount([a for a, _ in ref], minlength=4))
        np.testing.assert_array_equal(h.source, np.bincount([s for _, s in ref], minlength=4))
        assert h.disagree == sum(a != s for a, s in ref)
    assert len(h) == 10 and h.seen == 57


def test_idle_is_a_window_without_motion():
    rng = np.random.default_rng(0)
    still = np.array([[0.0], [0.0], [1.0]]) + rng.normal(0, 0.005, (3, 64))  # at rest, any orientation
    assert is_idle(still, 0.03)
    moving = still + np.sin(np.linspace(0, 6, 64))[None] * np.array([[0.2], [0.0], [0.0]])
    assert not is_idle(moving, 0.03)


def test_window_moments_and_collapse_check_match_their_numpy_definitions():
    """The per-window path's Python-float versions agree with the plain numpy formulas (float32 windows in g,
    gravity on one axis: the case where E[x²] − mean² could lose precision)."""
    rng = np.random.default_rng(1)
    x = (np.array([[0.1], [-0.3], [0.98]]) + rng.normal(0, 0.02, (3, 63))).astype(np.float32)
    means, var = window_moments(x)
    np.testing.assert_allclose(means, x.astype(np.float64).mean(-1), rtol=1e-12)
    np.testing.assert_allclose(var, x.astype(np.float64).var(-1), rtol=1e-6)
    sg = Safeguards(history=20)
    for counts_a, counts_s, disagree in (([18, 1, 1, 0], [5, 5, 5, 5], 0), ([5, 5, 5, 5], [5, 5, 5, 5], 9), ([6, 5, 5, 4], [5, 5, 5, 5], 2)):
        h = PredictionHistory(20, 4)
        h.pairs.extend([(0, 0)] * 20)
        h.adapted, h.source, h.disagree = np.array(counts_a), np.array(counts_s), disagree
        pa, ps = h.adapted / 20, h.source / 20
        H = lambda p: -sum(q * np.log(q) for q in p if q > 0)  # noqa: E731
        want = (H(pa) < sg.collapse_entropy_frac * np.log(4) and H(pa) < 0.8 * H(ps)) or disagree > sg.max_disagreement * 20
        assert collapsed(h, sg, 4) == want
        why = collapse_reason(h, sg, 4)  # said by run with the reset (a walkthrough saw resets and no reason)
        assert (why is not None) == want and (why is None or "less varied" in why or f"on {disagree} of its last 20" in why)
