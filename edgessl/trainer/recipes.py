"""Named fine-tuning recipes: ``edgessl finetune --recipe NAME``.

A recipe is a set of :class:`~edgessl.trainer.pipeline.FinetuneConfig` settings, nested like its
``to_dict()`` (top-level fields and ``data`` / ``encoder`` / ``fit`` tables), chosen by measurement. Layers,
later ones winning: the config's defaults < the recipe < a ``--config`` file < flags given on the command line.

Evidence: ``benchmarks/results/ssl_uwave.json`` (3 seeds each, mean test accuracy of the validation-selected
model; method names as in its ``rows``). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgessl import preprocess as pp


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named set of fine-tuning settings and the measurement that chose them."""

    name: str
    summary: str
    settings: dict[str, Any]
    evidence: str


BASELINE = Recipe(
    "baseline",
    "plain supervised fine-tuning with light views (the config's defaults): the reference every row is "
    "compared with",
    {},
    "rows 'supervised': uwave_gesture_ucr 1/class 0.562, 5/class 0.831, 100 % 0.973; uwave_gesture_uea "
    "1/class 0.547, 5/class 0.768; uci_har (9 channels) 100 % 0.908",
)

FEW_LABELS = Recipe(
    "few-labels",
    "a handful of labels per class: FixMatch on the unlabelled windows, two rounds of self-training keeping "
    "80 % of each predicted class, rotation views of up to 60 degrees (on channels without (x, y, z) triads "
    "the rotation is dropped, with a note), mixup 0.2",
    {"consistency_weight": 1.0, "consistency_threshold": 0.8, "self_train_rounds": 2, "pseudo_fraction": 0.8,
     "rotate_degrees": 60.0, "mixup_alpha": 0.2},  # fmt: skip
    "rows 'supervised + FixMatch + self-training x2 (0.8) + rotation (60°) + mixup (0.2)', from scratch, 100 "
    "epochs: uwave_gesture_ucr 1/class 0.786 (baseline 0.562), 5/class 0.944 (0.831); the same archive rows "
    "with axis scales restored 1/class 0.892 (0.695), 5/class 0.974 (0.905). uwave_gesture_uea, its parts "
    "measured: 'supervised + self-training + rotation (60°)' 1/class 0.623 (0.547), 5/class 0.841 (0.768)",
)

ALL_LABELS = Recipe(
    "all-labels",
    "every training window labelled: select the epoch on the validation split, then refit on training + "
    "validation windows for that many epochs",
    {"refit": True},
    "rows 'supervised + refit' against 'supervised': uwave_gesture_ucr 100 % 0.976 "
    "(0.973); uci_har (9 channels, not standardised, 30 epochs) 0.939 (0.935); uwave_gesture_uea (raw "
    "templates in g, not standardised, 300 epochs) 0.967 (30 epochs, no refit: 0.940)",
)

ACTIVITIES = Recipe(
    "activities",
    "activities and postures: windows kept in their units (the direction of gravity is the signal), refit, "
    "rotation views of up to 20 degrees, 30 epochs",
    {"data": {"preprocess": pp.PreprocessSpec(()).to_dict()}, "refit": True, "rotate_degrees": 20.0, "fit": {"epochs": 30}},
    "uci_har, not standardised, 100 %, 30 epochs: 9 channels 'supervised + refit + rotation (20°)' 0.954 "
    "('supervised + refit' 0.939; standardised per channel, 'supervised' 0.908); 3 channels 0.916 (0.912)",
)



def recipe_spec(recipe: str, spec: str) -> tuple[str, str | None]:
    """The data spec ``recipe`` reads ``spec`` as, and a note saying what changed (None: nothing).

    ``activities`` reads recordings (a ``dir:`` folder, a ``csv:`` file) whose spec (and ``dataset.json``)
    name no input mode as sliding windows of :data:`~edgessl.datasets.labelled.ACTIVITY_WINDOW` (the spec's ``length`` if it gives one):
    cut as gestures (the default for labelled recordings), spans that move throughout (walking) are longer than
    any gesture and were left out as rest, and still ones (sitting) hold no movement to cut (a walkthrough's
    12 activities became 8 classes of transitions, silently but for a note)."""
    from edgessl.datasets.folder import sliding_spec
    from edgessl.datasets.labelled import ACTIVITY_WINDOW

    if recipe != ACTIVITIES.name or (new := sliding_spec(spec, ACTIVITY_WINDOW)) is None:
        return spec, None
    return new, (f"recipe activities: {spec} read as {new} (sliding windows: activities go on, they are not gestures "
                 "cut from movement; input=segment in the spec cuts them as gestures)")  # fmt: skip


