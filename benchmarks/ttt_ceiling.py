"""How much of a new user's loss an input-side transform can win back, and which unsupervised loss finds it.
Writes benchmarks/results/ttt_ceiling.json.

Why: ``ttt`` adapts a 3×3 matrix and a bias on the accelerometer axes in front of the frozen int8 encoder. On
new users it wins back a third of the loss on uWave and nothing on ``edgessl demo``'s synthetic user. This
separates the three possible reasons: the transform cannot express a person's style, the unsupervised loss
does not point to the right transform, or the live search has too small a budget to find it.

Protocol (validation streams only, no test split): the demo's model (``edgessl demo``'s training and export
defaults, synthetic users 1–6) streamed four other synthetic users (9–12, never seen, 300 gestures each, the
sensor rotated 30° about a random axis as in the demo); uWave models of users 1–4 (``tta_shift.py``'s, 3
seeds) on the UCR-train templates of users 5–8 (``tta_shift.py --split val``'s new users). Each stream is
split at random into halves; CMA-ES (``edgessl.edge_runtime.adapt.es``, from the identity, step 0.05, the
anchor ``|θ|²`` of ``ttt``) fits the transform on one half with a loss, and accuracy is measured on the other
half (every window, no gates), beside the untransformed model's on the same half. Losses: ``supervised``
(cross-entropy with the true labels: what the transform can express at all), ``foa`` (``ttt``'s: prediction
entropy + embedding statistics distance), ``entropy`` alone, ``prototype+stats`` (10 × the mean of 1 − the
largest cosine to a class prototype, + the statistics distance). Budgets: ``full`` (60 generations × 8
candidates × the whole half), and the live search's (2 and 5 generations × 6 candidates × 64 windows drawn
from the half). ``live_ttt``: ``ttt`` as shipped through ``GestureRuntime`` on the whole stream in order.

    python benchmarks/ttt_ceiling.py [--workdir DIR] [--demo-bundle PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tta_shift import ANY, stretched, train_bundle, write_npz

from edgessl.datasets import load_stream
from edgessl.datasets.synthetic import GESTURES, make_gesture, make_user
from edgessl.edge_runtime.adapt import TTT
from edgessl.edge_runtime.adapt.es import CMAES
from edgessl.edge_runtime.runtime import GestureRuntime
from edgessl.preprocess import resample_to_length, softmax
from edgessl.synthetic import rotation_matrix
from edgessl.trainer.data import DataConfig

PROTOCOL = "\n\n".join(__doc__.split("\n\n")[1:4])
BUDGETS = {"full": (60, 8, None), "live_2": (2, 6, 64), "live_5": (5, 6, 64)}  # generations, candidates, windows
LOSSES = ("supervised", "foa", "entropy", "prototype+stats")
DEMO_USERS = (9, 10, 11, 12)


def demo_bundle(root: Path) -> Path:
    """The demo's model: ``edgessl demo``'s data, pretraining, fine-tuning and export defaults."""
    from edgessl.demo import DemoConfig
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.trainer.encoders import EncoderConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.methods import MethodConfig
    from edgessl.trainer.pipeline import FinetuneConfig, PretrainConfig, finetune, pretrain

    out = root / "demo" / "model.essl"
    if out.exists():
        return out
    c = DemoConfig()
    dcfg = DataConfig(spec=f"synthetic:reps={c.reps},length={c.length},seed={c.seed}")
    pretrain(PretrainConfig(dcfg, EncoderConfig(), MethodConfig(name=c.method),
                            FitConfig(epochs=c.pretrain_epochs, batch_size=128, warmup_epochs=max(1, c.pretrain_epochs // 10),
                                      seed=c.seed)), root / "demo" / "pretrain")  # fmt: skip
    finetune(FinetuneConfig(data=dcfg, init=str(root / "demo" / "pretrain"), labels_per_class=c.labels_per_class,
                            fit=FitConfig(epochs=c.finetune_epochs, batch_size=64, warmup_epochs=3, seed=c.seed,
                                          drop_last=False)), root / "demo" / "finetune", progress=False, plots=False)  # fmt: skip
    export_bundle(root / "demo" / "finetune", out, dataclasses.replace(ExportConfig(), name="edgessl-demo"), progress=False)
    return out


def demo_stream(bundle: Path, uid: int, n: int = 300, deg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` gestures of synthetic user ``uid`` in random order, the sensor rotated ``deg``°, stretched to the window."""
    with GestureRuntime(bundle, decision=ANY) as rt:
        T, names = rt.window, list(rt.labels)
    user, rng = make_user(0, uid), np.random.default_rng([0, uid, 99])
    R = rotation_matrix(rng.normal(size=3), np.deg2rad(deg))
    y = rng.integers(0, len(names), n)
    X = np.stack([resample_to_length(R @ make_gesture(GESTURES.index(names[k]), user, 100.0, rng), T) for k in y])
    return X.astype(np.float32), y


