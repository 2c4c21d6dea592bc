"""Cross-fitted decision evidence: when the held-out windows are few, fine-tuning scores every labelled window
with a model that did not train on it, and export sets the gates on those scores as well."""

import dataclasses
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer import pipeline  # noqa: E402
from edgessl.trainer.data import DataConfig  # noqa: E402


class _Linear(torch.nn.Module):
    """A model whose embedding is the flattened window and whose head is a fixed random matrix."""

    def __init__(self, trained: np.ndarray, n_classes: int):
        super().__init__()
        self.trained = {w.tobytes() for w in trained}
        d = trained[0].size
        self.encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, d))
        with torch.no_grad():  # the identity, as a layer with weights (the trainer finds the device there)
            self.encoder[1].weight.copy_(torch.eye(d))
            self.encoder[1].bias.zero_()
        g = torch.Generator().manual_seed(len(trained))
        self.head = torch.nn.Linear(d, n_classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=g))

    def forward(self, x):
        return self.head(self.encoder(x))


def _run(n_per_class: int, n_classes: int = 3, test: int = 10) -> pipeline._Run:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_per_class * n_classes, 3, 8)).astype(np.float32)
    y = np.repeat(np.arange(n_classes), n_per_class)
    tr, va = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    ds = types.SimpleNamespace(y_train=y, n_classes=n_classes, groups={})
    cfg = pipeline.FinetuneConfig(data=DataConfig(spec="synthetic"), refit=True)
    return pipeline._Run(cfg, ds, X, np.zeros((test, 3, 8), np.float32), tr, va, np.arange(0), X[:0], (), None,
                         None, False, [])  # fmt: skip


def test_every_labelled_window_is_scored_by_a_model_that_did_not_train_on_it(monkeypatch):
    fits = []

    def fake_train(run, X, y, stop_after_epoch=None):
        assert stop_after_epoch == 4 and not run.progress  # trained like the refit, quietly
        fits.append(_Linear(X, run.ds.n_classes))
        return fits[-1], None, []

    monkeypatch.setattr(pipeline, "_train", fake_train)
    run = _run(n_per_class=8)
    out = pipeline._cross_fit(run, best_epoch=4)
    X = np.concatenate([run.Xtr, run.Xva])
    y = np.concatenate([run.ytr, run.yva])
    assert len(fits) == pipeline.CROSS_FIT_FOLDS
    ood, conf = out["cross_fit_ood"].numpy(), out["cross_fit_confidence"].numpy()
    assert ood.shape == conf.shape == (len(X),)
    for i, w in enumerate(X):
        blind = [m for m in fits if w.tobytes() not in m.trained]
        assert len(blind) == 1  # exactly one fold held it out; every other fold trained on it
        m = blind[0]
        trained = np.array([x.tobytes() in m.trained for x in X])
        E = X.reshape(len(X), -1) / np.linalg.norm(X.reshape(len(X), -1), axis=1, keepdims=True)
        protos = np.stack([E[trained & (y == c)].mean(0) for c in range(3)])
        protos /= np.linalg.norm(protos, axis=1, keepdims=True)
        assert ood[i] == pytest.approx(1 - (protos @ E[i]).max(), abs=1e-5)
        with torch.no_grad():
            p = torch.softmax(m(torch.from_numpy(w[None])), 1)[0].numpy()
        assert conf[i] == pytest.approx(p.max(), abs=1e-5)
    # each fold holds out a quarter of every class (8 windows each: 2)
    for m in fits:
        held = np.array([x.tobytes() not in m.trained for x in X])
        assert all(held[y == c].sum() == 8 // pipeline.CROSS_FIT_FOLDS for c in range(3))


def test_a_performances_overlapping_windows_are_held_out_together(monkeypatch):
    # sliding windows of one performance share samples: a fold that trained on one of them is not blind to the rest
    held_sets = []

    def fake_train(run, X, y, stop_after_epoch=None):
        held_sets.append({w.tobytes() for w in X})
        return _Linear(X, run.ds.n_classes), None, []

    monkeypatch.setattr(pipeline, "_train", fake_train)
    run = _run(n_per_class=16)
    perf = np.arange(len(run.ds.y_train)) // 2  # two windows per performance (rows 2k and 2k+1: one class each)
    run.ds.groups = {"performance": (perf, perf[:0])}
    assert len(pipeline._cross_fit(run, best_epoch=4)["cross_fit_ood"]) == len(perf)
    X_all = np.concatenate([run.Xtr, run.Xva])
    order = np.concatenate([run.tr, run.va])  # the rows of X_all
    for trained in held_sets:
        seen = np.array([w.tobytes() in trained for w in X_all])
        for k in np.unique(perf):
            assert len(set(seen[perf[order] == k].tolist())) == 1  # both windows of a performance, or neither


def test_too_few_windows_of_a_class_for_the_folds_gives_nothing(monkeypatch):
    monkeypatch.setattr(pipeline, "_train", lambda *a, **k: pytest.fail("no fold should train"))
    run = _run(n_per_class=pipeline.CROSS_FIT_FOLDS - 1)
    assert pipeline._cross_fit(run, best_epoch=0) == {}


def test_only_small_held_out_sets_get_cross_fitted():
    run = _run(8, test=10)  # a refit: its validation windows still (scored before the refit), never the test split
    assert pipeline._calibration_windows(run) == len(run.va)
    assert pipeline._calibration_windows(dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, refit=False))) == len(run.va)


def test_finetune_records_cross_fitted_scores_only_when_export_can_use_them(tmp_path):
    """A small held-out split: model.pt carries one score of each kind per labelled window; a large one
    (64 or more windows): none, no fold is trained."""
    fit = dataclasses.replace(pipeline.FinetuneConfig().fit, epochs=1)
    data = DataConfig(spec="synthetic:reps=3,length=64")
    pipeline.finetune(pipeline.FinetuneConfig(data=data, fit=fit), tmp_path / "small", progress=False, plots=False)
    info = torch.load(tmp_path / "small" / pipeline.MODEL_FILE, weights_only=True)
    n_val = len(info["validation_windows"])
    assert 0 < n_val < pipeline.CROSS_FIT_BELOW
    n_labelled = info["metrics"]["n_train_labels"] + n_val
    assert len(info["cross_fit_ood"]) == len(info["cross_fit_confidence"]) == n_labelled
    assert np.all((info["cross_fit_confidence"].numpy() > 0) & (info["cross_fit_confidence"].numpy() <= 1))
    assert np.all(info["cross_fit_ood"].numpy() >= -1e-6)
    pipeline.finetune(pipeline.FinetuneConfig(data=data, fit=fit, val_fraction=0.5), tmp_path / "large", progress=False,
                      plots=False)  # fmt: skip
    info = torch.load(tmp_path / "large" / pipeline.MODEL_FILE, weights_only=True)
    assert len(info["validation_windows"]) >= pipeline.CROSS_FIT_BELOW and "cross_fit_ood" not in info
