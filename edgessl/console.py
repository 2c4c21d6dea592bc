"""Small terminal displays shared by ``record`` and ``monitor`` (standard library + numpy)."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["sparkline", "unicode_ok"]

_BARS = "▁▂▃▄▅▆▇█"
_ASCII = " .:-=+*#"


def unicode_ok(stream=None) -> bool:
    """Whether ``stream`` (default stdout) can print the block characters of a sparkline."""
    enc = getattr(stream or sys.stdout, "encoding", None) or ""
    return enc.lower().replace("-", "") in ("utf8", "utf16", "utf32")


def sparkline(values: np.ndarray, width: int = 40, lo: float | None = None, hi: float | None = None,
              ascii_only: bool | None = None) -> str:  # fmt: skip
    """``values [n]`` as ``width`` characters (each the mean of its share), scaled to ``[lo, hi]``.

    NaN shares print as a space. Scale defaults to the values' own range.
    """
    bars = _ASCII if (not unicode_ok() if ascii_only is None else ascii_only) else _BARS
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0 or width < 1:
        return ""
    edges = np.linspace(0, v.size, min(width, v.size) + 1).astype(int)
    with np.errstate(invalid="ignore"):
        means = np.array([np.nanmean(v[a:b]) if np.any(np.isfinite(v[a:b])) else np.nan
                          for a, b in zip(edges[:-1], edges[1:], strict=True)])  # fmt: skip
    finite = means[np.isfinite(means)]
    if finite.size == 0:
        return " " * len(means)
    lo = float(finite.min()) if lo is None else lo
    hi = float(finite.max()) if hi is None else hi
    span = hi - lo if hi > lo else 1.0
    out = []
    for m in means:
        if not np.isfinite(m):
            out.append(" ")
            continue
        i = int(np.clip((m - lo) / span * (len(bars) - 1) + 0.5, 0, len(bars) - 1))
        out.append(bars[i])
    return "".join(out)


def counts_text(counts: dict[str, int]) -> str:
    """A counter for a person: ``{"crc": 2, "length": 1}`` -> ``3 (crc 2, length 1)``; ``{}`` -> ``0``."""
    total = sum(counts.values())
    parts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if v)
    return f"{total} ({parts})" if parts else str(total)


# why samples are missing (edgessl.firmware_bridge.transport.GAP_REASONS) in a word or two, for a summary line
GAP_WORDS = {"sequence": "frames lost", "timestamp": "samples skipped", "disconnect": "unplugged",
             "rejected": "samples removed", "clock-restart": "clock restarted", "time-jump": "clock jumped",
             "device-changed": "device changed"}  # fmt: skip


def gaps_text(gaps: dict[str, int]) -> str:
    """Gap counts by reason for a person: ``{"sequence": 2}`` -> ``2 (frames lost 2)``; ``{}`` -> ``0``."""
    return counts_text({GAP_WORDS.get(k, k): v for k, v in gaps.items()})
