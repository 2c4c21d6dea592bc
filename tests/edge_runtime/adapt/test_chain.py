import numpy as np
import pytest

from edgessl.edge_runtime.adapt import Adapter, Chain, InputCorrection, Safeguards, Tent, build_adapter
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.synthetic import SyntheticConfig, make_dataset

ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))


def test_chain_runs_every_part_and_saves_their_state(small_bundle, tmp_path):
    ds = make_dataset(SyntheticConfig(reps=6, length=128))
    # (the entropy gate relaxed so that this small, unsure model gives tent something to learn and save)
    chain = Chain([InputCorrection(), Tent(safeguards=Safeguards(max_entropy_frac=0.9))])
    with GestureRuntime(small_bundle, decision=ANY, adapter=chain) as rt:
        assert [p.name for p in chain.parts] == ["input", "tent"]
        for x in ds.X_test:
            rt.classify(x)
        assert chain.updates == sum(p.updates for p in chain.parts) > 0
        chain.save(tmp_path / "chain.npz")
        gamma = chain.parts[1].gamma.copy()
    ad = build_adapter("input+tent", state_path=str(tmp_path / "chain.npz"))
    with GestureRuntime(small_bundle, decision=ANY, adapter=ad):
        np.testing.assert_array_equal(ad.parts[1].gamma, gamma)
    with pytest.raises(ValueError, match="chain"):
        build_adapter("input+none")


def test_chain_leaves_out_a_part_the_bundle_cannot_support(small_bundle):
    class Refuses(Adapter):
        name = "refuses"

        def attach(self, ctx):
            raise ValueError("needs something this bundle lacks")

    chain = Chain([Refuses(), Tent()])
    with pytest.warns(UserWarning, match="refuses is not available"):
        with GestureRuntime(small_bundle, decision=ANY, adapter=chain) as rt:
            assert [p.name for p in rt.adapter.parts] == ["tent"]
    with pytest.raises(ValueError, match="none of the adaptation methods"), pytest.warns(UserWarning):
        GestureRuntime(small_bundle, adapter=Chain([Refuses(), Refuses()]))
