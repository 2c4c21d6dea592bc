"""A remounted board on the own-board journey: what `edgessl run`'s default adaptation wins back, live.

The model is built as the README's own-board path builds it (benchmarks/own_data.py's steps: record 10 cued
performances of each gesture + 180 s unlabelled on the simulated board as user A, pretrain, finetune, export,
all defaults). Then a new session of the same person (1800 s of device time, random gestures) is streamed
three times through `edgessl run` with the default decisions: the board as recorded; the board turned 30°
on its mount (`edgessl simulate --faults mount=30`, one oblique axis) without adaptation
(`--adapt none`); and turned with the default adaptation. Each is scored against what the simulated person
performed (own_data.score): over the whole session and over its second half (after adaptation had time to
settle). Writes benchmarks/results/remount.json.

    python benchmarks/remount.py [--repeats 3] [--speed 8] [--seconds 1800] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from own_data import GESTURES, edgessl, read_jsonl, read_jsonl_text, repeat_dir, score, simulator  # noqa: E402

MOUNT_DEG = 30.0


def build(work: Path, speed: float, seed: int) -> Path:
    """The own-board model of user A (the journey's first steps, all defaults)."""
    ds = work / "my_gestures"
    with simulator("--perform", "cue", "--user", "A", "--seed", str(seed + 1), "--speed", str(speed)) as port:
        edgessl("record", "--port", port, "--out", str(ds), "--user", "A", "--label", ",".join(GESTURES), "--count",
                "10", "--countdown", "0")  # fmt: skip
    with simulator("--user", "A", "--seed", str(seed + 2), "--speed", str(speed)) as port:
        edgessl("record", "--port", port, "--out", str(ds), "--user", "A", "--seconds", str(180 / speed))
    edgessl("pretrain", "--data", f"dir:{ds}", "--out", str(work / "pre"), "--quiet")
    edgessl("finetune", "--data", f"dir:{ds}", "--init", str(work / "pre"), "--out", str(work / "ft"), "--quiet")
    bundle = work / "my_gestures.essl"
    edgessl("export", str(work / "ft"), "--out", str(bundle))
    return bundle


def session(bundle: Path, work: Path, name: str, seed: int, seconds: float, speed: float, faults: str | None,
            adapt: str | None) -> dict[str, Any]:  # fmt: skip
    log = work / f"performed_{name}.jsonl"
    with simulator("--user", "A", "--seed", str(seed), "--speed", str(speed), "--log", str(log),
                   *(["--faults", faults] if faults else [])) as port:  # fmt: skip
        r, _ = edgessl("run", str(bundle), "--port", port, "--json", "--show-unknown", "--seconds", str(seconds / speed),
                       *(["--adapt", adapt] if adapt else []))  # fmt: skip
    performed, lines = read_jsonl(log), read_jsonl_text(r.stdout)
    whole = score(performed, lines)
    half = seconds / 2
    later = score([p for p in performed if p["start_s"] >= half], lines)  # (its false events mean nothing)
    stats = next((ln["stats"] for ln in reversed(lines) if "stats" in ln), {})
    return {"accuracy": whole["accuracy"], "performed": whole["performed"], "right": whole["right"],
            "answered_unknown": whole["answered_unknown"], "second_half_accuracy": later["accuracy"],
            "second_half_performed": later["performed"], "adaptation": stats.get("adaptation")}  # fmt: skip


def board_args(doc: str, seconds: float, result: str) -> argparse.Namespace:
    """The flags of a benchmark of repeated simulated-board sessions (this one's and mounting.py's)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--speed", type=float, default=8.0, help="simulator playback speed (signals are unchanged)")
    ap.add_argument("--seconds", type=float, default=seconds, help="device seconds of each live session")
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / result))
    return ap.parse_args()


def main() -> None:
    a = board_args(__doc__, 1800.0, "remount.json")
    runs = []
    for k in range(a.repeats):
        with repeat_dir(a.keep, k) as work:
            bundle = build(work, a.speed, 10 * k)
            live_seed = 10 * k + 7
            run = {"straight": session(bundle, work, "straight", live_seed, a.seconds, a.speed, None, None),
                   "turned_unadapted": session(bundle, work, "turned_none", live_seed, a.seconds, a.speed,
                                               f"mount={MOUNT_DEG:g}", "none"),
                   "turned_adapted": session(bundle, work, "turned_default", live_seed, a.seconds, a.speed,
                                             f"mount={MOUNT_DEG:g}", None)}  # fmt: skip
            runs.append(run)
            print(json.dumps({k2: {f: v[f] for f in ("accuracy", "second_half_accuracy")} for k2, v in run.items()}),
                  flush=True)  # fmt: skip
    import numpy as np

    summary: dict[str, Any] = {}
    for case in runs[0]:
        for f in ("accuracy", "second_half_accuracy"):
            v = np.array([r[case][f] for r in runs], float)
            summary[f"{case}.{f}"] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)), 4)
                                      if len(v) > 1 else 0.0, "values": [round(float(x), 4) for x in v]}  # fmt: skip
    res = {"summary": summary, "repeats": runs, "protocol": (
        f"own-board model of simulated user A built as benchmarks/own_data.py builds it (seeds 1, 2 + 10k for repeat "
        f"k; all defaults); live: edgessl run, default decisions, on {a.seconds:g} s of a new random session of A "
        f"(seed 7 + 10k): straight; turned {MOUNT_DEG:g}° (simulate --faults mount={MOUNT_DEG:g}) with --adapt none; "
        "turned with the default adaptation. accuracy = right / performed (unknown counts as not right); second "
        "half: the performances that started in the session's second half; mean ± std over the repeats"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "speed": a.speed}}
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
