import numpy as np
import pytest

from edgessl.edge_runtime.adapt import AdaptContext, Safeguards, Tent, build_adapter
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.preprocess import PreprocessSpec
from edgessl.synthetic import SyntheticConfig, make_dataset

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def test_runtime_hands_the_bundles_parameters_in_the_context(small_bundle):
    with GestureRuntime(small_bundle, decision=DecisionConfig(ood_threshold=0.25)) as rt:
        ctx = rt.adapt_context()
        p = rt.params
        assert ctx.bundle == str(small_bundle) and ctx.checksum == rt.bundle.checksum
        assert ctx.labels == tuple(rt.labels) and ctx.n_classes == 8 and ctx.units == ("g", "g", "g") and ctx.raw_units
        np.testing.assert_array_equal(ctx.head_weight, p["head_weight"])
        np.testing.assert_array_equal(ctx.head_bias, p["head_bias"])
        np.testing.assert_allclose(np.linalg.norm(ctx.prototypes, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(ctx.embedding_std, p["embedding_std"])
        assert ctx.ood_threshold == 0.25  # the runtime's threshold (here from its decision config), not the bundle's
        assert ctx.input_moments is not None and ctx.input_moments.lags == tuple(p["input_moments_lags"].tolist())
        x = make_dataset(SyntheticConfig(reps=1, length=128)).X_test[:2]
        np.testing.assert_array_equal(ctx.embed(x), rt.embed(x))


def test_an_adapter_needs_only_its_context():
    """No runtime: a context built by hand drives tent, which starts as exactly the source head."""
    rng = np.random.default_rng(0)
    K, D = 3, 4
    W, b = rng.normal(size=(K, D)).astype(np.float32), rng.normal(size=K).astype(np.float32)
    P = rng.normal(size=(K, D)).astype(np.float32)
    ctx = AdaptContext(bundle="hand.essl", checksum="0" * 64, labels=("a", "b", "c"), units=("g",) * 3,
                       preprocess=PreprocessSpec(), head_weight=W, head_bias=b,
                       prototypes=P / np.linalg.norm(P, axis=1, keepdims=True), embedding_mean=np.zeros(D, np.float32),
                       embedding_std=np.ones(D, np.float32), ood_threshold=None,
                       embed=lambda x: np.zeros((len(x), D), np.float32))  # fmt: skip
    ad = Tent(safeguards=Safeguards(min_history=0, max_entropy_frac=10, max_class_share=1.0), batch=2)
    ad.attach(ctx)
    e = rng.normal(size=(5, D)).astype(np.float32)
    np.testing.assert_allclose(ad.logits(e), e @ W.T + b, rtol=1e-5, atol=1e-5)
    window = rng.normal(0, 1, (3, 16))  # moving: not idle
    for row in e:
        lg = ad.logits(row[None])[0]
        ad.observe(window, row[None], np.exp(lg) / np.exp(lg).sum())
    assert ad.updates == 2 and not np.allclose(ad.logits(e), e @ W.T + b, atol=1e-4)
    assert W.tolist() == ad.W0.tolist()  # the context's arrays are copied, never changed


def test_state_save_restore_versioned_by_bundle(small_bundle, tmp_path, rewrite):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    # (this small model is unsure of many windows; the entropy gate is relaxed so that there is a state to save)
    loose = Safeguards(max_entropy_frac=0.9)
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter("tent", safeguards=loose)) as rt:
        for x in ds.X_test:
            rt.classify(x)
        assert rt.adapter.updates > 0
        rt.adapter.save(tmp_path / "user1.npz")
        gamma = rt.adapter.gamma.copy()
    ad = build_adapter("tent", state_path=str(tmp_path / "user1.npz"))
    with GestureRuntime(small_bundle, decision=ANY, adapter=ad):
        np.testing.assert_array_equal(ad.gamma, gamma)
    # another bundle (here: the same weights under another name, so another checksum) refuses the state
    other = rewrite(small_bundle, "other.essl", update={"model_name": "other"})
    with pytest.raises(ValueError, match="belongs to another bundle"):  # loading it explicitly
        ad2 = build_adapter("tent")
        with GestureRuntime(other, adapter=ad2):
            ad2.load(tmp_path / "user1.npz")
    with pytest.raises(ValueError, match="adapts with t3a"):  # another method's state
        with GestureRuntime(small_bundle, adapter=(ad3 := build_adapter("t3a"))):
            ad3.load(tmp_path / "user1.npz")
    # at start (restore) the runtime never fails on it: another bundle's state is set aside with a warning,
    # kept for a look, and the adapter starts from the source model
    ad4 = build_adapter("tent", state_path=str(tmp_path / "user1.npz"))
    with pytest.warns(UserWarning, match="belongs to another bundle.*moved to .*user1.npz.bad-"):
        GestureRuntime(other, adapter=ad4)
    assert not (tmp_path / "user1.npz").exists() and len(list(tmp_path.glob("user1.npz.bad-*"))) == 1
    np.testing.assert_array_equal(ad4.gamma, ad4.sd0)  # the source state
    with pytest.raises(ValueError, match="unknown adaptation method"):
        build_adapter("magic")
