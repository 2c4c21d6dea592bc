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


def _run(out, method_name="simclr", stop=None, resume=False, epochs=4, ema_decay=0.0):
    torch.manual_seed(0)
    m = build_method(SMALL, MethodConfig(name=method_name, proj_hidden=16, proj_dim=8))
    cfg = FitConfig(epochs=epochs, batch_size=16, warmup_epochs=1, seed=3, ema_decay=ema_decay)
    fit(m, _data(), cfg, out, {"kind": "test"}, resume=resume, stop_after_epoch=stop, progress=False)
    return m


@pytest.mark.parametrize(("method_name", "ema_decay"), [("simclr", 0.0), ("masked", 0.0), ("simclr", 0.9)])
def test_resume_continues_exactly(tmp_path, method_name, ema_decay):
    full = _run(tmp_path / "full", method_name, ema_decay=ema_decay)
    _run(tmp_path / "cut", method_name, stop=1, ema_decay=ema_decay)  # "interrupted" after epoch 2 of 4
    ck = load_checkpoint(tmp_path / "cut")
    assert ck["epoch"] == 1
    resumed = _run(tmp_path / "cut", method_name, resume=True, ema_decay=ema_decay)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]


class _Recorder(torch.nn.Module):
    """A linear regression whose loss() records the weights it is called with (those after each step)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.seen: list[torch.Tensor] = []

    def loss(self, batch, g):
        self.seen.append(self.lin.weight.detach().clone())
        (x,) = batch
        loss = ((self.lin(x) - x.sum(1, keepdim=True)) ** 2).mean()
        return loss, {"loss": float(loss.detach())}


def test_weight_average_is_the_exponential_moving_average_of_every_step(tmp_path):
    torch.manual_seed(0)
    m = _Recorder()
    x = torch.randn(40, 4)
    validated = []
    fit(m, (x,), FitConfig(epochs=3, batch_size=8, warmup_epochs=0, ema_decay=0.8, seed=1), tmp_path, {},
        validate=lambda mod: validated.append(mod.lin.weight.detach().clone()) or {}, progress=False)  # fmt: skip
    last = load_checkpoint(tmp_path)["model"]["lin.weight"]
    steps = m.seen[1:] + [last]  # the weights after each of the 15 optimiser steps
    assert len(steps) == 15
    avg = steps[0].clone()  # torch's EMA starts from the first update's weights
    by_epoch = []
    for k, w in enumerate(steps[1:], start=2):
        avg = 0.8 * avg + 0.2 * w
        if k % 5 == 0:
            by_epoch.append(avg.clone())
    assert torch.allclose(m.lin.weight, avg, atol=1e-6)  # the returned model is the average ...
    assert not torch.allclose(m.lin.weight, last)  # ... not the last step's weights
    for seen, want in zip(validated, by_epoch, strict=True):  # ... and validation judged the average
        assert torch.allclose(seen, want, atol=1e-6)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        FitConfig(ema_decay=1.0)
    _run(tmp_path / "plain", epochs=2, stop=0)
    with pytest.raises(ValueError, match="no weight average to resume"):
        _run(tmp_path / "plain", epochs=2, resume=True, ema_decay=0.9)


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


def test_loss_decreases_on_learnable_data(tmp_path):
    from edgessl.preprocess import standardize
    from edgessl.synthetic import SyntheticConfig, make_dataset

    X = torch.from_numpy(standardize(make_dataset(SyntheticConfig(reps=3, length=64)).X_train))
    torch.manual_seed(0)
    m = build_method(EncoderConfig(), MethodConfig(name="vicreg"))
    h = fit(m, (X,), FitConfig(epochs=6, batch_size=64, warmup_epochs=1), tmp_path, {}, progress=False)
    assert h[-1]["loss"] < 0.9 * h[0]["loss"]


def test_invalid_config_errors():
    with pytest.raises(ValueError):
        FitConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown method"):
        MethodConfig(name="byol")
    with pytest.raises(ValueError, match="kind"):
        EncoderConfig(kind="rnn")
