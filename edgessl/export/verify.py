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


def ood_of(E: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """``1 − max cos(embedding, prototype)`` of embeddings ``E [N, D]``, as the runtime scores them; ``[N]``."""
    En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    P = prototypes / np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
    return np.asarray(1.0 - (En @ P.T).max(1), np.float64)


def decision_scores(int8_encoder: bytes | str, head: bytes | str, prototypes: np.ndarray, X: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """What the runtime's gates look at, for windows ``X [N, C, T]`` under the int8 encoder: the head's
    probabilities ``[N, K]`` and the out-of-distribution scores ``[N]`` (one encoder pass)."""
    E = run_batches(session(int8_encoder), X.astype(np.float32))
    logits = run_batches(session(head), E)
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True), ood_of(E, prototypes)


def gate_report(int8_encoder: bytes | str, head: bytes | str, prototypes: np.ndarray, confidence: float,
                ood_threshold: float | None, X: np.ndarray, y: np.ndarray | None,
                roughness: np.ndarray | None = None, roughness_threshold: float | None = None) -> dict:  # fmt: skip
    """What ``edgessl run``'s default decisions (the bundle's calibrated gates) answer on valid gestures ``X``
    (the encoder's inputs): the share answered ``unknown``, by reason (noise first, then low confidence, as the
    runtime reports it; the noise gate needs the windows' ``roughness`` in source units), and the share right
    (an ``unknown`` answer is never right)."""
    p, ood = decision_scores(int8_encoder, head, prototypes, X)
    rough = (np.asarray(roughness) > roughness_threshold if roughness is not None and roughness_threshold is not None
             else np.zeros(len(X), bool))  # fmt: skip
    low = ~rough & (p.max(1) < confidence)
    far = ~rough & ~low & (ood > ood_threshold if ood_threshold is not None else np.zeros(len(X), bool))
    unknown = rough | low | far
    n = max(len(X), 1)
    right = int(((p.argmax(1) == np.asarray(y)) & ~unknown).sum()) if y is not None else None
    return {"windows": len(X), "rejection_rate": float(unknown.sum() / n), "unknown_noise": int(rough.sum()),
            "unknown_low_confidence": int(low.sum()), "unknown_out_of_distribution": int(far.sum()),
            "accuracy_with_gates": None if right is None else right / n}  # fmt: skip
