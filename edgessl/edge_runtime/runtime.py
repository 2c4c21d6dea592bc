"""``GestureRuntime``: open a bundle, classify windows, turn a stream into gesture events.

numpy + onnxruntime only (never torch, never scipy on this path). The int8 encoder runs in
onnxruntime; the small float head runs in numpy, so on-device adaptation can change it.

Decisions a user can trust:
* per-class probabilities, smoothed over consecutive windows (sliding mode);
* an ``unknown`` answer when the confidence is below a threshold or the embedding is far from every
  class prototype stored in the bundle (out-of-distribution score = 1 − max cosine similarity);
* a consecutive-hits rule and post-detection suppression (as in the TFLite Micro magic-wand example), so
  a gesture is reported once, with its start and end time.

Streams in the field have holes (see :meth:`GestureRuntime.gap` and :meth:`GestureRuntime.feed`): a short gap
is bridged by interpolation (the windows that cover it are flagged ``filled_gap``), a long one restarts the
windows, and a new timeline (a device clock that restarted or jumped, timestamps that go backwards) also
resets the smoothing and the post-detection suppression, so events resume at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgessl import preprocess
from edgessl.edge_runtime.adapt import AdaptContext, Adapter, InputMoments, SslHead
from edgessl.edge_runtime.bundle import ENCODER_FP32, ENCODER_INT8, Bundle, open_bundle
from edgessl.edge_runtime.enroll import BundleTemplates, EnrolledHead, EnrollReport, StateMismatch, UserState
from edgessl.edge_runtime.mounting import MountFit, fit_mounting, mount_matrix
from edgessl.edge_runtime.stream import ModelInput, StreamWindower
from edgessl.segmenter import SegmentParams, motion_rows, profile
from edgessl.units import UnitWatch, g_channels

UNKNOWN = "unknown"


# the stats of a segment bundle: gestures answered 'unknown', by reason, and movements never classified
UNFAMILIAR_MIN_GESTURES = 20  # gestures decided before their share of `unknown` answers is judged
UNFAMILIAR_SHARE = 0.15  # a share above this and 3x the calibrated one: a person (or grip, mounting) the model lacks
UNKNOWN_REASONS = ("unknown_noise", "unknown_low_confidence", "unknown_out_of_distribution")
MOVEMENTS_NOT_CLASSIFIED = ("movements_too_short", "movements_too_long", "movements_cut_off")
ENROLLED_ROUGHNESS_MARGIN = 2.0  # an enrolled user's noise gate: at least this times their roughest take


def label_problem(label: str, known: list[str]) -> str:
    """Why ``label`` cannot name an enrolled gesture ("" when it can): ``unknown`` is the runtime's answer for a
    rejected gesture, and ``Square`` beside ``square`` would be two classes a reader takes for one."""
    if not label.strip():
        return "an empty label; expected a gesture name"
    if label.strip().lower() == UNKNOWN:
        return f"{label!r} is the runtime's answer for a rejected gesture; expected another name"
    same = [k for k in known if k.lower() == label.lower() and k != label]
    if same:
        return (f"{label!r} differs from the model's {same[0]!r} only in case; expected {same[0]!r} (to personalise "
                "it) or a name of its own")  # fmt: skip
    return ""


@dataclasses.dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs microseconds per window
class Prediction:
    label: str
    index: int  # -1 for unknown
    confidence: float
    probs: np.ndarray
    ood_score: float
    latency_ms: float
    embedding: np.ndarray | None = None
    reason: str | None = None  # an ``unknown`` answer's: "noise", "low_confidence" or "out_of_distribution"
    roughness: float = 0.0  # edgessl.preprocess.roughness of the window (scored by segment bundles' noise gate)


@dataclasses.dataclass(frozen=True)
class Event:
    """A reported gesture (one per gesture)."""

    t: float  # device time of the decision (end of the last window that voted)
    label: str
    confidence: float
    probs: dict[str, float]
    latency_ms: float
    window_start: float
    window_end: float
    filled_gap: bool = False
    ood_score: float = 0.0
    reason: str | None = None  # an ``unknown`` answer's: "noise", "low_confidence" or "out_of_distribution"
    roughness: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["reason"] is None:  # only an ``unknown`` answer has one
            del d["reason"]
        d["probs"] = {k: round(v, 4) for k, v in self.probs.items()}
        for k in ("t", "confidence", "latency_ms", "window_start", "window_end", "ood_score", "roughness"):
            d[k] = round(d[k], 4)
        return d


@dataclasses.dataclass(frozen=True)
class DecisionConfig:
    """How windows become events. Defaults suit 100 Hz gestures."""

    confidence: float | None = None  # default: the bundle's calibrated gate (0.5 for bundles without one)
    ood_threshold: float | None = None  # default: the bundle's calibrated gate (none for bundles without one)
    # segment bundles: a cut segment rougher than this is noise or vibration, not a movement (answered
    # 'unknown', reason "noise"); default: the bundle's calibrated gate (none for bundles without one)
    roughness_threshold: float | None = None
    # sliding mode only (segment bundles answer each cut gesture once): windows averaged, and consecutive
    # smoothed windows agreeing before an event. 1 and 1: activities (2.56 s windows at a 0.64 s stride) are named
    # 1.7 s after they begin instead of 2.9 s, and the answer shown is right over 0.79-0.83 of the annotated time
    # instead of 0.71-0.77 (benchmarks/activities.py: held-out and test people), at 1.35x the changes of
    # answer. Gestures in sliding windows (`export --input-mode sliding`, the TFLite magic-wand way) want
    # smoothing=3, hits=2 against single-window false events.
    smoothing: int = 1
    hits: int = 1
    suppression_s: float = 1.0  # no new event this long after one
    report_unknown: bool = False


def _softmax(logits: list[float]) -> tuple[np.ndarray, int, float]:
    """``(probs [K] float32, argmax, its probability)`` of a few logits: over a handful of classes, cheaper on
    Python floats than as a chain of small numpy calls (the per-window path)."""
    m = max(logits)
    k = logits.index(m)
    z = [math.exp(v - m) for v in logits]
    inv = 1.0 / sum(z)
    return np.array(z, np.float32) * np.float32(inv), k, z[k] * inv


GPU_HINT = ("for the GPU on a Jetson, install NVIDIA's onnxruntime-gpu build in place of onnxruntime "
            "(docs/deploy.md, Jetson)")  # fmt: skip


def _short(providers: list[str]) -> str:
    """Execution providers as users type them (``CUDA, CPU``)."""
    return ", ".join(p.removesuffix("ExecutionProvider") for p in providers)


def provider_names(names: list[str]) -> list[str]:
    """onnxruntime's names of execution providers given as a user types them: ``TensorRT``, ``cuda``,
    ``CUDAExecutionProvider`` (any case, with or without the suffix).

    Raises:
        ValueError: a name onnxruntime does not know, naming it and the known ones.
    """
    known = {p.lower(): p for p in ort.get_all_providers()}
    out = []
    for name in names:
        key = name.strip().lower()
        p = known.get(key) or known.get(key + "executionprovider")
        if p is None:
            raise ValueError(f"{name.strip()!r} is not an onnxruntime execution provider; expected some of: "
                             f"{_short(ort.get_all_providers())}")  # fmt: skip
        if p not in out:
            out.append(p)
    return out


def _make_session(model: bytes, providers: list[str] | None, threads: int, probe: np.ndarray) -> tuple[ort.InferenceSession, list[str]]:
    """A session on the requested providers, checked with a real inference; CPU fallback with a warning."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads == 1:
        # with one thread, spin-waiting buys nothing and costs CPU and latency on a busy Pi
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    wanted = provider_names(providers or ["CPU"])
    available = ort.get_available_providers()
    usable = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:  # one line: what was asked, what this onnxruntime has, what runs, how to get the rest
        runs = _short([p for p in usable if p != "CPUExecutionProvider"]) or "the CPU"
        gpu = any(p.startswith(("Tensorrt", "CUDA")) for p in missing)
        warnings.warn(f"execution provider(s) {_short(missing)} not in this onnxruntime ({ort.__version__}, which "
                      f"offers {_short(available)}): running on {runs}" + (f"; {GPU_HINT}" if gpu else ""),
                      stacklevel=3)  # fmt: skip
    if usable and usable != ["CPUExecutionProvider"]:
        try:
            sess = ort.InferenceSession(model, so, providers=[*usable, "CPUExecutionProvider"])
            sess.run(None, {sess.get_inputs()[0].name: probe})
            return sess, sess.get_providers()
        except Exception as e:  # noqa: BLE001 - any provider failure falls back to the CPU
            warnings.warn(f"providers {usable} failed a test inference ({e}); falling back to CPU", stacklevel=3)
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    sess.run(None, {sess.get_inputs()[0].name: probe})
    return sess, sess.get_providers()


