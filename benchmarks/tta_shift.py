"""Test-time adaptation under distribution shift. Writes benchmarks/results/tta_shift.json.

Protocol: for each shift and seed, a model is fine-tuned (joint self-supervised head, validation-selected,
exported to the int8 bundle); the shifted test windows are streamed through ``GestureRuntime`` one at a
time, in time order (subject, day, gesture, repetition for uWave; subject, segment, time for UCI HAR), and
each method adapts without labels. Accuracy over the whole stream (every window counts, including those
seen before adaptation converged). Recovery = (adapted − shifted) / (clean − shifted); the average over
shifts counts the shifts that cost at least 1 pt (a ratio of two numbers within seed noise means nothing);
the pooled recovery (accuracy won back over all shifts / accuracy lost over all shifts) counts every shift.
Each method also runs on the clean (unshifted) stream: its cost there is ``clean_cost_pt``.

The uWave models see what the runtime feeds them: raw templates in g stretched to 63 samples (the
segment-and-stretch input mode), standardised per window inside the int8 graph; 5 labels per class (the
few-label regime these shifts are meant for), 100 epochs.

Shifts:
* new_users: fine-tune on uWave users 1–4 (UCR train split), stream the test templates of users 5–8
  (clean: the test templates of users 1–4);
* rotation_{15,30,45}: the model of the UCR train split (all users), test templates rotated about a random
  axis per seed, in g, before the stretch;
* gain_bias: UCI HAR total_acc in raw g (no per-window z-score, so the shift reaches the model), official
  subject split, all labels, 8 epochs; test windows scaled by a per-axis gain in [0.8, 1.2] and offset by a
  bias in [−0.1, 0.1] g (its bundle records the training sensor's gravity calibration, from the training
  split's still windows: ``ttt`` calibrates the stream's still windows onto it first);
* rate_80hz: uWave raw test templates resampled to 80 Hz, then stretched to the model's length (what the
  runtime does after resampling by timestamps).

Also: per-window cost of each method relative to ``none`` (one thread, same run): after the accuracy passes,
each shifted stream is timed ``TIMING_PASSES`` times for every method in turn (a fresh adapter each pass);
a method's ratio on a stream is the median over passes of its time / ``none``'s in the same round (on a
shared machine one pass of the same stream varied by up to 50 % from one minute to the next), its
``cost_ms_per_window`` the fastest pass.

Remount (``remount`` in the JSON): the sensor is remounted in the middle of a session: the clean test stream
of the rotation model, then the same stream rotated (30°, 45°: the rotation shifts' streams), one stream through
one runtime; accuracy on the rotated half (``after``), beside the same method started afresh on the rotated
stream alone (``fresh``, the rotation shift's figure): what having settled on the first mounting costs.

``ttt`` is the forward-only input-side adaptation of :mod:`edgessl.edge_runtime.adapt.ttt` with its defaults.

    python benchmarks/tta_shift.py [--seeds 3] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgessl.datasets import load_stream, load_windows
from edgessl.edge_runtime.adapt import Adapter, build_adapter
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.export.pipeline import ExportConfig, export_bundle
from edgessl.preprocess import resample, resample_to_length
from edgessl.synthetic import rotation_matrix
from edgessl.trainer.data import DataConfig, label_budget_split
from edgessl.trainer.fit import FitConfig
from edgessl.trainer.pipeline import FinetuneConfig, finetune

METHODS = ["none", "t3a", "tent", "ttt", "input", "input+tent"]
ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))
PROTOCOL = "\n\n".join(__doc__.split("\n\n")[1:6])
VAL_MIN = 1000  # windows in a validation stream
TIMING_PASSES = 3  # timing rounds over all methods per shifted stream
LENGTH = 63  # model input length for uWave (benchmarks/ssl_uwave.py chose it on validation)


def stretched(raw, keep: np.ndarray, transform=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw templates (g) selected by ``keep``, optionally transformed, each stretched to LENGTH samples.
    Returns ``(X, y, subject)``; templates shorter than 2 samples are left out."""
    idx = [k for k in np.flatnonzero(keep) if raw.offsets[k + 1] - raw.offsets[k] >= 2]
    X = np.stack([resample_to_length(raw.recording(k) if transform is None else transform(raw.recording(k)), LENGTH)
                  for k in idx]).astype(np.float32)  # fmt: skip
    return X, raw.recording_labels[idx], raw.recording_groups["subject"][idx]


