"""``edgessl enroll --calibrate`` with one take per gesture: how often an enrollment is refused because it would
turn another gesture's enrolled take into it, and what to ask the user to perform next. Writes
benchmarks/results/calibration.json.

Protocol: a segment bundle of the 8 synthetic gestures (``edgessl demo``'s). Per held-out synthetic user
(ids ``--users``, none of them in the demo's training set, ids 0–7): each gesture performed once, in the
bundle's label order, enrolled through ``GestureRuntime.enroll`` (what ``--calibrate`` does); accuracy on 30
further performances of each gesture by the same user (``GestureRuntime.classify`` with the bundle's decisions;
``unknown`` counts as wrong). For the first refused gesture of a user, from the state as the calibration left
it, three ways on:
  * ``again_3``: the refused gesture enrolled again with 3 takes (the advice before this benchmark);
  * ``remedy``: ``EnrollReport.remedy`` — 2 more takes of each gesture the refused enrollment would have
    turned, then the refused gesture once more (what ``enroll`` now prompts in one more round);
  * ``forced``: the refused take added without the guard (what the guard protects against).
Takes and test performances are fresh draws of the simulator's gesture model (no sensor rotation).

    edgessl demo --out /tmp/demo && python benchmarks/calibration.py --bundle /tmp/demo/model.essl [--users 8 88]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgessl.datasets.synthetic import GESTURES, make_gesture, make_user
from edgessl.edge_runtime.enroll import _unit
from edgessl.edge_runtime.runtime import GestureRuntime
from edgessl.preprocess import resample_to_length

NOISE_G = 0.015  # the simulator's default sensor noise
PROTOCOL = __doc__.split("\n\n", 1)[1].split("\n\n    edgessl demo")[0].replace("\n", " ")


def takes(rt: GestureRuntime, user, label: str, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([resample_to_length(make_gesture(GESTURES.index(label), user, 100.0, rng, NOISE_G), rt.window)
                     for _ in range(n)]).astype(np.float32)  # fmt: skip


def accuracy(rt: GestureRuntime, test: dict[str, np.ndarray]) -> float:
    ok = sum(p.label == lb for lb, x in test.items() for p in rt.classify(x))
    return ok / sum(len(x) for x in test.values())


def restore(rt: GestureRuntime, state) -> None:
    rt.user_state = copy.deepcopy(state)
    rt._use_state()


def one_user(bundle: str, uid: int) -> dict:
    user = make_user(0, uid)  # the demo's synthetic data set: seed 0
    with GestureRuntime(bundle) as rt:
        test = {lb: takes(rt, user, lb, np.random.default_rng([uid, 99]), 30) for lb in rt.labels}
        row: dict = {"user": uid, "no_state": accuracy(rt, test)}
        rng = np.random.default_rng([uid, 5])
        reports = [rt.enroll(lb, takes(rt, user, lb, rng, 1)) for lb in rt.labels]
        row["calibrated"] = accuracy(rt, test)
        refused = [r for r in reports if not r.accepted]
        row["refused"] = [{"label": r.label, "reason": r.reason, "remedy": r.remedy} for r in refused]
        if not refused:
            return row
        r0, left = refused[0], copy.deepcopy(rt.user_state)
        again = rt.enroll(r0.label, takes(rt, user, r0.label, np.random.default_rng([uid, 6]), 3))
        row["again_3"] = {"accepted": again.accepted, "accuracy": accuracy(rt, test)}
        restore(rt, left)
        steps = [rt.enroll(lb, takes(rt, user, lb, np.random.default_rng([uid, 7, k]), n)).accepted
                 for k, (lb, n) in enumerate(r0.remedy)]  # fmt: skip
        row["remedy"] = {"accepted": steps, "accuracy": accuracy(rt, test)}
        restore(rt, left)
        st = rt.user_state
        assert st is not None
        e = rt.embed(takes(rt, user, r0.label, np.random.default_rng([uid, 5, 0]), 1))
        st.takes = np.concatenate([st.takes, _unit(e)])
        st.classes = np.concatenate([st.classes, [st.labels.index(r0.label)]])
        st.windows = None  # the embedding rule: the forced take has no window kept beside it
        rt._use_state()
        row["forced"] = {"accuracy": accuracy(rt, test)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True, help="a segment bundle of the synthetic gestures (edgessl demo's)")
    ap.add_argument("--users", type=int, nargs=2, default=[8, 88], help="held-out user ids, from and to (exclusive)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "calibration.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for uid in range(*a.users):
        rows.append(one_user(a.bundle, uid))
        print(json.dumps(rows[-1]), flush=True)
    hit = [r for r in rows if r["refused"]]

    def mean(xs: list[float]) -> float | None:
        return round(float(np.mean(xs)), 3) if xs else None

    summary = {
        "users": len(rows),
        "users_with_a_refusal": len(hit),
        "refusals": sum(len(r["refused"]) for r in rows),
        "accuracy_no_state_all_users": mean([r["no_state"] for r in rows]),
        "accuracy_calibrated_all_users": mean([r["calibrated"] for r in rows]),
        "again_3_accepted": sum(r["again_3"]["accepted"] for r in hit),
        "remedy_accepted": sum(all(r["remedy"]["accepted"]) for r in hit),
        "refused_users_accuracy": {"calibration_as_left": mean([r["calibrated"] for r in hit]),
                                   "again_3": mean([r["again_3"]["accuracy"] for r in hit]),
                                   "remedy": mean([r["remedy"]["accuracy"] for r in hit]),
                                   "forced": mean([r["forced"]["accuracy"] for r in hit])},
    }  # fmt: skip
    out = {"protocol": PROTOCOL, "bundle": Path(a.bundle).name, "summary": summary, "users": rows,
           "seconds": round(time.perf_counter() - t0, 1), "machine": platform.machine()}  # fmt: skip
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
