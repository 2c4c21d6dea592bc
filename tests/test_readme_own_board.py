"""The README's "your own board" section, run as written against the simulated board.

The commands are read from the README between its ``own-board`` markers. Only what a test cannot do as a user
does is changed: the port is a simulated person's pseudo-terminal (cued by ``record``'s prompts while
capturing, moving at random otherwise), the board plays 20× faster than real time (so the seconds of a free
recording and of the live commands shrink with it), the countdown is 0, and 5 performances per gesture stand in
for 10 to keep CI short (benchmarks/own_data.py walks the full journey). Training, export and run use the
defaults a user gets.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from own_data import read_jsonl, read_jsonl_text, score  # noqa: E402

SPEED = 20.0
PORT = "/dev/ttyACM0"


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- own-board:start -->\s*```bash\n(.*?)```\s*<!-- own-board:end -->", text, re.S)
    assert block, "README.md lost its own-board block"
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


@contextlib.contextmanager
def board(tmp: Path, *args: str) -> Iterator[str]:
    p = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", "--speed", str(SPEED), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)  # fmt: skip
    try:
        assert p.stdout is not None
        yield p.stdout.readline().strip()
    finally:
        p.terminate()
        p.wait(10)


def edgessl(tmp: Path, args: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "edgessl", *args], capture_output=True, text=True, cwd=tmp, timeout=600)
    assert r.returncode == 0, f"edgessl {' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]}"
    return r


def with_port(cmd: list[str], port: str) -> list[str]:
    return [port if a == PORT else a for a in cmd]


def scaled_seconds(cmd: list[str]) -> list[str]:
    i = cmd.index("--seconds")
    return cmd[: i + 1] + [str(float(cmd[i + 1]) / SPEED)] + cmd[i + 2 :]


@pytest.mark.slow
def test_readme_own_board_journey(tmp_path):
    cmds = readme_commands()
    assert [c[1] for c in cmds] == ["devices", "monitor", "record", "record", "data", "pretrain", "finetune",
                                    "export", "run"]  # fmt: skip
    assert all(c[0] == "edgessl" for c in cmds)
    devices, monitor, free, guided, info, pretrain, finetune, export, run = (c[1:] for c in cmds)

    with board(tmp_path, "--user", "A", "--seed", "2") as port:
        listed = edgessl(tmp_path, [*devices, port]).stdout
        assert port in listed and "acc_x" in listed  # the simulated board answered IDENTIFY
        shown = edgessl(tmp_path, [*with_port(monitor, port), "--seconds", "1.5"]).stdout
        assert "acc_x" in shown and "Hz" in shown
        edgessl(tmp_path, scaled_seconds(with_port(free, port)))
    i = guided.index("--count")
    guided = [*guided[: i + 1], "5", *guided[i + 2 :], "--countdown", "0"]
    with board(tmp_path, "--user", "A", "--seed", "1", "--perform", "cue") as port:
        edgessl(tmp_path, with_port(guided, port))

    r = edgessl(tmp_path, [*info, "--json"])
    counts = read_jsonl_text(r.stdout)[-1]
    assert counts["per_class"] == {g: 5 for g in guided[guided.index("--label") + 1].split(",")}
    edgessl(tmp_path, pretrain)
    edgessl(tmp_path, finetune)
    edgessl(tmp_path, export)

    log = tmp_path / "performed.jsonl"
    with board(tmp_path, "--user", "A", "--seed", "3", "--log", str(log)) as port:
        r = edgessl(tmp_path, [*with_port(run, port), "--json", "--show-unknown", "--seconds", "6"])
    res = score(read_jsonl(log), read_jsonl_text(r.stdout))
    # a new session of the person who recorded, with run's default decisions: most gestures reported, and
    # those reported mostly right (the benchmark with 10 per class measures the real figure)
    assert res["performed"] >= 10, res
    assert res["reported"] >= 0.6 * res["performed"], res
    assert res["right"] >= 0.8 * res["reported"], res
    json.dumps(res)
