"""Pretraining and fine-tuning agree on what the encoder sees: ``finetune --init`` takes the checkpoint's channels,
window length, standardisation and rate unless the user sets them, prints what it took and every override, and
refuses channels or units the encoder cannot take (exit 2, one line naming the flag and both values)."""

import json

import numpy as np
import pytest
import torch

from edgessl.cli import main
from edgessl.datasets import write_csv_recording
from edgessl.errors import ExitCode, UsageError
from edgessl.synthetic import SyntheticConfig, make_stream
from edgessl.trainer import pipeline as PL
from edgessl.trainer.data import standardize_spec

WINDOW = standardize_spec("window")
CHANNEL = standardize_spec("channel")
SMALL = "[encoder]\nwidths = [8, 16, 16, 32]\n[fit]\nwarmup_epochs = 1\nbatch_size = 16\n"
GESTURES = "synthetic:reps=1,length=64"  # labelled windows of 64 samples, no fixed rate, acc_x/y/z in g


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """An unlabelled 100 Hz stream pretrained on 128-sample stream windows, standardised per window (not the
    default, so that taking it is visible), with a small encoder and one epoch."""
    root = tmp_path_factory.mktemp("consistency")
    s = make_stream(SyntheticConfig(), n_gestures=6, stream_seed=1)
    write_csv_recording(root / "stream.csv", s.signal, s.rate_hz, s.channel_names)
    (root / "small.toml").write_text(SMALL)
    assert main(["pretrain", "--data", f"csv:{root / 'stream.csv'}", "--standardize", "window", "--epochs", "1",
                 "--config", str(root / "small.toml"), "--out", str(root / "pt"), "--quiet"]) == 0  # fmt: skip
    return root


def _finetune(root, out, *argv: str) -> int:
    return main(["finetune", "--init", str(root / "pt"), "--recipe", "baseline", "--epochs", "1", "--out",
                 str(out), "--quiet", *argv])  # fmt: skip


def _saved(out) -> dict:
    return torch.load(out / "model.pt", weights_only=True)


def test_pretrain_saves_what_the_encoder_saw(pretrained):
    cfg = torch.load(pretrained / "pt" / "checkpoint.pt", weights_only=True)["config"]
    assert cfg["inputs"]["channels"] == ["acc_x", "acc_y", "acc_z"] and cfg["inputs"]["units"] == ["g"] * 3
    assert cfg["inputs"]["length"] == 128 and cfg["inputs"]["rate_hz"] == pytest.approx(100.0)
    pre = PL.pretrained_inputs(pretrained / "pt")
    assert (pre.length, pre.preprocess["steps"], pre.channels) == (128, WINDOW["steps"], ("acc_x", "acc_y", "acc_z"))


def test_finetune_init_takes_length_and_standardisation_from_the_checkpoint(pretrained, tmp_path, capsys):
    """No flags: the 64-sample gestures are stretched to the 128 samples the encoder was pretrained on, and
    standardised per window as in pretraining; one line says so, stdout stays the JSON result."""
    assert _finetune(pretrained, tmp_path / "ft", "--data", GESTURES) == 0
    out, err = capsys.readouterr()
    json.loads(out)
    assert (f"using length 128, channels acc_x,acc_y,acc_z, per-window standardisation from {pretrained / 'pt'}"
            in err), err  # fmt: skip
    assert "overrides" not in err
    saved = _saved(tmp_path / "ft")
    assert saved["config"]["data"]["length"] == 128 and saved["window"] == 128
    assert saved["config"]["data"]["preprocess"]["steps"] == WINDOW["steps"]
    assert saved["calibration_windows"].shape[1:] == (3, 128)
    assert saved["rate_hz"] is None  # gestures without a fixed rate stay a segment-mode model


