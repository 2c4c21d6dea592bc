"""Host programs around the generated C library, and building them with the strict flags (tests only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgessl.export.c_model import cflags_strict

# windows (float32 [N][C*T]) in; logits [N][K] then embedding [N][D] per window out
RUN_MODEL = r"""
#include <stdio.h>
#include "essl_model.h"

int main(int argc, char **argv)
{
    static float w[ESSL_MODEL_CHANNELS * ESSL_MODEL_LENGTH];
    float logits[ESSL_MODEL_CLASSES], emb[ESSL_MODEL_EMBED_DIM];
    FILE *in, *out;
    if (argc != 3 || (in = fopen(argv[1], "rb")) == NULL || (out = fopen(argv[2], "wb")) == NULL) return 2;
    while (fread(w, sizeof w, 1, in) == 1) {
        if (essl_model_run(w, logits, emb) != ESSL_MODEL_OK) return 3;
        fwrite(logits, sizeof logits, 1, out);
        fwrite(emb, sizeof emb, 1, out);
    }
    fclose(in);
    fclose(out);
    return 0;
}
"""

# records (uint32 t_ms, float x[C]) in; one line per event, then the counters
RUN_STREAM = r"""
#include <stdio.h>
#include "essl_stream.h"

int main(int argc, char **argv)
{
    static essl_stream_t s;
    uint32_t t;
    float x[ESSL_MODEL_CHANNELS];
    essl_event_t ev;
    FILE *in;
    if (argc != 2 || (in = fopen(argv[1], "rb")) == NULL) return 2;
    essl_stream_init(&s);
    while (fread(&t, sizeof t, 1, in) == 1 && fread(x, sizeof x, 1, in) == 1) {
        if (essl_stream_push(&s, x, t, &ev) == ESSL_STREAM_EVENT) {
            printf("%d %u %u %.6f %.6f %u\n", (int)ev.label, (unsigned)ev.t_start_ms, (unsigned)ev.t_end_ms,
                   (double)ev.confidence, (double)ev.ood_score, (unsigned)ev.reason);
        }
    }
    fclose(in);
    printf("stats %u %u %u %u %u %u %u %u %u %u %u\n", (unsigned)s.stats.samples, (unsigned)s.stats.segments,
           (unsigned)s.stats.events, (unsigned)s.stats.suppressed, (unsigned)s.stats.window_resets,
           (unsigned)s.stats.timeline_resets, (unsigned)s.stats.too_short, (unsigned)s.stats.too_long,
           (unsigned)s.stats.not_in_g, (unsigned)s.stats.cut_off, (unsigned)s.stats.jittered);
    return 0;
}
"""


def compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (gcc, cc or clang) on PATH: the generated C cannot be built here")
    return cc


def build(src_dir: Path, main: str, name: str, sources: list[str]) -> Path:
    """Compile ``main`` with the library files ``sources`` of ``src_dir`` under the strict flags."""
    (src_dir / f"{name}.c").write_text(main)
    exe = src_dir / name
    cmd = [compiler(), *cflags_strict(), "-O2", "-I", str(src_dir), "-o", str(exe), str(src_dir / f"{name}.c"),
           *(str(src_dir / s) for s in sources), "-lm"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    return exe


def run_model(exe: Path, X: np.ndarray, classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[N, K]`` and embeddings ``[N, D]`` of windows ``X [N, C, T]`` from the C library."""
    work = exe.parent
    np.ascontiguousarray(X, np.float32).tofile(work / "windows.bin")
    r = subprocess.run([str(exe), str(work / "windows.bin"), str(work / "out.bin")], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    o = np.fromfile(work / "out.bin", np.float32).reshape(len(X), classes + dim)
    return o[:, :classes], o[:, classes:]


def run_stream(
    exe: Path, samples: np.ndarray, t_ms: np.ndarray
) -> tuple[list[tuple[int, int, int, float, float, int]], list[int]]:
    """Events ``(label, t_start_ms, t_end_ms, confidence, ood, reason)`` of a stream, and the counters."""
    rec = np.zeros(len(samples), dtype=[("t", "<u4"), ("x", "<f4", (samples.shape[1],))])
    rec["t"], rec["x"] = t_ms, samples
    rec.tofile(exe.parent / "stream.bin")
    r = subprocess.run([str(exe), str(exe.parent / "stream.bin")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    events = [
        (int(a), int(b), int(c), float(d), float(e), int(f)) for a, b, c, d, e, f in (x.split() for x in lines[:-1])
    ]
    return events, [int(x) for x in lines[-1].split()[1:]]
