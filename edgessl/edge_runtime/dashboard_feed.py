"""What ``run``, ``monitor`` and ``record`` hand to the live page (``--serve``), in one place.

Built only while a page is connected (the status) or when something happened (an event, a new prediction):
with nobody watching, the loop pays for a reference append per block.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgessl.dashboard import Dashboard
    from edgessl.edge_runtime.runtime import Event, GestureRuntime
    from edgessl.firmware_bridge.transport import ImuStream

STATUS_EVERY_S = 0.5  # the page's device and runtime panels (the terminal's status line has the same period)


def event_payload(g: Event, rt: GestureRuntime, last_t: float | None) -> dict[str, Any]:
    """An event for the page: :meth:`Event.to_json` plus ``end_wall``, the host wall time of the gesture's end
    (now, less how far the stream has gone past it), and for ``unknown`` its ``reason``."""
    d = g.to_json()
    behind = 0.0 if last_t is None else max(0.0, last_t - g.window_end)
    d["end_wall"] = round(time.time() - behind, 3)
    if g.label == "unknown":
        d["reason"] = "low confidence" if g.confidence < rt.confidence else "unlike training"
    return d


def device_status(dev: ImuStream, rate_hz: float, reconnects: int | None = None) -> dict[str, Any]:
    """The device panel: state, measured rate, the bridge's loss counters, reconnects."""
    c = dev.counters()
    gaps = c["gaps"]
    return {"state": c["state"], "rate_hz": round(rate_hz, 2), "nominal_hz": dev.sample_rate,
            "delivered": c["delivered_samples"], "dropped": c["dropped_samples"],
            "rejected": sum(c["rejected_samples"].values()), "gaps": sum(gaps.values()),
            "reconnects": gaps.get("disconnect", 0) if reconnects is None else reconnects}  # fmt: skip


def runtime_status(rt: GestureRuntime) -> dict[str, Any]:
    """The runtime's latency (median of the last 50 decisions) and unknown counts."""
    low, ood = rt.stats["unknown_low_confidence"], rt.stats["unknown_out_of_distribution"]
    lat = float(np.median(rt.latencies_ms[-50:])) if rt.latencies_ms else None
    return {"latency_ms": lat, "unknown": low + ood, "unknown_low_confidence": low, "unknown_out_of_distribution": ood}


def adaptation_status(rt: GestureRuntime) -> dict[str, Any] | None:
    adapter = getattr(rt, "adapter", None)
    return adapter.summary() if adapter is not None else None


class Feed:
    """The page's side of a command's loop: call :meth:`samples` per block, :meth:`event` per event,
    :meth:`tick` once per loop turn (the status every :data:`STATUS_EVERY_S`, a new prediction)."""

    def __init__(self, dash: Dashboard, rt: GestureRuntime | None = None, name: str | None = None):
        self.dash, self.rt = dash, rt
        self.last_t: float | None = None
        self._t0 = time.monotonic()
        self._n = 0
        self._last_status = 0.0
        self._shown: Any = None
        if rt is not None:
            dash.model(rt.labels, name=name, input_mode=rt.metadata.get("input_mode"))

    def stream(self, dev: ImuStream) -> None:
        """The device's channels (at open, and when the device changed)."""
        self.dash.stream(dev.channel_names, dev.unit_names, dev.sample_rate)

    def samples(self, t: np.ndarray, values: np.ndarray) -> None:
        self._n += len(t)
        self.last_t = float(t[-1])
        self.dash.samples(t, values)

    def event(self, g: Event) -> None:
        assert self.rt is not None
        self.dash.event(event_payload(g, self.rt, self.last_t))

    def tick(self, dev: ImuStream, reconnects: int | None = None, **extra: Any) -> None:
        rt = self.rt
        if rt is not None and rt.last_prediction is not None and rt.last_prediction is not self._shown:
            self._shown = inp, pred = rt.last_prediction
            self.dash.probabilities(rt.labels, pred.probs, label=pred.label, confidence=round(float(pred.confidence), 4),
                                    ood_score=round(float(pred.ood_score), 4), t=round(inp.t_end, 3))  # fmt: skip
        now = time.monotonic()
        if not self.dash.listening or now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        fields: dict[str, Any] = {"device": device_status(dev, self._n / max(1e-9, now - self._t0), reconnects), **extra}
        if rt is not None:
            fields["runtime"] = runtime_status(rt)
            fields["adaptation"] = adaptation_status(rt)
        self.dash.status(fields)
