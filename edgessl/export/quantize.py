"""Static int8 quantization of an ONNX encoder, with an API shaped like onnxruntime's.

``quantize(src, dst, config, calibration)`` runs ``quant_pre_process`` (shape inference and graph
optimisation) then ``quantize_static`` in QDQ format with signed int8 activations and weights (S8S8),
calibrated on an iterator of input windows. Dynamic quantization is deliberately not offered: for the
convolutional encoder it is slower than fp32.
"""

from __future__ import annotations

import dataclasses
import enum
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx


class CalibrationMethod(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize. Defaults: MinMax calibration, per-tensor weights, QDQ S8S8."""

    method: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = False
    percentile: float = 99.999
    max_calibration_windows: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", CalibrationMethod(self.method))
        if not 90 <= self.percentile <= 100:
            raise ValueError(f"percentile must be in [90, 100]; got {self.percentile}")

    def to_dict(self) -> dict:
        return {"format": "QDQ", "activations": "int8", "weights": "int8", "method": self.method.value,
                "per_channel": self.per_channel, "percentile": self.percentile}  # fmt: skip


class _Reader:
    """onnxruntime CalibrationDataReader over an iterator of ``[C, T]`` or ``[N, C, T]`` windows."""

    def __init__(self, input_name: str, windows: Iterable[np.ndarray], limit: int):
        self.name = input_name
        self._it: Iterator[np.ndarray] = iter(windows)
        self.left = limit

    def get_next(self):
        if self.left <= 0:
            return None
        w = next(self._it, None)
        if w is None:
            return None
        w = np.asarray(w, np.float32)
        if w.ndim == 2:
            w = w[None]
        self.left -= len(w)
        return {self.name: w}

    def rewind(self) -> None:  # the Entropy/Percentile calibrators may call it
        pass


def quantize(src: str | Path, dst: str | Path, config: QuantizeConfig, calibration: Iterable[np.ndarray]) -> dict:
    """Quantize ``src`` to ``dst`` (QDQ int8). Returns node-type counts of the result."""
    from onnxruntime.quantization import CalibrationMethod as OrtCal
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    with tempfile.TemporaryDirectory() as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        g = onnx.load(str(pre)).graph
        name = g.input[0].name
        # the in-graph standardisation stays float: quantizing its input would clip raw-unit values to the
        # calibration range (a shifted or louder sensor)
        keep_float = [n.name for n in g.node if n.op_type == "InstanceNormalization"]
        method = {CalibrationMethod.MINMAX: OrtCal.MinMax, CalibrationMethod.ENTROPY: OrtCal.Entropy,
                  CalibrationMethod.PERCENTILE: OrtCal.Percentile}[config.method]  # fmt: skip
        extra = {"CalibPercentile": config.percentile} if config.method == CalibrationMethod.PERCENTILE else {}
        quantize_static(
            str(pre), str(dst), _Reader(name, calibration, config.max_calibration_windows),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=config.per_channel, calibrate_method=method, extra_options=extra, nodes_to_exclude=keep_float,
        )  # fmt: skip
    return quantized_node_report(dst)


def quantized_node_report(model: str | Path | bytes) -> dict:
    """Counts of node types, and which compute nodes (Conv, Gemm, MatMul) have all-quantized inputs."""
    g = (onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))).graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    counts = Counter(n.op_type for n in g.node)
    compute = [n for n in g.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    quantized = 0
    for n in compute:
        data_inputs = [i for i in n.input[:2] if i]
        if all((i in producers and producers[i].op_type == "DequantizeLinear") for i in data_inputs if i not in inits):
            if all(i not in inits for i in data_inputs):  # weights too must come through DequantizeLinear
                quantized += 1
    return {"node_types": dict(counts), "compute_nodes": len(compute), "quantized_compute_nodes": quantized}
