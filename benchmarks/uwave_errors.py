"""Which uWave training windows does a 100 % recipe get wrong, and are they wrong in g too? Writes
benchmarks/results/uwave_errors_{ucr,uea}.json.

Protocol: stratified 5-fold cross-validation of the training split (partition seed 0, the folds
``ssl_uwave.py --cv 5`` uses); the test split is never read. Recipes: UCR (896 windows), the 100 % rows'
150k CNN (widths 48-96-128-160), 100 epochs; UEA (120 windows), the default CNN, 300 epochs (the UEA
rows' budget). Batch 64, AdamW 1e-3, fine-tuning views; each fold's model selected on its own fold
(``finetune(test=False)``; the per-fold best epoch makes these error counts slightly optimistic, which is
what a question about *which* windows are hard can afford). Inputs of the same gestures, fold by fold
the same windows:

* ``archive``: the archive's rows (per-axis z-normalised), stretched to 63 samples — the benchmark rows;
* ``g``: the same templates rebuilt from the raw recordings in g (``uwave:uwave_raw.npz?like=...``), 63
  samples, one scale per window (the ``ucrg`` / ``ueag`` rows' preprocessing: the ratio between axes kept);
* ``restored`` (``--add restored``, run later into the same file): the archive's rows with each axis'
  relative scale read back from the sensor's quantisation (``uwave:FILE?quantum=1/26:1/26:1/25``, the
  ``ucrq`` / ``ueaq`` rows), one scale per window — no data beyond the archive file.

Each input is trained with two initialisation seeds (0 and 1; same folds). Reported: errors per run, the
windows both archive models get wrong (the recipe's stable errors), how many of those both g models get
right, and the class pairs of the stable errors. If the archive's stable errors are mostly right in g, the
archive rows' per-axis z-score, not the training recipe, is what caps the archive figure.

    python benchmarks/uwave_errors.py [--dataset ucr|uea] [--folds 5] [--epochs N] [--add restored]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import uwave_archive  # noqa: F401  (registers the uwave: dataset scheme of the inputs below)

from edgessl.trainer import evaluate as ev
from edgessl.trainer.data import DataConfig, label_budget_split, labelled, standardize_spec
from edgessl.trainer.encoders import EncoderConfig, build_encoder
from edgessl.trainer.fit import FitConfig, load_checkpoint
from edgessl.trainer.pipeline import FinetuneConfig, finetune
from edgessl.trainer.supervised import Classifier

DATASETS = {  # file, encoder, epochs
    "ucr": ("uwave_gesture_ucr.npz", EncoderConfig(widths=(48, 96, 128, 160)), 100),
    "uea": ("uwave_gesture_uea.npz", EncoderConfig(), 300),
}


def inputs(file: str) -> dict[str, DataConfig]:
    return {"archive": DataConfig(spec=f"npz:{file}", length=63),
            "g": DataConfig(spec=f"uwave:uwave_raw.npz?like={file},length=315", length=63,
                            preprocess=standardize_spec("window")),
            "restored": DataConfig(spec=f"uwave:{file}?quantum=1/26:1/26:1/25", length=63,
                                   preprocess=standardize_spec("window"))}  # fmt: skip


def fold_predictions(data: DataConfig, encoder: EncoderConfig, seed: int, folds: int, epochs: int, root: Path
                     ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Out-of-fold predictions for every training window (partition seed 0), and the labels."""
    ds, X, _ = labelled(data)
    pred = np.full(len(ds.y_train), -1)
    for i in range(folds):
        # ssl_weight 0.1: the TTT head the stored errors were measured with (the trainer's default then)
        cfg = FinetuneConfig(data=data, encoder=encoder, val_fold=(i, folds), split_seed=0, ssl_weight=0.1,
                             fit=FitConfig(epochs=epochs, batch_size=64, lr=1e-3, warmup_epochs=5, seed=seed,
                                           drop_last=False))  # fmt: skip
        out = root / f"s{seed}_f{i}"
        finetune(cfg, out, progress=False, plots=False, test=False)
        _, va = label_budget_split(ds.y_train, val_fraction=cfg.val_fraction, seed=0, fold=(i, folds))
        model = Classifier(build_encoder(encoder), ds.n_classes, encoder.out_dim)
        best = load_checkpoint(out)["best"]["model"]  # the SupervisedMethod's state: the classifier under model.
        model.load_state_dict({k[len("model."):]: v for k, v in best.items() if k.startswith("model.")})
        pred[va] = ev.predict_logits(model.eval(), X[va]).argmax(1)
    assert (pred >= 0).all()
    return pred, ds.y_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="ucr")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="default: the dataset's (ucr 100, uea 300)")
    ap.add_argument("--out", default=None, help="default: results/uwave_errors_DATASET.json")
    ap.add_argument("--add", choices=("restored",), default=None,
                    help="run only this input and add it to the existing --out file (its archive/g runs kept)")
    a = ap.parse_args()
    file, encoder, epochs = DATASETS[a.dataset]
    epochs = a.epochs or epochs
    out = a.out or str(Path(__file__).parent / "results" / f"uwave_errors_{a.dataset}.json")
    ins = inputs(file)
    if a.add:
        return add_input(a, file, encoder, epochs, ins[a.add], out)
    del ins["restored"]
    t0 = time.perf_counter()
    runs: dict[str, dict[int, np.ndarray]] = {}
    y = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in ins.items():
            for seed in (0, 1):
                p, y_ = fold_predictions(data, encoder, seed, a.folds, epochs, Path(tmp) / f"{name}_{seed}")
                assert y is None or np.array_equal(y, y_), "the two inputs' training rows must be the same windows"
                y = y_
                runs.setdefault(name, {})[seed] = p
                print(f"{name} seed {seed}: {int((p != y).sum())} errors of {len(y)}", flush=True)
    wrong = {n: {s: set(np.flatnonzero(p != y).tolist()) for s, p in r.items()} for n, r in runs.items()}
    stable = sorted(wrong["archive"][0] & wrong["archive"][1])
    right_in_g = [i for i in stable if i not in wrong["g"][0] and i not in wrong["g"][1]]
    g_stable = wrong["g"][0] & wrong["g"][1]
    names = labelled(ins["archive"])[0].class_names
    pairs = Counter(f"{names[y[i]]} -> {names[runs['archive'][0][i]]}" for i in stable)
    result = {
        "dataset": file,
        "encoder_widths": list(encoder.widths),
        "epochs": epochs,
        "protocol": "\n\n".join(__doc__.split("\n\n")[1:4]),
        "windows": len(y),
        "errors": {n: {str(s): len(w) for s, w in r.items()} for n, r in wrong.items()},
        "cv_accuracy": {n: {str(s): round(1 - len(w) / len(y), 4) for s, w in r.items()} for n, r in wrong.items()},
        "archive_errors_in_both_seeds": len(stable),
        "archive_errors_in_one_seed_only": len(wrong["archive"][0] ^ wrong["archive"][1]),
        "of_those_right_in_g_both_seeds": len(right_in_g),
        "g_errors_in_both_seeds": len(g_stable),
        "g_stable_errors_also_archive_stable": len(g_stable & set(stable)),
        "archive_stable_error_pairs (true -> predicted, seed 0)": dict(pairs.most_common()),
        "archive_stable_error_rows": stable,
        "minutes": round((time.perf_counter() - t0) / 60, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("protocol", "archive_stable_error_rows")}, indent=2))


