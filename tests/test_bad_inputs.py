"""Training, files and consistency checks survive bad input (issue 27): each case runs through ``edgessl.cli.main``
and must end in its exit code and one stderr line that names the file or flag, never a traceback."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgessl import cli
from edgessl.errors import ExitCode

torch = pytest.importorskip("torch")

TINY = "synthetic:reps=2,length=64"  # 96 training windows of 3 channels: one epoch takes well under a second


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and stderr of one command; asserts that a failure printed one line and no traceback."""
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("note:")]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"edgessl {argv[0]}")
        return code, lines[0]
    return code, err


# ---------------------------------------------------------------------------------------------------------
# checksums of checkpoint.pt and model.pt


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


CORRUPTIONS = {
    "flip-start": lambda d: _flip(d, 0),
    "flip-middle": lambda d: _flip(d, len(d) // 2),
    "flip-trailer-magic": lambda d: _flip(d, len(d) - 70),
    "flip-digest": lambda d: _flip(d, len(d) - 10),
    "truncated": lambda d: d[: len(d) // 2],
    "trailer-cut": lambda d: d[:-81],  # what is left parses: only the checksum key says it had a trailer
    "random": lambda d: np.random.default_rng(0).bytes(len(d)),
    "empty": lambda d: b"",
}


@pytest.fixture(scope="module")
def model_copy(small_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model_copy")
    shutil.copy(small_model / "model.pt", out / "model.pt")
    return out / "model.pt"


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_export_refuses_a_damaged_model(capsys, model_copy, tmp_path, kind):
    bad = tmp_path / "m" / "model.pt"
    bad.parent.mkdir()
    bad.write_bytes(CORRUPTIONS[kind](model_copy.read_bytes()))
    code, msg = run(capsys, "export", str(bad.parent), "--out", str(tmp_path / "x.essl"))
    assert code == ExitCode.MODEL and str(bad) in msg
    assert not (tmp_path / "x.essl").exists()


def test_every_single_byte_flip_is_caught(model_copy, tmp_path):
    from edgessl.errors import ModelError
    from edgessl.trainer.pipeline import load_classifier

    data = model_copy.read_bytes()
    p = tmp_path / "model.pt"
    rng = np.random.default_rng(1)
    for at in [*rng.choice(len(data), 40, replace=False), *range(len(data) - 81, len(data))]:
        p.write_bytes(_flip(data, int(at)))
        with pytest.raises(ModelError, match="model.pt"):
            load_classifier(p)
    p.write_bytes(data)
    assert load_classifier(p)[1]["class_names"]  # the intact file loads


def test_export_refuses_a_torch_file_that_is_not_a_model(capsys, tmp_path):
    torch.save({"format": "something-else", "model": {}}, tmp_path / "model.pt")
    code, msg = run(capsys, "export", str(tmp_path), "--out", str(tmp_path / "x.essl"))
    assert code == ExitCode.MODEL and "not an edgessl fine-tuned model" in msg and "model.pt" in msg


def test_files_without_a_checksum_still_load(model_copy, tmp_path, capsys):
    """A model.pt written before checksums (plain torch.save, no trailer, no checksum key) loads, unverified."""
    from edgessl.trainer.fit import CHECKSUM_KEY
    from edgessl.trainer.pipeline import load_classifier

    info = torch.load(model_copy, weights_only=True)
    assert info[CHECKSUM_KEY] == "sha256-trailer"  # new files say they carry a checksum
    del info[CHECKSUM_KEY]
    torch.save(info, tmp_path / "model.pt")
    model, loaded = load_classifier(tmp_path)
    assert loaded["class_names"] == info["class_names"] and CHECKSUM_KEY not in loaded
    assert "no checksum" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "run"
    assert cli.main(["pretrain", "--data", TINY, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("kind", ["flip-middle", "truncated", "random"])
def test_resume_and_init_refuse_a_damaged_checkpoint(capsys, pretrained, tmp_path, kind):
    run_dir = tmp_path / "run"
    shutil.copytree(pretrained, run_dir)
    ck = run_dir / "checkpoint.pt"
    ck.write_bytes(CORRUPTIONS[kind](ck.read_bytes()))
    code, msg = run(capsys, "pretrain", "--data", TINY, "--epochs", "2", "--out", str(run_dir), "--resume", "--quiet")
    assert code == ExitCode.MODEL and str(ck) in msg
    code, msg = run(capsys, "finetune", "--data", TINY, "--init", str(ck), "--epochs", "1", "--out",
                    str(tmp_path / "ft"), "--quiet")  # fmt: skip
    assert code == ExitCode.MODEL and str(ck) in msg


def test_resume_refuses_other_data_or_model_settings(capsys, pretrained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(pretrained, run_dir)
    before = (run_dir / "checkpoint.pt").read_bytes()
    code, msg = run(capsys, "pretrain", "--data", "synthetic:reps=3,length=64", "--method", "simclr", "--epochs", "2",
                    "--out", str(run_dir), "--resume", "--quiet")  # fmt: skip
    assert code == ExitCode.USAGE and "cannot resume" in msg
    assert "data.spec" in msg and "method.name" in msg and "'vicreg' -> 'simclr'" in msg
    assert (run_dir / "checkpoint.pt").read_bytes() == before  # nothing rewritten
    # the same settings resume
    assert cli.main(["pretrain", "--data", TINY, "--epochs", "2", "--out", str(run_dir), "--resume", "--quiet"]) == 0
    epochs = [json.loads(ln)["epoch"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


# ---------------------------------------------------------------------------------------------------------
# --out


def test_out_that_is_a_file_or_under_a_file(capsys, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("mine")
    for out in (f, f / "sub"):
        for cmd in (["pretrain"], ["finetune"]):
            code, msg = run(capsys, *cmd, "--data", TINY, "--epochs", "1", "--out", str(out), "--quiet")
            assert code == ExitCode.USAGE and "--out" in msg and str(out) in msg
    assert f.read_text() == "mine"


def test_a_run_that_fails_before_writing_leaves_no_folder_it_made(capsys, tmp_path):
    for cmd in ("pretrain", "finetune"):
        fresh, mine = tmp_path / f"new_{cmd}", tmp_path / f"mine_{cmd}"
        mine.mkdir()
        for out in (fresh, mine):
            code, msg = run(capsys, cmd, "--data", f"npz:{tmp_path / 'absent.npz'}", "--out", str(out), "--quiet")
            assert code == ExitCode.USAGE and "absent.npz" in msg
        assert not fresh.exists() and mine.is_dir()  # the folder it made is gone; the user's stays


def test_out_holding_another_run_needs_force(capsys, pretrained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(pretrained, run_dir)
    (run_dir / "notes.txt").write_text("the user's own file")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    for cmd in ("pretrain", "finetune"):
        code, msg = run(capsys, cmd, "--data", TINY, "--epochs", "1", "--out", str(run_dir), "--quiet")
        assert code == ExitCode.USAGE and "holds another run" in msg and "--force" in msg
        assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    # --force: a fresh run whose metrics.jsonl holds its own epochs only; the user's file stays
    assert cli.main(["pretrain", "--data", TINY, "--epochs", "2", "--out", str(run_dir), "--force", "--quiet"]) == 0
    epochs = [json.loads(ln)["epoch"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]
    assert (run_dir / "notes.txt").read_text() == "the user's own file"


def test_export_refuses_an_existing_out_file_without_force(capsys, tmp_path):
    out = tmp_path / "model.essl"
    out.write_bytes(b"the user's bundle")
    torch.save({"format": "garbage"}, tmp_path / "model.pt")
    code, msg = run(capsys, "export", str(tmp_path), "--out", str(out))
    assert code == ExitCode.USAGE and "exists" in msg and "--force" in msg
    assert out.read_bytes() == b"the user's bundle"
    code, msg = run(capsys, "export", str(tmp_path), "--out", str(tmp_path))
    assert code == ExitCode.USAGE and "is a folder" in msg
    # with --force the path is accepted; the garbage model is then refused, and the file is still untouched
    code, msg = run(capsys, "export", str(tmp_path), "--out", str(out), "--force")
    assert code == ExitCode.MODEL and out.read_bytes() == b"the user's bundle"


def test_python_api_refuses_another_run_and_an_existing_bundle_without_force(pretrained, small_model, tmp_path):
    """pretrain(), finetune() and export_bundle() keep the CLI's rule: another run's files and an existing
    file are replaced only when asked (force=True), and the message says how in Python's words."""
    from edgessl.errors import UsageError
    from edgessl.export.pipeline import export_bundle
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, PretrainConfig, finetune, pretrain

    run_dir = tmp_path / "run"
    shutil.copytree(pretrained, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    data = DataConfig(spec=TINY)
    with pytest.raises(UsageError, match="out_dir .*holds another run.*pass force=True"):
        pretrain(PretrainConfig(data=data, fit=FitConfig(epochs=1)), run_dir, progress=False)
    with pytest.raises(UsageError, match="out_dir .*holds another run.*pass force=True"):
        finetune(FinetuneConfig(data=data, fit=FitConfig(epochs=1)), run_dir, progress=False, plots=False)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    bundle = tmp_path / "model.essl"
    bundle.write_bytes(b"the user's bundle")
    with pytest.raises(UsageError, match="out .*exists.*pass force=True"):
        export_bundle(small_model, bundle, progress=False)
    assert bundle.read_bytes() == b"the user's bundle"
    pretrain(PretrainConfig(data=data, fit=FitConfig(epochs=1)), run_dir, progress=False, force=True)
    assert [json.loads(ln)["epoch"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()] == [0]


def test_demo_replaces_an_earlier_demo_only(capsys, tmp_path):
    """The demo's folder: an earlier demo's results are replaced (and it says so); a run or bundle of the
    user's in it, or a folder of recordings, is refused unless forced."""
    from edgessl.demo import claim_demo_dir

    assert claim_demo_dir(tmp_path / "fresh") is None
    (tmp_path / "fresh" / "report.md").write_text("demo's")
    assert "earlier demo" in claim_demo_dir(tmp_path / "fresh")
    mine = tmp_path / "runs"
    (mine / "finetune").mkdir(parents=True)
    (mine / "model.essl").write_bytes(b"the user's bundle")
    code, msg = run(capsys, "demo", "--quick", "--out", str(mine))
    assert code == ExitCode.USAGE and "--out" in msg and str(mine) in msg and "finetune, model.essl" in msg
    assert "--force" in msg and (mine / "model.essl").read_bytes() == b"the user's bundle"
    assert not (mine / ".edgessl-demo").exists()  # refused: nothing written
    said = claim_demo_dir(mine, force=True)
    assert "finetune, model.essl" in said and "not written by a demo" in said
    data = tmp_path / "my_gestures"
    data.mkdir()
    (data / "s1.csv").write_text("t,acc_x\n")
    (data / "s1.json").write_text("{}")
    code, msg = run(capsys, "demo", "--quick", "--out", str(data))
    assert code == ExitCode.USAGE and "recordings" in msg and "s1.csv" in msg and str(data) in msg
    assert sorted(p.name for p in data.iterdir()) == ["s1.csv", "s1.json"]


def test_finetune_refuses_its_own_init_folder_even_with_force(capsys, pretrained, tmp_path):
    """--out equal to --init would replace the pretrained run before it is read (--force removes run files)."""
    run_dir = tmp_path / "pre"
    shutil.copytree(pretrained, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    code, msg = run(capsys, "finetune", "--data", TINY, "--init", str(run_dir), "--out", str(run_dir) + "/",
                    "--force", "--epochs", "1", "--quiet")  # fmt: skip
    assert code == ExitCode.USAGE and "--init" in msg and str(run_dir) in msg
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_providers_are_named_as_users_type_them(capsys, small_bundle):
    from edgessl.edge_runtime.runtime import provider_names

    assert provider_names(["TensorRT", "cuda", "CPUExecutionProvider", "cpu"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]  # fmt: skip
    code, msg = run(capsys, "run", str(small_bundle), "--port", "/nonexistent/tty", "--providers", "GPU,CPU",
                    "--seconds", "1")  # fmt: skip
    assert code == ExitCode.USAGE and "--providers GPU,CPU" in msg and "'GPU'" in msg and "CUDA" in msg


def test_a_missing_gpu_provider_is_one_line_saying_what_runs_and_what_to_install(small_bundle):
    import onnxruntime as ort

    from edgessl.edge_runtime.runtime import GestureRuntime

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing falls back")
    with pytest.warns(UserWarning) as got:
        with GestureRuntime(small_bundle, providers=["TensorRT", "CUDA", "CPU"]) as rt:
            assert rt.providers == ["CPUExecutionProvider"]
    text = [str(w.message) for w in got if "onnxruntime" in str(w.message)]
    assert len(text) == 1 and "Tensorrt, CUDA" in text[0] and "running on the CPU" in text[0]
    assert "onnxruntime-gpu" in text[0] and ort.__version__ in text[0]


def test_resuming_a_finished_run_says_there_is_nothing_to_do(capsys, pretrained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(pretrained, run_dir)
    epochs = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert cli.main(["pretrain", "--data", TINY, "--epochs", str(epochs), "--out", str(run_dir), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# values


@pytest.mark.parametrize("flags, named", [
    (["--labels-per-class", "-3"], "--labels-per-class"),
    (["--labels-per-class", "0"], "--labels-per-class"),
    (["--label-fraction", "1.5"], "--label-fraction"),
    (["--label-fraction", "0"], "--label-fraction"),
    (["--epochs", "0"], "--epochs"),
    (["--length", "-5"], "--length"),
    (["--cv", "1"], "--cv"),
])  # fmt: skip
def test_finetune_refuses_impossible_flag_values(capsys, tmp_path, flags, named):
    code, msg = run(capsys, "finetune", "--data", TINY, *flags, "--out", str(tmp_path / "ft"), "--quiet")
    assert code == ExitCode.USAGE and named in msg
    assert not (tmp_path / "ft").exists()


def test_pretrain_refuses_zero_epochs(capsys, tmp_path):
    code, msg = run(capsys, "pretrain", "--data", TINY, "--epochs", "0", "--out", str(tmp_path / "pt"))
    assert code == ExitCode.USAGE and "--epochs" in msg


@pytest.mark.parametrize("cfg, named", [
    ({"fit": {"lr": -0.001}}, "fit.lr"),
    ({"fit": {"batch_size": 0}}, "fit.batch_size"),
    ({"fit": {"weight_decay": -1}}, "fit.weight_decay"),
    ({"labels_per_class": -3}, "labels_per_class"),
    ({"label_fraction": 2.0}, "label_fraction"),
])  # fmt: skip
def test_config_file_values_are_checked(capsys, tmp_path, cfg, named):
    f = tmp_path / "run.json"
    f.write_text(json.dumps(cfg))
    code, msg = run(capsys, "finetune", "--data", TINY, "--config", str(f), "--out", str(tmp_path / "ft"), "--quiet")
    assert code == ExitCode.USAGE and named in msg


def _npz(path: Path, y_train, y_test, X=None, classes=("a", "b", "c")) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(y_train), 3, 16)) if X is None else X
    np.savez(path, X_train=X, y_train=np.array(y_train), X_test=rng.normal(size=(len(y_test), 3, 16)),
             y_test=np.array(y_test), class_names=np.array(classes),
             channel_names=np.array(["acc_x", "acc_y", "acc_z"]))  # fmt: skip
    return path


@pytest.mark.parametrize("y_train, y_test, shown", [
    ([0, 1, 2, 5], [0, 1], "5"),
    ([0, 1, 2, 2], [0, -1], "-1"),
    ([0, 1, 2, 2], [7, 3, 7], "3, 7"),
])  # fmt: skip
def test_npz_labels_outside_class_names(capsys, tmp_path, y_train, y_test, shown):
    f = _npz(tmp_path / "bad.npz", y_train, y_test)
    for argv in (["data", "info", f"npz:{f}"],
                 ["finetune", "--data", f"npz:{f}", "--epochs", "1", "--out", str(tmp_path / "ft"), "--quiet"]):  # fmt: skip
        code, msg = run(capsys, *argv)
        assert code == ExitCode.DATA and str(f) in msg and f"label value(s) {shown} outside" in msg


def test_npz_infinite_or_huge_values(capsys, tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 3, 16))
    for v in (np.inf, -np.inf, 1e308):
        X[2, 1, 5] = v
        f = _npz(tmp_path / "bad.npz", [0, 1, 2, 0], [1], X=X)
        code, msg = run(capsys, "data", "info", f"npz:{f}")
        assert code == ExitCode.DATA and str(f) in msg and "X_train" in msg and "[2, 1, 5]" in msg
    X[2, 1, 5] = np.nan  # a missing value: filled, as docs/data.md says
    assert run(capsys, "data", "info", f"npz:{_npz(tmp_path / 'ok.npz', [0, 1, 2, 0], [1], X=X)}")[0] == 0


@pytest.mark.parametrize("value", ["1e308", "-1e39", "inf", "-Infinity", "1e400"])
def test_csv_non_finite_or_huge_values(capsys, tmp_path, value):
    f = tmp_path / "rec.csv"
    rows = [f"{i * 10},0.01,{value if i == 3 else '0.5'},0.98" for i in range(6)]
    f.write_text("timestamp_ms,acc_x,acc_y,acc_z\n" + "\n".join(rows) + "\n")
    code, msg = run(capsys, "data", "info", f"csv:{f}")
    assert code == ExitCode.DATA and f"{f}:5" in msg and value in msg


def test_csv_missing_values_still_filled(capsys, tmp_path):
    f = tmp_path / "rec.csv"
    f.write_text("timestamp_ms,acc_x,acc_y,acc_z\n0,0.1,NaN,1\n10,0.2,,1\n20,0.3,0.5,?\n")
    from edgessl.datasets import load

    ds = load(f"csv:{f}")
    assert np.isfinite(ds.signal).all() and ds.signal[1, 0] == 0.5 and ds.signal[2, 2] == 1.0


# ---------------------------------------------------------------------------------------------------------
# consistency of verify and bundles


def test_verify_refuses_data_of_other_classes(capsys, small_bundle, tmp_path):
    f = _npz(tmp_path / "activities.npz", [0, 1, 2, 0], [0, 1, 2],
             classes=("walk", "sit", "stand"))  # fmt: skip
    code, msg = run(capsys, "verify", str(small_bundle), "--data", f"npz:{f}")
    assert code == ExitCode.DATA and "['walk', 'sit', 'stand']" in msg and "'square'" in msg


def test_verify_refuses_data_of_other_channels(capsys, small_bundle, tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "other.npz"
    np.savez(f, X_train=rng.normal(size=(4, 3, 16)), y_train=np.array([0, 1, 2, 3]), X_test=rng.normal(size=(2, 3, 16)),
             y_test=np.array([0, 1]), channel_names=np.array(["gyro_x", "gyro_y", "gyro_z"]))  # fmt: skip
    code, msg = run(capsys, "verify", str(small_bundle), "--data", f"npz:{f}")
    assert code == ExitCode.DATA and "gyro_x" in msg and "acc_x" in msg


def _edit_manifest(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    m = json.loads(members["manifest.json"])
    edit(m)
    members["manifest.json"] = json.dumps(m).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return dst


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.update(labels=m["labels"][:3]), "lists 3 labels"),
    (lambda m: m.update(labels=[*m["labels"], "extra"]), "lists 9 labels"),
    (lambda m: m.update(labels=["a"] * 8), "repeats a name"),
    (lambda m: m.update(embedding_dim=7), "embedding_dim 7"),
    (lambda m: m.update(window=0), "'window' must be"),
])  # fmt: skip
def test_bundle_whose_manifest_disagrees_with_its_head(capsys, small_bundle, tmp_path, edit, expected):
    from edgessl.edge_runtime.bundle import BundleError, open_bundle

    bad = _edit_manifest(small_bundle, tmp_path / "edited.essl", edit)
    with pytest.raises(BundleError, match=expected):
        open_bundle(bad)
    code, msg = run(capsys, "verify", str(bad), "--data", TINY)
    assert code == ExitCode.MODEL and str(bad) in msg and expected in msg
    assert open_bundle(_edit_manifest(small_bundle, tmp_path / "same.essl", lambda m: None)).labels  # control


def test_adaptation_member_must_be_readable(small_bundle, tmp_path):
    """open_bundle reads adaptation.npz for the consistency check: a damaged one (with a matching manifest
    entry) is a BundleError, not a crash."""
    from edgessl.edge_runtime.bundle import ADAPTATION, BundleError, open_bundle, sha256

    junk = b"not an npz"

    def edit(m):
        m["members"][ADAPTATION] = {"sha256": sha256(junk), "bytes": len(junk)}

    bad = _edit_manifest(small_bundle, tmp_path / "b.essl", edit)
    with zipfile.ZipFile(bad) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[ADAPTATION] = junk
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    bad.write_bytes(buf.getvalue())
    with pytest.raises(BundleError, match=ADAPTATION):
        open_bundle(bad)


def test_resume_check_names_keys_and_ignores_keys_of_other_versions():
    from edgessl.errors import UsageError
    from edgessl.trainer.fit import check_resume_config

    saved = {"kind": "pretrain", "data": {"spec": "npz:a.npz", "length": 64, "retired_knob": 1},
             "encoder": {"widths": [32, 64]}, "fit": {"epochs": 10}}  # fmt: skip
    same = {"kind": "pretrain", "data": {"spec": "npz:a.npz", "length": 64, "new_knob": None},
            "encoder": {"widths": (32, 64)}, "fit": {"epochs": 20}}  # fmt: skip
    check_resume_config(Path("ck.pt"), saved, same)  # more epochs, keys of another version: the same run
    other = {**same, "data": {"spec": "npz:b.npz", "length": 32}, "encoder": {"widths": [16, 64]}}
    with pytest.raises(UsageError, match=r"ck.pt: .*data.length: 64 -> 32; data.spec: 'npz:a.npz' -> 'npz:b.npz'; "
                                         r"encoder.widths: \[32, 64\] -> \[16, 64\]"):
        check_resume_config(Path("ck.pt"), saved, other)


@pytest.mark.parametrize("text, part", [
    ("timestamp,accX,accY,accZ,class\n0,0,0,1,up\n10,0,0,1,up\n",
     "got 'up' (column 'class'): a column of names is read as the labels only when it is called 'label'"),
    ("timestamp,accX,accY,accZ\n0,0,0,1\n10,0,x,1\n20,0,0,1\n", ":3: expected a number or '?', got 'x' (column 'accY')"),
    ("time,accX,accY,accZ\n0,0,0,1\n10,0,0,1\n20,0,0,1\n",  # milliseconds in a column read as seconds
     ":1: the timestamps of column 'time', read as s, give 0.1 Hz, not an IMU's rate"),
])  # fmt: skip
def test_csv_mistakes_name_the_column(capsys, tmp_path, text, part):
    f = tmp_path / "x.csv"
    f.write_text(text)
    code, err = run(capsys, "data", "info", f"csv:{f}")
    assert code == ExitCode.DATA and part in err and "x.csv" in err, err
