"""The own-board journey on the simulated board, with nothing but the command line (no hand-written Python):

    record 10 performances of each gesture as user A (guided capture, the simulator cued by the prompts)
    + 3 minutes of unlabelled movement -> data info -> pretrain -> finetune (recommended recipe) -> export
    -> run on a new session of user A and on user B, scored against what the simulated person performed;
    then B enrolls each gesture once (enroll --calibrate) and runs the same session with that state.

Every step is an ``edgessl`` subprocess with the defaults a user gets; the simulator plays faster than real
time (``--speed``), which changes wall times, not signals. Writes benchmarks/results/own_data.json: the wall
time of each step, the data set's counts, the export's decision calibration, and for each live session the
gestures performed, reported (an event that is not ``unknown``), right, answered ``unknown`` and false
events per idle minute.

    python benchmarks/own_data.py [--speed 8] [--out benchmarks/results/own_data.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GESTURES = ["square", "right", "left", "up", "down", "circle_ccw", "circle_cw", "v_shape"]
EDGE_S = 3.0  # performances this close to the end of a live run are not scored (the run may stop mid-gesture)


def edgessl(*args: str, timeout: float = 3600) -> tuple[subprocess.CompletedProcess, float]:
    """Run one ``edgessl`` command; fail loudly with its stderr; returns (result, wall seconds)."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgessl", *args], capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"edgessl {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r, wall


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[str]:
    """``edgessl simulate ARGS`` in the background; yields the device path it prints."""
    p = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert p.stdout is not None
        path = p.stdout.readline().strip()
        if not path:
            raise RuntimeError(f"edgessl simulate {' '.join(args)} printed no device path: {p.stderr.read()}")  # type: ignore[union-attr]
        yield path
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


@contextlib.contextmanager
def repeat_dir(keep: str | None, k: int) -> Iterator[Path]:
    """The work folder of repeat ``k``: under ``keep`` (kept), else in a temporary folder."""
    with tempfile.TemporaryDirectory() as td:
        work = Path(keep or td) / f"repeat{k}"
        work.mkdir(parents=True, exist_ok=True)
        yield work


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip().startswith("{")]


