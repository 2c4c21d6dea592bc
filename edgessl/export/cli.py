"""``edgessl export``, ``edgessl export-c`` and ``edgessl verify``."""

from __future__ import annotations

import argparse
import json
import sys

from edgessl.errors import DataError, ModelError


def _cmd_export(a: argparse.Namespace) -> int:
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.export.quantize import CalibrationMethod, QuantizeConfig
    from edgessl.trainer.run_dir import check_out_file

    c_dir = None
    if a.target == "c":
        # --out is the folder of the C library; the bundle it is generated from is kept there too
        from edgessl.export.c_model import check_out_dir

        c_dir = check_out_dir(a.out, a.force)
        c_dir.mkdir(exist_ok=True)
        a.out = str(c_dir / "model.essl")
    check_out_file(a.out, force=a.force)
    # either flag given: exactly that configuration; neither: the automatic choice (ExportConfig.quantize)
    given = a.method is not None or a.per_channel
    quant = QuantizeConfig(CalibrationMethod(a.method or "minmax"), a.per_channel) if given else None
    cfg = ExportConfig(quant, a.keep_fp32, a.min_agreement, a.calibration, a.stride, a.rate, a.name, a.input_mode)
    export_bundle(a.checkpoint_dir, a.out, cfg, force=a.force)  # a refusal (ExportError) is a model error at the CLI boundary
    if c_dir is not None:
        from edgessl.export.c_model import describe, export_c

        print(describe(export_c(a.out, c_dir, force=a.force), str(c_dir)))
    return 0


def _cmd_export_c(a: argparse.Namespace) -> int:
    from edgessl.export.c_model import describe, export_c

    print(describe(export_c(a.bundle, a.out, force=a.force, state=a.state), a.out))
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from edgessl.datasets.folder import sliding_spec
    from edgessl.edge_runtime.bundle import ENCODER_FP32, ENCODER_INT8, HEAD, open_bundle
    from edgessl.export.verify import compare, decision_scores, gate_report
    from edgessl.preprocess import roughness
    from edgessl.trainer.data import DataConfig, labelled, match_only

    b = open_bundle(a.bundle)
    spec = a.data
    # recordings are read as the bundle reads a stream: a sliding bundle's as its windows (a walkthrough gave the
    # spec it trained with, which --recipe activities had read so, and was refused for classes cut as gestures)
    if b.manifest["input_mode"] == "sliding" and b.rate_hz and (new := sliding_spec(spec, f"{b.window / b.rate_hz:g}s")):
        print(f"note: {spec} read as {new} (the bundle's sliding windows)", file=sys.stderr, flush=True)
        spec = new
    cfg = DataConfig(spec=spec, channels=tuple(b.channels), preprocess=b.manifest["preprocessing"],
                     length=b.window)  # fmt: skip
    ds, Xtr, X = labelled(cfg)
    check_data_fits(a.bundle, b.labels, b.channels, spec, ds.class_names, list(ds.channel_names))
    if a.all:  # recordings the model never saw (new people): every labelled window, not only the test split
        ds = dataclasses.replace(ds, X_test=np.concatenate([ds.X_train, ds.X_test]),
                                 y_test=np.concatenate([ds.y_train, ds.y_test]))  # fmt: skip
        X = np.concatenate([Xtr, X])
    if ENCODER_FP32 in b.members:
        r = compare(b.members[ENCODER_FP32], b.members[ENCODER_INT8], b.members[HEAD], X.astype(np.float32), ds.y_test)
    else:  # what the device runs, scored; the comparison needs the fp32 encoder, which export leaves out by default
        p, _ = decision_scores(b.members[ENCODER_INT8], b.members[HEAD], b.adaptation()["prototypes"], X)
        r = {"windows": len(X), "top1_agreement": None, "accuracy_int8": float((p.argmax(1) == ds.y_test).mean()),
             "fp32": "not in the bundle: int8 alone is scored (export --keep-fp32 to compare the two)"}  # fmt: skip
    r["data"] = f"{'every labelled window' if a.all else 'the test split'} of {spec} ({len(X)} windows)"
    m = b.manifest
    # the noise gate scores the windows in their source units, before preprocessing (as the runtime does)
    rough = roughness(match_only(ds.X_test, ds.rate_hz, cfg)) if m.get("roughness_threshold") is not None else None
    r["decisions"] = gate_report(b.members[ENCODER_INT8], b.members[HEAD], b.adaptation()["prototypes"],
                                 m.get("confidence_threshold", 0.5), m.get("ood_threshold"), X, ds.y_test,
                                 rough, m.get("roughness_threshold"))  # fmt: skip
    print(json.dumps(r, indent=2))
    if r["top1_agreement"] is not None and r["top1_agreement"] < a.min_agreement:
        raise ModelError(f"{a.bundle}: int8/fp32 top-1 agreement {r['top1_agreement']:.4f} is below "
                         f"--min-agreement {a.min_agreement}")
    return 0


