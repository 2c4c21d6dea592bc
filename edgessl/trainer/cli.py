"""``edgessl pretrain | finetune | evaluate | inspect``: a few flags a user sets; the rest through a named
recipe (``--recipe``) or a config file (``--config run.toml``).

Settings are laid on top of each other, later ones winning: the config's defaults < the recipe (finetune) <
the ``--config`` file < flags given on the command line. A flag left out sets nothing, so the help shows the
default it falls back to. Nothing reads globals; building the parser imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edgessl.atomic import free_path
from edgessl.errors import UsageError
from edgessl.trainer.config_file import check_keys, load_config_file, merge
from edgessl.trainer.recipes import AUTO, NAMES, recipe_spec, resolve

# kept here, not imported from trainer.methods: building the CLI must not import torch (tests check the match)
METHODS = ("simclr", "vicreg", "barlow", "masked", "ssgan", "clip", "beit")
FINETUNE_SECTIONS = ("data", "encoder", "fit")
PRETRAIN_SECTIONS = ("data", "encoder", "method", "fit")
CONFIG_HELP = ("TOML (.toml) or JSON file of any {kind} field, one table per section ({sections}); it "
               "overrides {over}, flags override it (default: none)")


def _data_args(p: argparse.ArgumentParser, spec_help: str = "dataset spec (default: synthetic)") -> None:
    p.add_argument("--data", default=None, metavar="SPEC", help=spec_help)
    p.add_argument("--channels", default=None, metavar="NAMES",
                   help="comma-separated channel names, aliases like acc_x ok (default: all channels)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="resample sources of known rate to this rate (default: the source's rate)")
    p.add_argument("--length", type=int, default=None, metavar="N",
                   help="stretch windows to N samples (default: the source's length)")
    p.add_argument("--standardize", choices=("channel", "window", "none"), default=None,
                   help="per-window z-score: 'channel' divides each channel by its own std (the UCR archive's "
                        "normalisation); 'window' divides all channels by one scale, so the ratios between axes "
                        "survive; 'none' keeps the units (g, rad/s), for activities and postures (default: channel)")
    p.add_argument("--seed", type=int, default=None, help="seeds the split, initialisation and views (default: 0)")


def _data_layer(a: argparse.Namespace) -> dict[str, Any]:
    """The ``data`` settings given as flags (only those given)."""
    from edgessl.trainer.data import standardize_spec

    d: dict[str, Any] = {}
    for key, value in (("spec", a.data), ("channels", a.channels.split(",") if a.channels else None),
                       ("rate_hz", a.rate), ("length", a.length)):  # fmt: skip
        if value is not None:
            d[key] = value
    if a.standardize is not None:
        d["preprocess"] = standardize_spec(a.standardize)
    return d


def _data_cfg(a: argparse.Namespace):
    from edgessl.trainer.data import DataConfig

    return DataConfig.from_dict({**DataConfig().to_dict(), **_data_layer(a)})


def _fit_args(p: argparse.ArgumentParser, epochs: int, recipes: bool) -> None:
    also = ", or the recipe's" if recipes else ", or the --config file's"
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default: {epochs}{also})")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines (default: off)")


def _check_flags(a: argparse.Namespace) -> None:
    """Refuse flag values no run can use, naming the flag (config files are checked by the configs)."""
    if getattr(a, "labels_per_class", None) is not None and a.labels_per_class < 1:
        raise UsageError(f"--labels-per-class must be a whole number >= 1; got {a.labels_per_class}")
    if getattr(a, "label_fraction", None) is not None and not 0 < a.label_fraction <= 1:
        raise UsageError(f"--label-fraction must be in (0, 1]; got {a.label_fraction:g}")
    if a.epochs is not None and a.epochs < 1:
        raise UsageError(f"--epochs must be a whole number >= 1; got {a.epochs}")
    if a.length is not None and a.length < 1:
        raise UsageError(f"--length must be a whole number of samples >= 1; got {a.length}")
    if a.rate is not None and not a.rate > 0:
        raise UsageError(f"--rate must be a positive sample rate in Hz; got {a.rate:g}")
    if getattr(a, "cv", None) is not None and a.cv < 2:
        raise UsageError(f"--cv must be a number of folds >= 2; got {a.cv}")
    if getattr(a, "cv_repeats", 1) < 1:
        raise UsageError(f"--cv-repeats must be >= 1; got {a.cv_repeats}")


def _fit_layer(a: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("epochs", a.epochs), ("seed", a.seed), ("device", a.device)) if v is not None}


def _layered(template: dict[str, Any], layers: list[tuple[str, dict[str, Any]]], sections: tuple[str, ...]
             ) -> dict[str, Any]:  # fmt: skip
    """``template`` (a default config's ``to_dict()``) with each ``(source, layer)`` laid on top in turn;
    a key the config does not have is an error naming it and its source."""
    d = template
    for source, layer in layers:
        check_keys(layer, template, sections, source)
        d = merge(d, layer, sections)
    return d


def _explicit_data(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """Which ``data`` settings the user set and where (the last layer wins): ``{"length": "--length"}``,
    ``{"preprocess": "run.toml"}``, ``{"preprocess": "recipe activities"}``."""
    out: dict[str, str] = {}
    for source, layer in layers:
        for key in layer.get("data", {}):
            flag = {"spec": "--data", "rate_hz": "--rate", "preprocess": "--standardize"}.get(key, f"--{key}")
            out[key] = flag if source == "command line" else source
    return out


def finetune_config(a: argparse.Namespace):
    """The effective :class:`FinetuneConfig` of ``edgessl finetune``'s arguments, and the recipe's name:
    defaults < recipe < ``--config`` file < flags."""
    cfg, recipe, _ = finetune_settings(a)
    return cfg, recipe


def finetune_settings(a: argparse.Namespace):
    """:func:`finetune_config` and the ``data`` settings given explicitly (by a flag, the ``--config`` file
    or a recipe named with ``--recipe``), mapped to where: what ``--init`` must not replace."""
    from edgessl.trainer.pipeline import FinetuneConfig

    file_layer = load_config_file(a.config) if a.config else {}
    flags: dict[str, Any] = {k: v for k, v in (("init", a.init), ("labels_per_class", a.labels_per_class),
                                               ("label_fraction", a.label_fraction)) if v is not None}  # fmt: skip
    if data := _data_layer(a):
        flags["data"] = data
    if fit := _fit_layer(a):
        flags["fit"] = fit
    budget = any(layer.get(k) is not None for layer in (file_layer, flags) for k in ("labels_per_class", "label_fraction"))
    recipe = resolve(a.recipe, label_budget=budget)
    layers = [(f"recipe {recipe.name}", recipe.settings)]
    if a.config:
        layers.append((str(a.config), file_layer))
    layers.append(("command line", flags))
    cfg = FinetuneConfig.from_dict(_layered(FinetuneConfig().to_dict(), layers, FINETUNE_SECTIONS))
    spec, note = recipe_spec(recipe.name, cfg.data.spec)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, spec=spec))
    # the automatic recipe is no choice of the user's (and sets no data settings today)
    chosen = [(src, layer) for src, layer in layers if not (a.recipe == AUTO and src.startswith("recipe "))]
    return cfg, recipe.name, _explicit_data(chosen)


def pretrain_config(a: argparse.Namespace):
    """The effective :class:`PretrainConfig` of ``edgessl pretrain``'s arguments: defaults < ``--config``
    file < flags."""
    from edgessl.trainer.pipeline import PretrainConfig

    flags: dict[str, Any] = {}
    if data := _data_layer(a):
        flags["data"] = data
    if fit := _fit_layer(a):
        flags["fit"] = fit
    if a.method is not None:
        flags["method"] = {"name": a.method}
    layers = ([(str(a.config), load_config_file(a.config))] if a.config else []) + [("command line", flags)]
    return PretrainConfig.from_dict(_layered(PretrainConfig().to_dict(), layers, PRETRAIN_SECTIONS))


def _cmd_pretrain(a: argparse.Namespace) -> int:
    from edgessl.trainer.distributed import teardown
    from edgessl.trainer.pipeline import pretrain
    from edgessl.trainer.run_dir import run_in

    _check_flags(a)
    cfg = pretrain_config(a)
    try:
        with run_in(a.out, force=a.force, resume=a.resume):
            r = pretrain(cfg, a.out, resume=a.resume, progress=not a.quiet)
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:  # (torchrun: one line)
            print(json.dumps({"method": cfg.method.name, "windows": r["n_windows"],
                              "final_loss": r["history"][-1]["loss"] if r["history"] else None,
                              "out": str(a.out),
                              "next": f"edgessl finetune --data {shlex.quote(cfg.data.spec)} --init {a.out} "
                                      f"--out {free_path(Path(a.out).parent, 'ft')}",
                              # a walkthrough copied it for a 5-per-class budget: the recipe follows the budget
                              "with_few_labels": "add --labels-per-class K when only K windows per class are "
                                                 "labelled (the few-labels recipe)"}))  # fmt: skip
    finally:
        teardown()
    return 0


def _cmd_finetune(a: argparse.Namespace) -> int:
    from edgessl.trainer.encoders import EncoderConfig
    from edgessl.trainer.pipeline import cross_validate, finetune
    from edgessl.trainer.run_dir import check_not_init, run_in

    _check_flags(a)
    cfg, recipe, explicit = finetune_settings(a)
    check_not_init(a.out, cfg.init)  # --force would delete the pretrained run before it is read
    if cfg.init and cfg.encoder != EncoderConfig():
        raise ValueError(f"encoder settings ({cfg.encoder.to_dict()}) set the architecture of a model from scratch; "
                         f"{cfg.init} fixes its own (drop the [encoder] settings or --init)")  # fmt: skip
    with run_in(a.out, force=a.force):  # a refusal of --out comes before what --init's settings print
        if cfg.init:
            cfg = dataclasses.replace(cfg, data=_inherit(cfg.data, cfg.init, explicit,
                                                         uses_streams=cfg.unlabelled is not None))  # fmt: skip
        if a.cv:
            r = cross_validate(cfg, a.cv, a.out, repeats=a.cv_repeats, progress=not a.quiet, force=a.force)
            print(json.dumps({"recipe": recipe, **{k: r[k] for k in ("cv_accuracy", "best_epoch", "folds", "repeats",
                                                                      "n_windows")}}))  # fmt: skip
            return 0
        m = finetune(cfg, a.out, progress=not a.quiet)
    print(json.dumps({"recipe": recipe, **{k: m[k] for k in ("test_accuracy", "val_accuracy", "n_train_labels")}}))
    return 0


def _inherit(data, init: str, explicit: dict[str, str], uses_streams: bool = False):
    """The :class:`DataConfig` ``data`` with the pretrained encoder's settings where the user set none; prints
    what it took and every override on stderr (stdout stays the JSON result)."""
    from edgessl.trainer.pipeline import inherit_inputs

    data, lines = inherit_inputs(data, init, explicit, uses_streams=uses_streams)
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    return data


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from edgessl.trainer.pipeline import evaluate_encoder

    data = _inherit(_data_cfg(a), a.checkpoint, _explicit_data([("command line", {"data": _data_layer(a)})]))
    print(json.dumps(evaluate_encoder(a.checkpoint, data, seed=a.seed or 0), indent=2))
    return 0


def _cmd_inspect(a: argparse.Namespace) -> int:
    from edgessl.trainer.analysis import inspect

    data = _data_cfg(a) if a.data else None
    r = inspect(a.checkpoint, a.out, data, max_windows=a.max_windows, seed=a.seed or 0)
    print(json.dumps({k: r[k] for k in ("dataset", "windows", "correlation", "feature_selection", "plots")}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="self-supervised pretraining on unlabeled windows (needs [train])",
                       description="Self-supervised pretraining. Every other setting (encoder, method knobs such "
                                   "as method.rotate_degrees, batch size, learning rate, clip's label budget) goes "
                                   "in a --config file.")  # fmt: skip
    _data_args(p, "dataset spec; join several with + to pool them (default: synthetic)")
    p.add_argument("--method", choices=list(METHODS), default=None, help="objective (default: vicreg)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help=CONFIG_HELP.format(kind="PretrainConfig", sections=", ".join(PRETRAIN_SECTIONS),
                                           over="the defaults"))  # fmt: skip
    p.add_argument("--out", required=True, help="output folder for checkpoint.pt and metrics.jsonl (required)")
    p.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoint.pt (default: off)")
    p.add_argument("--force", action="store_true",
                   help="replace another run's files in OUT instead of refusing (default: off)")
    _fit_args(p, epochs=50, recipes=False)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("finetune", help="fine-tune on a label budget; writes OUT/metrics.json and model.pt (needs [train])",
                       description="Fine-tune with a named recipe. Any FinetuneConfig field (views, FixMatch, "
                                   "self-training, refit, encoder widths, batch size, learning rate, validation "
                                   "split...) can be set in a --config file.")  # fmt: skip
    _data_args(p)
    p.add_argument("--init", default=None, metavar="DIR",
                   help="pretraining checkpoint, folder or file; its channels, window length and "
                        "standardisation are used unless given, overrides are printed (default: a model from scratch)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labels-per-class", type=int, default=None, metavar="K",
                   help="label budget: K labelled windows per class (default: every training window)")
    g.add_argument("--label-fraction", type=float, default=None, metavar="F",
                   help="label budget: a fraction of each class (default: every training window)")
    p.add_argument("--recipe", choices=NAMES, default=AUTO,
                   help="named settings (edgessl.trainer.recipes); 'auto' is few-labels with a label budget and "
                        "all-labels without (default: %(default)s)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help=CONFIG_HELP.format(kind="FinetuneConfig", sections=", ".join(FINETUNE_SECTIONS),
                                           over="the recipe"))  # fmt: skip
    p.add_argument("--cv", type=int, default=None, metavar="K",
                   help="model selection only: stratified K-fold cross-validation on the training split; writes "
                        "OUT/cv.json, never predicts the test split, writes no model (default: off)")
    p.add_argument("--cv-repeats", type=int, default=1, metavar="R",
                   help="with --cv: R partitions, seeds SEED, SEED+1, ... (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder for model.pt and metrics.json (required)")
    p.add_argument("--force", action="store_true",
                   help="replace another run's files in OUT instead of refusing (default: off)")
    _fit_args(p, epochs=100, recipes=True)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("evaluate", help="linear probe and k-NN of a checkpoint's frozen encoder (needs [train])")
    p.add_argument("checkpoint", help="a pretrain or finetune folder or checkpoint.pt")
    _data_args(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("inspect", help="dissection, embedding correlation, input importance of a checkpoint (PNGs; needs [train])")
    p.add_argument("checkpoint", help="a pretrain or finetune folder or checkpoint.pt")
    _data_args(p, "dataset spec (default: the checkpoint's)")
    p.add_argument("--out", required=True, help="folder for inspect.json and the plots (required)")
    p.add_argument("--max-windows", type=int, default=2000, help="training windows analysed (default: %(default)s)")
    p.set_defaults(func=_cmd_inspect)
