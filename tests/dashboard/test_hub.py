"""The hub between the command's loop and the pages: bounded, decimated, and free when nobody watches."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgessl.dashboard import hub as hub_mod
from edgessl.dashboard.hub import MAX_BLOCKS, PLOT_POINTS_PER_S, PLOT_SECONDS, Hub, clean


def messages(client) -> list[dict]:
    out = []
    while not client.queue.empty():
        raw = client.queue.get_nowait()
        assert raw.startswith(b"data: ") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2  # one SSE message
        out.append(json.loads(raw[6:]))
    return out


def feed(h: Hub, seconds: float, rate: float = 100.0, block: int = 10, t0: float = 0.0) -> None:
    n = int(seconds * rate)
    for i in range(0, n, block):
        t = t0 + np.arange(i, min(i + block, n)) / rate
        h.samples(t, np.stack([np.sin(t), np.cos(t), t], axis=1).astype(np.float32))


def test_the_loop_side_is_bounded_and_does_no_work_without_a_page():
    h = Hub()  # not started: no broadcaster at all; the loop's calls only append
    h.stream(["ax", "ay", "az"], ["g", "g", "g"], 100.0)
    feed(h, seconds=(MAX_BLOCKS + 500) / 10)  # blocks of 10 at 100 Hz: more blocks than are kept
    assert h.samples_total == (MAX_BLOCKS + 500) * 10
    assert len(h._blocks) == MAX_BLOCKS and h.counters["blocks_overwritten"] == 500
    for i in range(500):
        h.event({"label": "x", "i": i})
    assert len(h._events) == hub_mod.MAX_EVENTS
    assert not h.listening and h.counters["messages"] == 0


def test_a_page_gets_a_snapshot_then_decimated_updates():
    h = Hub()
    h.stream(["ax", "ay", "az"], ["g", "g", "g"], 400.0)  # 400 Hz: every 8th sample reaches the plot
    h.model(["circle", "left"], name="m.essl")
    c = h.attach()
    assert c is not None and h.listening
    feed(h, seconds=30, rate=400, block=40)  # a backlog longer than the plot
    h.event({"label": "circle", "confidence": 0.9, "end_wall": 1.0})
    h.probabilities(["circle", "left"], np.array([0.75, 0.25], np.float32), label="circle")
    h.status({"device": {"state": "streaming", "rate_hz": float("nan")}})
    h.tick()
    (snap,) = messages(c)
    assert snap["type"] == "snapshot" and snap["meta"]["channels"] == ["ax", "ay", "az"]
    assert snap["meta"]["labels"] == ["circle", "left"] and snap["samples_total"] == 12000
    t = np.array(snap["t"])
    assert t[-1] - t[0] <= PLOT_SECONDS and len(t) <= PLOT_POINTS_PER_S * PLOT_SECONDS + 1
    assert len(t) >= PLOT_POINTS_PER_S * PLOT_SECONDS * 0.9  # decimated, not starved
    assert np.allclose(np.diff(t), 8 / 400)
    assert snap["events"][0]["label"] == "circle" and snap["probabilities"]["probs"] == [0.75, 0.25]
    assert snap["status"]["device"]["rate_hz"] is None  # NaN is not JSON: null
    # then only what changed: 1 s of samples, 50 points per channel, the stride carried across blocks
    feed(h, seconds=1, rate=400, block=7, t0=30.0)
    h.tick()
    (up,) = messages(c)
    assert up["type"] == "update" and "events" not in up and "status" not in up and "meta" not in up
    assert len(up["t"]) == PLOT_POINTS_PER_S and len(up["x"][0]) == 3
    assert np.allclose(np.diff(np.r_[t[-1], up["t"]]), 8 / 400)
    h.tick()
    assert messages(c) == []  # nothing new, nothing sent
    h.event({"label": "left"})
    h.prompt({"label": "left", "take": 2, "of": 5, "state": "ready"})
    h.tick()
    (up,) = messages(c)
    assert [e["label"] for e in up["events"]] == ["left"] and up["prompt"]["take"] == 2


def test_a_new_device_or_timeline_restarts_the_plot():
    h = Hub()
    h.stream(["a"], ["g"], 50.0)
    c = h.attach()
    feed(h, 2, rate=50, block=5)
    h.tick()
    messages(c)
    feed(h, 1, rate=50, block=5, t0=0.0)  # the board restarted: its clock begins again
    h.tick()
    (up,) = messages(c)
    assert up["reset"] is True and up["t"][0] == 0.0 and len(up["t"]) == 50
    h.stream(["a", "b"], ["g", "dps"], 50.0)
    h.tick()
    (up,) = messages(c)
    assert up["reset"] is True and up["meta"]["channels"] == ["a", "b"] and up["t"] == []


def test_a_page_that_does_not_read_is_dropped_and_nothing_waits(monkeypatch):
    monkeypatch.setattr(hub_mod, "QUEUE_MESSAGES", 3)
    h = Hub()
    h.stream(["a"], ["g"], 100.0)
    slow, fast = h.attach(), h.attach()
    assert slow is not None and fast is not None
    got = []
    for i in range(6):
        feed(h, 0.2, t0=i * 0.2)
        h.tick()  # never blocks, whatever the pages do
        got += messages(fast)
    assert slow.dropped and h.clients == 1 and h.counters["slow_pages_dropped"] == 1
    assert len(got) == 6 and not fast.dropped


def test_the_number_of_pages_is_capped():
    h = Hub()
    clients = [h.attach() for _ in range(hub_mod.MAX_CLIENTS)]
    assert all(clients) and h.attach() is None
    h.detach(clients[0])
    assert h.attach() is not None


def test_the_broadcaster_sleeps_without_pages_and_ends_streams_on_close():
    h = Hub(update_hz=10)
    h.start()
    try:
        feed(h, 1)
        assert h.counters["messages"] == 0
        c = h.attach()
        assert c is not None
        first = c.queue.get(timeout=2)
        assert json.loads(first[6:])["type"] == "snapshot"
    finally:
        h.close(flush_s=0.1)
    rest = []
    while (m := c.queue.get(timeout=1)) is not None:  # None: the handler's signal to end
        rest.append(json.loads(m[6:]))
    # the last message says the command ended (a page must not take it for a lost connection)
    assert rest and rest[-1]["type"] == "end" and rest[-1]["reason"] == "stopped (the command ended)"
    assert h._thread is not None and not h._thread.is_alive()


def test_update_rate_is_bounded():
    with pytest.raises(ValueError, match="update_hz"):
        Hub(update_hz=30)


def test_clean_makes_json():
    got = clean({"a": np.float32(1.5), "b": [np.int64(2), float("inf")], "c": np.arange(2), 3: math.nan})
    assert got == {"a": 1.5, "b": [2, None], "c": [0, 1], "3": None}
    json.dumps(got, allow_nan=False)
