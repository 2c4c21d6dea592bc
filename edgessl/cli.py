"""The ``edgessl`` command line. Each subcommand lives with its subpackage; this file only wires them.

Subcommands must import their heavy dependencies (torch, onnxruntime, scipy.signal) inside their
handlers, so ``edgessl --help`` and ``edgessl --version`` work on a base install without torch; a command
that needs torch there fails with one line naming the extra to install. ``main`` is the error boundary:
see ``edgessl.errors`` and docs/errors.md.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgessl import __version__
from edgessl.errors import ExitCode, classify

Register = Callable[[argparse._SubParsersAction], None]


# options of round 1 that became config keys (``--config FILE``, docs/cli.md) or were removed, measured to give nothing
FORMER_OPTIONS = {
    **{f"--{k.replace('_', '-')}": f"fit.{k}" for k in ("batch_size", "lr", "weight_decay", "warmup_epochs", "grad_clip")},
    **{f"--{k.replace('_', '-')}": k for k in ("val_fraction", "val_groups", "split_seed", "mode", "ssl_weight",
                                               "pseudo_fraction", "consistency_threshold", "unlabelled",
                                               "unlabelled_ratio", "refit")},  # fmt: skip
    "--encoder": "encoder.kind", "--widths": "encoder.widths", "--self-train": "self_train_rounds",
    "--consistency": "consistency_weight", "--rotate": "rotate_degrees (pretrain: method.rotate_degrees)",
    "--mixup": "mixup_alpha", "--stream-window": "data.stream_window", "--temperature": "method.temperature",
    "--codebook-size": "method.codebook_size", "--exclude-class": "exclude_classes", "--descriptions": "descriptions",
}  # fmt: skip
# what other tools call some config keys
OTHER_NAMES = {"--learning-rate": "fit.lr", "--batch": "fit.batch_size"}
REMOVED_OPTIONS = ("--sam", "--ema", "--integrate", "--teacher", "--gan-generator", "--gan-fraction", "--test-adapt-groups")


def _former(option: str) -> str | None:
    """What became of a round-1 option, or None."""
    if option in FORMER_OPTIONS:
        return f"{option} is now the config key {FORMER_OPTIONS[option]}: give it in --config FILE (docs/cli.md)"
    if option in OTHER_NAMES:
        return f"{option} is the config key {OTHER_NAMES[option]}: give it in --config FILE (docs/cli.md)"
    if option == "--no-standardize":
        return "--no-standardize is now --standardize none"
    if option in REMOVED_OPTIONS or option.startswith("--distill"):
        return f"{option} was removed: measured to give nothing (docs/results.md)"
    return None


class CliParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line naming the command, and a mistyped option.

    argparse reports a missing required option before an unknown one (``--prot`` for ``--port`` reads as
    "--port is required"), and a subcommand's unknown options with the top-level usage.
    """

    argv: list[str] = []  # what main() parses; set before parsing

    def error(self, message: str) -> None:  # type: ignore[override]
        parser = self._command_parser()
        known = {o for a in parser._actions for o in a.option_strings} | {o for a in self._actions for o in a.option_strings}
        unknown = [a.split("=", 1)[0] for a in self.argv
                   if a.startswith("-") and a != "-" and not re.fullmatch(r"-\d.*", a) and a.split("=", 1)[0] not in known]  # fmt: skip
        former = [f for f in map(_former, unknown) if f]
        if former and parser.prog.split()[-1] in ("finetune", "pretrain", "evaluate"):
            parser.exit(int(ExitCode.USAGE), f"{parser.prog}: error: {'; '.join(former)}\n")
        if unknown:
            opts = sorted({o for a in parser._actions for o in a.option_strings if o.startswith("--")})
            named = []
            for u in unknown:
                close = difflib.get_close_matches(u, opts, n=1, cutoff=0.6)
                named.append(u + (f" (did you mean {close[0]}?)" if close else ""))
            parser.exit(int(ExitCode.USAGE), f"{parser.prog}: error: unknown option {', '.join(named)}; "
                                             f"see {parser.prog} --help\n")  # fmt: skip
        # one line, as every other error (argparse would print the whole usage first)
        parser.exit(int(ExitCode.USAGE), f"{parser.prog}: error: {message}; see {parser.prog} --help\n")

    def _command_parser(self) -> argparse.ArgumentParser:
        """The (sub)command parser the argv selects, from this parser down."""
        parser: argparse.ArgumentParser = self
        while True:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not subs:
                return parser
            nxt = next((subs[0].choices[t] for t in self.argv if t in subs[0].choices), None)
            if nxt is None:
                return parser
            parser = nxt


