"""The int8 encoder and the head of a bundle as a dependency-free C99 library (``edgessl export-c``).

The quantized ONNX graph is lowered to a short list of kernels and written out as ``essl_model.c/.h``:
weights as ``const`` arrays (flash), one static arena whose buffers are placed by their lifetimes (a
buffer is reused once the tensor in it is dead), no malloc, no stdio. The arithmetic follows onnxruntime
as it executes the QDQ graph (it fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv):

* int8 Conv/Gemm: int32 accumulation of ``w * (x - x_zero_point)`` from the int32 bias, then
  ``y = saturate(round_half_even(acc * m) + y_zero_point)`` with the float32 multiplier
  ``m = s_x * s_w[c] / s_y`` (MLAS's ``MlasRequantizeOutput``). A Relu between the Conv and its
  QuantizeLinear is a clamp at the zero point, which is exact.
* QuantizeLinear: ``saturate(round_half_even(x / s) + zero_point)``; DequantizeLinear ``(q - zp) * s``.
* Float Conv (the layers the export kept float), InstanceNormalization (the in-graph standardisation) and
  the head's Gemm run in float32, so they agree with onnxruntime up to the order of additions.

A graph with any other op (or an op used in a way the kernels do not cover) is refused with the op and
node named; nothing is ever emitted that would compute something else. The live-stream part
(``essl_stream.c/.h``) is written by :mod:`edgessl.export.c_stream`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgessl.edge_runtime.bundle import ENCODER_INT8, Bundle, open_bundle
from edgessl.errors import UsageError
from edgessl.export.c_text import CExportError, c_array, c_float, c_string

# the ONNX ops the generator can express (docs/mcu.md lists how each is computed)
SUPPORTED_OPS = ("InstanceNormalization", "Conv", "Relu", "QuantizeLinear", "DequantizeLinear", "ReduceMean", "Gemm")
MODEL_FILES = ("essl_model.h", "essl_model.c")
STREAM_FILES = ("essl_stream.h", "essl_stream.c")
INFO_FILE = "essl_model_info.json"
OUTPUT_FILES = (*MODEL_FILES, *STREAM_FILES, INFO_FILE)
# export-c --state: the state reduced to what the C library holds (its mounting and cut, no takes), for
# `edgessl run --state` to decide exactly as the board does
STATE_FILE = "essl_user_state.npz"
ALIGN = 4


# -- the lowered graph -------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Tensor:
    """An activation of one window: ``channels x length`` values, float32 or int8 (with scale, zero point)."""

    name: str
    channels: int
    length: int
    dtype: str = "f32"  # or "s8"
    scale: float = 1.0
    zero_point: int = 0
    offset: int = -1  # byte offset in the arena (-1: the caller's input)

    @property
    def nbytes(self) -> int:
        return self.channels * self.length * (4 if self.dtype == "f32" else 1)


@dataclasses.dataclass(eq=False)
class Op:
    kind: str  # instnorm | conv_f32 | conv_s8 | quantize | dequantize | relu | mean
    src: Tensor
    dst: Tensor
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    node: str = ""

    @property
    def macs(self) -> int:
        if self.kind in ("conv_f32", "conv_s8"):
            w = self.params["weight"]
            return int(w.shape[0] * w.shape[1] * w.shape[2] * self.dst.length)
        return 0


@dataclasses.dataclass(frozen=True)
class _DQView:
    """The float view DequantizeLinear gives of an int8 activation (not materialised unless needed)."""

    tensor: Tensor
    scale: float
    zero_point: int


@dataclasses.dataclass(frozen=True)
class _QConst:
    """A constant through DequantizeLinear: integer values, per-tensor or per-axis-0 scales and zero points."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray

    def dequantized(self) -> np.ndarray:
        s, z = self.scale.astype(np.float32), self.zero_point.astype(np.int64)
        if s.size > 1:
            shape = (-1,) + (1,) * (self.q.ndim - 1)
            s, z = s.reshape(shape), z.reshape(shape)
        return ((self.q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


@dataclasses.dataclass
class Lowered:
    """The encoder as kernels: ``ops`` from ``input`` to ``output`` (the embedding), arena placed."""

    input: Tensor
    output: Tensor
    ops: list[Op]
    arena_bytes: int = 0

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _refuse(node: onnx.NodeProto, why: str) -> CExportError:
    return CExportError(f"encoder node {node.name or node.output[0]!r} ({node.op_type}): {why}; "
                        "the C generator cannot express this model")  # fmt: skip


def lower(model: bytes | onnx.ModelProto, channels: int, length: int) -> Lowered:
    """Lower an encoder graph (``window [N, C, T]`` -> ``embedding [N, D]``) to C kernels.

    Raises:
        CExportError: an op outside :data:`SUPPORTED_OPS` (named), or a supported op in a form the kernels
            do not cover (named with the reason).
    """
    m = onnx.load_from_string(model) if isinstance(model, bytes) else model
    g = m.graph
    unsupported = [n for n in g.node if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx")]
    if unsupported:
        n = unsupported[0]
        raise CExportError(f"encoder op {n.op_type} (node {n.name or n.output[0]!r}) is not supported by the C "
                           f"generator (it supports {', '.join(SUPPORTED_OPS)}); refusing to emit C")  # fmt: skip
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise CExportError(f"the encoder has {len(inputs)} inputs and {len(g.output)} outputs; expected one of each")
    vals: dict[str, Any] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    x_in = Tensor(inputs[0].name, channels, length)
    vals[x_in.name] = x_in
    ops: list[Op] = []
    producer: dict[int, Op] = {}  # id(tensor) -> op that writes it
    fused: set[str] = set()  # (first outputs of) nodes folded into an earlier kernel
    counter = iter(range(1_000_000))

    def new(like: Tensor, channels: int, length: int, dtype: str = "f32", scale: float = 1.0, zp: int = 0) -> Tensor:
        return Tensor(f"t{next(counter)}", channels, length, dtype, scale, zp)

    def emit(op: Op) -> Op:
        ops.append(op)
        producer[id(op.dst)] = op
        return op

    def only_consumer(name: str) -> onnx.NodeProto | None:
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in graph_outputs else None

    def const(node: onnx.NodeProto, name: str) -> np.ndarray:
        v = vals.get(name)
        if not isinstance(v, np.ndarray):
            raise _refuse(node, f"input {name!r} must be a constant")
        return v

    def as_float(node: onnx.NodeProto, v: Any) -> Tensor:
        """A float activation for a float kernel (an int8 one through DequantizeLinear is materialised)."""
        if isinstance(v, _DQView):
            t = v.tensor
            return emit(Op("dequantize", t, new(t, t.channels, t.length),
                           {"scale": v.scale, "zero_point": v.zero_point}, node.name)).dst  # fmt: skip
        if isinstance(v, Tensor) and v.dtype == "f32":
            return v
        raise _refuse(node, "expected a float activation as its data input")

    def float_const(node: onnx.NodeProto, name: str) -> np.ndarray:
        v = vals.get(name)
        if isinstance(v, _QConst):
            return v.dequantized()
        return const(node, name).astype(np.float32)

    def check_q(node: onnx.NodeProto) -> tuple[float, int]:
        s = const(node, node.input[1])
        zp = vals.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
        if not isinstance(zp, np.ndarray) or zp.dtype != np.int8:
            raise _refuse(node, "only int8 activations (signed, S8S8 QDQ) are supported")
        if s.size != 1 or zp.size != 1:
            raise _refuse(node, "only per-tensor activation scales are supported")
        if _attrs(node).get("axis", 1) != 1 and s.ndim:
            raise _refuse(node, "only per-tensor activation scales are supported")
        return float(np.float32(s.reshape(()))), int(zp.reshape(()))

    for node in g.node:
        if node.output[0] in fused:
            continue
        op_type, ins, out = node.op_type, list(node.input), node.output[0]
        a = _attrs(node)
        if op_type == "DequantizeLinear":
            src = vals.get(ins[0])
            if isinstance(src, np.ndarray):
                scales = const(node, ins[1])
                zps = vals.get(ins[2]) if len(ins) > 2 and ins[2] else np.zeros_like(scales, dtype=src.dtype)
                if not isinstance(zps, np.ndarray):
                    raise _refuse(node, "the zero point must be a constant")
                if scales.size > 1 and a.get("axis", 1) != 0:
                    raise _refuse(node, f"per-axis scales on axis {a.get('axis', 1)}; only axis 0 is supported")
                vals[out] = _QConst(src, scales.reshape(-1), zps.reshape(-1))
            elif isinstance(src, Tensor) and src.dtype == "s8":
                vals[out] = _DQView(src, *check_q(node))
            else:
                raise _refuse(node, "dequantizes something other than an int8 activation or a constant")
        elif op_type == "QuantizeLinear":
            qs, qz = check_q(node)
            x = as_float(node, vals.get(ins[0]))
            prod = producer.get(id(x))
            if prod is not None and prod.kind == "conv_f32" and "quantize" not in prod.params \
                    and only_consumer(ins[0]) is node:  # fmt: skip
                prod.params["quantize"] = (qs, qz)  # the float conv writes int8 directly: a quarter of the RAM
                x.dtype, x.scale, x.zero_point = "s8", qs, qz
                vals[out] = x
            else:
                vals[out] = emit(Op("quantize", x, new(x, x.channels, x.length, "s8", qs, qz),
                                    {"scale": qs, "zero_point": qz}, node.name)).dst  # fmt: skip
        elif op_type == "Relu":
            v = vals.get(ins[0])
            x = as_float(node, v)
            prod = producer.get(id(x))
            if prod is not None and prod.kind == "conv_f32" and not prod.params["relu"] \
                    and "quantize" not in prod.params and only_consumer(ins[0]) is node:  # fmt: skip
                prod.params["relu"] = True
                vals[out] = x
            else:
                vals[out] = emit(Op("relu", x, new(x, x.channels, x.length), {}, node.name)).dst
        elif op_type == "InstanceNormalization":
            x = as_float(node, vals.get(ins[0]))
            gamma, beta = const(node, ins[1]).astype(np.float32), const(node, ins[2]).astype(np.float32)
            if gamma.shape != (x.channels,) or beta.shape != (x.channels,):
                raise _refuse(node, f"scale/bias of shape {gamma.shape}/{beta.shape}; expected ({x.channels},)")
            vals[out] = emit(Op("instnorm", x, new(x, x.channels, x.length),
                                {"gamma": gamma, "beta": beta, "eps": float(np.float32(a.get("epsilon", 1e-5)))},
                                node.name)).dst  # fmt: skip
        elif op_type in ("Conv", "Gemm"):
            _lower_linear(node, a, vals, consumers, graph_outputs, fused, new, emit, as_float, float_const, check_q)
        elif op_type == "ReduceMean":
            v = vals.get(ins[0])
            t = v.tensor if isinstance(v, _DQView) else v
            if not isinstance(t, Tensor):
                raise _refuse(node, "expected an activation as its input")
            axes = list(a.get("axes", [])) or (list(const(node, ins[1]).reshape(-1)) if len(ins) > 1 and ins[1] else [])
            if [int(x) % 3 for x in axes] != [2]:
                raise _refuse(node, f"reduces over axes {axes}; only the time axis (-1) is supported")
            dq = (v.scale, v.zero_point) if isinstance(v, _DQView) else None
            if dq is None and t.dtype != "f32":
                raise _refuse(node, "averages an int8 tensor without DequantizeLinear")
            vals[out] = emit(Op("mean", t, new(t, t.channels, 1), {"dequantize": dq}, node.name)).dst
        else:  # pragma: no cover - SUPPORTED_OPS is checked above
            raise _refuse(node, "not supported")
    result = vals.get(g.output[0].name)
    if not isinstance(result, Tensor) or result.dtype != "f32" or result.length != 1 or result is x_in:
        raise CExportError(f"the encoder output {g.output[0].name!r} is not a float vector per window (expected "
                           "the embedding [N, D] from a time average); the C generator cannot express this model")  # fmt: skip
    low = Lowered(x_in, result, ops)
    plan_arena(low)
    return low


def _lower_linear(node, a, vals, consumers, graph_outputs, fused, new, emit, as_float, float_const, check_q) -> None:  # noqa: ANN001
    """Conv (1-D) or Gemm (as a 1x1 conv on a vector): int8 when QDQ-fused the way onnxruntime fuses it, else float."""
    ins, out = list(node.input), node.output[0]
    if node.op_type == "Conv":
        ks = a.get("kernel_shape")
        if (ks is not None and len(ks) != 1) or a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1])):
            raise _refuse(node, "only 1-D convolutions with group=1 and dilation 1 are supported")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise _refuse(node, "auto_pad is not supported (explicit pads only)")
        stride = int(a.get("strides", [1])[0])
        pads = list(a.get("pads", [0, 0]))
    else:
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise _refuse(node, "only Gemm with transA=0, alpha=1, beta=1 is supported")
        stride, pads = 1, [0, 0]
    v = vals.get(ins[0])
    wv = vals.get(ins[1])
    bv = vals.get(ins[2]) if len(ins) > 2 and ins[2] else None
    src = v.tensor if isinstance(v, _DQView) else v
    if not isinstance(src, Tensor):
        raise _refuse(node, "expected an activation as its data input")
    if node.op_type == "Gemm" and src.length != 1:
        raise _refuse(node, "Gemm on a sequence; only on a vector per window")

    def weight(w: np.ndarray) -> np.ndarray:
        if node.op_type == "Gemm":
            w = w if a.get("transB", 0) else w.T
            return w.reshape(w.shape[0], w.shape[1], 1)
        return w

    def out_len(k: int) -> int:
        return (src.length + pads[0] + pads[1] - k) // stride + 1

    # onnxruntime's QDQ fusion: DQ(x) and DQ(w) into Conv/Gemm whose only consumer is Q (a Relu in between
    # is removed by its ReluQuantFusion when Q's zero point is the int8 minimum; otherwise a clamp at zp)
    nxt = consumers.get(out, [])
    relu = None
    if len(nxt) == 1 and out not in graph_outputs and nxt[0].op_type == "Relu":
        relu = nxt[0]
        nxt = consumers.get(relu.output[0], [])
    q = nxt[0] if len(nxt) == 1 and nxt[0].op_type == "QuantizeLinear" else None
    if relu is not None and relu.output[0] in graph_outputs:
        q = None
    if isinstance(v, _DQView) and isinstance(wv, _QConst) and q is not None:
        if wv.q.dtype != np.int8 or np.any(wv.zero_point != 0):
            raise _refuse(node, "int8 weights must be signed and symmetric (zero point 0)")
        w = weight(wv.q)
        cout = w.shape[0]
        if isinstance(bv, _QConst):
            if bv.q.dtype != np.int32:
                raise _refuse(node, "a quantized bias must be int32")
            bias = bv.q.astype(np.int32).reshape(-1)
        elif bv is None:
            bias = np.zeros(cout, np.int32)
        else:
            raise _refuse(node, "an int8 Conv/Gemm needs an int32 quantized bias (or none)")
        if w.shape[1] != src.channels or bias.shape != (cout,):
            raise _refuse(node, f"weights {w.shape} do not fit an input of {src.channels} channels")
        s_out, zp_out = check_q(q)
        s_w = np.broadcast_to(wv.scale.astype(np.float32), (cout,))
        # float32, in onnxruntime's order: X_scale * W_scale[c] / Y_scale
        mult = (np.float32(v.scale) * s_w / np.float32(s_out)).astype(np.float32)
        dst = new(src, cout, out_len(w.shape[2]), "s8", s_out, zp_out)
        emit(Op("conv_s8", src, dst, {"weight": w.astype(np.int8), "bias": bias, "mult": mult, "stride": stride,
                                      "pad": pads[0], "zp_in": v.zero_point, "zp_out": zp_out, "relu": relu is not None},
                node.name))  # fmt: skip
        fused.update(n.output[0] for n in (relu, q) if n is not None)
        vals[q.output[0]] = dst
        return
    if isinstance(wv, _QConst) and isinstance(v, _DQView):
        raise _refuse(node, "an int8 Conv/Gemm whose output is not requantized (no single QuantizeLinear after it)")
    x = as_float(node, v)
    w = weight(float_const(node, ins[1]))
    cout = w.shape[0]
    b = float_const(node, ins[2]).reshape(-1) if bv is not None else np.zeros(cout, np.float32)
    if w.shape[1] != x.channels or b.shape != (cout,):
        raise _refuse(node, f"weights {w.shape} do not fit an input of {x.channels} channels")
    dst = new(x, cout, out_len(w.shape[2]))
    emit(Op("conv_f32", x, dst, {"weight": w.astype(np.float32), "bias": b.astype(np.float32), "stride": stride,
                                 "pad": pads[0], "relu": False}, node.name))  # fmt: skip
    vals[out] = dst


