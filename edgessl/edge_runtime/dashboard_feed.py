"""What ``run``, ``monitor`` and ``record`` hand to the live page (``--serve``), in one place.

The status (device, runtime, adaptation) is a small dict built every :data:`STATUS_EVERY_S` whether a page
is connected or not, so ``/state`` and a newly opened page are current; events and predictions are handed
over when they happen. From before the port is opened the page says what the command waits for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgessl.console import gaps_text
from edgessl.edge_runtime.rate import RateMeter

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
    if g.label == "unknown" and g.reason:  # the event's own reason (the runtime's words), in the page's words
        d["reason"] = REASON_TEXT[g.reason]
    return d


def device_status(dev: ImuStream, rate_hz: float, reconnects: int | None = None, port: str | None = None) -> dict[str, Any]:
    """The device panel: state, port, measured rate, the bridge's loss counters, reconnects."""
    c = dev.counters()
    gaps = c["gaps"]
    return {"state": c["state"], "port": port, "rate_hz": round(rate_hz, 2), "nominal_hz": dev.sample_rate,
            "delivered": c["delivered_samples"], "dropped": c["dropped_samples"],
            "rejected": sum(c["rejected_samples"].values()), "gaps": sum(gaps.values()),
            # as run's last line says them: why samples are missing, and frames the bridge refused
            "gaps_text": gaps_text(gaps), "frames_refused": sum(c.get("rejected_frames", {}).values()),
            "reconnects": gaps.get("disconnect", 0) if reconnects is None else reconnects}  # fmt: skip


# as the status line says
REASON_TEXT = {"noise": "noise", "low_confidence": "low confidence", "out_of_distribution": "unlike training"}


def runtime_status(rt: GestureRuntime) -> dict[str, Any]:
    """The runtime's latency (median of the last 50 decisions) and unknown counts."""
    from edgessl.edge_runtime.runtime import MOVEMENTS_NOT_CLASSIFIED

    counts = {f"unknown_{k}": rt.stats[f"unknown_{k}"] for k in REASON_TEXT}
    lat = float(np.median(rt.latencies_ms[-50:])) if rt.latencies_ms else None
    return {"latency_ms": lat, "unknown": sum(counts.values()), **counts,
            **{k: rt.stats[k] for k in MOVEMENTS_NOT_CLASSIFIED}}


def adaptation_status(rt: GestureRuntime) -> dict[str, Any] | None:
    adapter = getattr(rt, "adapter", None)
    return adapter.summary() if adapter is not None else None


class Feed:
    """The page's side of a command's loop (or of your own, docs/dashboard.md): call :meth:`samples` per block,
    :meth:`event` per event, :meth:`state` with every device state (the
    :class:`~edgessl.firmware_bridge.states.StateReporter`'s hook), :meth:`tick` once per loop turn (the status
    every :data:`STATUS_EVERY_S`, a new prediction).

    Args:
        dash: the page.
        rt: the runtime (its labels, decisions and adaptation), None for the stream only.
        name: the model's name shown on the page.
        port: the port, as the command was given it (the page says what it waits for).
        meter: the command's own rate meter, which the command feeds (the status line and the page then show
            the same rate); None: the feed keeps one.
    """

    def __init__(self, dash: Dashboard, rt: GestureRuntime | None = None, name: str | None = None,
                 port: str | None = None, meter: RateMeter | None = None):  # fmt: skip
        self.dash, self.rt, self.port = dash, rt, port
        self.last_t: float | None = None
        self.delivered = 0  # samples handed to :meth:`samples` (the device panel of a loop without a bridge)
        self.meter = meter if meter is not None else RateMeter()
        self._own_meter = meter is None
        self._last_status = 0.0
        self._shown: Any = None
        if rt is not None:
            dash.model(rt.labels, name=name, input_mode=rt.metadata.get("input_mode"))
        # before the port is opened: what the command is about to do, and the adaptation it was configured with
        self._device: dict[str, Any] = {"state": "opening", "port": port}
        initial: dict[str, Any] = {"device": self._device}
        if rt is not None:
            initial["runtime"] = runtime_status(rt)
            initial["adaptation"] = adaptation_status(rt)
        dash.status(initial)

    def state(self, state: str) -> None:
        """A device state change (waiting, streaming, reconnecting, closed), on the page at once: ``open()``
        waits for a port in the command's thread, where no :meth:`tick` runs."""
        self._device = {**self._device, "state": state}
        if state != "streaming":  # nothing arrives while waiting or reconnecting
            self._device["rate_hz"] = 0.0
        self.dash.status({"device": self._device})

    def stream(self, dev: ImuStream) -> None:
        """The device's channels (at open, and when the device changed)."""
        self.dash.stream(dev.channel_names, dev.unit_names, dev.sample_rate)

    def samples(self, t: np.ndarray, values: np.ndarray, t_host: float | None = None) -> None:
        """A block of samples (``t_host``: when it arrived, ``time.monotonic()``; now when not given)."""
        if self._own_meter:
            self.meter.add(time.monotonic() if t_host is None else t_host, len(t))
        self.delivered += len(t)
        self.last_t = float(t[-1])
        self.dash.samples(t, values)

    def event(self, g: Event) -> None:
        assert self.rt is not None
        self.dash.event(event_payload(g, self.rt, self.last_t))

    def final(self, dev: ImuStream | None = None, reconnects: int | None = None, **extra: Any) -> None:
        """The command is ending: its last status (not held back by :data:`STATUS_EVERY_S`, so the last
        samples' counters and the last take are on the page), then the device ``stopped`` at rate 0."""
        self.tick(dev, reconnects, force=True, **extra)
        self.state("stopped")

    def tick(self, dev: ImuStream | None = None, reconnects: int | None = None, force: bool = False,
             **extra: Any) -> None:  # fmt: skip
        """Once per loop turn: a new prediction at once, the status every :data:`STATUS_EVERY_S` (``dev``: the
        bridge's stream, whose counters fill the device panel; None for your own reader: the samples handed to
        :meth:`samples` and their rate)."""
        rt = self.rt
        if rt is not None and rt.last_prediction is not None and rt.last_prediction is not self._shown:
            self._shown = inp, pred = rt.last_prediction
            info: dict[str, Any] = {"label": pred.label, "confidence": round(float(pred.confidence), 4),
                                    "ood_score": round(float(pred.ood_score), 4), "t": round(inp.t_end, 3)}  # fmt: skip
            if pred.index < 0 and pred.reason:  # unknown: which gate, against which threshold, the class it would have been
                info["reason"] = REASON_TEXT[pred.reason]
                info["top"] = rt.labels[int(np.argmax(pred.probs))]
                info["gate"] = {"noise": rt.roughness_threshold, "low_confidence": rt.confidence,
                                "out_of_distribution": rt.ood_threshold}[pred.reason]  # fmt: skip
                if pred.reason == "noise":
                    info["roughness"] = round(float(pred.roughness), 4)
            self.dash.probabilities(rt.labels, pred.probs, **info)
        now = time.monotonic()
        if not force and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        self._device = (device_status(dev, self.meter.rate_hz(now), reconnects, self.port) if dev is not None else
                        {"state": "streaming", "port": self.port, "rate_hz": round(self.meter.rate_hz(now), 2),
                         "delivered": self.delivered})  # fmt: skip
        fields: dict[str, Any] = {"device": self._device, **extra}
        if rt is not None:
            fields["runtime"] = runtime_status(rt)
            fields["adaptation"] = adaptation_status(rt)
        self.dash.status(fields)
