"""The base install: the runtime side imports without torch, and the CLI answers --help / --version."""

import subprocess
import sys

import edgessl

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_side_imports_without_torch():
    r = _py(BLOCK_TORCH + "import edgessl.edge_runtime, edgessl.firmware_bridge, edgessl.datasets, "
            "edgessl.preprocess, edgessl.synthetic; assert 'torch' not in {m for m in sys.modules if sys.modules[m]}")
    assert r.returncode == 0, r.stderr


def test_blocking_torch_really_blocks():
    r = _py(BLOCK_TORCH + "import edgessl.trainer.augment")
    assert r.returncode != 0 and "torch" in r.stderr


def test_cli_help_and_version_without_torch():
    r = _py(BLOCK_TORCH + "from edgessl.cli import main; main(['--version'])")
    assert r.returncode == 0 and f"edgessl {edgessl.__version__}" in r.stdout
    r = _py(BLOCK_TORCH + "from edgessl.cli import main; main(['--help'])")
    assert r.returncode == 0, r.stderr
    for cmd in ("data", "synth", "demo"):
        assert cmd in r.stdout


def test_subpackages_are_the_four_parts_and_the_loaders():
    import pkgutil

    subs = sorted(m.name for m in pkgutil.iter_modules(edgessl.__path__) if m.ispkg)
    # the four parts of the flow, the loaders shared by both sides, and the live page that the runtime's and
    # the bridge's commands serve (it imports neither: tests/test_architecture.py)
    assert subs == ["dashboard", "datasets", "edge_runtime", "export", "firmware_bridge", "trainer"]


def test_data_info_cli_reports_bad_spec_clearly(capsys):
    from edgessl.cli import main

    assert main(["data", "info", "bogus:thing"]) == 2  # usage: a bad --data spec (docs/errors.md)
    assert "unknown dataset kind 'bogus'" in capsys.readouterr().err


def test_data_info_counts_a_window_file_per_class_and_person_and_says_when_people_are_on_both_sides(tmp_path, capsys):
    """A walkthrough read the UCR uWave file's test figure as one on new people: all 8 are in both splits, and
    `data info` printed one summary line. It now counts per class and per group, and says so."""
    import json

    import numpy as np

    from edgessl.cli import main

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 16)).astype(np.float32)
    y = np.array([0, 1] * 6)
    base = dict(X_train=X, y_train=y, X_test=X[:4], y_test=y[:4], class_names=np.array(["a", "b"]),
                channel_names=np.array(["acc_x", "acc_y", "acc_z"]), channel_units=np.array(["g"] * 3))  # fmt: skip
    shared, apart = tmp_path / "shared.npz", tmp_path / "apart.npz"
    np.savez(shared, **base, subject_train=np.repeat([1, 2, 3], 4), subject_test=np.array([3, 3, 4, 4]))
    np.savez(apart, **base, subject_train=np.repeat([1, 2, 3], 4), subject_test=np.array([5, 5, 6, 6]))
    assert main(["data", "info", f"npz:{shared}", "--json"]) == 0
    out = capsys.readouterr().out
    assert "per class (train/test): a 6/2, b 6/2" in out and "subject: 3 in train, 2 in test, 1 in both" in out
    assert "shares 1 of its 2 people with the training split: its figure is not one for a new person" in out
    info = json.loads(out.strip().splitlines()[-1])
    assert info["groups"]["subject"] == {"train": 3, "test": 2, "both": [3]}
    assert info["per_class_train_test"] == {"a": [6, 2], "b": [6, 2]}
    assert main(["data", "info", f"npz:{apart}"]) == 0
    out = capsys.readouterr().out
    assert "subject: 3 in train, 2 in test, none in both" in out and "not one for a new person" not in out


def test_data_info_gives_a_labelled_streams_seconds_per_class():
    """A walkthrough read HAPT's activities from the arrays: `data info` now gives each class's labelled time."""
    from types import SimpleNamespace

    import numpy as np

    from edgessl.cli import _stream_label_seconds

    per_sample = SimpleNamespace(rate_hz=50.0, class_names=["walk", "sit", "lie"], offsets=np.array([0, 300]),
                                 sample_labels=np.array([0] * 100 + [-1] * 50 + [1] * 150), recording_labels=None)  # fmt: skip
    assert _stream_label_seconds(per_sample) == {"walk": 2.0, "sit": 3.0}
    per_recording = SimpleNamespace(rate_hz=100.0, class_names=["a", "b"], offsets=np.array([0, 150, 250, 300]),
                                    sample_labels=None, recording_labels=np.array([1, 0, 1]))  # fmt: skip
    assert _stream_label_seconds(per_recording) == {"a": 1.0, "b": 2.0}
    assert _stream_label_seconds(SimpleNamespace(**{**vars(per_recording), "rate_hz": None})) == {}
