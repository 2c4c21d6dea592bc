"""The Python side of the recipes: ``recipe_config`` builds what ``edgessl finetune --recipe`` builds."""

import argparse

import pytest

from edgessl.trainer import recipes


def test_recipe_config_equals_the_cli_config():
    from edgessl.cli import build_parser
    from edgessl.trainer.cli import finetune_config

    args = build_parser().parse_args(["finetune", "--data", "synthetic", "--labels-per-class", "5", "--out", "x"])
    assert isinstance(args, argparse.Namespace)
    cli_cfg, name = finetune_config(args)
    api_cfg = recipes.recipe_config(data={"spec": "synthetic"}, labels_per_class=5)
    assert name == "few-labels" and api_cfg == cli_cfg
    assert api_cfg.self_train_rounds == 2 and api_cfg.consistency_weight == 1.0  # the recipe, not the defaults


def test_recipe_config_layers_and_refuses_unknown_settings():
    cfg = recipes.recipe_config("few-labels", rotate_degrees=0.0, fit={"epochs": 7})
    assert cfg.rotate_degrees == 0.0 and cfg.mixup_alpha == 0.2 and cfg.fit.epochs == 7  # settings win
    assert recipes.recipe_config().refit  # auto without a label budget: all-labels
    with pytest.raises(ValueError, match="unknown key 'rotate'"):
        recipes.recipe_config(rotate=30)
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        recipes.recipe_config("fast")


def test_pretrain_config_lays_settings_on_the_defaults_and_names_unknown_ones():
    """The Python API's pretraining config in one call (a walkthrough nested dataclasses.replace three deep)."""
    from edgessl.trainer.pipeline import PretrainConfig
    from edgessl.trainer.recipes import pretrain_config

    cfg = pretrain_config(data={"spec": "dir:my_board"}, method={"name": "vicreg"}, fit={"epochs": 20})
    default = PretrainConfig()
    assert (cfg.data.spec, cfg.method.name, cfg.fit.epochs) == ("dir:my_board", "vicreg", 20)
    assert cfg.fit.lr == default.fit.lr and cfg.encoder == default.encoder  # the rest stays the default
    with pytest.raises(ValueError, match=r"unknown key 'fit.epochz'.*epochs"):
        pretrain_config(fit={"epochz": 20})


def test_the_activities_recipe_reads_recordings_as_sliding_windows(tmp_path, capsys):
    """`--recipe activities` on a recording folder (README's row for activities): read as gestures, a walkthrough's
    walking and sitting were left out as rest and 12 activities became 8 classes of transitions; the recipe reads
    recordings as sliding windows of 2.56 s (UCI HAR's, where it was measured) unless the spec says otherwise."""
    spec = f"dir:{tmp_path}?acc=m/s2,label=activity"
    new, note = recipes.recipe_spec("activities", spec)
    assert new == f"{spec},input=sliding,length=2.56s" and note and "sliding windows" in note
    cfg = recipes.recipe_config("activities", data={"spec": spec})
    assert cfg.data.spec == new and "note: recipe activities: " in capsys.readouterr().err
    # what the user said stays: an input mode in the spec or dataset.json, a length; other recipes and sources
    assert recipes.recipe_spec("activities", f"{spec},input=segment") == (f"{spec},input=segment", None)
    assert recipes.recipe_spec("activities", f"dir:{tmp_path}?length=100")[0] == f"dir:{tmp_path}?length=100,input=sliding"
    assert recipes.recipe_spec("all-labels", spec) == (spec, None)
    assert recipes.recipe_spec("activities", "npz:uci_har.npz") == ("npz:uci_har.npz", None)
    (tmp_path / "dataset.json").write_text('{"format": "edgessl-dataset", "version": 1, "input_mode": "segment"}')
    assert recipes.recipe_spec("activities", spec) == (spec, None)


def test_activity_recordings_from_finetune_to_verify_with_the_same_spec(tmp_path):
    """A walkthrough's activity journey: the spec it fine-tuned with (`--recipe activities` read it as sliding
    windows) was refused by `verify` (read as gestures: classes missing); verify reads recordings as the bundle's
    sliding windows now, and the bundle takes the recipe's 2.56 s windows."""
    import json
    import subprocess
    import sys

    from tests.datasets.helpers import activity_csv

    for user in ("anna", "bob", "cleo"):
        activity_csv(tmp_path / "rec" / user / "day1.csv", seed=len(user))
    spec = f"dir:{tmp_path / 'rec'}?acc=m/s2,gyro=deg/s,label=activity"

    def edgessl(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "edgessl", *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    r = edgessl("finetune", "--data", spec, "--recipe", "activities", "--epochs", "2", "--out", str(tmp_path / "ft"),
                "--quiet")  # fmt: skip
    assert "note: recipe activities: " in r.stderr and ",input=sliding,length=2.56s" in r.stderr
    protocol = json.loads((tmp_path / "ft" / "metrics.json").read_text())["protocol"]
    assert "a performance's overlapping windows kept together" in protocol  # validation does not leak
    edgessl("export", str(tmp_path / "ft"), "--out", str(tmp_path / "act.essl"))
    from edgessl.edge_runtime.bundle import open_bundle

    b = open_bundle(tmp_path / "act.essl")
    assert b.manifest["input_mode"] == "sliding" and b.window == 128 and b.rate_hz == 50.0
    assert sorted(b.labels) == ["SITTING", "SIT_TO_STAND", "WALKING"]
    r = edgessl("verify", str(tmp_path / "act.essl"), "--data", spec, "--all")
    assert "(the bundle's sliding windows)" in r.stderr and json.loads(r.stdout)["windows"] > 20
