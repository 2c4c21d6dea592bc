"""Zero-shot recognition with a CLIP-style checkpoint: each test window gets the class whose description
embeds closest to it. With classes held out of training (``exclude_classes``), their recall measures
recognition from a description alone; chance is one over the number of classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgessl.trainer.data import DataConfig, labelled
from edgessl.trainer.fit import load_checkpoint
from edgessl.trainer.methods import CLIPMethod, build_method
from edgessl.trainer.text import describe


def load_method(path: str | Path) -> tuple[torch.nn.Module, Any]:
    """Rebuild a whole pretraining method (encoder and heads) from its checkpoint alone."""
    from edgessl.trainer.pipeline import PretrainConfig

    ck = load_checkpoint(path)
    if ck["config"].get("kind") != "pretrain":
        raise ValueError(f"{path}: not a pretraining checkpoint (kind {ck['config'].get('kind')!r})")
    cfg = PretrainConfig.from_dict(ck["config"])
    method = build_method(cfg.encoder, cfg.method)
    method.load_state_dict(ck["model"])
    return method.eval(), cfg


@torch.no_grad()
def zero_shot(checkpoint: str | Path, data: DataConfig | None = None, descriptions: str | None = None,
              batch: int = 512) -> dict[str, Any]:  # fmt: skip
    """Accuracy over all classes' descriptions on the test split, and the recall of each held-out class."""
    method, cfg = load_method(checkpoint)
    if not isinstance(method, CLIPMethod):
        raise ValueError(f"{checkpoint}: zero-shot needs a clip checkpoint; this is {cfg.method.name!r}")
    ds, _, X_test = labelled(data or cfg.data)
    texts = describe(ds.class_names, descriptions or cfg.descriptions)
    T = method.embed_texts(texts)
    U = torch.cat([method.embed_windows(torch.from_numpy(X_test[i : i + batch])) for i in range(0, len(X_test), batch)])
    pred = (U @ T.T).argmax(1).numpy()
    y = ds.y_test
    seen = [i for i, c in enumerate(ds.class_names) if c not in cfg.exclude_classes]
    in_seen = np.isin(y, seen)
    return {
        "held_out": list(cfg.exclude_classes),
        "held_out_recall": {c: float((pred[y == i] == i).mean()) for i, c in enumerate(ds.class_names)
                            if c in cfg.exclude_classes and np.any(y == i)},  # fmt: skip
        "accuracy_all_classes": float((pred == y).mean()),
        "accuracy_seen_classes": float((pred[in_seen] == y[in_seen]).mean()) if in_seen.any() else float("nan"),
        "chance": 1.0 / ds.n_classes,
        "n_classes": ds.n_classes,
        "descriptions": dict(zip(ds.class_names, texts, strict=True)),
        "split": "test",
    }
