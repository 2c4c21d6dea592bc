import numpy as np

from edgessl.edge_runtime.adapt import Safeguards, build_adapter
from edgessl.edge_runtime.adapt.tent import tent_loss_and_grad
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset

from .gradcheck import num_grad

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def test_tent_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    D, K, B = 6, 4, 5
    gamma, beta = rng.normal(1, 0.2, D), rng.normal(0, 0.2, D)
    n, W, b = rng.normal(size=(B, D)), rng.normal(size=(K, D)), rng.normal(size=K)
    _, gg, gb = tent_loss_and_grad(gamma, beta, n, W, b, div_weight=0.7)
    assert np.allclose(gg, num_grad(lambda: tent_loss_and_grad(gamma, beta, n, W, b, 0.7)[0], gamma), atol=1e-6)
    assert np.allclose(gb, num_grad(lambda: tent_loss_and_grad(gamma, beta, n, W, b, 0.7)[0], beta), atol=1e-6)


def test_tent_folded_head_equals_the_normalised_affine(small_bundle):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    loose = Safeguards(max_entropy_frac=0.9)  # enough updates from this small, unsure model
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter("tent", safeguards=loose)) as rt:
        for x in ds.X_test:
            rt.classify(x)
        t = rt.adapter
        assert t.updates > 0
        e = rt.embed(ds.X_test[:5])
        explicit = (t.gamma * (e - t.mu) / t.sd + t.beta) @ t.W0.T + t.b0
        np.testing.assert_allclose(t.logits(e), explicit, rtol=1e-4, atol=1e-4)