def plan_arena(low: Lowered) -> None:
    """Place every intermediate tensor in one arena: a tensor may reuse the bytes of any tensor whose
    lifetime (from the op writing it to the last op reading it) does not overlap its own. Largest first,
    lowest free offset."""
    last_use: dict[int, int] = {}
    first: dict[int, int] = {}
    tensors: dict[int, Tensor] = {}
    for i, op in enumerate(low.ops):
        first.setdefault(id(op.dst), i)
        tensors[id(op.dst)] = op.dst
        last_use[id(op.src)] = i
    last_use[id(low.output)] = len(low.ops)  # read by the head after the last op
    placed: list[tuple[int, int, int, int]] = []  # (start, end, first op, last op)
    for t in sorted(tensors.values(), key=lambda t: -t.nbytes):
        lo, hi = first[id(t)], last_use.get(id(t), first[id(t)])
        size = (t.nbytes + ALIGN - 1) // ALIGN * ALIGN
        busy = sorted((s, e) for s, e, f, la in placed if not (hi < f or la < lo))
        off = 0
        for s, e in busy:
            if off + size <= s:
                break
            off = max(off, e)
        t.offset = off
        placed.append((off, off + size, lo, hi))
    low.arena_bytes = max((e for _, e, _, _ in placed), default=0)


