"""Fuzz and throughput of the host decoder (protocol v1). Writes benchmarks/results/bridge_fuzz.json.

Fuzz protocol: a stream of N SAMPLES frames (10 samples x 3 channels, random int16 counts, as the simulator
sends at 100 Hz); each frame is independently left intact or damaged: a bit flip (p_flip), a deleted byte
(p_drop), a truncation that loses its tail and delimiter so it merges with the next frame (p_cut), or a burst
of 1-64 random bytes glued in front (p_garbage). The stream is fed in random chunk sizes. A frame is
*valid* when its bytes arrive unmodified and start right after a delimiter; the decoder must return
exactly the valid frames, in order: none lost, none corrupted accepted, no exception.

Throughput: a clean binary stream and a clean CSV stream, decoded into numpy samples on one core.

    python benchmarks/bridge_fuzz.py [--frames 1000000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgessl.firmware_bridge import protocol as P


def build_stream(rng: np.random.Generator, n: int, p: dict[str, float], seq0: int):
    counts = rng.integers(-32768, 32768, size=(n, 10, 3))
    wires = [P.encode_frame(P.make_samples(seq0 + i, (seq0 + i) * 100_000, counts[i])) for i in range(n)]
    frames = [P.decode_frame(w) for w in wires]
    kinds = rng.choice(["ok", "flip", "drop", "cut", "garbage"], size=n,
                       p=[1 - sum(p.values()), p["flip"], p["drop"], p["cut"], p["garbage"]])  # fmt: skip
    parts, valid = [], []
    prev_ends_delim = True
    for w, f, k in zip(wires, frames, kinds, strict=True):
        b = bytearray(w)
        if k == "flip":
            i = int(rng.integers(len(b) - 1))
            b[i] ^= 1 << int(rng.integers(8))  # a flip that makes a 0x00 splits the frame: both halves are damaged
        elif k == "drop":
            del b[int(rng.integers(len(b) - 1))]
        elif k == "cut":
            b = b[: int(rng.integers(1, len(b) - 1))]  # loses its own delimiter
        elif k == "garbage":
            g = rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
            b = bytearray(g) + b
        intact = k == "ok" and prev_ends_delim
        if k == "garbage" and g.endswith(b"\x00"):
            intact = True  # garbage that happens to end with a delimiter leaves the frame whole
        if intact:
            valid.append(f)
        parts.append(bytes(b))
        prev_ends_delim = bytes(b).endswith(b"\x00")
    return b"".join(parts), valid, {k: int((kinds == k).sum()) for k in ("ok", "flip", "drop", "cut", "garbage")}


def fuzz(n_frames: int, seed: int, batch: int = 20000) -> dict:
    rng = np.random.default_rng(seed)
    p = {"flip": 0.05, "drop": 0.03, "cut": 0.02, "garbage": 0.03}
    dec = P.FrameDecoder()
    totals = {"frames": 0, "valid": 0, "recovered": 0, "accepted_corrupt": 0, "lost_valid": 0, "exceptions": 0}
    kinds_total: dict[str, int] = {}
    t0 = time.perf_counter()
    for start in range(0, n_frames, batch):
        n = min(batch, n_frames - start)
        stream, valid, kinds = build_stream(rng, n, p, start)
        for k, v in kinds.items():
            kinds_total[k] = kinds_total.get(k, 0) + v
        got: list[P.Frame] = []
        pos = 0
        try:
            while pos < len(stream):
                step = int(rng.integers(1, 600))
                got += dec.feed(stream[pos : pos + step])
                pos += step
            got += dec.feed(b"\x00")  # flush the last partial frame as if the next frame began
        except Exception:  # noqa: BLE001 - counting what escapes is the point
            totals["exceptions"] += 1
        valid_keys = {(f.seq, f.payload) for f in valid}
        got_keys = [(f.seq, f.payload) for f in got]
        totals["frames"] += n
        totals["valid"] += len(valid)
        totals["accepted_corrupt"] += sum(1 for k in got_keys if k not in valid_keys)
        recovered = len(valid_keys & set(got_keys))
        totals["recovered"] += recovered
        totals["lost_valid"] += len(valid) - recovered
        totals["order_preserved"] = totals.get("order_preserved", True) and got_keys == [(f.seq, f.payload) for f in valid]
    totals["damaged_frames_by_kind"] = {k: v for k, v in kinds_total.items() if k != "ok"}
    totals["decoder_stats"] = dict(dec.stats.__dict__)
    totals["seconds"] = round(time.perf_counter() - t0, 1)
    return totals


def throughput_binary(n_frames: int = 50000, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    wires = b"".join(P.encode_frame(P.make_samples(i, i * 100_000, rng.integers(-32768, 32768, size=(10, 3))))
                     for i in range(n_frames))  # fmt: skip
    best = 0.0
    for _ in range(3):
        dec = P.FrameDecoder()
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(wires), 4096):  # serial reads of up to 4 KiB
            for f in dec.feed(wires[i : i + 4096]):
                n += len(P.parse_samples(f))
        best = max(best, n / (time.perf_counter() - t0))
    return {"samples_per_s": round(best), "frames": n_frames, "samples_per_frame": 10, "channels": 3}


def throughput_csv(n_lines: int = 200000, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, size=(n_lines, 3))
    text = b"".join(P.format_reading(list(map(float, row))) for row in v)
    best = 0.0
    for _ in range(3):
        dec = P.LineDecoder()
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(text), 4096):
            n += len(dec.feed(text[i : i + 4096]))
        best = max(best, n / (time.perf_counter() - t0))
    return {"samples_per_s": round(best), "lines": n_lines, "channels": 3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bridge_fuzz.json"))
    a = ap.parse_args()
    fz = fuzz(a.frames, a.seed)
    print(json.dumps(fz, indent=1))
    tb, tc = throughput_binary(), throughput_csv()
    print("binary", tb, "csv", tc)
    result = {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "fuzz": fz,
        "acceptance": {
            "frames_ge_1e6": fz["frames"] >= 1_000_000,
            "zero_exceptions": fz["exceptions"] == 0,
            "zero_corrupted_accepted": fz["accepted_corrupt"] == 0,
            "every_valid_frame_recovered": fz["lost_valid"] == 0,
            "binary_ge_200k_samples_per_s": tb["samples_per_s"] >= 200_000,
        },
        "throughput_binary": tb,
        "throughput_csv": tc,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