def _cmd_data_info(args: argparse.Namespace) -> int:
    from edgessl.datasets import StreamDataset, WindowDataset, describe, load

    ds = load(args.spec)
    print(ds.summary())
    sessions = describe(ds) if isinstance(ds, StreamDataset) and "input_mode" in ds.extra else None
    if sessions is not None:
        _print_sessions(sessions)
    windows = _window_counts(ds) if isinstance(ds, WindowDataset) else None
    if windows is not None:
        _print_window_counts(windows)
    labelled = _stream_label_seconds(ds) if isinstance(ds, StreamDataset) and sessions is None else None
    if labelled:  # a stream file's labels (a walkthrough had to read HAPT's activities from the arrays)
        print("labelled seconds per class: " + ", ".join(f"{c} {v:g}" for c, v in labelled.items()))
    if args.json:
        if isinstance(ds, StreamDataset):
            info = {"kind": "stream", "recordings": ds.n_recordings, "samples": int(ds.signal.shape[1])}
        else:
            info = {"kind": "windows", "train": list(ds.X_train.shape), "test": list(ds.X_test.shape)}
        info.update(channels=ds.channel_names, units=ds.channel_units, classes=ds.class_names, rate_hz=ds.rate_hz)
        if sessions is not None:
            info.update(sessions)
        if windows is not None:
            info.update(windows)
        if labelled:
            info.update(labelled_seconds=labelled)
        print(json.dumps(info))
    return 0


def _window_counts(ds: Any) -> dict[str, Any]:  # (a WindowDataset, typed Any: the loaders load on demand)
    """A window data set's counts per class and per group (subject, day ...) in each split, and which groups
    are on both sides: a test split that shares its people with training measures no new person (a
    walkthrough read the UCR uWave file's test figure as one; all 8 subjects are in both)."""
    import numpy as np

    per_class = {name: [int((ds.y_train == c).sum()), int((ds.y_test == c).sum())] for c, name in enumerate(ds.class_names)}
    groups: dict[str, Any] = {}
    for key, (tr, te) in ds.groups.items():
        a, b = set(np.asarray(tr).tolist()), set(np.asarray(te).tolist())
        groups[key] = {"train": len(a), "test": len(b), "both": sorted(int(g) for g in a & b)}
    return {"per_class_train_test": per_class, "groups": groups}


def _stream_label_seconds(ds: Any) -> dict[str, float]:
    """A stream's labelled time per class in seconds (per-sample or per-recording labels; samples without a
    label and a stream without a rate: nothing)."""
    import numpy as np

    if not ds.rate_hz:
        return {}
    if ds.sample_labels is not None:
        counts = np.bincount(ds.sample_labels[ds.sample_labels >= 0], minlength=len(ds.class_names))
    elif ds.recording_labels is not None:
        lengths = np.diff(ds.offsets)
        keep = ds.recording_labels >= 0
        counts = np.bincount(ds.recording_labels[keep], weights=lengths[keep], minlength=len(ds.class_names))
    else:
        return {}
    return {name: round(float(n) / ds.rate_hz, 1) for name, n in zip(ds.class_names, counts, strict=False) if n}


def _print_window_counts(d: dict[str, Any]) -> None:
    print("per class (train/test): " + ", ".join(f"{c} {a}/{b}" for c, (a, b) in d["per_class_train_test"].items()))
    for key, g in d["groups"].items():
        both = g["both"]
        print(f"{key}: {g['train']} in train, {g['test']} in test" + (f", {len(both)} in both" if both else ", none in both"))
    subject = d["groups"].get("subject") or d["groups"].get("user")
    if subject and subject["both"]:
        print(f"note: the test split shares {len(subject['both'])} of its {subject['test']} people with the training "
              "split: its figure is not one for a new person (a dir: folder with a subfolder per person is split by "
              "person: docs/data.md)")
    elif subject is None:
        print("note: no per-person ids in this file: whether the test split holds new people is not known")


def _print_sessions(d: dict) -> None:
    """The counts of a session data set (``describe``) as a few readable lines; warnings last."""
    print(f"input: {d['input_mode']} windows of {d['length']} samples; {d['performances']} labelled performances"
          + (f" (+{d['flagged']} flagged, left out)" if d["flagged"] else "")
          + (f"; {d['bridged_holes']} short gap(s) filled by interpolation as edgessl run does live (the sample "
             "counts below include them)"
             if d.get("bridged_holes") else ""))  # fmt: skip
    for note in d.get("notes", []):
        print(f"note: {note}")
    if d["per_class"]:
        print("per class: " + ", ".join(f"{c} {n}" for c, n in d["per_class"].items()))
    for name, u in d["per_user"].items():
        print(f"user {name}: {u['sessions']} session(s), {u['performances']} performances")
    for name, s in d["per_session"].items():
        flagged = f", {s['flagged']} flagged" if s["flagged"] else ""
        what = (f"{s['performances']} performances" if s["performances"] or s["flagged"]
                else "unlabelled (for pretraining, which cuts its movements)")  # fmt: skip
        print(f"session {name} (user {s['user']}): {s['samples']} samples, {what}{flagged}")
    if "split" in d:
        sp = d["split"]
        print(f"split by {sp['by']}: {sp['train']} train / {sp['test']} test windows"
              + (f"; test users {sp['test_users']}" if sp["by"] == "user" else "")
              + (f"; test sessions {sp['test_sessions']}" if sp["by"] == "session" else "")
              + ("; test: the sessions in testing/" if sp["by"] == "folder" else ""))  # fmt: skip
    for w in d["warnings"]:
        print(f"warning: {w}")


