"""``a|b``: the first adaptation method the bundle supports (the default ``ttt|tent+clusters``)."""

from __future__ import annotations

import numpy as np
import pytest

from edgessl.edge_runtime.adapt import DEFAULT_METHOD, Chain, First, build_adapter
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def test_the_default_is_ttt_where_the_bundle_takes_accelerometer_axes_in_g(small_bundle, tmp_path):
    assert DEFAULT_METHOD == "ttt|tent+clusters"
    ad = build_adapter(DEFAULT_METHOD, state_path=str(tmp_path / "s.npz"))
    assert isinstance(ad, Chain) and isinstance(ad.parts[0], First)
    with GestureRuntime(small_bundle, decision=ANY, adapter=ad) as rt:
        assert rt.adapter is not None and rt.adapter.name == "ttt+clusters"  # a gesture (segment) bundle
        rng = np.random.default_rng(0)
        rt.classify(rng.normal(0, 0.3, (8, len(rt.channels), rt.window)).astype(np.float32))
        rt.adapter.save(tmp_path / "s.npz")
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter(DEFAULT_METHOD, state_path=str(tmp_path / "s.npz"))) as rt3:
        assert rt3.restored_state
    # a state of `--adapt ttt` (the default before clusters joined it) carries over: ttt takes it
    plain = build_adapter("ttt")
    with GestureRuntime(small_bundle, decision=ANY, adapter=plain) as rt2:
        rt2.classify(rng.normal(0, 0.3, (4, len(rt2.channels), rt2.window)).astype(np.float32))
        plain.save(tmp_path / "ttt.npz")
    with GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter(DEFAULT_METHOD, state_path=str(tmp_path / "ttt.npz"))) as rt4:
        assert rt4.restored_state and rt4.adapter.name == "ttt+clusters"


def test_falls_back_to_the_next_method_and_names_why(small_bundle, monkeypatch):
    from edgessl.edge_runtime.adapt.ttt import TTT

    def refuse(self, ctx):
        raise ValueError("no accelerometer axes in g")

    monkeypatch.setattr(TTT, "attach", refuse)
    with pytest.warns(UserWarning, match="tent chosen .*no accelerometer axes in g"):
        rt = GestureRuntime(small_bundle, decision=ANY, adapter=build_adapter("ttt|tent"))
    assert rt.adapter is not None and rt.adapter.name == "tent"
    with pytest.raises(ValueError, match="unknown adaptation method"):
        build_adapter("ttt|nonsense")
    with pytest.raises(ValueError, match="alternatives"):
        build_adapter("ttt|none")
