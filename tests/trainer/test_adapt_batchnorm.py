"""Per-group BatchNorm adaptation at test time (AdaBN): statistics, per-user offsets, cross-fitting, CLI."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgessl.trainer import batchnorm as BN  # noqa: E402
from edgessl.trainer import evaluate as ev  # noqa: E402
from edgessl.trainer.encoders import EncoderConfig, build_encoder  # noqa: E402
from edgessl.trainer.supervised import Classifier  # noqa: E402


def _pointwise_model(seed: int = 0) -> nn.Module:
    """Conv(k=1) -> BN -> ReLU -> time mean -> Linear: an input offset is a constant shift before the BN."""
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.head = nn.Conv1d(3, 8, 1, bias=False), nn.BatchNorm1d(8), nn.Linear(8, 4)

        def forward(self, x):
            return self.head(torch.relu(self.bn(self.conv(x))).mean(-1))

    net = Net()
    with torch.no_grad():  # source statistics that do not match the test data
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_adapt_batchnorm_matches_the_batch_statistics_and_leaves_the_source_model():
    rng = np.random.default_rng(0)
    model = Classifier(build_encoder(EncoderConfig(in_channels=3)), 5, 128).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    X = (rng.normal(size=(40, 3, 32)) * [[2.0], [0.5], [1.0]] + [[1.0], [0.0], [-3.0]]).astype(np.float32)
    adapted = BN.adapt_batchnorm(model, X)
    for k, v in model.state_dict().items():  # the source model is untouched
        assert torch.equal(v, before[k]), k
    for (k, v), (_, w) in zip(model.named_parameters(), adapted.named_parameters(), strict=True):
        assert torch.equal(v, w), f"weight {k} changed"  # weights unchanged: only statistics move
    # the first BatchNorm's statistics are those of the first conv's outputs over windows and time
    conv, bn = adapted.encoder.features[0], adapted.encoder.features[1]
    with torch.no_grad():
        h = conv(torch.from_numpy(X)).transpose(0, 1).reshape(conv.out_channels, -1).double()
    np.testing.assert_allclose(bn.running_mean.double(), h.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_var.double(), h.var(1, unbiased=True), rtol=1e-4, atol=1e-5)
    assert not adapted.training and int(bn.num_batches_tracked) == 1
    # several batches: the plain average of the batch statistics
    two = BN.adapt_batchnorm(model, X, batch=20)
    with torch.no_grad():
        hs = [conv(torch.from_numpy(X[i : i + 20])).transpose(0, 1).reshape(conv.out_channels, -1) for i in (0, 20)]
    np.testing.assert_allclose(two.encoder.features[1].running_mean, (hs[0].mean(1) + hs[1].mean(1)) / 2, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 windows; got 1"):
        BN.adapt_batchnorm(model, X[:1])
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        BN.adapt_batchnorm(nn.Sequential(nn.Conv1d(3, 2, 1)), X)


def test_per_group_adaptation_removes_each_users_offset():
    rng = np.random.default_rng(1)
    model = _pointwise_model()
    X = rng.normal(size=(30, 3, 16)).astype(np.float32)
    offsets = np.array([[0.0], [0.0], [0.0]]), np.array([[0.8], [-1.5], [0.3]])  # user 1: another mounting bias
    Xs = np.concatenate([X + offsets[0], X + offsets[1]]).astype(np.float32)
    groups = np.repeat([7, 3], 30)
    logits = BN.group_adapted_logits(model, Xs, groups)
    # per-user statistics absorb the constant offset: both users get the same answers as the clean windows
    np.testing.assert_allclose(logits[:30], logits[30:], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits[:30], ev.predict_logits(BN.adapt_batchnorm(model, X), X), rtol=1e-5, atol=1e-5)
    plain = ev.predict_logits(model, Xs)
    assert np.abs(plain[:30] - plain[30:]).max() > 0.1  # without adaptation the offset changes the output
    with pytest.raises(ValueError, match="one id per window"):
        BN.group_adapted_logits(model, Xs, groups[:-1])


def test_crossfitted_adaptation_never_uses_a_window_in_its_own_statistics():
    rng = np.random.default_rng(2)
    model = _pointwise_model(seed=3)
    X = (rng.normal(size=(6, 3, 16)) * rng.uniform(0.5, 3, size=(6, 1, 1))).astype(np.float32)
    groups = np.zeros(6, int)
    cross = BN.group_adapted_logits(model, X, groups, crossfit_seed=0)
    for i in range(6):
        # some half of the other windows (3 of the 5) gives exactly this window's logits
        halves = [h for h in itertools.combinations(range(6), 3) if i not in h]
        assert any(np.allclose(ev.predict_logits(BN.adapt_batchnorm(model, X[list(h)]), X[i : i + 1])[0], cross[i],
                               rtol=1e-5, atol=1e-6) for h in halves), i  # fmt: skip
    assert not np.allclose(cross, BN.group_adapted_logits(model, X, groups))  # not the same as using all
    with pytest.raises(ValueError, match="group 0 has 3 windows; cross-fitted adaptation needs at least 4"):
        BN.group_adapted_logits(model, X[:3], groups[:3], crossfit_seed=0)


def test_per_group_adaptation_left_the_fine_tuning_config():
    """``test_adapt_groups`` left FinetuneConfig (a device cannot use it: BatchNorm is folded on export); the
    uWave / HAR benchmark computes the same figures from the saved model with the functions above. A config
    saved with it off still loads; one that asked for it is refused."""
    import edgessl.trainer.pipeline as PL

    old = {**PL.FinetuneConfig().to_dict(), "test_adapt_groups": None}
    assert PL.FinetuneConfig.from_dict(old) == PL.FinetuneConfig()
    with pytest.raises(ValueError, match="'test_adapt_groups' = 'subject' was trained with an option this version removed"):
        PL.FinetuneConfig.from_dict({**old, "test_adapt_groups": "subject"})
