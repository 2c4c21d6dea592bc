"""``monitor --serve`` and ``record --serve`` feed the page too (read over its event stream, no browser)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from urllib.parse import urlsplit

from tests.dashboard.conftest import served, simulated_board


def stream_until(url: str, pred, timeout: float = 20) -> list[dict]:
    """The page's messages from ``/events`` until ``pred(messages)`` holds."""
    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    c.request("GET", "/events")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    got: list[dict] = []
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            line = r.fp.readline()
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:]))
                if pred(got):
                    return got
        raise AssertionError(f"not seen within {timeout} s: {str(got)[-1500:]}")
    finally:
        c.close()


def state_until(url: str, pred, timeout: float) -> dict:
    """``GET /state`` (no page open) until ``pred(state)`` holds."""
    end = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url + "state", timeout=5) as r:
            st = json.loads(r.read())
        if pred(st):
            return st
        if time.monotonic() > end:
            raise AssertionError(f"not seen within {timeout} s: {st}")
        time.sleep(0.2)


def test_before_the_board_the_page_says_what_it_waits_for_and_state_stays_current(tmp_path, small_bundle):
    port = str(tmp_path / "imu")  # not there yet: plugged in below
    with served(tmp_path, ["run", str(small_bundle), "--port", port, "--seconds", "60"]) as (url, _, _):
        st = state_until(url, lambda s: (s["status"].get("device") or {}).get("state") == "waiting", 30)
        assert st["status"]["device"]["port"] == port
        assert st["status"]["adaptation"]["method"] not in (None, "none")  # the configured method, before any data
        with simulated_board(tmp_path, "--speed", "1", "--seconds", "60", "--link", port):
            # no page is open, and /state is current all the same; the rate is the board's, not averaged with the wait
            st = state_until(url, lambda s: s["status"]["device"].get("delivered", 0) >= 300, 30)
    device = st["status"]["device"]
    assert device["state"] == "streaming" and 80 < device["rate_hz"] < 125, device


def test_monitor_serves_the_stream_and_the_device(tmp_path):
    with simulated_board(tmp_path, "--speed", "2", "--seconds", "60") as port, \
            served(tmp_path, ["monitor", "--port", port, "--seconds", "30"]) as (url, _, _):  # fmt: skip
        msgs = stream_until(url, lambda m: any((x.get("status") or {}).get("device", {}).get("delivered", 0) > 50
                                               for x in m) and sum(len(x.get("t", [])) for x in m) > 20)  # fmt: skip
    assert msgs[0]["type"] == "snapshot" and msgs[0]["meta"]["command"] == "monitor"
    meta = [x["meta"] for x in msgs if x.get("meta")][-1]  # the first may come before the device opened
    assert meta["channels"] and meta["labels"] == []  # no model: the stream only
    status = next(x["status"] for x in reversed(msgs) if x.get("status"))
    assert status["device"]["state"] == "streaming" and status["device"]["dropped"] == 0
    assert "adaptation" not in status


def test_record_serves_the_prompts_and_the_counts(tmp_path):
    with simulated_board(tmp_path, "--speed", "2", "--seconds", "60", "--perform", "cue") as port, \
            served(tmp_path, ["record", "--port", port, "--out", str(tmp_path / "data"), "--label", "circle_cw,left",
                              "--count", "1", "--countdown", "0.5"]) as (url, _, _):  # fmt: skip
        # to the end of the capture: its last take and counts reach the page before "end" (they were lost once)
        msgs = stream_until(url, lambda m: m[-1].get("type") == "end", timeout=40)
    prompts = [x["prompt"] for x in msgs if x.get("prompt")]
    assert prompts and prompts[0]["label"] in ("circle_cw", "left") and prompts[0]["of"] == 1
    assert {p["state"] for p in prompts} & {"ready", "go"} and prompts[-1] == {"state": "done"}
    statuses = [x["status"] for x in msgs if x.get("status")]
    assert statuses[-1]["device"]["state"] == "stopped" and statuses[-1]["device"]["rate_hz"] == 0.0
    last = next(st for st in reversed(statuses) if "counts" in st)
    assert last["wanted"] == 1 and last["counts"] == {"circle_cw": 1, "left": 1}
    assert sorted(t["label"] for t in last["takes"]) == ["circle_cw", "left"]
