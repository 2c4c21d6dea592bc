"""Several adaptation methods at once, e.g. ``input+tent`` (the default)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.clusters import Clusters
from edgessl.edge_runtime.adapt.context import AdaptContext


def input_key(parts: list[Adapter]) -> tuple:
    """What the input transforms of ``parts`` are now (``input``'s, ``ttt``'s, in chains too): equal keys, equal
    transforms."""
    out: list[Any] = []
    for p in parts:
        if isinstance(p, Chain):
            out.append(input_key(p.parts))
        elif isinstance(A := getattr(p, "A", None), np.ndarray):
            out.append((A.tobytes(), np.asarray(p.c).tobytes()) if getattr(p, "active", False) else None)  # type: ignore[attr-defined]
    return tuple(out)


class Chain(Adapter):
    """Several adapters at once, e.g. ``input+tent``: the input-side correction of the first part that has
    one, the head of the last part that has one; every part observes every window with its own gates,
    safeguards and state."""

    def __init__(self, parts: list[Adapter], state_path: str | None = None):  # noqa: D107 - no Adapter.__init__
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.state_path = state_path
        self.restored = False

    @property
    def updates(self) -> int:  # type: ignore[override]
        return sum(p.updates for p in self.parts)

    @property
    def resets(self) -> int:  # type: ignore[override]
        return sum(p.resets for p in self.parts)

    @property
    def changes(self) -> int:
        return sum(p.changes for p in self.parts)

    def set_new_share(self, share: float) -> None:
        self.new_share = share
        for p in self.parts:
            p.set_new_share(share)

    @property
    def calibrated(self) -> bool:
        return any(p.calibrated for p in self.parts)

    def attach(self, ctx: AdaptContext) -> None:
        """Attach every part; a part this bundle cannot support (e.g. input-side correction on z-scored
        inputs, ttt without a self-supervised head) is left out with a warning, so the default chain runs
        with any bundle."""
        self.ctx = ctx
        kept = []
        for p in self.parts:
            if isinstance(p, Clusters) and not ctx.segments:
                continue  # a sliding-window bundle's windows are not whole gestures to group
            try:
                p.attach(ctx)
                kept.append(p)
            except ValueError as e:
                warnings.warn(f"adaptation {p.name} is not available for this bundle and is left out: {e}", stacklevel=2)
        if not kept:
            raise ValueError(f"none of the adaptation methods {self.name} is available for this bundle")
        self.parts = kept
        for i, p in enumerate(kept):
            if isinstance(p, Clusters):  # on top of the head of the parts before it
                before = kept[:i]
                if before:
                    p.base_logits = before[-1].logits
                p.input_version = functools.partial(input_key, before)
                p.reset()  # (its state starts under the transform in use now)
        self.name = "+".join(p.name for p in kept)  # (after a|b parts chose)

    def reset(self) -> None:
        for p in self.parts:
            p.reset()

    def transform_input(self, x: np.ndarray) -> np.ndarray:
        for p in self.parts:
            x = p.transform_input(x)
        return x

    def logits(self, e: np.ndarray) -> np.ndarray:
        return self.parts[-1].logits(e)

    @property
    def _ungrouped(self) -> list[Adapter]:
        """The parts whose head ``clusters`` refines (all of them without it)."""
        return [p for p in self.parts if not isinstance(p, Clusters)]

    def ungrouped_logits(self, e: np.ndarray) -> np.ndarray:
        return (self._ungrouped or self.parts)[-1].ungrouped_logits(e)

    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, ood: float | None = None,
                src: int | None = None) -> None:  # fmt: skip
        base = probs
        grouping = next((p for p in self.parts if isinstance(p, Clusters)), None)
        if grouping is not None and len(self.parts) > 1:
            # the parts before clusters learn from what their own head says, as without it (given the answers
            # with the groups' prior, ttt took the disagreement for a collapse and lost a rotated mounting's
            # correction: tta_shift.py's remount 0.686 -> 0.434); clusters kept those logits from the answer
            base = grouping.base_probs(e)
        for p in self.parts:  # each part computes the bundle's head's class itself when it needs it
            p.observe(window, e, probs if isinstance(p, Clusters) else base, ood)

    def state(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, p in enumerate(self.parts) for k, v in p.state().items()}

    def summary(self) -> dict[str, Any]:
        """The chain's counts, and the input correction of the first part that has one."""
        parts = []  # every method in use, a chain's in it too (ttt|tent+clusters: ttt, clusters)
        for p in self.parts:
            leaves = p.summary()["parts"] if isinstance(p, Chain) else [p.summary()]
            parts += [{**q, "restored": bool(self.restored or p.restored or q["restored"])} for q in leaves]  # (the chain restores)
        correction = next((s["correction"] for s in parts if s["correction"] is not None), None)
        return {"method": self.name, "updates": int(self.updates), "resets": int(self.resets),
                "restored": bool(self.restored), "correction": correction, "parts": parts}  # fmt: skip

    def _load_npz(self, path: str | Path, z: np.lib.npyio.NpzFile) -> None:
        """A state of the chain, or one of the method it runs beside ``clusters`` alone (``ttt``, the default
        before ``ttt|tent+clusters``): that part takes it and the groups start afresh (a service's state carries
        over an update)."""
        rest = self._ungrouped
        if len(rest) == 1 < len(self.parts) and "method" in z.files and str(z["method"]) == rest[0].name:
            rest[0]._load_npz(path, z)
            return
        super()._load_npz(path, z)

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        for i, p in enumerate(self.parts):
            p.load_state({k.split(".", 1)[1]: v for k, v in st.items() if k.startswith(f"{i}.")})


class First(Chain):
    """``a|b``: the first of the methods this bundle supports, e.g. the default ``ttt|tent``: ``ttt`` where
    the bundle takes three accelerometer axes in g, ``tent`` elsewhere (z-scored or gyroscope inputs). After
    :meth:`attach`, :attr:`name` is the method chosen."""

    def attach(self, ctx: AdaptContext) -> None:
        self.ctx = ctx
        why = []
        for p in self.parts:
            try:
                p.attach(ctx)
            except ValueError as e:
                why.append(f"{p.name}: {e}")
                continue
            if why:
                warnings.warn(f"adaptation {p.name} chosen ({'; '.join(why)})", stacklevel=2)
            self.parts, self.name = [p], p.name
            return
        raise ValueError(f"none of the adaptation methods {self.name} is available for this bundle ({'; '.join(why)})")

    def state(self) -> dict[str, np.ndarray]:  # the chosen method's own state: interchangeable with `--adapt NAME`
        return self.parts[0].state()

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.parts[0].load_state(st)
