"""``edgessl pretrain | finetune | evaluate``: argparse fills the typed configs; nothing reads globals."""

from __future__ import annotations

import argparse
import json

# kept here, not imported from trainer.methods: building the CLI must not import torch (tests check the match)
METHODS = ("simclr", "vicreg", "barlow", "masked", "ssgan", "clip", "beit")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic", help="dataset spec; join several with + to pool (pretrain)")
    p.add_argument("--channels", default=None, help="comma-separated channel names (aliases like acc_x ok)")
    p.add_argument("--rate", type=float, default=None, help="resample sources of known rate to this rate (Hz)")
    p.add_argument("--length", type=int, default=None, help="stretch windows to this many samples")
    p.add_argument("--stream-window", default="128,64", help="window,stride cut from stream layouts")
    p.add_argument("--standardize", choices=("channel", "window", "none"), default="channel",
                   help="per-window z-score: 'channel' divides each channel by its own std (default, the UCR "
                        "archive's normalisation); 'window' divides all channels by one scale, so the ratios "
                        "between axes (a movement's direction) survive; 'none' keeps the units (g, rad/s)")
    p.add_argument("--no-standardize", action="store_true",
                   help="same as --standardize none: keep windows in their units, for activities and postures, "
                        "where the direction of gravity is the signal")


def _fit_args(p: argparse.ArgumentParser, epochs: int, batch: int, lr: float) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.99); validation, selection "
                        "and the saved model use it (0 = off)")
    p.add_argument("--sam", type=float, default=0.0, metavar="RHO",
                   help="sharpness-aware minimisation: take each step's gradient at the weights moved by RHO along "
                        "the normalised gradient (0.05 is SAM's usual radius; two passes per step; 0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _data_cfg(a: argparse.Namespace):
    from edgessl.trainer.data import DataConfig, standardize_spec

    win, stride = (int(v) for v in a.stream_window.split(","))
    mode = "none" if a.no_standardize else a.standardize
    extra = {"preprocess": standardize_spec(mode)} if mode != "channel" else {}
    return DataConfig(spec=a.data, channels=tuple(a.channels.split(",")) if a.channels else None, rate_hz=a.rate,
                      length=a.length, stream_window=(win, stride), **extra)  # fmt: skip


def _fit_cfg(a: argparse.Namespace, drop_last: bool):
    from edgessl.trainer.fit import FitConfig

    return FitConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                     warmup_epochs=a.warmup_epochs, grad_clip=a.grad_clip, seed=a.seed, device=a.device,
                     drop_last=drop_last, ema_decay=a.ema, sam_rho=a.sam)  # fmt: skip


INTEGRATE_HELP = ("the encoder first appends each channel's running integral (its window mean removed first), "
                  "z-scored per window: 1 velocity, 2 velocity and position (the trajectory of a gesture); 0 off")


def _widths(text: str) -> tuple[int, ...]:
    """``--widths``: four positive whole numbers, comma-separated (one per CNN block)."""
    parts = [t.strip() for t in text.split(",")]
    if len(parts) != 4 or not all(t.isdigit() and int(t) > 0 for t in parts):
        raise argparse.ArgumentTypeError(f"expected 4 positive channel counts like 48,96,128,160 (one per CNN "
                                         f"block); got {text!r}")  # fmt: skip
    return tuple(int(t) for t in parts)


def _encoder_cfg(a: argparse.Namespace):
    from edgessl.trainer.encoders import EncoderConfig

    return EncoderConfig(kind=a.encoder, integrate=a.integrate,
                         **({} if a.widths is None else {"widths": a.widths}))  # fmt: skip


def _cmd_pretrain(a: argparse.Namespace) -> int:
    from edgessl.trainer.distributed import teardown
    from edgessl.trainer.methods import MethodConfig
    from edgessl.trainer.pipeline import PretrainConfig, pretrain

    mcfg = MethodConfig(name=a.method, temperature=a.temperature, gan_generator=a.gan_generator,
                        gan_fraction=a.gan_fraction, codebook_size=a.codebook_size,
                        rotate_degrees=a.rotate)  # fmt: skip
    cfg = PretrainConfig(_data_cfg(a), _encoder_cfg(a), mcfg, _fit_cfg(a, drop_last=True),
                         a.labels_per_class, a.label_fraction, tuple(a.exclude_class), a.descriptions)  # fmt: skip
    try:
        pretrain(cfg, a.out, resume=a.resume, progress=not a.quiet)
    finally:
        teardown()
    return 0