def _cmd_synth(args: argparse.Namespace) -> int:
    import numpy as np

    from edgessl.datasets import write_csv_recording
    from edgessl.synthetic import SyntheticConfig, make_dataset, make_stream

    cfg = SyntheticConfig(seed=args.seed, rate_hz=args.rate, length=args.length, windowing=args.windowing)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = make_dataset(cfg)
    np.savez_compressed(
        out / "synthetic.npz", X_train=ds.X_train, y_train=ds.y_train, X_test=ds.X_test, y_test=ds.y_test,
        subject_train=ds.groups["subject"][0], subject_test=ds.groups["subject"][1],
        class_names=np.array(ds.class_names), channel_names=np.array(ds.channel_names),
        channel_units=np.array(ds.channel_units),
    )  # fmt: skip
    st = make_stream(cfg, n_gestures=args.stream_gestures)
    write_csv_recording(out / "synthetic_stream.csv", st.signal, cfg.rate_hz, st.channel_names)
    np.savetxt(out / "synthetic_stream_events.csv", st.extra["events"], fmt="%d", delimiter=",",
               header="start_sample,end_sample,label", comments="")  # fmt: skip
    print(ds.summary())
    print(f"stream: {st.signal.shape[1]} samples at {cfg.rate_hz:g} Hz with {len(st.extra['events'])} gestures")
    print(f"wrote {out / 'synthetic.npz'}, {out / 'synthetic_stream.csv'}, {out / 'synthetic_stream_events.csv'}")
    return 0


def _register_core(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect a dataset spec (npz:PATH, ucr:PATH, har:DIR, csv:PATH, dir:PATH, synthetic)")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    pi = dsub.add_parser("info", help="print a summary of a dataset")
    pi.add_argument("spec", help="dataset spec, e.g. synthetic or npz:uwave_gesture_ucr.npz")
    pi.add_argument("--json", action="store_true", help="also print a JSON line")
    pi.set_defaults(func=_cmd_data_info)

    p = sub.add_parser("synth", help="write the synthetic IMU gesture data set and a continuous stream")
    p.add_argument("--out", default="synthetic_data", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=100.0, help="sample rate in Hz")
    p.add_argument("--length", type=int, default=128, help="window length in samples")
    p.add_argument("--windowing", choices=["resample", "fixed"], default="resample")
    p.add_argument("--stream-gestures", type=int, default=40)
    p.set_defaults(func=_cmd_synth)


def _registrars() -> list[Register]:
    regs: list[Register] = [_register_core]
    from edgessl import demo
    from edgessl.edge_runtime import cli as runtime_cli
    from edgessl.edge_runtime import enroll_cli
    from edgessl.edge_runtime import monitor as monitor_cli
    from edgessl.export import cli as export_cli
    from edgessl.firmware_bridge import devices as devices_cli
    from edgessl.firmware_bridge import record as record_cli
    from edgessl.firmware_bridge import simulator
    from edgessl.trainer import cli as trainer_cli  # imports torch only inside its handlers

    regs += [trainer_cli.register, export_cli.register, runtime_cli.register, monitor_cli.register,
             simulator.register, devices_cli.register, record_cli.register, enroll_cli.register, demo.register]  # fmt: skip
    return regs


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="edgessl", description="Self-supervised IMU gesture recognition, from unlabeled data to a live device."
    )
    parser.add_argument("--version", action="version", version=f"edgessl {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback when a command fails (give it first: edgessl --debug run ...)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for reg in _registrars():
        reg(sub)
    return parser


def _command(args: argparse.Namespace) -> str:
    """``run``, or ``data info`` for a nested subcommand (its dest ends in ``_cmd``)."""
    nested = [v for k, v in vars(args).items() if k.endswith("_cmd") and isinstance(v, str)]
    return " ".join([args.command, *nested])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes one stderr line and an exit code (docs/errors.md)."""
    try:
        parser = build_parser()
        CliParser.argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C in the first moments (the commands' modules loading): no traceback
        print("edgessl: interrupted", file=sys.stderr, flush=True)
        return int(ExitCode.INTERRUPTED)
    if not getattr(args, "func", None):
        parser.print_help()
        return int(ExitCode.USAGE)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # whoever read stdout has gone (`edgessl run --json | head -1`): stop quietly, as a shell pipeline does
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
    except (Exception, KeyboardInterrupt) as e:
        code, message = classify(e)
        if args.debug:
            traceback.print_exc()
        lead = "" if code == ExitCode.INTERRUPTED else "error: "
        print(f"edgessl {_command(args)}: {lead}{message}", file=sys.stderr, flush=True)
        return int(code)


if __name__ == "__main__":
    sys.exit(main())
