"""On-device enrollment on new users of uWave. Writes benchmarks/results/enroll.json.

Protocol: per seed, a model is fine-tuned on uWave users 1–4 (UCR train split, 5 labels per class, 100
epochs, validation-selected) on raw templates in g stretched to 63 samples (the runtime's segment input) and
exported with the default export (calibrated gates). Each new user (5–8) then enrolls the first ``k``
performances of each gesture in time order (``k`` = 1, 3: what ``edgessl enroll --calibrate`` and ``--label
X --count 3`` collect) through ``GestureRuntime.enroll``; the rest of that user's test templates are streamed
one at a time through the same runtime. Accuracy = right answers / performed gestures, with the runtime's
default decisions (an ``unknown`` answer counts as not right; ``unknown`` share reported) and without gates
("decided": the class with the highest probability). The same on the held-out days of users 1–4 (where
``TEMPLATE_WEIGHT`` was chosen). Enrollment + adaptation: the same with ``ttt`` running on the stream.

New gesture: per seed, a second model is trained on users 1–4 without one gesture (seed 0: gesture 8,
seed 1: 3, seed 2: 6); each new user enrolls that gesture from its first 3 performances; reported: its recall
over the rest of the user's stream, and the accuracy on the other seven gestures before and after. Before
the enrollment, the same streams say how the runtime answers a gesture it was not trained on: the share of
its performances answered ``unknown`` (and of the known gestures'), how well the out-of-distribution score
and 1 − the largest probability tell it from known gestures (AUROC), and the share the out-of-distribution
gate would reject with its threshold set to reject 5 / 10 / 20 % of the known gestures.

Also: per-window classification cost with and without a user state (one thread); and the confidence the
enrolled rule shows: the scale ``a`` of ``softmax(a · log p)`` over the probabilities ``p`` it shows,
fitted by log-loss on the held-out days of users 1–4 (enrolled 1 and 3 pooled), and with ``a`` = 1 (as
shipped) and the fitted ``a`` on both user groups: calibration error (ECE, 15 bins), the share shown at
≥ 0.99, and accuracy / ``unknown`` once the bundle's confidence gate applies to the rescaled probability.

    python benchmarks/enroll.py [--seeds 3] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from tta_shift import stretched

from edgessl.datasets import load_stream
from edgessl.edge_runtime.adapt import build_adapter
from edgessl.edge_runtime.enroll import TEMPLATE_WEIGHT
from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime
from edgessl.export.pipeline import ExportConfig, export_bundle
from edgessl.preprocess import softmax
from edgessl.trainer.data import DataConfig
from edgessl.trainer.fit import FitConfig
from edgessl.trainer.pipeline import FinetuneConfig, finetune

PROTOCOL = "\n\n".join(__doc__.split("\n\n")[1:4])
ANY = DecisionConfig(confidence=0.0, ood_threshold=float("inf"), roughness_threshold=float("inf"))
NEW_GESTURE = [7, 2, 5]  # by seed (0-based class index)


def write_npz(path: Path, raw, train: np.ndarray, test: np.ndarray, drop: int | None = None) -> None:
    """63-sample windows of the selected templates; without class ``drop`` (labels renumbered) when given."""
    Xtr, ytr, s_tr = stretched(raw, train)
    Xte, yte, s_te = stretched(raw, test)
    names = list(raw.class_names)
    if drop is not None:
        kt, ke = ytr != drop, yte != drop
        Xtr, ytr, s_tr, Xte, yte, s_te = Xtr[kt], ytr[kt], s_tr[kt], Xte[ke], yte[ke], s_te[ke]
        ytr, yte = ytr - (ytr > drop), yte - (yte > drop)
        names.pop(drop)
    np.savez(path, X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte, subject_train=s_tr, subject_test=s_te,
             class_names=np.array(names), channel_names=np.array(raw.channel_names),
             channel_units=np.array(["g"] * 3), rate_hz=np.array(100.0))  # fmt: skip


def train(root: Path, name: str, npz: Path, seed: int, epochs: int) -> tuple[Path, dict]:
    out = root / f"{name}_{seed}"
    if not (out / "metrics.json").exists():  # --workdir: reuse a model of an earlier run with the same settings
        cfg = FinetuneConfig(data=DataConfig(spec=f"npz:{npz}"), labels_per_class=5,
                             fit=FitConfig(epochs=epochs, batch_size=64, warmup_epochs=3, seed=seed, drop_last=False))  # fmt: skip
        finetune(cfg, out, progress=False, plots=False)
    # a bundle for gestures, as a user's gesture recordings give: one whole gesture per window (segment input
    # mode, with its noise gate); the windows' file has a rate, so the export's automatic choice would be sliding
    bundle = out / "model_segment.essl"
    if not bundle.exists():
        export_bundle(out, bundle, ExportConfig(min_agreement=0.0, input_mode="segment"), progress=False)
    return bundle, json.loads((out / "metrics.json").read_text())


def run_stream(rt: GestureRuntime, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Default-decision answers (-1 = unknown), decided answers, ms per window, probabilities shown."""
    t0 = time.perf_counter()
    preds = [rt.classify(x) for x in X]
    ms = (time.perf_counter() - t0) / max(len(X), 1) * 1e3
    return (np.array([p.index for p in preds]), np.array([int(p.probs.argmax()) for p in preds]), ms,
            np.stack([p.probs for p in preds]))


