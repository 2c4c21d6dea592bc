"""The mounting fit on real people: does `edgessl enroll --calibrate`'s rotation fit take a person's grip for a
turned board? Writes benchmarks/results/mounting_uwave.json.

uWave (real accelerometer gestures of 8 people holding a Wii remote): the models of benchmarks/enroll.py (users
1–4, 5 labels per class; ``--workdir`` reuses its bundles). For each new user (5–8) and each training user's
held-out days (1–4), the first ``k`` performances of each gesture (k = 1: a calibration; 3) go through
``GestureRuntime.fit_mounting`` as the calibration does: the best rotation, its gain in mean log-probability
per take, the takes answered right before and after, and whether the shipped rule keeps it. Then the same takes
are enrolled and the rest of that user's templates streamed one at a time (default decisions; accuracy = right
/ performed): with the shipped rule (what users get), without any rotation (enrollment as before), and with the
best rotation always applied (no rule), which says what the rule guards against.

    python benchmarks/mounting_uwave.py [--seeds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from enroll import train, write_npz
from tta_shift import stretched

from edgessl.datasets import load_stream
from edgessl.edge_runtime.runtime import GestureRuntime


def stream(bundle: Path, X: np.ndarray, y: np.ndarray, enr: np.ndarray, rest: np.ndarray, mode: str) -> tuple[int, dict]:
    """Right answers on ``rest`` after enrolling ``enr``; ``mode``: shipped, none, always."""
    with GestureRuntime(bundle, threads=1) as rt:
        takes = {rt.bundle.labels[c]: X[enr[y[enr] == c]] for c in np.unique(y[enr])}
        fit = {}
        if mode == "shipped":
            f = rt.fit_mounting(takes)
            fit = {k: v for k, v in f.to_json().items() if k != "rotation"}
        elif mode == "always":
            f = rt.fit_mounting(takes)
            Xr = np.einsum("ij,njt->nit", f.rotation, X).astype(np.float32)  # the fit, whatever the rule said
            with GestureRuntime(bundle, threads=1) as rt2:
                for lb, idx in ((rt2.bundle.labels[c], enr[y[enr] == c]) for c in np.unique(y[enr])):
                    rt2.enroll(lb, Xr[idx])
                return int(sum(p.index == c for p, c in zip(rt2.classify(Xr[rest]), y[rest], strict=True))), fit
        for lb, w in takes.items():
            rt.enroll(lb, w)
        return int(sum(p.index == c for p, c in zip(rt.classify(X[rest]), y[rest], strict=True))), fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="benchmarks/enroll.py's work folder (its bundles are reused)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mounting_uwave.json"))
    a = ap.parse_args()
    raw = load_stream("npz:uwave_raw.npz")
    split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    train_rec, test_rec = split == 0, split == 1
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as td:
        root = Path(a.workdir or td)
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "u14.npz").exists():
            write_npz(root / "u14.npz", raw, train_rec & (subj <= 4), test_rec & (subj <= 4))
        for seed in range(a.seeds):
            bundle, _ = train(root, "u14", root / "u14.npz", seed, 100)
            for group, sel in (("new_users", test_rec & (subj >= 5)), ("training_users_held_out_days", test_rec & (subj <= 4))):
                X, y, s = stretched(raw, sel)
                for k in (1, 3):
                    for u in np.unique(s):
                        iu = np.flatnonzero(s == u)
                        enr = np.concatenate([iu[y[iu] == c][:k] for c in np.unique(y[iu])])
                        rest = np.setdiff1d(iu, enr)
                        row: dict = {"seed": seed, "group": group, "k": k, "user": int(u), "performed": len(rest)}
                        for mode in ("shipped", "none", "always"):
                            row[mode], fit = stream(bundle, X, y, enr, rest, mode)
                            if fit:
                                row["fit"] = fit
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    summary: dict = {}
    for group in ("new_users", "training_users_held_out_days"):
        for k in (1, 3):
            r = [x for x in rows if x["group"] == group and x["k"] == k]
            n = sum(x["performed"] for x in r)
            summary[f"{group}/k{k}"] = {
                **{f"accuracy_{m}": round(sum(x[m] for x in r) / n, 4) for m in ("shipped", "none", "always")},
                "kept": sum(x["fit"]["accepted"] for x in r), "fits": len(r),
                "gain_max": round(max(x["fit"]["gain"] for x in r), 3),
                "right_more_max": max(x["fit"]["right_after"] - x["fit"]["right_before"] for x in r),
                "takes": r[0]["fit"]["takes"] if r else 0}  # fmt: skip
    res = {"summary": summary, "rows": rows, "protocol": " ".join(__doc__.split("\n\n")[1].split())}
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
