"""The bundle's out-of-distribution threshold is calibrated on the model's held-out validation windows with
the int8 encoder the device runs, and the manifest says how; older models fall back to the training rule."""

import numpy as np
import pytest
from scipy.stats import norm

torch = pytest.importorskip("torch")

from edgessl.edge_runtime.bundle import ENCODER_INT8, open_bundle  # noqa: E402
from edgessl.export.pipeline import OOD_SHARE, ExportConfig, export_bundle  # noqa: E402
from edgessl.trainer.fit import save_atomic  # noqa: E402
from edgessl.trainer.pipeline import CROSS_FIT_BELOW, MODEL_FILE, load_classifier  # noqa: E402


def scores(bundle, X: np.ndarray) -> np.ndarray:
    """``1 − max cos(embedding, prototype)`` as the runtime computes it, on ``X`` ``[N, C, T]``."""
    from edgessl.edge_runtime.runtime import GestureRuntime

    with GestureRuntime(bundle) as rt:
        E = rt.embed(X)
        return np.array([1.0 - float((rt.prototypes @ e).max()) / max(float(np.linalg.norm(e)), 1e-12) for e in E])


def export_without(model_dir, tmp_path, keys: tuple[str, ...]):
    """The model's ``model.pt`` without ``keys`` (as an older version, or another data set, wrote it), exported
    with the default rules; returns (its info, the bundle)."""
    info = torch.load(model_dir / MODEL_FILE, weights_only=True)
    for k in (*keys, "checksum"):
        info.pop(k, None)
    other = tmp_path / "other"
    other.mkdir()
    save_atomic(info, other / MODEL_FILE)
    b = tmp_path / "other.essl"
    export_bundle(other, b, ExportConfig(min_agreement=0.9), progress=False)
    return info, b


