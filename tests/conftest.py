import json
from pathlib import Path

import pytest

from edgessl.datasets import default_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if not (d / "manifest.json").exists():
        pytest.skip(f"shared data not found at {d} (set EDGESSL_DATA_DIR to the folder holding manifest.json)")
    return d


@pytest.fixture(scope="session")
def manifest(data_dir: Path) -> dict:
    return json.loads((data_dir / "manifest.json").read_text())
