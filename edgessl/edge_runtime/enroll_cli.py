"""``edgessl enroll``: teach a bundle a user's own gestures on the device (numpy + onnxruntime only).

``--label NAME --count N`` prompts N performances of one gesture (a new class, or a class the bundle knows:
personalised); ``--calibrate`` prompts each of the bundle's gestures ``--count`` times (default once). The
prompts, cues and takes are ``edgessl record``'s guided capture (:func:`edgessl.firmware_bridge.record.capture`),
cut with the bundle's own segmentation; each take becomes a model input exactly as ``edgessl run`` makes one
(the device stream resampled to the bundle's rate, a segment stretched to the bundle's window), is embedded
and enrolled (:mod:`edgessl.edge_runtime.enroll`). The enrollment goes into ``--state`` (created, or extended
when it exists; written atomically); the bundle is never modified. ``edgessl run BUNDLE --state FILE`` uses it.

An enrollment refused because another gesture has too few takes to be told from it (one take per gesture, in a
calibration) is followed by one more round in the same session: the takes
:attr:`~edgessl.edge_runtime.enroll.EnrollReport.remedy` asks for (2 more of that gesture, then the refused one).

A calibration first finds how the board is mounted (:meth:`~edgessl.edge_runtime.runtime.GestureRuntime.fit_mounting`:
a board turned in its case, worn the other way round); what it found is said (``# mounting: ...``; ``--json``:
a ``mounting`` line), a turn is kept in the state, and the takes are enrolled in the training data's axes.

When the default cut splits the user's takes into pieces (slow or small gestures), the takes are cut again
with the gentle cut and the state keeps it (:func:`edgessl.segmenter.choose_segmentation`).

``--from OLD_STATE`` (no board): after a model update, the takes an earlier bundle's state keeps are enrolled
into ``--state`` for this bundle (:meth:`~edgessl.edge_runtime.runtime.GestureRuntime.carry_over`).

``--json`` lines: record's (``device``, ``prompt``, ``take``, ``miss``, ``gap`` ...), then one ``enroll`` per
class (:meth:`~edgessl.edge_runtime.enroll.EnrollReport.to_json`); for one more round a ``retake`` line
(``refused``, ``plan``), its prompts and takes and its ``enroll`` lines; last, ``stats``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edgessl.atomic import write_problem
from edgessl.datasets.session import take_counts, usable_take
from edgessl.edge_runtime.enroll import EnrollReport, remedy_text
from edgessl.errors import DataError, DeviceError, UsageError
from edgessl.firmware_bridge.flags import add_text_board_flags, board_flags_text
from edgessl.segmenter import SegmentChoice, SegmentParams, choose_segmentation, motion_rows, profile, segment_signal
from edgessl.units import g_channels

if TYPE_CHECKING:
    from edgessl.firmware_bridge.transport import ImuStream

__all__ = ["TakeBuffer", "register", "enroll"]


class TakeBuffer:
    """What :func:`~edgessl.firmware_bridge.record.capture` writes into during enrollment: the samples (the
    bundle's channels, in its order) and the takes, in memory; nothing goes to disk but the state."""

    def __init__(self, channel_index: list[int], rate_hz: float, units: list[str] | None = None):
        self.idx = list(channel_index)
        self.rows = None if units is None else motion_rows(units)  # the cut's channels, as the runtime's
        self.rate = float(rate_hz)
        self._t: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self.segments: list[dict[str, Any]] = []
        self.gaps = 0

    def append(self, t_s: np.ndarray, x: np.ndarray) -> None:
        self._t.append(np.asarray(t_s, np.float64))
        self._x.append(np.asarray(x, np.float32)[:, self.idx])

    def gap(self, at_s: float, seconds: float | None, timeline_reset: bool) -> None:
        self.gaps += 1

    def add_segment(self, label: str, start_s: float, end_s: float, *, energy: float, flags: list[str],
                    bridged: bool = False) -> dict:  # fmt: skip
        take = take_counts(self.segments, usable=None).get(label, 0) + 1
        rec = {"label": label, "start_s": start_s, "end_s": end_s, "take": take, "energy": energy,
               "flags": list(flags), "bridged": bool(bridged)}  # fmt: skip
        self.segments.append(rec)
        return rec

    def drop_last_segment(self) -> dict | None:
        return self.segments.pop() if self.segments else None

    def counts(self, flagged: bool = False) -> dict[str, int]:
        """Takes per label that enrollment uses (bridged gaps: the resampling on the timestamps fills them); with
        ``flagged``, those it leaves out."""
        return take_counts(self.segments, usable=not flagged)

    def set_segmentation(self, segmentation: dict) -> None:
        pass

    def set_counters(self, counters: dict) -> None:
        pass

    def set_rate(self, rate_hz: float) -> None:
        pass  # the takes are resampled on their timestamps

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def stream(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sample captured: device times ``[N]`` and values ``[C, N]`` (the bundle's channels)."""
        if not self._t:
            return np.zeros(0), np.zeros((len(self.idx), 0), np.float32)
        return np.concatenate(self._t), np.concatenate(self._x).T

    def choose_segmentation(self, params: SegmentParams) -> SegmentChoice:
        """Which cut keeps this user's takes whole (:func:`edgessl.segmenter.choose_segmentation` on the capture)."""
        return choose_segmentation(self.stream()[1], self.rate, params, self.rows)

    def recut(self, params: SegmentParams) -> list[dict[str, Any]]:
        """Cut the takes again with ``params``: each take gets the span of the segment that overlaps it most (a
        take no segment overlaps keeps its own); returns the takes that changed (label, old and new duration)."""
        t, x = self.stream()
        segs = [(float(t[a]), float(t[b]) if b < len(t) else float(t[b - 1]) + 1.0 / self.rate)
                for a, b in segment_signal(x, self.rate, params, self.rows).tolist()]  # fmt: skip
        changed = []
        for s in self.segments:
            best, span = 0.0, None
            for start_s, end_s in segs:
                overlap = min(end_s, s["end_s"]) - max(start_s, s["start_s"])
                if overlap > best:
                    best, span = overlap, (start_s, end_s)
            if span is not None and span != (s["start_s"], s["end_s"]):
                changed.append({"label": s["label"], "take": s["take"], "before_s": round(s["end_s"] - s["start_s"], 2),
                                "after_s": round(span[1] - span[0], 2)})  # fmt: skip
                s["start_s"], s["end_s"] = span
        return changed

    def windows(self, label: str, rate_hz: float, window: int, mode: str) -> tuple[np.ndarray, int]:
        """The model inputs ``[N, C, window]`` of ``label``'s takes, as the runtime makes them, and how many
        takes were left out because a gap overlaps them."""
        from edgessl.preprocess import resample_times, resample_to_length

        t, x = np.concatenate(self._t), np.concatenate(self._x).T
        out, flagged = [], 0
        for s in self.segments:
            if s["label"] != label:
                continue
            if not usable_take(s):
                flagged += 1
                continue
            if mode == "segment":  # the stream at the model's rate from the segment's first sample, stretched
                m = (t >= s["start_s"]) & (t < s["end_s"])
                ts = t[m]
                grid = ts[0] + np.arange(int(np.floor((ts[-1] - ts[0]) * rate_hz + 1e-9)) + 1) / rate_hz
                out.append(resample_to_length(resample_times(x[:, m], ts, grid), window))
            else:  # a sliding window centred on the take
                centre = 0.5 * (s["start_s"] + s["end_s"])
                grid = np.clip(centre + (np.arange(window) - window / 2) / rate_hz, t[0], t[-1])
                out.append(resample_times(x, t, grid))
        return np.asarray(out, np.float32).reshape(len(out), x.shape[0], window), flagged


def enroll(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``enroll`` command (see the module's docstring); ``out`` defaults to stdout."""
    from edgessl.edge_runtime.cli import channel_map
    from edgessl.edge_runtime.runtime import label_problem
    from edgessl.firmware_bridge.record import Display, Guide, _labels, _stdin_answer, capture, check_capture_args

    if args.carry is not None:
        if args.label is not None or args.calibrate:
            raise UsageError(f"--from {args.carry}: carries an earlier state's takes over, without a board; not with "
                             f"{'--label' if args.label is not None else '--calibrate'} (enroll more afterwards)")  # fmt: skip
        return _carry_over(args, out)
    if (args.label is None) == (not args.calibrate):
        both = "not both" if args.calibrate else "neither was given"
        raise UsageError(f"expected --label NAME (one gesture) or --calibrate (each of the bundle's gestures; --from "
                         f"OLD_STATE carries an earlier bundle's state over), {both}")  # fmt: skip
    if args.port is None:
        raise UsageError("expected --port PORT (the board the gestures are performed on)")
    count = check_capture_args(args, default_count=1 if args.calibrate else 3)
    rt = _runtime_with_state(args)
    if args.calibrate:
        labels = list(rt.bundle.labels)
    else:
        labels = _labels(args.label)
        if len(labels) != 1:
            raise UsageError(f"--label {args.label}: expected one gesture (enroll one at a time, or --calibrate)")
        if problem := label_problem(labels[0], rt.labels):
            raise UsageError(f"--label {args.label}: {problem}")
    d = Display(out or sys.stdout, args.json)
    params = rt.segmentation or SegmentParams()  # the user's cut when the state has one
    ask = _stdin_answer if (d.tty and sys.stdin.isatty()) else None
    guide = Guide(labels, count, args.countdown, params, d, ask, f" ({args.state} keeps it for edgessl run)")
    buffers: list[TakeBuffer] = []

    def open_writer(dev: ImuStream, rate: float) -> TakeBuffer:
        buf = TakeBuffer(channel_map(dev.channel_names, dev.unit_names, rt.channels, rt.bundle.units), rate,
                         list(rt.bundle.units))  # fmt: skip
        buffers.append(buf)
        if not d.json:
            what = "new class" if labels[0] not in rt.labels else "personalising"
            held = rt.user_state.counts() if rt.user_state is not None else {}
            extends = (f" (it already holds {', '.join(f'{k} {v}' for k, v in held.items())}: these takes are added; "
                       "a new --state file starts afresh)" if held else "")  # fmt: skip
            d.line(f"# enrolling {', '.join(labels)} × {count} ({'calibration' if args.calibrate else what}) "
                   f"from {dev.identity} into {args.state}{extends}")  # fmt: skip
        return buf

    with rt:
        stats, stream, dev = capture(args, d, guide, params, open_writer)
        cut = _choose_cut(rt, buffers, d, args.state, guide.switched)
        if cut is not None:
            stats["segmentation"] = cut
        flagged = 0

        def takes_of(bufs: list[TakeBuffer], wanted: list[str]) -> dict[str, np.ndarray]:
            nonlocal flagged
            got = {}
            for label in wanted:
                if not bufs:
                    break
                x, n_flagged = bufs[0].windows(label, rt.rate_hz, rt.window, rt.metadata["input_mode"])
                flagged += n_flagged
                if len(x):
                    got[label] = x
            return got

        def enroll_takes(got: dict[str, np.ndarray]) -> list[EnrollReport]:
            out_ = [rt.enroll(label, x) for label, x in got.items()]
            _show_reports(d, out_)
            return out_

        first = takes_of(buffers, labels)
        mount = None
        if args.calibrate and first and len(g_channels(rt.bundle.units)) == 3:
            # the board's mounting first: the takes are enrolled in the training data's axes
            mount = rt.fit_mounting(first)
            if d.json:
                d.emit({"mounting": mount.to_json()})
            else:  # a board as in training is said too (a walkthrough could not tell whether it was looked for)
                d.line(f"# {mount.text()}")
        reports = enroll_takes(first)
        # a gesture refused because another one has too few takes to be told from it: one more round, now,
        # with the remedy (measured: re-enrolling the refused gesture alone was refused again; see remedy)
        refused = [r for r in reports if not r.accepted and r.flipped]
        if refused and stats["stopped_by"] == "done" and not guide.gave_up:
            plan = _retake_plan(refused)
            if d.json:
                d.emit({"retake": {"refused": [r.label for r in refused], "plan": plan}})
            else:
                d.line(f"# one more round for {', '.join(r.label for r in refused)}: {remedy_text(list(plan.items()))}")
            more: list[TakeBuffer] = []

            def open_more(dev_: ImuStream, rate: float) -> TakeBuffer:
                buf = TakeBuffer(channel_map(dev_.channel_names, dev_.unit_names, rt.channels, rt.bundle.units), rate,
                                 list(rt.bundle.units))  # fmt: skip
                more.append(buf)
                return buf

            seg = rt.bundle.segmentation
            gentle = seg is not None and cut is not None and cut["profile"] == "gentle"
            params2 = profile(seg, "gentle") if seg is not None and gentle else params
            guide2 = Guide(list(plan), plan, args.countdown, params2, d, ask, guide.gentle_note, in_turn=False)
            stats2, _, dev2 = capture(args, d, guide2, params2, open_more)
            second = enroll_takes(takes_of(more, list(plan)))
            retried = {r.label for r in second}
            reports = [r for r in reports if r.accepted or r.label not in retried] + second
            stats["retake"] = {"plan": plan, "stopped_by": stats2["stopped_by"], "misses": guide2.misses,
                               "device": dev2.counters()}  # fmt: skip
            if guide2.gave_up:
                guide.gave_up = guide2.gave_up
        stats.update(device=dev.counters(), takes_with_gaps_left_out=flagged, misses=guide.misses)
        # gestures the capture stopped before (--seconds, Ctrl-C): said, not left out silently (walkthrough)
        stats["not_enrolled"] = missed = [lb for lb in labels if lb not in {r.label for r in reports}]
        accepted = [r for r in reports if r.accepted]
        st = rt.user_state
        if st is not None and cut is not None and cut["profile"] == "gentle":
            st.segmentation = "gentle"
        if (accepted or (mount is not None and mount.accepted)) and st is not None:
            _save(st, args.state)
            stats.update(state=str(args.state), enrolled=st.counts(), labels=st.labels)
        if d.json:
            d.emit({"stats": stats})
        elif accepted:
            d.line(f"# saved {args.state}: {', '.join(f'{k} {v}' for k, v in stats['enrolled'].items())} "
                   f"take(s) (edgessl run {args.bundle} --port {args.port}{board_flags_text(args)} --state {args.state})")  # fmt: skip
        if not d.json and mount is not None and mount.accepted and st is not None:
            # a microcontroller runs the C library: the turn goes into it (a walkthrough found only run's hint)
            d.line(f"# on a microcontroller: edgessl export-c {args.bundle} --out DIR --state {args.state} builds the "
                   "turn into the C library")  # fmt: skip
    if missed and reports and not guide.gave_up:  # (nothing captured at all, or gave up: the errors below say it)
        by = {"seconds": "--seconds ran out before their takes", "done": "their takes overlapped gaps"}.get(
            stats["stopped_by"], f"stopped by {stats['stopped_by']} before their takes")
        print(f"edgessl enroll: warning: --state {args.state}: {len(missed)} of {len(labels)} gesture(s) not enrolled "
              f"({by}): {', '.join(missed)}; enroll them later into the same state, one by one: edgessl enroll "
              f"{args.bundle} --port {args.port}{board_flags_text(args)} --state {args.state} --label GESTURE --count {count}", file=sys.stderr,
              flush=True)  # fmt: skip
    refused = [r for r in reports if not r.accepted]
    if refused:
        kept = f"; the others were saved to {args.state}" if accepted else f"; {args.state} is unchanged"
        cmd = f"edgessl enroll {args.bundle} --port {args.port}{board_flags_text(args)} --state {args.state}"
        steps = refused[0].remedy
        again = f"; {refused[0].next_text()}: " + ", then ".join(f"{cmd} --label {lb} --count {n}" for lb, n in steps)
        raise DataError(f"--state {args.state}: enrollment of {', '.join(r.label for r in refused)} refused "
                        f"({refused[0].reason}){kept}{again}")  # fmt: skip
    if guide.gave_up:  # nobody performed (or the board could not): the labels without takes are not enrolled
        done = {r.label for r in accepted}
        saved = (f"; the others were saved to {args.state}" if done else
                 f"; {args.state} is {'unchanged' if os.path.exists(args.state) else 'not written'}")  # fmt: skip
        raise DeviceError(f"--port {args.port}: stopped: {guide.gave_up}; not enrolled: "
                          f"{', '.join(lb for lb in labels if lb not in done)}{saved}")  # fmt: skip
    if not reports:
        why = f"{flagged} take(s) overlapped a gap" if flagged else "no take was captured"
        raise DataError(f"--port {args.port}: nothing enrolled ({why}; stopped by {stats['stopped_by']}); "
                        f"{args.state} is {'unchanged' if os.path.exists(args.state) else 'not written'}")  # fmt: skip
    return 0


def _show_reports(d: Any, reports: list[EnrollReport]) -> None:
    """Each enrollment's line (or JSON record), its warnings and notes."""
    for r in reports:
        if d.json:
            d.emit({"enroll": r.to_json()})
        else:
            d.line(r.text())
            for w in r.warnings:
                d.line(f"  warning: {w}")
            # (the note that the takes were made the person's own way, the first of a report's notes when
            # ``differs``, is said once for all below)
            for n in (r.notes[1:] if r.differs and r.accepted else r.notes):
                d.line(f"  note: {n}")
    if not d.json and (own := [r for r in reports if r.differs and r.accepted and r.nearest is not None]):
        # information, not a warning: on correct takes of a new person this held for 5 of 8 gestures, and
        # a note per gesture read as something to act on (walkthrough)
        d.line(f"  note: {len(own)} of {len(reports)} gestures were made your own way (your "
               + ", ".join(f"{r.label} nearer the training data's {r.nearest[0]}" for r in own if r.nearest)
               + "): what enrollment is for, `run --state` now answers them as yours; only if it confuses one "
               "with another: enroll 2 more takes of each into the same --state")


def _save(st: Any, path: str) -> None:
    """The user state saved to ``--state``; a write refused is named by the flag (not by the temporary file)."""
    try:
        st.save(path)
    except OSError as e:
        raise UsageError(f"--state {path}: cannot save the user state ({e.strerror or e}); expected a path in a "
                         "folder this user can write") from e  # fmt: skip


def _runtime_with_state(args: argparse.Namespace) -> Any:
    """The bundle's runtime with ``--state`` when that file exists (checked before waiting for a port: an
    existing state must be a user state of this bundle)."""
    from edgessl.edge_runtime.enroll import StateMismatch
    from edgessl.edge_runtime.runtime import GestureRuntime

    state_path = Path(args.state)
    if not state_path.parent.is_dir():
        raise UsageError(f"--state {args.state}: no folder {state_path.parent}; expected a path in an existing folder")
    if problem := write_problem(state_path):  # before the takes are performed, not at the save after them
        raise UsageError(f"--state {args.state}: {problem}; expected a path in a folder this user can write")
    if state_path.exists() and not state_path.is_file():
        raise UsageError(f"--state {args.state}: exists and is not a file; expected a user state file (new or existing)")
    try:
        return GestureRuntime(args.bundle, user_state=args.state if state_path.exists() else None)
    except StateMismatch as e:
        if e.checksums is None:
            raise
        theirs, ours = e.checksums
        raise StateMismatch(f"--state {args.state}: user state of another bundle (checksum {theirs[:12]}…; this bundle "
                            f"{ours[:12]}…; the sha256 of each bundle's manifest); give a new --state file to start "
                            f"one for this bundle (--from {args.state} carries its takes over)") from None  # fmt: skip


def _carry_over(args: argparse.Namespace, out: TextIO | None) -> int:
    """``enroll NEW_BUNDLE --from OLD_STATE --state NEW_STATE``: the takes an earlier bundle's user state keeps,
    enrolled into this bundle's (a model update without asking the user to perform again)."""
    from edgessl.edge_runtime.enroll import StateMismatch, UserState
    from edgessl.firmware_bridge.record import Display

    src = Path(args.carry)
    if not src.is_file():
        raise UsageError(f"--from {args.carry}: no such file; expected the user state (.npz) that edgessl enroll wrote "
                         "for the earlier bundle")  # fmt: skip
    if os.path.lexists(args.state):  # carrying twice into one file would enroll every take twice
        same = Path(args.state).resolve() == src.resolve()
        raise UsageError(f"--state {args.state}: {'the same file as --from' if same else 'exists'}; expected a new file "
                         "(--from writes the carried takes into a state of their own; the earlier state stays as it is)")  # fmt: skip
    try:
        old = UserState.load(src)
    except StateMismatch as e:
        raise StateMismatch(f"--from {e}") from None
    rt = _runtime_with_state(args)
    if args.port is not None:
        print(f"edgessl enroll: note: --port {args.port} not used: --from needs no board", file=sys.stderr, flush=True)
    if old.checksum == rt.bundle.checksum:
        raise UsageError(f"--from {args.carry}: already a user state of {args.bundle}: use it as it is "
                         f"(edgessl run {args.bundle} --state {args.carry})")  # fmt: skip
    d = Display(out or sys.stdout, args.json)
    with rt:
        try:
            reports = rt.carry_over(old)
        except ValueError as e:
            raise DataError(f"--from {args.carry}: {e}") from None
        _show_reports(d, reports)
        accepted = [r for r in reports if r.accepted]
        st = rt.user_state
        stats: dict[str, Any] = {"carried_from": str(src), "from_bundle": old.checksum,
                                 "refused": [r.label for r in reports if not r.accepted]}  # fmt: skip
        if accepted and st is not None:
            _save(st, args.state)
            stats.update(state=str(args.state), enrolled=st.counts(), labels=st.labels, segmentation=st.segmentation)
        if d.json:
            d.emit({"stats": stats})
        elif accepted:
            d.line(f"# saved {args.state}: {', '.join(f'{k} {v}' for k, v in stats['enrolled'].items())} take(s) carried "
                   f"from {args.carry} (its bundle {old.checksum[:12]}…){', the gentle cut too' if st and st.segmentation else ''}; "
                   f"{args.carry} is unchanged (edgessl run {args.bundle} --port PORT --state {args.state})")  # fmt: skip
    refused = [r for r in reports if not r.accepted]
    if not reports:
        raise DataError(f"--from {args.carry}: holds no takes; nothing to carry over")
    if refused:
        kept = f"; the others were saved to {args.state}" if accepted else f"; {args.state} is unchanged"
        raise DataError(f"--state {args.state}: carrying {', '.join(r.label for r in refused)} over refused "
                        f"({refused[0].reason}){kept}; enroll them on the board: edgessl enroll {args.bundle} --port PORT "
                        f"--state {args.state} --label {refused[0].label} --count 3")  # fmt: skip
    return 0


def _retake_plan(refused: list[EnrollReport]) -> dict[str, int]:
    """One round for all refused enrollments: the gestures they would have turned first (more takes), then the
    refused ones again (``{label: takes}``, in the order prompted)."""
    plan: dict[str, int] = {}
    for r in refused:
        for lb, n in r.remedy[:-1]:
            plan[lb] = max(plan.get(lb, 0), n)
    for r in refused:
        if r.label not in plan:
            plan[r.label] = r.remedy[-1][1]
    return plan


def _choose_cut(rt: Any, buffers: list[TakeBuffer], d: Any, state: str, switched: bool) -> dict[str, Any] | None:
    """After the capture: the gentle cut when the default one split this user's gestures into pieces (the
    capture may have switched to it already, ``switched``); the takes are cut again with it. None for a
    sliding-window bundle, a state that already cuts gently, or nothing captured."""
    seg = rt.bundle.segmentation
    st = rt.user_state
    if seg is None or not buffers or (st is not None and st.segmentation == "gentle"):
        return None
    choice = buffers[0].choose_segmentation(seg)
    out: dict[str, Any] = dataclasses.asdict(choice)
    if switched:
        out["profile"] = "gentle"
    if out["profile"] == "gentle":
        changed = buffers[0].recut(profile(seg, "gentle"))
        out["takes_recut"] = changed
        if not d.json:
            what = "" if switched else f"your gestures are slow or small: {choice.text()}; "
            d.line(f"# {what}{state} keeps the gentle cut: edgessl run --state cuts your gestures with it (reported "
                   "about 0.35 s later; leave 0.8 s of stillness between two gestures or they merge)")  # fmt: skip
            big = [c for c in changed if abs(c["after_s"] - c["before_s"]) >= 0.1]
            if big:
                d.line("# your takes cut again with it: " + ", ".join(f"{c['label']} {c['before_s']:g} → {c['after_s']:g} s"
                                                                     for c in big))  # fmt: skip
    return out


def register(sub: argparse._SubParsersAction) -> None:
    from edgessl.edge_runtime.cli import _wait_seconds

    p = sub.add_parser("enroll", help="teach a bundle your own gestures on the device (a new class, or calibration)",
                       description="Prompts performances like 'edgessl record', embeds each take with the bundle's "
                                   "encoder and keeps them in a per-user state file tied to the bundle (never "
                                   "modified). 'edgessl run BUNDLE --state FILE' then uses it.")  # fmt: skip
    p.add_argument("bundle", help="model bundle (.essl)")
    p.add_argument("--port", default=None,
                   help="serial port or URL (a path, /dev/ttyACM0, the simulator's path); required but with --from")
    p.add_argument("--state", required=True,
                   help="the user's state file (.npz): created, or extended when it exists (same bundle only)")
    p.add_argument("--label", default=None,
                   help="the gesture to enroll: a new class, or one of the bundle's to personalise (default: none)")
    p.add_argument("--calibrate", action="store_true", help="prompt each of the bundle's gestures instead of --label, and find how your board is "
                        "mounted (turned in its case, worn the other way round: corrected from then on); any "
                        "enrollment also checks whether your gestures need the gentle cut (slow or small gestures)")
    p.add_argument("--from", dest="carry", default=None, metavar="OLD_STATE",
                   help="after a model update: enroll the takes that a user state of the earlier bundle keeps into "
                        "--state (a new file), no board needed; OLD_STATE is not changed (default: none)")
    p.add_argument("--count", type=int, default=None,
                   help="performances of each gesture (default: 3 with --label, 1 with --calibrate)")
    p.add_argument("--countdown", type=float, default=2.0, help="seconds between 'get ready' and GO (0: none)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (each round; default: when all takes are done)")
    p.add_argument("--wait", type=_wait_seconds, default="30",
                   help="seconds to wait for a port that is not there yet or that another program holds (the "
                        "service: stop it first), or 'forever' (default 30); 0 fails at once")  # fmt: skip
    p.add_argument("--mode", choices=["auto", "binary", "text"], default="auto",
                   help="the device's protocol (auto: binary if it answers IDENTIFY, else text lines)")
    add_text_board_flags(p)
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: prompts, takes, enroll reports, stats")
    p.set_defaults(func=enroll)