# -- C text ------------------------------------------------------------------------------------------


_KERNEL_TEXT = r"""

static int8_t essl_saturate(float v, int32_t zp)
{
    /* clamp in the float domain (as MLAS does), then round half to even and add the zero point */
    float lo = (float)(-128 - zp), hi = (float)(127 - zp);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)((int32_t)lrintf(v) + zp);
}

/* onnxruntime's InstanceNormalization: y = x * (g / sqrt(var + eps)) + (b - mean * g / sqrt(var + eps)) */
static void essl_instnorm(const float *x, float *y, int32_t ch, int32_t len, const float *gamma,
                          const float *beta, float eps)
{
    int32_t c, t;
    for (c = 0; c < ch; ++c) {
        const float *xc = x + c * len;
        float *yc = y + c * len;
        float mean = 0.0f, sq = 0.0f, inv, scale, shift;
        for (t = 0; t < len; ++t) mean += xc[t];
        mean /= (float)len;
        for (t = 0; t < len; ++t) sq += (xc[t] - mean) * (xc[t] - mean);
        inv = 1.0f / sqrtf(sq / (float)len + eps);
        scale = inv * gamma[c];
        shift = beta[c] - mean * scale;
        for (t = 0; t < len; ++t) yc[t] = xc[t] * scale + shift;
    }
}

/* float 1-D convolution (weights [cout][cin][k]); optional Relu; int8 output when yq is not NULL */
static void essl_conv_f32(const float *x, int32_t cin, int32_t tin, float *y, int8_t *yq, int32_t cout,
                          int32_t tout, const float *w, const float *b, int32_t k, int32_t stride, int32_t pad,
                          int relu, float out_scale, int32_t out_zp)
{
    int32_t o, t, i, j;
    for (o = 0; o < cout; ++o) {
        for (t = 0; t < tout; ++t) {
            int32_t t0 = t * stride - pad;
            int32_t jlo = t0 < 0 ? -t0 : 0, jhi = tin - t0 < k ? tin - t0 : k; /* taps inside the input */
            float acc = b[o];
            for (i = 0; i < cin; ++i) {
                const float *xi = x + i * tin + t0;
                const float *wi = w + (o * cin + i) * k;
                for (j = jlo; j < jhi; ++j) acc += wi[j] * xi[j];
            }
            if (relu && acc < 0.0f) acc = 0.0f;
            if (yq != NULL) yq[o * tout + t] = essl_saturate(acc / out_scale, out_zp);
            else y[o * tout + t] = acc;
        }
    }
}

/* int8 1-D convolution, onnxruntime's QLinearConv: acc = bias + sum w * (x - zp_in) in int32,
   y = saturate(round_half_even(acc * mult[o]) + zp_out); relu: y >= zp_out */
static void essl_conv_s8(const int8_t *x, int32_t cin, int32_t tin, int8_t *y, int32_t cout, int32_t tout,
                         const int8_t *w, const int32_t *bias, const float *mult, int32_t k, int32_t stride,
                         int32_t pad, int32_t zp_in, int32_t zp_out, int relu)
{
    int32_t o, t, i, j;
    for (o = 0; o < cout; ++o) {
        for (t = 0; t < tout; ++t) {
            int32_t t0 = t * stride - pad;
            int32_t jlo = t0 < 0 ? -t0 : 0, jhi = tin - t0 < k ? tin - t0 : k; /* taps inside the input */
            int32_t acc = bias[o];
            int8_t q;
            for (i = 0; i < cin; ++i) {
                const int8_t *xi = x + i * tin + t0;
                const int8_t *wi = w + (o * cin + i) * k;
                for (j = jlo; j < jhi; ++j) acc += (int32_t)wi[j] * ((int32_t)xi[j] - zp_in);
            }
            q = essl_saturate((float)acc * mult[o], zp_out);
            if (relu && q < zp_out) q = (int8_t)zp_out;
            y[o * tout + t] = q;
        }
    }
}

static void essl_quantize(const float *x, int8_t *y, int32_t n, float scale, int32_t zp)
{
    int32_t i;
    for (i = 0; i < n; ++i) y[i] = essl_saturate(x[i] / scale, zp);
}

static void essl_dequantize(const int8_t *x, float *y, int32_t n, float scale, int32_t zp)
{
    int32_t i;
    for (i = 0; i < n; ++i) y[i] = (float)((int32_t)x[i] - zp) * scale;
}

static void essl_relu(const float *x, float *y, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* time average of an int8 tensor through DequantizeLinear: the integer sum is exact */
static void essl_mean_s8(const int8_t *x, float *y, int32_t ch, int32_t len, float scale, int32_t zp)
{
    int32_t c, t;
    for (c = 0; c < ch; ++c) {
        int32_t sum = 0;
        for (t = 0; t < len; ++t) sum += (int32_t)x[c * len + t] - zp;
        y[c] = (float)sum * scale / (float)len;
    }
}

static void essl_mean_f32(const float *x, float *y, int32_t ch, int32_t len)
{
    int32_t c, t;
    for (c = 0; c < ch; ++c) {
        float sum = 0.0f;
        for (t = 0; t < len; ++t) sum += x[c * len + t];
        y[c] = sum / (float)len;
    }
}
"""
# one C function per kernel (a blank line between them), so a model's file holds only the ones it calls
KERNELS = {m.group(1): text + "\n" for text in _KERNEL_TEXT.strip().split("\n\n")
           if (m := re.search(r"static \w+ (essl_\w+)\(", text))}  # fmt: skip
