"""Zero-shot recognition of a class held out of training, from its description alone (CLIP-style alignment).

Writes benchmarks/results/zeroshot.json.

Protocol: for each class ``h`` of the data set in turn (leave-one-class-out), the default CNN and the hashed
n-gram text encoder are trained with the CLIP-style loss on the training split minus its 20 % validation
part, with every window of class ``h`` and its description removed; then every *test* window is assigned
the class whose description (all classes, ``h`` included) embeds closest. Reported per held-out class: its
recall (the share of its test windows assigned to it) and the accuracy over all test windows; mean ± std
over seeds; chance is 1 / number of classes. Training: batch 128, max(15 epochs, 400 steps). Descriptions are those of ``edgessl.trainer.text`` (written
once from the class names, not tuned on results). Data: uci_har (all 9 channels, official subject split)
and the synthetic generator's 8 gestures (held-out users as its test split).

    python benchmarks/zeroshot.py [--seeds 2] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgessl.trainer.data import DataConfig, labelled
from edgessl.trainer.encoders import EncoderConfig
from edgessl.trainer.fit import FitConfig
from edgessl.trainer.methods import MethodConfig
from edgessl.trainer.pipeline import PretrainConfig, pretrain
from edgessl.trainer.zeroshot import zero_shot

DATASETS = {"uci_har": "npz:uci_har.npz", "synthetic": "synthetic"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--min-steps", type=int, default=400, help="raise the epochs of small data sets to this many steps")
    ap.add_argument("--datasets", default="synthetic,uci_har")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "zeroshot.json"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    out: dict = {"protocol": __doc__.split("\n\n")[2], "seeds": a.seeds, "datasets": {}}
    with tempfile.TemporaryDirectory() as td:
        for name in a.datasets.split(","):
            data = DataConfig(spec=DATASETS[name])
            ds, X_train, _ = labelled(data)
            steps_per_epoch = max(1, int(0.8 * len(X_train)) // 128)
            epochs = max(a.epochs, -(-a.min_steps // steps_per_epoch))
            rows = []
            for h in ds.class_names:
                recalls, accs = [], []
                for seed in range(a.seeds):
                    cfg = PretrainConfig(data, EncoderConfig(), MethodConfig(name="clip"),
                                         FitConfig(epochs=epochs, batch_size=128, warmup_epochs=2, seed=seed),
                                         exclude_classes=(h,))  # fmt: skip
                    run = Path(td) / f"{name}_{h}_{seed}"
                    pretrain(cfg, run, progress=False)
                    r = zero_shot(run)
                    recalls.append(r["held_out_recall"][h])
                    accs.append(r["accuracy_all_classes"])
                rows.append({"held_out": h, "description": r["descriptions"][h],
                             "recall_mean": float(np.mean(recalls)), "recall_std": float(np.std(recalls)),
                             "accuracy_all_mean": float(np.mean(accs)), "accuracy_all_std": float(np.std(accs)),
                             "recalls": [round(x, 4) for x in recalls]})  # fmt: skip
                print(f"{name:10s} held out {h:20s} recall {rows[-1]['recall_mean']:.3f} ± {rows[-1]['recall_std']:.3f}"
                      f"  all-class acc {rows[-1]['accuracy_all_mean']:.3f}  [{(time.perf_counter() - t0) / 60:.1f} min]",
                      flush=True)  # fmt: skip
            out["datasets"][name] = {"epochs": epochs, "n_classes": ds.n_classes, "chance": 1.0 / ds.n_classes, "rows": rows,
                                     "mean_held_out_recall": float(np.mean([r["recall_mean"] for r in rows]))}  # fmt: skip
            out["minutes"] = round((time.perf_counter() - t0) / 60, 1)
            Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: {"chance": v["chance"], "mean_held_out_recall": v["mean_held_out_recall"]}
                      for k, v in out["datasets"].items()}))  # fmt: skip


if __name__ == "__main__":
    main()
