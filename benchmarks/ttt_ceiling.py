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
largest cosine to a class prototype, + the statistics distance), ``masked reconstruction`` (TTT-MAE's, Gandelsman et
al. 2022, for a frozen encoder: a decoder from the embedding of a window with half of its 16-sample patches
blanked, and the mask, to the window, mean removed and scaled to unit spread; trained on the model's own
training windows (synthetic users 1–6, uWave UCR-train users 1–4), 8 masks each; the loss is the error on the
blanked samples, 2 masks per window). Budgets: ``full`` (60 generations × 8
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
import torch
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
LOSSES = ("supervised", "foa", "entropy", "prototype+stats", "masked reconstruction")
PATCH, MASKED = 16, 0.5  # masked reconstruction: patch length (samples), share of patches blanked
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


def masks(n: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, T]`` True where blanked: ``MASKED`` of the ``PATCH``-sample patches of each window, at random."""
    P = T // PATCH
    M = np.zeros((n, P), bool)
    M[np.arange(n)[:, None], np.argsort(rng.random((n, P)), axis=1)[:, : int(P * MASKED)]] = True
    return np.pad(np.repeat(M, PATCH, axis=1), ((0, 0), (0, T - P * PATCH)))


def masked(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    return np.where(M[:, None, :], X.mean(-1, keepdims=True), X).astype(np.float32)


def unit_motion(X: np.ndarray) -> np.ndarray:
    Z = X - X.mean(-1, keepdims=True)
    return Z / np.maximum(Z.std(axis=(1, 2), keepdims=True), 1e-6)


class Decoder(torch.nn.Module):
    def __init__(self, dim: int, channels: int, length: int, hidden: int = 512) -> None:
        super().__init__()
        self.shape = (channels, length)
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + length, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
                                       torch.nn.GELU(), torch.nn.Linear(hidden, channels * length))  # fmt: skip

    def forward(self, e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([e, m], 1)).view(-1, *self.shape)


def reconstruction_loss(embed: Callable[[np.ndarray], np.ndarray], source: np.ndarray,
                        seed: int = 0) -> Callable[[np.ndarray], float]:  # fmt: skip
    """The masked reconstruction loss of (transformed) windows ``[B, C, T]`` under the encoder ``embed``, its
    decoder trained here on ``source`` windows (8 masks each, 60 epochs)."""
    rng, T = np.random.default_rng(seed), source.shape[-1]
    Xr = np.repeat(source, 8, axis=0)
    M = masks(len(Xr), T, rng)
    E = np.concatenate([embed(masked(Xr[i : i + 512], M[i : i + 512])) for i in range(0, len(Xr), 512)])
    Et, Mt, Yt = (torch.tensor(a, dtype=torch.float32) for a in (E, M, unit_motion(Xr)))
    dec = Decoder(E.shape[1], *source.shape[1:])
    opt = torch.optim.AdamW(dec.parameters(), 1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(60):
        perm = torch.randperm(len(Et), generator=gen)
        for i in range(0, len(Et), 256):
            j = perm[i : i + 256]
            err = (dec(Et[j], Mt[j]) - Yt[j]) ** 2
            loss = (err.mean(1) * Mt[j]).sum() / Mt[j].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    dec.eval()
    fixed: dict[int, np.ndarray] = {}

    def score(X: np.ndarray) -> float:
        n = len(X)
        if n not in fixed:  # the same masks for every candidate of a size: the loss compares transforms, not masks
            fixed[n] = masks(2 * n, T, rng)
        Mx, Xx = fixed[n], np.repeat(X, 2, axis=0)
        with torch.no_grad():
            out = dec(torch.from_numpy(embed(masked(Xx, Mx))), torch.from_numpy(Mx.astype(np.float32))).numpy()
        return float(((out - unit_motion(Xx)) ** 2).mean(1)[Mx].mean())

    return score


def demo_source(bundle: Path) -> np.ndarray:
    """The demo model's training users (synthetic 1–6), 10 performances of each gesture, stretched to the window."""
    with GestureRuntime(bundle, decision=ANY) as rt:
        T, names = rt.window, list(rt.labels)
    X = []
    for uid in range(1, 7):
        user, rng = make_user(0, uid), np.random.default_rng([0, uid, 7])
        X += [resample_to_length(make_gesture(GESTURES.index(n), user, 100.0, rng), T) for n in names for _ in range(10)]
    return np.stack(X).astype(np.float32)


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


def fit_transforms(bundle: Path, X: np.ndarray, y: np.ndarray, source: np.ndarray, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{budget: {loss: accuracy change in pt on the held half}}`` and the held half's untransformed accuracy
    (``source``: the model's training windows, for the masked reconstruction's decoder)."""
    perm = np.random.default_rng(seed).permutation(len(X))
    fit, held = perm[: len(X) // 2], perm[len(X) // 2 :]
    with GestureRuntime(bundle, decision=ANY) as rt:
        W, b = rt.W.astype(np.float64), rt.b.astype(np.float64)
        losses, recon = _losses(rt), reconstruction_loss(rt.embed, source, seed)

        def transformed(theta: np.ndarray, Xb: np.ndarray) -> np.ndarray:
            A, c = np.eye(3) + theta[:9].reshape(3, 3), theta[9:]
            return (np.einsum("ij,njt->nit", A, Xb) + c[None, :, None]).astype(np.float32)

        def logits(theta: np.ndarray, Xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            E = rt.embed(transformed(theta, Xb)).astype(np.float64)
            return E @ W.T + b, E

        def loss(name: str, theta: np.ndarray, rows: np.ndarray) -> float:
            if name == "masked reconstruction":
                return recon(transformed(theta, X[rows]))
            return losses[name](*logits(theta, X[rows]), y[rows])

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
                    es.tell(cand, np.array([loss(name, c, rows) + float((c**2).sum()) for c in cand]))
                out[budget][name] = round((accuracy(es.mean) - base) * 100, 2)
    return out


class ReconstructionTTT(TTT):
    """``ttt`` with the masked reconstruction loss (plus the anchor) in place of FOA's; ``score`` from
    :func:`reconstruction_loss` under the same runtime."""

    def __init__(self, source: np.ndarray, **kw) -> None:
        super().__init__(**kw)
        self.source = source

    def attach(self, ctx) -> None:
        super().attach(ctx)
        self.score = reconstruction_loss(self._untransformed, self.source)

    def _untransformed(self, X: np.ndarray) -> np.ndarray:
        saved, self.active = self.active, False  # the encoder must see the candidates, not the current transform
        try:
            return self.ctx.embed(X)
        finally:
            self.active = saved

    def _losses(self, X: np.ndarray, thetas: np.ndarray, A0: np.ndarray, c0: np.ndarray) -> np.ndarray:
        R, t = self._affine(thetas)
        A, c = R @ A0, R @ c0 + t
        Z = (A[:, None] @ X[None, :, self.acc] + c[:, None, :, None]).astype(np.float32)
        return np.array([self.score(z) for z in Z]) + self.anchor * (thetas**2).sum(-1)

    def _current(self, X: np.ndarray, E: np.ndarray | None) -> float:
        return float(self._losses(X, self.theta[None], self.A0, self.c0)[0])


def live_ttt(bundle: Path, X: np.ndarray, y: np.ndarray, source: np.ndarray) -> dict[str, float]:
    """``ttt`` (shipped defaults; 5 generations per search; that with the reconstruction loss) minus no
    adaptation, accuracy over the whole stream in order, pt."""
    acc = {}
    for name, adapter in (("none", None), ("live_ttt", TTT()), ("live_ttt_5", TTT(generations=5)),
                          ("live_reconstruction_5", ReconstructionTTT(source, generations=5))):  # fmt: skip
        with GestureRuntime(bundle, decision=ANY, adapter=adapter) as rt:
            acc[name] = float((np.array([rt.classify(x).index for x in X]) == y).mean())
    return {k: round((v - acc["none"]) * 100, 2) for k, v in acc.items() if k != "none"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None, help="keep the trained bundles here and reuse those already there")
    ap.add_argument("--demo-bundle", default=None, help="the demo's model (default: trained here, ~1 min)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ttt_ceiling.json"))
    a = ap.parse_args()
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
            streams[f"demo/user_{uid}"] = (demo, *demo_stream(demo, uid), demo_source(demo))
        new, ynew, _ = stretched(raw, (split == 0) & (subj >= 5))
        u14 = stretched(raw, (split == 0) & (subj <= 4))[0]
        for seed in range(a.seeds):
            b = train_bundle(root, "u14", DataConfig(spec=f"npz:{root / 'uwave_u14.npz'}"), seed, 5, 100)
            streams[f"uwave_new_users/seed_{seed}"] = (b, new, ynew, u14)
        for name, (b, X, y, source) in streams.items():
            rows[name] = {**fit_transforms(b, X, y, source), **live_ttt(b, X, y, source)}
            print(name, json.dumps(rows[name]), flush=True)
    summary: dict[str, dict] = {}
    for group in ("demo", "uwave_new_users"):
        rs = [r for k, r in rows.items() if k.startswith(group)]
        summary[group] = {budget: {name: {"mean": round(float(np.mean([r[budget][name] for r in rs])), 2),
                                          "min": round(float(np.min([r[budget][name] for r in rs])), 2)}
                                   for name in LOSSES} for budget in BUDGETS}  # fmt: skip
        for live in ("live_ttt", "live_ttt_5", "live_reconstruction_5"):
            summary[group][live] = {"mean": round(float(np.mean([r[live] for r in rs])), 2),
                                    "min": round(float(np.min([r[live] for r in rs])), 2)}  # fmt: skip
        summary[group]["untransformed_accuracy"] = round(float(np.mean([r["untransformed"]["accuracy"] for r in rs])), 4)
    out = {"protocol": PROTOCOL, "units": "accuracy change on the held half, percentage points", "summary": summary,
           "streams": rows, "seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine()}  # fmt: skip
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
