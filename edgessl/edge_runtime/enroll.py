"""On-device enrollment (numpy only): a user's own performances, kept in a per-user state beside the bundle.

A user performs a gesture a few times; the runtime embeds each take and keeps the embeddings in a
:class:`UserState` tied to the bundle's checksum. The signed bundle is never modified. The state can add a
class (its label is appended after the bundle's) or personalise a class the bundle knows.

The decision rule (:class:`EnrolledHead`), when the bundle carries typical performances of its classes
(``class_templates``, written by the trainer since this version) and the state holds the takes' windows: a
class's templates are the user's takes where it has any, the bundle's typical performances otherwise. When
the window's nearest template by DTW (:mod:`edgessl.templates`) is one of the user's takes, the answer is the
head's logits minus ``TEMPLATE_WEIGHT`` times the distance to each class's nearest template, in units of the
distance between two different gestures (a class the bundle does not know gets the highest of the head's
logits: the template term decides); otherwise the head decides, as without enrollment. So with every class
enrolled the template term always joins, and an added gesture changes only the windows that look like it. Why: a user's own takes are the best
description of how that user moves; on uWave new users (train users 1–4, 5 labels per class) the head alone
answers 0.76, the nearest of the user's own takes by DTW 0.93 with one take per class, the sum 0.95
(docs/results.md, "Enrollment"). A state with no takes changes nothing.

Without templates (bundles and states of earlier versions) the rule is on embeddings: the prototypes of a class
are the bundle's class prototype and every enrolled take of it; when the window's nearest prototype is an
enrolled take, the answer is the nearest-prototype classifier over that union, otherwise the bundle's head.

Guards (:meth:`UserState.enroll`): each take must be answered with its own label by the new rule (leave one
out when there are two or more; takes that fail are not kept and are reported); a new class whose takes sit
about as close to an existing class as two different performances of one class do is refused, and one
closer than the bundle's two closest classes is warned about; and an enrollment that would flip another
enrolled take (answered right before, wrong after) is refused. The out-of-distribution score uses the union
of prototypes, so an enrolled class is not ``unknown``; the distance to a take of the class answered counts half
(``TAKE_DISTANCE_FACTOR``): the gate was set on distances to class means, and one take is one performance.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.atomic import save_npz_atomic
from edgessl.errors import DataError, npz_load_text
from edgessl.segmenter import PROFILES
from edgessl.templates import dtw_distances, standardise, template_scale

__all__ = ["BundleTemplates", "EnrollReport", "EnrolledHead", "StateMismatch", "UserState", "is_user_state",
           "prototype_scale"]

STATE_FORMAT = "edgessl-user-state"
STATE_VERSION = 4  # 2: the takes' windows are kept (template matching); 3: the user's segmentation profile;
# 4: the board's mounting (written only by states that hold one: the others are written as version 3 and stay
# readable by earlier runtimes, which would refuse a mounting rather than ignore it); states of earlier versions
# still load
VERSION_WITHOUT_MOUNTING = 3
# weight of the template distance against the head's logits, in units of the distance between two different
# gestures: chosen among 2, 4, 8, 16, 32 on the held-out days of the training users of uWave (users 1-4), not
# on the new users the acceptance is measured on (benchmarks/enroll.py)
TEMPLATE_WEIGHT = 8.0
# the probability shown is the softmax of the same score, unscaled: on uWave new users it is calibrated
# (expected calibration error 1.7 %; a scale fitted by log-loss on users 1-4's held-out days, 1.06, is no
# better on new users: benchmarks/enroll.py, "confidence")
TOO_CLOSE = 0.98  # cosine similarity at which a new class cannot be told from an existing one: refused
# the out-of-distribution gate was set on distances to class means; a performance's distance to one enrolled take
# is about its own distance to the class mean plus the take's (for unit vectors 1 - cos = |x - t|² / 2, and two
# independent deviations add): divided by this, it reads on the gate's scale (see EnrolledHead.decide)
TAKE_DISTANCE_FACTOR = 2.0


class StateMismatch(DataError, ValueError):
    """A user state that does not belong to this bundle (or is not a user state); ``checksums``: the state's bundle
    and this bundle, when it is another bundle's."""

    checksums: tuple[str, str] | None = None


