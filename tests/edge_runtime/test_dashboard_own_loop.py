"""docs/dashboard.md's "From your own Python loop", run as written: a service with its own reader serves the page
(a walkthrough's I2C service found the page's Python side only through help() and guessed its status dicts)."""

import json
import re
import urllib.request
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


def test_the_dashboard_docs_own_loop_example_runs_and_serves_the_stream(small_bundle, monkeypatch, tmp_path):
    from edgessl.datasets.synthetic import SyntheticPerson

    text = DOC.read_text(encoding="utf-8")
    section = text.split("## From your own Python loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    person = SyntheticPerson("A", 3, perform="circle_cw:3,left:3")
    x = person.next(2000).T.astype(np.float32)
    seen: dict = {}

    def my_reader():
        for i in range(0, len(x), 10):
            yield x[i : i + 10], np.arange(i, min(i + 10, len(x))) / 100.0

    def watch(feed_final):  # the page's state, read before the loop's end closes the server
        def final(*a, **kw):
            feed_final(*a, **kw)
            with urllib.request.urlopen(f"{seen['dash'].url}state", timeout=10) as r:
                seen["state"] = json.load(r)

        return final

    from edgessl.dashboard.server import Dashboard
    from edgessl.edge_runtime.dashboard_feed import Feed

    start = Dashboard.start

    def remember(self):
        seen["dash"] = self
        return start(self)

    monkeypatch.setattr(Dashboard, "start", remember)
    monkeypatch.setattr(Feed, "final", watch(Feed.final))
    code = code.replace('"model.essl")', f'{str(small_bundle)!r})').replace("port=8765", "port=0")
    exec(compile(code, str(DOC), "exec"), {"my_reader": my_reader})  # noqa: S102 - the documentation's own code
    state = seen["state"]
    assert state["samples_total"] == len(x) and state["events_total"] >= 4, state["events_total"]
    assert state["meta"]["channels"] == ["acc_x", "acc_y", "acc_z"] and state["meta"]["labels"]
    device = state["status"]["device"]
    assert device["delivered"] == len(x) and device["port"] == "i2c-1" and device["state"] == "stopped"
    assert "latency_ms" in state["status"]["runtime"]
