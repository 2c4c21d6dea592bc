"""Labelled streams (recorded sessions, labelled CSVs) as labelled windows, splits and pretraining pools.

A labelled stream is a :class:`StreamDataset` whose ``extra["segments"]`` lists performances as ``[S, 4]``
rows ``(start, end, label, flags_bit)`` in sample indices (``dir:`` and ``csv:`` loaders build it). It
carries how it becomes windows (``extra["input_mode"]``, ``["window_length"]``, ``["split_by"]``,
``["test_fraction"]``, set by :func:`attach_window_options` from the spec's options or ``dataset.json``):

* ``segment`` input: each performance stretched to ``length`` samples (no fixed rate), what the runtime's
  segment mode shows a model; the pretraining pool is what the motion-energy segmenter cuts from every
  session, stretched the same way.
* ``sliding`` input: windows of ``length`` samples at the data rate, stride ``length // 2``, inside each
  performance (a shorter one gives one window centred on it); the pool is the same windows over the stream.

Splits keep whole users, whole sessions, or at least whole performances apart, never overlapping windows:
``auto`` is ``folder`` for an Edge Impulse export (``training/`` and ``testing/``: its own split), else ``user``
when two or more users have labels, else ``session`` when two or more sessions each hold
every class, else ``take``. Performances flagged (a gap overlaps them) are left out of training and counted.
Nothing of the test split (its sessions, or its performances' samples) enters the pretraining pool.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import numpy as np

from edgessl.datasets.types import DataFormatError, SpecOptionError, StreamDataset, WindowDataset
from edgessl.preprocess import MAX_FILL_S, resample_to_length
from edgessl.segmenter import SegmentParams, motion_rows, segment_signal

__all__ = [
    "DEFAULT_LENGTH",
    "DEFAULT_TEST",
    "SplitPlan",
    "WindowOptions",
    "attach_window_options",
    "describe",
    "is_labelled_stream",
    "labelled_windows",
    "pool_windows",
    "takes_segmentation",
    "split_plan",
    "window_options",
]

DEFAULT_LENGTH = 64
DEFAULT_TEST = 0.25
INPUT_MODES = ("segment", "sliding")
SPLITS = ("auto", "user", "session", "take", "folder")
MIN_PER_CLASS = 5
MAX_IMBALANCE = 2.0


@dataclasses.dataclass(frozen=True)
class WindowOptions:
    """How a labelled stream becomes windows (see the module docstring)."""

    input_mode: str = "segment"
    length: int = DEFAULT_LENGTH
    split: str = "auto"
    test: float = DEFAULT_TEST


def attach_window_options(ds: StreamDataset, opts: dict[str, str], spec: str,
                          base: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Store the window options of ``opts`` (the spec's ``input``, ``length``, ``split``, ``test``) in ``ds``.

    ``base`` holds defaults from ``dataset.json`` (``input_mode``, ``length``). Without either, the input
    mode is ``segment`` when the stream has performances and ``sliding`` otherwise.

    Raises:
        ValueError: an option is malformed (the message names the spec).
    """
    base = base or {}
    has_segments = len(ds.extra.get("segments", ())) > 0
    mode = opts.get("input", base.get("input_mode") or ("segment" if has_segments else "sliding"))
    if mode not in INPUT_MODES:
        raise SpecOptionError(f"{spec!r}: input= must be one of {', '.join(INPUT_MODES)}; got {mode!r}")
    raw_len = opts.get("length", base.get("length", DEFAULT_LENGTH))
    if (sec := re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)s", str(raw_len))) and mode == "sliding" and ds.rate_hz:
        raw_len = round(float(sec.group(1)) * ds.rate_hz)  # a duration: windows of that long at the data's rate
    if not str(raw_len).isdigit() or int(raw_len) < 2:
        raise SpecOptionError(f"{spec!r}: length= must be a whole number of samples >= 2 (or, with input=sliding, a "
                              f"duration such as 2.56s); got {raw_len!r}")  # fmt: skip
    split = opts.get("split", "auto")
    if split not in SPLITS:
        raise SpecOptionError(f"{spec!r}: split= must be one of {', '.join(SPLITS)}; got {split!r}")
    try:
        test = float(opts.get("test", DEFAULT_TEST))
    except ValueError:
        raise SpecOptionError(f"{spec!r}: test= must be a fraction in (0, 1); got {opts.get('test')!r}") from None
    if not 0 < test < 1:
        raise SpecOptionError(f"{spec!r}: test= must be a fraction in (0, 1); got {test}")
    if mode == "sliding" and ds.rate_hz is None:
        raise DataFormatError(f"{spec}: input=sliding needs a sample rate; this stream has none")
    if "segments" not in ds.extra:
        ds.extra["segments"] = np.zeros((0, 4), np.int64)
    ds.extra.update(input_mode=np.array(mode), window_length=np.array(int(raw_len)), split_by=np.array(split),
                    test_fraction=np.array(test))  # fmt: skip
    if mode == "segment" and ds.rate_hz and len(ds.extra["segments"]):
        fit_spans_to_motion(ds)


