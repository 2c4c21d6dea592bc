import subprocess
import sys

import numpy as np
import pytest

from edgessl.edge_runtime.adapt import DEFAULT_METHOD, build_adapter
from edgessl.edge_runtime.adapt.ttt import transform_windows, ttt_loss_and_grad
from edgessl.edge_runtime.bundle import open_bundle
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset

from .gradcheck import num_grad

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"))


def test_ttt_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    D, M, B = 5, 4, 3
    Am, c = np.eye(D) + rng.normal(0, 0.1, (D, D)), rng.normal(0, 0.1, D)
    E, t, V, d = rng.normal(size=(B, D)), rng.integers(0, M, B), rng.normal(size=(M, D)), rng.normal(size=M)
    _, gA, gc = ttt_loss_and_grad(Am, c, E, t, V, d)
    assert np.allclose(gA, num_grad(lambda: ttt_loss_and_grad(Am, c, E, t, V, d)[0], Am), atol=1e-6)
    assert np.allclose(gc, num_grad(lambda: ttt_loss_and_grad(Am, c, E, t, V, d)[0], c), atol=1e-6)


def test_transforms_match_the_trainer():
    torch = pytest.importorskip("torch")
    from edgessl.trainer.supervised import apply_transform

    x = np.random.default_rng(2).normal(size=(3, 20)).astype(np.float32)
    t = np.array([0, 1, 2, 3])
    ref = apply_transform(torch.from_numpy(np.stack([x] * 4)), torch.from_numpy(t)).numpy()
    np.testing.assert_array_equal(transform_windows(x, t), ref)


def test_ttt_adapts_through_the_bundles_ssl_head(ttt_bundle):
    """With the head, ttt attaches, learns on gated windows and changes the adapter (and so the logits)."""
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    with GestureRuntime(ttt_bundle, decision=ANY, adapter=build_adapter("ttt")) as rt:
        ad = rt.adapter
        np.testing.assert_array_equal(ad.V, rt.params["ssl_head_weight"].astype(np.float64))
        for x in ds.X_test:
            rt.classify(x)
        assert ad.updates > 0 and not np.allclose(ad.A, np.eye(len(ad.c)))


def test_bundle_without_ttt_head_runs_the_default_chain_and_refuses_ttt_in_one_line(headless_bundle):
    assert "ssl_head_weight" not in open_bundle(headless_bundle).adaptation()
    ds = make_dataset(SyntheticConfig(reps=2, length=128))
    with GestureRuntime(headless_bundle, decision=ANY, adapter=build_adapter(DEFAULT_METHOD)) as rt:
        assert rt.adapt_context().ssl_head is None
        assert [p.name for p in rt.adapter.parts] == DEFAULT_METHOD.split("+")  # nothing left out
        assert all(rt.classify(x).probs.shape == (8,) for x in ds.X_test)
    with pytest.raises(ValueError) as e:
        GestureRuntime(headless_bundle, adapter=build_adapter("ttt"))
    msg = str(e.value)
    assert "\n" not in msg and str(headless_bundle) in msg
    assert "fine-tuned without" in msg and "ssl_weight" in msg  # what is wrong, and how to get a head
    # in a chain, ttt is left out with that reason and the rest runs
    with pytest.warns(UserWarning, match="ttt is not available.*fine-tuned without"):
        with GestureRuntime(headless_bundle, adapter=build_adapter("ttt+tent")) as rt:
            assert [p.name for p in rt.adapter.parts] == ["tent"]
    # the command line says it in one line, no traceback
    r = subprocess.run([sys.executable, "-m", "edgessl", "run", str(headless_bundle), "--port", "/nonexistent/port",
                        "--adapt", "ttt"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "fine-tuned without" in lines[0] and lines[0].startswith("edgessl run: error:"), r.stderr