def is_user_state(path: str | Path) -> bool:
    """Whether ``path`` is a user state file (``edgessl enroll``'s, by its format tag), whatever its bundle."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return False
    if not isinstance(z, np.lib.npyio.NpzFile):
        return False
    with z:
        try:
            return "format" in z.files and str(z["format"]) == STATE_FORMAT
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
            return False


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototype_scale(prototypes: np.ndarray) -> float:
    """The softmax scale of the cosine classifier, from the bundle's own class prototypes ``[K, D]``.

    An embedding on a class prototype, with the other classes at the prototypes' median similarity to one
    another, gets probability 0.9 (a model that separates its classes widely needs a smaller scale).
    """
    p = _unit(prototypes)
    k = len(p)
    if k < 2:
        return 10.0
    off = (p @ p.T)[~np.eye(k, dtype=bool)]
    gap = max(1.0 - float(np.median(off)), 0.05)
    return float(math.log(9.0 * (k - 1)) / gap)


@dataclasses.dataclass(frozen=True)
class BundleTemplates:
    """The bundle's typical performances of each class, standardised, and the distance scale they give."""

    windows: np.ndarray  # [M, C, T] standardised
    classes: np.ndarray  # [M]
    scale: float

    @classmethod
    def from_params(cls, params: Any) -> BundleTemplates | None:
        """From the bundle's adaptation parameters; None for a bundle without templates."""
        if "class_templates" not in params:
            return None
        Z = standardise(params["class_templates"])
        c = np.asarray(params["class_template_labels"], np.int64)
        return cls(Z, c, template_scale(Z, c))


FLIP_REMEDY_TAKES = 2  # more takes of a gesture an enrollment would have turned (EnrollReport.remedy)


def remedy_text(steps: list[tuple[str, int]]) -> str:
    """``[("right", 2), ("square", 1)]`` -> "perform right 2 more times, then square once more"."""
    times = {1: "once more", 2: "twice more"}
    return "perform " + ", then ".join(f"{lb} {times.get(n, f'{n} more times')}" for lb, n in steps)


@dataclasses.dataclass
class EnrollReport:
    """What an enrollment did.

    Attributes:
        label: the class enrolled.
        new_class: True when the label was not one of the bundle's (or the state's) classes.
        accepted: False when it was refused (the state is unchanged); ``reason`` says why.
        kept: takes kept; ``rejected``: per take not kept, ``{"take", "answered", "similarity"}`` (1-based take).
        nearest: the closest other class to the takes' mean and its cosine similarity (None without one).
        reference: the cosine similarity of the bundle's two closest class prototypes (None with one class).
        own: for a bundle class, the cosine similarity of the takes' mean to its own prototype (None for a new one).
        warnings: things the user should act on (a new class close to another, doubtful takes left out).
        notes: things worth knowing (takes nearer another gesture than the training data's way of making theirs).
        differs: the takes are nearer another gesture's training examples than their own (a person's own way of
            making it: what enrollment is for; one of ``notes`` says which).
        flipped: other enrolled takes this enrollment would have turned wrong (what refused it).
        n_takes: the takes given; ``total``: the takes of this class the state holds afterwards (with earlier ones).
        guard: which guard refused it: ``"too_close"`` (a new class like another), ``"none_answered"`` (no take
            answered with its label), ``"would_turn"`` (other enrolled takes would turn into it); "" if accepted.
    """

    label: str
    new_class: bool
    accepted: bool
    kept: int
    rejected: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    nearest: tuple[str, float] | None = None
    reference: float | None = None
    own: float | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    differs: bool = False
    flipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    reason: str = ""
    n_takes: int = 0
    guard: str = ""
    total: int = 0

    def next_text(self) -> str:
        """What to do after a refusal, in words ("" when accepted)."""
        if self.accepted:
            return ""
        if self.flipped:
            return remedy_text(self.remedy)
        if self.guard == "too_close" and self.nearest is not None:
            return f"make {self.label} differ more from {self.nearest[0]}, then perform it {self.remedy[-1][1]} times"
        return f"perform {self.label} again, {self.remedy[-1][1]} times"

    @property
    def remedy(self) -> list[tuple[str, int]]:
        """For a refused enrollment, what to perform next, in order: ``[(label, takes)]`` (empty when accepted).

        When it would have turned another gesture's enrolled takes into this one, that gesture has too few
        takes to be told apart: 2 more of each such gesture, then this one again as before. Measured
        (``benchmarks/calibration.py``, the demo model, synthetic users 8–87, one take per gesture): 13 users
        had such a refusal; the refused gesture enrolled again with 3 takes was accepted for 1 of them, this
        remedy for 13; their accuracy 0.953 as refused, 0.995 after the remedy (0.838 with the take forced in).
        Otherwise (no take answered with its label, or a new gesture too like
        another), perform it again, as differently as needed.
        """
        if self.accepted:
            return []
        others = sorted({f["label"] for f in self.flipped})
        return [*((lb, FLIP_REMEDY_TAKES) for lb in others), (self.label, max(self.n_takes, 1))]

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["nearest"] = None if self.nearest is None else {"label": self.nearest[0], "similarity": round(self.nearest[1], 4)}
        d["remedy"] = [{"label": lb, "takes": n} for lb, n in self.remedy]
        for k in ("reference", "own"):
            d[k] = None if d[k] is None else round(d[k], 4)
        return d

    def text(self) -> str:
        """One line for a terminal."""
        what = "new class" if self.new_class else "personalised"
        near = f"; closest other gesture: {self.nearest[0]} (similarity {self.nearest[1]:.2f}" if self.nearest else ""
        if near and self.own is not None:  # a number means little alone: beside it, the takes' own class
            near += f"; to {self.label}'s training gestures {self.own:.2f})"
        elif near:  # a new gesture: beside it, how alike the model's own two closest gestures are
            near += f"; the model's two closest gestures: {self.reference:.2f})" if self.reference is not None else ")"
        if not self.accepted:
            return f"{self.label}: refused ({self.reason}){near}; {self.next_text()}"
        rej = f", {len(self.rejected)} doubtful (answered {', '.join(r['answered'] for r in self.rejected)})" if self.rejected else ""
        held = f" ({self.total} in all)" if self.total > self.kept else ""
        return f"{self.label}: {what}, {self.kept} take(s) enrolled{held}{rej}{near}"


