"""``edgessl run``: live gesture recognition from a serial IMU (numpy + onnxruntime only)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from edgessl.edge_runtime.adapt import DEFAULT_METHOD


class Recorder:
    """Saves the raw stream losslessly as a CSV recording (``time_s`` + channels, float32 round-trips)."""

    def __init__(self, path: str | Path, channels: list[str]):
        self.f: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.f.write(",".join(["time_s", *channels]) + "\n")

    def write(self, t: np.ndarray, values: np.ndarray) -> None:
        rows = (",".join([repr(float(ti)), *(repr(float(v)) for v in row)]) for ti, row in zip(t, values, strict=True))
        self.f.write("\n".join(rows) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def channel_map(device_channels: list[str], device_units: list[str], bundle_channels: list[str],
                bundle_units: list[str]) -> list[int]:  # fmt: skip
    """Indices of the bundle's channels in the device's, by name (aliases allowed) or, for unnamed text
    devices with the same count, by position. Raises ValueError when the device cannot feed the model."""
    from edgessl.datasets import DataFormatError, resolve_channels

    try:
        idx = resolve_channels(device_channels, bundle_channels)
    except DataFormatError:
        if all(c.lower().startswith("ch") for c in device_channels) and len(device_channels) == len(bundle_channels):
            return list(range(len(bundle_channels)))  # an unnamed text-mode device: by position
        raise ValueError(f"the device has channels {device_channels}; the model needs {bundle_channels}") from None
    for i, bu in zip(idx, bundle_units, strict=True):
        du = device_units[i] if i < len(device_units) else "unknown"
        if bu != "z-score" and du not in (bu, "unknown"):  # a z-scoring model accepts any unit
            raise ValueError(f"channel {device_channels[i]} is in {du} but the model expects {bu}")
    return idx


def _bar(p: float, width: int = 20) -> str:
    n = int(round(p * width))
    return "#" * n + "." * (width - n)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from edgessl.edge_runtime.adapt import build_adapter
    from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
    from edgessl.firmware_bridge.transport import Gap, ImuStream, SampleBlock

    providers = [p if p.endswith("ExecutionProvider") else f"{p}ExecutionProvider" for p in args.providers.split(",")]
    decision = DecisionConfig(confidence=args.confidence)
    adapter = build_adapter(args.adapt, state_path=args.adapt_state)
    with GestureRuntime(args.bundle, providers=providers, decision=decision, adapter=adapter) as rt, \
            ImuStream(args.port, mode=args.mode, rate_hz=args.rate) as dev:  # fmt: skip
        idx = channel_map(dev.channel_names, dev.unit_names, rt.channels, rt.bundle.units)
        rec = Recorder(args.record, dev.channel_names) if args.record else None
        if not args.json:
            print(f"# {Path(args.bundle).name}: {rt.labels} | {rt.metadata['input_mode']} | providers {rt.providers} | "
                  f"device {dev.mode} {dev.channel_names} at {dev.sample_rate or '?'} Hz", file=out, flush=True)  # fmt: skip
        t_end = None if args.seconds is None else time.monotonic() + args.seconds
        n_samples, t_start, last_status = 0, time.monotonic(), 0.0
        try:
            while t_end is None or time.monotonic() < t_end:
                for ev in dev.read(0.05):
                    if isinstance(ev, Gap):
                        rt.gap()
                        continue
                    assert isinstance(ev, SampleBlock)
                    if rec is not None:
                        rec.write(ev.t_device, ev.values)
                    n_samples += len(ev.values)
                    for e in rt.feed(ev.values[:, idx], ev.t_device):
                        if args.json:
                            print(json.dumps(e.to_json()), file=out, flush=True)
                        else:
                            print(f"\r{e.t:9.2f}s  {e.label:>12s}  [{_bar(e.confidence)}] {e.confidence:.2f}  "
                                  f"{e.latency_ms:.2f} ms  ({e.window_start:.2f}-{e.window_end:.2f} s)", file=out, flush=True)  # fmt: skip
                if not args.json and time.monotonic() - last_status > 0.5:
                    last_status = time.monotonic()
                    rate = n_samples / max(1e-9, last_status - t_start)
                    lat = np.median(rt.latencies_ms[-50:]) if rt.latencies_ms else float("nan")
                    state = "idle" if rt.windower.idle else "moving"
                    print(f"\r  {state:6s} {rate:6.1f} Hz  latency {lat:.2f} ms  dropped {dev.dropped_samples}   ",
                          end="", file=out, flush=True)  # fmt: skip
        except KeyboardInterrupt:
            pass
        finally:
            if rec is not None:
                rec.close()
            if adapter is not None and args.adapt_state:
                adapter.save(args.adapt_state)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="live gesture recognition from a serial IMU")
    p.add_argument("bundle", help="model bundle (.essl)")
    p.add_argument("--port", required=True, help="serial port or URL (a path, /dev/ttyACM0, the simulator's path)")
    p.add_argument("--providers", default="CPU", help="onnxruntime providers in order, e.g. TensorRT,CUDA,CPU")
    p.add_argument("--adapt", default=DEFAULT_METHOD,
                   help="test-time adaptation: none, t3a, tent, ttt, input, or a chain like input+tent "
                        f"(default {DEFAULT_METHOD}: best in benchmarks/results/tta_shift.json)")
    p.add_argument("--adapt-state", default=None, help="file to restore adapted state from and save it to")
    p.add_argument("--json", action="store_true", help="one JSON line per event on stdout")
    p.add_argument("--record", default=None, help="save the raw stream losslessly to this CSV file")
    p.add_argument("--mode", choices=["auto", "binary", "text"], default="auto")
    p.add_argument("--rate", type=float, default=None, help="sample rate of a text-mode device (else estimated)")
    p.add_argument("--confidence", type=float, default=0.5, help="below this the answer is 'unknown'")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(func=run)
