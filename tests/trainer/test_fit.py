import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer.encoders import EncoderConfig  # noqa: E402
from edgessl.trainer.fit import FitConfig, fit, load_checkpoint  # noqa: E402
from edgessl.trainer.methods import MethodConfig, build_method  # noqa: E402

SMALL = EncoderConfig(widths=(8, 16), kernels=(5, 3), strides=(1, 2))


def _data(n=48, t=32):
    return (torch.from_numpy(np.random.default_rng(0).normal(size=(n, 3, t)).astype(np.float32)),)


def _run(out, method_name="simclr", stop=None, resume=False, epochs=4):
    torch.manual_seed(0)
    m = build_method(SMALL, MethodConfig(name=method_name, proj_hidden=16, proj_dim=8))
    cfg = FitConfig(epochs=epochs, batch_size=16, warmup_epochs=1, seed=3)
    fit(m, _data(), cfg, out, {"kind": "test"}, resume=resume, stop_after_epoch=stop, progress=False)
    return m


@pytest.mark.parametrize("method_name", ["simclr", "masked"])
def test_resume_continues_exactly(tmp_path, method_name):
    full = _run(tmp_path / "full", method_name)
    _run(tmp_path / "cut", method_name, stop=1)  # "interrupted" after epoch 2 of 4
    ck = load_checkpoint(tmp_path / "cut")
    assert ck["epoch"] == 1
    resumed = _run(tmp_path / "cut", method_name, resume=True)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    _run(tmp_path, epochs=2)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(ck) >= {"model", "optimizer", "scheduler", "rng", "config", "epoch", "history", "format"}
    assert ck["config"] == {"kind": "test"}
    assert len(ck["history"]) == 2 and "lr" in ck["history"][0]


def test_warmup_then_cosine_schedule(tmp_path):
    _run(tmp_path, epochs=4)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(1e-3)  # end of the 1 warmup epoch: peak
    assert lrs[1] > lrs[2] > lrs[3] >= 0  # then decays
    assert lrs[3] == pytest.approx(0, abs=1e-9)


@pytest.mark.slow
def test_loss_decreases_on_learnable_data(tmp_path):
    from edgessl.preprocess import standardize
    from edgessl.synthetic import SyntheticConfig, make_dataset

    X = torch.from_numpy(standardize(make_dataset(SyntheticConfig(reps=3, length=64)).X_train))
    torch.manual_seed(0)
    m = build_method(EncoderConfig(), MethodConfig(name="vicreg"))
    h = fit(m, (X,), FitConfig(epochs=6, batch_size=64, warmup_epochs=1), tmp_path, {}, progress=False)
    assert h[-1]["loss"] < 0.9 * h[0]["loss"]


def test_old_configs_load_with_removed_options_off_and_are_refused_with_them_on():
    """EMA, SAM, integrated input and generated SS-GAN windows left the product: a config saved by the version
    that had them loads where they were off, and one trained with them on is refused, naming the key."""
    fit_cfg = FitConfig.from_dict({**FitConfig().to_dict(), "ema_decay": 0.0, "sam_rho": 0.0})
    assert fit_cfg == FitConfig()
    with pytest.raises(ValueError, match="fit: 'sam_rho' = 0.05 was trained with an option this version removed"):
        FitConfig.from_dict({**FitConfig().to_dict(), "sam_rho": 0.05})
    with pytest.raises(ValueError, match="'ema_decay' = 0.99"):
        FitConfig.from_dict({**FitConfig().to_dict(), "ema_decay": 0.99})
    assert EncoderConfig.from_dict({**EncoderConfig().to_dict(), "integrate": 0}) == EncoderConfig()
    with pytest.raises(ValueError, match="encoder: 'integrate' = 2"):
        EncoderConfig.from_dict({**EncoderConfig().to_dict(), "integrate": 2})
    old = {**MethodConfig().to_dict(), "gan_generator": None, "gan_fraction": 0.25}
    assert MethodConfig.from_dict(old) == MethodConfig()
    with pytest.raises(ValueError, match="method: 'gan_generator' = 'runs/gan'"):
        MethodConfig.from_dict({**old, "gan_generator": "runs/gan"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):  # an unknown key is no removed option
        FitConfig.from_dict({**FitConfig().to_dict(), "lrr": 0.1})


def test_invalid_config_errors():
    with pytest.raises(ValueError):
        FitConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown method"):
        MethodConfig(name="byol")
    with pytest.raises(ValueError, match="kind"):
        EncoderConfig(kind="rnn")
