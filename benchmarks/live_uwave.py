"""Live stream of uWave gestures through the runtime's default path. Writes benchmarks/results/live_uwave.json.

Protocol: the models of benchmarks/enroll.py (uWave users 1–4, UCR train split, 5 labels per class, 100
epochs), exported with the default export in segment input mode (calibrated gates), on a new session of the
users whose gestures trained them: their held-out days (the UCR test split of users 1–4), each user's
templates in time order, raw in g, joined into one 100 Hz stream: 0.8–1.5 s still in the last posture, a
0.6 s return move to the next gesture's first posture, 0.8–1.5 s still, the gesture; 0.003 g sensor noise.
The stream is fed in 10-sample frames to ``GestureRuntime`` as ``edgessl run`` feeds it: motion-energy
segments, the bundle's gates, the default adaptation; gestures answered ``unknown`` are reported too
(``report_unknown``, as ``run --show-unknown``) so that each performance can be scored. A performance is
reported when the event overlapping it most names a gesture (not ``unknown``); events overlapping neither a
performance nor a return move are false events, per minute of stillness; events on return moves are
counted apart. Not gestures: ``own_data.junk`` (20 bursts each of white noise at 0.05/0.3/1 g and 20
knocks, the board at rest between); an event naming a gesture is a false event; also without the noise
gate, for comparison.

    python benchmarks/live_uwave.py --bundles DIR [--seeds 3]     (DIR: benchmarks/enroll.py --workdir)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
from own_data import junk, score

from edgessl.datasets import load_stream
from edgessl.edge_runtime.adapt import DEFAULT_METHOD, build_adapter
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime

PROTOCOL = __doc__.split("\n\n")[1]
RATE = 100.0
MOVE_S = 0.6  # the return move between two gestures
NOISE_G = 0.003  # sensor noise (rms per axis; a MEMS accelerometer at 100 Hz)


def session(raw, keep: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[dict], list[dict]]:
    """One stream ``[n, 3]`` of the selected templates with the user still between them; the performances and
    the return moves (from one gesture's end posture to the next one's start: motion that is no gesture)."""
    parts, performed, moves, t = [], [], [], 0
    idx = [k for k in np.flatnonzero(keep) if raw.offsets[k + 1] - raw.offsets[k] >= 8]
    last = raw.recording(idx[0])[:, 0]
    for k in idx:
        g = raw.recording(k).T  # [T, 3]
        hold1, hold2, n_move = int(rng.uniform(0.8, 1.5) * RATE), int(rng.uniform(0.8, 1.5) * RATE), int(MOVE_S * RATE)
        s = np.linspace(0, 1, n_move)[:, None]
        s = s * s * (3 - 2 * s)  # smoothstep: starts and ends at rest
        move = last[None] * (1 - s) + g[0][None] * s
        parts += [np.repeat(last[None], hold1, 0), move, np.repeat(g[0][None], hold2, 0), g]
        moves.append({"start_s": (t + hold1) / RATE, "end_s": (t + hold1 + n_move) / RATE})
        t += hold1 + n_move + hold2
        performed.append({"start_s": t / RATE, "end_s": (t + len(g)) / RATE,
                          "label": raw.class_names[raw.recording_labels[k]]})  # fmt: skip
        t += len(g)
        last = g[-1]
    x = np.concatenate([*parts, np.repeat(last[None], int(3 * RATE), 0)]).astype(np.float32)
    return x + rng.normal(0, NOISE_G, x.shape).astype(np.float32), performed, moves


def live(bundle: Path, x: np.ndarray, performed: list[dict], moves: list[dict], adapt: str = DEFAULT_METHOD) -> dict:
    decision = dataclasses.replace(DecisionConfig(), report_unknown=True)
    with GestureRuntime(bundle, decision=decision, adapter=build_adapter(adapt)) as rt:
        t = np.arange(len(x)) / RATE
        events = []
        for i in range(0, len(x), 10):  # frames of 10 samples, as the board sends them
            events += [e.to_json() for e in rt.feed(x[i : i + 10], t[i : i + 10])]
        stats = dict(rt.stats)
    # events on a return move are not gestures, but not idle either: counted apart
    def on(e: dict, spans: list[dict]) -> bool:
        return any(min(p["end_s"], e["window_end"]) > max(p["start_s"], e["window_start"]) for p in spans)

    on_moves = [e for e in events if e["label"] != "unknown" and on(e, moves) and not on(e, performed)]
    out = score(performed, [e for e in events if not (on(e, moves) and not on(e, performed))])
    busy = sum(m["end_s"] - m["start_s"] for m in moves)
    out["idle_minutes"] = round(out["idle_minutes"] - busy / 60, 2)
    out["false_events_per_idle_minute"] = out["false_events"] / max(out["idle_minutes"], 1e-9)
    out["events_on_return_moves"] = len(on_moves)
    out["return_moves"] = len(moves)
    out["runtime_stats"] = stats
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundles", required=True, help="benchmarks/enroll.py --workdir (u14_<seed>/model.essl)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--adapt", default=DEFAULT_METHOD, help=f"adaptation (default {DEFAULT_METHOD}, run's)")
    ap.add_argument("--users", default="1,2,3,4")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "live_uwave.json"))
    a = ap.parse_args()
    raw = load_stream("npz:uwave_raw.npz")
    split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    t0 = time.perf_counter()
    runs = []
    for seed in range(a.seeds):
        run = Path(a.bundles) / f"u14_{seed}"
        bundle = run / "model_segment.essl"  # the runtime cuts gestures from the stream (segment input mode)
        if not bundle.exists():
            from edgessl.export.pipeline import ExportConfig, export_bundle

            export_bundle(run, bundle, ExportConfig(min_agreement=0.0, input_mode="segment"), progress=False)
        manifest = json.loads(__import__("zipfile").ZipFile(bundle).read("manifest.json"))
        pooled: dict = {"seed": seed, "users": {}}
        for user in map(int, a.users.split(",")):
            x, performed, moves = session(raw, (split == 1) & (subj == user), np.random.default_rng([seed, user]))
            r = live(bundle, x, performed, moves, a.adapt)
            pooled["users"][user] = r
            print(f"seed {seed} user {user}: reported {r['reported_fraction']:.3f} right {r['accuracy']:.3f} "
                  f"unknown {r['answered_unknown']} missed {r['missed_no_segment']} false {r['false_events']} "
                  f"({r['false_events_per_idle_minute']:.3f}/idle min), on return moves {r['events_on_return_moves']}/{r['return_moves']}",
                  flush=True)  # fmt: skip
        us = pooled["users"].values()
        n = sum(u["performed"] for u in us)
        pooled.update({"performed": n, "reported_fraction": sum(u["reported"] for u in us) / n,
                       "accuracy": sum(u["right"] for u in us) / n,
                       "answered_unknown_fraction": sum(u["answered_unknown"] for u in us) / n,
                       "missed_no_segment_fraction": sum(u["missed_no_segment"] for u in us) / n,
                       "false_events_per_idle_minute": sum(u["false_events"] for u in us) / sum(u["idle_minutes"] for u in us),
                       "gates": {"confidence": manifest["confidence_threshold"], "ood": manifest["ood_threshold"],
                                 "roughness": manifest.get("roughness_threshold"),
                                 "calibration": manifest["decision_calibration"]},
                       "not_gestures": junk(bundle, seed),
                       "not_gestures_without_noise_gate": junk(bundle, seed, noise_gate=False)})  # fmt: skip
        print(f"seed {seed}: not gestures, false events {[(k, v['false_events']) for k, v in pooled['not_gestures'].items()]}",
              flush=True)  # fmt: skip
        runs.append(pooled)
    keys = ("reported_fraction", "accuracy", "answered_unknown_fraction", "missed_no_segment_fraction",
            "false_events_per_idle_minute")  # fmt: skip
    summary = {k: {"mean": round(float(np.mean([r[k] for r in runs])), 4), "std": round(float(np.std([r[k] for r in runs])), 4),
                   "values": [round(r[k], 4) for r in runs]} for k in keys}  # fmt: skip
    Path(a.out).write_text(json.dumps({"protocol": PROTOCOL, "adaptation": DEFAULT_METHOD, "seeds": a.seeds,
                                       "minutes": round((time.perf_counter() - t0) / 60, 1), "summary": summary,
                                       "runs": runs, "machine": platform.processor() or platform.machine()},
                                      indent=2) + "\n")  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
