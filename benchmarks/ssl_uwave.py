"""Few-label benchmark: self-supervised pretraining vs supervised from scratch.

Writes benchmarks/results/ssl_uwave.json ({"rows": [...]}) and ssl_uwave.md.

Protocol (every row):
* official train/test splits: uwave_gesture_ucr (896/3582), uwave_gesture_uea (120/320), uci_har (subjects);
* a stratified validation split (20 %) is carved from the training split; the label budget (k per class,
  or a fraction) is drawn from the rest; the test split is used once per run, at the end;
* pretraining never sees a test split: (a) the target's own training windows without labels; (b) HAPT
  raw streams of the UCI HAR *training* subjects only (acc x/y/z, 1.28 s windows stretched to the target
  length) — "HAR+HAPT train subjects";
* an SSL-initialised run fine-tunes the whole network and also fits a linear probe on the frozen encoder;
  the one with the higher validation accuracy is reported (the choice is recorded);
* mean ± std over seeds (fine-tuning seeds; pretraining uses seed 0 once per method and source);
* uci_har: SimCLR and VICReg only, 8 fine-tuning epochs for 10 % / 100 % labels (its 5.9k training windows
  would not fit the hour otherwise); the budget actually run is recorded in the JSON.

    python benchmarks/ssl_uwave.py [--budget full|quick] [--datasets ucr,uea,har]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgessl.trainer import evaluate as ev
from edgessl.trainer.data import DataConfig, label_budget_split, labelled
from edgessl.trainer.encoders import EncoderConfig
from edgessl.trainer.fit import FitConfig
from edgessl.trainer.methods import MethodConfig
from edgessl.trainer.pipeline import FinetuneConfig, PretrainConfig, finetune, load_pretrained_encoder, pretrain

DATASETS = {
    "ucr": ("uwave_gesture_ucr", "npz:uwave_gesture_ucr.npz", None),
    "uea": ("uwave_gesture_uea", "npz:uwave_gesture_uea.npz", None),
    "har": ("uci_har", "npz:uci_har.npz", None),
}
BUDGETS = {
    # name: (seeds, pretrain epochs own, pretrain epochs hapt, hapt windows, ft epochs few, ft epochs full, methods)
    # sized to run in about an hour on 2 cores; uci_har (5.9k training windows) gets its own smaller budget below
    "full": (3, 60, 20, 6000, 100, 30, ("simclr", "vicreg", "barlow", "masked")),
    "quick": (1, 5, 3, 1000, 10, 5, ("simclr", "vicreg")),
}


def label_regimes(dataset: str) -> list[tuple[str, dict]]:
    if dataset == "uea":
        return [("1/class", {"labels_per_class": 1}), ("5/class", {"labels_per_class": 5}), ("100%", {})]
    return [("1/class", {"labels_per_class": 1}), ("5/class", {"labels_per_class": 5}),
            ("10%", {"label_fraction": 0.1}), ("100%", {})]  # fmt: skip


def pretrain_once(cache: dict, key, cfg: PretrainConfig, root: Path) -> str:
    if key not in cache:
        out = root / "_".join(map(str, key))
        t0 = time.perf_counter()
        pretrain(cfg, out, progress=False)
        cache[key] = (str(out), time.perf_counter() - t0)
        print(f"  pretrained {key} in {cache[key][1]:.0f} s", flush=True)
    return cache[key][0]


def probe(init: str, data: DataConfig, budget: dict, seed: int) -> tuple[float, float]:
    """Linear probe on the frozen encoder with the same split as fine-tuning: (val, test) accuracy."""
    encoder, _ = load_pretrained_encoder(init)
    ds, Xtr_all, Xte = labelled(data)
    tr, va = label_budget_split(ds.y_train, per_class=budget.get("labels_per_class"),
                                fraction=budget.get("label_fraction"), seed=seed)  # fmt: skip
    E_tr, E_va, E_te = ev.embed(encoder, Xtr_all[tr]), ev.embed(encoder, Xtr_all[va]), ev.embed(encoder, Xte)
    predict, info = ev.linear_probe(E_tr, ds.y_train[tr], E_va, ds.y_train[va], ds.n_classes, seed=seed)
    return info["val_accuracy"], ev.accuracy(predict(E_te), ds.y_test)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", choices=list(BUDGETS), default="full")
    ap.add_argument("--datasets", default="ucr,uea,har")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ssl_uwave.json"))
    a = ap.parse_args()
    seeds, ep_own, ep_hapt, hapt_n, ep_few, ep_full, methods = BUDGETS[a.budget]
    torch.set_num_threads(2)
    rows, cache = [], {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        for dkey in a.datasets.split(","):
            dname, spec, _ = DATASETS[dkey]
            channels = ("total_acc_x", "total_acc_y", "total_acc_z") if dkey == "har" else None
            data = DataConfig(spec=spec, channels=channels)
            ds, X_train, _ = labelled(data)
            length = X_train.shape[-1]
            print(f"{dname}: {len(X_train)} train windows of {X_train.shape[1:]}", flush=True)
            inits: list[tuple[str, str, str | None]] = [("none", "supervised", None)]
            for m in methods if dkey != "har" else methods[:2]:
                pcfg = PretrainConfig(data, EncoderConfig(in_channels=X_train.shape[1]), MethodConfig(name=m),
                                      FitConfig(epochs=ep_own, batch_size=128, warmup_epochs=max(1, ep_own // 10)))  # fmt: skip
                inits.append(("own train split", m, pretrain_once(cache, (dkey, m, "own"), pcfg, root)))
            if dkey in ("ucr", "uea"):
                hapt = DataConfig(spec="npz:hapt_raw_streams.npz", channels=("acc_x", "acc_y", "acc_z"), length=length,
                                  stream_window=(64, 32), max_windows=hapt_n)  # fmt: skip
                for m in methods[:2]:
                    pcfg = PretrainConfig(hapt, EncoderConfig(in_channels=3), MethodConfig(name=m),
                                          FitConfig(epochs=ep_hapt, batch_size=256, warmup_epochs=1))  # fmt: skip
                    key = ("hapt", m, length)
                    pretrain_once(cache, key, pcfg, root)
                    inits.append(("HAR+HAPT train subjects", m, cache[key][0]))
            for source, method, init in inits:
                for regime, budget in label_regimes(dkey):
                    accs, chosen = [], []
                    few = regime != "100%"
                    for seed in range(seeds):
                        epochs = ep_few if few else ep_full
                        if dkey == "har":
                            epochs = 8 if regime in ("100%", "10%") else epochs // 2
                        fit = FitConfig(epochs=epochs, batch_size=64, lr=1e-3, warmup_epochs=min(5, epochs // 3),
                                        seed=seed, drop_last=False)  # fmt: skip
                        cfg = FinetuneConfig(data=data, init=init, fit=fit, **budget)
                        m = finetune(cfg, root / "ft", progress=False, plots=False)
                        acc, pick = m["test_accuracy"], "finetune"
                        if init is not None:
                            pv, pt = probe(init, data, budget, seed)
                            if pv > m["val_accuracy"]:
                                acc, pick = pt, "linear_probe"
                        accs.append(acc)
                        chosen.append(pick)
                    row = {"dataset": dname, "pretrain_source": source if init else "none", "method": method,
                           "labels": regime, "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
                           "seeds": seeds, "accs": [round(x, 4) for x in accs], "selected_head": chosen}  # fmt: skip
                    rows.append(row)
                    print(f"  {dname:18s} {row['pretrain_source']:24s} {method:10s} {regime:8s} "
                          f"{row['acc_mean']:.4f} ± {row['acc_std']:.4f}  {chosen}  "
                          f"[{(time.perf_counter() - t_start) / 60:.1f} min]", flush=True)  # fmt: skip
                    Path(a.out).write_text(json.dumps(_result(rows, a, t_start), indent=2) + "\n")
    result = _result(rows, a, t_start)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    _markdown(result, Path(a.out).with_suffix(".md"))
    print(f"wrote {a.out}")


def _result(rows, a, t_start) -> dict:
    seeds, ep_own, ep_hapt, hapt_n, ep_few, ep_full, methods = BUDGETS[a.budget]
    return {
        "protocol": __doc__.split("\n\n")[1],
        "budget": {"name": a.budget, "seeds": seeds, "pretrain_epochs_own": ep_own, "pretrain_epochs_hapt": ep_hapt,
                   "hapt_windows": hapt_n, "finetune_epochs_few_labels": ep_few, "finetune_epochs_100pct": ep_full,
                   "methods": list(methods), "encoder": dataclasses.asdict(EncoderConfig())},  # fmt: skip
        "minutes": round((time.perf_counter() - t_start) / 60, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 2},
        "rows": rows,
    }


def _markdown(result: dict, path: Path) -> None:
    lines = [f"# SSL few-label benchmark ({result['budget']['name']} budget, {result['minutes']} min)", "",
             result["protocol"], "", "| dataset | pretrain source | method | labels | accuracy (mean ± std) | seeds |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"| {r['dataset']} | {r['pretrain_source']} | {r['method']} | {r['labels']} | "
                     f"{r['acc_mean']:.4f} ± {r['acc_std']:.4f} | {r['seeds']} |")  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
