"""Everyday movement is not a gesture: false gestures in daily life. Writes benchmarks/results/daily_life.json.

Protocol: per seed, ``edgessl demo``'s model (synthetic gestures, the few-labels recipe, the default export;
trained by ``run_demo`` into ``--workdir``, or the bundles already there). A session of the demo's held-out
person (300 gestures on the demo's 30°-rotated mounting, 1–2 s still between them) is fed live to
``GestureRuntime`` with ``edgessl run``'s default decisions (10-sample frames, as a board sends them) with each
adaptation (``none``, the default); its stream accuracy is scored as the demo scores it. The adapted state at
the end of that session is saved, and each of the first ``--recordings`` HAPT daily-activity recordings
(``hapt_raw_streams.npz``: a waist-worn phone, 50 Hz, accelerometer in g; walking, stairs, sitting, standing,
lying and the transitions between them) is then fed to a fresh runtime that restores it: the same wearer's
device, now worn through everyday life. Every event that names a gesture there is a false gesture; reported
per minute of daily activity, and by what the recording's labels say at the event's middle (continuous
activity, a postural transition, or unlabelled stretches: turns and stops). Also with the session after the
daily activity (the same recording first, then the gestures, one runtime): what everyday movement costs the
gestures that follow. Each with the bundle's calibrated confidence gate and with the ``--confidences`` given
(``edgessl run --confidence``), the gestures and the daily activity alike: the trade between the two.

    python benchmarks/daily_life.py [--seeds 3] [--recordings 8] [--confidences 0.6,0.7] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgessl.datasets import load_stream
from edgessl.demo import DemoConfig, run_demo, stream_accuracy
from edgessl.edge_runtime.adapt import DEFAULT_METHOD, build_adapter
from edgessl.edge_runtime.runtime import UNKNOWN, DecisionConfig, GestureRuntime
from edgessl.preprocess import resample
from edgessl.synthetic import SyntheticConfig, make_stream, rotation_matrix

PROTOCOL = __doc__.split("\n\n")[1]
RATE = 100.0
ACTIVE = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS")
STILL = ("SITTING", "STANDING", "LAYING")


def gesture_session(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The demo's comparison session: its held-out person, its rotated mounting (``[n, 3]`` in g, and the truth)."""
    cfg = DemoConfig(seed=seed)
    syn = SyntheticConfig(reps=cfg.reps, length=cfg.length, seed=seed)
    R = rotation_matrix(np.random.default_rng(seed).normal(size=3), np.deg2rad(cfg.rotation_deg))
    long = make_stream(syn, user_id=syn.n_users, n_gestures=cfg.session_gestures, idle_s=(1.0, 2.0), stream_seed=2)
    return (R @ long.signal).T.astype(np.float32), long.extra["events"]


def feed(rt: GestureRuntime, x: np.ndarray, t0: float = 0.0) -> list[dict]:
    t = t0 + np.arange(len(x)) / RATE
    out = []
    for i in range(0, len(x), 10):
        out += [{**e.to_json(), "label_index": rt.labels.index(e.label) if e.label != UNKNOWN else -1}
                for e in rt.feed(x[i : i + 10], t[i : i + 10])]  # fmt: skip
    return out


