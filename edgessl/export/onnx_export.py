"""torch -> ONNX for the encoder and the classifier head of a fine-tuned model (``model.pt``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from edgessl.trainer.encoders import EncoderConfig, build_encoder
from edgessl.trainer.evaluate import Classifier
from edgessl.trainer.pipeline import MODEL_FILE

OPSET = 17


def load_model(folder_or_file: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the fine-tuned classifier from ``model.pt`` alone (``weights_only=True``)."""
    p = Path(folder_or_file)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.exists():
        raise FileNotFoundError(f"{p}: no {MODEL_FILE}; export takes the folder written by `edgessl finetune`")
    info = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(info, dict) or info.get("format") != "edgessl-model/1":
        raise ValueError(f"{p}: not an edgessl fine-tuned model")
    enc_cfg = EncoderConfig.from_dict(info["config"]["encoder"])
    model = Classifier(build_encoder(enc_cfg), len(info["class_names"]), enc_cfg.out_dim)
    model.load_state_dict(info["model"])
    return model.eval(), info


def export_onnx(model: Classifier, n_channels: int, window: int, encoder_path: Path, head_path: Path,
                metadata: dict[str, str]) -> None:  # fmt: skip
    """Write ``encoder`` (window -> embedding, BatchNorm folded) and ``head`` (embedding -> logits)."""
    import onnx

    model.eval()
    x = torch.zeros(1, n_channels, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.encoder, x, str(encoder_path), dynamo=False, opset_version=OPSET,
                          input_names=["window"], output_names=["embedding"],
                          dynamic_axes={"window": {0: "batch"}, "embedding": {0: "batch"}})  # fmt: skip
        e = model.encoder(x)
        torch.onnx.export(model.head, e, str(head_path), dynamo=False, opset_version=OPSET,
                          input_names=["embedding"], output_names=["logits"],
                          dynamic_axes={"embedding": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    for path in (encoder_path, head_path):
        m = onnx.load(str(path))
        for k, v in metadata.items():
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(m, str(path))