def check_data_fits(bundle: str, labels: list[str], channels: list[str], spec: str, classes: list[str],
                    data_channels: list[str]) -> None:
    """Refuse to score a bundle on data of other classes or channels (its accuracy there would mean nothing).

    Raises:
        DataError: naming both class lists, or both channel lists.
    """
    if list(classes) != list(labels):
        raise DataError(f"{spec} has classes {list(classes)} but {bundle} predicts {list(labels)}; verify needs a data "
                        "set of the bundle's classes, in its order")  # fmt: skip
    if list(data_channels) != list(channels):
        raise DataError(f"{spec} gives channels {list(data_channels)} but {bundle} takes {list(channels)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="fine-tuned model -> int8 ONNX bundle, verified against fp32 (needs [train])")
    p.add_argument("checkpoint_dir", help="the folder written by `edgessl finetune` (holds model.pt)")
    p.add_argument("--out", required=True, help="bundle path, e.g. model.essl")
    p.add_argument("--force", action="store_true", help="replace an existing file at --out (default: refuse)")
    p.add_argument("--calibration", default=None, help="dataset spec for calibration (default: saved training windows)")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default=None,
                   help="activation calibration; giving it (or --per-channel) quantizes exactly as asked (default: "
                        "automatic, the best of a few configurations on the model's validation windows, recorded "
                        "in the manifest)")
    p.add_argument("--per-channel", action="store_true",
                   help="per-channel weight scales, no automatic choice (default: automatic)")
    p.add_argument("--keep-fp32", action="store_true", help="also store the fp32 encoder (for `edgessl verify`'s int8/fp32 comparison)")
    p.add_argument("--min-agreement", type=float, default=0.99, help="refuse below this int8/fp32 top-1 agreement")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride in samples (default window/4)")
    p.add_argument("--rate", type=float, default=None, help="stream sample rate the device delivers (Hz; default: the training windows' rate, or the rate "
                        "recorded takes were recorded at, else 100)")
    p.add_argument("--name", default=None, help="model name for the manifest")
    p.add_argument("--input-mode", choices=["auto", "segment", "sliding"], default="auto",
                   help="how the runtime makes model inputs from a stream: segment gestures by motion energy and "
                        "stretch each to the window, or slide fixed windows (auto: segment when the training "
                        "windows had no sampling rate)")
    p.add_argument("--target", choices=["bundle", "c"], default="bundle",
                   help="bundle: the .essl file at --out; c: also the model and its stream segmentation as a C99 "
                        "library for a microcontroller, in the folder --out (with the bundle as model.essl)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("export-c", help="bundle -> dependency-free C99 library (model + live segmentation) for a "
                                        "microcontroller")
    p.add_argument("bundle", help="an .essl bundle (segment input mode)")
    p.add_argument("--out", required=True, help="folder for essl_model.[ch], essl_stream.[ch], essl_model_info.json")
    p.add_argument("--force", action="store_true",
                   help="replace those files if a previous export left them there (default: refuse)")
    p.add_argument("--state", default=None,
                   help="a user state of this bundle (edgessl enroll --calibrate's): the C stream turns the board "
                        "the way the state found it mounted, and cuts as the state does")  # fmt: skip
    p.set_defaults(func=_cmd_export_c)
    p = sub.add_parser("verify", help="score a bundle on a dataset's test split: int8 accuracy, the share its "
                                      "decisions answer unknown, and (exported with --keep-fp32) int8/fp32 agreement",
                       description="Prints JSON: accuracy_int8 (the top answer, every window), rejection_rate (the "
                                   "share the bundle's gates answer 'unknown', by reason in unknown_*), "
                                   "accuracy_with_gates (the share answered right: an 'unknown' is never right), "
                                   "top1_agreement (int8 vs fp32; null without --keep-fp32).")  # fmt: skip
    p.add_argument("bundle", help="an .essl bundle")
    p.add_argument("--data", required=True, help="dataset spec of the bundle's classes (docs/data.md)")
    p.add_argument("--all", action="store_true",
                   help="score every labelled window of --data, not only its test split: for recordings the model "
                        "never saw (new people, a new session)")  # fmt: skip
    p.add_argument("--min-agreement", type=float, default=0.99,
                   help="exit 4 below this int8/fp32 top-1 agreement (bundles exported with --keep-fp32)")
    p.set_defaults(func=_cmd_verify)
