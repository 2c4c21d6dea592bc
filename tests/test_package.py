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
