"""int8 vs fp32 on the same windows (like onnxruntime's check_model_correctness), numpy + onnxruntime only."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from edgessl.export.quantize import quantized_node_report


def session(model: bytes | str, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def run_batches(sess: ort.InferenceSession, X: np.ndarray, batch: int = 256) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: X[i : i + batch]})[0] for i in range(0, len(X), batch)])


def compare(fp32_encoder: bytes | str, int8_encoder: bytes | str, head: bytes | str, X: np.ndarray,
            y: np.ndarray | None = None) -> dict:  # fmt: skip
    """Top-1 agreement, accuracy of each (when labels are given), max |logit difference|, node report."""
    h = session(head)
    lf = run_batches(h, run_batches(session(fp32_encoder), X))
    lq = run_batches(h, run_batches(session(int8_encoder), X))
    pf, pq = lf.argmax(1), lq.argmax(1)
    out: dict[str, Any] = {
        "windows": int(len(X)),
        "top1_agreement": float((pf == pq).mean()),
        "max_logit_difference": float(np.abs(lf - lq).max()),
        "mean_logit_difference": float(np.abs(lf - lq).mean()),
    }
    if y is not None:
        out["accuracy_fp32"] = float((pf == y).mean())
        out["accuracy_int8"] = float((pq == y).mean())
    out["int8_nodes"] = quantized_node_report(int8_encoder)
    return out
