"""How much the out-of-distribution gate rejects what is not a gesture, under two calibration rules, on the
bundles of an own-board journey (``python benchmarks/own_data.py --keep DIR``). Writes
benchmarks/results/ood_gate.json.

Windows of the model's length (stretched segments are what the model sees), 300 each: white noise 0.3 g on
gravity; smooth random motion (a sinusoid per axis, 0.5-5 Hz, 0.2-1.0 g, on gravity); the board at rest
(0.01 g noise; the segmenter never cuts these live, shown for completeness). Rules: ``point`` = the largest of
the validation quantile, the log-normal's point quantile and the training p99 (the export's rule); ``bound``
= the same with the log-normal's 90 % upper tolerance bound (tried in round 2's fourth session, not kept).
Rejection by the OOD gate alone and by either gate (the bundle's confidence gate too).

    python benchmarks/ood_gate.py --keep DIR
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import nct, norm

from edgessl.edge_runtime.bundle import open_bundle
from edgessl.edge_runtime.runtime import GestureRuntime
from edgessl.export.pipeline import _held_out_windows, _verification_windows

ap = argparse.ArgumentParser()
ap.add_argument("--keep", required=True, help="the work folder of benchmarks/own_data.py --keep")
ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ood_gate.json"))
a_ = ap.parse_args()
rng = np.random.default_rng(0)
rows = []
for r, d in enumerate(sorted(str(p) for p in Path(a_.keep).glob("repeat*"))):
    b = f"{d}/my_gestures.essl"
    m = open_bundle(b).manifest
    cal = m["ood_calibration"]
    info = torch.load(f"{d}/ft/model.pt", weights_only=True)
    # exactly the windows the export calibrated on (a refit's held-out test split, else the validation windows)
    X, _, source = _verification_windows(info)
    Xv = _held_out_windows(info, X, source)[0]
    with GestureRuntime(b) as rt:
        def scores(X):
            E = rt.embed(X.astype(np.float32))
            En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
            return 1 - (En @ rt.prototypes.T).max(1)
        def conf(X):
            out = rt.classify(X.astype(np.float32))
            return np.array([p.confidence for p in out])
        sv = scores(Xv)
        logs = np.log(np.maximum(sv, 1e-6))
        point = float(np.exp(logs.mean() + norm.ppf(1 - cal["target_rejection"]) * logs.std(ddof=1)))
        n = len(sv)
        k = float(nct.ppf(0.9, n - 1, norm.ppf(1 - cal["target_rejection"]) * np.sqrt(n))) / np.sqrt(n)
        bound = float(np.exp(logs.mean() + k * logs.std(ddof=1)))
        old = max(cal["validation_quantile"], point, cal["training_p99"])
        new = max(cal["validation_quantile"], bound, cal["training_p99"])
        rule = "bound" if "fitted_bound" in cal else "point"  # the rule this bundle was exported with
        assert abs((new if rule == "bound" else old) - m["ood_threshold"]) < 1e-3 * max(1.0, m["ood_threshold"]), (rule, old, new, m["ood_threshold"])
        C, T = Xv.shape[1:]
        t = np.arange(T) / 100
        noise = rng.normal(0, 0.3, (300, C, T)) + np.array([0, 0, 1.0])[None, :, None]
        f = rng.uniform(0.5, 5, (300, C, 1))
        ph = rng.uniform(0, 6.3, (300, C, 1))
        a = rng.uniform(0.2, 1.0, (300, C, 1))
        smooth = a * np.sin(2 * np.pi * f * t + ph) + np.array([0, 0, 1.0])[None, :, None]
        still = np.array([0, 0, 1.0])[None, :, None] + rng.normal(0, 0.01, (300, C, T))
        row = {"repeat": r, "val_n": len(sv), "point_thr": round(old, 4), "bound_thr": round(new, 4), "conf_thr": round(m["confidence_threshold"], 3)}
        for name, X in (("noise", noise), ("smooth_random", smooth), ("still", still)):
            s, c = scores(X), conf(X)
            low = c < m["confidence_threshold"]
            row[name] = {"ood_rej_point": round(float(np.mean(s > old)), 3), "ood_rej_bound": round(float(np.mean(s > new)), 3),
                         "any_rej_point": round(float(np.mean((s > old) | low)), 3), "any_rej_bound": round(float(np.mean((s > new) | low)), 3)}
        print(json.dumps(row))
        rows.append(row)
Path(a_.out).write_text(json.dumps({"protocol": __doc__.split("\n\n")[1:3], "repeats": rows}, indent=1) + "\n")