def test_threshold_rejects_at_most_the_target_of_validation_windows(small_model, small_bundle):
    _, info = load_classifier(small_model)
    Xva = info["validation_windows"].numpy()
    assert info["validation_held_out"] and len(Xva) == len(info["validation_labels"]) > 0
    m = open_bundle(small_bundle).manifest
    rec, thr = m["ood_calibration"], m["ood_threshold"]
    assert rec["source"] == "validation" and rec["held_out"] and rec["windows"] == len(Xva)
    assert rec["target_rejection"] == pytest.approx(ExportConfig().target_rejection * OOD_SHARE)
    # measured again through the runtime (its own preprocessing, embedding and prototype path)
    s = scores(small_bundle, Xva)
    assert np.mean(s > thr) <= rec["target_rejection"] + 2.0 / len(s)
    assert abs(np.mean(s > thr) - rec["rejection"]) <= 1.0 / len(s)
    # a few validation windows: the model carries cross-fitted scores of its labelled windows, which lend the
    # log-normal their spread (raised to the previous rule's value when that is higher, never stricter)
    cross = info["cross_fit_ood"].numpy()
    assert len(Xva) < CROSS_FIT_BELOW and rec["cross_fitted_windows"] == len(cross) == len(info["cross_fit_confidence"])
    a, b = np.log(s), np.log(cross)
    pooled_sd = np.sqrt((((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (len(a) + len(b) - 2))
    fitted = np.exp(a.mean() + norm.ppf(1 - rec["target_rejection"]) * pooled_sd)
    assert rec["fitted_quantile"] == pytest.approx(fitted, rel=0.02)
    assert thr == pytest.approx(max(rec["fitted_quantile"], rec["training_p99"]))


def test_without_cross_fitted_scores_the_validation_quantile_counts_too(small_model, tmp_path):
    """A model with many held-out windows (or of an older version) has no cross-fitted scores: the gate is
    the largest of the validation quantile (upper order statistic), the log-normal's and the previous rule's."""
    info, b = export_without(small_model, tmp_path, ("cross_fit_ood", "cross_fit_confidence"))
    m = open_bundle(b).manifest
    rec, thr = m["ood_calibration"], m["ood_threshold"]
    assert rec["cross_fitted_windows"] == 0 == m["decision_calibration"]["cross_fitted_windows"]
    s = scores(b, info["validation_windows"].numpy())
    assert rec["rejection"] <= rec["target_rejection"]
    assert rec["validation_quantile"] == pytest.approx(np.quantile(s, 1 - rec["target_rejection"], method="higher"), abs=1e-3)
    assert thr == pytest.approx(max(rec["validation_quantile"], rec["fitted_quantile"], rec["training_p99"]))


def test_a_model_without_validation_windows_exports_with_the_training_rule(small_model, small_bundle, tmp_path):
    """A model.pt of the previous version (no validation windows) still exports; the record says so."""
    info, b = export_without(small_model, tmp_path, ("validation_windows", "validation_labels", "validation_held_out"))
    m = open_bundle(b).manifest
    rec = m["ood_calibration"]
    assert rec["source"] == "training" and rec["quantile"] == 0.99 and rec["windows"] == len(info["calibration_windows"])
    s = scores(b, info["calibration_windows"].numpy())
    assert m["ood_threshold"] == pytest.approx(np.quantile(s, 0.99), rel=1e-3, abs=1e-4)
    assert rec["rejection"] <= 0.01 + 1.0 / len(s)
    # the same model with its validation windows recorded this value as the previous rule's
    assert m["ood_threshold"] == pytest.approx(open_bundle(small_bundle).manifest["ood_calibration"]["training_p99"])
    assert ENCODER_INT8 in open_bundle(b).members


def test_target_rejection_is_checked():
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="target_rejection"):
            ExportConfig(target_rejection=bad)


def test_confidence_gate_is_calibrated_on_validation_windows(small_model, small_bundle):
    """Both gates together answer `unknown` to about the target share of held-out valid gestures, as recorded."""
    from edgessl.edge_runtime.bundle import open_bundle
    from edgessl.edge_runtime.runtime import GestureRuntime
    from edgessl.export.onnx_export import load_model

    m = open_bundle(small_bundle).manifest
    rec = m["decision_calibration"]
    assert rec["source"] == "validation" and rec["target_rejection"] == ExportConfig().target_rejection == 0.02
    assert 0.0 < m["confidence_threshold"] <= 0.5
    assert m["confidence_threshold"] == pytest.approx(min(0.5, rec["confidence_quantile"]))
    _, info = load_model(small_model)
    X = info["validation_windows"].numpy()
    with GestureRuntime(small_bundle) as rt:  # the runtime's defaults are the bundle's gates
        assert rt.confidence == m["confidence_threshold"] and rt.ood_threshold == m["ood_threshold"]
        preds = rt.classify(X)
    # the quantile is over the validation windows' confidences and the cross-fitted ones
    cross = info["cross_fit_confidence"].numpy()
    assert rec["cross_fitted_windows"] == len(cross)
    conf = np.concatenate([[p.confidence for p in preds], cross])
    assert rec["confidence_quantile"] == pytest.approx(np.quantile(conf, rec["target_rejection"] * (1 - OOD_SHARE),
                                                                   method="lower"), abs=1e-3)  # fmt: skip
    unknown = np.mean([p.index < 0 for p in preds])
    assert unknown == pytest.approx(rec["rejection"], abs=1.0 / len(X))
    assert rec["rejection"] <= rec["target_rejection"] + 2.0 / len(X)


def test_a_refit_model_sets_its_gates_on_validation_scores_of_the_model_selected_before(tmp_path):
    """A refit (the all-labels recipe) trains on the validation windows too: fine-tuning saves their scores
    under the model selected on them before the refit, and export sets the gates on those (with the
    cross-fitted ones), never on the test split, which then still measures what they reject."""
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig
    from edgessl.trainer.pipeline import FinetuneConfig, finetune

    model = tmp_path / "refit"
    cfg = FinetuneConfig(data=DataConfig(spec="synthetic:reps=6,length=128"), refit=True,
                         fit=FitConfig(epochs=8, batch_size=64, warmup_epochs=1, drop_last=False))  # fmt: skip
    finetune(cfg, model, progress=False, plots=False)
    _, info = load_classifier(model)
    n_val = len(info["validation_windows"])
    assert not info["validation_held_out"] and len(info["held_out_ood"]) == len(info["held_out_confidence"]) == n_val
    b = tmp_path / "refit.essl"
    export_bundle(model, b, ExportConfig(min_agreement=0.9), progress=False)
    m = open_bundle(b).manifest
    rec, ood_rec = m["decision_calibration"], m["ood_calibration"]
    assert rec["source"] == ood_rec["source"] == "validation (scored by the model selected before the refit)"
    assert rec["held_out"] and rec["windows"] == ood_rec["windows"] == n_val
    ood, conf = info["held_out_ood"].numpy(), info["held_out_confidence"].numpy()
    cross = info["cross_fit_confidence"].numpy() if "cross_fit_confidence" in info else np.zeros(0)
    q = np.quantile(np.concatenate([conf, cross]), rec["target_rejection"] * (1 - OOD_SHARE), method="lower")
    assert rec["confidence_quantile"] == pytest.approx(q, abs=1e-6)
    rejected = (conf < m["confidence_threshold"]) | (ood > m["ood_threshold"])
    assert rec["rejection"] == pytest.approx(rejected.mean())
