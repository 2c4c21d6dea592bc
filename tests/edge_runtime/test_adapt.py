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


@pytest.mark.parametrize("method", ["t3a", "tent", "ttt", "input", "input+tent"])
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
        for k in range(ad.sg.history - 1):  # the classification below completes a multiple of check_every
            ad._record(0, k % 8)  # adapted says 0, source disagrees
        assert ad._collapsed()
        ad.P[0] += 1.0
        rt.classify(make_dataset(SyntheticConfig(reps=1, length=128)).X_test[0])
        assert ad.resets == 1 and np.allclose(ad.P, ad.P0)


def test_state_save_restore_versioned_by_bundle(small_bundle, tmp_path, small_model):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    # (this small model is unsure of many windows; the entropy gate is relaxed so that there is a state to save)
    loose = A.Safeguards(max_entropy_frac=0.9)
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter("tent", safeguards=loose)) as rt:
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


def _ar_signal(rng, n, T=64):
    """Windows of a 3-axis signal with gravity and axis-specific autocorrelation (distinct lag structure)."""
    x = np.zeros((n, 3, T))
    e = rng.normal(size=(n, 3, T)) * np.array([0.3, 0.2, 0.1])[None, :, None]
    for t in range(1, T):
        x[:, :, t] = np.array([0.95, 0.6, 0.2])[None] * x[:, :, t - 1] + e[:, :, t]
    return x + np.array([0.1, -0.2, 0.97])[None, :, None]


def test_moments_match_direct_computation():
    rng = np.random.default_rng(0)
    X = _ar_signal(rng, 20, 40)
    m = A.signal_moments(X, lags=(1, 3))
    flat = X.transpose(0, 2, 1).reshape(-1, 3)
    mu = flat.mean(0)
    np.testing.assert_allclose(m["mean"], mu)
    np.testing.assert_allclose(m["cov"], np.cov(flat.T, bias=True), atol=1e-12)
    for i, lag in enumerate((1, 3)):  # loop over every pair of samples `lag` apart inside a window
        S, n = np.zeros((3, 3)), 0
        for w in X:
            for t in range(40 - lag):
                S += np.outer(w[:, t] - mu, w[:, t + lag] - mu)
                n += 1
        np.testing.assert_allclose(m["lagcov"][i], (S / n + S.T / n) / 2, atol=1e-12)
    # accumulating window by window gives the same numbers as one batch
    acc = A.MomentAccumulator(lags=(1, 3))
    for w in X:
        acc.add(w)
    for k in ("mean", "cov", "lagcov"):
        np.testing.assert_allclose(acc.moments()[k], m[k], atol=1e-12)
    # hand values: a constant window has its value as mean and no covariance
    c = A.signal_moments(np.ones((2, 3, 5)) * np.array([1.0, 2.0, 3.0])[None, :, None], lags=(1,))
    np.testing.assert_allclose(c["mean"], [1, 2, 3])
    np.testing.assert_allclose(c["cov"], np.zeros((3, 3)), atol=1e-12)


@pytest.mark.parametrize("deg", [30, 90, 150])
def test_align_moments_recovers_a_rotation(deg):
    from edgessl.synthetic import rotation_matrix

    rng = np.random.default_rng(deg)
    src = A.signal_moments(_ar_signal(rng, 1000))
    R = rotation_matrix(rng.normal(size=3), np.deg2rad(deg))
    shifted = np.einsum("ij,njt->nit", R, _ar_signal(rng, 1000))  # fresh draws: estimates, not identities
    Am, c, _ = A.align_moments(src, A.signal_moments(shifted))
    np.testing.assert_allclose(Am @ R, np.eye(3), atol=0.1)
    assert np.abs(c).max() < 0.1


def test_align_moments_recovers_per_axis_gain_and_bias():
    rng = np.random.default_rng(5)
    src = A.signal_moments(_ar_signal(rng, 1000))
    gain, bias = np.array([0.8, 1.15, 1.05]), np.array([0.05, -0.1, 0.08])
    shifted = gain[None, :, None] * _ar_signal(rng, 1000) + bias[None, :, None]
    Am, c, _ = A.align_moments(src, A.signal_moments(shifted))
    np.testing.assert_allclose(Am, np.diag(1 / gain), atol=0.1)
    np.testing.assert_allclose(c, -bias / gain, atol=0.1)


def _rotated_stream(rt, X, R):
    idx = [rt.channels.index(c) for c in ("acc_x", "acc_y", "acc_z")]
    Y = X.copy()
    Y[:, idx] = np.einsum("ij,njt->nit", R, X[:, idx])
    return Y.astype(np.float32)


