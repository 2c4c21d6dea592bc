"""``edgessl pretrain | finetune``: short flag lists with their defaults, named recipes, ``--config`` files and
the order in which settings override each other (defaults < recipe < config file < flags)."""

import json
import re

import pytest

from edgessl.cli import build_parser
from edgessl.trainer import cli as T
from edgessl.trainer.recipes import NAMES, RECIPES, resolve


def _help(command: str) -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[command].format_help()


def _options(help_text: str) -> list[str]:
    """Each option's block of the help: its line starting ``  -`` and the indented lines below it."""
    blocks, current = [], None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            current = [line]
            blocks.append(current)
        elif current is not None and line.startswith("      "):
            current.append(line)
        else:
            current = None
    return [" ".join(x.strip() for x in b) for b in blocks]


@pytest.mark.parametrize(("command", "most"), [("finetune", 20), ("pretrain", 15), ("evaluate", 15), ("inspect", 15)])
def test_help_lists_few_options_each_with_its_default(command, most):
    text = _help(command)
    n = len([line for line in text.splitlines() if re.match(r"^  -", line)])
    assert 5 <= n <= most, (command, n)
    for block in _options(text):
        if block.startswith("-h, --help"):
            continue
        assert "(default" in block or "(required)" in block, block


def _finetune_args(*argv: str):
    return build_parser().parse_args(["finetune", "--out", "unused", *argv])


def test_recipe_config_file_and_flags_override_in_that_order(tmp_path):
    """few-labels sets rotation 60 and mixup 0.2; the file overrides the rotation and the epochs; the flag
    overrides the file's epochs. What nobody set keeps the recipe's value, or the default."""
    (tmp_path / "run.toml").write_text('rotate_degrees = 30.0\nval_fraction = 0.25\n[fit]\nepochs = 7\nlr = 0.002\n'
                                       '[data]\nlength = 48\n')  # fmt: skip
    cfg, name = T.finetune_config(_finetune_args("--recipe", "few-labels", "--config", str(tmp_path / "run.toml"),
                                                 "--epochs", "2", "--labels-per-class", "3"))  # fmt: skip
    assert name == "few-labels"
    assert cfg.rotate_degrees == 30.0 and cfg.mixup_alpha == 0.2 and cfg.self_train_rounds == 2  # file > recipe
    assert cfg.fit.epochs == 2 and cfg.fit.lr == 0.002 and cfg.fit.batch_size == 64  # flag > file > default
    assert cfg.data.length == 48 and cfg.data.spec == "synthetic" and cfg.val_fraction == 0.25
    assert cfg.labels_per_class == 3
    # the same file as JSON gives the same config
    (tmp_path / "run.json").write_text(json.dumps({"rotate_degrees": 30.0, "val_fraction": 0.25,
                                                   "fit": {"epochs": 7, "lr": 0.002}, "data": {"length": 48}}))  # fmt: skip
    same, _ = T.finetune_config(_finetune_args("--recipe", "few-labels", "--config", str(tmp_path / "run.json"),
                                               "--epochs", "2", "--labels-per-class", "3"))  # fmt: skip
    assert same == cfg
    # no flag given: the file's epochs; no file: the recipe's (activities: 30) or the default (100)
    assert T.finetune_config(_finetune_args("--recipe", "few-labels", "--config", str(tmp_path / "run.toml"),
                                            "--labels-per-class", "3"))[0].fit.epochs == 7  # fmt: skip
    assert T.finetune_config(_finetune_args("--recipe", "activities"))[0].fit.epochs == 30
    assert T.finetune_config(_finetune_args("--recipe", "baseline"))[0].fit.epochs == 100
    # --standardize beats the activities recipe's units-kept preprocessing
    act = T.finetune_config(_finetune_args("--recipe", "activities"))[0]
    assert act.data.preprocess["steps"] == [] and act.refit and act.rotate_degrees == 20.0
    std = T.finetune_config(_finetune_args("--recipe", "activities", "--standardize", "channel"))[0]
    assert std.data.preprocess["steps"] == [{"op": "standardize", "params": {}}]


def test_auto_recipe_follows_the_label_budget_wherever_it_is_given(tmp_path):
    assert T.finetune_config(_finetune_args())[1] == "all-labels"
    assert T.finetune_config(_finetune_args())[0].refit
    cfg, name = T.finetune_config(_finetune_args("--label-fraction", "0.1"))
    assert name == "few-labels" and not cfg.refit and cfg.consistency_weight == 1.0
    (tmp_path / "b.toml").write_text("labels_per_class = 5\n")
    assert T.finetune_config(_finetune_args("--config", str(tmp_path / "b.toml")))[1] == "few-labels"
    with pytest.raises(ValueError, match="refit trains on the validation labels too"):
        T.finetune_config(_finetune_args("--recipe", "all-labels", "--labels-per-class", "5"))
    assert resolve("auto", True).name == "few-labels" and resolve("auto", False).name == "all-labels"
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        resolve("fast", False)


