"""How much the out-of-distribution gate rejects what is not a gesture, under two calibration rules, on the
bundles of an own-board journey (``python benchmarks/own_data.py --keep DIR``). Writes
benchmarks/results/ood_gate.json.

Windows of the model's length (stretched segments are what the model sees), 300 each: white noise 0.3 g on
gravity; smooth random motion (a sinusoid per axis, 0.5-5 Hz, 0.2-1.0 g, on gravity); the board at rest
(0.01 g noise; the segmenter never cuts these live, shown for completeness). Rules: ``held_out`` = the
largest of the held-out windows' quantile, the log-normal's point quantile fitted to them and the training
p99 (the export's rule until round 2's sixth session); ``cross_fitted`` = the log-normal with its spread
pooled over the held-out and the model's cross-fitted scores, and the training p99 (the export's rule now,
for models with fewer than 64 held-out windows). Rejection by the OOD gate alone and by either gate (the
bundle's confidence gate too), and by the noise gate (``roughness_threshold``, round 2's ninth session) on
the same windows.

    python benchmarks/ood_gate.py --keep DIR
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from edgessl.edge_runtime.bundle import open_bundle
from edgessl.edge_runtime.runtime import GestureRuntime
from edgessl.export.pipeline import _lognormal_quantile
from edgessl.preprocess import roughness

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
    with GestureRuntime(b) as rt:
        def scores(X):
            E = rt.embed(X.astype(np.float32))
            En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
            return 1 - (En @ rt.prototypes.T).max(1)
        def conf(X):
            out = rt.classify(X.astype(np.float32))
            return np.array([p.confidence for p in out])
        # exactly the scores the export calibrated on: the validation windows', under the model selected
        # before the refit when the model was refit (fine-tuning saved them), else under this bundle
        Xv = info["validation_windows"].numpy()
        sv = info["held_out_ood"].numpy() if "held_out_ood" in info else scores(Xv)
        q = 1 - cal["target_rejection"]
        held = max(float(np.quantile(sv, q, method="higher")), _lognormal_quantile(sv, q), cal["training_p99"])
        crossed = max(_lognormal_quantile(sv, q, info["cross_fit_ood"].numpy()), cal["training_p99"])
        assert abs(crossed - m["ood_threshold"]) < 1e-3 * max(1.0, m["ood_threshold"]), (crossed, m["ood_threshold"])
        C, T = Xv.shape[1:]
        t = np.arange(T) / 100
        noise = rng.normal(0, 0.3, (300, C, T)) + np.array([0, 0, 1.0])[None, :, None]
        f = rng.uniform(0.5, 5, (300, C, 1))
        ph = rng.uniform(0, 6.3, (300, C, 1))
        a = rng.uniform(0.2, 1.0, (300, C, 1))
        smooth = a * np.sin(2 * np.pi * f * t + ph) + np.array([0, 0, 1.0])[None, :, None]
        still = np.array([0, 0, 1.0])[None, :, None] + rng.normal(0, 0.01, (300, C, T))
        row = {"repeat": r, "val_n": len(sv), "cross_fitted_n": len(info["cross_fit_ood"]), "held_out_thr": round(held, 4), "cross_fitted_thr": round(crossed, 4), "conf_thr": round(m["confidence_threshold"], 3)}
        rough_thr = m.get("roughness_threshold")
        row["roughness_thr"] = None if rough_thr is None else round(rough_thr, 4)
        for name, X in (("noise", noise), ("smooth_random", smooth), ("still", still)):
            s, c = scores(X), conf(X)
            low = c < m["confidence_threshold"]
            rough = roughness(X) > rough_thr if rough_thr is not None else np.zeros(len(X), bool)
            row[name] = {"ood_rej_held_out": round(float(np.mean(s > held)), 3), "ood_rej_cross_fitted": round(float(np.mean(s > crossed)), 3),
                         "any_rej_cross_fitted": round(float(np.mean((s > crossed) | low)), 3),
                         "noise_gate_rej": round(float(np.mean(rough)), 3),
                         "any_rej_with_noise_gate": round(float(np.mean((s > crossed) | low | rough)), 3)}
        print(json.dumps(row))
        rows.append(row)
Path(a_.out).write_text(json.dumps({"protocol": __doc__.split("\n\n")[1:3], "repeats": rows}, indent=1) + "\n")
