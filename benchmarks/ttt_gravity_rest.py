"""What ``ttt``'s search does once the gravity calibration is in use. Writes benchmarks/results/ttt_gravity_rest.json
(``--split test``: ttt_gravity_rest_test.json).

Why: on UCI HAR with per-axis gain and offset errors (``tta_shift.py``'s gain_bias shift) the gravity calibration
measures the sensor's errors from the still windows; the one or two changes ``ttt``'s search then took cost
0.1–1.6 pt on the test streams. Three rules for the search while the calibration is in use: ``searching`` (as
before the twenty-fifth session: the search goes on, a 3×3 matrix and offset), ``turn_only`` (the refinement is
the rotation nearest the searched matrix, no offset: the gains and offsets are measured, a mounting is what is
left) and ``resting`` (no search; a refinement found before the calibration came in is dropped: ``ttt``'s
default since).

Protocol: ``tta_shift.py``'s gain_bias shift; ``--split val``: a UCI HAR model of 15 of the 21 training subjects
(8 epochs, total acceleration in g, no per-window z-score) streamed the other 6 subjects' windows in time order,
gains in [0.8, 1.2] and offsets in [−0.1, 0.1] g from the validation stream's generator; ``--split test``: the
official split's model and test subjects. Every window through ``GestureRuntime`` with no gates; accuracy of the
whole stream (``shifted``) and of the same stream without the gain and offset (``clean``), per seed.

    python benchmarks/ttt_gravity_rest.py [--split val] [--seeds 6] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tta_shift import har_validation, stream_accuracy, train_bundle

from edgessl.datasets import load_windows
from edgessl.edge_runtime.adapt.ttt import TTT
from edgessl.trainer.data import DataConfig

AXES = ("total_acc_x", "total_acc_y", "total_acc_z")


class Searching(TTT):
    """The search goes on while the calibration is in use (``ttt`` before the twenty-fifth session)."""

    @property
    def calibrated(self) -> bool:
        return False


class TurnOnly(Searching):
    """While calibrated, the search's refinement is the rotation nearest its matrix, with no offset."""

    def _affine(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R, t = super()._affine(theta)
        if self.gravity is None or not self.gravity.active:
            return R, t
        U, _, Vt = np.linalg.svd(R)
        flip = np.where(np.linalg.det(U @ Vt) < 0, -1.0, 1.0)  # a proper rotation
        U = U * np.stack([np.ones_like(flip), np.ones_like(flip), flip], -1)[..., None, :]
        return U @ Vt, np.zeros_like(t)


RULES = {"none": "none", "searching": Searching, "turn_only": TurnOnly, "resting": TTT}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--workdir", default=None, help="keep the trained bundles here and reuse those already there")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    har = load_windows("npz:uci_har.npz").select_channels(list(AXES))
    out: dict = {"protocol": __doc__.split("\n\n")[2], "split": a.split, "seeds": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(a.workdir or td)
        root.mkdir(parents=True, exist_ok=True)
        for seed in range(a.seeds):
            if a.split == "val":
                bundle, X, y = har_validation(root, har, seed, 8)
                rng = np.random.default_rng(200 + seed)
            else:
                data = DataConfig(spec="npz:uci_har.npz", channels=AXES, preprocess={"steps": []})
                bundle, X, y = train_bundle(root, "har", data, seed, None, 8), har.X_test, har.y_test
                rng = np.random.default_rng(100 + seed)
            for _ in (15, 30, 45):  # tta_shift.build_cases draws its three rotation axes first
                rng.normal(size=3)
            gain, bias = rng.uniform(0.8, 1.2, 3), rng.uniform(-0.1, 0.1, 3)
            Xs = (gain[None, :, None] * X + bias[None, :, None]).astype(np.float32)
            row = {}
            for name, rule in RULES.items():
                row[name] = {"shifted": round(stream_accuracy(bundle, Xs, y, rule)[0], 4),
                             "clean": round(stream_accuracy(bundle, X, y, rule)[0], 4)}  # fmt: skip
            out["seeds"][seed] = row
            print(seed, json.dumps(row), flush=True)
    out["mean"] = {name: {k: round(float(np.mean([r[name][k] for r in out["seeds"].values()])), 4)
                          for k in ("shifted", "clean")} for name in RULES}  # fmt: skip
    out["minutes"] = round((time.perf_counter() - t0) / 60, 1)
    path = Path(__file__).parent / "results" / f"ttt_gravity_rest{'_test' if a.split == 'test' else ''}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["mean"]), f"wrote {path}")


if __name__ == "__main__":
    main()