def daily(hapt, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Recording ``k``'s accelerometer at the model's rate ``[n, 3]`` (g) and its labels per sample (-1: none)."""
    x = hapt.recording(k)[:3]
    lab = hapt.sample_labels[hapt.offsets[k] : hapt.offsets[k + 1]]
    y = resample(x, hapt.rate_hz, RATE).T.astype(np.float32)
    idx = np.minimum((np.arange(len(y)) * hapt.rate_hz / RATE).astype(int), len(lab) - 1)
    return y, lab[idx]


def kind(label: int, names: list[str]) -> str:
    if label < 0:
        return "unlabelled"
    n = names[label]
    return "walking_or_stairs" if n in ACTIVE else "still" if n in STILL else "transition"


def false_gestures(events: list[dict], labels: np.ndarray, names: list[str], t0: float) -> dict:
    named = [e for e in events if e["label"] != UNKNOWN]
    by: dict[str, int] = {}
    for e in named:
        mid = int(((e["window_start"] + e["window_end"]) / 2 - t0) * RATE)
        key = kind(int(labels[min(max(mid, 0), len(labels) - 1)]), names)
        by[key] = by.get(key, 0) + 1
    return {"false_gestures": len(named), "by_activity": by, "unknown": len(events) - len(named)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--recordings", type=int, default=8)
    ap.add_argument("--workdir", default=None, help="keep the demo models here and reuse those already there")
    ap.add_argument("--confidences", default="0.6,0.7", type=lambda v: [float(c) for c in v.split(",") if c],
                    help="--confidence gates tried besides the bundle's (the gestures and the daily activity alike)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "daily_life.json"))
    a = ap.parse_args()
    hapt = load_stream("npz:hapt_raw_streams.npz")
    names = list(hapt.class_names)
    rows: list[dict] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(a.workdir or td)
        for seed in range(a.seeds):
            bundle = root / f"demo_{seed}" / "model.essl"
            if not bundle.exists():
                run_demo("synthetic", bundle.parent, quick=False, cfg=DemoConfig(seed=seed), force=True)
            x, truth = gesture_session(seed)
            for adapt in ("none", DEFAULT_METHOD):
                for gate in (None, *a.confidences):  # None: the bundle's calibrated gate (run's default)
                    rows.append(one(bundle, root, seed, adapt, gate, x, truth, hapt, names, a.recordings))
                Path(a.out).write_text(json.dumps(_final(rows, a, t_start), indent=2) + "\n")
    print(f"wrote {a.out}")


def one(bundle: Path, root: Path, seed: int, adapt: str, gate: float | None, x: np.ndarray, truth: np.ndarray, hapt,
        names: list[str], recordings: int) -> dict:  # fmt: skip
    """The gesture session, then each daily recording with the state the session left; at the bundle's gate also
    the daily recording first and the gestures after it."""
    decision = dataclasses.replace(DecisionConfig() if gate is None else DecisionConfig(confidence=gate), report_unknown=True)
    state = root / f"state_{seed}_{adapt.replace('|', '_')}_{gate}.npz"
    ad = build_adapter(adapt)
    with GestureRuntime(bundle, decision=decision, adapter=ad) as rt:
        acc = stream_accuracy(feed(rt, x), truth, RATE)[0]
        if ad is not None:
            ad.save(state)
    row: dict = {"seed": seed, "adapt": adapt, "confidence": gate, "gestures_accuracy": acc, "recordings": []}
    minutes, total = 0.0, 0
    for k in range(recordings):
        y, lab = daily(hapt, k)
        with GestureRuntime(bundle, decision=decision,
                            adapter=build_adapter(adapt, str(state)) if ad is not None else None) as rt:  # fmt: skip
            fg = false_gestures(feed(rt, y), lab, names, 0.0)
        if gate is None:  # the daily activity first, then the gestures, one runtime
            with GestureRuntime(bundle, decision=decision, adapter=build_adapter(adapt)) as rt:
                feed(rt, y)
                t0 = len(y) / RATE + 5.0
                ev = feed(rt, x, t0)
                truth_after = np.array([(s + t0 * RATE, e + t0 * RATE, lb) for s, e, lb in truth])
                fg["gestures_accuracy_after"] = stream_accuracy(ev, truth_after, RATE)[0]
        fg["minutes"] = round(len(y) / RATE / 60, 2)
        minutes += fg["minutes"]
        total += fg["false_gestures"]
        row["recordings"].append(fg)
    row["false_per_minute"] = total / minutes
    if gate is None:
        row["gestures_accuracy_after_daily"] = float(np.mean([r["gestures_accuracy_after"] for r in row["recordings"]]))
    print(f"seed {seed} {adapt:20s} confidence {gate or 'bundle'}: gestures {acc:.3f}, false gestures "
          f"{row['false_per_minute']:.2f}/min over {minutes:.1f} min"
          + (f", gestures after daily activity {row['gestures_accuracy_after_daily']:.3f}" if gate is None else ""),
          flush=True)  # fmt: skip
    return row


def _final(rows: list[dict], a, t_start: float) -> dict:
    summary = {}
    for adapt, gate in sorted({(r["adapt"], r["confidence"]) for r in rows}, key=lambda k: (k[0], k[1] or 0.0)):
        rr = [r for r in rows if r["adapt"] == adapt and r["confidence"] == gate]
        by: dict[str, int] = {}
        for r in rr:
            for rec in r["recordings"]:
                for k_, v in rec["by_activity"].items():
                    by[k_] = by.get(k_, 0) + v
        keys = ("false_per_minute", "gestures_accuracy") + (("gestures_accuracy_after_daily",) if gate is None else ())
        summary[f"{adapt}, confidence {gate or 'bundle'}"] = {
            **{key: {"mean": round(float(np.mean([r[key] for r in rr])), 4), "std": round(float(np.std([r[key] for r in rr])), 4),
                     "values": [round(float(r[key]), 4) for r in rr]} for key in keys},
            "false_gestures_by_activity": by}  # fmt: skip
    return {"protocol": PROTOCOL, "seeds": a.seeds, "recordings": a.recordings, "confidences": a.confidences,
            "summary": summary, "runs": rows,
            "minutes": round((time.perf_counter() - t_start) / 60, 1),
            "machine": {"cpu": platform.machine(), "threads_onnxruntime": 1}}  # fmt: skip


if __name__ == "__main__":
    main()
