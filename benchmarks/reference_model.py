"""The reference UCR model the export and runtime benchmarks measure: the default CNN fine-tuned on the
uwave_gesture_ucr train split (100 % labels minus the 20 % validation split, validation-selected), windows
stretched to 63 samples (the length ssl_uwave.py selected on validation), 60 epochs, seed 0, with the TTT
head of weight 0.1 that the stored figures were measured with (the trainer's default then; the runtime's
``ttt`` adapter needs it)."""

from __future__ import annotations

from pathlib import Path

REFERENCE = {"spec": "npz:uwave_gesture_ucr.npz", "length": 63, "epochs": 60, "batch_size": 64, "seed": 0,
             "ssl_weight": 0.1}


def train_reference(out: Path) -> Path:
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, finetune

    r = REFERENCE
    finetune(FinetuneConfig(data=DataConfig(spec=r["spec"], length=r["length"]), ssl_weight=r["ssl_weight"],
                            fit=FitConfig(epochs=r["epochs"], batch_size=r["batch_size"], warmup_epochs=3,
                                          seed=r["seed"], drop_last=False)),
             out, progress=False, plots=False)  # fmt: skip
    return out