def test_unknown_config_keys_are_errors_naming_the_key_and_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[fit]\nlrr = 0.1\n")
    with pytest.raises(ValueError, match=r"bad\.toml: unknown key 'fit\.lrr' \(expected one of: .*\blr\b"):
        T.finetune_config(_finetune_args("--config", str(bad)))
    bad.write_text("sam = 0.05\n")
    with pytest.raises(ValueError, match=r"bad\.toml: unknown key 'sam'"):
        T.finetune_config(_finetune_args("--config", str(bad)))
    bad.write_text("teachers = ['runs/big']\n")  # a removed option is unknown to a new config file
    with pytest.raises(ValueError, match=r"bad\.toml: unknown key 'teachers'"):
        T.finetune_config(_finetune_args("--config", str(bad)))
    bad.write_text("fit = 3\n")
    with pytest.raises(ValueError, match=r"'fit' must be a table of settings"):
        T.finetune_config(_finetune_args("--config", str(bad)))
    bad.write_text("[fit\n")
    with pytest.raises(ValueError, match=r"bad\.toml: not valid TOML"):
        T.finetune_config(_finetune_args("--config", str(bad)))
    with pytest.raises(FileNotFoundError, match="no such config file"):
        T.finetune_config(_finetune_args("--config", str(tmp_path / "missing.json")))
    (tmp_path / "p.json").write_text(json.dumps({"method": {"temprature": 0.2}}))
    with pytest.raises(ValueError, match=r"p\.json: unknown key 'method\.temprature'"):
        T.pretrain_config(build_parser().parse_args(["pretrain", "--out", "x", "--config", str(tmp_path / "p.json")]))


def test_pretrain_config_layers(tmp_path):
    (tmp_path / "p.toml").write_text('[method]\nname = "vicreg"\nrotate_degrees = 30.0\n[fit]\nbatch_size = 32\n'
                                     '[encoder]\nwidths = [16, 24, 32, 40]\n')  # fmt: skip
    a = build_parser().parse_args(["pretrain", "--out", "x", "--config", str(tmp_path / "p.toml"), "--method",
                                   "barlow", "--epochs", "3", "--seed", "4"])  # fmt: skip
    cfg = T.pretrain_config(a)
    assert cfg.method.name == "barlow" and cfg.method.rotate_degrees == 30.0  # the flag beats the file
    assert (cfg.fit.epochs, cfg.fit.batch_size, cfg.fit.seed, cfg.fit.lr) == (3, 32, 4, 1e-3)
    assert cfg.encoder.widths == (16, 24, 32, 40)
    plain = T.pretrain_config(build_parser().parse_args(["pretrain", "--out", "x"]))
    assert plain.method.name == "vicreg" and plain.fit.epochs == 50


def test_every_recipe_is_a_valid_documented_config():
    from edgessl.trainer.pipeline import FinetuneConfig

    assert set(NAMES) == {"auto", *RECIPES} and {"few-labels", "all-labels", "activities"} <= set(RECIPES)
    for r in RECIPES.values():
        assert r.summary and (r.evidence if r.settings else True)
        cfg, name = T.finetune_config(_finetune_args("--recipe", r.name))
        assert name == r.name and isinstance(cfg, FinetuneConfig)
        want = FinetuneConfig().to_dict()
        for k, v in r.settings.items():  # every setting of the recipe reached the config
            got = cfg.to_dict()[k]
            assert (got == {**want[k], **v}) if isinstance(v, dict) else got == v, (r.name, k)


def _separable_npz(path, channels, n_per_class=12, n_classes=4, length=32, seed=0):
    """Windows whose class is the frequency of a sine (small random phase, noise), on channels named ``channels``."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def windows(n):
        y = np.repeat(np.arange(n_classes), n)
        t = np.arange(length) / length
        phase = rng.uniform(0, 0.5, (len(y), len(channels), 1))
        X = np.sin(2 * np.pi * (y[:, None, None] + 1) * t + phase) + 0.1 * rng.standard_normal((len(y), len(channels), length))
        return X.astype(np.float32), y

    (X_train, y_train), (X_test, y_test) = windows(n_per_class), windows(20)
    np.savez(path, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
             channel_names=np.array(channels), class_names=np.array([f"f{c + 1}" for c in range(n_classes)]))  # fmt: skip


@pytest.mark.slow
def test_default_recipe_runs_on_channels_without_axis_names(tmp_path, capsys):
    """The default (auto = few-labels with a budget) asks for rotation views, which need (x, y, z) triads;
    on other channels the rotation is dropped with a note on stderr and in metrics, the rest of the recipe
    stays, and the model still learns separable classes."""
    import torch

    from edgessl.cli import main

    _separable_npz(tmp_path / "emg.npz", ["emg1", "emg2"])
    # a narrow network, small batches (more steps per epoch) and a short warm-up keep the test short; the
    # recipe's settings are untouched
    (tmp_path / "small.toml").write_text("[encoder]\nwidths = [8, 16, 16, 32]\n[fit]\nwarmup_epochs = 1\nbatch_size = 8\n"
                                         "lr = 0.003\n")  # fmt: skip
    small = ["--config", str(tmp_path / "small.toml")]
    assert main(["finetune", "--data", f"npz:{tmp_path / 'emg.npz'}", "--labels-per-class", "5", "--epochs", "20",
                 *small, "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert printed["recipe"] == "few-labels"
    notes = json.loads((tmp_path / "ft" / "metrics.json").read_text())["recipe_notes"]
    assert len(notes) == 1 and "rotation views (60 degrees) dropped" in notes[0] and "['emg1', 'emg2']" in notes[0]
    assert err.count("note: rotation views (60 degrees) dropped") == 1
    saved = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["config"]
    assert saved["rotate_degrees"] == 0.0  # what was trained
    assert saved["mixup_alpha"] == 0.2 and saved["self_train_rounds"] == 2 and saved["consistency_weight"] == 1.0
    assert printed["test_accuracy"] >= 0.8  # 4 classes: chance is 0.25 (1.0 when written)
    # with triads nothing is dropped
    _separable_npz(tmp_path / "acc.npz", ["acc_x", "acc_y", "acc_z"])
    assert main(["finetune", "--data", f"npz:{tmp_path / 'acc.npz'}", "--labels-per-class", "5", "--epochs", "1",
                 *small, "--out", str(tmp_path / "ft3"), "--quiet"]) == 0  # fmt: skip
    assert "note:" not in capsys.readouterr().err
    assert json.loads((tmp_path / "ft3" / "metrics.json").read_text())["recipe_notes"] == []
