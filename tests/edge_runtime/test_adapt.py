import numpy as np
import pytest

from edgessl.edge_runtime import adapt as A
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset


def _num_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def test_tent_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    D, K, B = 6, 4, 5
    gamma, beta = rng.normal(1, 0.2, D), rng.normal(0, 0.2, D)
    n, W, b = rng.normal(size=(B, D)), rng.normal(size=(K, D)), rng.normal(size=K)
    _, gg, gb = A.tent_loss_and_grad(gamma, beta, n, W, b, div_weight=0.7)
    assert np.allclose(gg, _num_grad(lambda: A.tent_loss_and_grad(gamma, beta, n, W, b, 0.7)[0], gamma), atol=1e-6)
    assert np.allclose(gb, _num_grad(lambda: A.tent_loss_and_grad(gamma, beta, n, W, b, 0.7)[0], beta), atol=1e-6)


def test_ttt_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    D, M, B = 5, 4, 3
    Am, c = np.eye(D) + rng.normal(0, 0.1, (D, D)), rng.normal(0, 0.1, D)
    E, t, V, d = rng.normal(size=(B, D)), rng.integers(0, M, B), rng.normal(size=(M, D)), rng.normal(size=M)
    _, gA, gc = A.ttt_loss_and_grad(Am, c, E, t, V, d)
    assert np.allclose(gA, _num_grad(lambda: A.ttt_loss_and_grad(Am, c, E, t, V, d)[0], Am), atol=1e-6)
    assert np.allclose(gc, _num_grad(lambda: A.ttt_loss_and_grad(Am, c, E, t, V, d)[0], c), atol=1e-6)


def test_transforms_match_the_trainer():
    torch = pytest.importorskip("torch")
    from edgessl.trainer.evaluate import apply_transform

    x = np.random.default_rng(2).normal(size=(3, 20)).astype(np.float32)
    t = np.array([0, 1, 2, 3])
    ref = apply_transform(torch.from_numpy(np.stack([x] * 4)), torch.from_numpy(t)).numpy()
    np.testing.assert_array_equal(A.transform_windows(x, t), ref)


def _accuracy(rt, X, y):
    return float(np.mean([rt.classify(x).index == yi for x, yi in zip(X, y, strict=True)]))


ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"))


@pytest.mark.parametrize("method", ["t3a", "tent", "ttt"])
def test_adversarial_streams_do_not_hurt_the_clean_stream(small_bundle, method):
    """10^4 windows of one class, then sensor noise, then a clean stream: within 1 pt of the source model."""
    ds = make_dataset(SyntheticConfig(reps=10, length=128))
    X, y = ds.X_test, ds.y_test
    with GestureRuntime(small_bundle, decision=ANY) as rt:
        source = _accuracy(rt, X, y)
    rng = np.random.default_rng(0)
    one = ds.X_train[ds.y_train == 0]
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter(method)) as rt:
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
    off = A.Safeguards(max_entropy_frac=10, min_history=0, max_class_share=1.0, collapse_entropy_frac=0.0,
                       max_disagreement=1.0, source_penalty=0.0)  # fmt: skip
    one = ds.X_train[ds.y_train == 0]
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.Tent(safeguards=off, lr=0.5)) as rt:
        for i in range(2000):
            rt.classify(one[i % len(one)])
        unguarded = _accuracy(rt, ds.X_test, ds.y_test)
    assert unguarded < source - 0.05, (source, unguarded)


def test_collapse_detector_resets(small_bundle):
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter("t3a")) as rt:
        ad = rt.adapter
        ad.preds.extend([(0, k % 8) for k in range(ad.sg.history)])  # adapted says 0, source disagrees
        assert ad._collapsed()
        ad.P[0] += 1.0
        rt.classify(make_dataset(SyntheticConfig(reps=1, length=128)).X_test[0])
        assert ad.resets == 1 and np.allclose(ad.P, ad.P0)


def test_state_save_restore_versioned_by_bundle(small_bundle, tmp_path, small_model):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter("tent")) as rt:
        for x in ds.X_test:
            rt.classify(x)
        assert rt.adapter.updates > 0
        rt.adapter.save(tmp_path / "user1.npz")
        gamma = rt.adapter.gamma.copy()
    ad = A.build_adapter("tent", state_path=str(tmp_path / "user1.npz"))
    with GestureRuntime(small_bundle, decision=ANY, adapter=ad):
        np.testing.assert_array_equal(ad.gamma, gamma)
    # another bundle refuses the state
    from edgessl.export.pipeline import ExportConfig, export_bundle

    other = tmp_path / "other.essl"
    export_bundle(small_model, other, ExportConfig(min_agreement=0.5, name="other"), progress=False)
    with pytest.raises(ValueError, match="belongs to another bundle"):
        GestureRuntime(other, adapter=A.build_adapter("tent", state_path=str(tmp_path / "user1.npz")))
    with pytest.raises(ValueError, match="unknown adaptation method"):
        A.build_adapter("magic")


def test_input_correction_undoes_a_mounting_rotation(small_bundle):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    with GestureRuntime(small_bundle, adapter=A.build_adapter("input")) as rt:
        g_src = rt.adapter.g_src
        R = A._rotation_between(np.array([0.0, 0.0, 1.0]), np.array([0.0, np.sin(0.6), np.cos(0.6)]))
        g1 = g_src / np.linalg.norm(g_src)  # at rest the sensor reads exactly 1 g
        idle = (R @ g1[:, None]).repeat(100, 1).T  # the device at rest, mounted rotated
        rt.adapter.observe_stream(idle, idle=True)
        x = ds.X_test[:4]
        rotated = np.einsum("ij,njt->nit", R, x)
        np.testing.assert_allclose(rt.adapter.transform_input(rotated), x, atol=0.05)
