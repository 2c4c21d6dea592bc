"""The error policy at the CLI boundary (docs/errors.md): one stderr line, an exit code per class of failure,
a traceback only with ``--debug``; commands that need torch say so on an install without it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zlib

import pytest
import serial

from edgessl import cli
from edgessl.datasets import DataFormatError
from edgessl.edge_runtime.bundle import BundleError
from edgessl.errors import (
    DataError,
    DeviceError,
    EdgesslError,
    ExitCode,
    MissingExtraError,
    ModelError,
    UsageError,
)
from edgessl.firmware_bridge.protocol import BridgeError, DeviceLost, ProtocolError
from edgessl.preprocess import PreprocessError

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from edgessl.cli import main; sys.exit(main(sys.argv[1:]))"


def _decode_error(loads, text: str) -> Exception:
    try:
        loads(text)
    except ValueError as e:
        return e
    raise AssertionError("expected a decode error")


def _missing(name: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(f"No module named {name!r}", name=name)


CASES = [
    (UsageError("--widths: expected 4 positive channel counts; got '1,2'"), ExitCode.USAGE, "--widths"),
    (ValueError("lr must be positive; got -1"), ExitCode.USAGE, "lr must be positive"),
    (FileNotFoundError(2, "No such file or directory", "/nope/run.toml"), ExitCode.USAGE, "/nope/run.toml"),
    (IsADirectoryError(21, "Is a directory", "/tmp"), ExitCode.USAGE, "expected a file, not a folder"),
    (PermissionError(13, "Permission denied", "/root/out"), ExitCode.USAGE, "/root/out: Permission denied"),
    (_decode_error(json.loads, '{"lr": }'), ExitCode.USAGE, "invalid JSON"),
    (DataError("rec.csv:12: expected 4 values, got 3"), ExitCode.DATA, "rec.csv:12"),
    (DataFormatError("x.npz: labels outside class_names"), ExitCode.DATA, "x.npz"),
    (PreprocessError("standardize needs more than ddof=1 samples per channel; got 1"), ExitCode.DATA, "ddof"),
    (ModelError("model.pt: checksum mismatch"), ExitCode.MODEL, "model.pt"),
    (BundleError("m.essl: member head.onnx was tampered with"), ExitCode.MODEL, "head.onnx"),
    (DeviceError("/dev/ttyACM0: no device"), ExitCode.DEVICE, "/dev/ttyACM0"),
    (BridgeError("bridge"), ExitCode.DEVICE, "bridge"),
    (DeviceLost("cannot open /dev/ttyUSB9"), ExitCode.DEVICE, "/dev/ttyUSB9"),
    (ProtocolError("device info has 0 channels"), ExitCode.DEVICE, "0 channels"),
    (serial.SerialException("could not open port /dev/ttyS9"), ExitCode.DEVICE, "/dev/ttyS9"),
    (zlib.error("Error -3 while decompressing data: invalid bit length repeat"), ExitCode.DATA,
     "a compressed archive is damaged"),  # a flipped byte in an .npz member
    (_missing("torch"), ExitCode.MISSING_EXTRA, "pip install '.[train]'"),
    (_missing("matplotlib.pyplot"), ExitCode.MISSING_EXTRA, "training extra (matplotlib)"),
    (_missing("onnxruntime"), ExitCode.MISSING_EXTRA, "'onnxruntime', which is not installed"),
    (ZeroDivisionError("division by zero"), ExitCode.INTERNAL, "re-run with --debug and report"),
    (RuntimeError("line one\nline two"), ExitCode.INTERNAL, "RuntimeError: line one line two"),
    (KeyError("k"), ExitCode.INTERNAL, "this is a bug"),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED, "interrupted"),
]
if sys.version_info >= (3, 11):  # tomllib is 3.11+
    import tomllib

    CASES.append((_decode_error(tomllib.loads, "lr = = 1"), ExitCode.USAGE, "invalid TOML"))


@pytest.fixture
def boom(monkeypatch):
    """A `boom` command whose handler raises whatever the test puts in the returned list."""
    raised: list[BaseException] = []
    original = cli._registrars

    def handler(args: argparse.Namespace) -> int:
        raise raised[0]

    def register(sub: argparse._SubParsersAction) -> None:
        sub.add_parser("boom").set_defaults(func=handler)

    monkeypatch.setattr(cli, "_registrars", lambda: [*original(), register])
    return raised


def _lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


@pytest.mark.parametrize("exc,code,part", CASES, ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CASES)])
def test_each_class_gives_its_code_and_one_line(boom, capsys, exc, code, part):
    boom.append(exc)
    assert cli.main(["boom"]) == code
    captured = capsys.readouterr()
    err = _lines(captured.err)
    assert len(err) == 1, captured.err  # one line, no traceback
    prefix = "edgessl boom: interrupted" if code == ExitCode.INTERRUPTED else "edgessl boom: error: "
    assert err[0].startswith(prefix) and part in err[0], err[0]
    assert captured.out == ""


@pytest.mark.parametrize("exc", [ModelError("m.essl: bad"), ZeroDivisionError("division by zero")])
def test_debug_shows_the_traceback_and_keeps_the_code(boom, capsys, exc):
    boom.append(exc)
    code = cli.main(["--debug", "boom"])
    err = capsys.readouterr().err
    assert code == cli.classify(exc)[0] and code != ExitCode.OK
    assert err.startswith("Traceback (most recent call last):") and "in handler" in err
    assert _lines(err)[-1].startswith("edgessl boom: error: ")


def test_codes_are_distinct_per_class():
    classes = [UsageError, DataError, ModelError, DeviceError, MissingExtraError]
    codes = [c.exit_code for c in classes] + [ExitCode.INTERNAL, ExitCode.INTERRUPTED]
    assert len(set(codes)) == len(codes) and ExitCode.OK not in codes and 1 not in codes
    assert EdgesslError.exit_code == ExitCode.INTERNAL  # raising the bare base is a bug, not a user error


def test_existing_errors_keep_their_builtin_bases():
    """Code that catches ValueError / RuntimeError keeps working after the hierarchy was added."""
    from edgessl.export.pipeline import ExportError

    assert issubclass(BundleError, ModelError) and issubclass(BundleError, ValueError)
    assert issubclass(ExportError, ModelError) and issubclass(ExportError, RuntimeError)
    assert issubclass(PreprocessError, DataError) and issubclass(PreprocessError, ValueError)
    assert issubclass(DeviceLost, DeviceError) and not issubclass(BridgeError, ValueError)


# -- real commands ----------------------------------------------------------------------------------


def _run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgessl", *argv], capture_output=True, text=True, timeout=timeout)


def test_real_commands_map_to_their_class(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,x\n")
    not_a_bundle = tmp_path / "model.essl"
    not_a_bundle.write_bytes(b"\x00" * 64)
    in_mg = tmp_path / "mg.csv"  # a board that prints mg, with the columns named as if in g
    in_mg.write_text("timestamp,accX,accY,accZ\n" + "".join(f"{10 * i},{i % 3},{-i % 5},{1000 + i % 7}\n" for i in range(200)))
    cases = [
        (["data", "info", "bogus:thing"], ExitCode.USAGE, "unknown dataset kind 'bogus'"),
        (["data", "info", f"csv:{tmp_path}"], ExitCode.USAGE, str(tmp_path)),
        (["data", "info", f"csv:{bad_csv}"], ExitCode.DATA, f"{bad_csv}:1"),
        (["run", str(not_a_bundle), "--port", "/dev/null"], ExitCode.MODEL, str(not_a_bundle)),
        (["simulate", "--faults", "bogus=1"], ExitCode.USAGE, "unknown fault 'bogus'"),
        (["simulate", "--faults", "vibration=abc"], ExitCode.USAGE, "expected vibration=EVERY:FOR[:G]"),
        (["simulate", "--speed", "0"], ExitCode.USAGE, "--speed 0: expected a playback speed > 0"),
        (["data", "info", f"csv:{in_mg}"], ExitCode.DATA, "they look like mg (gravity reads 1000); divide them by 1000"),
    ]
    for argv, code, part in cases:
        r = _run(*argv)
        err = _lines(r.stderr)
        assert r.returncode == code, (argv, r.stderr)
        assert len(err) == 1 and err[0].startswith(f"edgessl {argv[0]}") and part in err[0], (argv, r.stderr)
    r = _run("--debug", "run", str(not_a_bundle), "--port", "/dev/null")
    assert r.returncode == ExitCode.MODEL and "Traceback" in r.stderr and "BundleError" in r.stderr


def test_a_missing_port_is_a_device_error(small_bundle, tmp_path):
    port = str(tmp_path / "no-such-tty")
    r = _run("run", str(small_bundle), "--port", port, "--seconds", "1", timeout=60)
    err = _lines(r.stderr)
    assert r.returncode == ExitCode.DEVICE, r.stderr
    assert len(err) == 1 and err[0].startswith("edgessl run: error: ") and port in err[0], r.stderr


@pytest.mark.parametrize("argv", [
    ["pretrain", "--epochs", "1", "--out", "{tmp}/pt"],
    ["finetune", "--epochs", "1", "--out", "{tmp}/ft"],
    ["evaluate", "{tmp}/pt", "--data", "synthetic"],
    ["export", "{tmp}/ft", "--out", "{tmp}/m.essl"],
    ["demo", "--quick", "--out", "{tmp}/demo"],
])  # fmt: skip
def test_training_commands_without_torch_say_so_in_one_line(tmp_path, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *argv], capture_output=True, text=True, timeout=120)
    err = _lines(r.stderr)
    assert r.returncode == ExitCode.MISSING_EXTRA, r.stderr
    assert err == [f"edgessl {argv[0]}: error: needs the training extra (torch), which a device install leaves out: on "
                   "the training box, from a checkout, pip install torch==2.13.0 && pip install '.[train]'"]
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_runtime_commands_still_work_without_torch():
    r = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "run", "--help"], capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0 and "--port" in r.stdout, r.stderr


def test_verify_and_export_refusals_are_model_errors(small_model, small_bundle, tmp_path, capsys):
    data = "synthetic:reps=6,length=128"
    assert cli.main(["verify", str(small_bundle), "--data", data, "--min-agreement", "1.01"]) == ExitCode.MODEL
    captured = capsys.readouterr()
    assert "top1_agreement" in captured.out  # the comparison is still printed
    assert len(_lines(captured.err)) == 1 and "below --min-agreement 1.01" in captured.err
    out = tmp_path / "refused.essl"
    assert cli.main(["export", str(small_model), "--out", str(out), "--min-agreement", "1.01"]) == ExitCode.MODEL
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("edgessl export: error: "), err
    assert not out.exists()  # refused: nothing written


@pytest.mark.parametrize(("argv", "line"), [
    (["record", "--prot", "/tmp/x", "--out", "x"], "edgessl record: error: unknown option --prot (did you mean --port?)"),
    (["finetune", "--data", "synthetic", "--epochs-x", "3", "--out", "o"],
     "edgessl finetune: error: unknown option --epochs-x (did you mean --epochs?)"),
    (["data", "info", "x", "--jsn"], "edgessl data info: error: unknown option --jsn (did you mean --json?)"),
    # round 1's options: what became of them
    (["finetune", "--data", "synthetic", "--val-groups", "user", "--out", "o"],
     "edgessl finetune: error: --val-groups is now the config key val_groups: give it in --config FILE (docs/cli.md)"),
    (["finetune", "--data", "synthetic", "--batch-size", "8"], "edgessl finetune: error: --batch-size is now the config key fit.batch_size"),
    (["finetune", "--data", "synthetic", "--learning-rate", "0.001"],
     "edgessl finetune: error: --learning-rate is the config key fit.lr: give it in --config FILE"),  # (not --length)
    (["pretrain", "--data", "synthetic", "--no-standardize"], "edgessl pretrain: error: --no-standardize is now --standardize none"),
    (["finetune", "--data", "synthetic", "--sam"], "edgessl finetune: error: --sam was removed: measured to give nothing"),
    (["run", "b.essl", "--port", "/tmp/x", "--confidence", "2"],
     "edgessl run: error: argument --confidence: expected a probability from 0 to 1 (0: no gate); got '2'"),
    (["run", "b.essl", "--port", "/tmp/x", "--ood-threshold", "-1"], "edgessl run: error: argument --ood-threshold: expected a score >= 0"),
    (["run", "b.essl", "--port", "/tmp/x", "--seconds", "abc"],
     "edgessl run: error: argument --seconds: invalid float value: 'abc'; see edgessl run --help"),
    (["run", "b.essl"], "edgessl run: error: the following arguments are required: --port; see edgessl run --help"),
])  # fmt: skip
def test_a_usage_error_is_one_line_naming_the_command_and_the_flag(capsys, argv, line):
    """A mistyped option is named (argparse would report the required --port missing, or the top-level usage);
    a bad value is one line too, without argparse's usage block."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and len(err.splitlines()) == 1, err