_USES = {
    "instnorm": ["essl_instnorm"],
    "conv_f32": ["essl_saturate", "essl_conv_f32"],
    "conv_s8": ["essl_saturate", "essl_conv_s8"],
    "quantize": ["essl_saturate", "essl_quantize"],
    "dequantize": ["essl_dequantize"],
    "relu": ["essl_relu"],
    "mean": ["essl_mean_s8", "essl_mean_f32"],
}


def kernels_for(ops: Sequence[Op]) -> str:
    """The kernels ``ops`` call, in their order in :data:`KERNELS` (-Werror rejects unused static functions)."""
    used = {k for op in ops for k in _USES[op.kind]}
    if not any(op.kind == "mean" and op.params["dequantize"] is None for op in ops):
        used.discard("essl_mean_f32")
    if not any(op.kind == "mean" and op.params["dequantize"] is not None for op in ops):
        used.discard("essl_mean_s8")
    return "\n/* ---- kernels: plain loops, channel-major tensors [channels][time] ---- */\n\n" + "\n".join(
        text for name, text in KERNELS.items() if name in used
    )


def _buf(t: Tensor, window: str = "window") -> str:
    if t.offset < 0:
        return window
    ctype = "float" if t.dtype == "f32" else "int8_t"
    return f"(({ctype} *)(essl_arena + {t.offset}))"