# a class whose labelled spans last this many times the longest gesture at the median is an activity
ACTIVITY_SPANS = 2.0
# activities read from recordings as sliding windows this long (``finetune --recipe activities``): UCI HAR's (128
# samples at 50 Hz), where the recipe was measured
ACTIVITY_WINDOW = "2.56s"
ACTIVITIES_TEXT = ("class(es) {} last {} at the median, far longer than a gesture ({:g} s at most): activities, not "
                   f"gestures cut from movement; read them as sliding windows (the spec's options "
                   f"input=sliding,length={ACTIVITY_WINDOW}), or fine-tune with --recipe activities, which reads them so")
TIGHT_COVER = 0.75  # a labelled span whose movement covers less than this of it is reported as wider than it
REST_SHARE = 0.75  # a class whose labelled spans hold no movement this often is rest (left out, said)


def fit_spans_to_motion(ds: StreamDataset) -> None:
    """Labelled spans as the runtime will see their gestures: the movement the segmenter cuts inside them.

    The runtime classifies what its motion segmenter cuts from the stream; a span labelled with rest around its
    gesture (Edge Impulse's labels often are), or a run of one label over several gestures, would train the
    model on windows it never sees live; even a label that hugs the motion starts a few samples later than
    the cut. Each span becomes the hull of its cuts (the session's own segmentation; a cut belongs to the span
    holding most of it, at least half), or, when it is longer than the longest gesture the runtime cuts, each
    of its cuts. ``edgessl record``'s spans are the segmenter's cuts already and stay as they are; spans without
    movement are kept and counted, except that a class most of whose spans (:data:`REST_SHARE`) hold none is
    rest (``idle``): the runtime never cuts it, and a model trained on it answers it for gestures and knocks, so
    its spans become unlabelled (``extra["rest_classes"]``, ``["rest_spans"]``: still and all spans of each);
    when no class moves, the cut failed (a sensor noisier than its threshold) and every class stays.
    In place: ``class_names``, ``sample_labels``, ``extra["segments"]``, ``["takes"]`` (a piece keeps its span's
    take) and ``["span_fit"]`` (spans whose movement covered less than :data:`TIGHT_COVER` of them, spans
    split, the pieces they became, spans without movement; per class in ``["still_spans"]``).
    """
    seg = np.asarray(ds.extra["segments"], np.int64).reshape(-1, 4)
    takes = np.asarray(ds.extra.get("takes", np.arange(len(seg))), np.int64)
    if len(takes) != len(seg):
        takes = np.arange(len(seg), dtype=np.int64)
    rate = float(ds.rate_hz or 0.0)
    # classes whose spans last far longer than any gesture: activities (walking, sitting), not gestures
    limit = ACTIVITY_SPANS * SegmentParams().max_duration_s
    med = [(c, float(np.median(seg[seg[:, 2] == c, 1] - seg[seg[:, 2] == c, 0])) / rate) for c in
           range(len(ds.class_names)) if rate and (seg[:, 2] == c).any()]  # fmt: skip
    if long := [(ds.class_names[c], m) for c, m in med if m > limit]:
        ds.extra["activity_classes"] = np.array([n for n, _ in long])
        ds.extra["activity_seconds"] = np.array([m for _, m in long])
    rows = motion_rows(ds.channel_units)
    rec = np.searchsorted(ds.offsets, seg[:, 0], "right") - 1
    out_seg: list[list[int]] = []
    out_takes: list[int] = []
    tightened = split = pieces = 0
    still = np.zeros(len(ds.class_names), np.int64)
    still_at: list[tuple[int, int]] = []  # (first sample, label) of each span without movement
    for k in range(ds.n_recordings):
        mine = np.flatnonzero(rec == k)
        if not len(mine):
            continue
        lo, hi = int(ds.offsets[k]), int(ds.offsets[k + 1])
        params = _segmentation(ds, k)
        # a second of stillness after the recording: a gesture labelled at its very end is closed, not lost
        x = ds.signal[:, lo:hi]
        x = np.concatenate([x, np.repeat(x[:, -1:], int(rate), axis=1)], axis=1)
        cuts = np.minimum(segment_signal(x, rate, params, rows), hi - lo) + lo
        # each cut to the span holding most of it (at least half of it)
        owner: dict[int, list[tuple[int, int]]] = {}
        for a, b in cuts.tolist():
            inside = [max(0, min(b, int(seg[i, 1])) - max(a, int(seg[i, 0]))) for i in mine]
            j = int(np.argmax(inside))
            if inside[j] * 2 >= b - a:
                owner.setdefault(int(mine[j]), []).append((a, b))
        for i in mine.tolist():
            a0, b0, lab, flag = (int(v) for v in seg[i])
            mine_cuts = owner.get(i, [])
            if not mine_cuts:
                if 0 <= lab < len(still):
                    still[lab] += 1
                    still_at.append((a0, lab))
                out_seg.append([a0, b0, lab, flag])
                out_takes.append(int(takes[i]))
                continue
            a1, b1 = min(c[0] for c in mine_cuts), max(c[1] for c in mine_cuts)
            if b0 - a0 > params.max_duration_s * rate and len(mine_cuts) > 1:
                split += 1
                pieces += len(mine_cuts)
                for a, b in mine_cuts:
                    out_seg.append([a, b, lab, flag])
                    out_takes.append(int(takes[i]))
            else:  # (a tight label moves by the few samples the segmenter's energy window takes to rise)
                tightened += (min(b1, b0) - max(a1, a0)) < TIGHT_COVER * (b0 - a0)
                out_seg.append([a1, b1, lab, flag])
                out_takes.append(int(takes[i]))
    # a class of rest (most of its spans hold no movement): the runtime answers rest by cutting nothing, so the
    # model is never asked it, and trained on it, it takes gestures and knocks for rest; its spans become rest
    spans = np.bincount(seg[:, 2][(seg[:, 2] >= 0) & (seg[:, 2] < len(still))], minlength=len(still))
    rest = [c for c in range(len(still)) if still[c] and still[c] >= REST_SHARE * spans[c]]
    if len(rest) == int((spans > 0).sum()):  # no class moves: the cut failed (noise above its threshold), not rest
        rest = []
    keep = [c for c in range(len(still)) if c not in rest]
    if rest:
        remap = np.full(len(still), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        kept = [i for i, r in enumerate(out_seg) if not (0 <= r[2] < len(still)) or r[2] not in rest]
        out_seg = [[a, b, int(remap[lab]) if 0 <= lab < len(still) else lab, f] for a, b, lab, f in
                   (out_seg[i] for i in kept)]  # fmt: skip
        out_takes = [out_takes[i] for i in kept]
        ds.extra["rest_classes"] = np.array([ds.class_names[c] for c in rest])
        ds.extra["rest_spans"] = np.array([[int(still[c]), int(spans[c])] for c in rest], np.int64)
        ds.class_names = [ds.class_names[c] for c in keep]
        still_at = [(a, int(remap[lab])) for a, lab in still_at if lab not in rest]
    ds.extra["still_at"] = np.array(still_at, np.int64).reshape(-1, 2)
    ds.extra["segments"] = np.array(out_seg, np.int64).reshape(-1, 4)
    ds.extra["takes"] = np.array(out_takes, np.int64)
    if ds.sample_labels is not None:  # the samples' labels follow their performances
        ds.sample_labels = np.full(ds.signal.shape[1], -1, np.int64)
        for a, b, lab, _ in out_seg:
            ds.sample_labels[a:b] = lab
    ds.extra["span_fit"] = np.array([tightened, split, pieces, int(still[keep].sum())], np.int64)
    ds.extra["still_spans"] = still[keep]


def is_labelled_stream(ds: object) -> bool:
    """True for a stream that lists performances (a ``dir:`` folder, a ``csv:`` with labels or a sidecar)."""
    return isinstance(ds, StreamDataset) and "input_mode" in ds.extra and len(ds.extra.get("segments", ())) > 0


def window_options(ds: StreamDataset) -> WindowOptions:
    """The options :func:`attach_window_options` stored (defaults where a loader stored none)."""
    e = ds.extra
    return WindowOptions(
        str(e["input_mode"]) if "input_mode" in e else "segment",
        int(e["window_length"]) if "window_length" in e else DEFAULT_LENGTH,
        str(e["split_by"]) if "split_by" in e else "auto",
        float(e["test_fraction"]) if "test_fraction" in e else DEFAULT_TEST,
    )


# -- performances and splits ------------------------------------------------------------------------------------
def _names(ds: StreamDataset, key: str, fallback: str) -> list[str]:
    if f"{key}_names" in ds.extra:
        return [str(s) for s in np.asarray(ds.extra[f"{key}_names"]).tolist()]
    ids = ds.recording_groups.get(key)
    n = int(ids.max()) + 1 if ids is not None and len(ids) else 1
    return [fallback if n == 1 else f"{fallback}{i}" for i in range(n)]


def _rec_ids(ds: StreamDataset, key: str) -> np.ndarray:
    ids = ds.recording_groups.get(key)
    return np.asarray(ids, np.int64) if ids is not None else np.zeros(ds.n_recordings, np.int64)


def _performances(ds: StreamDataset) -> dict[str, np.ndarray]:
    seg = np.asarray(ds.extra.get("segments", np.zeros((0, 4), np.int64)), np.int64).reshape(-1, 4)
    rec = np.searchsorted(ds.offsets, seg[:, 0], "right") - 1
    takes = np.asarray(ds.extra.get("takes", np.zeros(0, np.int64)), np.int64)
    if len(takes) != len(seg):
        takes = np.ones(len(seg), np.int64)
    return {"start": seg[:, 0], "end": seg[:, 1], "label": seg[:, 2], "flags": seg[:, 3], "rec": rec,
            "session": _rec_ids(ds, "session")[rec], "user": _rec_ids(ds, "user")[rec], "take": takes}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """Where each performance goes.

    Attributes:
        by: ``user``, ``session`` or ``take``.
        test: bool ``[S]`` per performance (flagged ones included; they are left out of training anyway).
        test_recordings: bool ``[R]``: whole recordings (sessions) of the test split.
        note: why the split is what it is, when it is not by user.
    """

    by: str
    test: np.ndarray
    test_recordings: np.ndarray
    note: str = ""


def _last(items: list[int], fraction: float) -> list[int]:
    n_test = min(max(1, int(round(fraction * len(items)))), len(items) - 1)
    return items[len(items) - n_test :]


def split_plan(ds: StreamDataset) -> SplitPlan:
    """The train/test split of a labelled stream's performances (see the module docstring).

    ``folder``: the sessions of a ``testing/`` subfolder beside ``training/`` (an Edge Impulse export; what
    ``auto`` gives there). ``user``: the last users by name (a ``test`` fraction of them, at least one, never all) and every
    session of theirs are the test split. ``session``: the last sessions by name (sessions are named by
    their start time) among those that hold every class. ``take``: per class, the last performances.

    Raises:
        DataFormatError: ``split=user`` or ``split=session`` is asked for but the data cannot give it.
    """
    opt = window_options(ds)
    p = _performances(ds)
    usable = p["flags"] == 0
    users = sorted(set(p["user"][usable].tolist()))
    classes = set(p["label"][usable].tolist())
    sessions = sorted(set(p["session"][usable].tolist()))
    complete = [s for s in sessions if set(p["label"][usable & (p["session"] == s)].tolist()) == classes]
    by = opt.split
    fixed = np.asarray(ds.extra.get("testing_sessions", np.zeros(0, bool)), bool)  # an Edge Impulse export's
    if by == "auto":
        by = ("folder" if fixed.any() and not fixed.all() else "user" if len(users) >= 2
              else "session" if len(complete) >= 2 else "take")  # fmt: skip
    rec_user, rec_session = _rec_ids(ds, "user"), _rec_ids(ds, "session")
    user_names, session_names = _names(ds, "user", "unknown"), _names(ds, "session", "session")
    note = ""
    if by == "folder":
        if not fixed.any() or fixed.all():
            raise DataFormatError(f"{ds.name}: split=folder needs sessions in a training/ and a testing/ subfolder "
                                  "(as Edge Impulse exports them)")  # fmt: skip
        return SplitPlan("folder", fixed[p["rec"]], fixed)
    if by == "user":
        if len(users) < 2:
            raise DataFormatError(f"{ds.name}: split=user needs labelled performances of at least 2 users; found "
                                  f"{[user_names[u] for u in users]}")  # fmt: skip
        test_users = _last(sorted(users, key=lambda u: user_names[u]), opt.test)
        test_rec = np.isin(rec_user, test_users)
    elif by == "session":
        pick = complete if len(complete) >= 2 else sessions
        if len(pick) < 2:
            raise DataFormatError(f"{ds.name}: split=session needs at least 2 sessions with labelled performances; "
                                  f"found {len(pick)}")  # fmt: skip
        test_rec = np.isin(rec_session, _last(sorted(pick, key=lambda s: session_names[s]), opt.test))
        if len(users) == 1 and user_names[users[0]] == "unknown":
            note = ("users unknown: the test split is other sessions, of the same people; to split by person, put "
                    "each person's CSV files in a subfolder named after them (mydata/anna/*.csv) or give each a "
                    "sidecar with its user (docs/data.md)")  # fmt: skip
        elif len(users) < 2:
            note = "one user: the test split is other sessions of the same person"
    else:
        test_rec = np.zeros(ds.n_recordings, bool)
        test = np.zeros(len(p["label"]), bool)
        for c in sorted(classes):
            rows = np.flatnonzero(usable & (p["label"] == c))
            order = rows[np.lexsort((p["start"][rows], p["session"][rows]))]
            if len(order) >= 2:
                test[_last(order.tolist(), opt.test)] = True
        note = ("split by whole performances (take): the test split holds other performances of the same "
                "session(s), so it measures less than a new session would; record a second session holding every "
                "gesture (the test split is whole sessions only when two hold them all), or score a folder of new "
                "sessions with `edgessl verify BUNDLE --data dir:NEW --all`")  # fmt: skip
        return SplitPlan("take", test, test_rec, note)
    return SplitPlan(by, test_rec[p["rec"]], test_rec, note)


def _test_samples(ds: StreamDataset, plan: SplitPlan) -> np.ndarray:
    """bool ``[N]``: samples of the test split (whole test sessions, or the test performances)."""
    mask = np.zeros(ds.signal.shape[1], bool)
    for k in np.flatnonzero(plan.test_recordings).tolist():
        mask[ds.offsets[k] : ds.offsets[k + 1]] = True
    p = _performances(ds)
    for a, b in zip(p["start"][plan.test].tolist(), p["end"][plan.test].tolist(), strict=True):
        mask[a:b] = True
    return mask


# -- windows ------------------------------------------------------------------------------------------------------
def _sliding(ds: StreamDataset, a: int, b: int, k: int, length: int) -> list[np.ndarray]:
    """Windows of ``length`` with stride ``length // 2`` inside ``[a, b)``; one centred window if shorter."""
    lo, hi = int(ds.offsets[k]), int(ds.offsets[k + 1])
    if b - a >= length:
        return [ds.signal[:, s : s + length] for s in range(a, b - length + 1, max(1, length // 2))]
    if hi - lo < length:
        return []
    s = min(max(lo, (a + b - length) // 2), hi - length)
    return [ds.signal[:, s : s + length]]


def labelled_windows(ds: StreamDataset, length: int | None = None) -> WindowDataset:
    """A labelled stream's performances as a :class:`WindowDataset` split by :func:`split_plan`.

    Args:
        ds: a labelled stream (:func:`is_labelled_stream`).
        length: samples per window; default the stream's ``length`` option (64).

    Returns:
        Windows with per-row groups ``user``, ``session`` and ``performance`` (a global id per performance,
        so that a validation split can keep a performance's overlapping sliding windows together).

    Raises:
        DataFormatError: the stream has no usable labelled performance, naming it.
    """
    if not is_labelled_stream(ds):
        raise DataFormatError(f"{ds.name}: no labelled performances: add a 'label' column to the CSV or record "
                              "labelled sessions (edgessl record --label NAME); unlabelled data is for pretraining")
    opt = window_options(ds)
    length = int(length or opt.length)
    if length < 2:
        raise DataFormatError(f"{ds.name}: windows need at least 2 samples; got length={length}")
    p = _performances(ds)
    plan = split_plan(ds)
    usable = p["flags"] == 0
    if not usable.any():
        raise DataFormatError(f"{ds.name}: all {len(usable)} labelled performances are flagged (a gap overlaps "
                              "them); record them again")  # fmt: skip
    parts: dict[str, dict[str, list[Any]]] = {s: {"X": [], "y": [], "user": [], "session": [], "performance": []}
                                              for s in ("train", "test")}  # fmt: skip
    short = 0
    for i in np.flatnonzero(usable).tolist():
        a, b, k = int(p["start"][i]), int(p["end"][i]), int(p["rec"][i])
        if opt.input_mode == "segment":
            wins = [resample_to_length(ds.signal[:, a:b], length)] if b - a >= 2 else []
        else:
            wins = _sliding(ds, a, b, k, length)
        short += not wins
        part = parts["test" if plan.test[i] else "train"]
        for w in wins:
            part["X"].append(w)
            part["y"].append(p["label"][i])
            part["user"].append(p["user"][i])
            part["session"].append(p["session"][i])
            part["performance"].append(i)
    C = ds.signal.shape[0]

    def arr(s: str, key: str) -> np.ndarray:
        if key == "X":
            return np.stack(parts[s]["X"]).astype(np.float32) if parts[s]["X"] else np.zeros((0, C, length), np.float32)
        return np.array(parts[s][key], np.int64)

    if not len(parts["train"]["X"]):
        raise DataFormatError(f"{ds.name}: no training windows: every usable performance went to the test split "
                              f"or was too short for length={length}")  # fmt: skip
    n_flagged = int((~usable).sum())
    notes = [f"{opt.input_mode} windows of {length}", f"split by {plan.by}"]
    if "activity_classes" in ds.extra:
        notes.append(f"activities {[str(c) for c in ds.extra['activity_classes']]} cut as gestures")
    if "rest_classes" in ds.extra:
        notes.append(f"rest class(es) {[str(c) for c in ds.extra['rest_classes']]} left out")
    if n_flagged:
        notes.append(f"{n_flagged} flagged performance(s) left out")
    if short:
        notes.append(f"{short} performance(s) too short for a window left out")
    return WindowDataset(
        arr("train", "X"), arr("train", "y"), arr("test", "X"), arr("test", "y"), list(ds.class_names),
        list(ds.channel_names), list(ds.channel_units), ds.rate_hz if opt.input_mode == "sliding" else None,
        {g: (arr("train", g), arr("test", g)) for g in ("user", "session", "performance")},
        name=f"{ds.name} ({', '.join(notes)})",
    )


def _segmentation(ds: StreamDataset, k: int) -> SegmentParams:
    raw = ds.extra.get("segmentation_json")
    if raw is None or k >= len(raw):
        return SegmentParams()
    d = json.loads(str(np.asarray(raw)[k]) or "{}")
    names = {f.name for f in dataclasses.fields(SegmentParams)}
    return SegmentParams(**{key: float(v) for key, v in d.items() if key in names})


def takes_segmentation(ds: StreamDataset) -> tuple[SegmentParams, int, int]:
    """How most of the labelled takes were cut (their sessions' segmentation: ``edgessl record`` switches a
    session to the gentle cut for slow gestures): ``(params, takes cut that way, takes)``; the default when
    there are no takes."""
    perf = _performances(ds)
    counts: dict[SegmentParams, int] = {}
    for k in perf["rec"].tolist():
        p = _segmentation(ds, int(k))
        counts[p] = counts.get(p, 0) + 1
    if not counts:
        return SegmentParams(), 0, 0
    params = max(counts, key=lambda p: counts[p])
    return params, counts[params], int(sum(counts.values()))


def pool_windows(ds: StreamDataset, length: int | None = None) -> tuple[np.ndarray, float | None]:
    """Unlabelled windows of a session stream for pretraining, never from the test split.

    ``segment`` input: every cut of the motion-energy segmenter in every session (labelled or not),
    stretched to ``length``; ``sliding``: windows of ``length`` with stride ``length // 2``. Windows that
    touch a test session or a test performance are left out.

    Returns:
        ``(X [n, C, length], rate_hz)`` in source units; the rate is None for stretched segments.
    """
    opt = window_options(ds)
    length = int(length or opt.length)
    test = _test_samples(ds, split_plan(ds)) if is_labelled_stream(ds) else np.zeros(ds.signal.shape[1], bool)
    out = []
    for k in range(ds.n_recordings):
        lo, hi = int(ds.offsets[k]), int(ds.offsets[k + 1])
        if opt.input_mode == "segment":
            if ds.rate_hz is None:
                raise DataFormatError(f"{ds.name}: the segmenter needs a sample rate; this stream has none")
            cuts = segment_signal(ds.signal[:, lo:hi], ds.rate_hz, _segmentation(ds, k), motion_rows(ds.channel_units)) + lo
            spans = [(a, b) for a, b in cuts.tolist() if b - a >= 2]
        else:
            spans = [(s, s + length) for s in range(lo, hi - length + 1, max(1, length // 2))]
        for a, b in spans:
            if not test[a:b].any():
                w = ds.signal[:, a:b]
                out.append(resample_to_length(w, length) if opt.input_mode == "segment" else w)
    X = np.stack(out).astype(np.float32) if out else np.zeros((0, ds.signal.shape[0], length), np.float32)
    return X, (ds.rate_hz if opt.input_mode == "sliding" else None)


# -- data info ---------------------------------------------------------------------------------------------------
def describe(ds: StreamDataset) -> dict[str, Any]:
    """Counts and warnings for ``edgessl data info``: per class, session and user, the split, flagged ones.

    Counts are of performances (usable = not flagged); ``split`` gives windows per side.
    """
    opt = window_options(ds)
    p = _performances(ds)
    usable = p["flags"] == 0
    classes, users, sessions = ds.class_names, _names(ds, "user", "unknown"), _names(ds, "session", "session")
    rec_session, rec_user = _rec_ids(ds, "session"), _rec_ids(ds, "user")
    lengths = np.diff(ds.offsets)
    per_class = {c: int((usable & (p["label"] == i)).sum()) for i, c in enumerate(classes)}
    per_session: dict[str, Any] = {}
    for s, name in enumerate(sessions):
        m = usable & (p["session"] == s)
        per_session[name] = {"user": users[int(rec_user[rec_session == s][0])] if (rec_session == s).any() else "",
                             "samples": int(lengths[rec_session == s].sum()), "performances": int(m.sum()),
                             "flagged": int((~usable & (p["session"] == s)).sum()),
                             "per_class": {classes[c]: int((m & (p["label"] == c)).sum())
                                           for c in sorted(set(p["label"][m].tolist()))}}  # fmt: skip
    per_user = {name: {"sessions": int(len(set(rec_session[rec_user == u].tolist()))),
                       "performances": int((usable & (p["user"] == u)).sum())}
                for u, name in enumerate(users)}  # fmt: skip
    warnings: list[str] = []
    info: dict[str, Any] = {"input_mode": opt.input_mode, "length": opt.length, "performances": int(usable.sum()),
                            "flagged": int((~usable).sum()), "per_class": per_class, "per_session": per_session,
                            "per_user": per_user, "warnings": warnings}  # fmt: skip
    info["bridged_holes"] = int(np.asarray(ds.extra.get("bridged_holes", 0)).sum())  # short gaps the loader filled
    empty = [str(s) for s in np.asarray(ds.extra.get("empty_sessions", np.zeros(0, str))).tolist()]
    if empty:
        info["empty_sessions"] = empty
        warnings.append(f"{len(empty)} session(s) hold no samples and were skipped: {empty}")
    if not len(p["label"]):
        warnings.append("no labelled performances: this data set serves pretraining only")
        return info
    if "span_fit" in ds.extra:
        tightened, split, pieces, n_still = (int(v) for v in ds.extra["span_fit"])
        info["span_fit"] = {"tightened": tightened, "split": split, "pieces": pieces, "still": n_still}
        if tightened or split:
            info["notes"] = [f"{tightened + split} labelled span(s) were wider than their movement: "
                             + (f"{tightened} became the movement inside them" if tightened else "")
                             + (", " if tightened and split else "")
                             + (f"{split} holding several gestures became {pieces} performances" if split else "")
                             + ", as edgessl run cuts them live"]  # fmt: skip
        if "activity_classes" in ds.extra:
            info["activity_classes"] = {str(c): round(float(m), 1) for c, m in
                                        zip(ds.extra["activity_classes"], ds.extra["activity_seconds"], strict=True)}  # fmt: skip
            warnings.append(ACTIVITIES_TEXT.format(list(info["activity_classes"]), ", ".join(
                f"{m:g} s" for m in info["activity_classes"].values()), SegmentParams().max_duration_s))  # fmt: skip
        if "rest_classes" in ds.extra:
            info["rest_classes"] = {str(c): f"{int(n[0])} of {int(n[1])}" for c, n in
                                    zip(ds.extra["rest_classes"], ds.extra["rest_spans"], strict=True)}  # fmt: skip
            warnings.append(f"class(es) {list(info['rest_classes'])} left out as rest: "
                            + ", ".join(f"{v} spans" for v in info["rest_classes"].values())
                            + " hold no movement the gesture cut finds (still, or moving for longer than a gesture); "
                            "edgessl run classifies only the movements it cuts and answers rest by cutting nothing: "
                            "leave rest unlabelled (an empty label)")  # fmt: skip
        if n_still:
            at = np.asarray(ds.extra.get("still_at", np.zeros((0, 2))), np.int64).reshape(-1, 2)
            rec = np.searchsorted(ds.offsets, at[:, 0], "right") - 1
            where = [f"{sessions[int(_rec_ids(ds, 'session')[k])]} at {(a - ds.offsets[k]) / ds.rate_hz:.1f} s "
                     f"({classes[lab]})" for (a, lab), k in zip(at[:3].tolist(), rec[:3].tolist(), strict=True)]  # fmt: skip
            warnings.append(f"{n_still} labelled span(s) hold no movement the segmenter cuts (gestures too gentle, "
                            "or rest labelled): edgessl run would not cut them"
                            + (f"; {', '.join(where)}{' ...' if n_still > 3 else ''}" if where and ds.rate_hz else ""))  # fmt: skip
    if info["flagged"]:
        warnings.append(f"{info['flagged']} performance(s) overlap a gap longer than {MAX_FILL_S:g} s or a device "
                        "restart (flagged); they are left out of training")  # fmt: skip
    few = {c: n for c, n in per_class.items() if n < MIN_PER_CLASS}
    if few:
        warnings.append(f"fewer than {MIN_PER_CLASS} performances for class(es) {few}")
    present: list[int] = [n for n in per_class.values() if n > 0]
    if present and max(present) > MAX_IMBALANCE * min(present):
        warnings.append(f"class imbalance: {max(present)} vs {min(present)} performances (more than "
                        f"{MAX_IMBALANCE:g}x)")  # fmt: skip
    one_session = len(set(p["session"][usable].tolist())) == 1
    if one_session:
        warnings.append("all labelled performances come from one session: validation and test hold other "
                        "performances (takes) of that same session, so they measure less than a new session "
                        "would; record another")  # fmt: skip
    try:
        plan = split_plan(ds)
        wd = labelled_windows(ds)
    except DataFormatError as e:
        warnings.append(f"no split: {e}")
        return info
    info["split"] = {"by": plan.by, "train": len(wd.y_train), "test": len(wd.y_test),
                     "test_sessions": [sessions[s] for s in sorted(set(p["session"][plan.test].tolist()))],
                     "test_users": [users[u] for u in sorted(set(p["user"][plan.test].tolist()))]}  # fmt: skip
    if plan.note and not (one_session and plan.by == "take"):  # the one-session warning already says it
        warnings.append(plan.note)
    if ds.rate_hz and opt.input_mode == "segment":  # (sliding windows are cut from spans of any length)
        long = int((usable & ((p["end"] - p["start"]) > SegmentParams().max_duration_s * ds.rate_hz)).sum())
        if long:
            warnings.append(f"{long} labelled performance(s) longer than {SegmentParams().max_duration_s:g} s (the "
                            "longest gesture the runtime cuts): takes of one label with no unlabelled row between "
                            "them are one performance; separate them by an empty label")  # fmt: skip
    windowed = len(set(np.concatenate(wd.groups["performance"]).tolist()))
    if windowed < info["performances"]:
        need = "2 samples" if opt.input_mode == "segment" else f"{opt.length} samples (a window)"
        warnings.append(f"{info['performances'] - windowed} performance(s) shorter than {need} are left out")
    for side, y in (("training", wd.y_train), ("test", wd.y_test)):
        missing = [classes[c] for c in range(len(classes)) if per_class[classes[c]] and not (y == c).any()]
        if missing:
            warnings.append(f"class(es) {missing} have no {side} windows")
    if plan.by != "user":
        for u, name in enumerate(users):
            sides = {bool(t) for t in plan.test[usable & (p["user"] == u)].tolist()}
            if len(sides) == 1 and len(users) > 1:
                warnings.append(f"user {name!r} is only in the {'test' if True in sides else 'training'} split")
    return info