def test_enroll_with_both_label_and_calibrate_says_not_both(capsys):
    assert cli.main(["enroll", "b.essl", "--port", "/tmp/x", "--state", "s.npz", "--label", "up", "--calibrate"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err.endswith(", not both") and "--label NAME (one gesture) or --calibrate" in err and len(err.splitlines()) == 1


def test_a_bare_folder_spec_suggests_its_scheme(tmp_path, capsys):
    (tmp_path / "my_gestures").mkdir()
    assert cli.main(["data", "info", str(tmp_path / "my_gestures")]) == ExitCode.USAGE
    assert f"did you mean dir:{tmp_path / 'my_gestures'}?" in capsys.readouterr().err


def test_simulate_stopped_by_sigterm_removes_its_link_and_a_failed_start_its_log(tmp_path):
    import signal
    import time

    link, log = tmp_path / "imu", tmp_path / "log.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", "--link", str(link), "--log", str(log)],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().strip()
    assert link.is_symlink()
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    assert not link.exists() and not link.is_symlink()
    link.write_text("someone else's file")  # the next board cannot take this path: nothing of it stays behind
    log2 = tmp_path / "log2.jsonl"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgessl", "simulate", "--link", str(link), "--log", str(log2)],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode != 0 and time.monotonic() - t0 < 30
    assert not log2.exists() and link.read_text() == "someone else's file"


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    """A walkthrough's Ctrl-C 0.2 s after start printed a KeyboardInterrupt traceback (the parser was being built)."""

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["run", "x.essl"]) == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "edgessl: interrupted\n"
