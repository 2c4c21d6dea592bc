"""The one rate meter of ``run``'s and ``monitor``'s status lines and the live page: recent, not since the start."""

from __future__ import annotations

import pytest

from edgessl.edge_runtime.rate import RateMeter


def test_the_rate_is_recent_and_a_backlog_at_open_is_no_burst():
    m = RateMeter(2.0)
    m.add(0.0, 500)  # what the port held when it was opened, all at once
    for i in range(1, 11):
        m.add(i * 0.1, 10)  # then 100 Hz in blocks of 10
    assert m.rate_hz(1.0) == pytest.approx(100.0)
    assert m.rate_hz(4.0) == 0.0  # unplugged: nothing arrives, nothing is shown
    for i in range(1, 21):
        m.add(4.0 + i * 0.1, 10)
    assert m.rate_hz(6.0) == pytest.approx(100.0)  # back: the outage is not averaged in
    assert m.rate_hz(6.05) == pytest.approx(100.0)  # between two blocks: no dip
    assert 0 < m.rate_hz(7.0) < 60  # nothing for a second: falling


def test_nothing_yet_reads_zero():
    m = RateMeter()
    assert m.rate_hz(0.0) == 0.0
    m.add(0.0, 10)
    assert m.rate_hz(0.5) == 0.0
    with pytest.raises(ValueError, match="seconds"):
        RateMeter(0)
