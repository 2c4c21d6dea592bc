import numpy as np
import pytest

from edgessl.edge_runtime.adapt import DEFAULT_METHOD, build_adapter
from edgessl.edge_runtime.bundle import SCHEMA_VERSION, SegmentParams, open_bundle
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def test_segmentation_parameters_from_the_manifest(small_bundle, rewrite):
    b = open_bundle(small_bundle)
    assert b.manifest["input_mode"] == "segment" and b.segmentation == SegmentParams(**b.manifest["segmentation"])
    # a bundle written before the lags existed gets their defaults; a sliding bundle has none
    seg = {k: v for k, v in b.manifest["segmentation"].items() if not k.endswith("_lag_s")}
    old = open_bundle(rewrite(small_bundle, "old.essl", update={"segmentation": {**seg, "threshold_g": 0.07}}))
    assert old.segmentation == SegmentParams(threshold_g=0.07)
    sliding = open_bundle(rewrite(small_bundle, "sliding.essl", update={"input_mode": "sliding", "segmentation": None}))
    assert sliding.segmentation is None


def test_an_older_schema_1_bundle_still_opens_classifies_and_adapts(small_bundle, rewrite):
    """Without the keys and arrays later exports added (preprocessing in the graph, input moments and their
    natural level, segmentation lags), a schema 1 bundle gives the same answers; the default adaptation
    runs (ttt without the input moments) and the chain input+tent leaves out the input correction it cannot
    do, with a warning."""
    b = open_bundle(small_bundle)
    seg = {k: v for k, v in b.manifest["segmentation"].items() if not k.endswith("_lag_s")}
    moments = [k for k in b.adaptation() if k.startswith("input_moments")]
    old = rewrite(small_bundle, "old.essl", drop_arrays=moments, drop_keys=("preprocessing_in_graph",),
                  update={"segmentation": seg})  # fmt: skip
    assert open_bundle(old).manifest["schema_version"] == SCHEMA_VERSION == 1
    X = make_dataset(SyntheticConfig(reps=2, length=128)).X_test
    with GestureRuntime(small_bundle, decision=ANY) as rt:
        want = [rt.classify(x).index for x in X]
    with GestureRuntime(old, decision=ANY) as rt:
        assert [rt.classify(x).index for x in X] == want
    with pytest.warns(UserWarning, match="input is not available"):
        with GestureRuntime(old, decision=ANY, adapter=build_adapter("input+tent")) as rt:
            assert [p.name for p in rt.adapter.parts] == ["tent"]
            assert all(np.isfinite(rt.classify(x).probs).all() for x in X)
    # the default's ttt starts from the identity without the input moments
    with GestureRuntime(old, decision=ANY, adapter=build_adapter(DEFAULT_METHOD)) as rt:
        assert rt.adapter is not None and rt.adapter.name == "ttt+clusters"
        assert all(np.isfinite(rt.classify(x).probs).all() for x in X)
    # moments without their natural level (an export between the two): input correction runs, level 0
    mid = rewrite(small_bundle, "mid.essl", drop_arrays=("input_moments_natural",))
    with GestureRuntime(mid, adapter=build_adapter("input")) as rt:
        assert rt.adapter.natural == 0.0 and rt.adapt_context().input_moments.lags == (2, 4, 8, 16)