def _cmd_finetune(a: argparse.Namespace) -> int:
    from edgessl.trainer.pipeline import FinetuneConfig, cross_validate, finetune

    if a.init and (a.widths or a.integrate):
        raise ValueError(f"--widths / --integrate set the architecture of a model from scratch; {a.init} fixes its own "
                         "(drop them or --init)")  # fmt: skip

    cfg = FinetuneConfig(data=_data_cfg(a), init=a.init, encoder=_encoder_cfg(a),
                         labels_per_class=a.labels_per_class, label_fraction=a.label_fraction,
                         val_fraction=a.val_fraction, val_groups=a.val_groups, mode=a.mode, ssl_weight=a.ssl_weight,
                         fit=_fit_cfg(a, drop_last=False), self_train_rounds=a.self_train,
                         pseudo_fraction=a.pseudo_fraction, consistency_weight=a.consistency,
                         consistency_threshold=a.consistency_threshold, unlabelled_ratio=a.unlabelled_ratio,
                         unlabelled=a.unlabelled, refit=a.refit, test_adapt_groups=a.test_adapt_groups,
                         rotate_degrees=a.rotate, mixup_alpha=a.mixup, teachers=tuple(a.teacher),
                         distill_weight=a.distill_weight, distill_temperature=a.distill_temperature,
                         distill_unlabelled=a.distill_unlabelled,
                         split_seed=a.split_seed)  # fmt: skip
    if a.cv:
        r = cross_validate(cfg, a.cv, a.out, repeats=a.cv_repeats, progress=not a.quiet)
        print(json.dumps({k: r[k] for k in ("cv_accuracy", "best_epoch", "folds", "repeats", "n_windows")}))
        return 0
    m = finetune(cfg, a.out, progress=not a.quiet)
    summary = {k: m[k] for k in ("test_accuracy", "val_accuracy", "n_train_labels")}
    if m["test_adapted"]:
        summary["test_accuracy_adapted"] = m["test_adapted"]["test_accuracy"]
    print(json.dumps(summary))
    return 0


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from edgessl.trainer.pipeline import evaluate_encoder

    print(json.dumps(evaluate_encoder(a.checkpoint, _data_cfg(a), seed=a.seed), indent=2))
    return 0


