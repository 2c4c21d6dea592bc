"""Small recorded sessions for the data set tests: idle noise with sine bursts as gestures (fast, no simulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgessl.datasets import SessionWriter

RATE = 50.0
CHANNELS = ["acc_x", "acc_y", "acc_z"]
LABELS = ["circle", "left", "up"]


def performance(label: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` float32: a burst on the label's axis (well above the segmenter's threshold)."""
    k = LABELS.index(label) if label in LABELS else 0
    x = rng.normal(0, 0.01, (n, 3))
    x[:, 2] += 1.0
    x[:, k % 3] += 0.6 * np.sin(np.linspace(0, (k + 1) * np.pi, n))
    return x.astype(np.float32)


def write_session(folder: Path, user: str, plan: list[str], seed: int = 0, *, kind: str = "labelled",
                  gap_in: int | None = None, reset_at: int | None = None) -> tuple[SessionWriter, list[tuple]]:  # fmt: skip
    """Record ``plan`` (labels) with idle between; returns the closed writer and ``(label, first, end)`` sample
    indices of each kept performance in the CSV. ``gap_in``: a gap of 0.5 s inside that performance (flagged); ``reset_at``: a
    device timeline reset before that performance."""
    rng = np.random.default_rng(seed)
    w = SessionWriter(folder, kind=kind, user=user, device={"port": "/dev/null", "name": "test"}, rate_hz=RATE,
                      channels=CHANNELS, units=["g"] * 3, segmentation={"threshold_g": 0.05})  # fmt: skip
    t_dev, written, kept = 5.0, 0, []

    def put(x: np.ndarray) -> np.ndarray:
        nonlocal t_dev, written
        t = t_dev + np.arange(len(x)) / RATE
        w.append(t, x)
        t_dev = float(t[-1]) + 1 / RATE
        written += len(x)
        return t

    put(rng.normal(0, 0.01, (40, 3)).astype(np.float32) + np.float32([0, 0, 1]))
    for i, label in enumerate(plan):
        if reset_at == i:
            w.gap(t_dev - 1 / RATE, 0.7, True)
            t_dev = 0.25  # the device clock restarts
        x = performance(label, 30 + 5 * (i % 3), rng)
        first = written
        if gap_in == i:
            t1 = put(x[:10])
            w.gap(float(t1[-1]), 0.5, False)  # longer than MAX_FILL_S: the loader does not bridge it
            t_dev += 0.5
            t2 = put(x[10:])
            t = np.concatenate([t1, t2])
        else:
            t = put(x)
        w.add_segment(label, float(t[0]), float(t[-1]) + 1 / RATE, energy=0.4, flags=[])
        kept.append((label, first, written))
        put(rng.normal(0, 0.01, (40, 3)).astype(np.float32) + np.float32([0, 0, 1]))
    w.close()
    return w, kept


def activity_csv(path: Path, seed: int) -> None:
    """Another tool's activity recording (a walkthrough's): 50 Hz, m/s² and deg/s, the labels in an `activity`
    column, long spans of walking (moving throughout) and sitting (still), short stand-ups, unlabelled between."""
    rng = np.random.default_rng(seed)
    rows, t = [], 0
    for label, seconds in (("WALKING", 15), ("", 2), ("SITTING", 15), ("SIT_TO_STAND", 2), ("", 2)) * 3:
        for i in range(int(seconds * 50)):
            walk = np.sin(2 * np.pi * 2 * i / 50) if label == "WALKING" else 0.0
            rise = np.sin(np.pi * i / 100) if label == "SIT_TO_STAND" else 0.0
            v = np.r_[rng.normal(0, 0.02, 3) + [0.3 * walk, 0.5 * rise, 1.0], rng.normal(0, 0.05, 3) + walk + rise]
            v[:3] *= 9.80665
            v[3:] *= 57.2958
            rows.append(f"{t},{','.join(f'{x:.5f}' for x in v)},{label}")
            t += 20
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("time_ms,ax,ay,az,gx,gy,gz,activity\n" + "\n".join(rows) + "\n")
