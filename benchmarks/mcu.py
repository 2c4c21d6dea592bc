"""Microcontroller export benchmark: the reference uWave model as C, against onnxruntime, and its Cortex-M4 size.
Writes benchmarks/results/mcu.json.

Protocol: the reference model of benchmarks/reference_model.py (63-sample windows), exported with `edgessl
export`'s defaults, then `edgessl export-c`. On the 3582 UCR test gestures stretched to 63 samples: top-1
agreement of the C model (host build, gcc -O2) with onnxruntime's int8 encoder + the bundle's head, and the
share of windows whose embedding is within one quantization step (the scale of the int8 tensor it averages)
of onnxruntime's (fused, as the runtime runs it, and op by op). Host time per window: the C model over the
first 500 windows, median of 5 passes. Streaming: 8 users' UCR test templates with synthesized idle
between them (benchmarks/runtime.py make_spotting_streams, 40 per user), pushed sample by sample into
essl_stream and fed to GestureRuntime (segment mode, unknown reported, frames of 10): the same events?
Sizes: arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16, arm-none-eabi-size
-A of the library objects (flash = .text + .rodata + .data, RAM = .data + .bss, the arena is .bss) plus the
caller-owned essl_stream_t; and a linked image with newlib-nano's libm (what expf/sqrtf/lrintf add).

Needs gcc, and for the sizes the distribution's cross compiler:
`apt-get update && apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi`.

    python benchmarks/mcu.py [--model DIR | --bundle FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.export.c_harness: the host programs

from edgessl.datasets import load_stream, load_windows  # noqa: E402
from edgessl.edge_runtime.bundle import ENCODER_INT8, open_bundle  # noqa: E402
from edgessl.export.c_model import cflags_strict, export_c  # noqa: E402
from edgessl.preprocess import resample_to_length  # noqa: E402
from tests.export.c_harness import RUN_MODEL, RUN_STREAM, build, run_model, run_stream  # noqa: E402

ARM_FLAGS = ["-std=c99", "-Os", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
             "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror", "-pedantic"]  # fmt: skip

TIME_MODEL = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "essl_model.h"

int main(int argc, char **argv)
{
    static float w[500][ESSL_MODEL_CHANNELS * ESSL_MODEL_LENGTH];
    float logits[ESSL_MODEL_CLASSES];
    struct timespec a, b;
    size_t n, i;
    int pass;
    FILE *in;
    if (argc != 2 || (in = fopen(argv[1], "rb")) == NULL) return 2;
    n = fread(w, sizeof w[0], 500, in);
    fclose(in);
    for (pass = 0; pass < 6; ++pass) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (i = 0; i < n; ++i) essl_model_run(w[i], logits, NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (pass > 0) printf("%.3f\n", ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / (double)n);
    }
    return 0;
}
"""

# a firmware-shaped user of the library for the linked image: its state static, one sample pushed
APP = r"""
#include "essl_stream.h"

essl_stream_t essl_app_state;
volatile float essl_app_in[ESSL_MODEL_CHANNELS];
volatile int32_t essl_app_out;

int main(void)
{
    float x[ESSL_MODEL_CHANNELS];
    essl_event_t ev;
    uint32_t t = 0;
    int32_t c;
    essl_stream_init(&essl_app_state);
    for (;;) {
        for (c = 0; c < ESSL_MODEL_CHANNELS; ++c) x[c] = essl_app_in[c];
        if (essl_stream_push(&essl_app_state, x, t, &ev) == ESSL_STREAM_EVENT) essl_app_out = ev.label;
        t += 10u;
    }
}
"""


