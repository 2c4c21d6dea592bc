"""Fine-tuning recipes across data sets: is the default recipe better than the baseline on each of them?

Writes benchmarks/results/recipes.json. Each run is ``edgessl finetune --data SPEC --labels-per-class 5
--recipe R --seed S --epochs E`` built by the CLI's own config function (``trainer.cli.finetune_config``),
so data settings, recipe layers and defaults are the CLI's; the ``few-labels, no rotation`` variant adds a
``--config`` file holding ``rotate_degrees = 0``. The pipeline selects the epoch on its validation split
and predicts the test split once. Runs go in seed-major order (every data set and recipe at seed 0, then
seed 1, ...), so a partial file still compares recipes on the same seeds; the file is rewritten atomically
after each run, and runs already in it are skipped.

    python benchmarks/recipes.py [--seeds 3] [--epochs 100] [--data synthetic ...] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgessl.trainer import cli as trainer_cli
from edgessl.trainer.pipeline import finetune

RESULTS = Path(__file__).parent / "results" / "recipes.json"
DATA = {
    "synthetic": "synthetic",
    "uci_har": "npz:uci_har.npz",  # 9 channels; its test split is the other subjects
    "uwave_gesture_uea": "npz:uwave_gesture_uea.npz",
}
# name -> (--recipe, --config file contents or None)
RECIPES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "baseline": ("baseline", None),
    "few-labels": ("few-labels", None),
    "few-labels, no rotation": ("few-labels", {"rotate_degrees": 0.0}),
    # validation within reach of a label budget: val_fraction 0 leaves one labelled window per class for it
    # (the epoch, k and the gates' evidence; the 20 % split holds ~24 per class beyond the 5-per-class budget)
    "few-labels, 1 validation window per class": ("few-labels", {"val_fraction": 0.0}),
}
LABELS_PER_CLASS = 5


def cli_args(spec: str, recipe: str, config: str | None, seed: int, epochs: int, out: str) -> list[str]:
    """The ``edgessl finetune`` command line of one run."""
    argv = ["finetune", "--data", spec, "--labels-per-class", str(LABELS_PER_CLASS), "--recipe", recipe,
            "--seed", str(seed), "--epochs", str(epochs), "--out", out, "--quiet"]  # fmt: skip
    return argv + (["--config", config] if config else [])


def run_one(spec: str, recipe: str, config: dict[str, Any] | None, seed: int, epochs: int) -> dict[str, Any]:
    """One fine-tuning run exactly as the CLI builds it; its test accuracy and wall seconds."""
    parser = argparse.ArgumentParser()
    trainer_cli.register(parser.add_subparsers())
    with tempfile.TemporaryDirectory() as tmp:
        conf_path = None
        if config is not None:
            conf_path = os.path.join(tmp, "recipe.json")
            Path(conf_path).write_text(json.dumps(config))
        argv = cli_args(spec, recipe, conf_path, seed, epochs, os.path.join(tmp, "run"))
        cfg, resolved = trainer_cli.finetune_config(parser.parse_args(argv))
        t0 = time.perf_counter()
        m = finetune(cfg, os.path.join(tmp, "run"), progress=False, plots=False)  # plots change no figure
        seconds = time.perf_counter() - t0
    argv_shown = cli_args(spec, recipe, "FILE" if config else None, seed, epochs, "OUT")
    return {"seed": seed, "test_accuracy": m["test_accuracy"], "val_accuracy": m["val_accuracy"],
            "best_epoch": m["best_epoch"], "n_train_labels": m["n_train_labels"], "n_test": m["n_test"],
            "seconds": round(seconds, 1), "recipe": resolved, "recipe_notes": m.get("recipe_notes", []),
            "command": "edgessl " + " ".join(argv_shown), "config_file": config}  # fmt: skip


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    acc = [r["test_accuracy"] for r in runs]
    return {"seeds": [r["seed"] for r in runs], "test_accuracy": acc, "mean": statistics.fmean(acc),
            "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "seconds": [r["seconds"] for r in runs], "runs": runs}  # fmt: skip


def protocol(epochs: int, seeds: int) -> str:
    return (f"edgessl finetune --data SPEC --labels-per-class {LABELS_PER_CLASS} --recipe R --seed S --epochs "
            f"{epochs}, config built by the CLI (trainer.cli.finetune_config: defaults < recipe < --config file < "
            "flags), the CLI's default data settings (the source's channels, rate and length; windows z-scored "
            f"per channel); model from scratch; seeds 0..{seeds - 1}, each cell lists the seeds it holds (a seed draws the label budget, the 20 % "
            f"stratified validation split, the initialisation and the views); {epochs} epochs for every cell "
            "alike; epoch selected on the validation split, the data set's own test split predicted once "
            "(uci_har: other subjects); 'few-labels, no rotation' = --recipe few-labels plus a --config file "
            "with rotate_degrees = 0; one process, torch.set_num_threads(1), 2-core machine shared with other "
            "jobs (seconds are wall time of finetune())")  # fmt: skip


def load(path: Path, epochs: int) -> dict[str, Any]:
    if not path.exists():
        return {"cells": {}}
    d = json.loads(path.read_text())
    if d.get("epochs") != epochs:
        raise SystemExit(f"{path} holds runs of {d.get('epochs')} epochs; rerun with --epochs {d.get('epochs')} "
                         "or write to another --results file")  # fmt: skip
    return d


def write_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def probe(a: argparse.Namespace) -> None:
    """Runs outside the comparison: what one costs where the comparison could not afford it, or a cheap
    recipe at another epoch count (``--probe-epochs``)."""
    d = json.loads(a.results.read_text()) if a.results.exists() else {"cells": {}}
    probes: dict[str, Any] = d.setdefault("probes", {})
    for seed in range(a.seeds):
        for data in a.data:
            for name in a.recipes:
                key = f"{data} / {name} / {a.probe_epochs} epochs / seed {seed}"
                if key in probes:
                    continue
                recipe, config = RECIPES[name]
                r = run_one(DATA[data], recipe, config, seed, a.probe_epochs)
                probes[key] = {"data": DATA[data], "recipe": name, "epochs": a.probe_epochs, **r}
                write_atomic(a.results, d)
                print(f"probe {key}: {r['seconds']:.0f} s (test {r['test_accuracy']:.4f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per cell (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=100, help="fine-tuning epochs, every cell alike (default: %(default)s)")
    ap.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA), help="data sets (default: all)")
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES),
                    help="recipes (default: all)")  # fmt: skip
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    ap.add_argument("--probe-epochs", type=int, default=None, metavar="N",
                    help="probe only: runs of N epochs per seed, data set and recipe, recorded under 'probes' "
                         "(not in the comparison: its cost, or another epoch count) (default: off)")  # fmt: skip
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.probe_epochs is not None:
        probe(a)
        return
    d = load(a.results, a.epochs)
    d.update(epochs=a.epochs, labels_per_class=LABELS_PER_CLASS, protocol=protocol(a.epochs, a.seeds),
             machine=f"{platform.machine()}, torch {torch.__version__}, 1 thread")  # fmt: skip
    cells: dict[str, Any] = d.setdefault("cells", {})
    for seed in range(a.seeds):  # seed-major: a partial file compares every recipe on the same seeds
        for data in a.data:
            for name in a.recipes:
                key = f"{data} / {name}"
                cell = cells.setdefault(key, {"data": DATA[data], "recipe": name, "runs": []})
                if any(r["seed"] == seed for r in cell["runs"]):
                    continue
                recipe, config = RECIPES[name]
                r = run_one(DATA[data], recipe, config, seed, a.epochs)
                runs = sorted([*cell["runs"], r], key=lambda x: x["seed"])
                cells[key] = {"data": DATA[data], "recipe": name, **summarise(runs)}
                write_atomic(a.results, d)
                print(f"{key} seed {seed}: test {r['test_accuracy']:.4f} ({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