def personalise(bundle: Path, X: np.ndarray, y: np.ndarray, s: np.ndarray, k: int, adapt: str | None,
                shown: list | None = None) -> dict:
    """Per user: enroll the first ``k`` takes of each class, stream the rest; pooled over users. ``shown``
    collects ``(probabilities, answer, truth, confidence gate)`` of every streamed window."""
    right, decided, unknown, n, ms, kept, refused = 0, 0, 0, 0, [], 0, 0
    for u in np.unique(s):
        iu = np.flatnonzero(s == u)
        enr = np.concatenate([iu[y[iu] == c][:k] for c in np.unique(y[iu])]) if k else np.zeros(0, int)
        rest = np.setdiff1d(iu, enr)
        with GestureRuntime(bundle, threads=1, adapter=build_adapter(adapt) if adapt else None) as rt:
            for c in np.unique(y[enr]):
                rep = rt.enroll(rt.bundle.labels[c], X[enr[y[enr] == c]])
                kept += rep.kept
                refused += 0 if rep.accepted else 1
            p, d, t, probs = run_stream(rt, X[rest])
            if shown is not None:
                shown.append((probs, p, y[rest], rt.confidence))
        right += int((p == y[rest]).sum())
        decided += int((d == y[rest]).sum())
        unknown += int((p < 0).sum())
        n += len(rest)
        ms.append(t)
    return {"accuracy": right / n, "decided_accuracy": decided / n, "unknown": unknown / n, "gestures": n,
            "takes_kept": kept, "enrollments_refused": refused, "ms_per_window": float(np.mean(ms))}  # fmt: skip


def new_gesture(bundle: Path, X: np.ndarray, y: np.ndarray, s: np.ndarray, g: int, k: int = 3) -> dict:
    """The model knows every class but ``g`` (labels of ``y`` are the 8-class ones); each user enrolls ``g``."""
    rec = {"before": [0, 0, 0], "after": [0, 0, 0]}  # right on others, others, recall hits on g
    n_g = 0
    scores: dict[str, list[float]] = {k: [] for k in ("ood", "ood_unseen", "maxprob", "maxprob_unseen")}
    unknown_known = unknown_unseen = 0
    refused = 0
    for u in np.unique(s):
        iu = np.flatnonzero(s == u)
        enr = iu[y[iu] == g][:k]
        rest = np.setdiff1d(iu, enr)
        yr = y[rest]
        other = yr != g
        y7 = yr - (yr > g)  # the 7-class model's labels of the other gestures
        with GestureRuntime(bundle, threads=1) as rt:
            before = [rt.classify(x) for x in X[rest]]
            p0 = np.array([q.index for q in before])
            for q, o in zip(before, other, strict=True):  # scores of known (o) and unseen (not o) gestures, before enrollment
                scores["ood" if o else "ood_unseen"].append(q.ood_score)
                scores["maxprob" if o else "maxprob_unseen"].append(1.0 - float(q.probs.max()))
            unknown_known += int((p0[other] < 0).sum())
            unknown_unseen += int((p0[~other] < 0).sum())
            rep = rt.enroll(f"gesture_{g + 1}", X[enr])
            refused += 0 if rep.accepted else 1
            p1 = np.array([rt.classify(x).index for x in X[rest]])
        new = len(rt.bundle.labels)  # the enrolled class's index
        for key, p in (("before", p0), ("after", p1)):
            rec[key][0] += int((p[other] == y7[other]).sum())
            rec[key][1] += int(other.sum())
            rec[key][2] += int((p[~other] == new).sum())
        n_g += int((~other).sum())
    return {"recall_new": rec["after"][2] / n_g, "others_before": rec["before"][0] / rec["before"][1],
            "others_after": rec["after"][0] / rec["after"][1],
            "others_change_pt": 100 * (rec["after"][0] - rec["before"][0]) / rec["before"][1],
            "new_gesture": f"gesture_{g + 1}", "gestures_new": n_g, "enrollments_refused": refused,
            # before it is enrolled: how the runtime answers a gesture it was not trained on
            "unseen_answered_unknown": unknown_unseen / n_g, "known_answered_unknown": unknown_known / rec["before"][1],
            "unseen_auroc_ood_score": auroc(scores["ood"], scores["ood_unseen"]),
            "unseen_auroc_max_probability": auroc(scores["maxprob"], scores["maxprob_unseen"]),
            "unseen_unknown_at_known_rejection": {
                f"{r:.2f}": float(np.mean(np.array(scores["ood_unseen"]) > np.quantile(scores["ood"], 1 - r)))
                for r in (0.05, 0.10, 0.20)}}  # fmt: skip