def _cbuf(t: Tensor) -> str:
    if t.offset < 0:
        return "window"
    ctype = "const float" if t.dtype == "f32" else "const int8_t"
    return f"(({ctype} *)(essl_arena + {t.offset}))"


def model_sources(b: Bundle, low: Lowered, source: str) -> tuple[str, str, dict[str, Any]]:
    """``essl_model.h``, ``essl_model.c`` and the size facts for ``essl_model_info.json``."""
    labels, C, T = b.labels, len(b.channels), b.window
    p = b.adaptation()
    W = p["head_weight"].astype(np.float32)
    bias = p["head_bias"].astype(np.float32)
    K, D = W.shape
    if low.output.channels != D:
        raise CExportError(f"the encoder gives {low.output.channels} features but the head takes {D}")
    arrays: list[str] = []
    calls: list[str] = []
    sizes = {"int8": 0, "int32": 0, "float32": 0}
    float_nodes: list[str] = []

    def add(ctype: str, name: str, values: np.ndarray) -> str:
        arrays.append(c_array(ctype, name, values))
        sizes[{"int8_t": "int8", "int32_t": "int32", "float": "float32"}[ctype]] += int(np.asarray(values).size) * (
            1 if ctype == "int8_t" else 4
        )
        return name

    for i, op in enumerate(low.ops):
        s, d, pr = op.src, op.dst, op.params
        calls.append(f"    /* {op.kind}: {op.node} -> [{d.channels} x {d.length}] {d.dtype} */")
        if op.kind == "instnorm":
            g_, b_ = add("float", f"essl_l{i}_gamma", pr["gamma"]), add("float", f"essl_l{i}_beta", pr["beta"])
            calls.append(f"    essl_instnorm({_cbuf(s)}, {_buf(d)}, {s.channels}, {s.length}, {g_}, {b_}, "
                         f"{c_float(pr['eps'])});")  # fmt: skip
        elif op.kind == "conv_f32":
            float_nodes.append(op.node)
            w = pr["weight"]
            wn, bn = add("float", f"essl_l{i}_w", w), add("float", f"essl_l{i}_b", pr["bias"])
            qs, qz = pr.get("quantize", (1.0, 0))
            yf, yq = ("NULL", _buf(d)) if "quantize" in pr else (_buf(d), "NULL")
            calls.append(f"    essl_conv_f32({_cbuf(s)}, {s.channels}, {s.length}, {yf}, {yq}, {d.channels}, "
                         f"{d.length}, {wn}, {bn}, {w.shape[2]}, {pr['stride']}, {pr['pad']}, "
                         f"{int(pr['relu'])}, {c_float(qs)}, {qz});")  # fmt: skip
        elif op.kind == "conv_s8":
            w = pr["weight"]
            wn, bn = add("int8_t", f"essl_l{i}_w", w), add("int32_t", f"essl_l{i}_bias", pr["bias"])
            mn = add("float", f"essl_l{i}_mult", pr["mult"])
            calls.append(f"    essl_conv_s8({_cbuf(s)}, {s.channels}, {s.length}, {_buf(d)}, {d.channels}, "
                         f"{d.length}, {wn}, {bn}, {mn}, {w.shape[2]}, {pr['stride']}, {pr['pad']}, "
                         f"{pr['zp_in']}, {pr['zp_out']}, {int(pr['relu'])});")  # fmt: skip
        elif op.kind == "quantize":
            calls.append(f"    essl_quantize({_cbuf(s)}, {_buf(d)}, {s.channels * s.length}, "
                         f"{c_float(pr['scale'])}, {pr['zero_point']});")  # fmt: skip
        elif op.kind == "dequantize":
            calls.append(f"    essl_dequantize({_cbuf(s)}, {_buf(d)}, {s.channels * s.length}, "
                         f"{c_float(pr['scale'])}, {pr['zero_point']});")  # fmt: skip
        elif op.kind == "relu":
            calls.append(f"    essl_relu({_cbuf(s)}, {_buf(d)}, {s.channels * s.length});")
        elif op.kind == "mean":
            if pr["dequantize"] is not None:
                sc, zp = pr["dequantize"]
                calls.append(f"    essl_mean_s8({_cbuf(s)}, {_buf(d)}, {s.channels}, {s.length}, {c_float(sc)}, {zp});")
            else:
                calls.append(f"    essl_mean_f32({_cbuf(s)}, {_buf(d)}, {s.channels}, {s.length});")
    add("float", "essl_head_w", W)  # the head's loop in essl_model_run names them
    add("float", "essl_head_b", bias)
    arena = max(low.arena_bytes, ALIGN)
    guard = "ESSL_MODEL_H"
    rate = b.rate_hz or 100.0
    header = f"""/* {source}
 * The int8 encoder and float head of a gesture model as plain C99: no malloc, no stdio, libm only.
 * Generated by edgessl export-c; do not edit (regenerate from the bundle). See docs/mcu.md. */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define ESSL_MODEL_CHANNELS  {C}
#define ESSL_MODEL_LENGTH    {T}
#define ESSL_MODEL_CLASSES   {K}
#define ESSL_MODEL_EMBED_DIM {D}
#define ESSL_MODEL_RATE_HZ   {c_float(rate)}
#define ESSL_MODEL_ARENA_BYTES {arena}
#define ESSL_MODEL_MACS      {low.macs}L /* the encoder's; the head adds CLASSES x EMBED_DIM */
/* the bundle's checksum (its manifest's sha256): which model this is, for the host (MODEL_INFO) */
#define ESSL_MODEL_SHA256    "{b.checksum}"

typedef enum {{
    ESSL_MODEL_OK = 0,
    ESSL_MODEL_ERR_NULL = -1,     /* window or logits is NULL */
    ESSL_MODEL_ERR_NONFINITE = -2 /* the window holds NaN or inf */
}} essl_model_err_t;

extern const char *const essl_model_labels[ESSL_MODEL_CLASSES];
extern const char *const essl_model_channels[ESSL_MODEL_CHANNELS];

/* window: channel-major float [ESSL_MODEL_CHANNELS * ESSL_MODEL_LENGTH] in the bundle's units ({", ".join(b.units)}),
   exactly what the bundle's encoder takes. logits [ESSL_MODEL_CLASSES] and embedding
   [ESSL_MODEL_EMBED_DIM] are caller-owned; embedding may be NULL. Not reentrant (one static arena).
   Returns ESSL_MODEL_OK (0) or an essl_model_err_t. */
int essl_model_run(const float *window, float *logits, float *embedding);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""
    names = ", ".join(c_string(x) for x in labels)
    chans = ", ".join(c_string(x) for x in b.channels)
    emb = _buf(low.output)
    body = f"""/* {source}
 * Generated by edgessl export-c; do not edit. Kernels follow onnxruntime's QDQ semantics (docs/mcu.md). */
