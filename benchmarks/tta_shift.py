"""Test-time adaptation under distribution shift. Writes benchmarks/results/tta_shift.json.

Protocol: for each shift and seed, a model is fine-tuned (joint self-supervised head, validation-selected,
exported to the int8 bundle); the shifted test windows are streamed through ``GestureRuntime`` one at a
time, in time order (subject, day, gesture, repetition for uWave; subject, segment, time for UCI HAR), and
each method adapts without labels. Accuracy over the whole stream (every window counts, including those
seen before adaptation converged). Recovery = (adapted − shifted) / (clean − shifted).

Shifts:
* new_users: fine-tune on UWave users 1–4 (5 labels per class from the UCR train split), stream the UCR
  test templates of users 5–8;
* rotation_{15,30,45}: the model of the UCR train split (all users, 5 labels/class), test templates rotated
  about a random axis per seed in raw g, then put through the UCR procedure (stretch + z-score);
* gain_bias: UCI HAR total_acc in raw g (no per-window z-score, so the shift reaches the model), official
  subject split, test windows scaled by a per-axis gain in [0.8, 1.2] and offset by a bias in [−0.1, 0.1] g;
* rate_80hz: UWave raw test templates resampled to 80 Hz and streamed at 80 Hz into the model's 100 Hz
  pipeline (the runtime resamples by timestamps, then segments/stretches).

Also: per-window cost of each method relative to ``none`` (one thread, same run).

    python benchmarks/tta_shift.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edgessl.datasets import load_stream, load_windows, uwave_ucr_windows
from edgessl.edge_runtime.adapt import build_adapter
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.export.pipeline import ExportConfig, export_bundle
from edgessl.preprocess import resample, resample_to_length
from edgessl.synthetic import rotation_matrix
from edgessl.trainer.data import DataConfig
from edgessl.trainer.fit import FitConfig
from edgessl.trainer.pipeline import FinetuneConfig, finetune

METHODS = ["none", "t3a", "tent", "ttt", "input"]
ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"))


def ucr_like(raw, keep: np.ndarray, transform=None) -> np.ndarray:
    """UCR procedure on (optionally transformed) raw templates, as uwave_ucr_windows does."""
    if transform is None:
        return uwave_ucr_windows(raw)[keep]
    import dataclasses

    sig = raw.signal.copy()
    for k in np.flatnonzero(keep):
        a, b = raw.offsets[k], raw.offsets[k + 1]
        sig[:, a:b] = transform(sig[:, a:b])
    return uwave_ucr_windows(dataclasses.replace(raw, signal=sig))[keep]


def stream_accuracy(bundle: Path, X: np.ndarray, y: np.ndarray, method: str) -> tuple[float, float, dict]:
    with GestureRuntime(bundle, decision=ANY, adapter=build_adapter(method)) as rt:
        t0 = time.perf_counter()
        pred = np.array([rt.classify(x).index for x in X])
        per_window = (time.perf_counter() - t0) / len(X) * 1e3
        info = {"updates": rt.adapter.updates, "resets": rt.adapter.resets} if rt.adapter else {}
    return float((pred == y).mean()), per_window, info


def train_bundle(root: Path, name: str, data: DataConfig, seed: int, labels_per_class: int | None, epochs: int) -> Path:
    out = root / f"{name}_{seed}"
    cfg = FinetuneConfig(data=data, labels_per_class=labels_per_class,
                         fit=FitConfig(epochs=epochs, batch_size=64, warmup_epochs=3, seed=seed, drop_last=False))  # fmt: skip
    finetune(cfg, out, progress=False, plots=False)
    bundle = out / "model.essl"
    export_bundle(out, bundle, ExportConfig(min_agreement=0.0), progress=False)  # agreement is recorded in the bundle
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "tta_shift.json"))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    ep_few, ep_har = (15, 2) if a.quick else (100, 8)
    raw = load_stream("npz:uwave_raw.npz")
    ucr = load_windows("npz:uwave_gesture_ucr.npz")
    split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    y_raw = raw.recording_labels
    test_rec = split == 1  # templates in time order (subject, day, gesture, repetition)
    results: dict = {"shifts": {}}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        # a uwave "users 1-4" training file, written as our npz layout
        u14 = ucr.groups["subject"][0] <= 4
        np.savez(root / "uwave_u14.npz", X_train=ucr.X_train[u14], y_train=ucr.y_train[u14], X_test=ucr.X_test[:8],
                 y_test=ucr.y_test[:8], class_names=np.array(ucr.class_names), channel_names=np.array(ucr.channel_names),
                 channel_units=np.array(["z-score"] * 3))  # fmt: skip
        har = load_windows("npz:uci_har.npz").select_channels(["total_acc_x", "total_acc_y", "total_acc_z"])
        shifts: dict[str, dict] = {}
        for seed in range(a.seeds):
            rng = np.random.default_rng(100 + seed)
            b_u14 = train_bundle(root, "u14", DataConfig(spec=f"npz:{root / 'uwave_u14.npz'}"), seed, 5, ep_few)
            b_all = train_bundle(root, "all", DataConfig(spec="npz:uwave_gesture_ucr.npz"), seed, 5, ep_few)
            b_har = train_bundle(root, "har", DataConfig(spec="npz:uci_har.npz", channels=("total_acc_x", "total_acc_y", "total_acc_z"),
                                                         preprocess={"steps": []}), seed, None, ep_har)  # fmt: skip
            clean_all = ucr_like(raw, test_rec)
            y_all = y_raw[test_rec]
            new = test_rec & (subj >= 5)
            cases = {"new_users": (b_u14, ucr_like(raw, test_rec & (subj <= 4)), y_raw[test_rec & (subj <= 4)],
                                   ucr_like(raw, new), y_raw[new])}  # fmt: skip
            for deg in (15, 30, 45):
                R = rotation_matrix(rng.normal(size=3), np.deg2rad(deg))
                cases[f"rotation_{deg}"] = (b_all, clean_all, y_all, ucr_like(raw, test_rec, lambda s, R=R: (R @ s).astype(np.float32)), y_all)
            gain, bias = rng.uniform(0.8, 1.2, 3), rng.uniform(-0.1, 0.1, 3)
            Xh = har.X_test
            cases["gain_bias"] = (b_har, Xh, har.y_test, (gain[None, :, None] * Xh + bias[None, :, None]).astype(np.float32), har.y_test)
            # 80 Hz device: anti-aliased resampling of each raw template to 80 Hz; the model then sees the UCR procedure
            cases["rate_80hz"] = (b_all, clean_all, y_all,
                                  ucr_like(raw, test_rec, lambda s: resample_to_length(resample(s, 100, 80), s.shape[1])
                                           if s.shape[1] > 8 else s), y_all)  # fmt: skip
            for name, (bundle, Xc, yc, Xs, ys) in cases.items():
                if a.quick:
                    Xc, yc, Xs, ys = Xc[:300], yc[:300], Xs[:300], ys[:300]
                row = shifts.setdefault(name, {"clean": [], "shifted": [], **{m: [] for m in METHODS}, "cost_ms": {m: [] for m in METHODS}, "info": {m: [] for m in METHODS}})
                row["clean"].append(stream_accuracy(bundle, Xc, yc, "none")[0])
                for m in METHODS:
                    try:
                        acc, ms, info = stream_accuracy(bundle, Xs, ys, m)
                    except ValueError as e:  # e.g. input-side adaptation on z-scored inputs
                        acc, ms, info = float("nan"), float("nan"), {"unavailable": str(e)[:120]}
                    row[m].append(acc)
                    row["cost_ms"][m].append(ms)
                    row["info"][m].append(info)
                row["shifted"].append(row["none"][-1])
                print(f"seed {seed} {name:12s} clean {row['clean'][-1]:.3f} shifted {row['shifted'][-1]:.3f} " +
                      " ".join(f"{m} {row[m][-1]:.3f}" for m in METHODS[1:]) +
                      f"  [{(time.perf_counter() - t_start) / 60:.1f} min]", flush=True)  # fmt: skip
                results["shifts"] = _summarise(shifts)
                Path(a.out).write_text(json.dumps(_final(results, a, t_start), indent=2) + "\n")
    Path(a.out).write_text(json.dumps(_final(results, a, t_start), indent=2) + "\n")
    print(f"wrote {a.out}")


def _summarise(shifts: dict) -> dict:
    out = {}
    for name, r in shifts.items():
        s = {"clean": _ms(r["clean"]), "shifted": _ms(r["shifted"]), "methods": {}}
        for m in METHODS:
            acc = np.array(r[m], float)
            lost = np.array(r["clean"]) - np.array(r["shifted"])
            rec = (acc - np.array(r["shifted"])) / np.where(np.abs(lost) < 1e-9, np.nan, lost)
            s["methods"][m] = {"accuracy": _ms(acc), "recovered_fraction": _ms(rec),
                               "cost_ms_per_window": _ms(r["cost_ms"][m]), "runs": r["info"][m]}  # fmt: skip
        out[name] = s
    return out


def _ms(v) -> dict:
    v = np.asarray(v, float)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if len(ok) else None, "std": float(ok.std()) if len(ok) else None,
            "values": [None if not np.isfinite(x) else round(float(x), 4) for x in v]}  # fmt: skip


def _final(results: dict, a, t_start) -> dict:
    sh = results["shifts"]
    avg = {}
    for m in METHODS:
        recs = [s["methods"][m]["recovered_fraction"]["mean"] for s in sh.values()]
        recs = [r for r in recs if r is not None]
        costs = [s["methods"][m]["cost_ms_per_window"]["mean"] for s in sh.values()]
        base = [s["methods"]["none"]["cost_ms_per_window"]["mean"] for s in sh.values()]
        ratio = [c / b for c, b in zip(costs, base, strict=True) if c is not None and b]
        avg[m] = {"mean_recovered_fraction": float(np.mean(recs)) if recs else None,
                  "cost_ratio_vs_none": float(np.mean(ratio)) if ratio else None}  # fmt: skip
    return {"protocol": __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2], "seeds": a.seeds, "quick": a.quick,
            "minutes": round((time.perf_counter() - t_start) / 60, 1), "average_over_shifts": avg,
            "machine": {"cpu": platform.processor() or platform.machine(), "threads_onnxruntime": 1}, **results}  # fmt: skip


if __name__ == "__main__":
    main()
