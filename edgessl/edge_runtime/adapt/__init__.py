"""Test-time adaptation on the device (numpy only, the int8 encoder stays frozen).

Methods (``--adapt``), one module each:
    none   the source model.
    t3a    backprop-free prototype adjustment from confident pseudo-labels (:mod:`.t3a`).
    tent   entropy minimisation on a normalisation affine in front of the float head (:mod:`.tent`).
    ttt    forward-only test-time adaptation (FOA-style CMA-ES, no backprop) of a 3×3 matrix and bias on the
           accelerometer axes in front of the int8 encoder, started from ``input`` (:mod:`.ttt`, :mod:`.es`).
    input  input-side correction of a shifted accelerometer by moment matching (:mod:`.input_correction`,
           optimiser in :mod:`.align`).
    clusters  the wearer's own groups of gestures as a prior on the answer (:mod:`.clusters`; gesture bundles).
    a+b    several at once (:mod:`.chain`), e.g. ``input+tent``; ``a|b``: the first the bundle supports; ``+``
           binds last: the default ``ttt|tent+clusters`` is ``(ttt|tent)+clusters``.

The runtime hands each adapter an :class:`AdaptContext` (:mod:`.context`): the bundle's head, prototypes,
embedding statistics, thresholds, input moments and the encoder; adapters read nothing else.
Safeguards shared by all (:mod:`.safeguards`, applied in :mod:`.base`): a reliability gate (prediction
entropy and out-of-distribution score), no updates while idle, a class-diversity check on the recent
prediction histogram, a penalty pulling parameters to their source values, a collapse detector that resets
to the source state, and bounded memory. Adapted state is saved and restored per device/user, tagged with
the bundle's checksum.
"""

from __future__ import annotations

from typing import Any

from edgessl.edge_runtime.adapt.base import STATE_FORMAT, Adapter
from edgessl.edge_runtime.adapt.chain import Chain, First
from edgessl.edge_runtime.adapt.clusters import Clusters
from edgessl.edge_runtime.adapt.context import AdaptContext, InputMoments, SslHead
from edgessl.edge_runtime.adapt.input_correction import InputCorrection
from edgessl.edge_runtime.adapt.safeguards import Safeguards
from edgessl.edge_runtime.adapt.t3a import T3A
from edgessl.edge_runtime.adapt.tent import Tent
from edgessl.edge_runtime.adapt.ttt import TTT

__all__ = ["DEFAULT_METHOD", "METHODS", "STATE_FORMAT", "AdaptContext", "Adapter", "Chain", "First", "InputCorrection",
           "InputMoments", "Safeguards", "Clusters", "SslHead", "T3A", "TTT", "Tent", "build_adapter"]  # fmt: skip

# The method benchmarks/results/tta_shift.json shows best over the shifts (3 seeds): forward-only ttt won back
# 89 % of the accuracy all shifts lost together (input+tent, the default before, 74 %), half of a new user's
# loss (input+tent 0 %), 57 % of a sensor gain/offset error's, and gains on every clean stream (docs/results.md);
# Tent where ttt cannot run (no 3 axes in g). Then, for a gesture bundle, the wearer's own groups of gestures
# (clusters): on uWave validation streams it added 1.2 to 4.1 pt to ttt on every shift (new users, rotations)
# and 0.6 on clean streams; a sliding-window bundle leaves it out.
DEFAULT_METHOD = "ttt|tent+clusters"

METHODS: dict[str, type[Adapter] | None] = {"none": None, "t3a": T3A, "tent": Tent, "ttt": TTT, "input": InputCorrection,
                                             "clusters": Clusters}


def build_adapter(name: str, state_path: str | None = None, **kw: Any) -> Adapter | None:
    """An adapter by name (``none`` gives None; ``a+b`` chains two, e.g. ``input+tent``; ``a|b`` is the first
    of them the bundle supports, e.g. the default ``ttt|tent``; with default settings). ``state_path``:
    restored when the runtime attaches it, if the file exists (see :meth:`Adapter.restore`). ``kw``: the
    method's settings (e.g. ``safeguards``, ``lr``)."""
    if "+" in name:  # `+` binds last: ttt|tent+clusters is (ttt|tent)+clusters
        parts = [build_adapter(n) for n in name.split("+")]
        kept = [p for p in parts if p is not None]
        if len(kept) < len(parts) or len(kept) < 2:
            raise ValueError(f"a chain of adaptation methods names two or more of {sorted(set(METHODS) - {'none'})}; got {name!r}")
        return Chain(kept, state_path)
    if "|" in name:
        alts = [build_adapter(n) for n in name.split("|")]
        if any(p is None for p in alts) or len(alts) < 2:
            raise ValueError(f"alternatives a|b name two or more of {sorted(set(METHODS) - {'none'})}; got {name!r}")
        return First([p for p in alts if p is not None], state_path)
    if name not in METHODS:
        raise ValueError(f"unknown adaptation method {name!r}; expected one of {sorted(METHODS)} or a chain like input+tent")
    cls = METHODS[name]
    if cls is None:
        return None
    a = cls(**kw)
    a.state_path = state_path
    return a
