import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer.encoders import EncoderConfig  # noqa: E402
from edgessl.trainer.fit import FitConfig, fit, load_checkpoint, sam_gradient  # noqa: E402
from edgessl.trainer.methods import MethodConfig, build_method  # noqa: E402

SMALL = EncoderConfig(widths=(8, 16), kernels=(5, 3), strides=(1, 2))


def _data(n=48, t=32):
    return (torch.from_numpy(np.random.default_rng(0).normal(size=(n, 3, t)).astype(np.float32)),)


def _run(out, method_name="simclr", stop=None, resume=False, epochs=4, ema_decay=0.0, sam_rho=0.0):
    torch.manual_seed(0)
    m = build_method(SMALL, MethodConfig(name=method_name, proj_hidden=16, proj_dim=8))
    cfg = FitConfig(epochs=epochs, batch_size=16, warmup_epochs=1, seed=3, ema_decay=ema_decay, sam_rho=sam_rho)
    fit(m, _data(), cfg, out, {"kind": "test"}, resume=resume, stop_after_epoch=stop, progress=False)
    return m


@pytest.mark.parametrize(("method_name", "ema_decay", "sam_rho"),
                         [("simclr", 0.0, 0.0), ("masked", 0.0, 0.0), ("simclr", 0.9, 0.0), ("masked", 0.0, 0.05)])
def test_resume_continues_exactly(tmp_path, method_name, ema_decay, sam_rho):
    full = _run(tmp_path / "full", method_name, ema_decay=ema_decay, sam_rho=sam_rho)
    _run(tmp_path / "cut", method_name, stop=1, ema_decay=ema_decay, sam_rho=sam_rho)  # "interrupted" after epoch 2 of 4
    ck = load_checkpoint(tmp_path / "cut")
    assert ck["epoch"] == 1
    resumed = _run(tmp_path / "cut", method_name, resume=True, ema_decay=ema_decay, sam_rho=sam_rho)
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


class _Sine(torch.nn.Module):
    """loss = sum(r * sin(w)) with r drawn from the step's generator: known gradient, random draws."""

    def __init__(self, n=5):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1.0, 2.0, n, dtype=torch.float64))
        self.draws: list[torch.Tensor] = []

    def loss(self, batch, g):
        r = torch.rand(len(self.w), generator=g, dtype=torch.float64)
        self.draws.append(r)
        loss = (r * torch.sin(self.w)).sum()
        return loss, {"loss": float(loss.detach())}


def test_sam_gradient_is_the_gradient_at_the_moved_weights_and_the_weights_come_back():
    m, g, rho = _Sine(), torch.Generator().manual_seed(0), 0.3
    w0 = m.w.detach().clone()
    state = g.get_state()
    m.loss(None, g)[0].backward()

    def again():
        g.set_state(state)
        return m.loss(None, g)[0]

    got = sam_gradient(m, [m.w], rho, again)
    r = m.draws[0]
    assert torch.equal(m.draws[1], r)  # the second pass saw the same draw
    g1 = r * torch.cos(w0)
    moved = w0 + rho * g1 / torch.linalg.vector_norm(g1)  # Foret et al. eq. 2: ε = ρ g / ||g||
    assert torch.allclose(m.w.grad, r * torch.cos(moved), rtol=1e-12, atol=0)
    assert got == pytest.approx(float((r * torch.sin(moved)).sum()), rel=1e-12)
    assert torch.equal(m.w.detach(), w0)


def test_sam_second_pass_leaves_batchnorm_statistics_as_the_first_set_them():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(3, 4, 3), torch.nn.BatchNorm1d(4)).train()
    x = torch.randn(8, 3, 16)
    net(x).square().mean().backward()
    bn = net[1]
    after_first = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    sam_gradient(net, list(net.parameters()), 0.05, lambda: net(x).square().mean())
    assert torch.equal(bn.running_mean, after_first[0]) and torch.equal(bn.running_var, after_first[1])
    assert torch.equal(bn.num_batches_tracked, after_first[2]) and bn.momentum == 0.1


def test_fit_with_sam_repeats_each_steps_draws_and_keeps_the_plain_runs_stream(tmp_path):
    plain, sam = _Sine(), _Sine()
    x = torch.zeros(12, 1)
    fit(plain, (x,), FitConfig(epochs=2, batch_size=4, warmup_epochs=0, seed=2), tmp_path / "a", {}, progress=False)
    h = fit(sam, (x,), FitConfig(epochs=2, batch_size=4, warmup_epochs=0, seed=2, sam_rho=0.05), tmp_path / "b", {},
            progress=False)  # fmt: skip
    assert len(sam.draws) == 2 * len(plain.draws) == 12
    for k, r in enumerate(plain.draws):  # each step: the same draw twice, and the plain run's draw
        assert torch.equal(sam.draws[2 * k], r) and torch.equal(sam.draws[2 * k + 1], r)
    assert "sam_loss" in h[0] and not torch.equal(sam.w, plain.w)


def test_invalid_config_errors():
    with pytest.raises(ValueError):
        FitConfig(epochs=0)
    with pytest.raises(ValueError, match="sam_rho must be a finite radius"):
        FitConfig(sam_rho=-0.1)
    with pytest.raises(ValueError, match="unknown method"):
        MethodConfig(name="byol")
    with pytest.raises(ValueError, match="kind"):
        EncoderConfig(kind="rnn")