def test_explicit_settings_win_and_are_printed_as_overrides(pretrained, tmp_path, capsys):
    assert _finetune(pretrained, tmp_path / "ft", "--data", GESTURES, "--length", "63", "--standardize", "channel") == 0
    err = capsys.readouterr().err
    assert ("--length 63 overrides the pretrained 128: the encoder sees windows of another length than it was "
            "pretrained on") in err  # fmt: skip
    assert "--standardize channel overrides the pretrained per-window standardisation" in err
    assert "using channels acc_x,acc_y,acc_z from" in err  # what was not given still comes from the checkpoint
    saved = _saved(tmp_path / "ft")
    assert saved["config"]["data"]["length"] == 63 and saved["window"] == 63
    assert saved["config"]["data"]["preprocess"]["steps"] == CHANNEL["steps"]
    # a config file is explicit too, and is named as the source of the override
    (tmp_path / "run.json").write_text(json.dumps({"data": {"length": 96}}))
    assert _finetune(pretrained, tmp_path / "ft2", "--data", GESTURES, "--config", str(tmp_path / "run.json")) == 0
    assert f"{tmp_path / 'run.json'} (length 96) overrides the pretrained 128" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    """The error: one line, the last (after what was taken from the checkpoint, when that came first)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("edgessl finetune: error:")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    return errors[0]


def test_mismatched_channels_are_a_usage_error_naming_the_flag(pretrained, tmp_path, capsys):
    assert _finetune(pretrained, tmp_path / "a", "--data", GESTURES, "--channels", "acc_x,acc_y") == ExitCode.USAGE
    line = _one_error_line(capsys)
    assert "--channels" in line and "['acc_x', 'acc_y']" in line and "['acc_x', 'acc_y', 'acc_z']" in line, line
    # same count, another order: not the channels the encoder learnt
    assert _finetune(pretrained, tmp_path / "b", "--data", GESTURES, "--channels", "acc_z,acc_y,acc_x") == ExitCode.USAGE
    assert "['acc_z', 'acc_y', 'acc_x']" in _one_error_line(capsys)
    # data whose channels are others (found once the data are read): the same kind of error
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 3, 40)).astype(np.float32), np.arange(16) % 2
    np.savez(tmp_path / "emg.npz", X_train=X, y_train=y, X_test=X, y_test=y, channel_names=np.array(["e1", "e2", "e3"]),
             class_names=np.array(["a", "b"]))  # fmt: skip
    assert _finetune(pretrained, tmp_path / "c", "--data", f"npz:{tmp_path / 'emg.npz'}") == ExitCode.USAGE
    line = _one_error_line(capsys)
    assert line.startswith("edgessl finetune: error: --channels") and "acc_x" in line and "e1" in line, line
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_extra_channels_rate_and_units_follow_the_checkpoint(pretrained, tmp_path, capsys):
    """Data with more channels give the pretrained ones (by name); windows at another known rate are resampled
    to the pretrained rate; windows that keep their units must be in the pretrained units."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((16, 6, 50)).astype(np.float32), np.arange(16) % 2
    names = ["gyro_x", "gyro_y", "gyro_z", "acc_x", "acc_y", "acc_z"]
    np.savez(tmp_path / "six.npz", X_train=X, y_train=y, X_test=X, y_test=y, channel_names=np.array(names),
             class_names=np.array(["a", "b"]), rate_hz=np.array(50.0))  # fmt: skip
    assert _finetune(pretrained, tmp_path / "ft", "--data", f"npz:{tmp_path / 'six.npz'}") == 0
    assert "from 50 Hz to 100 Hz" in capsys.readouterr().err
    saved = _saved(tmp_path / "ft")
    assert saved["channel_names"] == ["acc_x", "acc_y", "acc_z"] and saved["window"] == 128
    assert saved["config"]["data"]["rate_hz"] == pytest.approx(100.0) and saved["rate_hz"] == pytest.approx(100.0)
    # the acc channels carried in raw counts (a unit no loader converts; m/s², mg and deg/s are converted when
    # loaded), and --standardize none keeps units: the encoder never saw those
    np.savez(tmp_path / "ms2.npz", X_train=X[:, 3:], y_train=y, X_test=X[:, 3:], y_test=y,
             channel_names=np.array(names[3:]), channel_units=np.array(["counts"] * 3), class_names=np.array(["a", "b"]))  # fmt: skip
    assert _finetune(pretrained, tmp_path / "u", "--data", f"npz:{tmp_path / 'ms2.npz'}", "--standardize", "none") == 2
    line = _one_error_line(capsys)
    assert "--standardize" in line and "counts" in line and "['g', 'g', 'g']" in line, line