class InputWarning(UserWarning):
    """What the first seconds fed to :meth:`GestureRuntime.feed` show wrong (an accelerometer not in g,
    timestamps not in seconds): every answer would be meaningless, and nothing else would say why."""


# timestamps fed whose median step puts the sample rate outside this range are not seconds
CLOCK_RATE_HZ = (5.0, 5000.0)


def clock_problem_text(dt: float, rate_hz: float) -> str | None:
    """What is wrong with timestamps that advance ``dt`` per sample (median), or None."""
    hz = 1.0 / dt if dt > 0 else math.inf
    if CLOCK_RATE_HZ[0] <= hz <= CLOCK_RATE_HZ[1]:
        return None
    scale = next((f"; they look like {unit}: divide by {k:g}" for unit, k in (("milliseconds", 1e3), ("microseconds", 1e6))
                  if CLOCK_RATE_HZ[0] <= k / dt <= CLOCK_RATE_HZ[1]), "")  # fmt: skip
    return (f"timestamps advance {dt:.4g} per sample: read as seconds, {hz:.4g} samples a second, where the model "
            f"was trained at {rate_hz:g} Hz; feed() takes seconds{scale}")  # fmt: skip


class GestureRuntime:
    """Live gesture recognition from a bundle.

    Args:
        bundle_path: an ``.essl`` bundle.
        providers: onnxruntime execution providers in order of preference (default CPU).
        threads: intra-op threads for onnxruntime (1 suits a Pi running other work).
        decision: thresholds, smoothing and suppression.
        adapter: an on-device adaptation method (see :mod:`edgessl.edge_runtime.adapt`), or None; the
            runtime hands it an :class:`~edgessl.edge_runtime.adapt.AdaptContext` (:meth:`adapt_context`).
        precision: ``"int8"`` (the deployed encoder) or ``"fp32"`` (the reference, if the bundle kept it).
        max_fill_s: stream gaps up to this long are bridged by linear interpolation (windows over one are
            flagged ``filled_gap``) instead of restarting the windows: at 100 Hz with 10-sample frames, the
            default 0.25 s bridges one or two lost frames, which a noisy link loses every second or so.
        user_state: a user's enrollment (:class:`~edgessl.edge_runtime.enroll.UserState` or the path of one
            written by ``edgessl enroll``): its classes follow the bundle's in :attr:`labels` and its takes
            join the decisions (see :mod:`edgessl.edge_runtime.enroll`). A state of another bundle is refused.

    Attributes:
        stats: counters of what the stream did to the windows: ``"filled_gaps"`` (holes in the timestamps
            bridged), ``"window_resets"`` (longer gaps, told by :meth:`gap` or seen in the timestamps),
            ``"timeline_resets"`` (new timelines, from :meth:`gap` or :meth:`feed`), ``"backwards_timestamps"`` (of those, found by :meth:`feed`),
            ``"jittered_timestamps"`` (small steps back put in order, :meth:`feed`); ``"answered"`` (segment
            bundles: the gestures answered with a label, for :meth:`unknown_share`); and the gestures
            answered ``unknown``, by reason: ``"unknown_noise"``, ``"unknown_low_confidence"``,
            ``"unknown_out_of_distribution"`` (a sliding-window bundle: the windows whose smoothed answer the
            gates held back, the last two, present from the start); and the movements a segment bundle never classifies (its
            segmenter's): ``"movements_too_short"`` (under ``min_duration_s``: a bump, a flick),
            ``"movements_too_long"`` (``max_duration_s`` or longer: shaking, continuous motion) and
            ``"movements_cut_off"`` (under way when the stream started or restarted after a gap: its start
            unseen, not a whole gesture). All are present (0) from the start.
        input_problems: what the first 2 s fed showed wrong (accelerometer channels not in g, timestamps not
            in seconds), each also an :class:`InputWarning` once; empty when the input looks right.
        roughness_threshold: the noise gate of segment bundles (None: no gate); with a user state, at least
            twice the roughness of their roughest take (an enrolled gesture is never noise to them).
    """

    def __init__(self, bundle_path: str | Path, *, providers: list[str] | None = None, threads: int = 1,
                 decision: DecisionConfig = DecisionConfig(), adapter: Adapter | None = None, precision: str = "int8",
                 max_fill_s: float = preprocess.MAX_FILL_S, user_state: str | Path | UserState | None = None):  # fmt: skip
        self.bundle: Bundle = open_bundle(bundle_path)
        m = self.bundle.manifest
        self.labels = self.bundle.labels
        self.channels = self.bundle.channels
        self.window = self.bundle.window
        self._window_shape = (len(self.channels), self.window)
        self.rate_hz = float(self.bundle.rate_hz or 100.0)
        self.preprocess = preprocess.PreprocessSpec.from_dict(m["preprocessing"])
        # bundles whose encoder graph starts with the preprocessing (schema 1 bundles without the key do not)
        self._numpy_preprocess = not m.get("preprocessing_in_graph", False)
        probe = np.zeros((1, len(self.channels), self.window), np.float32)
        if precision not in ("int8", "fp32"):
            raise ValueError(f"precision must be int8 or fp32; got {precision!r}")
        member = ENCODER_INT8 if precision == "int8" else ENCODER_FP32
        if member not in self.bundle.members:
            raise ValueError(f"{bundle_path}: no {member} in this bundle (export with --keep-fp32 for fp32)")
        self.session, self.providers = _make_session(self.bundle.members[member], providers, threads, probe)
        self._input = self.session.get_inputs()[0].name
        p = self.bundle.adaptation()
        self.params = p
        self.W, self.b = p["head_weight"].astype(np.float32), p["head_bias"].astype(np.float32)
        proto = p["prototypes"].astype(np.float32)
        self.prototypes = proto / np.maximum(np.linalg.norm(proto, axis=1, keepdims=True), 1e-12)
        self._n_classes = len(self.b)
        self._b_list = self.b.astype(np.float64).tolist()
        self._head_and_protos = np.ascontiguousarray(np.concatenate([self.W.T, self.prototypes.T], axis=1))
        rough = decision.roughness_threshold if decision.roughness_threshold is not None else m.get("roughness_threshold")
        # no gate (and no cost) for sliding bundles, older bundles and an infinite threshold
        self.roughness_threshold = (float(rough) if rough is not None and math.isfinite(rough)
                                    and m["input_mode"] == "segment" else None)  # fmt: skip
        self._bundle_roughness = self.roughness_threshold if decision.roughness_threshold is None else None
        self.user_state: UserState | None = None
        self._enrolled: EnrolledHead | None = None
        self._mount: np.ndarray | None = None  # [C, C]: the user state's mounting on the channels (None: none)
        if user_state is not None:
            self.load_user_state(user_state)
        # one window at a time on the CPU (the live path): inputs and outputs bound once to fixed buffers,
        # which spares onnxruntime's per-call argument handling (about a fifth of a 63-sample window's cost)
        self._io = None
        if self.providers == ["CPUExecutionProvider"]:
            out = self.session.get_outputs()[0]
            self._in_buf = np.zeros_like(probe)
            self._out_buf = np.zeros((1, self.W.shape[1]), np.float32)
            self._io = self.session.io_binding()
            self._io.bind_input(self._input, "cpu", 0, np.float32, list(self._in_buf.shape), self._in_buf.ctypes.data)
            self._io.bind_output(out.name, "cpu", 0, np.float32, list(self._out_buf.shape), self._out_buf.ctypes.data)
            # the binding's own C entry point: the Python wrapper's per-call checks concern WebGPU graph
            # capture only (not used on the CPU) and cost about a tenth of a small model's run
            sess_c, io_c = getattr(self.session, "_sess", None), getattr(self._io, "_iobinding", None)
            self._run_args: tuple[Any, ...]
            if sess_c is not None and io_c is not None and hasattr(sess_c, "run_with_iobinding"):
                self._run_bound, self._run_args = sess_c.run_with_iobinding, (io_c, None)
            else:
                self._run_bound, self._run_args = self.session.run_with_iobinding, (self._io,)
        self.decision = decision
        self.ood_threshold = decision.ood_threshold if decision.ood_threshold is not None else m.get("ood_threshold")
        self.confidence = float(decision.confidence if decision.confidence is not None
                                else m.get("confidence_threshold", 0.5))  # fmt: skip
        self._max_fill_s = max_fill_s
        self.windower = self._make_windower()
        self.adapter = adapter
        self.restored_state = False  # an adapter's state_path was restored (see Adapter.restore)
        if adapter is not None:
            adapter.attach(self.adapt_context())
            self.restored_state = adapter.restore()
        self._recent: deque = deque(maxlen=max(1, decision.smoothing))
        self._streak_label: int | None = None
        self._streak = 0
        self._streak_start = 0.0
        self._suppress_until = -np.inf
        self._last_t: float | None = None  # the last timestamp fed, across gaps (time must increase)
        self.stats: Counter[str] = Counter()
        # what a reader of the counters finds even when nothing happened (a service's metrics keep their shape)
        stream = ("filled_gaps", "window_resets", "timeline_resets", "backwards_timestamps", "jittered_timestamps")
        segment = (("answered", *UNKNOWN_REASONS, *MOVEMENTS_NOT_CLASSIFIED) if m["input_mode"] == "segment" else
                   UNKNOWN_REASONS[1:])  # fmt: skip
        for k in (*stream, *segment):
            self.stats[k] = 0
        self.latencies_ms: list[float] = []
        self.input_problems: list[str] = []
        self._units = UnitWatch(self.channels, self.bundle.units, samples=max(50, int(2 * self.rate_hz)))
        self._steps: list[np.ndarray] = []  # the first timestamp steps fed, until the clock is checked
        self._clock_checked = False
        # the newest window (segment) classified and its prediction, for displays (edgessl monitor)
        self.last_prediction: tuple[ModelInput, Prediction] | None = None

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> GestureRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._io = None
        self.session = None  # type: ignore[assignment]

    def _check_open(self) -> None:
        if self.session is None:  # (feed() on a closed runtime answered nothing, silently, until a gesture ended)
            raise RuntimeError(f"{self.bundle.path}: this GestureRuntime is closed (the end of its `with` block, or "
                               "close()); open a new one")  # fmt: skip

    def adapt_context(self) -> AdaptContext:
        """What an adapter may use: the bundle's float parameters, this runtime's thresholds and encoder."""
        p = self.params
        return AdaptContext(
            bundle=self.bundle.path, checksum=self.bundle.checksum, labels=tuple(self.labels),
            units=tuple(self.bundle.units), preprocess=self.preprocess, head_weight=self.W, head_bias=self.b,
            prototypes=self.prototypes, embedding_mean=p["embedding_mean"], embedding_std=p["embedding_std"],
            ood_threshold=self.ood_threshold, embed=self.embed, ssl_head=SslHead.from_params(p),
            input_moments=InputMoments.from_params(p), segments=self.bundle.manifest["input_mode"] == "segment",
        )  # fmt: skip

    # -- enrollment (see edgessl.edge_runtime.enroll) ------------------------------------------------------
    def load_user_state(self, state: str | Path | UserState) -> UserState:
        """Decide with a user's enrollment from now on (a path is read and checked against this bundle).

        Raises:
            StateMismatch: the state is not a user state or belongs to another bundle (one line naming both).
        """
        st = state if isinstance(state, UserState) else UserState.load(state, self.bundle.checksum)
        if st.checksum != self.bundle.checksum:
            raise StateMismatch(f"user state of another bundle (checksum {st.checksum[:12]}…; {self.bundle.path} "
                                f"has {self.bundle.checksum[:12]}…)")  # fmt: skip
        self.user_state = st
        self._use_state()
        return st

    @functools.cached_property
    def templates(self) -> BundleTemplates | None:
        """The bundle's typical performances of each class (None in a bundle of an earlier version); read on
        first use (only enrollment needs them)."""
        return BundleTemplates.from_params(self.params)

    @property
    def segmentation(self) -> SegmentParams | None:
        """How gestures are cut from the stream: the bundle's segmentation, cut the user state's way (its
        ``segmentation`` profile); None for a sliding-window bundle."""
        seg = self.bundle.segmentation
        st = self.user_state
        return None if seg is None else profile(seg, st.segmentation if st is not None else None)

    def _make_windower(self) -> StreamWindower:
        return StreamWindower(len(self.channels), self.rate_hz, self.window, self.bundle.stride,
                              self.bundle.manifest["input_mode"], self.segmentation, max_fill_s=self._max_fill_s,
                              motion=motion_rows(self.bundle.units))  # fmt: skip

    def _use_state(self) -> None:
        st = self.user_state
        assert st is not None
        if hasattr(self, "windower") and self.segmentation is not None and self.windower.seg != self.segmentation:
            self.windower = self._make_windower()  # the user's cut (a state loaded while running: a fresh stream)
        self.labels = st.labels
        self._mount = None if st.mounting is None else mount_matrix(st.mounting, list(self.bundle.units))
        self._enrolled = st.head(self.W, self.b, self.prototypes, self.templates) if len(st.takes) else None
        if self._bundle_roughness is not None and st.windows is not None and len(st.windows):
            # a gesture the user enrolled is never noise to them (a shake is rough): the gate rises to cover
            # their takes with the margin the bundle's own gate has over its training windows (about 2x)
            takes = float(preprocess.roughness(st.windows).max())
            self.roughness_threshold = max(self._bundle_roughness, ENROLLED_ROUGHNESS_MARGIN * takes)

    def enroll(self, label: str, windows: np.ndarray) -> EnrollReport:
        """Enroll ``windows [N, C, T]`` (or one ``[C, T]``: the bundle's channels, units and window, as
        :meth:`classify` takes them) as performances of ``label``, a new class or one the bundle knows.

        The takes are embedded with the bundle's encoder (no adapter), checked by the guards of
        :meth:`UserState.enroll` and, if accepted, used at once; save with ``rt.user_state.save(path)``.

        Raises:
            ValueError: another shape, non-finite values, (a segment bundle in g) takes of which none moves, or
                a label the runtime cannot tell apart (``unknown``, empty, or another case of a known one).
        """
        x = self._checked(np.asarray(windows))
        return self._enroll(label, x if self._mount is None else np.einsum("ij,njt->nit", self._mount, x))

    def _enroll(self, label: str, x: np.ndarray) -> EnrollReport:
        """:meth:`enroll` of checked windows in the training data's axes (the mounting applied)."""
        if problem := label_problem(label, self.labels):
            raise ValueError(problem)
        g = g_channels(self.bundle.units)
        if self.bundle.segmentation is not None and g:  # a cut gesture moves; a still window is no performance
            if preprocess.is_still(x[:, g]).all():
                raise ValueError(f"none of the {len(x)} take(s) of {label!r} moves (every accelerometer axis varies "
                                 f"less than {preprocess.STILL_STD:g} g): no performance to enroll")  # fmt: skip
        if self.user_state is None:
            self.user_state = UserState(self.bundle.checksum, self.bundle.labels, dim=self.W.shape[1])
        adapter, self.adapter = self.adapter, None  # the takes are embedded as the bundle made them
        try:
            e = self.embed(x)
        finally:
            self.adapter = adapter
        report = self.user_state.enroll(label, e, self.W, self.b, self.prototypes, windows=x, templates=self.templates)
        self._use_state()
        return report

    def fit_mounting(self, takes: dict[str, np.ndarray]) -> MountFit:
        """Find how the user's board is turned from the training data's axes, from a take of each of the
        bundle's gestures (``{label: windows [N, C, T]}``, as :meth:`enroll` takes them, before enrolling them:
        ``edgessl enroll --calibrate`` calls this first), and keep the turn in the user state when it explains
        the takes far better than the mounting in use (:mod:`edgessl.edge_runtime.mounting`); from then on
        every window, and the takes enrolled after, are turned into the training data's axes.

        Raises:
            ValueError: a label the bundle does not know, windows :meth:`enroll` would refuse, or a bundle
                without an accelerometer in g.
        """
        X, y = [], []
        for label, w in takes.items():
            if label not in self.bundle.labels:
                raise ValueError(f"{label!r} is not one of the bundle's gestures ({', '.join(self.bundle.labels)}): "
                                 "a mounting is found from the gestures the model knows")  # fmt: skip
            x = self._checked(np.asarray(w))
            X.append(x)
            y += [self.bundle.labels.index(label)] * len(x)
        if not X:
            raise ValueError("no takes: a mounting is found from a take of each of the bundle's gestures")
        current = self.user_state.mounting if self.user_state is not None else None
        adapter, self.adapter = self.adapter, None  # the bundle's own head judges the turn
        try:
            fit = fit_mounting(lambda x: self.embed(x) @ self.W.T + self.b, np.concatenate(X), np.array(y),
                               list(self.bundle.units), current)  # fmt: skip
        finally:
            self.adapter = adapter
        if fit.accepted:
            if self.user_state is None:
                self.user_state = UserState(self.bundle.checksum, self.bundle.labels, dim=self.W.shape[1])
            self.user_state.mounting = fit.rotation
            self._use_state()
        return fit

    def carry_over(self, state: UserState | str | Path) -> list[EnrollReport]:
        """Enroll the takes another bundle's user state keeps (after a model update: a state is tied to its
        bundle's checksum) into this runtime's, without the user performing again: each class's takes, the
        bundle's classes first, then those the user added, through :meth:`enroll`'s guards; the state's cut
        (``segmentation``) comes along. A label this bundle knows personalises it; one it does not is a new class.

        Returns:
            One report per class, in that order (a refused one leaves the rest enrolled).

        Raises:
            ValueError: a state that kept no windows (version 1: embeddings only), of another channel count, or
                (sliding bundles) of another window length; windows of segment bundles are stretched to this
                bundle's window, as the runtime stretches a cut gesture.
            StateMismatch: not a readable user state.
        """
        old = state if isinstance(state, UserState) else UserState.load(state)
        where = "" if isinstance(state, UserState) else f"{state}: "
        if old.windows is None:
            raise ValueError(f"{where}a user state that kept no windows (written before version 2): its takes cannot "
                             "be carried to another bundle; enroll again")  # fmt: skip
        x = old.windows
        if len(x) and x.shape[1] != len(self.channels):
            raise ValueError(f"{where}takes of {x.shape[1]} channels; this bundle reads {len(self.channels)} "
                             f"({self.channels}): enroll again")  # fmt: skip
        if len(x) and x.shape[2] != self.window:
            if self.segmentation is None:
                raise ValueError(f"{where}takes of {x.shape[2]}-sample windows; this sliding-window bundle reads "
                                 f"{self.window}: enroll again")  # fmt: skip
            x = np.stack([preprocess.resample_to_length(w, self.window) for w in x]).astype(np.float32)
        if self.user_state is None:
            self.user_state = UserState(self.bundle.checksum, self.bundle.labels, dim=self.W.shape[1],
                                        segmentation=old.segmentation, mounting=old.mounting)  # fmt: skip
        else:
            if old.segmentation and not self.user_state.segmentation:
                self.user_state.segmentation = old.segmentation
            if old.mounting is not None and self.user_state.mounting is None:
                self.user_state.mounting = old.mounting
        self._use_state()
        # the kept windows are in the training data's axes already (the old state's mounting applied)
        return [self._enroll(label, self._checked(x[old.classes == c])) for c, label in enumerate(old.labels)
                if (old.classes == c).any()]  # fmt: skip

    def takes(self, recording: np.ndarray, rate_hz: float | None = None) -> np.ndarray:
        """The performances in ``recording [C, N]`` (the bundle's channels and units; a gesture made a few
        times, still between them) as :meth:`enroll` takes them: ``[S, C, T]``, cut as this runtime cuts live
        (:attr:`segmentation`, the user state's cut included) and stretched to the model's window.

        Args:
            recording: samples, channel-major.
            rate_hz: its sample rate (default the bundle's); another rate is resampled to the bundle's first.

        Raises:
            ValueError: a sliding-window bundle (its windows are fixed-length slices: give them to
                :meth:`enroll` as they are), another channel count, or non-finite samples.
        """
        from edgessl.segmenter import segment_signal

        x = np.asarray(recording, np.float32)
        if x.ndim != 2 or x.shape[0] != len(self.channels):
            raise ValueError(f"expected a recording [{len(self.channels)}, n] (channels {self.channels}); got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("recording contains NaN or inf")
        seg = self.segmentation
        if seg is None:
            raise ValueError("a sliding-window bundle has no cut performances: give enroll() windows "
                             f"[N, {len(self.channels)}, {self.window}] directly")  # fmt: skip
        if rate_hz is not None and abs(rate_hz - self.rate_hz) > 1e-6 * self.rate_hz:
            x = preprocess.resample(x, float(rate_hz), self.rate_hz).astype(np.float32)
        rows = segment_signal(x, self.rate_hz, seg, motion_rows(self.bundle.units))
        if not len(rows):
            return np.zeros((0, len(self.channels), self.window), np.float32)
        return np.stack([preprocess.resample_to_length(x[:, a:b], self.window) for a, b in rows]).astype(np.float32)

    @property
    def metadata(self) -> dict[str, Any]:
        return {"labels": self.labels, "rate_hz": self.rate_hz, "window": self.window, "stride": self.bundle.stride,
                "channels": self.channels, "units": self.bundle.units, "input_mode": self.bundle.manifest["input_mode"]}  # fmt: skip

    # -- one window ---------------------------------------------------------------------------------
    def embed(self, window: np.ndarray) -> np.ndarray:
        """``[C, T]`` or ``[N, C, T]`` raw windows (bundle units) -> embeddings ``[N, D]``."""
        x = self._checked(window)
        if self.adapter is not None:
            x = self.adapter.transform_input(x)
        if self._numpy_preprocess:
            x = preprocess.apply(self.preprocess, x).astype(np.float32, copy=False)
        if self._io is not None and x.shape[0] == 1:
            np.copyto(self._in_buf, x)
            self._run_bound(*self._run_args)
            return self._out_buf.copy()
        return self.session.run(None, {self._input: x})[0]

    def _checked(self, window: np.ndarray) -> np.ndarray:
        """``[C, T]`` or ``[N, C, T]`` as float32 ``[N, C, T]``, or ValueError naming what is wrong."""
        self._check_open()
        x = np.asarray(window, np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != self._window_shape:
            raise ValueError(f"expected a window of shape [{len(self.channels)}, {self.window}] or a batch "
                             f"[N, {len(self.channels)}, {self.window}] (channels {self.channels}); "
                             f"got {tuple(np.asarray(window).shape)}")  # fmt: skip
        if len(x) == 0:
            raise ValueError(f"empty batch of windows {x.shape}; expected [N >= 1, {len(self.channels)}, {self.window}]")
        # one float64 sum is NaN or inf exactly when an element is (it cannot overflow from float32 values)
        if not math.isfinite(x.sum(dtype=np.float64)):
            raise ValueError("window contains NaN or inf")
        return x

    def head(self, e: np.ndarray) -> np.ndarray:
        if self.adapter is not None:
            return self.adapter.logits(e)
        return e @ self.W.T + self.b

    def classify(self, window: np.ndarray) -> Prediction | list[Prediction]:
        """Classify one window ``[C, T]`` or a batch ``[N, C, T]`` (the bundle's channel order and units).

        Returns:
            A :class:`Prediction` for one window; for a batch, a list of ``N`` of them, the same as classifying
            each window in order (an adapter observes each before the next is classified).

        Raises:
            ValueError: another shape (the message gives the expected one), an empty batch, or NaN/inf values.
        """
        x = np.asarray(window)
        self._new_share(1.0)  # a caller's windows: each one new
        if x.ndim == 3:
            # the whole batch is checked before any window reaches an adapter: all or nothing
            return [self._classify_one(w) for w in self._checked(x)]
        return self._classify_one(x)

    def _new_share(self, share: float) -> None:
        """Tell the adapter the share of new samples in the windows it will observe (only when it changes: a
        classify() call is the per-window path)."""
        if self.adapter is not None and self.adapter.new_share != share:
            self.adapter.set_new_share(share)

    def _classify_one(self, window: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        if self._mount is not None:  # the user's board turned into the training data's axes
            window = self._mount @ self._checked(window)[0]
        e = self.embed(window)
        e0 = e[0]
        head_probs, src = None, None
        bias = self._b_list if self.adapter is None else self.adapter.head_bias()
        if bias is not None and self._enrolled is None:
            # one product gives the logits and the prototype similarities (the bundle's head, or an adapted
            # one that differs in its bias only)
            r = (e0 @ self._head_and_protos).tolist()
            head = r[: self._n_classes]
            probs, k, conf = _softmax([v + bb for v, bb in zip(head, bias, strict=True)])
            sim = max(r[self._n_classes :])
            if self.adapter is not None:  # the bundle's head's class, for the adapter's safeguards
                src_logits = [v + bb for v, bb in zip(head, self._b_list, strict=True)]
                src = src_logits.index(max(src_logits))
        elif self._enrolled is not None:
            # the user's enrolled takes decide with the head as adapted, without the groups of `clusters`: their
            # votes come from the head, which the takes outdo (uWave new users, 3 takes: 0.959 -> 0.953 with them)
            logits = (self.adapter.ungrouped_logits(e) if self.adapter is not None else self.head(e))[0]
            probs, k, sim = self._enrolled.decide(e0, logits, window)
            conf = float(probs[k])
            if self.adapter is not None:  # an adapter observes what its head says, not the enrolled classes
                zz = np.exp(logits - logits.max())
                head_probs = zz * (1.0 / zz.sum())
        else:
            probs, k, conf = _softmax(self.head(e)[0].tolist())
            sim = float((self.prototypes @ e0).max())
        ood = 1.0 - sim / max(math.sqrt(float(e0 @ e0)), 1e-12)
        rough = 0.0
        if self.roughness_threshold is not None:
            rough = float(preprocess.roughness(np.asarray(window).reshape(self._window_shape)))
        # the first gate that refuses names the reason: noise (not a movement at all), then the model's two
        why = ("noise" if self.roughness_threshold is not None and rough > self.roughness_threshold
               else "low_confidence" if conf < self.confidence
               else "out_of_distribution" if self.ood_threshold is not None and ood > self.ood_threshold else None)  # fmt: skip
        latency = (time.perf_counter() - t0) * 1e3
        if self.adapter is not None and why != "noise":  # noise is no one's gesture: adapters never see it
            # the score against the bundle's prototypes is the adapter's gate too (not against enrolled classes)
            self.adapter.observe(window, e, probs if head_probs is None else head_probs,
                                 ood=ood if self._enrolled is None else None, src=src)
        unknown = why is not None
        return Prediction(UNKNOWN if unknown else self.labels[k], -1 if unknown else k, conf, probs, ood, latency, e0,
                          why, rough)  # fmt: skip

    # -- a stream -----------------------------------------------------------------------------------
    def feed(self, samples: np.ndarray, timestamps: np.ndarray) -> list[Event]:
        """Push ``samples [n, C]`` with device ``timestamps [n]`` (s); returns the events they completed.

        Timestamps policy: NaN or inf is a ValueError (nothing of the call is used). A timestamp up to
        :data:`~edgessl.preprocess.JITTER_PERIODS` sample periods (at the model's rate) before the one before it is a reader's clock
        jitter (an equal one too): it is moved just after it and counted in ``stats["jittered_timestamps"]``. One
        further back starts a new timeline, as :meth:`gap` with ``timeline_reset=True`` does, and is
        counted in ``stats["backwards_timestamps"]``: a device whose clock restarted is back in business at once.
        Jumps forward are gaps (:meth:`gap`'s rules, by their length).

        Raises:
            ValueError: shapes that disagree, or non-finite samples or timestamps.
            RuntimeError: the runtime was closed.
        """
        self._check_open()
        x = np.asarray(samples, np.float32)
        t = np.asarray(timestamps, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.channels):
            raise ValueError(f"expected samples of shape [n, {len(self.channels)}] (channels {self.channels}); "
                             f"got {x.shape}")  # fmt: skip
        if t.ndim != 1 or len(t) != len(x):
            raise ValueError(f"{len(x)} samples but timestamps of shape {t.shape}; expected [{len(x)}]")
        if not np.all(np.isfinite(t)):
            i = int(np.flatnonzero(~np.isfinite(t))[0])
            raise ValueError(f"timestamps must be finite seconds; got {t[i]} at index {i}")
        if not np.all(np.isfinite(x)):
            i = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            raise ValueError(f"samples must be finite; sample {i} holds NaN or inf (reject it before feeding)")
        if len(t) == 0:
            return []
        prev = np.concatenate([[self._last_t if self._last_t is not None else -np.inf], t[:-1]])
        back = np.flatnonzero(t <= prev)
        if len(back):
            t, prev = self._unjitter(t, int(back[0]))
            back = np.flatnonzero(t <= prev)
        if not (self._units.done and self._clock_checked):  # the first 2 s only
            self._check_input(x, t - prev)
        events: list[Event] = []
        start = 0
        for cut in [*back.tolist(), len(t)]:
            if cut > start:
                events += self._feed_increasing(x[start:cut], t[start:cut])
            if cut < len(t):
                self.stats["backwards_timestamps"] += 1
                self._new_timeline()
            start = cut
        return events

    def _unjitter(self, t: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
        """``t`` with steps back of at most :data:`~edgessl.preprocess.JITTER_PERIODS` sample periods (a reader that stamps samples
        from its own clock: a walkthrough's Python I2C loop lost 11-19 % of its gestures to the new timelines
        they started) put just after the sample before (counted in ``stats["jittered_timestamps"]``); longer
        steps back stay (a clock that restarted). ``first``: the first that does not increase. Returns it and the
        timestamps before each."""
        t = t.copy()
        lim = preprocess.JITTER_PERIODS / self.rate_hz
        before = self._last_t if self._last_t is not None else -np.inf
        p = t[first - 1] if first else before
        for i in range(first, len(t)):  # (from the first step back only: each fix moves what the next is held to)
            if 0 <= p - t[i] <= lim:
                t[i] = p + 1e-6
                self.stats["jittered_timestamps"] += 1
            p = t[i]
        return t, np.concatenate([[before], t[:-1]])

    def _check_input(self, x: np.ndarray, steps: np.ndarray) -> None:
        """The first 2 s fed: accelerometer channels in g, timestamps in seconds; a problem is said once."""
        found = []
        if not self._units.done and (problem := self._units.add(x)):
            expects = " and ".join(u for u, sensor in (("g", "accelerometer"), ("rad/s", "gyroscope")) if sensor in problem)
            found.append(f"{problem} (the model expects {expects})")
        if not self._clock_checked:
            self._steps.append(steps[np.isfinite(steps) & (steps > 0)])
            if sum(len(s) for s in self._steps) >= self._units.samples:
                self._clock_checked = True
                problem = clock_problem_text(float(np.median(np.concatenate(self._steps))), self.rate_hz)
                self._steps = []
                if problem:
                    found.append(problem)
        for problem in found:
            self.input_problems.append(problem)
            warnings.warn(f"GestureRuntime.feed: {problem}", InputWarning, stacklevel=3)

    def _feed_increasing(self, x: np.ndarray, t: np.ndarray) -> list[Event]:
        events = []
        inputs = self.windower.push(x, t)
        holes = self.windower.time_gaps  # the holes the timestamps showed (announced by gap() or not)
        if holes["filled"] or holes["reset"]:
            self.stats["filled_gaps"] += holes["filled"]
            self.stats["window_resets"] += holes["reset"]
            holes.clear()
        self._last_t = float(t[-1])
        if self.windower.mode == "segment":  # movements the segmenter cut but no gesture can be: counted
            seg = self.windower.segmenter
            self.stats["movements_too_short"], self.stats["movements_too_long"] = seg.too_short, seg.too_long
            self.stats["movements_cut_off"] = seg.cut_off
        if inputs:  # the windower's sliding windows overlap by all but a stride
            self._new_share(min(1.0, self.bundle.stride / self.window) if self.windower.mode == "sliding" else 1.0)
        for inp in inputs:
            pred = self._classify_one(inp.x)
            self.latencies_ms.append(pred.latency_ms)
            self.last_prediction = (inp, pred)
            ev = self._decide(inp, pred)
            if ev is not None:
                events.append(ev)
        return events

    def gap(self, seconds: float | None = None, *, timeline_reset: bool = False) -> None:
        """Tell the runtime the stream lost samples (a bridge :class:`~edgessl.firmware_bridge.transport.Gap`:
        ``rt.gap(g.seconds, timeline_reset=g.timeline_reset)``).

        Args:
            seconds: the length of the hole in stream time; None when unknown (treated as long).
            timeline_reset: the times before and after are unrelated (a device clock that restarted or
                jumped, another device).

        A gap of at most ``max_fill_s`` on the same timeline is bridged by interpolation when the next samples
        arrive (their windows are flagged ``filled_gap``). A longer one restarts the windows and the smoothing,
        so no window spans it; the event suppression stays (it is keyed to the same clock). A timeline reset
        also clears the suppression and forgets the last timestamp, so the next samples may start anywhere.
        """
        self._check_open()
        if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"gap(seconds=...) must be a finite number of seconds >= 0, or None when unknown; "
                             f"got {seconds}")  # fmt: skip
        if timeline_reset:
            self._new_timeline()
        elif seconds is not None and seconds <= self.windower.max_fill_s:
            pass  # bridged, and counted, when the samples after it arrive (their timestamps show the hole)
        else:
            self.stats["window_resets"] += 1
            self._restart_windows()

    def _restart_windows(self) -> None:
        self.windower.reset()
        self._recent.clear()
        self._streak, self._streak_label = 0, None

    def _new_timeline(self) -> None:
        self.stats["timeline_resets"] += 1
        self._restart_windows()
        self._suppress_until = -np.inf
        self._last_t = None

    def _event(self, inp: ModelInput, pred: Prediction, probs: np.ndarray, label: str, start: float) -> Event:
        why = pred.reason if label == UNKNOWN else None
        return Event(inp.t_end, label, float(probs.max()), dict(zip(self.labels, map(float, probs), strict=True)),
                     pred.latency_ms, start, inp.t_end, inp.filled_gap, pred.ood_score, why, pred.roughness)  # fmt: skip

    def unknown_share(self) -> dict[str, Any] | None:
        """How many of the gestures decided so far (``decided``: answered with a label or ``unknown``, noise
        excluded) were answered ``unknown`` as unsure or unlike the training gestures, against the share the export
        calibrated on its validation gestures (``calibrated``); ``unfamiliar``: at least
        :data:`UNFAMILIAR_MIN_GESTURES` decided and a share of at least :data:`UNFAMILIAR_SHARE` and 3 times the
        calibrated one. None for a sliding-window bundle (it answers windows, not gestures).

        The export sets the gates to turn about ``target_rejection`` (2 %) of its training people's held-out
        gestures ``unknown``; a share many times that is a person, grip or mounting unlike the training data
        (simulated other people: 24-40 %), which enrollment fixes (:meth:`enroll`; README, docs/results.md) rather
        than a lower gate. ``edgessl run`` says so (with the gates it was given, not overridden ones)."""
        if self.bundle.manifest["input_mode"] != "segment":
            return None
        unsure = self.stats["unknown_low_confidence"] + self.stats["unknown_out_of_distribution"]
        n = self.stats["answered"] + unsure
        cal = self.bundle.manifest.get("decision_calibration") or {}
        calibrated = max(float(cal.get("target_rejection") or 0.0), float(cal.get("rejection") or 0.0))
        share = unsure / n if n else 0.0
        return {"decided": n, "unknown": unsure, "share": round(share, 3), "calibrated": round(calibrated, 3),
                "unfamiliar": n >= UNFAMILIAR_MIN_GESTURES and share >= max(UNFAMILIAR_SHARE, 3 * calibrated)}

    def _decide(self, inp: ModelInput, pred: Prediction) -> Event | None:
        d = self.decision
        if self.bundle.manifest["input_mode"] == "segment":
            # one segment is one gesture candidate: report it once unless suppressed or unknown
            if inp.t_start < self._suppress_until:
                return None
            if pred.index < 0:
                # a gesture answered 'unknown' is counted with its reason, never dropped without a trace
                self.stats[f"unknown_{pred.reason}"] += 1
                if not d.report_unknown:
                    return None
            self._suppress_until = inp.t_end
            self.stats["answered"] += pred.index >= 0
            return self._event(inp, pred, pred.probs, pred.label, inp.t_start)
        self._recent.append((pred.probs, pred.ood_score, inp.t_start))
        probs = np.mean([r[0] for r in self._recent], axis=0)
        k = int(probs.argmax())
        ok = probs[k] >= self.confidence and (self.ood_threshold is None or pred.ood_score <= self.ood_threshold)
        if not ok:  # a window held back (counted by reason: a sliding model's silence explained)
            self.stats["unknown_low_confidence" if probs[k] < self.confidence else "unknown_out_of_distribution"] += 1
            self._streak, self._streak_label = 0, None
            return None
        if k == self._streak_label:
            self._streak += 1
        else:
            self._streak_label, self._streak, self._streak_start = k, 1, self._recent[0][2]
        if self._streak >= d.hits and inp.t_end >= self._suppress_until:
            self._suppress_until = inp.t_end + d.suppression_s
            self._streak = 0
            return self._event(inp, pred, probs, self.labels[k], self._streak_start)
        return None