AUTO = "auto"
RECIPES: dict[str, Recipe] = {r.name: r for r in (BASELINE, FEW_LABELS, ALL_LABELS, ACTIVITIES)}
NAMES = (AUTO, *RECIPES)


def resolve(name: str, label_budget: bool) -> Recipe:
    """The recipe called ``name``; ``auto`` (the default) is ``few-labels`` with a label budget and
    ``all-labels`` without. ``few-labels`` beat plain fine-tuning in every like-for-like comparison run:
    uWave UCR 1 and 5 labels per class (3 seeds, 100 epochs), uWave UEA and the synthetic gestures at 5 per
    class (benchmarks/results/recipes.json: 2 seeds at 30 epochs, one UEA seed at 100); it was not run on
    UCI HAR (about 3 h per run on 2 cores), and it costs 25-35x the baseline's time."""
    if name == AUTO:
        return FEW_LABELS if label_budget else ALL_LABELS
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(NAMES)}")
    return RECIPES[name]


def recipe_config(name: str = AUTO, **settings: Any):
    """A :class:`~edgessl.trainer.pipeline.FinetuneConfig` as ``edgessl finetune --recipe NAME`` builds it:
    the defaults < the recipe < ``settings`` (top-level fields; ``data``, ``encoder`` and ``fit`` as dicts of
    their fields). Example: ``recipe_config(data={"spec": "npz:my.npz"}, labels_per_class=5)``. With
    ``init``, the data settings neither the recipe nor ``settings`` give (channels, length, standardisation)
    are the pretrained encoder's, and what was taken or overridden is printed on stderr, as the CLI does.

    Raises:
        ValueError: an unknown recipe or setting (named).
        UsageError: ``data.channels`` that the pretrained encoder of ``init`` does not take.
    """
    import dataclasses
    import sys

    from edgessl.trainer.config_file import check_keys, merge
    from edgessl.trainer.pipeline import FinetuneConfig, inherit_inputs

    sections = ("data", "encoder", "fit")
    budget = settings.get("labels_per_class") is not None or settings.get("label_fraction") is not None
    recipe = resolve(name, label_budget=budget)
    d = FinetuneConfig().to_dict()
    explicit: dict[str, str] = {}
    for source, layer in ((f"recipe {recipe.name}", recipe.settings), ("recipe_config()", settings)):
        check_keys(layer, d, sections, source)
        d = merge(d, layer, sections)
        explicit.update(dict.fromkeys(layer.get("data", {}), source))
    cfg = FinetuneConfig.from_dict(d)
    spec, note = recipe_spec(recipe.name, cfg.data.spec)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, spec=spec))
    if cfg.init:
        data, lines = inherit_inputs(cfg.data, cfg.init, explicit, uses_streams=cfg.unlabelled is not None,
                                     data_flag="data={'spec': ...}")  # fmt: skip
        for line in lines:
            print(line, file=sys.stderr, flush=True)
        cfg = dataclasses.replace(cfg, data=data)
    return cfg


def pretrain_config(**settings: Any):
    """A :class:`~edgessl.trainer.pipeline.PretrainConfig` from the defaults with ``settings`` laid on top, as
    ``recipe_config`` builds a fine-tuning one: top-level fields, and ``data`` / ``encoder`` / ``method`` /
    ``fit`` as dicts of their fields. Example: ``pretrain_config(data={"spec": "dir:my_board"},
    method={"name": "vicreg"}, fit={"epochs": 20})``.

    Raises:
        ValueError: an unknown setting (named, with the ones expected there).
    """
    from edgessl.trainer.config_file import check_keys, merge
    from edgessl.trainer.pipeline import PretrainConfig

    sections = ("data", "encoder", "method", "fit")
    d = PretrainConfig().to_dict()
    check_keys(settings, d, sections, "pretrain_config()")
    return PretrainConfig.from_dict(merge(d, settings, sections))