def score(performed: list[dict[str, Any]], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Match each performance to the event whose window overlaps it most; count the rest as false events."""
    events = [ln for ln in lines if "label" in ln and "window_start" in ln]
    samples = [ln["stats"] for ln in lines if "stats" in ln]
    t_first = min((e["window_start"] for e in events), default=0.0)
    t_last = max((e["window_end"] for e in events), default=0.0)
    scored = [p for p in performed if p["end_s"] <= t_last - EDGE_S and p["start_s"] >= t_first - 5.0]
    used: set[int] = set()
    reported = right = unknown = 0
    confusions: dict[str, int] = {}
    for p in scored:
        best, overlap = None, 0.0
        for i, e in enumerate(events):
            ov = min(p["end_s"], e["window_end"]) - max(p["start_s"], e["window_start"])
            if ov > overlap and i not in used:
                best, overlap = i, ov
        if best is None:
            continue
        used.add(best)
        label = events[best]["label"]
        if label == "unknown":
            unknown += 1
            continue
        reported += 1
        right += label == p["label"]
        if label != p["label"]:
            key = f"{p['label']}->{label}"
            confusions[key] = confusions.get(key, 0) + 1
    # a false event overlaps no performance at all (one overlapping a performance near the run's ends, left
    # out of the score, is neither right nor false)
    false = [e for i, e in enumerate(events) if i not in used and e["label"] != "unknown"
             and not any(min(p["end_s"], e["window_end"]) > max(p["start_s"], e["window_start"]) for p in performed)]
    span = max(1e-9, t_last - t_first)
    busy = sum(p["end_s"] - p["start_s"] for p in scored)
    n = len(scored)
    return {
        "performed": n, "reported": reported, "right": right, "answered_unknown": unknown,
        "missed_no_segment": n - reported - unknown,
        "accuracy": right / n if n else None, "reported_fraction": reported / n if n else None,
        "false_events": len(false), "idle_minutes": round(max(0.0, span - busy) / 60.0, 2),
        "false_events_per_idle_minute": len(false) / max(1e-9, (span - busy) / 60.0),
        "confusions": confusions, "runtime_stats": samples[-1].get("runtime") if samples else None,
    }  # fmt: skip


def live(bundle: Path, work: Path, user: str, seed: int, seconds: float, speed: float, state: Path | None = None
         ) -> tuple[dict[str, Any], float]:  # fmt: skip
    log = work / f"performed_{user}_{seed}{'_enrolled' if state else ''}.jsonl"
    with simulator("--user", user, "--seed", str(seed), "--speed", str(speed), "--log", str(log)) as port:
        r, wall = edgessl("run", str(bundle), "--port", port, "--json", "--show-unknown", "--seconds",
                          str(seconds / speed), *(["--state", str(state)] if state else []))  # fmt: skip
    return score(read_jsonl(log), read_jsonl_text(r.stdout)), wall


def junk(bundle: Path, seed: int, n: int = 20, noise_gate: bool = True, user_state: Any = None) -> dict[str, Any]:
    """What the default decisions (and the default adaptation) answer to what is not a gesture, the board at
    rest between: ``n`` bursts each of white noise at 0.05, 0.3 and 1 g rms (0.3-2 s: a vibrating table, a
    loose connector) and ``n`` knocks (a tap on the board's table: 30 Hz ringing from 0.5-2 g, decaying over
    0.2 s). Fed in 10-sample frames to ``GestureRuntime`` as ``edgessl run`` feeds it, unknown answers
    reported; an event naming a gesture is a false event. ``noise_gate=False``: the same without the bundle's
    noise gate (what the runtime did before it). ``user_state``: with a user's enrollment (and cut)."""
    import numpy as np

    from edgessl.edge_runtime.adapt import DEFAULT_METHOD, build_adapter
    from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime

    rng = np.random.default_rng(seed)
    rest = np.array([0.0, 0.0, 1.0])
    out: dict[str, Any] = {}
    kinds = {f"noise_{g}g": (lambda g=g: rng.normal(0, g, (int(100 * rng.uniform(0.3, 2.0)), 3))) for g in (0.05, 0.3, 1.0)}
    tt = np.arange(20) / 100.0
    kinds["knock"] = lambda: (rng.uniform(0.5, 2.0) * np.exp(-tt / 0.05) * np.sin(2 * np.pi * 30 * tt))[:, None] * rng.normal(size=3)
    decision = DecisionConfig(report_unknown=True, roughness_threshold=None if noise_gate else float("inf"))
    with GestureRuntime(bundle, decision=decision, adapter=build_adapter(DEFAULT_METHOD), user_state=user_state) as rt:
        for name, make in kinds.items():
            parts = [rest + rng.normal(0, 0.003, (200, 3))]
            for _ in range(n):
                parts += [rest + make(), rest + rng.normal(0, 0.003, (200, 3))]
            x = np.concatenate(parts).astype(np.float32)
            rt.gap(None, timeline_reset=True)
            t = 1000.0 * (1 + len(out)) + np.arange(len(x)) / 100.0
            events = [e for i in range(0, len(x), 10) for e in rt.feed(x[i : i + 10], t[i : i + 10])]
            reasons = [e.reason for e in events if e.label == "unknown"]
            out[name] = {"bursts": n, "false_events": sum(e.label != "unknown" for e in events),
                         "unknown": {r: reasons.count(r) for r in sorted(set(reasons), key=str)}}  # fmt: skip
    return out


def take_distance(bundle: Path, state: Path, user: str, seed: int, seconds: float = 400.0) -> dict[str, Any]:
    """The enrolled user's session (``SyntheticPerson(user, seed)``, as ``edgessl simulate`` plays it) replayed
    through ``GestureRuntime`` with the state, the distance to an enrolled take counted in full
    (``TAKE_DISTANCE_FACTOR`` 1, before the twentieth session) and halved (2, as shipped): right / wrong /
    not named per performed gesture (the performance's most-overlapping event)."""
    import numpy as np

    import edgessl.edge_runtime.enroll as enroll
    from edgessl.datasets.synthetic import SyntheticPerson
    from edgessl.edge_runtime.runtime import DecisionConfig, GestureRuntime

    person = SyntheticPerson(user, seed=seed)
    x = person.next(int(100 * seconds)).T
    t = np.arange(len(x)) / 100.0
    done = [p for p in person.performances if p.end / 100 < seconds - EDGE_S]
    shipped, out = enroll.TAKE_DISTANCE_FACTOR, {}
    try:
        for factor in (1.0, 2.0):
            enroll.TAKE_DISTANCE_FACTOR = factor
            with GestureRuntime(bundle, decision=DecisionConfig(report_unknown=True), user_state=state) as rt:
                events = [e for i in range(0, len(t), 10) for e in rt.feed(x[i : i + 10], t[i : i + 10])]
            right = wrong = 0
            for p in done:
                ov = [(min(p.end / 100, e.window_end) - max(p.start / 100, e.window_start), e) for e in events]
                best = max(ov, key=lambda o: o[0], default=(0.0, None))
                if best[0] > 0 and best[1] is not None and best[1].label != "unknown":
                    right += best[1].label == p.label
                    wrong += best[1].label != p.label
            out[f"factor_{factor:g}"] = {"performed": len(done), "right": right, "wrong": wrong,
                                         "not_named": len(done) - right - wrong}  # fmt: skip
    finally:
        enroll.TAKE_DISTANCE_FACTOR = shipped
    return out


def read_jsonl_text(text: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip().startswith("{")]


def journey(work: Path, speed: float, count: int = 10, free_s: float = 180.0, live_s: float = 240.0,
            epochs: int | None = None, base_seed: int = 0, user: str = "A", method: str | None = None
            ) -> dict[str, Any]:  # fmt: skip
    """The whole journey in ``work`` by ``user`` (another person: B, or C when ``user`` is B); the simulator's
    sessions use seeds ``base_seed`` + 1, 2, 3."""
    other = "C" if user == "B" else "B"
    ds, steps = work / "my_gestures", {}
    more = ["--epochs", str(epochs)] if epochs else []
    with simulator("--perform", "cue", "--user", user, "--seed", str(base_seed + 1), "--speed", str(speed),
                   "--log", str(work / "performed_capture.jsonl")) as port:  # fmt: skip
        _, steps["record_labelled"] = edgessl("record", "--port", port, "--out", str(ds), "--user", user, "--label",
                                              ",".join(GESTURES), "--count", str(count), "--countdown", "0")  # fmt: skip
    with simulator("--user", user, "--seed", str(base_seed + 2), "--speed", str(speed)) as port:
        _, steps["record_unlabelled"] = edgessl("record", "--port", port, "--out", str(ds), "--user", user,
                                                "--seconds", str(free_s / speed))  # fmt: skip
    r, steps["data_info"] = edgessl("data", "info", f"dir:{ds}", "--json")
    info = read_jsonl_text(r.stdout)
    how = ["--method", method] if method else []  # default: pretrain's own
    _, steps["pretrain"] = edgessl("pretrain", "--data", f"dir:{ds}", "--out", str(work / "pre"), "--quiet", *more, *how)
    _, steps["finetune"] = edgessl("finetune", "--data", f"dir:{ds}", "--init", str(work / "pre"), "--out",
                                   str(work / "ft"), "--quiet", *more)  # fmt: skip
    bundle = work / "my_gestures.essl"
    _, steps["export"] = edgessl("export", str(work / "ft"), "--out", str(bundle))
    manifest = _manifest(bundle)
    same, steps["run_same_user"] = live(bundle, work, user, base_seed + 3, live_s, speed)
    new, steps["run_new_user"] = live(bundle, work, other, base_seed + 3, live_s, speed)
    # the other person enrolls each gesture once, as the README (and run's advice) says, then the same session
    state = work / f"{other}.npz"
    with simulator("--perform", "cue", "--user", other, "--seed", str(base_seed + 5), "--speed", str(speed)) as port:
        _, steps["enroll_new_user"] = edgessl("enroll", str(bundle), "--port", port, "--state", str(state),
                                              "--calibrate", "--countdown", "0")  # fmt: skip
    enrolled, steps["run_new_user_enrolled"] = live(bundle, work, other, base_seed + 3, live_s, speed, state)
    not_gestures = junk(bundle, base_seed + 4)
    without_gate = junk(bundle, base_seed + 4, noise_gate=False)
    with_state = junk(bundle, base_seed + 4, user_state=state)
    take = take_distance(bundle, state, other, base_seed + 6)
    metrics = json.loads((work / "ft" / "metrics.json").read_text())
    return {
        "steps_wall_s": {k: round(v, 1) for k, v in steps.items()},
        "data_info": info[-1] if info else None,
        "finetune_metrics": {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))},
        "decision_calibration": manifest.get("decision_calibration"),
        "confidence_threshold": manifest.get("confidence_threshold"),
        "ood_threshold": manifest.get("ood_threshold"),
        "roughness_threshold": manifest.get("roughness_threshold"),
        "verification": {k: manifest["verification"].get(k) for k in ("top1_agreement", "verified_on")},
        "segmentation": manifest.get("segmentation"),
        "live_same_user_new_session": same,
        "live_new_user": new,
        "live_new_user_enrolled": enrolled,
        "not_gestures": not_gestures,
        "not_gestures_enrolled": with_state,
        "enrolled_take_distance": take,
        "not_gestures_without_noise_gate": without_gate,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the repeats of the figures the issue asks for."""
    import numpy as np

    out: dict[str, Any] = {"repeats": len(runs)}
    for who in ("live_same_user_new_session", "live_new_user", "live_new_user_enrolled"):
        for key in ("accuracy", "reported_fraction", "false_events_per_idle_minute"):
            v = np.array([r[who][key] for r in runs], float)
            out[f"{who}.{key}"] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)), 4) if len(v) > 1
                                   else 0.0, "values": [round(float(x), 4) for x in v]}  # fmt: skip
        out[f"{who}.reported_vs_performed"] = [f"{r[who]['reported']}/{r[who]['performed']}" for r in runs]
    for kind in runs[0]["not_gestures"]:
        for key in ("not_gestures", "not_gestures_without_noise_gate", "not_gestures_enrolled"):
            out[f"{key}.{kind}.false_events"] = [f"{r[key][kind]['false_events']}/{r[key][kind]['bursts']}" for r in runs]
    for f in runs[0]["enrolled_take_distance"]:
        out[f"enrolled_take_distance.{f}.right_wrong_of"] = [
            "{right}/{wrong}/{performed}".format(**r["enrolled_take_distance"][f]) for r in runs]
    for step in runs[0]["steps_wall_s"]:
        out[f"wall_s.{step}"] = round(float(np.mean([r["steps_wall_s"][step] for r in runs])), 1)
    return out


def _manifest(bundle: Path) -> dict[str, Any]:
    from edgessl.edge_runtime.bundle import open_bundle

    return open_bundle(bundle).manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=8.0, help="simulator playback speed (signals are unchanged)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "own_data.json"))
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    ap.add_argument("--repeats", type=int, default=3, help="whole journeys, each with its own sessions (seeds)")
    ap.add_argument("--user", default="A", help="the simulated person who records (A; D: slow, small gestures)")
    ap.add_argument("--pretrain-method", default="vicreg",
                    help="pretrain's --method (default: the README's, vicreg; simclr is pretrain's own default)")
    a = ap.parse_args()
    runs = []
    for k in range(a.repeats):
        with repeat_dir(a.keep, k) as work:
            runs.append(journey(work, a.speed, base_seed=10 * k, user=a.user, method=a.pretrain_method))
            print(json.dumps(runs[-1]["live_same_user_new_session"]), flush=True)
    res: dict[str, Any] = {"summary": summary(runs), "repeats": runs}
    res["protocol"] = (
        f"simulated board (edgessl simulate, synthetic person {a.user} cued by record's prompts, seed 1 + 10k for repeat "
        "k): 10 performances of each of 8 gestures + 180 s unlabelled (seed 2 + 10k) -> pretrain"
        f"{f' --method {a.pretrain_method}' if a.pretrain_method else ''}, finetune (default recipe), export, all "
        "defaults; live: edgessl run with default decisions (--show-unknown only reports what it answered "
        f"unknown) on 240 s of a new random session (seed 3 + 10k) of user {a.user} and of user {'C' if a.user == 'B' else 'B'}, "
        "and of that user again after enroll --calibrate (one take per gesture, cued simulator, seed 5 + 10k) with "
        "run --state, and offline (take_distance(): a 400 s session of that user, seed 6 + 10k, through GestureRuntime "
        "with the state, the distance to an enrolled take counted in full or halved); not gestures (junk(): "
        "20 bursts each of white noise 0.05/0.3/1 g and 20 knocks, the board at rest between, through "
        "GestureRuntime with the default decisions and adaptation; also with the other user's state): false events = events naming a gesture; a performance is reported "
        "when the event overlapping it most is not 'unknown'; accuracy = right / performed; wall times at the "
        "simulator's speed (recording and run take speed x longer in real time); mean ± std over the repeats"
    )
    res["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "speed": a.speed}
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