def test_checkpoints_without_saved_inputs_still_give_their_window(pretrained, tmp_path):
    """A checkpoint written before ``config["inputs"]`` existed: the window from its method config, channels
    unknown (only their count is checked)."""
    from edgessl.trainer.fit import save_atomic

    ck = torch.load(pretrained / "pt" / "checkpoint.pt", weights_only=True)
    del ck["config"]["inputs"]
    save_atomic(ck, tmp_path / "old.pt")
    pre = PL.pretrained_inputs(tmp_path / "old.pt")
    assert pre.length == 128 and pre.channels is None and pre.units is None and pre.in_channels == 3
    data, lines = PL.inherit_inputs(PL.DataConfig(spec=GESTURES), tmp_path / "old.pt", {})
    assert data.length == 128 and data.channels is None and data.preprocess["steps"] == WINDOW["steps"]
    assert lines == [f"using length 128, per-window standardisation from {tmp_path / 'old.pt'} (what it was pretrained on)"]
    with pytest.raises(UsageError, match=r"--channels: chose \['acc_x'\], but .* was pretrained on 3 channels"):
        PL.inherit_inputs(PL.DataConfig(spec=GESTURES, channels=("acc_x",)), tmp_path / "old.pt", {"channels": "--channels"})


def test_recipe_config_takes_the_checkpoint_settings_too(pretrained, capsys):
    from edgessl.trainer.recipes import recipe_config

    cfg = recipe_config("baseline", data={"spec": GESTURES}, init=str(pretrained / "pt"))
    assert cfg.data.length == 128 and cfg.data.preprocess["steps"] == WINDOW["steps"]
    assert "using length 128" in capsys.readouterr().err
    cfg = recipe_config("activities", data={"spec": GESTURES, "length": 64}, init=str(pretrained / "pt"))
    assert cfg.data.length == 64 and cfg.data.preprocess["steps"] == []  # the named recipe's units-kept windows
    err = capsys.readouterr().err
    assert "recipe activities (preprocess no standardisation (units kept)) overrides" in err
    assert "recipe_config() (length 64) overrides the pretrained 128" in err


def test_finetune_init_without_data_does_not_fall_back_to_synthetic_data(pretrained, tmp_path, capsys):
    """A walkthrough ran pretrain's suggested next step, `finetune --init runs/pre`, without --data: it fine-tuned
    on the default synthetic generator (test accuracy 0.33), silently. Now a usage error names the data set the
    checkpoint was trained on, and pretrain's suggestion carries --data."""
    spec = f"csv:{pretrained / 'stream.csv'}"
    assert _finetune(pretrained, tmp_path / "ft") == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data not given: the default data set (synthetic) would be used" in err
    assert f"was trained on {spec}; give --data {spec}" in err and not (tmp_path / "ft" / "model.pt").exists()
    assert main(["pretrain", "--data", spec, "--epochs", "1", "--config", str(pretrained / "small.toml"), "--out",
                 str(tmp_path / "pt"), "--quiet"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["next"] == f"edgessl finetune --data {spec} --init {tmp_path / 'pt'} --out {tmp_path / 'ft'}"
    from edgessl.atomic import free_path

    (tmp_path / "ft").mkdir(exist_ok=True)  # a second model: the suggestion names a folder finetune will take
    assert free_path(tmp_path, "ft") == tmp_path / "ft2"
