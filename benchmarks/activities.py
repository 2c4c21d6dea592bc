"""Activity recordings from another tool, end to end, and how soon `run`'s events name an activity live.

The HAPT raw streams (../shared/data/hapt_raw_streams.npz: a waist phone, 50 Hz, 30 people, 12 annotated
activities and transitions) are written as a user's own recordings would be: one CSV per recording,
``time_ms,ax,ay,az,gx,gy,gz,activity`` in m/s² and deg/s, a folder per person, people 2, 4 and 9 kept apart
(``heldout/``, never trained on). Then the README's row for activities, all defaults:
``finetune --data 'dir:recordings?acc=m/s2,gyro=deg/s,label=activity' --recipe activities`` (its test split is
the folder's last people by the user split), ``export``, ``verify --all`` on the held-out people.

Live: every recording of the held-out people (the choice of the decision rule was made on these) and of the
folder's test people (checked once) is fed through :class:`GestureRuntime` (10 samples per call, converted to
g and rad/s as a reader would) with each ``DecisionConfig(smoothing, hits)``; the answer shown at each
sample is the last event's label. ``per_sample``: the share of annotated samples whose shown answer is right;
``median_delay_s``: from the start of each annotated span of 8 s or more to the first event naming it;
``answer_changes``: how often the shown answer changed (the annotations change ``true_changes`` times).

    python benchmarks/activities.py [--seeds 0 1 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from own_data import edgessl  # noqa: E402

from edgessl.datasets.registry import default_data_dir  # noqa: E402
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime  # noqa: E402

HELD_OUT = (2, 4, 9)
RULES = ((3, 2), (2, 1), (1, 2), (1, 1))  # (smoothing, hits); (3, 2) was the default before
G, DEG = 9.80665, 57.29578
SPEC_OPTIONS = "acc=m/s2,gyro=deg/s,label=activity"


def write_recordings(work: Path) -> tuple[Path, Path]:
    """HAPT's recordings as one CSV per recording in ``recordings/personNN`` and ``heldout/personNN``."""
    d = np.load(default_data_dir() / "hapt_raw_streams.npz", allow_pickle=False)
    sig, lab, off, subj, names = d["signal"], d["label"], d["experiment_offsets"], d["experiment_subject"], d["class_names"]
    count: dict[int, int] = {}
    for k in range(len(subj)):
        s = int(subj[k])
        count[s] = count.get(s, 0) + 1
        folder = work / ("heldout" if s in HELD_OUT else "recordings") / f"person{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        x, y = sig[:, off[k] : off[k + 1]].astype(np.float64), lab[off[k] : off[k + 1]]
        with open(folder / f"rec{count[s]}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["time_ms", "ax", "ay", "az", "gx", "gy", "gz", "activity"])
            for i in range(x.shape[1]):
                w.writerow([i * 20, *(f"{v * G:.5f}" for v in x[:3, i]), *(f"{v * DEG:.4f}" for v in x[3:, i]),
                            names[y[i]] if y[i] >= 0 else ""])  # fmt: skip
    return work / "recordings", work / "heldout"


def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = list(csv.reader(open(path)))[1:]
    t = np.array([float(r[0]) for r in rows]) / 1000.0
    x = np.array([[float(v) for v in r[1:7]] for r in rows])
    x[:, :3] /= G
    x[:, 3:] /= DEG
    return t, x.astype(np.float32), np.array([r[7] for r in rows])


def live(bundle: Path, files: list[Path], smoothing: int, hits: int, adapt: str = "none",
         sensor: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:  # fmt: skip
    """The live figures of ``files`` through the runtime (a fresh one per recording); ``adapt``: its adaptation
    method; ``sensor``: ``(gain [3], offset [3])`` applied to the accelerometer (g) first, a sensor's error."""
    from edgessl.edge_runtime.adapt import build_adapter

    right = annotated = changes = true_changes = events = right_1 = annotated_1 = 0
    delays: list[float] = []
    for path in files:
        t, x, lab = read(path)
        if sensor is not None:
            x[:, :3] = x[:, :3] * sensor[0].astype(np.float32) + sensor[1].astype(np.float32)
        with GestureRuntime(bundle, decision=DecisionConfig(smoothing=smoothing, hits=hits),
                            adapter=build_adapter(adapt)) as rt:  # fmt: skip
            evs = [e for i in range(0, len(t), 10) for e in rt.feed(x[i : i + 10], t[i : i + 10])]
        events += len(evs)
        et, el = np.array([e.t for e in evs]), [e.label for e in evs]
        last = np.searchsorted(et, t, side="right") - 1
        shown = np.array([el[i] if i >= 0 else "" for i in last])
        ann = lab != ""
        right += int((shown[ann] == lab[ann]).sum())
        annotated += int(ann.sum())
        early = ann & (t - t[0] < 60.0)  # each recording's first minute (an adapter has seen little yet)
        right_1 += int((shown[early] == lab[early]).sum())
        annotated_1 += int(early.sum())
        changes += sum(el[i] != el[i - 1] for i in range(1, len(el)))
        seq = lab[ann]
        true_changes += int((seq[1:] != seq[:-1]).sum())
        for s in (np.flatnonzero((lab[1:] != lab[:-1]) & (lab[1:] != "")) + 1).tolist():
            end = s
            while end < len(lab) and lab[end] == lab[s]:
                end += 1
            if t[end - 1] - t[s] < 8.0:  # transitions (2-3 s) are not scored for delay
                continue
            hit = [e.t for e in evs if e.label == lab[s] and t[s] <= e.t <= t[end - 1]]
            delays.append(hit[0] - t[s] if hit else float("nan"))
    d = np.array(delays)
    return {"per_sample": round(right / annotated, 3), "first_60s": round(right_1 / max(annotated_1, 1), 3), "median_delay_s": round(float(np.nanmedian(d)), 2),
            "p90_delay_s": round(float(np.nanpercentile(d, 90)), 2), "spans_never_named": int(np.isnan(d).sum()),
            "spans": len(d), "answer_changes": changes, "true_changes": true_changes, "events": events}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", help="keep the recordings and models here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        work = Path(args.keep or td)
        rec, held = write_recordings(work)
        held_files = sorted(held.glob("*/*.csv"))
        out: dict[str, Any] = {"protocol": __doc__, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "seeds": {}}
        for seed in args.seeds:
            ft, bundle = work / f"ft{seed}", work / f"act{seed}.essl"
            edgessl("finetune", "--data", f"dir:{rec}?{SPEC_OPTIONS}", "--recipe", "activities", "--seed", str(seed),
                    "--out", str(ft), "--force", "--quiet")  # fmt: skip
            edgessl("export", str(ft), "--out", str(bundle), "--force")
            r, _ = edgessl("verify", str(bundle), "--data", f"dir:{held}?{SPEC_OPTIONS}", "--all")
            v, m = json.loads(r.stdout), json.loads((ft / "metrics.json").read_text())
            r, _ = edgessl("data", "info", f"dir:{rec}?{SPEC_OPTIONS}", "--json")
            test_people = set(json.loads(r.stdout.strip().splitlines()[-1])["split"]["test_users"])
            test_files = [f for f in sorted(rec.glob("*/*.csv")) if f.parent.name in test_people]
            row: dict[str, Any] = {
                "val_accuracy": round(m["val_accuracy"], 3), "test_accuracy": round(m["test_accuracy"], 3),
                "held_out_int8": round(v["accuracy_int8"], 3),
                "held_out_rejection": round(v["decisions"]["rejection_rate"], 3),
                "held_out_with_gates": round(v["decisions"]["accuracy_with_gates"], 3), "live": {}}  # fmt: skip
            for smoothing, hits in RULES:
                key = f"smoothing={smoothing},hits={hits}"
                row["live"][key] = {"held_out_people": live(bundle, held_files, smoothing, hits)}
                if seed == args.seeds[0]:
                    row["live"][key]["test_people"] = live(bundle, test_files, smoothing, hits)
                print(seed, key, row["live"][key], flush=True)
            out["seeds"][seed] = row
            print(seed, {k: v for k, v in row.items() if k != "live"}, flush=True)
    dest = Path(__file__).parent / "results" / "activities.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
