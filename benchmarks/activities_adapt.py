"""Live adaptation on activity recordings, as a Pi running ``edgessl run`` meets them. Writes
benchmarks/results/activities_adapt.json.

Why: a walkthrough (an activity tracker whose new sensor batch reads with per-axis gain and offset errors) scored
its own live runs and saw the default adaptation (``ttt|tent``) under ``--adapt none``, most in the first minutes;
``tta_shift.py`` streams UCI HAR windows with no gates and saw gains. This measures the user's path.

Protocol: ``activities.py``'s recordings and model (the HAPT raw streams written as a user's CSVs in m/s² and
deg/s, people 2, 4 and 9 held out; ``finetune --recipe activities`` and ``export`` with every default, one model
per seed). Every recording of the held-out people is fed through :class:`GestureRuntime` with the default
decisions (the bundle's gates, ``DecisionConfig()``), 10 samples per call, a fresh runtime (and adapter) per
recording, with adaptation ``none`` and the default ``ttt|tent``; as recorded, and with a sensor error applied to
the accelerometer first (per-axis gain in [0.8, 1.2] and offset in [−0.1, 0.1] g, drawn per seed). The held-out
people chose the rule for the shift's running mean (per window's worth of new samples); the folder's test people
(``activities.py``'s, first seed only) check it once. ``per_sample``:
the share of annotated samples whose shown answer (the last event's label) is right; ``first_60s``: the same over
each recording's first minute.

    python benchmarks/activities_adapt.py [--seeds 0 1 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from activities import SPEC_OPTIONS, live, write_recordings  # noqa: E402
from own_data import edgessl  # noqa: E402

from edgessl.edge_runtime.adapt import DEFAULT_METHOD  # noqa: E402
from edgessl.edge_runtime.runtime import DecisionConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--keep", help="keep the recordings and models here (default: a temporary folder)")
    args = ap.parse_args()
    d = DecisionConfig()
    t0 = time.perf_counter()
    out: dict[str, Any] = {"protocol": __doc__, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                           "decision": {"smoothing": d.smoothing, "hits": d.hits}, "seeds": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as td:
        work = Path(args.keep or td)
        rec, held = write_recordings(work)
        files = sorted(held.glob("*/*.csv"))
        for seed in args.seeds:
            ft, bundle = work / f"ft{seed}", work / f"act{seed}.essl"
            if not bundle.exists():
                edgessl("finetune", "--data", f"dir:{rec}?{SPEC_OPTIONS}", "--recipe", "activities", "--seed", str(seed),
                        "--out", str(ft), "--force", "--quiet")  # fmt: skip
                edgessl("export", str(ft), "--out", str(bundle), "--force")
            rng = np.random.default_rng(500 + seed)
            sensor = (rng.uniform(0.8, 1.2, 3), rng.uniform(-0.1, 0.1, 3))
            row: dict[str, Any] = {"sensor_gain": sensor[0].round(3).tolist(), "sensor_offset_g": sensor[1].round(3).tolist()}
            people = [("", files)]
            if seed == args.seeds[0]:
                r, _ = edgessl("data", "info", f"dir:{rec}?{SPEC_OPTIONS}", "--json")
                test = set(json.loads(r.stdout.strip().splitlines()[-1])["split"]["test_users"])
                people.append(("test_people/", [f for f in sorted(rec.glob("*/*.csv")) if f.parent.name in test]))
            for (who, fs), (name, err), adapt in itertools.product(people, (("as_recorded", None), ("sensor_error", sensor)),
                                                                   ("none", DEFAULT_METHOD)):  # fmt: skip
                r = live(bundle, fs, d.smoothing, d.hits, adapt=adapt, sensor=err)
                row[f"{who}{name}/{adapt}"] = {"per_sample": r["per_sample"], "first_60s": r["first_60s"],
                                               "answer_changes": r["answer_changes"], "events": r["events"]}  # fmt: skip
                print(seed, who + name, adapt, row[f"{who}{name}/{adapt}"], flush=True)
            out["seeds"][seed] = row
    keys = [k for k in out["seeds"][args.seeds[0]] if "/" in k and not k.startswith("test_people/")]
    out["mean"] = {k: {m: round(float(np.mean([r[k][m] for r in out["seeds"].values()])), 3)
                       for m in ("per_sample", "first_60s")} for k in keys}  # fmt: skip
    out["minutes"] = round((time.perf_counter() - t0) / 60, 1)
    dest = Path(__file__).parent / "results" / "activities_adapt.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["mean"]), f"wrote {dest}")


if __name__ == "__main__":
    main()
