"""Augmentation throughput: batched torch ops vs the obvious per-sample numpy loop, same run, same data.

Writes benchmarks/results/augment.json. Protocol: windows of 3 x 315 (the UWave shape), batches of
512, torch limited to one thread (numpy's loop is single-threaded too, so the ratio measures batching,
not extra cores); each figure is the best of 5 repeats after a warm-up.

    python benchmarks/augment.py [--batch 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edgessl.trainer import augment as A

C, T = 3, 315


# --- the obvious per-sample numpy implementations (one window [C, T] at a time) ---------------------------
def np_flip_time(x, rng):
    return x[:, ::-1].copy()


def np_flip_sign(x, rng):
    return -x


def np_blockout(x, rng, fraction=0.1):
    y = x.copy()
    n = int(round(fraction * x.shape[1]))
    s = rng.integers(0, x.shape[1] - n + 1)
    y[:, s : s + n] = 0
    return y


def np_scaled_noise(x, rng, sigma=0.1):
    return x + sigma * x.std(axis=1, keepdims=True) * rng.normal(size=x.shape)


def np_jitter(x, rng, sigma=0.03):
    return x + sigma * rng.normal(size=x.shape)


def np_crop_resize(x, rng, min_scale=0.7):
    t = x.shape[1]
    span = rng.uniform(min_scale, 1.0) * (t - 1)
    start = rng.uniform(0, t - 1 - span)
    pos = np.linspace(start, start + span, t)
    return np.stack([np.interp(pos, np.arange(t), ch) for ch in x])


def np_magnitude_warp(x, rng, sigma=0.2):
    t = np.arange(x.shape[1])
    lam = rng.uniform(0, sigma)
    return np.stack([ch * (1 + lam * np.sin(2 * np.pi * t / x.shape[1] + rng.uniform(0, 2 * np.pi))) for ch in x])


def np_time_warp(x, rng, sigma=0.2, knots=4):
    t = x.shape[1]
    speed = np.exp(sigma * rng.normal(size=knots + 1))
    cum = np.concatenate([[0], np.cumsum(speed)])
    cum = cum / cum[-1] * (t - 1)
    pos = np.interp(np.linspace(0, knots + 1, t), np.arange(knots + 2), cum)
    return np.stack([np.interp(pos, np.arange(t), ch) for ch in x])


def np_smooth(x, rng, max_lambda=0.5):
    lam = rng.uniform(0, max_lambda)
    k = np.array([lam / 2, 1 - lam, lam / 2])
    return np.stack([np.convolve(np.pad(ch, 1, mode="edge"), k, mode="valid") for ch in x])


NUMPY = {
    "flip_time": np_flip_time, "flip_sign": np_flip_sign, "blockout": np_blockout, "scaled_noise": np_scaled_noise,
    "jitter": np_jitter, "crop_resize": np_crop_resize, "magnitude_warp": np_magnitude_warp,
    "time_warp": np_time_warp, "smooth": np_smooth,
}  # fmt: skip


def np_pipeline(batch, rng, pipe: A.Compose):
    out = []
    for x in batch:
        for op in pipe.ops:
            if rng.random() < op.p:
                x = NUMPY[op.op](x, rng, **op.params)
        out.append(x)
    return np.stack(out)


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "augment.json"))
    args = ap.parse_args()
    all_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    xb_np = rng.normal(size=(args.batch, C, T)).astype(np.float32)
    xb = torch.from_numpy(xb_np)
    g = torch.Generator().manual_seed(0)
    rows = {}
    for name, np_fn in NUMPY.items():
        t_torch = best_time(lambda name=name: A.Augmentation(name, 1.0)(xb, g), args.repeats)
        t_np = best_time(lambda np_fn=np_fn: np.stack([np_fn(x, rng) for x in xb_np]), args.repeats)
        rows[name] = {
            "torch_batched_windows_per_s": round(args.batch / t_torch),
            "numpy_loop_windows_per_s": round(args.batch / t_np),
            "speedup": round(t_np / t_torch, 1),
        }
        print(f"{name:15s} torch {args.batch / t_torch:12.0f} w/s   numpy loop {args.batch / t_np:10.0f} w/s   "
              f"x{t_np / t_torch:.1f}")  # fmt: skip
    pipe = A.default_pipeline()
    t_torch = best_time(lambda: pipe(xb, g), args.repeats)
    t_np = best_time(lambda: np_pipeline(xb_np, rng, pipe), args.repeats)
    rows["default_pipeline"] = {
        "ops": repr(pipe),
        "torch_batched_windows_per_s": round(args.batch / t_torch),
        "numpy_loop_windows_per_s": round(args.batch / t_np),
        "speedup": round(t_np / t_torch, 1),
    }
    torch.set_num_threads(all_threads)
    t_torch_all = best_time(lambda: pipe(xb, g), args.repeats)
    torch.set_num_threads(1)
    rows["default_pipeline"]["torch_batched_all_threads_windows_per_s"] = round(args.batch / t_torch_all)
    rows["default_pipeline"]["speedup_all_threads"] = round(t_np / t_torch_all, 1)
    rows["default_pipeline"]["threads"] = all_threads
    print(f"default pipeline: torch {args.batch / t_torch:.0f} w/s, numpy loop {args.batch / t_np:.0f} w/s, "
          f"x{t_np / t_torch:.1f} (target >= 20x)")  # fmt: skip
    result = {
        "protocol": f"batches of {args.batch} windows of {C}x{T}, float32, torch.set_num_threads(1), best of "
        f"{args.repeats} after a warm-up; numpy baseline is a per-sample Python loop (np.interp, np.convolve)",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__, "numpy": np.__version__},  # fmt: skip
        "target_speedup_pipeline": 20,
        "met": rows["default_pipeline"]["speedup"] >= 20,
        "why_not_met": (
            "On one thread the batched pipeline is bound by random-number generation and memory traffic: "
            "scaled_noise (p=0.8) alone draws ~400k normals per batch of 512 (about 3 ms), and the row gathers "
            "for ops with p<1 copy data. The per-sample numpy loop skips ops by probability, so its cost per "
            "window is only ~0.2-0.35 ms. Ops that do real arithmetic per sample (smooth, magnitude warp) reach "
            "20-50x; RNG-bound ops (noise, jitter) reach 4-8x. The numpy loop's speed varied 2x between runs "
            "on this shared 2-core machine, so the ratio moves with it."
        ),
        "ops": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
