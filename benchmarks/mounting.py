"""A board mounted another way (turned in its case, worn the other way round): what `edgessl enroll --calibrate`
gives back now that it finds the mounting. Writes benchmarks/results/mounting.json.

The own-board model of simulated user A is built as the README builds it (benchmarks/remount.py's build: 10
cued takes of each gesture and 180 s of free movement, pretrain, finetune, export, all defaults). Then, for
each person (A, who trained it; B, another) and each mounting (`edgessl simulate --faults mount=DEG`, one
oblique axis; 0 = as recorded): a calibration (`edgessl enroll --calibrate`, one take of each gesture, cued,
on the turned board: it finds the mounting and enrolls) and a new random session of that person on the same
turned board through `edgessl run` with the default decisions and adaptation, three times: without a state;
with the calibration's state; and with the same takes enrolled without the mounting (what `enroll` did before:
the state rebuilt through the API from the calibration's takes turned back into the board's axes, through
the same guards). Accuracy = right / performed (`unknown` is not right), own_data.score; mean ± std over the
repeats (each its own model and sessions).

    python benchmarks/mounting.py [--repeats 3] [--speed 8] [--seconds 400] [--keep DIR]
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from own_data import edgessl, read_jsonl, read_jsonl_text, repeat_dir, score, simulator  # noqa: E402
from remount import board_args, build  # noqa: E402

CASES = [("A", 0), ("A", 30), ("A", 90), ("A", 180), ("B", 0), ("B", 90)]


def calibrate(bundle: Path, state: Path, user: str, seed: int, speed: float, faults: list[str]) -> dict[str, Any]:
    with simulator("--perform", "cue", "--user", user, "--seed", str(seed), "--speed", str(speed), *faults) as port:
        r, _ = edgessl("enroll", str(bundle), "--port", port, "--state", str(state), "--calibrate", "--countdown",
                       "0", "--json")  # fmt: skip
    lines = read_jsonl_text(r.stdout)
    mount = next((ln["mounting"] for ln in lines if "mounting" in ln), None)
    return {"mounting": None if mount is None else {k: mount[k] for k in ("accepted", "angle_deg", "gain", "right_before",
                                                                          "right_after", "takes")},
            "enrolled": next((ln["stats"].get("enrolled") for ln in reversed(lines) if "stats" in ln), None)}  # fmt: skip


def without_mounting(bundle: Path, state: Path, out: Path) -> dict[str, Any]:
    """The calibration's takes (turned back into the board's axes) enrolled as before: no mounting."""
    from edgessl.edge_runtime.enroll import UserState
    from edgessl.edge_runtime.runtime import GestureRuntime

    st = UserState.load(state)
    assert st.windows is not None
    board = st.windows if st.mounting is None else np.einsum("ji,njt->nit", st.mounting, st.windows)  # Rᵀ
    with GestureRuntime(bundle) as rt:
        reports = [rt.enroll(lb, board[st.classes == c]) for c, lb in enumerate(st.labels) if (st.classes == c).any()]
        if rt.user_state is not None and any(r.accepted for r in reports):
            rt.user_state.save(out)
    return {"refused": [r.label for r in reports if not r.accepted]}


def session(bundle: Path, work: Path, name: str, user: str, seed: int, seconds: float, speed: float,
            faults: list[str], state: Path | None) -> dict[str, Any]:  # fmt: skip
    log = work / f"performed_{name}.jsonl"
    with simulator("--user", user, "--seed", str(seed), "--speed", str(speed), "--log", str(log), *faults) as port:
        r, _ = edgessl("run", str(bundle), "--port", port, "--json", "--show-unknown", "--seconds", str(seconds / speed),
                       *(["--state", str(state)] if state is not None and state.exists() else []))  # fmt: skip
    s = score(read_jsonl(log), read_jsonl_text(r.stdout))
    return {k: s[k] for k in ("accuracy", "performed", "right", "answered_unknown")} | {
        "state": state is not None and state.exists()}


def main() -> None:
    a = board_args(__doc__, 400.0, "mounting.json")
    runs = []
    for k in range(a.repeats):
        with repeat_dir(a.keep, k) as work:
            bundle = work / "my_gestures.essl"
            if not bundle.exists():
                bundle = build(work, a.speed, 10 * k)
            run: dict[str, Any] = {}
            for user, deg in CASES:
                faults = ["--faults", f"mount={deg}"] if deg else []
                name = f"{user}{deg}"
                state, before = work / f"{name}.npz", work / f"{name}_without_mounting.npz"
                cal = calibrate(bundle, state, user, 10 * k + 5, a.speed, faults)
                cal |= without_mounting(bundle, state, before) if state.exists() else {"refused": "all"}
                live = 10 * k + 7
                run[name] = {"calibration": cal,
                             "no_state": session(bundle, work, f"{name}_none", user, live, a.seconds, a.speed, faults, None),
                             "enrolled_without_mounting": session(bundle, work, f"{name}_before", user, live, a.seconds,
                                                                  a.speed, faults, before),
                             "calibrated": session(bundle, work, f"{name}_cal", user, live, a.seconds, a.speed, faults,
                                                   state)}  # fmt: skip
                print(k, name, json.dumps({v: run[name][v]["accuracy"] for v in ("no_state", "enrolled_without_mounting",
                                                                                  "calibrated")}),
                      json.dumps(cal["mounting"]), flush=True)  # fmt: skip
            runs.append(run)
    summary: dict[str, Any] = {}
    for name in runs[0]:
        for v in ("no_state", "enrolled_without_mounting", "calibrated"):
            x = np.array([r[name][v]["accuracy"] for r in runs], float)
            summary[f"{name}.{v}"] = {"mean": round(float(x.mean()), 4), "std": round(float(x.std(ddof=1)), 4)
                                      if len(x) > 1 else 0.0, "values": [round(float(t), 4) for t in x]}  # fmt: skip
        summary[f"{name}.mounting_kept"] = [bool(r[name]["calibration"]["mounting"] and
                                                 r[name]["calibration"]["mounting"]["accepted"]) for r in runs]  # fmt: skip
    res = {"summary": summary, "repeats": runs, "protocol": " ".join(__doc__.split("\n\n")[1].split()),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "speed": a.speed,
                       "seconds": a.seconds}}  # fmt: skip
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
