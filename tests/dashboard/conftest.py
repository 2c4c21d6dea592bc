"""Helpers of the dashboard's tests: a headless Chromium driven by Selenium, a simulated board, a served run."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# this machine's closed network refuses Chromium's background connections: switch them off, and the sandbox
# (root in a container) and the GPU (none)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,945", "--hide-scrollbars"]  # fmt: skip


def artifacts_dir(tmp_path: Path) -> Path:
    """``$EDGESSL_ARTIFACTS`` (CI keeps it) or the test's own temporary folder."""
    d = Path(os.environ.get("EDGESSL_ARTIFACTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def chromium(tmp_path) -> Iterator[Any]:
    """Debian's chromium and chromedriver, given explicitly (Selenium Manager downloads nothing)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        pytest.skip(f"no browser installed ({', '.join(missing)} missing): the dashboard's browser test needs "
                    "`apt-get install chromium chromium-driver`, which .ci/run does")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


class Lines:
    """A child's stdout, read by a thread into a queue (a test waits on it with a timeout, never blocks)."""

    def __init__(self, p: subprocess.Popen):
        self.q: queue.Queue[str] = queue.Queue()
        self.all: list[str] = []
        assert p.stdout is not None
        self._t = threading.Thread(target=self._pump, args=(p.stdout,), daemon=True)
        self._t.start()

    def _pump(self, f: Any) -> None:
        for line in f:
            self.all.append(line)
            self.q.put(line)

    def wait_for(self, pred: Any, timeout: float) -> str:
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                break
            if pred(line):
                return line
        raise AssertionError(f"no such line within {timeout} s; got {''.join(self.all)[-2000:]}")


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)  # what Ctrl-C sends: both commands stop cleanly
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


@contextlib.contextmanager
def simulated_board(tmp: Path, *args: str) -> Iterator[str]:
    """``edgessl simulate`` on a pty; yields its path."""
    p = subprocess.Popen([sys.executable, "-m", "edgessl", "simulate", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp)  # fmt: skip
    try:
        assert p.stdout is not None
        path = p.stdout.readline().strip()
        assert path, p.stderr.read() if p.stderr else ""
        yield path
    finally:
        _stop(p)


@contextlib.contextmanager
def served(tmp: Path, args: list[str], timeout: float = 60) -> Iterator[tuple[str, subprocess.Popen, Lines]]:
    """``edgessl ARGS --serve 127.0.0.1:0 --json``; yields the page's URL (from its ``dashboard`` line)."""
    p = subprocess.Popen([sys.executable, "-m", "edgessl", *args, "--serve", "127.0.0.1:0", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)  # fmt: skip
    try:
        lines = Lines(p)
        first = lines.wait_for(lambda ln: '"dashboard"' in ln, timeout)
        yield json.loads(first)["dashboard"]["url"], p, lines
    finally:
        _stop(p)