def add_input(a: argparse.Namespace, file: str, encoder: EncoderConfig, epochs: int, data: DataConfig,
              out: str) -> None:  # fmt: skip
    """Run one more input with the same folds and seeds, and compare it with the stored archive errors."""
    result = json.loads(Path(out).read_text())
    if (result["epochs"], result["encoder_widths"]) != (epochs, list(encoder.widths)):
        raise SystemExit(f"{out} was made with {result['epochs']} epochs and widths {result['encoder_widths']}; "
                         "run the same recipe")  # fmt: skip
    t0 = time.perf_counter()
    wrong, y = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (0, 1):
            p, y = fold_predictions(data, encoder, seed, a.folds, epochs, Path(tmp) / f"{a.add}_{seed}")
            wrong[seed] = set(np.flatnonzero(p != y).tolist())
            print(f"{a.add} seed {seed}: {len(wrong[seed])} errors of {len(y)}", flush=True)
    stable = result["archive_stable_error_rows"]
    result["errors"][a.add] = {str(s): len(w) for s, w in wrong.items()}
    result["cv_accuracy"][a.add] = {str(s): round(1 - len(w) / len(y), 4) for s, w in wrong.items()}
    result[f"of_those_right_{a.add}_both_seeds"] = len([i for i in stable if i not in wrong[0] | wrong[1]])
    result[f"{a.add}_errors_in_both_seeds"] = len(wrong[0] & wrong[1])
    result[f"minutes_{a.add}"] = round((time.perf_counter() - t0) / 60, 1)
    result["protocol"] = "\n\n".join(__doc__.split("\n\n")[1:4])
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("errors", "archive_errors_in_both_seeds", f"of_those_right_{a.add}_both_seeds",
                                           f"{a.add}_errors_in_both_seeds")}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