#include "essl_model.h"

#include <math.h>
#include <stddef.h>

const char *const essl_model_labels[ESSL_MODEL_CLASSES] = {{{names}}};
const char *const essl_model_channels[ESSL_MODEL_CHANNELS] = {{{chans}}};

/* every intermediate tensor lives here, placed at export by lifetime (buffers are reused) */
static float essl_arena_words[(ESSL_MODEL_ARENA_BYTES + 3) / 4];
#define essl_arena ((unsigned char *)essl_arena_words)

{"".join(arrays)}{kernels_for(low.ops)}
int essl_model_run(const float *window, float *logits, float *embedding)
{{
    int32_t i, k;
    const float *e;
    if (window == NULL || logits == NULL) return ESSL_MODEL_ERR_NULL;
    for (i = 0; i < ESSL_MODEL_CHANNELS * ESSL_MODEL_LENGTH; ++i) {{
        if (!(window[i] - window[i] == 0.0f)) return ESSL_MODEL_ERR_NONFINITE; /* NaN or inf */
    }}
{chr(10).join(calls)}
    e = {emb.replace("(float *)", "(const float *)")};
    for (k = 0; k < ESSL_MODEL_CLASSES; ++k) {{ /* the float head: logits = W e + b */
        float acc = essl_head_b[k];
        for (i = 0; i < ESSL_MODEL_EMBED_DIM; ++i) acc += essl_head_w[k * ESSL_MODEL_EMBED_DIM + i] * e[i];
        logits[k] = acc;
    }}
    if (embedding != NULL) {{
        for (i = 0; i < ESSL_MODEL_EMBED_DIM; ++i) embedding[i] = e[i];
    }}
    return ESSL_MODEL_OK;
}}
"""
    info = {
        "weights_bytes": sizes, "arena_bytes": arena, "macs": low.macs + K * D,
        "encoder_macs": low.macs, "kernels": [{"kind": op.kind, "node": op.node, "out": [op.dst.channels, op.dst.length],
                                                "out_dtype": op.dst.dtype, "macs": op.macs} for op in low.ops],
        "kept_float": float_nodes,
        # one quantization step of the embedding: the scale of the int8 tensor it averages (None: float)
        "embedding_step": next((op.params["dequantize"][0] for op in low.ops if op.kind == "mean"
                                and op.params["dequantize"] is not None), None),
    }  # fmt: skip
    return header, body, info


def check_out_dir(out: str | Path, force: bool) -> Path:
    """The output folder: created if missing; files of ours already there are replaced only with ``force``;
    nobody else's file is touched.

    Raises:
        UsageError: naming ``--out`` and the path.
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {p}: is a file; expected a folder for the C sources")
    if p.is_dir():
        ours = [n for n in (*OUTPUT_FILES, STATE_FILE) if (p / n).exists()]
        if ours and not force:
            raise UsageError(f"--out {p}: already holds {', '.join(ours)}; choose another folder, or add --force to "
                             "replace these files (nothing else there is touched)")  # fmt: skip
        for n in ours:
            if (p / n).is_dir():
                raise UsageError(f"--out {p}: {n} is a folder; expected a file it may replace")
    elif not p.parent.is_dir():
        raise UsageError(f"--out {p}: folder {p.parent} does not exist")
    return p


