"""Which self-supervised objective `edgessl pretrain` uses by default: SimCLR or VICReg on the synthetic demo.
Writes benchmarks/results/pretrain_method.json.

Protocol: `edgessl demo` end to end (its defaults but the pretraining objective: 40 pretraining epochs on the
synthetic gestures' unlabelled windows, fine-tuning with 5 labels per class by `edgessl finetune`'s recipe for a
label budget (few-labels, since the nineteenth session; plain fine-tuning before), selected on validation, the
default export) for each objective and seeds 0, 1, 2 (the seed draws the synthetic data set, its held-out users and every
training choice); reported per run: the fine-tuned model's test accuracy on the held-out users' windows (and k-NN
on its embeddings), int8/fp32 agreement (a model the default export's 0.99 gate refuses is recorded as such), and the demo's 300-gesture session of a held-out user: not rotated,
rotated 30° unadapted, adapted (`ttt|tent`), enrolled with one take per gesture. The other data sets' comparison
(uWave, UCI HAR) is `ssl_uwave.py`'s (results/ssl_uwave.md), the own-board journey's `own_data.py`.

    python benchmarks/pretrain_method.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgessl.demo import DemoConfig, run_demo
from edgessl.export.pipeline import ExportError

PROTOCOL = __doc__.split("\n\n", 1)[1].split("\n\n    python")[0].replace("\n", " ")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pretrain_method.json"))
    a = ap.parse_args()
    t0, rows = time.perf_counter(), []
    for seed in a.seeds:
        for method in ("simclr", "vicreg"):
            try:
                with tempfile.TemporaryDirectory() as td, contextlib.redirect_stdout(io.StringIO()):
                    r = run_demo("synthetic", Path(td), False, DemoConfig(method=method, seed=seed))
            except ExportError as e:  # the default export's 0.99 gate refused the model: the demo would stop here
                rows.append({"method": method, "seed": seed, "export_refused": str(e)})
                print(json.dumps(rows[-1]), flush=True)
                continue
            s = r["stages"]
            rows.append({"method": method, "seed": seed, "finetune": s["finetune"],
                         "export": {k: s["export"][k] for k in ("top1_agreement", "accuracy_int8")},
                         "runtime": {k: v for k, v in s["runtime"].items() if k.startswith("accuracy")}})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    summary: dict = {"export_refused": {m: [r["seed"] for r in rows if r["method"] == m and "export_refused" in r]
                                        for m in ("simclr", "vicreg")}}  # fmt: skip
    for method in ("simclr", "vicreg"):
        mine = [r for r in rows if r["method"] == method and "export_refused" not in r]
        summary[method] = {k: [round(float(np.mean(v)), 3), round(float(np.std(v)), 3)] for k, v in {
            "test_accuracy": [r["finetune"]["test_accuracy"] for r in mine],
            "knn_test_accuracy": [r["finetune"]["knn_test_accuracy"] for r in mine],
            **{f"stream_{k[9:]}": [r["runtime"][k] for r in mine]
               for k in ("accuracy_not_rotated", "accuracy_unadapted", "accuracy_adapted", "accuracy_enrolled")},
        }.items()}  # fmt: skip
    out = {"protocol": PROTOCOL, "summary_mean_std": summary, "runs": rows,
           "seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine()}  # fmt: skip
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
