"""torch -> ONNX for the encoder and the classifier head of a fine-tuned model (``model.pt``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from edgessl.trainer.pipeline import load_classifier
from edgessl.trainer.supervised import Classifier

OPSET = 17


def load_model(folder_or_file: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the fine-tuned classifier from ``model.pt`` alone (``weights_only=True``)."""
    return load_classifier(folder_or_file)


class Standardize(torch.nn.Module):
    """Per-window, per-channel z-score as graph ops (InstanceNormalization; with ddof > 0 or one scale per
    window, ``per_channel=False``: ReduceMean, Sub, Pow, ReduceSum, Div, Sqrt, Max, Div), identical to
    :func:`edgessl.preprocess.standardize`. In the encoder graph these stay float (the quantizer only
    quantizes Conv/Gemm/MatMul-class ops) and spare the device a round of numpy calls per window. The
    z-score is idempotent, so already standardized inputs (calibration, verification) pass unchanged."""

    def __init__(self, window: int, eps: float = 1e-8, ddof: int = 0, per_channel: bool = True):
        super().__init__()
        if window - ddof < 1:
            raise ValueError(f"standardize needs more than ddof={ddof} samples; the window has {window}")
        self.eps, self.dof, self.per_channel = float(eps), float(window - ddof), bool(per_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.per_channel:
            # one scale per window: the root mean square of the channels' stds (same op family as below)
            d = x - x.mean(-1, keepdim=True)
            std = (d.pow(2).sum(-1, keepdim=True).mean(-2, keepdim=True) / self.dof).sqrt()
            return d / torch.maximum(std, torch.tensor(self.eps, dtype=x.dtype))
        if self.dof == x.shape[-1]:
            # ddof = 0: one InstanceNormalization node (kept float by the quantizer, see quantize.py) instead
            # of eight small ops; sqrt(var + eps²) equals max(std, eps) wherever it matters (std ≫ eps) and
            # both give 0 for a constant window
            return torch.nn.functional.instance_norm(x, eps=self.eps**2)
        # only ops the quantizer leaves alone (Pow/ReduceSum/Div/Max, not Mul or Clip): otherwise it would
        # quantize raw-unit values, and calibrate tensors of (near) zero range such as the std of z-scored data
        d = x - x.mean(-1, keepdim=True)
        std = (d.pow(2).sum(-1, keepdim=True) / self.dof).sqrt()
        return d / torch.maximum(std, torch.tensor(self.eps, dtype=x.dtype))


def graph_preprocessing(spec: dict[str, Any], window: int) -> Standardize | None:
    """The graph form of a preprocessing spec when it has one (a single ``standardize`` step), else None."""
    steps = spec.get("steps", [])
    if len(steps) == 1 and steps[0]["op"] == "standardize":
        return Standardize(window, **steps[0].get("params", {}))
    return None


def export_onnx(model: Classifier, n_channels: int, window: int, encoder_path: Path, head_path: Path,
                metadata: dict[str, str], pre: torch.nn.Module | None = None) -> None:  # fmt: skip
    """Write ``encoder`` (window -> embedding, BatchNorm folded; ``pre`` first if given) and ``head``."""
    import onnx

    model.eval()
    x = torch.zeros(1, n_channels, window)
    encoder = torch.nn.Sequential(pre, model.encoder) if pre is not None else model.encoder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (x,), str(encoder_path), dynamo=False, opset_version=OPSET,
                          input_names=["window"], output_names=["embedding"],
                          dynamic_axes={"window": {0: "batch"}, "embedding": {0: "batch"}})  # fmt: skip
        e = model.encoder(x)
        torch.onnx.export(model.head, (e,), str(head_path), dynamo=False, opset_version=OPSET,
                          input_names=["embedding"], output_names=["logits"],
                          dynamic_axes={"embedding": {0: "batch"}, "logits": {0: "batch"}})  # fmt: skip
    for path in (encoder_path, head_path):
        m = onnx.load(str(path))
        for k, v in metadata.items():
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(m, str(path))
