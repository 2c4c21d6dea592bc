"""Export benchmark: the default model on uwave_gesture_ucr, fp32 vs int8. Writes benchmarks/results/export.json.

Protocol: the reference model of benchmarks/reference_model.py (the default CNN fine-tuned from scratch on the
UCR train split, 100 % labels minus the 20 % validation split, validation-selected, windows of 63 samples,
60 epochs), or the model given by --model (its data and fit settings are recorded under "model"), exported with `edgessl export`'s defaults (static QDQ int8, MinMax
calibration on up to 512 training windows, the configuration chosen on the validation windows: "quantization"). Accuracy on the 3582 test windows. Latency per window at batch 1, one thread, median and
p99 over 2000 runs after 200 warm-up runs, for torch eager fp32, onnxruntime fp32 and onnxruntime int8
(encoder + head sessions, fp32 and int8 timed call by call in alternation), and the encoder alone with
inputs and outputs bound once as the runtime runs it on the device; all in this run on this machine.

    python benchmarks/export.py [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def timeit(fn, x_list, warmup=200, runs=2000) -> dict:
    for i in range(warmup):
        fn(x_list[i % len(x_list)])
    ts = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn(x_list[i % len(x_list)])
        ts[i] = time.perf_counter() - t0
    return {"median_ms": float(np.median(ts) * 1e3), "p99_ms": float(np.percentile(ts, 99) * 1e3)}


def timeit_pair(fn_a, fn_b, x_list, warmup=200, runs=2000) -> tuple[dict, dict]:
    """Two functions timed call by call in alternation, so a change of machine speed hits both alike."""
    for i in range(warmup):
        fn_a(x_list[i % len(x_list)])
        fn_b(x_list[i % len(x_list)])
    ta, tb = np.empty(runs), np.empty(runs)
    for i in range(runs):
        x = x_list[i % len(x_list)]
        t0 = time.perf_counter()
        fn_a(x)
        t1 = time.perf_counter()
        fn_b(x)
        tb[i], ta[i] = time.perf_counter() - t1, t1 - t0
    stat = lambda t: {"median_ms": float(np.median(t) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3)}  # noqa: E731
    return stat(ta), stat(tb)


def bound_encoder(bundle_path: Path, precision: str):
    """The encoder run the way the runtime runs it on the device (its own session and io binding, one thread)."""
    from edgessl.edge_runtime.runtime import GestureRuntime

    rt = GestureRuntime(bundle_path, precision=precision)

    def run(x):
        np.copyto(rt._in_buf, x)
        rt._run_bound(*rt._run_args)

    return run


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
        return [f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")]
    except (OSError, StopIteration):
        return []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="an existing finetune folder (default: train one)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "export.json"))
    a = ap.parse_args()
    import torch
    from reference_model import train_reference

    from edgessl.edge_runtime.bundle import ENCODER_FP32, ENCODER_INT8, HEAD, open_bundle
    from edgessl.export.onnx_export import load_model
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.export.verify import session
    from edgessl.trainer.data import DataConfig, labelled

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as td:
        model_dir = Path(a.model) if a.model else train_reference(Path(td) / "reference")
        b32, b8 = Path(td) / "fp32.essl", Path(td) / "int8.essl"
        m8 = export_bundle(model_dir, b8, ExportConfig(), progress=False)
        export_bundle(model_dir, b32, ExportConfig(keep_fp32=True), progress=False)
        size_int8 = b8.stat().st_size
        size_both = b32.stat().st_size
        bundle = open_bundle(b32)
        fp32_only = len(bundle.members[ENCODER_FP32]) + len(bundle.members[HEAD])
        model, info = load_model(model_dir)
        _, _, X = labelled(DataConfig.from_dict(info["config"]["data"]))
        xs = [X[i : i + 1].astype(np.float32) for i in range(256)]
        torch.set_num_threads(1)
        with torch.no_grad():
            t_torch = timeit(lambda x: model(torch.from_numpy(x)), xs)
        s32, s8 = session(bundle.members[ENCODER_FP32]), session(bundle.members[ENCODER_INT8])
        h = session(bundle.members[HEAD])
        t32, t8 = timeit_pair(lambda x: h.run(None, {"embedding": s32.run(None, {"window": x})[0]}),
                              lambda x: h.run(None, {"embedding": s8.run(None, {"window": x})[0]}), xs)  # fmt: skip
        e32, e8 = timeit_pair(bound_encoder(b32, "fp32"), bound_encoder(b32, "int8"), xs)
        v = m8["verification"]
    result = {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "bytes": {"int8_bundle": size_int8, "bundle_with_fp32_kept": size_both, "fp32_encoder_plus_head": fp32_only,
                  "int8_encoder_onnx": len(bundle.members[ENCODER_INT8]), "fp32_encoder_onnx": len(bundle.members[ENCODER_FP32])},  # fmt: skip
        "accuracy": {"fp32": v["accuracy_fp32"], "int8": v["accuracy_int8"], "top1_agreement": v["top1_agreement"],
                     "max_logit_difference": v["max_logit_difference"], "test_windows": v["windows"]},  # fmt: skip
        "latency_batch1_one_thread": {"torch_eager_fp32": t_torch, "onnxruntime_fp32": t32, "onnxruntime_int8": t8,
                                      "int8_over_fp32_median": t8["median_ms"] / t32["median_ms"],
                                      "encoder_io_bound_fp32": e32, "encoder_io_bound_int8": e8,
                                      "encoder_io_bound_int8_over_fp32_median": e8["median_ms"] / e32["median_ms"]},  # fmt: skip
        "quantized_nodes": v["int8_nodes"],
        # the configuration the default export chose and the validation agreement of every one it tried
        "quantization": m8["quantization"],
        "model": {"data": info["config"]["data"], "fit": info["config"]["fit"], "labels": info["config"].get("labels_per_class") or "100% minus validation",
                  "source_metrics": info["metrics"], "trained_by": "this script" if not a.model else f"--model {a.model}"},
        "acceptance": {"int8_within_0.5pt": abs(v["accuracy_fp32"] - v["accuracy_int8"]) <= 0.005,
                       "agreement_ge_99pct": v["top1_agreement"] >= 0.99, "int8_bundle_le_150KB": size_int8 <= 150_000,
                       "int8_latency_le_0.6x_fp32": t8["median_ms"] / t32["median_ms"] <= 0.6},  # fmt: skip
        "machine": {"cpu": platform.processor() or platform.machine(), "flags": cpu_flags(),
                    "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__},  # fmt: skip
    }
    try:
        result["machine"]["model_name"] = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo"],
                                                         capture_output=True, text=True).stdout.split(":")[-1].strip()  # fmt: skip
    except OSError:
        pass
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
