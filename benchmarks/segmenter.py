"""The segmenter's two cuts: the default and the gentle one (slow or small gestures), and the automatic choice
``edgessl enroll`` makes between them. Writes benchmarks/results/segmenter.json.

Protocol. Cut quality (no model): a gesture is *whole* when exactly one segment overlaps it, covers at least
80 % of it and overlaps no other gesture by more than 20 %. (1) The synthetic population: 35 simulated users
(ids 1–30, A–E; the simulator's people), 4 minutes each performing at random with 1–3 s of stillness between
gestures, session seed 1 (the cuts were chosen on seed 0), at their own pace and slowed ×1.5 and ×2 (the
duration multiplier; acceleration falls with its square). (2) Quick successions: 20 of the users, 90 s each,
with 0.4, 0.6, 0.8 or 1.0 s (+ up to 0.1 s) of stillness between gestures. (3) uWave's real templates, UCR *test* split (the cuts were chosen on the train
split), streamed as ``benchmarks/live_uwave.py`` streams them (0.8–1.5 s still, a 0.6 s return move, 0.003 g
noise): whole fraction and median offsets of the segment's ends from the recording's button cuts. (4) Latency:
the time from a gesture's end to the moment its segment is emitted (10-sample frames). (5) Segments in 10
minutes of stillness per user (false starts).

The choice: each user performs each of the 8 gestures once, and 3 times (a calibration enrollment, ``--count
3``; session seed 2);
:func:`edgessl.segmenter.choose_segmentation` on that recording picks the cut; the whole fraction of that user's
4-minute session under the chosen cut vs the default.

End to end (``--bundle``, a segment bundle of the 8 synthetic gestures, e.g. ``edgessl demo``'s): per user, the
calibration takes are cut with the chosen cut and enrolled through ``GestureRuntime.enroll`` (as ``edgessl
enroll --calibrate``); then a 5-minute random session (seed 3) through ``GestureRuntime.feed`` with the
bundle's decisions: reported (not ``unknown``) fraction and accuracy per performed gesture, without a state,
with the state cut the default way, and with the state as enroll writes it (the chosen cut); and the events
naming a gesture on ``own_data.junk``'s 60 bursts of noise and 20 knocks.

    python benchmarks/segmenter.py [--bundle edgessl_demo/model.essl] [--out results/segmenter.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgessl.datasets.synthetic import GESTURES, SyntheticPerson
from edgessl.segmenter import MotionSegmenter, SegmentParams, choose_segmentation, profile, segment_signal

sys.path.insert(0, str(Path(__file__).parent))
PROTOCOL = __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2] + "\n\n" + __doc__.split("\n\n")[3]
RATE = 100.0
USERS: list[int | str] = [*range(1, 31), *"ABCDE"]
CUTS = {"default": SegmentParams(), "gentle": profile(SegmentParams(), "gentle")}


def whole(x: np.ndarray, spans: list[tuple[int, int]], params: SegmentParams) -> float:
    segs = segment_signal(x, RATE, params)
    ok = 0
    for a, b in spans:
        ov = [(s, e) for s, e in segs if min(e, b) > max(s, a)]
        if len(ov) != 1 or min(ov[0][1], b) - max(ov[0][0], a) < 0.8 * (b - a):
            continue
        s, e = ov[0]
        ok += not any((c, d) != (a, b) and min(e, d) - max(s, c) > 0.2 * (d - c) for c, d in spans)
    return ok / max(1, len(spans))


def session(user: int | str, seed: int, seconds: float, pace: float = 1.0, **kw: Any) -> tuple[np.ndarray, list]:
    p = SyntheticPerson(user, seed, **kw)
    p.profile = dataclasses.replace(p.profile, speed=p.profile.speed * pace)
    x = p.next(int(seconds * RATE))
    return x, [pf for pf in p.performances if pf.end <= x.shape[1]]


def latency(x: np.ndarray, spans: list[tuple[int, int]], params: SegmentParams) -> list[float]:
    seg, emitted = MotionSegmenter(x.shape[0], RATE, params), []
    for i in range(0, x.shape[1], 10):
        emitted += [(s, e, i + 10) for s, e in seg.push(x[:, i : i + 10])]
    out = []
    for a, b in spans:
        hits = [n for s, e, n in emitted if min(e, b) > max(s, a)]
        if hits:
            out.append((hits[-1] - b) / RATE)
    return out


def cut_quality() -> dict[str, Any]:
    from live_uwave import session as uwave_session

    from edgessl.datasets import load_stream

    res: dict[str, Any] = {name: {} for name in CUTS}
    for pace in (1.0, 1.5, 2.0):
        data = [session(u, 1, 240, pace) for u in USERS]
        for name, prm in CUTS.items():
            w = np.array([whole(x, [(p.start, p.end) for p in perf], prm) for x, perf in data])
            res[name][f"synthetic_pace_{pace:g}"] = {"whole_mean": round(float(w.mean()), 3), "whole_min": round(float(w.min()), 3),
                                                      "users_below_0.9": int((w < 0.9).sum()), "users": len(w)}  # fmt: skip
    quick = {g: [session(u, 1, 90, idle_s=(g, g + 0.1)) for u in USERS[:20]] for g in (0.4, 0.6, 0.8, 1.0)}
    still = [session(u, 1, 600, perform="cue")[0] for u in USERS[:10]]
    raw = load_stream("npz:uwave_raw.npz")
    split_, subj = raw.recording_groups["ucr_split"], raw.recording_groups["subject"]
    uw = []
    for u in range(1, 9):
        xu, perf, _ = uwave_session(raw, (split_ == 1) & (subj == u), np.random.default_rng(u))
        uw.append((xu.T, [(int(round(p["start_s"] * RATE)), int(round(p["end_s"] * RATE))) for p in perf]))
    for name, prm in CUTS.items():
        res[name]["quick_successions_whole_by_stillness_s"] = {
            f"{g:g}": round(float(np.mean([whole(x, [(p.start, p.end) for p in perf], prm) for x, perf in runs])), 3)
            for g, runs in quick.items()}  # fmt: skip
        res[name]["segments_in_stillness_per_10_min"] = int(sum(len(segment_signal(x, RATE, prm)) for x in still)) / len(still)
        w = [whole(x, spans, prm) for x, spans in uw]
        starts, ends, lat = [], [], []
        for x, spans in uw:
            segs = segment_signal(x, RATE, prm)
            for a, b in spans:
                ov = [(s, e) for s, e in segs if min(e, b) > max(s, a)]
                if len(ov) == 1:
                    starts.append((ov[0][0] - a) / RATE)
                    ends.append((ov[0][1] - b) / RATE)
            lat += latency(x, spans, prm)
        res[name]["uwave_test"] = {"whole_mean": round(float(np.mean(w)), 3), "whole_min": round(float(np.min(w)), 3),
                                   "median_start_offset_s": round(float(np.median(starts)), 3),
                                   "median_end_offset_s": round(float(np.median(ends)), 3)}  # fmt: skip
        syn_lat = [v for x, perf in (session(u, 1, 120) for u in USERS[:10])
                   for v in latency(x, [(p.start, p.end) for p in perf], prm)]  # fmt: skip
        res[name]["latency_s"] = {"uwave_median": round(float(np.median(lat)), 2),
                                  "synthetic_median": round(float(np.median(syn_lat)), 2)}  # fmt: skip
        res[name]["params"] = dataclasses.asdict(prm)
    return res


def calibration(user: int | str, reps: int = 1) -> tuple[np.ndarray, list]:
    return session(user, 2, 40 * reps, perform=",".join(GESTURES * reps))


def choice(reps: int = 1) -> dict[str, Any]:
    rows = {}
    for u in USERS:
        xc, _ = calibration(u, reps)
        c = choose_segmentation(xc, RATE)
        x, perf = session(u, 1, 240)
        spans = [(p.start, p.end) for p in perf]
        speed = SyntheticPerson(u, 0).profile.speed
        rows[str(u)] = {"speed": round(speed, 2), "chosen": c.profile, "default_fragments": c.default_fragments,
                        "whole_default": round(whole(x, spans, CUTS["default"]), 3),
                        "whole_chosen": round(whole(x, spans, CUTS[c.profile]), 3)}  # fmt: skip
    return rows


def end_to_end(bundle: str, users: list[int | str]) -> dict[str, Any]:
    from own_data import junk, score

    from edgessl.edge_runtime.enroll_cli import TakeBuffer
    from edgessl.edge_runtime.runtime import GestureRuntime

    out = {}
    for u in users:
        xc, perf_c = calibration(u)
        chosen = choose_segmentation(xc, RATE).profile
        t = np.arange(xc.shape[1]) / RATE
        x, perf = session(u, 3, 300)
        performed = [{"start_s": p.start / RATE, "end_s": p.end / RATE, "label": p.label} for p in perf]
        row: dict[str, Any] = {"chosen": chosen}
        for case in ("no_state", "state_default_cut", "state_chosen_cut"):
            with GestureRuntime(bundle) as rt:
                if case != "no_state":
                    cut = "default" if case == "state_default_cut" else chosen
                    seg = profile(rt.bundle.segmentation or SegmentParams(), cut)
                    buf = TakeBuffer(list(range(3)), RATE)  # the calibration takes, cut as enroll cuts them
                    buf.append(t, xc.T)
                    segs = segment_signal(xc, RATE, seg)
                    for p in perf_c:
                        ov = [(min(e, p.end) - max(s, p.start), s, e) for s, e in segs if min(e, p.end) > max(s, p.start)]
                        if ov:
                            _, s, e = max(ov)
                            buf.add_segment(p.label, float(t[s]), float(t[min(e, len(t) - 1)]), energy=1.0, flags=[])
                    for label in GESTURES:
                        w, _ = buf.windows(label, rt.rate_hz, rt.window, "segment")
                        if len(w):
                            rt.enroll(label, w)
                    assert rt.user_state is not None
                    rt.user_state.segmentation = cut
                    rt.load_user_state(rt.user_state)
                ts = np.arange(x.shape[1]) / RATE
                events = []
                for i in range(0, x.shape[1], 10):
                    events += [e.to_json() for e in rt.feed(x[:, i : i + 10].T, ts[i : i + 10])]
                st = rt.user_state
            s = score(performed, events)
            row[case] = {k: (round(s[k], 3) if isinstance(s[k], float) else s[k])
                         for k in ("performed", "reported_fraction", "accuracy", "answered_unknown", "missed_no_segment")}  # fmt: skip
            # not gestures (bursts of noise, knocks; the board at rest between): events naming a gesture
            j = junk(Path(bundle), 0, user_state=st)
            row[case]["false_events_on_noise_and_knocks"] = {k: v["false_events"] for k, v in j.items()}
            row[case]["bursts_of_each"] = next(iter(j.values()))["bursts"]
        out[str(u)] = row
        print(u, json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=None, help="a segment bundle of the synthetic gestures (edgessl demo's)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "segmenter.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    quality = cut_quality()
    print(json.dumps(quality, indent=1), flush=True)
    summary, choices = {}, {}
    for reps in (1, 3):  # enroll --calibrate (each gesture once) and --calibrate --count 3
        choices[reps] = choice(reps)
        changed = [r for r in choices[reps].values() if r["chosen"] == "gentle"]
        summary[f"calibration_{reps}_per_gesture"] = {
            "users_choosing_gentle": [u for u, r in choices[reps].items() if r["chosen"] == "gentle"],
            "their_whole_default": round(float(np.mean([r["whole_default"] for r in changed])), 3) if changed else None,
            "their_whole_gentle": round(float(np.mean([r["whole_chosen"] for r in changed])), 3) if changed else None,
            "users_worse_with_choice": sum(r["whole_chosen"] < r["whole_default"] for r in choices[reps].values()),
            "users_below_0.9_whole_left_default": [u for u, r in choices[reps].items()
                                                   if r["chosen"] == "default" and r["whole_default"] < 0.9],
        }  # fmt: skip
        print(reps, summary[f"calibration_{reps}_per_gesture"], flush=True)
    ch = choices[1]
    gentle = summary["calibration_1_per_gesture"]["users_choosing_gentle"]
    e2e = None
    if a.bundle:
        normal = [u for u, r in ch.items() if r["chosen"] == "default"][:4]
        e2e = {"bundle": Path(a.bundle).name, "users": end_to_end(a.bundle, [*gentle, *normal])}
    out = {"protocol": PROTOCOL, "cuts": quality, "choice": ch, "choice_3_per_gesture": choices[3],
           "choice_summary": summary, "end_to_end": e2e,
           "seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine()}  # fmt: skip
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
