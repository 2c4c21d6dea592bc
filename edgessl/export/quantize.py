"""Static int8 quantization of an ONNX encoder, with an API shaped like onnxruntime's.

``quantize(src, dst, config, calibration)`` runs ``quant_pre_process`` (shape inference and graph
optimisation) then ``quantize_static`` in QDQ format with signed int8 activations and weights (S8S8),
calibrated on an iterator of input windows. Dynamic quantization is deliberately not offered: for the
convolutional encoder it is slower than fp32.

:data:`AUTO_CANDIDATES` is the short list ``edgessl export`` tries when no configuration is given; the
export keeps the one that agrees best with fp32 on the model's validation windows (see
:func:`edgessl.export.pipeline.export_bundle`).
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

COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


class CalibrationMethod(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize. Defaults: MinMax calibration, per-tensor weights, QDQ S8S8, every Conv/Gemm int8.

    ``reduce_range`` quantizes weights to 7 bits. On x86 CPUs without VNNI (AVX2 only) onnxruntime's int8
    kernels add pairs of 8-bit products into 16 bits, which saturates for weights using the full int8 range,
    as per-channel scales make them do: measured there, per-channel alone agreed worse with fp32 than
    per-tensor (mean |logit difference| 0.17 against 0.02), per-channel with 7-bit weights as well.
    ``float_layers`` keeps the first so many Conv/Gemm/MatMul nodes in float (the first one is a few per cent
    of the encoder's multiply-adds, fed by the z-scored raw window); every later one stays int8.
    """

    method: CalibrationMethod = CalibrationMethod.MINMAX
    per_channel: bool = False
    percentile: float = 99.999
    max_calibration_windows: int = 512
    reduce_range: bool = False
    float_layers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", CalibrationMethod(self.method))
        if self.float_layers < 0:
            raise ValueError(f"float_layers must be >= 0; got {self.float_layers}")
        if not 90 <= self.percentile <= 100:
            raise ValueError(f"percentile must be in [90, 100]; got {self.percentile}")

    def to_dict(self) -> dict:
        return {"format": "QDQ", "activations": "int8", "weights": "int8", "method": self.method.value,
                "per_channel": self.per_channel, "percentile": self.percentile, "reduce_range": self.reduce_range,
                "float_layers": self.float_layers}  # fmt: skip

    def describe(self) -> str:
        """A short name for progress lines and the manifest, e.g. ``minmax, per-channel, 7-bit weights``."""
        parts = [self.method.value, "per-channel" if self.per_channel else "per-tensor"]
        if self.reduce_range:
            parts.append("7-bit weights")
        if self.float_layers:
            parts.append(f"first {self.float_layers} layer{'s' if self.float_layers > 1 else ''} float")
        return ", ".join(parts)


# What the automatic export tries, from all-int8 to more float; the export keeps the one closest to fp32 on
# the validation windows (each costs about a second). Measured on `edgessl finetune` models (synthetic,
# 15/30/100 epochs; UEA uWave; the demo's): per-tensor MinMax, the previous default, agreed with fp32 on
# 98.1-99.4 % of the test windows, below the 0.99 gate on several; Entropy or Percentile calibration and
# symmetric activations changed nothing or made it worse; per-channel weights need 7-bit weights on AVX2
# machines (see QuantizeConfig) and then did not beat per-tensor. Float first layers cut the mean logit
# error 2-5x (two layers: 0.037 -> 0.007 on UEA, at +40 % int8 latency, still 0.58x fp32); the test windows
# that still flip are near-ties of the fp32 model itself (fp32 margins < 0.01).
AUTO_CANDIDATES: tuple[QuantizeConfig, ...] = (
    QuantizeConfig(),
    QuantizeConfig(per_channel=True, reduce_range=True),
    QuantizeConfig(float_layers=1),
    QuantizeConfig(per_channel=True, float_layers=1),
    QuantizeConfig(per_channel=True, float_layers=2),
)


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
    """Quantize ``src`` to ``dst`` (QDQ int8). Returns node-type counts of the result (see
    :func:`quantized_node_report`) and ``"kept_float"``, the compute nodes the config keeps in float."""
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
        compute = [n.name for n in g.node if n.op_type in COMPUTE_OPS]
        float_compute = compute[: config.float_layers]
        method = {CalibrationMethod.MINMAX: OrtCal.MinMax, CalibrationMethod.ENTROPY: OrtCal.Entropy,
                  CalibrationMethod.PERCENTILE: OrtCal.Percentile}[config.method]  # fmt: skip
        extra = {"CalibPercentile": config.percentile} if config.method == CalibrationMethod.PERCENTILE else {}
        quantize_static(
            str(pre), str(dst), _Reader(name, calibration, config.max_calibration_windows),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=config.per_channel, reduce_range=config.reduce_range, calibrate_method=method,
            extra_options=extra, nodes_to_exclude=keep_float + float_compute,
        )  # fmt: skip
    return {**quantized_node_report(dst), "kept_float": float_compute}


def quantized_node_report(model: str | Path | bytes) -> dict:
    """Counts of node types, and which compute nodes (Conv, Gemm, MatMul) have all-quantized inputs
    (``"quantized_compute_nodes"``; the names of the others in ``"float_compute_nodes"``)."""
    g = (onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))).graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    counts = Counter(n.op_type for n in g.node)
    compute = [n for n in g.node if n.op_type in COMPUTE_OPS]
    quantized, left_float = 0, []
    for n in compute:
        data_inputs = [i for i in n.input[:2] if i]
        if all((i in producers and producers[i].op_type == "DequantizeLinear") for i in data_inputs if i not in inits) \
                and all(i not in inits for i in data_inputs):  # weights too must come through DequantizeLinear
            quantized += 1
        else:
            left_float.append(n.name)
    return {"node_types": dict(counts), "compute_nodes": len(compute), "quantized_compute_nodes": quantized,
            "float_compute_nodes": left_float}  # fmt: skip
