import json
import os
from pathlib import Path

import pytest

from edgessl.datasets import default_data_dir

# Under pytest-xdist (CI: two workers on two cores) one torch/OpenMP thread per worker, subprocesses included:
# two threads each oversubscribe the cores, and OpenMP's threads then wait on each other (a semi-supervised
# training test ran 3x longer on a loaded machine). Set before any test module imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if not (d / "manifest.json").exists():
        pytest.skip(f"shared data not found at {d} (set EDGESSL_DATA_DIR to the folder holding manifest.json)")
    return d


@pytest.fixture(scope="session")
def manifest(data_dir: Path) -> dict:
    return json.loads((data_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """A quickly fine-tuned model on synthetic data (the folder `edgessl finetune` writes)."""
    pytest.importorskip("torch")
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("model")
    cfg = FinetuneConfig(data=DataConfig(spec="synthetic:reps=6,length=128"),
                         fit=FitConfig(epochs=15, batch_size=64, warmup_epochs=1, drop_last=False))  # fmt: skip
    finetune(cfg, out, progress=False, plots=False)
    return out


@pytest.fixture(scope="session")
def small_bundle(small_model, tmp_path_factory) -> Path:
    from edgessl.export.pipeline import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "model.essl"
    export_bundle(small_model, out, ExportConfig(keep_fp32=True, min_agreement=0.9), progress=False)
    return out


@pytest.fixture(scope="session")
def ttt_bundle(small_bundle, tmp_path_factory) -> Path:
    """A bundle of a model fine-tuned with the self-supervised (TTT) head, which the trainer no longer trains
    by default; ``small_bundle`` itself when it has one. Keeps the fp32 encoder: every optional member."""
    from edgessl.edge_runtime.bundle import open_bundle

    if "ssl_head_weight" in open_bundle(small_bundle).adaptation():
        return small_bundle
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("ttt_model")
    cfg = FinetuneConfig(data=DataConfig(spec="synthetic:reps=6,length=128"), ssl_weight=0.1,
                         fit=FitConfig(epochs=15, batch_size=64, warmup_epochs=1, drop_last=False))  # fmt: skip
    finetune(cfg, out, progress=False, plots=False)
    bundle = tmp_path_factory.mktemp("ttt_bundle") / "model.essl"
    export_bundle(out, bundle, ExportConfig(keep_fp32=True, min_agreement=0.9), progress=False)
    return bundle