def write_npz(path: Path, raw, train: np.ndarray, test: np.ndarray) -> None:
    Xtr, ytr, str_ = stretched(raw, train)
    Xte, yte, ste = stretched(raw, test)
    np.savez(path, X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte, subject_train=str_, subject_test=ste,
             class_names=np.array(raw.class_names), channel_names=np.array(raw.channel_names),
             channel_units=np.array(["g"] * 3), rate_hz=np.array(100.0))  # fmt: skip


def stream_accuracy(bundle: Path, X: np.ndarray, y: np.ndarray, method: str | Callable[[], Adapter | None]
                    ) -> tuple[float, float, dict]:  # fmt: skip
    """Accuracy of ``method`` (a name, or a factory of adapters) on the stream ``X, y``; ms per window; counters."""
    adapter = build_adapter(method) if isinstance(method, str) else method()
    with GestureRuntime(bundle, decision=ANY, adapter=adapter) as rt:
        t0 = time.perf_counter()
        pred = np.array([rt.classify(x).index for x in X])
        per_window = (time.perf_counter() - t0) / len(X) * 1e3
        info = {"updates": rt.adapter.updates, "resets": rt.adapter.resets} if rt.adapter else {}
    return float((pred == y).mean()), per_window, info


def remount_accuracy(bundle: Path, Xc: np.ndarray, yc: np.ndarray, Xs: np.ndarray, ys: np.ndarray, method: str
                     ) -> tuple[float, float]:  # fmt: skip
    """``(accuracy on the first mounting, on the second)``: ``Xc`` then ``Xs`` through one runtime."""
    adapter = build_adapter(method)
    with GestureRuntime(bundle, decision=ANY, adapter=adapter) as rt:
        pred = np.array([rt.classify(x).index for x in np.concatenate([Xc, Xs])])
    ok = pred == np.concatenate([yc, ys])
    return float(ok[: len(Xc)].mean()), float(ok[len(Xc) :].mean())


def paired_costs(bundle: Path, X: np.ndarray, y: np.ndarray, methods: list[str], passes: int = TIMING_PASSES
                 ) -> dict[str, tuple[float, float]]:  # fmt: skip
    """``{method: (fastest ms per window, median ratio to none's time in the same round)}``: ``passes`` rounds,
    each timing every method once on the stream, so that a slow minute of a shared machine slows all alike."""
    t: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(passes):
        for m in methods:
            t[m].append(stream_accuracy(bundle, X, y, m)[1])
    return {m: (min(v), float(np.median(np.array(v) / np.array(t["none"])))) for m, v in t.items()}


def train_bundle(root: Path, name: str, data: DataConfig, seed: int, labels_per_class: int | None, epochs: int,
                 segment: bool = False) -> Path:  # fmt: skip
    """``segment``: the uWave models, exported for whole gestures (segment input mode, as a user's gesture
    recordings give; the windows' file has a rate, so the export's automatic choice would be sliding)."""
    out = root / f"{name}_{seed}"
    bundle = out / ("model_segment.essl" if segment else "model.essl")
    if bundle.exists():  # --workdir: a bundle trained by an earlier run with the same settings
        return bundle
    if not (out / "metrics.json").exists():
        # ssl_weight 0.1: the TTT head that the ``ttt`` method adapts (the trainer trains none unless asked)
        cfg = FinetuneConfig(data=data, labels_per_class=labels_per_class, ssl_weight=0.1,
                             fit=FitConfig(epochs=epochs, batch_size=64, warmup_epochs=3, seed=seed, drop_last=False))  # fmt: skip
        finetune(cfg, out, progress=False, plots=False)
    # agreement is recorded in the bundle
    export_bundle(out, bundle, ExportConfig(min_agreement=0.0, input_mode="segment" if segment else "auto"), progress=False)
    return bundle