class EnrolledHead:
    """The decision rule of a runtime with a user state (see the module's docstring).

    Args:
        head_weight, head_bias: the bundle's head ``[K, D]``, ``[K]`` (for the enrollment checks; the live path
            passes the runtime's, perhaps adapted, logits to :meth:`decide`).
        prototypes: the bundle's class prototypes ``[K, D]``.
        labels: all labels, the bundle's first.
        takes: enrolled embeddings ``[M, D]`` (any norm) and their classes ``[M]`` (indices into ``labels``).
        scale: softmax scale of the cosine classifier.
        windows: the takes' windows ``[M, C, T]`` and ``templates`` the bundle's: both given, the template rule.
    """

    def __init__(self, head_weight: np.ndarray, head_bias: np.ndarray, prototypes: np.ndarray, labels: list[str],
                 takes: np.ndarray, classes: np.ndarray, scale: float, windows: np.ndarray | None = None,
                 templates: BundleTemplates | None = None):  # fmt: skip
        self.W, self.b = np.asarray(head_weight, np.float32), np.asarray(head_bias, np.float32)
        self.K, self.L = len(self.b), len(labels)
        self.labels = list(labels)
        self.source = _unit(prototypes)
        self.takes = _unit(takes.reshape(-1, self.source.shape[1]))
        self.classes = np.asarray(classes, np.int64).reshape(-1)
        self.scale = float(scale)
        # one matrix product gives the similarity to every prototype: the bundle's K, then the M takes
        self._protos = np.concatenate([self.source, self.takes]).T.copy()
        self._owner = np.concatenate([np.arange(self.K), self.classes])
        self.templates = templates if windows is not None and len(windows) == len(self.classes) else None
        if self.templates is not None:
            assert windows is not None
            # per class: the user's takes where it has any, else the bundle's typical performances
            own = np.isin(self.templates.classes, self.classes)
            self._tz = np.concatenate([standardise(windows), self.templates.windows[~own]])
            self._tc = np.concatenate([self.classes, self.templates.classes[~own]])

    def decide(self, e: np.ndarray, logits: np.ndarray, window: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
        """One embedding ``e [D]``, its head logits ``[K]`` and its window ``[C, T]`` (for the template rule)
        -> ``(probs [L], class, max similarity)``.

        The similarity is to the nearest prototype of the union, times ``|e|`` (the runtime's OOD score divides);
        the distance to a take of the class answered is divided by ``TAKE_DISTANCE_FACTOR``: one take is one
        performance, not a mean (an own-board model of one person, another person enrolled with one take each: 25
        of 151 gestures were answered `unknown` as unlike training, every one of them right). A take of another
        class vouches for nothing here (counted in full: a person whose one take of a gesture was cut short had
        that gesture answered as another, confidently, 13 % of their gestures, when every take counted half).
        """
        r = e @ self._protos
        probs, k = self._decide(e, r, logits, window)
        n = max(float(np.sqrt(e @ e)), 1e-12)
        far = 1.0 - r / n  # the runtime's out-of-distribution score against each prototype and take
        far[self.K :][self.classes == k] /= TAKE_DISTANCE_FACTOR
        return probs, k, (1.0 - float(far.min())) * n

    def _decide(self, e: np.ndarray, r: np.ndarray, logits: np.ndarray, window: np.ndarray | None
                ) -> tuple[np.ndarray, int]:  # fmt: skip
        """:meth:`decide`'s answer from the similarities ``r [K + M]`` to the prototypes and takes."""
        best = int(r.argmax())
        if self.templates is not None and window is not None:
            d = dtw_distances(standardise(window), self._tz)
            best = int(d.argmin())
            if best < len(self.classes):  # nearer one of the user's takes than the other classes' templates
                score = np.full(self.L, float(logits.max()), np.float64)
                score[: self.K] = logits
                dc = np.full(self.L, np.inf)
                np.minimum.at(dc, self._tc, d)
                score -= TEMPLATE_WEIGHT * np.where(np.isfinite(dc), dc, dc[np.isfinite(dc)].max()) / self.templates.scale
                z = np.exp(score - score.max())
                return (z / z.sum()).astype(np.float32), int(z.argmax())
            best = 0  # nearer a template of a class the user did not enroll: the head decides
        if best < self.K:  # nearest to what the model was trained on: the head decides, as without enrollment
            z = np.exp(logits - logits.max())
            probs = np.zeros(self.L, np.float32)
            probs[: self.K] = z / z.sum()
            return probs, int(z.argmax())
        scores = np.full(self.L, -np.inf, np.float32)
        np.maximum.at(scores, self._owner, r)
        scores = scores / max(float(np.sqrt(e @ e)), 1e-12)
        s = np.where(np.isfinite(scores), np.exp(self.scale * (scores - scores.max())), 0.0)
        return (s / s.sum()).astype(np.float32), int(self._owner[best])

    def predict(self, e: np.ndarray, windows: np.ndarray | None = None) -> np.ndarray:
        """Labels (indices) of embeddings ``e [N, D]`` (and their windows ``[N, C, T]``) with the bundle's head."""
        e = np.asarray(e, np.float32)
        w = [None] * len(e) if windows is None else list(windows)
        return np.array([self.decide(x, x @ self.W.T + self.b, wi)[1] for x, wi in zip(e, w, strict=True)], np.int64)


class UserState:
    """One user's enrolled takes for one bundle: what ``edgessl enroll`` writes and ``run --state`` reads.

    Args:
        checksum: the bundle's (:attr:`~edgessl.edge_runtime.bundle.Bundle.checksum`).
        bundle_labels: the bundle's labels.
        new_labels: classes the user added, in order (their indices follow the bundle's).
        takes: enrolled embeddings ``[M, D]``; ``classes [M]`` their class indices.
        windows: the takes' windows ``[M, C, T]`` (bundle units), or None (a version 1 state: embeddings only).
        segmentation: how ``run`` cuts this user's gestures from the stream: None or ``"default"`` (the bundle's
            segmentation), ``"gentle"`` (:func:`edgessl.segmenter.profile`: for slow or small gestures, chosen by
            ``edgessl enroll`` with :func:`edgessl.segmenter.choose_segmentation`).
        mounting: ``[3, 3]``, how the user's board is turned from the training data's axes (``model = mounting
            @ board``; :mod:`edgessl.edge_runtime.mounting`), applied to every window before the model; None: as in
            training. The takes' ``windows`` are kept in the training data's axes.
    """

    def __init__(self, checksum: str, bundle_labels: list[str], new_labels: list[str] | None = None,
                 takes: np.ndarray | None = None, classes: np.ndarray | None = None, dim: int | None = None,
                 windows: np.ndarray | None = None, segmentation: str | None = None,
                 mounting: np.ndarray | None = None):  # fmt: skip
        if segmentation not in (None, *PROFILES):
            raise ValueError(f"unknown segmentation profile {segmentation!r}; expected one of {', '.join(PROFILES)}")
        self.segmentation = None if segmentation == "default" else segmentation
        self.checksum = checksum
        self.bundle_labels = list(bundle_labels)
        self.new_labels = list(new_labels or [])
        d = dim if dim is not None else (takes.shape[1] if takes is not None else 0)
        self.takes = np.zeros((0, d), np.float32) if takes is None else np.asarray(takes, np.float32)
        self.classes = np.zeros(0, np.int64) if classes is None else np.asarray(classes, np.int64)
        self.windows = None if windows is None else np.asarray(windows, np.float32)
        self.mounting = None if mounting is None else np.asarray(mounting, np.float32)

    @property
    def labels(self) -> list[str]:
        return [*self.bundle_labels, *self.new_labels]

    def counts(self) -> dict[str, int]:
        """Enrolled takes per class (classes without any left out)."""
        n = np.bincount(self.classes, minlength=len(self.labels))
        return {lb: int(c) for lb, c in zip(self.labels, n, strict=True) if c}

    def head(self, W: np.ndarray, b: np.ndarray, prototypes: np.ndarray, templates: BundleTemplates | None = None
             ) -> EnrolledHead:  # fmt: skip
        return EnrolledHead(W, b, prototypes, self.labels, self.takes, self.classes, prototype_scale(prototypes),
                            self.windows, templates)  # fmt: skip

    # -- enrollment -----------------------------------------------------------------------------------
    def enroll(self, label: str, embeddings: np.ndarray, W: np.ndarray, b: np.ndarray, prototypes: np.ndarray,
               *, windows: np.ndarray | None = None, templates: BundleTemplates | None = None,
               too_close: float = TOO_CLOSE) -> EnrollReport:  # fmt: skip
        """Add ``embeddings [N, D]`` (the takes of ``label``) if they pass the guards; the state changes only then.

        Args:
            W, b, prototypes: the bundle's head and class prototypes.
            windows: the takes' windows ``[N, C, T]``; with ``templates`` (the bundle's), the template rule decides.
            too_close: a new class whose takes' mean is at least this similar to another class is refused.
        """
        e = _unit(np.asarray(embeddings, np.float32).reshape(len(embeddings), -1))
        if len(e) == 0:
            raise ValueError(f"no takes to enroll for {label!r}")
        if self.takes.shape[1] == 0:
            self.takes = np.zeros((0, e.shape[1]), np.float32)
        if e.shape[1] != self.takes.shape[1]:
            raise ValueError(f"takes of {e.shape[1]} features; this state holds {self.takes.shape[1]}")
        new = label not in self.labels
        labels = [*self.labels, label] if new else self.labels
        c = labels.index(label)
        report = EnrollReport(label, new, accepted=False, kept=0, n_takes=len(e))
        # how close the takes sit to every other class (its bundle prototype and its enrolled takes)
        mean = _unit(e.mean(0))
        protos = np.concatenate([_unit(prototypes), self.takes])
        owner = np.concatenate([np.arange(len(b)), self.classes])
        sims = protos @ mean
        other = owner != c
        i = -1
        if other.any():
            i = int(np.flatnonzero(other)[sims[other].argmax()])
            report.nearest = (labels[owner[i]], float(sims[i]))
        p = _unit(prototypes)
        closest = float((p @ p.T)[~np.eye(len(p), dtype=bool)].max()) if len(p) > 1 else 1.0
        report.reference = closest if len(p) > 1 else None
        if c < len(p):  # personalising a bundle class: how like its training gestures the takes are
            report.own = float(p[c] @ mean)
            if report.nearest is not None and round(report.nearest[1], 2) > round(report.own, 2):  # as printed
                # information, not a warning: a take the enrolled rule would answer wrongly is refused below (the
                # actionable guard); on correct takes of new users this fired for half the gestures (walkthrough)
                if i >= len(b):  # nearest to the user's own takes of another gesture
                    report.notes.append(f"your {label} is close to your {report.nearest[0]} ({report.nearest[1]:.2f}; "
                                        f"to the training data's {label} {report.own:.2f}); only if `run` confuses "
                                        "the two: enroll 2 more takes of each into the same --state")  # fmt: skip
                else:  # a person's own way of making it (common for a new user): what enrollment is for
                    report.differs = True
                    report.notes.append(f"your {label} differs from the training data's: closer to its "
                                        f"{report.nearest[0]} ({report.nearest[1]:.2f}) than to its {label} "
                                        f"({report.own:.2f}); this enrollment teaches the model yours")  # fmt: skip
        if new and report.nearest is not None:
            if report.nearest[1] >= too_close:
                report.guard = "too_close"
                report.reason = (f"its takes are as similar to {report.nearest[0]} ({report.nearest[1]:.3f}) as "
                                 f"performances of one class (>= {too_close}); perform it more differently")  # fmt: skip
                return report
            if report.nearest[1] > closest:
                report.warnings.append(f"{label} is closer to {report.nearest[0]} (similarity {report.nearest[1]:.2f}) "
                                       f"than the model's two closest classes are ({closest:.2f}); expect confusions")  # fmt: skip
        # each take is answered with its label by the new rule (leaving it out when there are others)
        keep = np.ones(len(e), bool)
        all_takes = np.concatenate([self.takes, e])
        all_classes = np.concatenate([self.classes, np.full(len(e), c)])
        m0 = len(self.takes)
        # the windows are kept while every take has one (a version 1 state has none: embeddings only)
        w_new = None if windows is None else np.asarray(windows, np.float32).reshape(len(e), *np.shape(windows)[-2:])
        all_w = w_new if m0 == 0 else (np.concatenate([self.windows, w_new])
                                       if self.windows is not None and w_new is not None else None)  # fmt: skip
        scale = prototype_scale(prototypes)

        def rule(keep_: np.ndarray, takes_: np.ndarray, classes_: np.ndarray, w_: np.ndarray | None) -> EnrolledHead:
            return EnrolledHead(W, b, prototypes, labels, takes_[keep_], classes_[keep_], scale,
                                None if w_ is None else w_[keep_], templates)  # fmt: skip

        for i in range(len(e)):
            drop = np.ones(len(all_takes), bool)
            if len(e) > 1:
                drop[m0 + i] = False
            k = int(rule(drop, all_takes, all_classes, all_w).predict(e[i : i + 1], None if w_new is None else w_new[i : i + 1])[0])
            if k != c:
                keep[i] = False
                report.rejected.append({"take": i + 1, "answered": labels[k], "similarity": round(float(e[i] @ mean), 4)})
        if not keep.any():
            report.guard = "none_answered"
            report.reason = (f"none of its {len(e)} takes is answered {label} by the enrolled model (they look like "
                             f"{', '.join(sorted({r['answered'] for r in report.rejected}))}); perform it again")  # fmt: skip
            return report
        if report.rejected:  # doubtful takes are kept (dropping them measured worse on new users), and said so
            report.warnings.append(f"take(s) {', '.join(str(r['take']) for r in report.rejected)} of {label} look like "
                                   f"{', '.join(r['answered'] for r in report.rejected)} to the enrolled model")  # fmt: skip
            keep[:] = True
        # other enrolled takes (each left out) must not turn wrong
        cand_takes = np.concatenate([self.takes, e[keep]])
        cand_classes = np.concatenate([self.classes, np.full(int(keep.sum()), c)])
        cand_w = None if all_w is None else all_w[np.concatenate([np.ones(m0, bool), keep])]
        for j in range(m0):
            mask = np.arange(m0) != j
            before = rule(mask, self.takes, self.classes, None if all_w is None else all_w[:m0])
            after = rule(np.arange(len(cand_takes)) != j, cand_takes, cand_classes, cand_w)
            t, tw = self.takes[j : j + 1], None if all_w is None else all_w[j : j + 1]
            was, now = int(before.predict(t, tw)[0]), int(after.predict(t, tw)[0])
            if was == self.classes[j] and now != was:
                report.flipped.append({"label": labels[was], "answered": labels[now]})
        if report.flipped:
            report.guard = "would_turn"
            turned = ", ".join(sorted({f["label"] for f in report.flipped}))
            report.reason = (f"it would turn {len(report.flipped)} enrolled take(s) of {turned} into {label}: too few "
                             f"takes of {turned} to tell them from {label}")  # fmt: skip
            return report
        if new:
            self.new_labels.append(label)
        self.takes, self.classes, self.windows = cand_takes, cand_classes, cand_w
        report.accepted, report.kept = True, int(keep.sum())
        report.total = int((self.classes == self.labels.index(label)).sum())
        return report

    # -- files ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write to exactly ``path``, atomically (a temporary file in the same folder, then a rename)."""
        save_npz_atomic(path, format=np.array(STATE_FORMAT), version=np.array(STATE_VERSION if self.mounting is not None else VERSION_WITHOUT_MOUNTING),
                        bundle=np.array(self.checksum), bundle_labels=np.array(self.bundle_labels, dtype=str),
                        new_labels=np.array(self.new_labels, dtype=str), takes=self.takes,
                        classes=self.classes, **({} if self.windows is None else {"windows": self.windows}),
                        **({} if self.segmentation is None else {"segmentation": np.array(self.segmentation)}),
                        **({} if self.mounting is None else {"mounting": self.mounting}))  # fmt: skip

    @classmethod
    def load(cls, path: str | Path, checksum: str | None = None) -> UserState:
        """Read a state written by :meth:`save`; with ``checksum``, refuse one of another bundle.

        Raises:
            StateMismatch: not a user state, a newer version, damaged, or another bundle's.
            FileNotFoundError: no such file.
        """
        try:
            with open(path, "rb") as f:
                z = np.load(f, allow_pickle=False)
                if not isinstance(z, np.lib.npyio.NpzFile) or "format" not in z.files or str(z["format"]) != STATE_FORMAT:
                    raise StateMismatch(f"{path}: not a user state (expected an .npz written by edgessl enroll)")
                if int(z["version"]) > STATE_VERSION:
                    raise StateMismatch(f"{path}: user state version {int(z['version'])} is newer than this runtime "
                                        f"reads ({STATE_VERSION}); upgrade edgessl")  # fmt: skip
                st = cls(str(z["bundle"]), [str(s) for s in z["bundle_labels"]], [str(s) for s in z["new_labels"]],
                         z["takes"].astype(np.float32), z["classes"].astype(np.int64),
                         windows=z["windows"].astype(np.float32) if "windows" in z.files else None,
                         segmentation=str(z["segmentation"]) if "segmentation" in z.files else None,
                         mounting=z["mounting"].astype(np.float32) if "mounting" in z.files else None)  # fmt: skip
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{path}: no user state there (a new user enrolls first: GestureRuntime.enroll, "
                                    "then user_state.save(path); or edgessl enroll)") from e  # fmt: skip
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            if isinstance(e, StateMismatch):
                raise
            raise StateMismatch(f"{path}: not a readable user state, damaged or truncated ({npz_load_text(e)}); enroll "
                                "again to write a new one") from e  # fmt: skip
        if st.takes.ndim != 2 or len(st.takes) != len(st.classes) or (len(st.classes) and
                                                                      not 0 <= st.classes.min() <= st.classes.max() < len(st.labels)):  # fmt: skip
            raise StateMismatch(f"{path}: damaged user state ({len(st.takes)} takes, {len(st.classes)} classes)")
        if st.windows is not None and (st.windows.ndim != 3 or len(st.windows) != len(st.takes)):
            raise StateMismatch(f"{path}: damaged user state ({len(st.takes)} takes, windows {st.windows.shape})")
        if st.mounting is not None and (st.mounting.shape != (3, 3) or not np.all(np.isfinite(st.mounting))):
            raise StateMismatch(f"{path}: damaged user state (mounting of shape {st.mounting.shape})")
        if checksum is not None and st.checksum != checksum:
            err = StateMismatch(f"{path}: user state of another bundle (checksum {st.checksum[:12]}…; this bundle "
                                f"{checksum[:12]}…; the sha256 of each bundle's manifest); after a model update, carry "
                                f"its takes into a new state file (edgessl enroll BUNDLE --from {path} --state NEW, or "
                                f"GestureRuntime.carry_over then user_state.save(NEW)), or enroll again, or move "
                                f"{Path(path).name} aside first")  # fmt: skip
            err.checksums = (st.checksum, checksum)
            raise err
        return st
