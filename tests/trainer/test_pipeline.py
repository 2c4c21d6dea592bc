import dataclasses
import io
import json
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.trainer.data import label_budget_split, resolve_channels  # noqa: E402
from edgessl.trainer.encoders import EncoderConfig, build_encoder, count_parameters  # noqa: E402

CLEARLY_ABOVE_CHANCE = 0.35  # the synthetic gestures have 8 classes: chance is 0.125


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_encoders_small_any_length_and_onnx_exportable(kind):
    import onnx

    enc = build_encoder(EncoderConfig(kind=kind, in_channels=3)).eval()
    assert count_parameters(enc) <= 150_000
    for t in (64, 128, 315):
        assert enc(torch.randn(2, 3, t)).shape == (2, EncoderConfig(kind=kind).out_dim)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(enc, torch.randn(1, 3, 128), f, dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node}
    assert ("Conv" in ops) and ops <= {"Conv", "Relu", "ReduceMean", "MatMul", "Gemm", "Add", "Mul", "Softmax",
                                       "Transpose", "Reshape", "LayerNormalization", "Div", "Sqrt", "Sub", "Pow",
                                       "Constant", "Resize", "Shape", "Gather", "Slice", "Concat", "Unsqueeze",
                                       "Squeeze", "Split", "Cast", "Where", "Equal", "ConstantOfShape", "Expand",
                                       "ReduceMax", "Identity"}, ops  # fmt: skip
    if kind == "cnn":
        assert "BatchNormalization" not in ops  # folded into Conv by the exporter in eval mode


def test_label_budget_split_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), 25)
    tr, va = label_budget_split(y, per_class=3, val_fraction=0.2, seed=0)
    assert len(set(tr) & set(va)) == 0
    assert np.all(np.bincount(y[tr]) == 3) and np.all(np.bincount(y[va]) == 5)
    tr, _ = label_budget_split(y, fraction=0.1, seed=0)
    assert np.all(np.bincount(y[tr]) == 2)
    with pytest.raises(ValueError, match="only 20 training rows"):
        label_budget_split(y, per_class=21)


def test_group_wise_validation_split_keeps_each_group_whole():
    groups = np.repeat(np.arange(10), 30)  # 10 subjects, 30 windows each, every class in every subject
    y = np.tile(np.arange(3), 100)
    tr, va = label_budget_split(y, val_fraction=0.2, seed=1, groups=groups)
    assert set(groups[tr]).isdisjoint(groups[va]) and len(set(groups[va])) == 2  # 2 whole subjects = 20 %
    assert len(tr) + len(va) == len(y)
    # the budget is still k per class, drawn outside the validation subjects
    tr5, va5 = label_budget_split(y, per_class=5, seed=1, groups=groups)
    assert np.all(np.bincount(y[tr5]) == 5) and set(groups[tr5]).isdisjoint(groups[va5])
    assert np.array_equal(va5, va)  # the same seed picks the same validation subjects whatever the budget
    other = {tuple(np.unique(groups[label_budget_split(y, seed=s, groups=groups)[1]])) for s in range(6)}
    assert len(other) > 1  # seeds draw different subjects
    with pytest.raises(ValueError, match="one id per training row"):
        label_budget_split(y, groups=groups[:-1])
    with pytest.raises(ValueError, match="at least 2 groups"):
        label_budget_split(y, groups=np.zeros_like(y))
    # a seed whose validation half holds subject 0; then let class 3 live in subject 0 alone
    seed = next(s for s in range(50) if 0 in groups[label_budget_split(y, val_fraction=0.5, seed=s, groups=groups)[1]])
    with pytest.raises(ValueError, match=r"took every training row of classes \[3\]"):
        label_budget_split(np.where(groups == 0, 3, y), val_fraction=0.5, seed=seed, groups=groups)


def test_k_fold_validation_partitions_the_training_rows():
    y = np.repeat(np.arange(3), [21, 17, 12])
    vals = [label_budget_split(y, seed=4, fold=(i, 5))[1] for i in range(5)]
    assert np.array_equal(np.sort(np.concatenate(vals)), np.arange(len(y)))  # every row validates exactly once
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= 1
    for c in range(3):  # stratified: each fold holds a fifth of each class, to a row
        per_fold = [np.sum(y[v] == c) for v in vals]
        assert max(per_fold) - min(per_fold) <= 1
    tr, va = label_budget_split(y, per_class=2, seed=4, fold=(3, 5))
    assert np.array_equal(va, vals[3]) and np.all(np.bincount(y[tr]) == 2) and set(tr).isdisjoint(va)
    assert not np.array_equal(label_budget_split(y, seed=5, fold=(0, 5))[1], vals[0])  # a seed is a partition
    with pytest.raises(ValueError, match="k >= 2 and 0 <= i < k"):
        label_budget_split(y, fold=(5, 5))
    with pytest.raises(ValueError, match="does not take groups"):
        label_budget_split(y, fold=(0, 5), groups=np.arange(len(y)) % 4)


