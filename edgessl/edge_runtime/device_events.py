"""The board's own gesture events next to the host's, for the same samples (``edgessl run`` with a board that
runs an exported model, protocol revision 3).

The board classifies its samples with the C model (``edgessl export-c``) and sends EVENT messages; the host
classifies the very samples the board streamed with the bundle. :class:`EventComparison` pairs the two by
time: a board event and a host event whose gesture intervals overlap are the same gesture, and agree when
their labels are equal (``unknown`` included). An event the other side has not matched within
``horizon_s`` seconds of stream time after its end counts as seen by one side only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgessl.edge_runtime.runtime import Event
    from edgessl.firmware_bridge.protocol import ModelInfo
    from edgessl.firmware_bridge.transport import DeviceEvent


@dataclasses.dataclass(frozen=True)
class Side:
    """One side's view of a gesture, as compared."""

    label: str
    confidence: float
    t_start: float
    t_end: float


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A resolved pair: both sides saw the gesture (``agree`` says whether they named it alike), or one only."""

    board: Side | None
    host: Side | None

    @property
    def agree(self) -> bool:
        return self.board is not None and self.host is not None and self.board.label == self.host.label

    @property
    def kind(self) -> str:
        if self.board is None:
            return "host_only"
        if self.host is None:
            return "board_only"
        return "agree" if self.agree else "disagree"

    def to_json(self) -> dict[str, Any]:
        def side(s: Side | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {"label": s.label, "confidence": round(s.confidence, 4), "t_start": round(s.t_start, 4),
                    "t_end": round(s.t_end, 4)}  # fmt: skip

        return {"result": self.kind, "board": side(self.board), "host": side(self.host)}


class EventComparison:
    """Pairs board events with host events by overlapping gesture intervals.

    Args:
        horizon_s: stream seconds after an event's end to wait for the other side's.

    Attributes:
        counts: resolved pairs per kind: ``agree``, ``disagree``, ``board_only``, ``host_only``.
    """

    def __init__(self, horizon_s: float = 2.0):
        self.horizon_s = horizon_s
        self._board: list[Side] = []
        self._host: list[Side] = []
        self.counts = {"agree": 0, "disagree": 0, "board_only": 0, "host_only": 0}

    def add_board(self, ev: DeviceEvent) -> list[Comparison]:
        return self._add(Side(ev.label, ev.confidence, ev.t_start, ev.t_end), self._board, self._host, board=True)

    def add_host(self, ev: Event) -> list[Comparison]:
        return self._add(Side(ev.label, ev.confidence, ev.window_start, ev.window_end), self._host, self._board,
                         board=False)  # fmt: skip

    def _add(self, s: Side, mine: list[Side], other: list[Side], board: bool) -> list[Comparison]:
        overlaps = [min(s.t_end, o.t_end) - max(s.t_start, o.t_start) for o in other]
        best = max(range(len(other)), key=overlaps.__getitem__, default=None)
        if best is None or overlaps[best] < 0:
            mine.append(s)
            return []
        o = other.pop(best)
        return [self._count(Comparison(s, o) if board else Comparison(o, s))]

    def advance(self, t_now: float) -> list[Comparison]:
        """Resolve the events whose counterpart did not come within the horizon (``t_now``: stream time)."""
        out = []
        for pending, board in ((self._board, True), (self._host, False)):
            for s in [s for s in pending if s.t_end + self.horizon_s < t_now]:
                pending.remove(s)
                out.append(self._count(Comparison(s, None) if board else Comparison(None, s)))
        return out

    def finish(self) -> list[Comparison]:
        """Resolve everything still pending (the stream ended)."""
        return self.advance(float("inf"))

    def _count(self, c: Comparison) -> Comparison:
        self.counts[c.kind] += 1
        return c

    @property
    def compared(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        c = self.counts
        return (f"board agrees {c['agree']}/{self.compared} (differs {c['disagree']}, board only {c['board_only']}, "
                f"host only {c['host_only']})")  # fmt: skip


def model_mismatch(info: ModelInfo, bundle: str | Path, checksum: str, labels: list[str]) -> str | None:
    """A one-line warning when the board's model is not ``bundle`` (whose :attr:`Bundle.checksum
    <edgessl.edge_runtime.bundle.Bundle.checksum>` is ``checksum``), or may not be; else None."""
    name = Path(bundle).name
    sha = info.sha256_hex
    if sha is None:
        if list(info.labels) == list(labels):
            return None  # most likely this bundle; the board cannot tell
        return (f"the board runs a model with labels {list(info.labels)} and does not say which bundle; {name} "
                f"has {labels}: its events are compared by label")  # fmt: skip
    if sha == checksum:
        return None
    return (f"the board runs the bundle with checksum {sha[:12]}..., not {name} ({checksum[:12]}...): its events "
            "come from another model and are compared by label")  # fmt: skip


def board_event_text(ev: DeviceEvent) -> str:
    """One board event as the status display prints it, under the host's events (``run``)."""
    why = "" if ev.reason == "ok" else f" ({ev.reason})"
    return f"{ev.t_end:9.2f}s  {'board: ' + ev.label:>19s}  {ev.confidence:.2f}  ({ev.t_start:.2f}-{ev.t_end:.2f} s){why}"


def comparison_text(c: Comparison) -> str:
    """A pair that did not agree, as a note line."""
    def side(s: Side | None) -> str:
        return "nothing" if s is None else f"{s.label} ({s.confidence:.2f})"

    at = c.board or c.host
    assert at is not None
    return f"board said {side(c.board)}, host said {side(c.host)} at {at.t_start:.2f}-{at.t_end:.2f} s"