def test_input_correction_undoes_a_mounting_rotation_and_leaves_a_clean_stream_alone(small_bundle):
    from edgessl.synthetic import rotation_matrix

    ds = make_dataset(SyntheticConfig(reps=40, length=128))  # the bundle's held-out users, more repetitions
    X, y = ds.X_test, ds.y_test
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    with GestureRuntime(small_bundle, decision=ANY) as rt:
        clean = _accuracy(rt, X, y)
        R = rotation_matrix(np.array([1.0, 0.3, -0.2]), np.deg2rad(90))
        Xr = _rotated_stream(rt, X, R)
        shifted = _accuracy(rt, Xr, y)
    assert shifted < clean - 0.1, (clean, shifted)  # the shift matters
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter("input")) as rt:
        adapted = _accuracy(rt, Xr, y)
        assert rt.adapter.active and rt.adapter.updates > 0
    # the accuracy comes back (the estimate itself is checked against known rotations above)
    assert adapted > shifted + 0.5 * (clean - shifted), (clean, shifted, adapted)
    # on the unshifted stream nothing changes: predictions equal the source model's
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter("input")) as rt:
        same = _accuracy(rt, X, y)
        assert not rt.adapter.active and rt.adapter.updates == 0
    assert same == clean


def test_input_correction_needs_moments_in_g(small_bundle):
    """A bundle that records no input moments (an older export, or inputs not in g) is refused clearly."""

    class Without:  # the runtime's view of such a bundle
        def __init__(self, rt):
            self.labels, self.W, self.b, self.bundle, self.preprocess = rt.labels, rt.W, rt.b, rt.bundle, rt.preprocess
            self.params = {k: v for k, v in rt.params.items() if not k.startswith("input_moments")}

    with GestureRuntime(small_bundle) as rt:
        assert "input_moments_cov" in rt.params
        with pytest.raises(ValueError, match="training moments"):
            A.build_adapter("input").attach(Without(rt))


def test_chain_runs_every_part_and_saves_their_state(small_bundle, tmp_path):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    # (the entropy gate relaxed so that this small, unsure model gives tent something to learn and save)
    chain = A.Chain([A.InputCorrection(), A.Tent(safeguards=A.Safeguards(max_entropy_frac=0.9))])
    with GestureRuntime(small_bundle, decision=ANY, adapter=chain) as rt:
        assert [p.name for p in chain.parts] == ["input", "tent"]
        for x in ds.X_test:
            rt.classify(x)
        assert chain.updates == sum(p.updates for p in chain.parts) > 0
        chain.save(tmp_path / "chain.npz")
        gamma = chain.parts[1].gamma.copy()
    ad = A.build_adapter("input+tent", state_path=str(tmp_path / "chain.npz"))
    with GestureRuntime(small_bundle, decision=ANY, adapter=ad):
        np.testing.assert_array_equal(ad.parts[1].gamma, gamma)
    with pytest.raises(ValueError, match="chain"):
        A.build_adapter("input+none")


def test_tent_folded_head_equals_the_normalised_affine(small_bundle):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    loose = A.Safeguards(max_entropy_frac=0.9)  # enough updates from this small, unsure model
    with GestureRuntime(small_bundle, decision=ANY, adapter=A.build_adapter("tent", safeguards=loose)) as rt:
        for x in ds.X_test:
            rt.classify(x)
        t = rt.adapter
        assert t.updates > 0
        e = rt.embed(ds.X_test[:5])
        explicit = (t.gamma * (e - t.mu) / t.sd + t.beta) @ t.W0.T + t.b0
        np.testing.assert_allclose(t.logits(e), explicit, rtol=1e-4, atol=1e-4)


def test_chain_leaves_out_a_part_the_bundle_cannot_support(small_bundle):
    class Refuses(A.Adapter):
        name = "refuses"

        def attach(self, runtime):
            raise ValueError("needs something this bundle lacks")

    chain = A.Chain([Refuses(), A.Tent()])
    with pytest.warns(UserWarning, match="refuses is not available"):
        with GestureRuntime(small_bundle, decision=ANY, adapter=chain) as rt:
            assert [p.name for p in rt.adapter.parts] == ["tent"]
    with pytest.raises(ValueError, match="none of the adaptation methods"), pytest.warns(UserWarning):
        GestureRuntime(small_bundle, adapter=A.Chain([Refuses(), Refuses()]))


def test_trainer_records_moments_with_the_lags_that_fit_the_window():
    pytest.importorskip("torch")
    from edgessl.datasets import load_windows
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.pipeline import _input_moments

    ds = load_windows("synthetic:reps=5,length=128")  # 40 windows per training user: the natural level is measured
    assert _input_moments(ds, DataConfig(spec="synthetic", length=2)) == {}  # no lag fits: nothing recorded
    short = _input_moments(ds, DataConfig(spec="synthetic", length=8))
    assert short["input_moments_lags"].tolist() == [2, 4] and short["input_moments_lagcov"].shape == (2, 3, 3)
    full = _input_moments(ds, DataConfig(spec="synthetic", length=63))
    assert full["input_moments_lags"].tolist() == list(A.MOMENT_LAGS) and float(full["input_moments_natural"]) > 0