def confidence_fit(val: list, test: list) -> dict:
    """The scale of the enrolled rule's shown confidence: ``softmax(a · log p)`` for the probabilities ``p`` it
    shows now, ``a`` fitted by log-loss on the validation users' windows (enrolled 1 and 3 pooled); with it and
    with the shipped scale (``a`` = 1): expected calibration error (15 bins of the largest probability), the
    share of answers shown with confidence ≥ 0.99, and the accuracy and ``unknown`` share once the bundle's
    confidence gate applies to the rescaled probability (the other gates as the runtime answered)."""
    from scipy.optimize import minimize_scalar

    def pooled(rows: list) -> tuple[np.ndarray, ...]:
        logp = np.log(np.clip(np.concatenate([r[0] for r in rows]).astype(np.float64), 1e-37, None))
        return (logp, np.concatenate([r[1] for r in rows]), np.concatenate([r[2] for r in rows]),
                np.concatenate([np.full(len(r[1]), r[3]) for r in rows]))

    def rescaled(logp: np.ndarray, a: float) -> np.ndarray:
        return softmax(a * logp)

    def nll(logp: np.ndarray, y: np.ndarray, a: float) -> float:
        return float(-np.log(np.clip(rescaled(logp, a)[np.arange(len(y)), y], 1e-300, None)).mean())

    def scores(logp: np.ndarray, ans: np.ndarray, y: np.ndarray, gate: np.ndarray, a: float) -> dict:
        p = rescaled(logp, a)
        conf, pick = p.max(1), p.argmax(1)
        bins = np.minimum((conf * 15).astype(int), 14)
        ece = sum(abs(float((pick[b_ == bins] == y[b_ == bins]).mean()) - float(conf[b_ == bins].mean())) * (b_ == bins).mean()
                  for b_ in range(15) if (b_ == bins).any())  # fmt: skip
        kept = (ans >= 0) & (conf >= gate)
        return {"nll": round(nll(logp, y, a), 4), "ece": round(float(ece), 4),
                "shown_at_least_0.99": round(float((conf >= 0.99).mean()), 4),
                "accuracy": round(float((kept & (ans == y)).mean()), 4), "unknown": round(float((~kept).mean()), 4)}

    lv, av, yv, gv = pooled(val)
    fit = minimize_scalar(lambda t: nll(lv, yv, float(np.exp(t))), bounds=(-5.0, 3.0), method="bounded")
    a = float(np.exp(fit.x))
    lt, at, yt, gt = pooled(test)
    return {"scale_fitted_on_validation": round(a, 4),
            "validation": {"shipped": scores(lv, av, yv, gv, 1.0), "fitted": scores(lv, av, yv, gv, a)},
            "new_users": {"shipped": scores(lt, at, yt, gt, 1.0), "fitted": scores(lt, at, yt, gt, a)}}