def export_c(bundle_path: str | Path, out: str | Path, *, force: bool = False, state: str | Path | None = None
             ) -> dict[str, Any]:  # fmt: skip
    """Write the C library of a bundle into ``out`` (see :data:`OUTPUT_FILES`); returns the info written.

    ``state``: a user state of this bundle (``edgessl enroll``'s): its board mounting and segmentation profile
    go into the C stream; its enrolled takes cannot (the C classifies with the bundle's head alone), and the
    info says how many were left out (``user_state.not_carried``). The state reduced to what the C holds is
    written beside the sources (:data:`STATE_FILE`); an export without a state removes an earlier export's.

    Raises:
        UsageError: ``out`` holds files of a previous export (without ``force``) or is not a folder.
        CExportError: the model (or its input mode) cannot be expressed in C; nothing is written.
        StateMismatch: ``state`` is not a user state of this bundle; FileNotFoundError: no file there.
    """
    from edgessl.atomic import atomic_write
    from edgessl.edge_runtime.enroll import UserState
    from edgessl.edge_runtime.mounting import mount_angle
    from edgessl.export import c_stream

    out = check_out_dir(out, force)
    if state is not None and (out / STATE_FILE).exists() and os.path.samefile(state, out / STATE_FILE):
        raise UsageError(f"--state {state}: the file this export writes in --out {out}; give the state edgessl enroll "
                         "saved (this one holds only what an earlier C library took from it)")  # fmt: skip
    b = open_bundle(bundle_path)
    st = None if state is None else UserState.load(state, b.checksum)
    m = b.manifest
    if not m.get("preprocessing_in_graph", False) and m["preprocessing"].get("steps"):
        steps = [s["op"] for s in m["preprocessing"]["steps"]]
        raise CExportError(f"{bundle_path}: its preprocessing {steps} runs outside the encoder graph (an older "
                           "bundle); the C generator needs it in the graph: re-export the bundle")  # fmt: skip
    low = lower(b.members[ENCODER_INT8], len(b.channels), b.window)
    source = f"model {m.get('model_name', '?')} from {Path(bundle_path).name} (manifest sha256 {b.checksum[:16]})"
    mh, mc, info = model_sources(b, low, source)
    sh, sc, sinfo = c_stream.stream_sources(b, source, None if st is None else st.mounting,
                                            None if st is None else st.segmentation)  # fmt: skip
    p = b.adaptation()
    info = {"bundle": str(bundle_path), "bundle_checksum": b.checksum, "labels": b.labels, "channels": b.channels,
            "units": b.units, "window": b.window, "rate_hz": b.rate_hz or 100.0, "input_mode": m["input_mode"],
            "embedding_dim": int(p["head_weight"].shape[1]), **info, "stream": sinfo,
            "quantization": m.get("quantization", {}).get("float_layers")}  # fmt: skip
    info["quantization"] = {"float_layers": info["quantization"], "semantics": "onnxruntime QLinear (QDQ S8S8)"}
    if st is not None:
        counts = st.counts()
        info["user_state"] = {"path": str(state), "mounting_deg": None if st.mounting is None else round(mount_angle(st.mounting), 1),
                              "segmentation": st.segmentation or "default",
                              # enrollment needs the host runtime: the C answers the bundle's classes with its head
                              "as_the_board": str(out / STATE_FILE),
                              "not_carried": {"enrolled_takes": int(sum(counts.values())),
                                              "classes": {k: int(v) for k, v in counts.items()},
                                              "new_classes": list(st.new_labels)}}  # fmt: skip
    # what a firmware budget needs, in one place (benchmarks/mcu.py measures the uWave model's on a Cortex-M4)
    info["memory"] = {"flash_weights_bytes": int(sum(info["weights_bytes"].values())),
                      "ram_bytes": int(info["arena_bytes"] + sinfo["state_bytes_estimate"]),
                      "note": "flash: these weights plus about 7 KiB of code and tables (Cortex-M4, -Os); RAM: the "
                              "arena plus one essl_stream_t (estimated)"}  # fmt: skip
    out.mkdir(exist_ok=True)
    files = {"essl_model.h": mh, "essl_model.c": mc, "essl_stream.h": sh, "essl_stream.c": sc,
             INFO_FILE: json.dumps(info, indent=2) + "\n"}  # fmt: skip
    for name, text in files.items():
        data = text.encode()
        atomic_write(out / name, lambda f, d=data: f.write(d))  # type: ignore[misc]
        os.chmod(out / name, 0o644)  # sources to share, not secrets (the temporary file was 0600)
    if st is not None:
        UserState(st.checksum, st.bundle_labels, segmentation=st.segmentation, mounting=st.mounting,
                  dim=st.takes.shape[1]).save(out / STATE_FILE)  # fmt: skip
    elif (out / STATE_FILE).exists():  # an earlier export's (check_out_dir passed: --force): not this library's
        (out / STATE_FILE).unlink()
    return info