def build_cases(split: str, seed: int, root: Path, raw, har, quick: bool) -> dict[str, tuple]:
    """``{shift: (bundle, clean X, clean y, shifted X, shifted y)}`` of one seed (trains the bundles it needs).

    ``split="test"``: the test streams. ``split="val"``: the same shifts built from windows no model trained
    on that are not a test split (the uWave fine-tune's validation windows; for new users the UCR-train
    templates of users 5–8, which the users-1–4 model never saw; for UCI HAR 6 training subjects a model of the
    other 15 never saw, in time order), with rotation axes, gains and biases from another random stream; uWave
    validation streams are replayed until they hold at least ``VAL_MIN`` windows.
    """
    ep_few, ep_har = (15, 2) if quick else (100, 8)
    split_, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    train_rec, test_rec = split_ == 0, split_ == 1  # test templates in time order (subject, day, gesture, repetition)
    b_u14 = train_bundle(root, "u14", DataConfig(spec=f"npz:{root / 'uwave_u14.npz'}"), seed, 5, ep_few, segment=True)
    b_all = train_bundle(root, "all", DataConfig(spec=f"npz:{root / 'uwave_all.npz'}"), seed, 5, ep_few, segment=True)
    if split == "test":
        b_har = train_bundle(root, "har", DataConfig(spec="npz:uci_har.npz", channels=("total_acc_x", "total_acc_y", "total_acc_z"),
                                                     preprocess={"steps": []}), seed, None, ep_har)  # fmt: skip
        rng = np.random.default_rng(100 + seed)
        clean_all, y_all, _ = stretched(raw, test_rec)
        c14, y14, _ = stretched(raw, test_rec & (subj <= 4))
        new, ynew, _ = stretched(raw, test_rec & (subj >= 5))
        Xh, yh = har.X_test, har.y_test
    else:
        rng = np.random.default_rng(200 + seed)
        # the fine-tune's own validation windows (label_budget_split with its seed and budget: not trained on)
        z_all, z14 = np.load(root / "uwave_all.npz"), np.load(root / "uwave_u14.npz")
        va_all = np.sort(label_budget_split(z_all["y_train"], per_class=5, val_fraction=0.2, seed=seed)[1])
        va14 = np.sort(label_budget_split(z14["y_train"], per_class=5, val_fraction=0.2, seed=seed)[1])
        clean_all, y_all = _replay(z_all["X_train"][va_all], z_all["y_train"][va_all])
        c14, y14 = _replay(z14["X_train"][va14], z14["y_train"][va14])
        new, ynew, _ = stretched(raw, train_rec & (subj >= 5))
        new, ynew = _replay(new, ynew)
        # UCI HAR: a model trained without 6 of the training subjects (drawn per seed), streamed those
        # subjects' windows in time order: new people, as in the test split, without touching it
        b_har, Xh, yh = har_validation(root, har, seed, ep_har)
    cases = {"new_users": (b_u14, c14, y14, new, ynew)}
    for deg in (15, 30, 45):
        R = rotation_matrix(rng.normal(size=3), np.deg2rad(deg))
        cases[f"rotation_{deg}"] = (b_all, clean_all, y_all, np.einsum("ij,njt->nit", R, clean_all).astype(np.float32), y_all)
    gain, bias = rng.uniform(0.8, 1.2, 3), rng.uniform(-0.1, 0.1, 3)
    cases["gain_bias"] = (b_har, Xh, yh, (gain[None, :, None] * Xh + bias[None, :, None]).astype(np.float32), yh)
    if split == "test":
        # 80 Hz device: anti-aliased resampling of each raw template to 80 Hz, then the stretch
        cases["rate_80hz"] = (b_all, clean_all, y_all,
                              stretched(raw, test_rec, lambda s: resample(s, 100, 80) if s.shape[1] > 8 else s)[0], y_all)  # fmt: skip
    if quick:
        cases = {k: (b, Xc[:600], yc[:600], Xs[:600], ys[:600]) for k, (b, Xc, yc, Xs, ys) in cases.items()}
    return cases