def agreement(bundle: Path, lib: Path, info: dict, X: np.ndarray) -> dict:
    import onnxruntime as ort

    b = open_bundle(bundle)
    exe = build(lib, RUN_MODEL, "run_model", ["essl_model.c"])
    logits, emb = run_model(exe, X, len(b.labels), info["embedding_dim"])
    p = b.adaptation()
    W, bias = p["head_weight"].astype(np.float32), p["head_bias"].astype(np.float32)
    out = {"windows": len(X)}
    for name, level in (("onnxruntime", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                        ("onnxruntime_op_by_op", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):  # fmt: skip
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        s = ort.InferenceSession(b.members[ENCODER_INT8], so, providers=["CPUExecutionProvider"])
        e = s.run(None, {s.get_inputs()[0].name: X})[0]
        lg = e @ W.T + bias
        d = np.abs(emb - e).max(axis=1) / info["embedding_step"]
        out[name] = {"top1_agreement": float((logits.argmax(1) == lg.argmax(1)).mean()),
                     "within_one_step": float((d <= 1.001).mean()), "identical": float((d < 1e-4).mean()),
                     "max_steps": float(d.max()), "max_abs_logit_difference": float(np.abs(logits - lg).max())}  # fmt: skip
    return out


def host_time(lib: Path, X: np.ndarray) -> dict:
    (lib / "time_model.c").write_text(TIME_MODEL)
    exe = lib / "time_model"
    cc = shutil.which("gcc") or "cc"
    subprocess.run([cc, *cflags_strict(), "-O2", "-I", str(lib), "-o", str(exe), str(lib / "time_model.c"),
                    str(lib / "essl_model.c"), "-lm"], check=True)  # fmt: skip
    np.ascontiguousarray(X[:500], np.float32).tofile(lib / "time.bin")
    us = [float(x) for x in subprocess.run([str(exe), str(lib / "time.bin")], capture_output=True, text=True,
                                           check=True).stdout.split()]  # fmt: skip
    return {"median_us_per_window": float(np.median(us)), "passes_us": us, "compiler": f"{cc} -O2",
            "cpu": platform.processor() or platform.machine()}  # fmt: skip


def streaming(bundle: Path, lib: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from runtime import make_spotting_streams

    from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime

    exe = build(lib, RUN_STREAM, "run_stream", ["essl_model.c", "essl_stream.c"])
    streams = make_spotting_streams(load_stream("npz:uwave_raw.npz"), np.random.default_rng(0), max_per_user=40)
    n_c = n_py = same_label = same_times = 0
    for sig, _, _ in streams:
        x = sig.T.astype(np.float32)
        t = np.arange(len(x)) * 10
        c_ev, _ = run_stream(exe, x, t.astype(np.uint32))
        with GestureRuntime(bundle, decision=DecisionConfig(report_unknown=True)) as rt:
            py = []
            for i in range(0, len(x), 10):
                py += rt.feed(x[i : i + 10], t[i : i + 10] / 1000.0)
            labels = rt.labels
        n_c, n_py = n_c + len(c_ev), n_py + len(py)
        for c, p in zip(c_ev, py, strict=False):
            same_label += c[0] == (labels.index(p.label) if p.label in labels else -1)
            same_times += abs(c[1] - p.window_start * 1e3) <= 10 and abs(c[2] - p.window_end * 1e3) <= 10
    return {"streams": len(streams), "events_c": n_c, "events_python": n_py, "same_label": same_label,
            "same_times_within_one_sample": same_times}  # fmt: skip


def arm_sizes(lib: Path) -> dict:
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if gcc is None or size is None:
        return {
            "skipped": "arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
        }
    (lib / "app.c").write_text(APP)
    objs = {}
    for name in ("essl_model", "essl_stream", "app"):
        subprocess.run([gcc, *ARM_FLAGS, "-I", str(lib), "-c", str(lib / f"{name}.c"), "-o", str(lib / f"{name}.o")],
                       check=True)  # fmt: skip
        objs[name] = sections(size, lib / f"{name}.o")
    lib_flash = sum(objs[n].get(s, 0) for n in ("essl_model", "essl_stream") for s in (".text", ".rodata", ".data"))
    lib_ram = sum(objs[n].get(s, 0) for n in ("essl_model", "essl_stream") for s in (".data", ".bss"))
    state = objs["app"].get(".bss", 0)  # essl_stream_t essl_app_state (+ 16 bytes of the app's volatiles)
    out = {"flags": " ".join(ARM_FLAGS), "compiler": subprocess.run([gcc, "--version"], capture_output=True,
                                                                    text=True).stdout.splitlines()[0],
           "objects": objs, "library_flash_bytes": lib_flash, "library_ram_bytes": lib_ram,
           "stream_state_bytes": state, "flash_bytes": lib_flash, "ram_bytes": lib_ram + state}  # fmt: skip
    elf = lib / "app.elf"
    r = subprocess.run([gcc, *ARM_FLAGS, "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
                        "-o", str(elf), *(str(lib / f"{n}.o") for n in ("app", "essl_model", "essl_stream")), "-lm"],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode == 0:
        s = subprocess.run([size, str(elf)], capture_output=True, text=True, check=True).stdout.splitlines()[1].split()
        out["linked_image"] = {"text": int(s[0]), "data": int(s[1]), "bss": int(s[2]),
                               "note": "app + library + newlib-nano libm/libc + startup; bss includes the state"}  # fmt: skip
    else:
        out["linked_image"] = {"error": r.stderr[-300:]}
    return out


def sections(size: str, obj: Path) -> dict[str, int]:
    """``{.text, .rodata, .data, .bss}`` bytes of an object, summing the per-function/-data subsections."""
    out: dict[str, int] = {}
    for line in subprocess.run([size, "-A", str(obj)], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            base = next(
                (b for b in (".text", ".rodata", ".data", ".bss") if parts[0] == b or parts[0].startswith(b + ".")),
                None,
            )
            if base:
                out[base] = out.get(base, 0) + int(parts[1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="a finetune folder (default: train the reference model)")
    ap.add_argument("--bundle", default=None, help="an exported bundle of the reference model (skips training)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mcu.json"))
    a = ap.parse_args()
    res: dict = {"protocol": __doc__.split("\n\n")[1]}
    with tempfile.TemporaryDirectory() as td:
        if a.bundle is None:
            from edgessl.export.pipeline import ExportConfig, export_bundle

            if a.model is None:
                sys.path.insert(0, str(Path(__file__).parent))
                from reference_model import train_reference

                a.model = str(train_reference(Path(td) / "reference"))
            a.bundle = str(Path(td) / "ucr.essl")
            export_bundle(a.model, a.bundle, ExportConfig(), progress=False)
        bundle = Path(a.bundle)
        m = open_bundle(bundle).manifest
        res["model"] = {"source": a.model or a.bundle, "window": m["window"], "labels": m["labels"],
                        "quantization": {k: m["quantization"][k] for k in ("per_channel", "float_layers", "method")},
                        "source_metrics": m.get("source_metrics")}  # fmt: skip
        lib = Path(td) / "c"
        info = export_c(bundle, lib)
        res["export_c"] = {k: info[k] for k in ("weights_bytes", "arena_bytes", "macs", "encoder_macs", "kept_float",
                                                "embedding_step")}  # fmt: skip
        res["export_c"]["stream_state_bytes_estimate"] = info["stream"]["state_bytes_estimate"]
        X = resample_to_length(load_windows("npz:uwave_gesture_ucr.npz").X_test, m["window"]).astype(np.float32)
        res["agreement"] = agreement(bundle, lib, info, X)
        print("agreement", res["agreement"], flush=True)
        res["host_time"] = host_time(lib, X)
        print("host", res["host_time"]["median_us_per_window"], flush=True)
        res["streaming"] = streaming(bundle, lib)
        print("streaming", res["streaming"], flush=True)
        res["cortex_m4"] = arm_sizes(lib)
        print("m4", {k: v for k, v in res["cortex_m4"].items() if k != "objects"}, flush=True)
    ag, m4 = res["agreement"]["onnxruntime"], res["cortex_m4"]
    res["targets"] = {"top1_agreement_ge_0.995": ag["top1_agreement"] >= 0.995,
                      "logits_within_one_step_on_ge_0.99": ag["within_one_step"] >= 0.99,
                      "ram_le_32KB": m4.get("ram_bytes", 1e9) <= 32 * 1024,
                      "flash_le_128KB": m4.get("flash_bytes", 1e9) <= 128 * 1024,
                      "same_stream_events": res["streaming"]["events_c"] == res["streaming"]["events_python"]
                      == res["streaming"]["same_label"] == res["streaming"]["same_times_within_one_sample"]}  # fmt: skip
    res["anchor_tflite_micro_magic_wand"] = {
        "tensor_arena_bytes": 60 * 1024,
        "source": "tensorflow/tflite-micro examples/magic_wand main_functions.cc: kTensorArenaSize = 60 * 1024 "
                  "(RAM for the interpreter's tensors alone; the flatbuffer model and the interpreter code are flash on top)",
    }  # fmt: skip
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["targets"]))


if __name__ == "__main__":
    main()