def auroc(known: list[float], unseen: list[float]) -> float:
    """The chance that an unseen gesture's score exceeds a known one's (ties count half): how well the score
    alone tells the two apart (0.5: not at all)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(unseen, known).statistic / (len(unseen) * len(known)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="15 epochs, 2 users: checks the script, not the figures")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "enroll.json"))
    ap.add_argument("--workdir", default=None, help="keep the trained bundles here and reuse those already there")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    epochs = 15 if a.quick else 100
    raw = load_stream("npz:uwave_raw.npz")
    split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    train_rec, test_rec = split == 0, split == 1
    new_users = test_rec & (subj >= (7 if a.quick else 5))
    X, y, s = stretched(raw, new_users)
    Xv, yv, sv = stretched(raw, test_rec & (subj <= (2 if a.quick else 4)))
    rows: dict = {}
    shown_by: dict[tuple[int, str], list] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(a.workdir or td)
        root.mkdir(parents=True, exist_ok=True)
        write_npz(root / "u14.npz", raw, train_rec & (subj <= 4), test_rec & (subj <= 4))
        for seed in range(a.seeds):
            bundle, metrics = train(root, "u14", root / "u14.npz", seed, epochs)
            r = rows.setdefault("personalise", {})
            for users, (Xs, ys, ss) in (("new_users", (X, y, s)), ("training_users_held_out_days", (Xv, yv, sv))):
                for k, adapt in ((0, None), (1, None), (3, None), (0, "ttt"), (0, "ttt+clusters"), (1, "ttt"), (3, "ttt"),
                                 (1, "ttt+clusters"), (3, "ttt+clusters")):  # fmt: skip
                    if users != "new_users" and adapt and k:
                        continue
                    key = f"{users}/{'none' if not k else f'enrolled_{k}'}{'+' + adapt if adapt else ''}"
                    shown = shown_by.setdefault((seed, users), []) if k and not adapt else None
                    r.setdefault(key, []).append(personalise(bundle, Xs, ys, ss, k, adapt, shown))
                    print(f"seed {seed} {key:48s} " + json.dumps({m: round(v, 3) for m, v in r[key][-1].items()
                                                                  if isinstance(v, float)}), flush=True)  # fmt: skip
            g = NEW_GESTURE[seed % len(NEW_GESTURE)]
            write_npz(root / f"u14_no{g}.npz", raw, train_rec & (subj <= 4), test_rec & (subj <= 4), drop=g)
            b7, _ = train(root, f"u14_no{g}", root / f"u14_no{g}.npz", seed, epochs)
            rows.setdefault("new_gesture", []).append(new_gesture(b7, X, y, s, g))
            print(f"seed {seed} new gesture {json.dumps(rows['new_gesture'][-1])}", flush=True)
            rows.setdefault("source_test_accuracy", []).append(metrics["test_accuracy"])
            rows.setdefault("confidence", []).append(confidence_fit(shown_by[(seed, "training_users_held_out_days")],
                                                                    shown_by[(seed, "new_users")]))  # fmt: skip
            print(f"seed {seed} confidence {json.dumps(rows['confidence'][-1])}", flush=True)
            Path(a.out).write_text(json.dumps(_final(rows, a, t_start), indent=2) + "\n")
    print(f"wrote {a.out}")


def _ms(v: list[float]) -> dict:
    x = np.asarray(v, float)
    return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4), "values": [round(float(t), 4) for t in x]}


def _final(rows: dict, a, t_start: float) -> dict:
    summary: dict = {"personalise": {}, "new_gesture": {}}
    for key, runs in rows.get("personalise", {}).items():
        summary["personalise"][key] = {m: _ms([r[m] for r in runs]) for m in runs[0] if isinstance(runs[0][m], float)}
    ng = rows.get("new_gesture", [])
    if ng:
        summary["new_gesture"] = {m: _ms([r[m] for r in ng]) for m in ("recall_new", "others_before", "others_after",
                                                                       "others_change_pt", "unseen_answered_unknown",
                                                                       "known_answered_unknown", "unseen_auroc_ood_score",
                                                                       "unseen_auroc_max_probability")}  # fmt: skip
        for r in ng[0]["unseen_unknown_at_known_rejection"]:
            summary["new_gesture"][f"unseen_unknown_at_known_rejection_{r}"] = _ms(
                [x["unseen_unknown_at_known_rejection"][r] for x in ng])
        summary["new_gesture"]["gestures"] = [r["new_gesture"] for r in ng]
    conf = rows.get("confidence", [])
    if conf:
        summary["confidence"] = {"scale_fitted_on_validation": _ms([c["scale_fitted_on_validation"] for c in conf]),
                                 **{f"{u}/{w}/{m}": _ms([c[u][w][m] for c in conf]) for u in ("validation", "new_users")
                                    for w in ("shipped", "fitted") for m in conf[0][u][w]}}  # fmt: skip
    return {"protocol": PROTOCOL, "template_weight": TEMPLATE_WEIGHT, "seeds": a.seeds, "quick": a.quick,
            "minutes": round((time.perf_counter() - t_start) / 60, 1),
            "source_test_accuracy_users_1_4": _ms(rows.get("source_test_accuracy", [])), "summary": summary,
            "runs": rows, "machine": {"cpu": platform.processor() or platform.machine(), "threads_onnxruntime": 1}}  # fmt: skip


if __name__ == "__main__":
    main()
