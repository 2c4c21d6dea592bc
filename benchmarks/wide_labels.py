"""Labelled CSVs as other tools write them, live: does a span of rest around each gesture cost live accuracy?

For each seed: a synthetic person (``SyntheticConfig(seed=S, rate_hz=62.5)``, user 0) records 4 sessions of 60
gestures, written as Edge Impulse CSVs (``timestamp`` in ms, ``accX,accY,accZ`` in m/s², a ``label`` column),
once with each label exactly on the generator's gesture ("tight") and once with 0.5 s of rest labelled on each
side ("wide"). ``edgessl finetune --data dir:FOLDER?acc=m/s2`` (the default recipe) then ``edgessl export``
(defaults); the bundle streams a fifth session of the same person (60 gestures, never trained on) through
``GestureRuntime`` with the default decisions. Variants: the loader as it is (each labelled span becomes the
movement the segmenter cuts inside it) and, as the ablation, the loader keeping the spans as labelled.

A gesture is right when the event overlapping it (±0.5 s) names it; wrong when it names another; the gestures
answered ``unknown`` (and why) and the movements cut too short are the runtime's counts; an event naming a
gesture where none was performed is false. Writes ``benchmarks/results/wide_labels.json``.

    python benchmarks/wide_labels.py [--seeds 0 1 2] [--out benchmarks/results/wide_labels.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RATE = 62.5
G0 = 9.80665
PAD = 31  # samples of rest labelled on each side of a wide label (0.5 s at 62.5 Hz)
KEEP_SPANS = "import edgessl.datasets.labelled as L; L.fit_spans_to_motion = lambda ds: None; "


def write_csv(path: Path, signal: np.ndarray, labels: np.ndarray) -> None:
    t = np.arange(signal.shape[1]) * 1000.0 / RATE
    rows = ["timestamp,accX,accY,accZ,label"]
    rows += [f"{t[i]:.0f},{signal[0, i] * G0:.4f},{signal[1, i] * G0:.4f},{signal[2, i] * G0:.4f},{labels[i]}"
             for i in range(signal.shape[1])]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")


def make_data(root: Path, seed: int) -> None:
    from edgessl.datasets.synthetic import SyntheticConfig, make_stream

    cfg = SyntheticConfig(seed=seed, rate_hz=RATE)
    for kind in ("wide", "tight"):
        (root / kind).mkdir(parents=True, exist_ok=True)
    for s in range(4):
        st = make_stream(cfg, user_id=0, n_gestures=60, stream_seed=s)
        for kind, pad in (("wide", PAD), ("tight", 0)):
            lab = np.array([""] * st.signal.shape[1], object)
            for a, b, c in st.extra["events"]:
                lab[max(0, a - pad) : b + pad] = st.class_names[c]
            write_csv(root / kind / f"s{s}.csv", st.signal, lab)
    live = make_stream(cfg, user_id=0, n_gestures=60, stream_seed=10)
    np.savez(root / "live.npz", signal=live.signal, events=live.extra["events"], names=np.array(live.class_names))


def edgessl(prefix: str, *args: str) -> None:
    code = prefix + "import sys; from edgessl.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise RuntimeError(f"edgessl {' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]}")


def live(bundle: Path, root: Path) -> dict:
    from edgessl.edge_runtime.runtime import GestureRuntime

    z = np.load(root / "live.npz")
    sig, ev, names = z["signal"], z["events"], [str(n) for n in z["names"]]
    t = np.arange(sig.shape[1]) / RATE
    events = []
    with GestureRuntime(bundle) as rt:
        for i in range(0, sig.shape[1], 16):
            events += rt.feed(sig[:, i : i + 16].T, t[i : i + 16])
        stats = dict(rt.stats)  # (feed returns the gestures it names; those answered unknown are counted here)
    right = wrong = false = 0
    for e in events:
        mid = (e.window_start + e.window_end) / 2 * RATE
        j = next((k for k, (a, b, _) in enumerate(ev) if a - RATE / 2 <= mid <= b + RATE / 2), None)
        if j is None:
            false += 1
        elif e.label == names[ev[j][2]]:
            right += 1
        else:
            wrong += 1
    unknown = sum(v for k, v in stats.items() if k.startswith("unknown_"))
    return {"gestures": len(ev), "right": right, "unknown": unknown, "wrong": wrong, "false_events": false,
            "accuracy": right / len(ev), "runtime_counts": stats}  # fmt: skip


def one(root: Path, kind: str, variant: str) -> dict:
    prefix = KEEP_SPANS if variant == "spans_as_labelled" else ""
    tag = f"{kind}_{variant}"
    edgessl(prefix, "finetune", "--data", f"dir:{root / kind}?acc=m/s2", "--out", str(root / f"ft_{tag}"))
    edgessl(prefix, "export", str(root / f"ft_{tag}"), "--out", str(root / f"{tag}.essl"))
    return live(root / f"{tag}.essl", root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="benchmarks/results/wide_labels.json")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()
    cases = [("wide", "cut_by_segmenter"), ("wide", "spans_as_labelled"), ("tight", "cut_by_segmenter"),
             ("tight", "spans_as_labelled")]  # fmt: skip
    results: dict[str, list[dict]] = {f"{k}.{v}": [] for k, v in cases}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {s: Path(tmp) / f"seed{s}" for s in args.seeds}
        for s, root in roots.items():
            make_data(root, s)
        jobs = [(s, k, v) for s in args.seeds for k, v in cases]
        with ThreadPoolExecutor(args.jobs) as pool:
            outs = list(pool.map(lambda j: one(roots[j[0]], j[1], j[2]), jobs))
        for (s, k, v), r in zip(jobs, outs, strict=True):
            results[f"{k}.{v}"].append({"seed": s, **r})
            print(f"seed {s} {k:5s} {v:18s} right {r['right']}/{r['gestures']} unknown {r['unknown']} wrong "
                  f"{r['wrong']} false {r['false_events']}", flush=True)  # fmt: skip
    summary = {}
    for key, rows in results.items():
        acc = np.array([r["accuracy"] for r in rows])
        summary[key] = {"accuracy_mean": round(float(acc.mean()), 4), "accuracy_std": round(float(acc.std()), 4),
                        "right_of_performed": [f"{r['right']}/{r['gestures']}" for r in rows],
                        "unknown": [r["unknown"] for r in rows], "wrong": [r["wrong"] for r in rows],
                        "false_events": [r["false_events"] for r in rows]}  # fmt: skip
    out = {"summary": summary, "runs": results, "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
           "seconds": round(time.time() - t0, 1), "machine": platform.platform()}  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
