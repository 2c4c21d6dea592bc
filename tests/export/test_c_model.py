"""The generated C model against onnxruntime's int8 encoder, the refusals, and ``edgessl export-c``."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgessl.edge_runtime.bundle import ENCODER_INT8, open_bundle
from edgessl.export.c_model import OUTPUT_FILES, CExportError, export_c, lower
from tests.export.c_harness import RUN_MODEL, build, compiler, run_model

pytest.importorskip("torch")  # the bundles come from the session's small fine-tuned model


def windows(window: int, data_dir=None) -> np.ndarray:
    """The synthetic test windows, and real uWave test gestures stretched to the window when the data is here."""
    from edgessl.preprocess import resample_to_length
    from edgessl.synthetic import SyntheticConfig, make_dataset

    X = [make_dataset(SyntheticConfig(reps=6, length=window)).X_test]
    if data_dir is not None and (data_dir / "uwave_gesture_ucr.npz").exists():
        with np.load(data_dir / "uwave_gesture_ucr.npz") as z:
            X.append(resample_to_length(z["X_test"][::12].astype(np.float32), window))
    return np.concatenate(X).astype(np.float32)


def onnxruntime_outputs(bundle, X, optimized=True):
    b = open_bundle(bundle)
    so = ort.SessionOptions()
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(b.members[ENCODER_INT8], so, providers=["CPUExecutionProvider"])
    e = s.run(None, {s.get_inputs()[0].name: X})[0]
    p = b.adaptation()
    return e @ p["head_weight"].T.astype(np.float32) + p["head_bias"].astype(np.float32), e, p["head_weight"]


@pytest.fixture(scope="module")
def c_lib(small_bundle, tmp_path_factory):
    compiler()
    out = tmp_path_factory.mktemp("c_model")
    info = export_c(small_bundle, out)
    return out, info, build(out, RUN_MODEL, "run_model", ["essl_model.c"])


def test_c_model_agrees_with_onnxruntime_int8(small_bundle, c_lib, request):
    """Top-1 and logits against the int8 encoder as onnxruntime runs it (fused QLinearConv), and every window
    within one quantization step of the graph run op by op. The fused kernel on x86 AVX2 without VNNI adds
    pairs of products in saturating 16-bit lanes (see test_all_int8_model_with_the_quantize_kernel); the C
    accumulates in exact int32 as onnxruntime does on ARM, so it may differ there by a step or two."""
    from edgessl.datasets import default_data_dir

    out, info, exe = c_lib
    data_dir = request.getfixturevalue("data_dir") if (default_data_dir() / "manifest.json").exists() else None
    b = open_bundle(small_bundle)
    X = windows(b.window, data_dir)
    logits, emb = run_model(exe, X, len(b.labels), info["embedding_dim"])
    ref_logits, ref_emb, W = onnxruntime_outputs(small_bundle, X)
    assert (logits.argmax(1) == ref_logits.argmax(1)).mean() >= 0.99
    step = info["embedding_step"]
    assert step is not None and step > 0
    # one quantization step: every embedding feature within one step of the int8 tensor it averages ...
    within = (np.abs(emb - ref_emb) <= step * 1.001).all(axis=1)
    assert within.mean() >= 0.95, f"{within.mean():.3f} of windows within one step"
    # ... and so the logits within that step carried through the head
    assert (np.abs(logits - ref_logits).max(axis=1) <= step * np.abs(W).sum(1).max() * 1.001)[within].all()
    _, op_by_op, _ = onnxruntime_outputs(small_bundle, X, optimized=False)
    assert (np.abs(emb - op_by_op) <= step * 1.001).all()
    assert (np.abs(emb - ref_emb).max(axis=1) < 1e-5).mean() >= 0.5  # most windows: the same integers throughout
    # what export-c reports: the kernels the graph became, the arena, weights, the float layers kept
    kinds = [k["kind"] for k in info["kernels"]]
    assert kinds[0] == "instnorm" and kinds[-1] == "mean" and "conv_s8" in kinds
    assert len(info["kept_float"]) == b.manifest["quantization"]["float_layers"]
    assert info["weights_bytes"]["int8"] > 0 and info["arena_bytes"] > 0 and info["macs"] > 0
    assert json.loads((out / "essl_model_info.json").read_text())["macs"] == info["macs"]
    h = (out / "essl_model.h").read_text()
    assert f"#define ESSL_MODEL_LENGTH    {b.window}" in h and f"#define ESSL_MODEL_CLASSES   {len(b.labels)}" in h
    assert f'#define ESSL_MODEL_SHA256    "{b.checksum}"' in h  # which model a board runs, for the host
    assert "malloc" not in (out / "essl_model.c").read_text() and "stdio" not in (out / "essl_model.c").read_text()


def test_all_int8_model_with_the_quantize_kernel(small_model, tmp_path):
    """Every Conv int8 (float input quantized by its own kernel): the C integers follow the QDQ graph. The
    reference here is onnxruntime *unfused* (op by op): its fused int8 kernel on x86 AVX2 without VNNI adds
    pairs of products in saturating 16-bit lanes, which the C (exact int32, as on ARM) does not."""
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.export.quantize import QuantizeConfig

    bundle = tmp_path / "int8.essl"
    export_bundle(small_model, bundle, ExportConfig(QuantizeConfig(), min_agreement=0.5), progress=False)
    info = export_c(bundle, tmp_path / "c")
    assert [k["kind"] for k in info["kernels"]][:2] == ["instnorm", "quantize"] and not info["kept_float"]
    exe = build(tmp_path / "c", RUN_MODEL, "run_model", ["essl_model.c"])
    b = open_bundle(bundle)
    X = windows(b.window)
    logits, emb = run_model(exe, X, len(b.labels), info["embedding_dim"])
    ref_logits, ref_emb, _ = onnxruntime_outputs(bundle, X, optimized=False)
    assert (logits.argmax(1) == ref_logits.argmax(1)).mean() >= 0.98
    assert (np.abs(emb - ref_emb) <= 3 * info["embedding_step"]).all(axis=1).mean() >= 0.95


def _model(nodes, inits, out_shape=(1, 8)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("window", TensorProto.FLOAT, [1, 3, 16])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, list(out_shape))], inits)  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_an_op_outside_the_set_is_refused_with_its_name():
    from onnx import numpy_helper as nh

    eq = _model([helper.make_node("Einsum", ["window", "w"], ["embedding"], name="mix", equation="nct,ct->nc")],
                [nh.from_array(np.ones((3, 16), np.float32), "w")], (1, 3))  # fmt: skip
    with pytest.raises(CExportError, match=r"op Einsum \(node 'mix'\) is not supported"):
        lower(eq.SerializeToString(), 3, 16)
    lstm = _model([helper.make_node("LSTM", ["window", "W", "R"], ["embedding"], name="rnn", hidden_size=8)],
                  [nh.from_array(np.ones((1, 32, 16), np.float32), "W"), nh.from_array(np.ones((1, 32, 8), np.float32), "R")])  # fmt: skip
    with pytest.raises(CExportError, match="LSTM"):
        lower(lstm, 3, 16)
    # a supported op in a form the kernels do not cover is refused too, with the reason
    grouped = _model([helper.make_node("Conv", ["window", "w"], ["c"], name="dw", group=3, kernel_shape=[3]),
                      helper.make_node("ReduceMean", ["c"], ["embedding"], axes=[-1], keepdims=0)],
                     [nh.from_array(np.ones((3, 1, 3), np.float32), "w")], (1, 3))  # fmt: skip
    with pytest.raises(CExportError, match="'dw' \\(Conv\\): only 1-D convolutions with group=1"):
        lower(grouped, 3, 16)


def test_a_float_graph_lowers_and_plans_a_reusing_arena():
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    m = _model([helper.make_node("Conv", ["window", "w1"], ["a"], kernel_shape=[3], pads=[1, 1]),
                helper.make_node("Relu", ["a"], ["r"]),
                helper.make_node("Conv", ["r", "w2"], ["b"], kernel_shape=[3], pads=[1, 1], strides=[2]),
                helper.make_node("ReduceMean", ["b"], ["embedding"], axes=[-1], keepdims=0)],
               [nh.from_array(rng.normal(size=(16, 3, 3)).astype(np.float32), "w1"),
                nh.from_array(rng.normal(size=(8, 16, 3)).astype(np.float32), "w2")])  # fmt: skip
    low = lower(m, 3, 16)
    assert [op.kind for op in low.ops] == ["conv_f32", "conv_f32", "mean"] and low.ops[0].params["relu"]
    a, b_, e = (op.dst for op in low.ops)
    # the mean's output may take the first conv's bytes (dead by then), never its own input's
    assert e.offset + e.nbytes <= b_.offset or b_.offset + b_.nbytes <= e.offset
    assert low.arena_bytes == a.nbytes + b_.nbytes
    assert low.macs == 16 * 3 * 3 * 16 + 8 * 16 * 3 * 8


def test_export_c_command_refuses_to_overwrite_and_names_the_mode(small_bundle, small_model, tmp_path, capsys):
    from edgessl.cli import main

    out = tmp_path / "lib"
    out.mkdir()
    (out / "main.c").write_text("/* the user's */")
    cmd = ["export-c", str(small_bundle), "--out", str(out)]
    assert main(cmd) == 0
    assert "wrote 5 files" in capsys.readouterr().out and all((out / n).exists() for n in OUTPUT_FILES)
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "essl_model.c" in err and len(err.splitlines()) == 1
    assert main([*cmd, "--force"]) == 0 and (out / "main.c").read_text() == "/* the user's */"

    from edgessl.export.pipeline import ExportConfig, export_bundle

    sliding = tmp_path / "sliding.essl"
    export_bundle(small_model, sliding, ExportConfig(input_mode="sliding", min_agreement=0.5), progress=False)
    capsys.readouterr()
    assert main(["export-c", str(sliding), "--out", str(tmp_path / "s")]) == 4
    assert "input mode 'sliding'" in capsys.readouterr().err and not (tmp_path / "s").exists()