def har_validation(root: Path, har, seed: int, epochs: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A UCI HAR model of 15 of the 21 training subjects, and the other 6 subjects' windows in time order."""
    subj = har.groups["subject"][0]
    held = np.random.default_rng(300 + seed).choice(np.unique(subj), 6, replace=False)
    out, val = np.isin(subj, held), root / f"har_val_{seed}.npz"
    if not val.exists():
        np.savez(val, X_train=har.X_train[~out], y_train=har.y_train[~out], X_test=har.X_train[out],
                 y_test=har.y_train[out], subject_train=subj[~out], subject_test=subj[out],
                 class_names=np.array(har.class_names), channel_names=np.array(har.channel_names),
                 channel_units=np.array(har.channel_units), rate_hz=np.array(har.rate_hz))  # fmt: skip
    bundle = train_bundle(root, "harv", DataConfig(spec=f"npz:{val}", preprocess={"steps": []}), seed, None, epochs)
    return bundle, har.X_train[out], har.y_train[out]


def _replay(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X, y`` repeated in order until they hold at least ``VAL_MIN`` windows (adaptation needs a stream)."""
    n = -(-VAL_MIN // len(X))
    return np.concatenate([X] * n), np.concatenate([y] * n)


def prepare(root: Path) -> tuple:
    """The raw uWave templates, the stretched uWave files the bundles train on (in ``root``) and UCI HAR."""
    raw = load_stream("npz:uwave_raw.npz")
    split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    train_rec, test_rec = split == 0, split == 1
    write_npz(root / "uwave_u14.npz", raw, train_rec & (subj <= 4), test_rec & (subj <= 4))
    write_npz(root / "uwave_all.npz", raw, train_rec, test_rec)
    har = load_windows("npz:uci_har.npz").select_channels(["total_acc_x", "total_acc_y", "total_acc_z"])
    return raw, har


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test: the test streams (final figures); val: validation streams to choose settings on")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated adaptation methods")
    ap.add_argument("--out", default=None, help="default: results/tta_shift.json (test) or results/tta_shift_val.json")
    ap.add_argument("--workdir", default=None, help="keep the trained bundles here and reuse those already there "
                    "(default: a temporary folder, everything trained afresh)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    methods = a.methods.split(",")
    if methods[0] != "none":
        methods = ["none", *[m for m in methods if m != "none"]]
    out = a.out or str(Path(__file__).parent / "results" / ("tta_shift.json" if a.split == "test" else "tta_shift_val.json"))
    results: dict = {"split": a.split, "shifts": {}}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(a.workdir or td)
        root.mkdir(parents=True, exist_ok=True)
        raw, har = prepare(root)
        shifts: dict[str, dict] = {}
        remount: dict[str, dict] = {}
        for seed in range(a.seeds):
            for name, (bundle, Xc, yc, Xs, ys) in build_cases(a.split, seed, root, raw, har, a.quick).items():
                row = shifts.setdefault(name, {"clean": [], "shifted": [], **{m: [] for m in methods},
                                               "clean_adapted": {m: [] for m in methods},
                                               "cost_ms": {m: [] for m in methods}, "cost_ratio": {m: [] for m in methods},
                                               "info": {m: [] for m in methods}})  # fmt: skip
                for m in methods:
                    try:
                        acc, _, info = stream_accuracy(bundle, Xs, ys, m)
                        acc_clean = stream_accuracy(bundle, Xc, yc, m)[0]
                    except ValueError as e:  # e.g. input-side adaptation without input moments in the bundle
                        acc, info, acc_clean = float("nan"), {"unavailable": str(e)[:120]}, float("nan")
                    row[m].append(acc)
                    row["clean_adapted"][m].append(acc_clean)
                    row["info"][m].append(info)
                costs = paired_costs(bundle, Xs, ys, [m for m in methods if np.isfinite(row[m][-1])])
                for m in methods:
                    ms, ratio = costs.get(m, (float("nan"), float("nan")))
                    row["cost_ms"][m].append(ms)
                    row["cost_ratio"][m].append(ratio)
                row["clean"].append(row["clean_adapted"]["none"][-1])
                row["shifted"].append(row["none"][-1])
                print(f"seed {seed} {name:12s} clean {row['clean'][-1]:.3f} shifted {row['shifted'][-1]:.3f} " +
                      " ".join(f"{m} {row[m][-1]:.3f}/{row['clean_adapted'][m][-1]:.3f} ({row['cost_ratio'][m][-1]:.1f}x)"
                               for m in methods[1:]) +
                      f"  [{(time.perf_counter() - t_start) / 60:.1f} min]", flush=True)  # fmt: skip
                if name in ("rotation_30", "rotation_45"):
                    rm = remount.setdefault(name, {m: {"before": [], "after": [], "fresh": []} for m in methods})
                    for m in methods:
                        if not np.isfinite(row[m][-1]):  # not available for this bundle
                            continue
                        before, after = remount_accuracy(bundle, Xc, yc, Xs, ys, m)
                        for key, v in (("before", before), ("after", after), ("fresh", row[m][-1])):
                            rm[m][key].append(v)
                    print(f"seed {seed} remount {name}: after / fresh " +
                          " ".join(f"{m} {rm[m]['after'][-1]:.3f}/{rm[m]['fresh'][-1]:.3f}" for m in methods), flush=True)  # fmt: skip
                    results["remount"] = {n: {m: {k: _ms(v) for k, v in r.items()} for m, r in rr.items()}
                                          for n, rr in remount.items()}  # fmt: skip
                results["shifts"] = _summarise(shifts, methods)
                Path(out).write_text(json.dumps(_final(results, a, t_start, methods), indent=2) + "\n")
    Path(out).write_text(json.dumps(_final(results, a, t_start, methods), indent=2) + "\n")
    print(f"wrote {out}")


def _summarise(shifts: dict, methods: list[str]) -> dict:
    out = {}
    for name, r in shifts.items():
        s = {"clean": _ms(r["clean"]), "shifted": _ms(r["shifted"]), "methods": {}}
        for m in methods:
            acc = np.array(r[m], float)
            lost = np.array(r["clean"]) - np.array(r["shifted"])
            rec = (acc - np.array(r["shifted"])) / np.where(np.abs(lost) < 1e-9, np.nan, lost)
            clean_cost = (np.array(r["clean"]) - np.array(r["clean_adapted"][m], float)) * 100
            lost_mean = float(np.mean(lost))
            of_means = float((np.nanmean(acc) - np.mean(r["shifted"])) / lost_mean) if abs(lost_mean) > 1e-9 else None
            s["methods"][m] = {"accuracy": _ms(acc), "recovered_fraction": _ms(rec),
                               "recovered_fraction_of_mean_accuracies": of_means,
                               "clean_accuracy": _ms(r["clean_adapted"][m]),
                               "clean_cost_pt": _ms(clean_cost), "cost_ms_per_window": _ms(r["cost_ms"][m]),
                               "cost_ratio_vs_none": _ms(r["cost_ratio"][m]),
                               "runs": r["info"][m]}  # fmt: skip
        out[name] = s
    return out


def _ms(v) -> dict:
    v = np.asarray(v, float)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if len(ok) else None, "std": float(ok.std()) if len(ok) else None,
            "values": [None if not np.isfinite(x) else round(float(x), 4) for x in v]}  # fmt: skip


def _pooled(sh: dict, m: str) -> float | None:
    """Accuracy won back over all shifts together / accuracy lost over all shifts together (defined even
    where one shift costs nothing)."""
    acc = [s["methods"][m]["accuracy"]["mean"] for s in sh.values()]
    if any(x is None for x in acc):
        return None
    won = sum(x - s["shifted"]["mean"] for x, s in zip(acc, sh.values(), strict=True))
    lost = sum(s["clean"]["mean"] - s["shifted"]["mean"] for s in sh.values())
    return float(won / lost) if lost > 0 else None


def _final(results: dict, a, t_start, methods: list[str]) -> dict:
    sh = results["shifts"]
    avg = {}
    counted = [n for n, s in sh.items() if s["clean"]["mean"] - s["shifted"]["mean"] >= 0.01]
    for m in methods:
        recs = [sh[n]["methods"][m]["recovered_fraction"]["mean"] for n in counted]
        recs = [r for r in recs if r is not None]
        clean_costs = [s["methods"][m]["clean_cost_pt"]["mean"] for s in sh.values()]
        clean_costs = [c for c in clean_costs if c is not None]
        ratio = [s["methods"][m]["cost_ratio_vs_none"]["mean"] for s in sh.values()]
        ratio = [r for r in ratio if r is not None]
        avg[m] = {"mean_recovered_fraction": float(np.mean(recs)) if recs else None,
                  "pooled_recovered_fraction": _pooled(sh, m),
                  "worst_clean_cost_pt": float(max(clean_costs)) if clean_costs else None,
                  "cost_ratio_vs_none": float(np.mean(ratio)) if ratio else None, "shifts_counted": counted}  # fmt: skip
    return {"protocol": PROTOCOL, "split": a.split, "seeds": a.seeds, "quick": a.quick,
            "minutes": round((time.perf_counter() - t_start) / 60, 1), "average_over_shifts": avg,
            "machine": {"cpu": platform.processor() or platform.machine(), "threads_onnxruntime": 1}, **results}  # fmt: skip


if __name__ == "__main__":
    main()
