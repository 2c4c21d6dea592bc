"""``clusters``: the wearer's own gestures, grouped (numpy only; segment bundles, one gesture per window).

A new person's performances of one gesture sit close together in the embedding space even where the bundle's
head, trained on other people, confuses two of this person's gestures: on the demo's new user the head
answers 0.73 of the gestures right while each gesture's nearest other performance is of the same gesture
0.997 of the time; on uWave's new users (each person's own stream) 0.64–0.84 against 0.94–0.97
(docs/results.md, "The wearer's own groups"). So the recent gestures are grouped (k-means on unit-norm
embeddings, started from the mean of each class the head predicted), each group is labelled by the head's
votes over its members (the sum of their probabilities: a gesture the head gets right most of the time for
this person carries the whole group), and a gesture inside a group gets that group's votes as a prior:
``logits + weight · log((votes + 1) / (members + K))``. A group's label is its members' majority, never a class
assigned one to one: a person who makes three of the eight gestures would otherwise see the five absent
labels forced onto pieces of the three (the demo's session, one gesture only: 0.67 -> 0.51); with the majority
vote it gains (0.67 -> 0.74).

With a user's enrollment in use the enrolled takes decide, with the head as adapted but without the groups
(:meth:`ungrouped_logits`): the groups' votes come from the head, which the takes outdo (uWave new users with 3
takes per gesture: 0.959 with the groups' prior, 0.953 without). What the head alone would answer is kept for the votes (the prior never votes for itself); an input
transform that changes (``ttt``'s, ``input``'s) makes the kept embeddings stale, and they are dropped.
Safeguards: the shared gates (idle windows, windows the out-of-distribution gate rejects and a class that
dominates the recent predictions never join a group; low confidence ones do, with their small votes), the
prior only inside a group's extent (its least similar member: three in four everyday movements that reach the
model lie outside every group of the demo's gestures; it costs 1.6 pt on uWave validation streams), at least
``min_members`` gestures before any group counts, a bounded buffer, and a reset that forgets the groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edgessl.edge_runtime.adapt.base import Adapter
from edgessl.edge_runtime.adapt.context import AdaptContext
from edgessl.preprocess import softmax

MIN_MEMBERS = 16  # gestures kept before the groups count


def group(Z: np.ndarray, P: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """k-means of unit-norm embeddings ``Z [N, D]`` (cosine), started from the mean of each class the head
    predicts (``P [N, K]``: its probabilities); empty groups are dropped. Returns ``(centroids [G, D],
    assignment [N])``."""
    a = np.unique(P.argmax(1), return_inverse=True)[1]
    for _ in range(iterations + 1):
        onehot = np.zeros((len(Z), a.max() + 1), Z.dtype)
        onehot[np.arange(len(Z)), a] = 1.0
        C = onehot.T @ Z
        C = C[onehot.any(0)]  # (an emptied group is dropped)
        C /= np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-12)
        b = (Z @ C.T).argmax(1)
        if len(C) == onehot.shape[1] and np.array_equal(a, b):
            break
        a = b
    return C, a


class Clusters(Adapter):
    """The wearer's own groups of gestures as a prior on the head's answer (see the module's docstring).

    Args:
        buffer: the most recent gated gestures kept and grouped.
        min_members: gestures kept before the groups count.
        iterations: k-means iterations per regrouping.
        weight: of the group's log prior against the head's logits (2, among 1, 2, 4 on uWave validation streams,
            each new person's own: 0.814 / 0.824 / 0.825 against the head's 0.788, on 3 of the gestures 0.776 /
            0.781 / 0.793; the demo's stream 0.797 each; 4 acts as the majority vote itself. 2 is the weaker of
            the two within a point: a stronger prior also lifts everyday movement inside a group).
    """

    name = "clusters"
    uses_pseudo_labels = False  # soft votes: an unsure gesture joins its group with its small vote
    checks_disagreement = False  # each group follows the head's majority over it: it cannot drift from the head
    # a chain hands it the logits of the part before it and what its input transform is (Chain.attach), and
    # leaves it out without a word on a sliding-window bundle

    def __init__(self, buffer: int = 256, min_members: int = MIN_MEMBERS, iterations: int = 10, weight: float = 2.0,
                 **kw: Any) -> None:  # fmt: skip
        super().__init__(**kw)
        self.buffer, self.min_members, self.iterations, self.weight = buffer, min_members, iterations, weight
        self.base_logits: Callable[[np.ndarray], np.ndarray] | None = None
        self.input_version: Callable[[], Any] = lambda: None  # what the input transform in front is (a chain's)
        self._last: tuple[np.ndarray | None, np.ndarray] = (None, np.zeros(0))  # (e, the base head's logits)

    def attach(self, ctx: AdaptContext) -> None:
        if not ctx.segments:
            raise ValueError("it groups whole gestures; this bundle answers sliding windows")
        super().attach(ctx)

    def reset(self) -> None:
        super().reset()
        D = self.W0.shape[1]
        self.E = np.zeros((self.buffer, D), np.float32)  # the kept gestures' embeddings, a ring
        self.n = 0  # gestures kept (at most ``buffer``)
        self.pos = 0  # the ring's next slot
        self._since = 0  # gestures kept since the last regrouping
        self._seen_version = self.input_version()
        self._drop_groups()

    def _drop_groups(self) -> None:
        self.C: np.ndarray | None = None  # [G, D] unit-norm centroids
        self.extent = np.zeros(0)  # [G] the least similar member's cosine
        self.log_prior = np.zeros((0, self.K))  # [G, K]

    def _head(self, e: np.ndarray) -> np.ndarray:
        return self.base_logits(e) if self.base_logits is not None else e @ self.W0.T + self.b0

    @property
    def changes(self) -> int:  # regroupings are not said one by one (the status line shows the groups)
        return 0

    def ungrouped_logits(self, e: np.ndarray) -> np.ndarray:
        return self._head(e)

    def base_probs(self, e: np.ndarray) -> np.ndarray:
        """The probabilities of the head it refines for embedding ``e [1, D]`` (the logits :meth:`logits` just
        computed for it when it is the same array: the chain's parts before it learn from these)."""
        last_e, last = self._last
        base = last if last_e is e else self._head(e)
        return softmax(base[0].astype(np.float64))

    def logits(self, e: np.ndarray) -> np.ndarray:
        out = self._head(e)
        self._last = (e, out)
        if self.C is None:
            return out
        if len(e) == 1:  # the live path: one gesture
            s = self.C @ e[0]
            j = int(s.argmax())
            if s[j] >= self.extent[j] * math.sqrt(float(e[0] @ e[0])):
                out = out + self.log_prior[j].astype(out.dtype)
            return out
        en = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        s = en @ self.C.T
        j = s.argmax(1)
        inside = s[np.arange(len(e)), j] >= self.extent[j]
        return out + np.where(inside[:, None], self.log_prior[j], 0.0).astype(out.dtype)

    def observe(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, ood: float | None = None,
                src: int | None = None) -> None:  # fmt: skip
        if self.input_version() != self._seen_version:  # embedded under another input transform: stale
            self.reset()
        super().observe(window, e, probs, ood, src)

    def update(self, window: np.ndarray, e: np.ndarray, probs: np.ndarray, k: int) -> None:
        self.E[self.pos] = e[0]
        self.pos = (self.pos + 1) % self.buffer
        self.n = min(self.n + 1, self.buffer)
        self._since += 1
        # regrouped every 2 gestures at first, then every n/16 (every 16 with a full buffer): a group moves little
        # with one more member, and a regrouping costs a few k-means passes over the buffer
        if self.n >= self.min_members and self._since >= max(2, self.n // 16):
            self._regroup()
            self.updates += 1

    def _regroup(self) -> None:
        self._since = 0
        E = self.E[: self.n]
        P = softmax(self._head(E).astype(np.float64))  # what the head says of each member now (no prior)
        Z = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
        C, a = group(Z, P, self.iterations)
        G = len(C)
        onehot = np.zeros((len(a), G))
        onehot[np.arange(len(a)), a] = 1.0
        votes = onehot.T @ P  # [G, K] the head's probabilities summed over each group's members
        members = onehot.sum(0)
        self.C = C.astype(np.float32)
        self.log_prior = self.weight * np.log((votes + 1.0) / (members[:, None] + self.K))
        sim = (Z * C[a]).sum(1)
        self.extent = np.array([sim[a == j].min() for j in range(G)])

    def state(self) -> dict[str, np.ndarray]:
        return {"E": self.E, "n": np.array(self.n), "pos": np.array(self.pos)}

    def load_state(self, st: dict[str, np.ndarray]) -> None:
        self.E = st["E"].astype(np.float32)
        self.n, self.pos = int(st["n"]), int(st["pos"])
        self._seen_version = self.input_version()  # (the parts before it were restored first)
        self._drop_groups()
        if self.n >= self.min_members:
            self._regroup()

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "gestures_kept": int(self.n), "groups": 0 if self.C is None else int(len(self.C)),
                "min_members": self.min_members}