def _losses(rt: GestureRuntime) -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]]:
    ctx = rt.adapt_context()
    mu0, sd0 = ctx.embedding_mean.astype(np.float64), np.maximum(ctx.embedding_std.astype(np.float64), 1e-6)
    P = ctx.prototypes.astype(np.float64)

    def entropy(L, E, y):
        p = softmax(L)
        return float(-(p * np.log(np.maximum(p, 1e-12))).sum(-1).mean() / np.log(L.shape[1]))

    def stats(L, E, y):
        return float((((E.mean(0) - mu0) / sd0) ** 2 + ((E.std(0) - sd0) / sd0) ** 2).mean())

    def proto(L, E, y):
        En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
        return float((1 - (En @ P.T).max(1)).mean())

    def supervised(L, E, y):
        return float(-np.log(np.maximum(softmax(L)[np.arange(len(y)), y], 1e-9)).mean())

    return {"supervised": supervised, "foa": lambda L, E, y: entropy(L, E, y) + stats(L, E, y), "entropy": entropy,
            "prototype+stats": lambda L, E, y: 10 * proto(L, E, y) + stats(L, E, y)}  # fmt: skip


def fit_transforms(bundle: Path, X: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{budget: {loss: accuracy change in pt on the held half}}`` and the held half's untransformed accuracy."""
    perm = np.random.default_rng(seed).permutation(len(X))
    fit, held = perm[: len(X) // 2], perm[len(X) // 2 :]
    with GestureRuntime(bundle, decision=ANY) as rt:
        W, b = rt.W.astype(np.float64), rt.b.astype(np.float64)
        losses = _losses(rt)

        def logits(theta: np.ndarray, Xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            A, c = np.eye(3) + theta[:9].reshape(3, 3), theta[9:]
            E = rt.embed((np.einsum("ij,njt->nit", A, Xb) + c[None, :, None]).astype(np.float32)).astype(np.float64)
            return E @ W.T + b, E

        def accuracy(theta: np.ndarray) -> float:
            return float((logits(theta, X[held])[0].argmax(1) == y[held]).mean())

        base = accuracy(np.zeros(12))
        out: dict[str, dict[str, float]] = {"untransformed": {"accuracy": base}}
        for budget, (gens, pop, nwin) in BUDGETS.items():
            out[budget] = {}
            for name in LOSSES:
                es = CMAES(np.zeros(12), 0.05, popsize=pop, rng=np.random.default_rng(seed))
                pick = np.random.default_rng(seed + 1)
                for _ in range(gens):
                    rows = fit if nwin is None else pick.choice(fit, nwin, replace=False)
                    cand = es.ask()
                    es.tell(cand, np.array([losses[name](*logits(c, X[rows]), y[rows]) + float((c**2).sum()) for c in cand]))
                out[budget][name] = round((accuracy(es.mean) - base) * 100, 2)
    return out


def live_ttt(bundle: Path, X: np.ndarray, y: np.ndarray) -> float:
    """``ttt`` (shipped defaults) minus no adaptation, accuracy over the whole stream in order, pt."""
    acc = []
    for adapter in (None, TTT()):
        with GestureRuntime(bundle, decision=ANY, adapter=adapter) as rt:
            acc.append(float((np.array([rt.classify(x).index for x in X]) == y).mean()))
    return round((acc[1] - acc[0]) * 100, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None, help="keep the trained bundles here and reuse those already there")
    ap.add_argument("--demo-bundle", default=None, help="the demo's model (default: trained here, ~1 min)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ttt_ceiling.json"))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as td:
        root = Path(a.workdir or td)
        root.mkdir(parents=True, exist_ok=True)
        raw = load_stream("npz:uwave_raw.npz")
        split, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
        write_npz(root / "uwave_u14.npz", raw, (split == 0) & (subj <= 4), (split == 1) & (subj <= 4))
        streams: dict[str, tuple[Path, np.ndarray, np.ndarray]] = {}
        demo = Path(a.demo_bundle) if a.demo_bundle else demo_bundle(root)
        for uid in DEMO_USERS:
            streams[f"demo/user_{uid}"] = (demo, *demo_stream(demo, uid))
        new, ynew, _ = stretched(raw, (split == 0) & (subj >= 5))
        for seed in range(a.seeds):
            b = train_bundle(root, "u14", DataConfig(spec=f"npz:{root / 'uwave_u14.npz'}"), seed, 5, 100)
            streams[f"uwave_new_users/seed_{seed}"] = (b, new, ynew)
        for name, (b, X, y) in streams.items():
            rows[name] = {**fit_transforms(b, X, y), "live_ttt": live_ttt(b, X, y)}
            print(name, json.dumps(rows[name]), flush=True)
    summary: dict[str, dict] = {}
    for group in ("demo", "uwave_new_users"):
        rs = [r for k, r in rows.items() if k.startswith(group)]
        summary[group] = {budget: {name: {"mean": round(float(np.mean([r[budget][name] for r in rs])), 2),
                                          "min": round(float(np.min([r[budget][name] for r in rs])), 2)}
                                   for name in LOSSES} for budget in BUDGETS}  # fmt: skip
        summary[group]["live_ttt"] = {"mean": round(float(np.mean([r["live_ttt"] for r in rs])), 2),
                                      "min": round(float(np.min([r["live_ttt"] for r in rs])), 2)}  # fmt: skip
        summary[group]["untransformed_accuracy"] = round(float(np.mean([r["untransformed"]["accuracy"] for r in rs])), 4)
    out = {"protocol": PROTOCOL, "units": "accuracy change on the held half, percentage points", "summary": summary,
           "streams": rows, "seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine()}  # fmt: skip
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