@pytest.mark.slow
def test_cross_validation_pools_the_folds_and_never_predicts_the_test_split(tmp_path, monkeypatch):
    import edgessl.trainer.evaluate as ev
    import edgessl.trainer.pipeline as PL
    from edgessl.cli import main
    from edgessl.trainer.fit import FitConfig

    data = PL.DataConfig(spec="synthetic:reps=3,length=64")
    ds, X_train, X_test = PL.labelled(data)
    predicted = []
    real_predict = ev.predict_logits
    monkeypatch.setattr(ev, "predict_logits", lambda m, X: predicted.append(X.shape) or real_predict(m, X))
    cfg = PL.FinetuneConfig(data=data, fit=FitConfig(epochs=3, batch_size=32, warmup_epochs=1, drop_last=False),
                            refit=True)  # fmt: skip
    r = PL.cross_validate(cfg, 4, tmp_path / "cv", repeats=2, progress=False)
    fold_sizes = {len(label_budget_split(ds.y_train, seed=s, fold=(i, 4))[1]) for s in (0, 1) for i in range(4)}
    assert len(X_test) not in fold_sizes  # (so that the shapes below tell the splits apart)
    assert predicted and {shape[0] for shape in predicted} <= fold_sizes  # validation folds only, never the test
    assert not (tmp_path / "cv" / "seed0_fold0" / "model.pt").exists()  # selection runs write no model
    assert r["n_windows"] == len(X_train) and r["folds"] == 4 and len(r["per_repeat"]) == 2
    # the pooled curve is the folds' correct windows over all validation windows, epoch by epoch
    folds = [json.loads(line) for s in (0, 1) for i in range(4)
             for line in (tmp_path / "cv" / f"seed{s}_fold{i}" / "metrics.jsonl").read_text().splitlines()]
    for e in range(3):
        rows = [f for f in folds if f["epoch"] == e]
        assert len(rows) == 8
        sizes = [len(label_budget_split(ds.y_train, seed=s, fold=(i, 4))[1]) for s in (0, 1) for i in range(4)]
        want = sum(round(f["val_accuracy"] * n) for f, n in zip(rows, sizes, strict=True)) / (2 * len(X_train))
        assert r["curve"][e]["val_accuracy"] == pytest.approx(want)
    assert r["cv_accuracy"] == max(c["val_accuracy"] for c in r["curve"])
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["cv_accuracy"] == r["cv_accuracy"]
    with pytest.raises(ValueError, match="without val_groups"):
        PL.FinetuneConfig(val_fold=(0, 3), val_groups="subject")
    with pytest.raises(ValueError, match="does not take val_groups"):
        PL.cross_validate(dataclasses.replace(cfg, val_groups="subject"), 3, tmp_path / "g", progress=False)
    monkeypatch.undo()
    assert main(["finetune", "--data", "synthetic:reps=3,length=64", "--epochs", "2", "--cv", "2", "--out",
                 str(tmp_path / "cli"), "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "cli" / "cv.json").exists() and not (tmp_path / "cli" / "metrics.json").exists()


def test_finetune_validates_on_unseen_subjects(tmp_path):
    import edgessl.trainer.pipeline as PL
    from edgessl.cli import main

    data = "synthetic:reps=3,length=64"
    with pytest.raises(ValueError, match="no per-row 'day' ids.*'repetition', 'subject'"):
        PL.finetune(PL.FinetuneConfig(data=PL.DataConfig(spec=data), val_groups="day"), tmp_path / "x")
    (tmp_path / "run.toml").write_text('val_groups = "subject"\n[fit]\nbatch_size = 32\n')
    assert main(["finetune", "--data", data, "--config", str(tmp_path / "run.toml"), "--recipe", "baseline",
                 "--epochs", "2", "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert "whole subject groups" in m["protocol"]
    saved = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["config"]
    assert saved["fit"]["batch_size"] == 32 and saved["fit"]["epochs"] == 2 and saved["val_groups"] == "subject"
    ds = PL.labelled(PL.DataConfig(spec=data))[0]
    tr, va = label_budget_split(ds.y_train, seed=0, groups=ds.groups["subject"][0])
    assert m["n_val"] == len(va) and m["n_train_labels"] == len(tr)
    assert set(ds.groups["subject"][0][tr]).isdisjoint(ds.groups["subject"][0][va])


def test_a_budget_that_labels_every_window_leaves_the_unlabelled_part_off_and_says_so(tmp_path, capsys):
    """few-labels' consistency training and self-training need windows beyond the label budget: with none, a
    note says they are off (and where unlabelled windows come from); a budget larger than a class names it."""
    import edgessl.trainer.pipeline as PL

    cfg = PL.FinetuneConfig(data=PL.DataConfig(spec="synthetic:reps=3,length=64"), labels_per_class=2,
                            consistency_weight=1.0, self_train_rounds=2)  # fmt: skip
    assert len(PL._prepare(cfg, tmp_path, False).U) > 0 and "note:" not in capsys.readouterr().err
    every = PL._prepare(dataclasses.replace(cfg, labels_per_class=14), tmp_path, False)  # 18 per class, 4 validation
    assert len(every.U) == 0 and len(every.notes) == 1 and "no unlabelled windows" in every.notes[0]
    assert "pretrain" in every.notes[0] and capsys.readouterr().err.count("note: consistency training") == 1
    with pytest.raises(ValueError, match=r"class 'square' has only 14 training rows outside validation \(4 of its 18"):
        PL._prepare(dataclasses.replace(cfg, labels_per_class=15), tmp_path, False)


def test_finetune_rotation_views(tmp_path, monkeypatch):
    import edgessl.trainer.pipeline as PL
    from edgessl.cli import main
    from edgessl.trainer.augment import Compose

    data = "synthetic:reps=3,length=64"
    # no (x, y, z) triad among the channels: the rotation is dropped with a note (tests/trainer/test_cli.py)
    m = PL.finetune(PL.FinetuneConfig(data=PL.DataConfig(spec=data, channels=("acc_x", "acc_y")), rotate_degrees=10,
                                      fit=dataclasses.replace(PL.FinetuneConfig().fit, epochs=1)), tmp_path / "x", progress=False, plots=False)  # fmt: skip
    assert len(m["recipe_notes"]) == 1 and re.search(r"triads named like acc_x.*\['acc_x', 'acc_y'\]", m["recipe_notes"][0])
    with pytest.raises(ValueError, match=r"rotate_degrees must be in \[0, 180\]"):
        PL.FinetuneConfig(rotate_degrees=-5)
    built = []  # the views the training loop is given
    monkeypatch.setattr(PL, "finetune_augment", lambda *a: built.append(a) or Compose([]))
    (tmp_path / "rot.json").write_text(json.dumps({"rotate_degrees": 12}))
    assert main(["finetune", "--data", data, "--recipe", "baseline", "--config", str(tmp_path / "rot.json"),
                 "--epochs", "1", "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    # the model, then its cross-fitted folds (few held-out windows), all with the same views
    assert built == [(12.0, ((0, 1, 2),))] * (1 + PL.CROSS_FIT_FOLDS)
    saved = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["config"]
    assert saved["rotate_degrees"] == 12.0


def test_finetune_augment_rotation_op():
    from edgessl.trainer.supervised import finetune_augment

    assert "rotate" not in [o.op for o in finetune_augment().ops]
    rot = finetune_augment(20.0, [(0, 1, 2), (3, 4, 5)]).ops[0]
    assert rot.op == "rotate" and rot.p == 0.5 and rot.params == {"max_degrees": 20.0, "triads": ((0, 1, 2), (3, 4, 5))}


@pytest.mark.slow
def test_pretrain_rotation_views(tmp_path, monkeypatch):
    import edgessl.trainer.methods as M
    import edgessl.trainer.pipeline as PL
    from edgessl.cli import main
    from edgessl.datasets import write_ts
    from edgessl.trainer.augment import default_pipeline

    data = "synthetic:reps=3,length=64"
    built = []  # the views each method is given
    monkeypatch.setattr(M, "default_pipeline", lambda *a: built.append(a) or default_pipeline(*a))
    (tmp_path / "pt.toml").write_text("[method]\nrotate_degrees = 30.0\n[fit]\nbatch_size = 32\nwarmup_epochs = 1\n")
    assert main(["pretrain", "--data", data, "--method", "vicreg", "--config", str(tmp_path / "pt.toml"), "--epochs",
                 "2", "--out", str(tmp_path / "pt"), "--quiet"]) == 0  # fmt: skip
    assert built == [(30.0, ((0, 1, 2),))]
    saved = torch.load(tmp_path / "pt" / "checkpoint.pt", weights_only=True)
    m = M.MethodConfig.from_dict(saved["config"]["method"])
    assert (m.rotate_degrees, m.triads) == (30.0, ((0, 1, 2),))  # rebuilt from the checkpoint alone
    # an interrupted run resumes with the same views
    half = tmp_path / "half"
    PL.pretrain(PL.PretrainConfig.from_dict(saved["config"]), half, progress=False, stop_after_epoch=0)
    PL.pretrain(PL.PretrainConfig.from_dict(saved["config"]), half, resume=True, progress=False)
    resumed = torch.load(half / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(resumed[k], saved["model"][k]) for k in saved["model"])
    # errors: no triads among the channels, a method without views, pooled sources of other channels
    with pytest.raises(ValueError, match=r"triads named like acc_x.*\['acc_x', 'acc_y'\]"):
        PL.pretrain(PL.PretrainConfig(PL.DataConfig(spec=data, channels=("acc_x", "acc_y")),
                                      method=M.MethodConfig(name="simclr", rotate_degrees=10)), tmp_path / "x")  # fmt: skip
    with pytest.raises(ValueError, match="masked trains on windows without augmented views"):
        M.MethodConfig(name="masked", rotate_degrees=10)
    with pytest.raises(ValueError, match=r"rotate_degrees must be in \[0, 180\]"):
        M.MethodConfig(name="vicreg", rotate_degrees=200)
    rng = np.random.default_rng(0)
    write_ts(tmp_path / "other_TRAIN.ts", rng.normal(size=(6, 3, 64)), np.arange(6) % 2, ["a", "b"])
    write_ts(tmp_path / "other_TEST.ts", rng.normal(size=(6, 3, 64)), np.arange(6) % 2, ["a", "b"])
    from edgessl.datasets import DataFormatError
    from edgessl.trainer.data import unlabelled_windows

    with pytest.raises(DataFormatError, match=r"different channels: \['acc_x', 'acc_y', 'acc_z'\] and \['dim_0'"):
        unlabelled_windows(PL.DataConfig(spec=f"{data}+ucr:{tmp_path / 'other'}"))


def test_default_pipeline_rotation_op():
    from edgessl.trainer.augment import default_pipeline
    from edgessl.trainer.encoders import EncoderConfig
    from edgessl.trainer.methods import MethodConfig, build_method

    assert "rotate" not in [o.op for o in default_pipeline().ops]
    rot = default_pipeline(45, [(0, 1, 2), (3, 4, 5)]).ops[0]
    assert rot.op == "rotate" and rot.p == 0.5 and rot.params == {"max_degrees": 45.0, "triads": ((0, 1, 2), (3, 4, 5))}
    method = build_method(EncoderConfig(in_channels=6), MethodConfig(name="barlow", rotate_degrees=45,
                                                                     triads=[[0, 1, 2], [3, 4, 5]]))  # fmt: skip
    assert method.augment.ops[0].params["triads"] == ((0, 1, 2), (3, 4, 5))
    x = torch.randn(64, 6, 32)
    v = method.augment(x, torch.Generator().manual_seed(0))
    # a rotation keeps each triad's norm at every sample (the other ops of the view are off for this check)
    only_rot = default_pipeline(45, [(0, 1, 2), (3, 4, 5)]).ops[0]
    r = only_rot(x, torch.Generator().manual_seed(0))
    assert torch.allclose(r[:, :3].norm(dim=1), x[:, :3].norm(dim=1), atol=1e-5)
    assert 0 < (r != x).any(-1).any(-1).float().mean() < 1 and v.shape == x.shape


def test_cli_widths_through_a_config_file(tmp_path, capsys):
    from edgessl.cli import main
    from edgessl.trainer.encoders import EncoderConfig, build_encoder, count_parameters

    data = "synthetic:reps=3,length=64"
    (tmp_path / "w.toml").write_text("[encoder]\nwidths = [16, 24, 32, 40]\n")
    assert main(["finetune", "--data", data, "--config", str(tmp_path / "w.toml"), "--recipe", "baseline", "--epochs",
                 "1", "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    saved = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)
    assert saved["config"]["encoder"]["widths"] == [16, 24, 32, 40]
    assert saved["model"]["encoder.features.9.weight"].shape == (40, 32, 3)  # the 4th block's conv
    capsys.readouterr()
    (tmp_path / "w3.toml").write_text("[encoder]\nwidths = [16, 24, 32]\n")
    assert main(["finetune", "--data", data, "--config", str(tmp_path / "w3.toml"), "--out", str(tmp_path / "x")]) != 0
    assert "widths, kernels and strides must be non-empty and of equal length" in capsys.readouterr().err
    assert main(["finetune", "--data", data, "--init", str(tmp_path / "ft"), "--config", str(tmp_path / "w.toml"),
                 "--out", str(tmp_path / "y")]) != 0  # fmt: skip
    assert "set the architecture of a model from scratch" in capsys.readouterr().err
    # the widest of the default's shape that the 150k-parameter cap allows
    assert count_parameters(build_encoder(EncoderConfig(in_channels=3, widths=(48, 96, 128, 160)))) <= 150_000


def test_channel_aliases():
    assert resolve_channels(["body_acc_x", "total_acc_x", "total_acc_y", "total_acc_z"], ["acc_x", "acc_y", "acc_z"]) == [1, 2, 3]
    with pytest.raises(ValueError, match="no channel 'gyro_q'"):
        resolve_channels(["acc_x"], ["gyro_q"])


@pytest.mark.slow
def test_cli_pretrain_finetune_evaluate(tmp_path, capsys):
    """The three commands end to end on the synthetic gestures (8 classes, chance 0.125, seeded): each model
    scores well above chance on held-out users."""
    from edgessl.cli import main

    data = "synthetic:reps=3,length=64"
    (tmp_path / "pt.json").write_text(json.dumps({"fit": {"batch_size": 64, "warmup_epochs": 1}}))
    assert main(["pretrain", "--data", data, "--method", "simclr", "--epochs", "8", "--config",
                 str(tmp_path / "pt.json"), "--out", str(tmp_path / "pt"), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["finetune", "--data", data, "--init", str(tmp_path / "pt"), "--labels-per-class", "4", "--epochs",
                 "15", "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["recipe"] == "few-labels"  # auto, with a label budget
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())  # (0.44 at 15 epochs, 0.60 at 30; the probe below 0.85)
    assert m["n_train_labels"] == 32 and m["test_accuracy"] >= CLEARLY_ABOVE_CHANCE, m["test_accuracy"]
    assert len(m["self_training"]) == 2 and m["consistency"]["weight"] == 1.0  # the few-labels recipe ran
    assert (tmp_path / "ft" / "confusion.png").stat().st_size > 5000
    assert (tmp_path / "ft" / "embedding.png").stat().st_size > 5000
    model = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)
    assert model["class_names"] and model["prototypes"].shape == (8, 128)
    assert "ssl_head_weight" not in model  # the TTT head is trained only when asked for (ssl_weight > 0)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "pt"), "--data", data]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["linear_probe"]["test_accuracy"] >= CLEARLY_ABOVE_CHANCE and ev["knn"]["k"] >= 1
    assert ev["knn"]["test_accuracy"] >= CLEARLY_ABOVE_CHANCE


def test_pretrain_never_sees_test_split(data_dir):
    from edgessl.trainer.data import DataConfig, unlabelled_pool

    # uwave_raw: only UCR-train templates; HAPT: only training subjects
    X = unlabelled_pool(DataConfig(spec="npz:uwave_raw.npz", stream_window=(64, 64), preprocess={"steps": []}))
    from edgessl.datasets import load_stream
    from edgessl.trainer.data import stream_windows

    raw = load_stream("npz:uwave_raw.npz")
    expected = stream_windows(raw, 64, 64, raw.recording_groups["ucr_split"] == 0)
    assert X.shape == expected.shape
    hapt = unlabelled_pool(DataConfig(spec="npz:hapt_raw_streams.npz", channels=("acc_x", "acc_y", "acc_z"),
                                      stream_window=(128, 128), preprocess={"steps": []}))  # fmt: skip
    h = load_stream("npz:hapt_raw_streams.npz")
    train_rec = np.isin(h.recording_groups["subject"], h.extra["train_subjects"])
    assert 0 < len(hapt) == len(stream_windows(h, 128, 128, train_rec))


def test_pseudo_labels_keep_the_most_confident_of_each_predicted_class():
    import numpy as np

    from edgessl.trainer.pipeline import pseudo_labels

    logits = np.array([[5.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 4.0], [0.0, 0.5], [2.0, 0.0]])
    pick, cls = pseudo_labels(logits, 0.5)
    # class 0 is predicted for rows 0, 1, 2, 5 (keep the top 2: rows 0 and 2); class 1 for rows 3, 4 (keep row 3)
    assert pick.tolist() == [0, 2, 3] and cls.tolist() == [0, 0, 1]
    pick, _ = pseudo_labels(logits, 1.0)
    assert pick.tolist() == list(range(6))


@pytest.mark.parametrize("semi", [{"self_train_rounds": 1, "pseudo_fraction": 0.5},
                                  {"consistency_weight": 1.0, "consistency_threshold": 0.2}])
@pytest.mark.slow
def test_semi_supervised_training_never_reads_the_labels_of_unlabelled_windows(tmp_path, monkeypatch, semi):
    """Self-training and consistency training use the windows outside the budget and the validation split
    without their labels, and validate on the real validation split: those labels can be anything without
    changing the model."""
    import dataclasses

    import numpy as np

    import edgessl.trainer.pipeline as PL
    from edgessl.trainer.data import DataConfig, label_budget_split
    from edgessl.trainer.fit import FitConfig

    data = DataConfig(spec="synthetic:reps=6,length=64")
    fit = FitConfig(epochs=3, batch_size=32, warmup_epochs=1, drop_last=False)
    cfg = PL.FinetuneConfig(data=data, labels_per_class=2, fit=fit, **semi)
    m1 = PL.finetune(cfg, tmp_path / "a", progress=False, plots=False)
    st = m1["self_training"]
    assert m1["n_train_labels"] == 16
    if cfg.self_train_rounds:
        assert len(st) == 1 and st[0]["pseudo_labels"] > 0 and m1["consistency"] is None
    else:
        assert not st and m1["consistency"]["unlabelled_windows"] > 0 and m1["consistency"]["final_mask_rate"] > 0
    # scramble the labels of every row outside the budget and the validation split: same model, same numbers
    real = PL.labelled

    def scrambled(c):
        ds, a, b = real(c)
        tr, va = label_budget_split(ds.y_train, per_class=2, seed=0)
        y = ds.y_train.copy()
        pool = np.setdiff1d(np.arange(len(y)), np.concatenate([tr, va]))
        y[pool] = np.random.default_rng(1).integers(0, ds.n_classes, len(pool))
        return dataclasses.replace(ds, y_train=y), a, b

    # (the simulated split itself stratifies over all training labels; pin it, as a user's own split would be)
    ds0 = real(data)[0]
    split = label_budget_split(ds0.y_train, per_class=2, seed=0)
    monkeypatch.setattr(PL, "label_budget_split", lambda *a, **k: split)
    monkeypatch.setattr(PL, "labelled", scrambled)
    m2 = PL.finetune(cfg, tmp_path / "b", progress=False, plots=False)
    assert m2["test_accuracy"] == m1["test_accuracy"] and m2["val_accuracy"] == m1["val_accuracy"]
    # (the after-the-fact diagnostic reads the scrambled labels, so it alone may differ)
    drop = "pseudo_label_accuracy_diagnostic"
    assert [{k: v for k, v in r.items() if k != drop} for r in m2["self_training"]] == \
        [{k: v for k, v in r.items() if k != drop} for r in st]
    assert m2["consistency"] == m1["consistency"]


@pytest.mark.parametrize("semi", [{"self_train_rounds": 1, "pseudo_fraction": 0.5},
                                  {"consistency_weight": 1.0, "consistency_threshold": 0.2}])
@pytest.mark.slow
def test_unlabelled_spec_feeds_semi_supervised_training_with_every_label_used(tmp_path, semi):
    """With ``unlabelled`` another dataset's training windows join the pool, so FixMatch and self-training
    run with the whole training split labelled (and refit): the pool is exactly those windows, the refit
    keeps the pseudo-labelled ones, and windows the labelled ones cannot be batched with are refused."""
    import edgessl.trainer.pipeline as PL
    from edgessl.datasets import load
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig

    extra = "synthetic:reps=2,length=64,seed=7"
    n_extra = len(load(extra).X_train)
    fit = FitConfig(epochs=2, batch_size=32, warmup_epochs=1, drop_last=False)
    cfg = PL.FinetuneConfig(data=DataConfig(spec="synthetic:reps=3,length=64"), fit=fit, refit=True,
                            unlabelled=extra, **semi)  # fmt: skip
    m = PL.finetune(cfg, tmp_path / "a", progress=False, plots=False)
    n_labels = m["n_train_labels"]  # training + validation windows, all labelled
    if cfg.self_train_rounds:
        st = m["self_training"]
        assert len(st) == 1 and st[0]["pseudo_labels"] > 0 and m["consistency"] is None
        # every pseudo-label came from the other dataset: no training-split window was left unlabelled
        assert st[0]["pseudo_label_accuracy_diagnostic"] is None
        assert m["refit"]["windows"] == n_labels + st[0]["pseudo_labels"]
    else:
        assert m["consistency"]["unlabelled_windows"] == n_extra and m["refit"]["windows"] == n_labels
    # without it there is nothing to pseudo-label or to draw from at 100 % labels
    m0 = PL.finetune(dataclasses.replace(cfg, unlabelled=None), tmp_path / "b", progress=False, plots=False)
    assert m0["self_training"] == [] and m0["consistency"] is None
    with pytest.raises(ValueError, match=r"are validation or test windows of"):  # the labelled data itself
        PL.finetune(dataclasses.replace(cfg, unlabelled=cfg.data.spec), tmp_path / "d", progress=False, plots=False)
    with pytest.raises(ValueError, match=r"unlabelled windows of .* are \[3, 50\].* common length"):
        PL.finetune(dataclasses.replace(cfg, unlabelled="synthetic:reps=2,length=50"), tmp_path / "c",
                    progress=False, plots=False)  # fmt: skip


def test_consistency_loss_equals_fixmatch_written_out():
    """The FixMatch term against a direct computation: the same draws of unlabelled rows and views, weak
    predictions as targets where confident, cross-entropy of the strong views, averaged over all drawn rows."""
    import torch.nn.functional as F
    from torch import nn

    from edgessl.trainer import supervised as S

    torch.manual_seed(0)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32, 16))  # no BatchNorm: batch composition cannot matter
    model = S.Classifier(enc, 4, 16)
    U = torch.randn(50, 3, 32)
    x, y = torch.randn(6, 3, 32), torch.randint(0, 4, (6,))
    m = S.SupervisedMethod(model, S.finetune_augment(), label_smoothing=0.0,
                           fixmatch=S.FixMatch(U, weight=0.7, threshold=0.3, ratio=3))  # fmt: skip
    loss, logs = m.loss((x, y), torch.Generator().manual_seed(5))

    g = torch.Generator().manual_seed(5)
    xa = S.finetune_augment()(x, g)
    u = U[torch.randint(0, 50, (18,), generator=g)]
    weak, strong = S.finetune_augment()(u, g), S.strong_augment()(u, g)
    with torch.no_grad():
        p = F.softmax(model(weak), 1)
    terms = [F.cross_entropy(model(strong[i : i + 1]), p[i].argmax().view(1)) if p[i].max() >= 0.3 else torch.tensor(0.0)
             for i in range(18)]  # fmt: skip
    ref = F.cross_entropy(model(xa), y) + 0.7 * torch.stack(terms).mean()
    assert torch.allclose(loss, ref, atol=1e-5)
    assert 0 < logs["mask_rate"] <= 1
    with pytest.raises(ValueError, match="threshold in \\(0, 1\\]"):
        S.FixMatch(U, threshold=0.0)
    with pytest.raises(ValueError, match="needs unlabelled windows"):
        S.FixMatch(U[:0])


def test_mixup_loss_equals_the_mixture_written_out():
    """Mixup against a direct computation: Beta(alpha, alpha) weights from the same seeded uniforms (by
    scipy's Beta quantile), folded to >= 0.5, the same partner permutation, the labels' losses mixed alike."""
    import scipy.stats
    import torch.nn.functional as F
    from torch import nn

    from edgessl.trainer import supervised as S

    torch.manual_seed(0)
    model = S.Classifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 8)), 4, 8)
    x, y = torch.randn(10, 3, 16), torch.randint(0, 4, (10,))
    m = S.SupervisedMethod(model, augment=None, label_smoothing=0.1, mixup_alpha=0.4)
    loss, _ = m.loss((x, y), torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(10, generator=g)
    u = torch.rand(10, generator=g, dtype=torch.float64).numpy()
    lam = scipy.stats.beta(0.4, 0.4).ppf(u)
    terms = []
    for i in range(10):
        li = max(lam[i], 1 - lam[i])
        xi = (li * x[i] + (1 - li) * x[perm[i]]).unsqueeze(0)
        out = model(xi)
        terms.append(li * F.cross_entropy(out, y[i : i + 1], label_smoothing=0.1)
                     + (1 - li) * F.cross_entropy(out, y[perm[i]].view(1), label_smoothing=0.1))  # fmt: skip
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)
    mixed, _, lam_t = S.mixup(x, y, 0.4, torch.Generator().manual_seed(3))
    assert mixed.shape == x.shape and bool(((lam_t >= 0.5) & (lam_t <= 1)).all())
    assert not torch.allclose(mixed, x)  # a real mixture, not the identity
    with pytest.raises(ValueError, match="mixup_alpha"):
        S.SupervisedMethod(model, mixup_alpha=-1.0)


@pytest.mark.slow
def test_refit_trains_on_training_and_validation_for_the_selected_epochs(tmp_path):
    import edgessl.trainer.pipeline as PL
    from edgessl.trainer.data import DataConfig
    from edgessl.trainer.fit import FitConfig

    with pytest.raises(ValueError, match="refit"):
        PL.FinetuneConfig(labels_per_class=5, refit=True)
    data = DataConfig(spec="synthetic:reps=4,length=64")
    cfg = PL.FinetuneConfig(data=data, fit=FitConfig(epochs=4, batch_size=32, warmup_epochs=1, drop_last=False),
                            refit=True)  # fmt: skip
    m = PL.finetune(cfg, tmp_path, progress=False, plots=False)
    assert m["refit"] == {"epochs": m["best_epoch"] + 1, "windows": m["n_train_labels"]}
    n = len(PL.labelled(data)[0].y_train)
    assert m["n_train_labels"] == n and 0 < m["n_val"] < n  # every training window, validation ones included
    # the refit ran exactly the selected number of epochs: its lines follow the selection run's in the log
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(4)) + list(range(m["best_epoch"] + 1))
    assert all("val_accuracy" not in r for r in lines[4:])


def test_transform_prediction_head_leaves_batchnorm_statistics_to_the_real_windows():
    """The TTT head sees sign- and time-flipped windows; BatchNorm's running statistics must come from the
    classification pass alone (for inputs with gravity in them, flips move the channel means)."""
    from edgessl.trainer import supervised as S

    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 64) + torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1), torch.randint(0, 4, (16,))

    def model():
        torch.manual_seed(1)
        return S.Classifier(build_encoder(EncoderConfig(in_channels=3)), 4, 128)

    with_ssl = S.SupervisedMethod(model(), augment=None, ttt=S.TransformPrediction(128, weight=0.5)).train()
    plain = S.SupervisedMethod(model(), augment=None).train()
    with_ssl.loss((x, y), torch.Generator().manual_seed(0))
    plain.loss((x, y), torch.Generator().manual_seed(0))
    a, b = with_ssl.model.state_dict(), plain.model.state_dict()
    stats = [k for k in a if "running_" in k or "num_batches" in k]
    assert stats and all(torch.equal(a[k], b[k]) for k in stats)
    assert not torch.equal(a[stats[0]], torch.zeros_like(a[stats[0]]))  # the real pass did update them
    logs = with_ssl.loss((x, y), torch.Generator().manual_seed(0))[1]
    assert logs["ssl_loss"] > 0 and "ssl_loss" not in plain.loss((x, y), torch.Generator().manual_seed(0))[1]
    with pytest.raises(ValueError, match="weight > 0"):
        S.TransformPrediction(128, weight=0.0)


@pytest.mark.filterwarnings("ignore:the model answers")  # a 1-epoch model: the plumbing is under test
def test_unstandardised_model_from_cli_to_runtime(tmp_path):
    """--standardize none keeps windows in their units through training, the bundle and the runtime: a window
    and the same window shifted by a constant (gravity on another axis) get different embeddings."""
    from edgessl.cli import main
    from edgessl.edge_runtime.runtime import GestureRuntime
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.synthetic import SyntheticConfig, make_dataset

    data = "synthetic:reps=2,length=64"
    assert main(["finetune", "--data", data, "--standardize", "none", "--recipe", "baseline", "--epochs", "2",
                 "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    export_bundle(tmp_path / "ft", tmp_path / "m.essl", ExportConfig(min_agreement=0.5), progress=False)
    x = make_dataset(SyntheticConfig(reps=1, length=64)).X_test[0]
    with GestureRuntime(tmp_path / "m.essl") as rt:
        assert rt.bundle.manifest["preprocessing"]["steps"] == []
        shifted = x + np.array([[0.5], [0.0], [-0.5]], np.float32)
        e = rt.embed(np.stack([x, shifted]))
        assert not np.allclose(e[0], e[1], atol=1e-3)


@pytest.mark.filterwarnings("ignore:the model answers")  # a 1-epoch model: the plumbing is under test
def test_window_scale_standardisation_from_cli_to_runtime(tmp_path):
    """--standardize window: one scale per window goes from training into the bundle's graph. The runtime
    ignores gravity and the window's overall gain, but not a change of gain on one axis (which a
    per-channel z-score would erase)."""
    from edgessl.cli import main
    from edgessl.edge_runtime.runtime import GestureRuntime
    from edgessl.export.pipeline import ExportConfig, export_bundle
    from edgessl.synthetic import SyntheticConfig, make_dataset

    data = "synthetic:reps=2,length=64"
    assert main(["finetune", "--data", data, "--standardize", "window", "--recipe", "baseline", "--epochs", "2",
                 "--out", str(tmp_path / "ft"), "--quiet"]) == 0  # fmt: skip
    export_bundle(tmp_path / "ft", tmp_path / "m.essl", ExportConfig(min_agreement=0.5), progress=False)
    x = make_dataset(SyntheticConfig(reps=1, length=64)).X_test[0]
    with GestureRuntime(tmp_path / "m.essl") as rt:
        assert rt.bundle.manifest["preprocessing"]["steps"] == [{"op": "standardize", "params": {"per_channel": False}}]
        offset_and_gain = 3.0 * x + np.array([[0.5], [0.0], [-0.5]], np.float32)
        one_axis = x * np.array([[4.0], [1.0], [1.0]], np.float32)
        e = rt.embed(np.stack([x, offset_and_gain, one_axis]))
        np.testing.assert_allclose(e[1], e[0], atol=1e-3)
        assert not np.allclose(e[2], e[0], atol=1e-3)


@pytest.mark.slow
def test_split_seed_fixes_the_split_while_the_training_seed_varies(tmp_path, monkeypatch):
    import edgessl.trainer.pipeline as PL
    from edgessl.trainer.fit import FitConfig

    seen = []
    real = PL.label_budget_split
    monkeypatch.setattr(PL, "label_budget_split", lambda *a, **k: seen.append(k["seed"]) or real(*a, **k))
    cfg = PL.FinetuneConfig(data=PL.DataConfig(spec="synthetic:reps=2,length=32"), split_seed=5,
                            fit=FitConfig(epochs=1, batch_size=32, warmup_epochs=0, drop_last=False))  # fmt: skip
    weights = []
    for seed in (0, 1):
        m = PL.finetune(dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, seed=seed)), tmp_path / str(seed),
                        progress=False, plots=False)  # fmt: skip
        assert (m["seed"], m["split_seed"]) == (seed, 5)
        weights.append(torch.load(tmp_path / str(seed) / "model.pt", weights_only=True)["model"])
    assert seen == [5, 5]
    assert not torch.equal(weights[0]["head.weight"], weights[1]["head.weight"])
    seen.clear()
    PL.cross_validate(cfg, 2, tmp_path / "cv", repeats=2, progress=False)
    assert seen == [5, 5, 6, 6]  # one partition per repeat