def _cmd_inspect(a: argparse.Namespace) -> int:
    from edgessl.trainer.analysis import inspect

    data = _data_cfg(a) if a.data else None
    r = inspect(a.checkpoint, a.out, data, max_windows=a.max_windows, seed=a.seed)
    print(json.dumps({k: r[k] for k in ("dataset", "windows", "correlation", "feature_selection", "plots")}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining on unlabeled windows (needs [train])")
    _data_args(p)
    p.add_argument("--method", choices=list(METHODS), default="simclr")
    p.add_argument("--encoder", choices=["cnn", "transformer"], default="cnn")
    p.add_argument("--widths", type=_widths, default=None, metavar="W1,W2,W3,W4",
                   help="CNN channel widths of its 4 blocks (default 32,64,96,128: 80k parameters; 48,96,128,160 "
                        "is about 150k)")
    p.add_argument("--integrate", type=int, choices=[0, 1, 2], default=0, help=INTEGRATE_HELP)
    p.add_argument("--temperature", type=float, default=0.1, help="NT-Xent temperature")
    p.add_argument("--gan-generator", default=None,
                   help="simclr/vicreg/barlow: an ssgan checkpoint whose generated windows join each batch")
    p.add_argument("--gan-fraction", type=float, default=0.25, help="generated windows per real window in a batch")
    p.add_argument("--codebook-size", type=int, default=64, help="beit: k-means tokens over patches")
    lab = p.add_argument_group("clip (trains on labels: window, class description)")
    g = lab.add_mutually_exclusive_group()
    g.add_argument("--labels-per-class", type=int, default=None)
    g.add_argument("--label-fraction", type=float, default=None)
    lab.add_argument("--exclude-class", action="append", default=[], help="hold a class out (zero-shot); repeatable")
    lab.add_argument("--descriptions", default=None, help="JSON file {label: description} (default: built-in)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                   help="views also rotate the sensor's (x, y, z) channel triads, found by name, by one random "
                        "rotation of up to DEG degrees per window (simclr, vicreg, barlow, clip; 0: off)")
    p.add_argument("--out", required=True, help="output folder (checkpoint.pt, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoint.pt")
    _fit_args(p, epochs=50, batch=128, lr=1e-3)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune on a label budget; writes OUT/metrics.json and model.pt")
    _data_args(p)
    p.add_argument("--init", default=None, help="pretraining checkpoint (folder or file); default: from scratch")
    p.add_argument("--encoder", choices=["cnn", "transformer"], default="cnn", help="architecture when from scratch")
    p.add_argument("--widths", type=_widths, default=None, metavar="W1,W2,W3,W4",
                   help="CNN channel widths of its 4 blocks, when from scratch (default 32,64,96,128: 80k parameters; 48,96,128,160 "
                        "is about 150k)")
    p.add_argument("--integrate", type=int, choices=[0, 1, 2], default=0, help=INTEGRATE_HELP + " (from scratch)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labels-per-class", type=int, default=None)
    g.add_argument("--label-fraction", type=float, default=None)
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation carved from the training split")
    p.add_argument("--val-groups", default=None, metavar="NAME",
                   help="carve validation from whole groups of the dataset's per-row ids (e.g. 'subject': "
                        "select on people the model has not seen, as a subject-wise test split does)")
    kd = p.add_argument_group("knowledge distillation (e.g. a larger model into the device's)")
    kd.add_argument("--teacher", action="append", default=[], metavar="DIR",
                    help="a fine-tuned model folder of the same data, classes, seed and label budget; repeat for "
                         "an ensemble (its mean probability)")
    kd.add_argument("--distill-weight", type=float, default=0.5, help="weight of the KL term (the rest: labels)")
    kd.add_argument("--distill-temperature", type=float, default=1.0, help="softening temperature T")
    kd.add_argument("--distill-unlabelled", action="store_true",
                    help="also match the teachers on strongly augmented views of the unlabelled windows (outside "
                         "the budget and validation split, and --unlabelled): KL term of the same weight")
    p.add_argument("--cv", type=int, default=None, metavar="K",
                   help="model selection only: stratified K-fold cross-validation on the training split (writes "
                        "OUT/cv.json; the test split is never predicted, no model is written)")
    p.add_argument("--split-seed", type=int, default=None, metavar="S",
                   help="seed of the label budget and validation split (default: --seed, which also seeds the "
                        "initialisation, batch order and views); e.g. teachers of one split for --teacher")
    p.add_argument("--cv-repeats", type=int, default=1, metavar="R", help="with --cv: R partitions (seeds SEED..)")
    p.add_argument("--mode", choices=["finetune", "linear"], default="finetune")
    p.add_argument("--ssl-weight", type=float, default=0.1,
                   help="weight of the joint transform-prediction head used by test-time training (0: none)")
    p.add_argument("--self-train", type=int, default=0, metavar="ROUNDS",
                   help="self-training rounds: pseudo-label the unlabelled training windows (outside the budget "
                        "and the validation split), fine-tune again on budget + pseudo-labels")
    p.add_argument("--pseudo-fraction", type=float, default=0.5,
                   help="most confident fraction of each predicted class kept as pseudo-labels")
    p.add_argument("--consistency", type=float, default=0.0, metavar="WEIGHT",
                   help="FixMatch consistency training on the same unlabelled windows: weight of its loss (0: off)")
    p.add_argument("--consistency-threshold", type=float, default=0.8,
                   help="confidence a weak view's prediction needs to become the strong view's target")
    p.add_argument("--unlabelled-ratio", type=int, default=4, help="unlabelled windows drawn per labelled one")
    p.add_argument("--unlabelled", default=None, metavar="SPEC",
                   help="more unlabelled windows for --self-train / --consistency: the training windows of this "
                        "dataset spec (never its test split), prepared like --data; e.g. "
                        "'npz:uwave_raw.npz?outside=uwave_gesture_uea.npz' (no gesture of the UEA file)")
    p.add_argument("--refit", action="store_true",
                   help="all labels (no budget): after selecting the epoch on validation, train again on training + "
                        "validation windows for that many epochs and test that model")
    p.add_argument("--test-adapt-groups", default=None, metavar="NAME",
                   help="also report the model adapted to each test group of the dataset's per-row ids (e.g. "
                        "'subject'): BatchNorm statistics re-estimated on that group's unlabelled windows")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                   help="fine-tuning views also rotate the sensor's (x, y, z) channel triads, found by name, by one "
                        "random rotation of up to DEG degrees per window (0: off)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mix labelled windows in pairs, weights ~ Beta(ALPHA, ALPHA), and their labels' losses "
                        "likewise (0: off)")
    p.add_argument("--out", required=True)
    _fit_args(p, epochs=100, batch=64, lr=1e-3)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("evaluate", help="linear probe and k-NN of a checkpoint's frozen encoder")
    p.add_argument("checkpoint")
    _data_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("inspect", help="dissection, embedding correlation, input importance of a checkpoint (PNGs)")
    p.add_argument("checkpoint", help="a pretrain or finetune folder or checkpoint.pt")
    _data_args(p)
    p.set_defaults(data=None)
    p.add_argument("--out", required=True, help="folder for inspect.json and the plots")
    p.add_argument("--max-windows", type=int, default=2000, help="training windows analysed")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_inspect)
