"""The measured sample rate that ``run``'s and ``monitor``'s status lines and the live page show: one meter.

Samples per second of host time over the last :data:`RATE_WINDOW_S` seconds, never since the command
started: waiting for the port and unplugs do not drag it down afterwards, and it falls to 0 while nothing
arrives. The samples of the oldest block in the window are not counted (they arrived at its start), so a
backlog the port held when it was opened does not read as a burst of 1000 Hz; a pause longer than
:data:`PAUSE_S` since the last block counts against the rate (shorter: the next block is on its way).
"""

from __future__ import annotations

import collections

__all__ = ["RateMeter", "RATE_WINDOW_S"]

RATE_WINDOW_S = 2.0
PAUSE_S = 0.25  # between blocks, longer than a block's period at any rate the bridge delivers at


class RateMeter:
    """Arrivals of sample blocks -> samples per second over the last ``seconds`` of host time."""

    def __init__(self, seconds: float = RATE_WINDOW_S):
        if seconds <= 0:
            raise ValueError(f"seconds {seconds}: expected > 0")
        self.seconds = seconds
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque()  # (host time, samples)

    def add(self, t_host: float, n: int) -> None:
        """``n`` samples arrived at ``t_host`` (``time.monotonic()`` seconds)."""
        if n > 0:
            self._arrivals.append((t_host, n))

    def reset(self) -> None:
        self._arrivals.clear()

    def rate_hz(self, now: float) -> float:
        """Samples per second that arrived over the last ``seconds`` (0.0 when none did)."""
        a = self._arrivals
        while a and a[0][0] < now - self.seconds:
            a.popleft()
        if len(a) < 2:
            return 0.0
        span = max(a[-1][0] - a[0][0], now - a[0][0] - PAUSE_S)
        return (sum(n for _, n in a) - a[0][1]) / span if span > 0 else 0.0
