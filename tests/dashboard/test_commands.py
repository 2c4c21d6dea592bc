"""``monitor --serve`` and ``record --serve`` feed the page too (read over its event stream, no browser)."""

from __future__ import annotations

import http.client
import json
import time
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
        msgs = stream_until(url, lambda m: any(sum((x.get("status") or {}).get("counts", {}).values()) >= 1 for x in m))
    prompts = [x["prompt"] for x in msgs if x.get("prompt")]
    assert prompts and prompts[0]["label"] in ("circle_cw", "left") and prompts[0]["of"] == 1
    assert {p["state"] for p in prompts} & {"ready", "go"}
    status = next(x["status"] for x in reversed(msgs) if x.get("status"))
    assert status["wanted"] == 1 and set(status["counts"]) == {"circle_cw", "left"}