def cflags_strict() -> list[str]:
    """The warnings every generated file must compile clean with (host tests, docs)."""
    return ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wdouble-promotion", "-Wshadow"]


def _state_text(us: dict[str, Any] | None) -> str:
    """What ``export_c`` took from a user state, and what it left, as lines before the summary ("" without one)."""
    if us is None:
        return ""
    deg = us["mounting_deg"]
    took = [f"the board turned {deg:.0f}° (each segment is turned back before the model)" if deg is not None
            else "no board mounting (the state has none: as in training)", f"the {us['segmentation']} cut"]  # fmt: skip
    text = (f"{us['path']}: the C library takes {' and '.join(took)}; {us['as_the_board']} holds them alone, for "
            "`edgessl run --state` to decide as the board does\n")  # fmt: skip
    left = us["not_carried"]
    if left["enrolled_takes"]:
        new = f", new gesture(s) {', '.join(left['new_classes'])} among them" if left["new_classes"] else ""
        text += (f"{us['path']}: its {left['enrolled_takes']} enrolled take(s) of {len(left['classes'])} gesture(s){new} "
                 "are not in the C library (it answers the bundle's gestures with the bundle's head); they work on "
                 "the host with edgessl run --state\n")  # fmt: skip
    return text


def describe(info: dict[str, Any], out: Sequence[str] | str) -> str:
    w = info["weights_bytes"]
    return _state_text(info.get("user_state")) + (f"wrote {len(OUTPUT_FILES) + ('user_state' in info)} files to {out}: weights {w['int8']} B int8 + {w['float32']} B float + "
            f"{w['int32']} B int32, arena {info['arena_bytes']} B, {info['macs']:,} MACs per window "
            f"({info['encoder_macs']:,} in the encoder: ESSL_MODEL_MACS)"
            + (f"; flash {info['memory']['flash_weights_bytes'] / 1024:.1f} KiB of weights + about 7 KiB of code, RAM about "
               f"{info['memory']['ram_bytes'] / 1024:.1f} KiB with the stream state" if "memory" in info else ""))  # fmt: skip
