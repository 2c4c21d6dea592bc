"""The dashboard's server: read-only, bounded, and not reachable from other interfaces when bound to loopback.

Every malformed or hostile request is followed by a normal one that must still work: the server (and the
command it runs in) never stops.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from edgessl.dashboard import parse_address, serve_address
from edgessl.dashboard import server as server_mod
from edgessl.dashboard.hub import MAX_CLIENTS
from edgessl.dashboard.server import STATIC_FILES, Dashboard
from edgessl.errors import ExitCode, UsageError


@pytest.fixture(scope="module")
def dash() -> Iterator[Dashboard]:
    """One server for the module (each test ends with a request that must still work on it)."""
    with Dashboard("127.0.0.1", 0) as d:
        d.stream(["ax", "ay", "az"], ["g", "g", "g"], 100.0)
        d.samples(np.arange(10) / 100, np.zeros((10, 3), np.float32))
        yield d


def get(d: Dashboard, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
        host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    c = http.client.HTTPConnection(host, d.port, timeout=5)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def raw(d: Dashboard, data: bytes, host: str = "127.0.0.1") -> bytes:
    """What the server answers to ``data``; the server may answer and close before reading all of it."""
    out = b""
    with socket.create_connection((host, d.port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # it already answered and closed (a reset): read what it said
            pass
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


def still_serves(d: Dashboard) -> None:
    status, _, body = get(d, "/state")
    assert status == 200 and json.loads(body)["read_only"] is True


@pytest.mark.parametrize(("text", "want"), [("8765", ("127.0.0.1", 8765)), ("0", ("127.0.0.1", 0)),
                                            ("0.0.0.0:80", ("0.0.0.0", 80)), ("localhost:1", ("localhost", 1)),
                                            ("[::1]:8765", ("::1", 8765))])  # fmt: skip
def test_address_forms(text, want):
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["", "x", "70000", ":80", "::1:80", "[::1]", "host:", "-1", "1.2.3.4:8o",
                                  "http://127.0.0.1:8765/"])  # fmt: skip
def test_bad_addresses_say_what_was_expected(text):
    with pytest.raises(ValueError, match="expected"):
        parse_address(text)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        serve_address(text)


def test_a_url_is_not_mistaken_for_an_ipv6_address():
    with pytest.raises(ValueError, match="expected PORT or HOST:PORT, not a URL"):
        parse_address("http://127.0.0.1:8765/")


def test_the_page_and_its_files_with_strict_headers(dash):
    for path, (_name, ctype) in STATIC_FILES.items():
        status, h, body = get(dash, path)
        assert status == 200 and h["content-type"] == ctype and len(body) == int(h["content-length"]) > 0, path
        assert h["cache-control"] == "no-store" and h["x-content-type-options"] == "nosniff"
        assert h["content-security-policy"].startswith("default-src 'self'")
    page = get(dash, "/")[2].decode()
    assert "/static/app.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from elsewhere
    js = get(dash, "/static/app.js")[2].decode()
    assert "http:" not in js and "https:" not in js and len(js.splitlines()) < 400
    status, h, body = get(dash, "/state")
    assert status == 200 and h["content-type"] == "application/json"
    state = json.loads(body)
    assert state["samples_total"] == 10 and state["meta"]["channels"] == ["ax", "ay", "az"]
    status, h, _ = get(dash, "/state", method="HEAD")
    assert status == 200 and int(h["content-length"]) > 0


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/..%2fserver.py", "/%2e%2e/", "/%2e%2e/hub.py",
                                  "/../../etc/passwd", "/static/", "/static/hub.py", "/static//app.js",
                                  "/state/", "/index.html/..", "http://evil/state"])  # fmt: skip
def test_nothing_but_the_listed_files(dash, path):
    status, h, body = get(dash, path)
    assert status == (403 if path.startswith("http") else 404), path  # an absolute URL's Host is foreign
    assert h["x-content-type-options"] == "nosniff" and b"import" not in body
    still_serves(dash)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "BREW"])
def test_read_only_other_methods_are_405(dash, method):
    status, h, _ = get(dash, "/state", method=method, body=b"x" if method in ("POST", "PUT") else None)
    assert status == 405 and h["allow"] == "GET, HEAD"
    still_serves(dash)


def test_bodies_and_oversized_requests_are_refused(dash):
    assert get(dash, "/state", body=b"x" * 100)[0] == 413
    assert get(dash, "/state", headers={"Content-Length": "abc"})[0] == 400
    assert raw(dash, b"GET /state HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").startswith(
        b"HTTP/1.0 400")  # fmt: skip
    assert get(dash, "/" + "a" * 5000)[0] == 414
    assert get(dash, "/state", headers={"X-Big": "b" * 9000})[0] == 431
    assert raw(dash, b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n").startswith(
        b"HTTP/1.0 431")  # fmt: skip
    still_serves(dash)


@pytest.mark.parametrize("data", [b"\x00\xff\xfe garbage \x13\x37\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                                  b"\r\n", bytes(range(256)) * 40, b"GET / HTTP/1.1\r\nbroken header\r\n\r\n"])  # fmt: skip
def test_garbage_gets_4xx_or_a_closed_connection(dash, data):
    got = raw(dash, data)
    assert got == b"" or got.startswith((b"HTTP/1.0 4", b"HTTP/1.0 505")), got[:80]
    still_serves(dash)


def test_silent_and_never_reading_clients_do_not_stop_anything(monkeypatch):
    monkeypatch.setattr(server_mod, "WRITE_TIMEOUT_S", 0.5)
    with Dashboard("127.0.0.1", 0) as dash:
        _deaf_page(dash)


def _deaf_page(dash: Dashboard) -> None:
    silent = socket.create_connection(("127.0.0.1", dash.port))  # connects, sends nothing
    half = socket.create_connection(("127.0.0.1", dash.port))
    half.sendall(b"GET /state HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes its headers
    deaf = socket.create_connection(("127.0.0.1", dash.port))  # opens the stream and never reads it
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        t0 = time.monotonic()
        while dash.hub.clients == 0 and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        blob = np.random.default_rng(0).normal(size=(2000, 3)).astype(np.float32)
        for i in range(40):  # the loop goes on feeding, at full speed, while the page does not read
            t1 = time.perf_counter()
            dash.samples(np.arange(i * 2000, (i + 1) * 2000) / 100.0, blob)
            dash.event({"label": "x" * 5000, "i": i})
            assert time.perf_counter() - t1 < 0.01
            still_serves(dash) if i % 20 == 0 else time.sleep(0.1)
        deadline = time.monotonic() + 10
        while dash.hub.clients and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dash.hub.clients == 0, "a page that stopped reading was not dropped"
        assert dash.hub.counters["slow_pages_dropped"] == 1  # counted, whichever side noticed (walkthrough: 0)
        still_serves(dash)
    finally:
        for s in (silent, half, deaf):
            s.close()


def test_too_many_streams_get_503():
    with Dashboard("127.0.0.1", 0) as dash:
        _too_many(dash)


def _too_many(dash: Dashboard) -> None:
    socks = []
    try:
        for _ in range(MAX_CLIENTS):
            s = socket.create_connection(("127.0.0.1", dash.port), timeout=5)
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(12).startswith(b"HTTP/1.0 200")
            socks.append(s)
        status, h, _ = get(dash, "/events")
        assert status == 503 and h["retry-after"] == "5"
        still_serves(dash)
    finally:
        for s in socks:
            s.close()


def test_a_foreign_host_header_is_refused_on_loopback(dash):
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 must not read the stream."""
    assert get(dash, "/state", headers={"Host": "evil.example:80"})[0] == 403
    assert get(dash, "/state", headers={"Host": f"localhost:{dash.port}"})[0] == 200
    assert get(dash, "/state", headers={"Host": f"[::1]:{dash.port}"})[0] == 200


def _non_loopback_addresses() -> list[str]:
    found: set[str] = set()
    if shutil.which("ip"):
        r = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=10)
        for iface in json.loads(r.stdout or "[]"):
            for a in iface.get("addr_info", []):
                if a.get("family") == "inet" and not a["local"].startswith("127."):
                    found.add(a["local"])
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            if not str(info[4][0]).startswith("127."):
                found.add(str(info[4][0]))
    except OSError:
        pass
    return sorted(found)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_bound_to_loopback_nothing_is_reachable_from_other_addresses(dash):
    assert _reachable("127.0.0.1", dash.port)
    # 127.0.0.2 is loopback too on Linux, but another address: a server bound to 127.0.0.1 is not there
    assert not _reachable("127.0.0.2", dash.port)
    others = _non_loopback_addresses()
    for addr in others:
        assert not _reachable(addr, dash.port), f"the dashboard bound to 127.0.0.1 answers on {addr}"
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address (ip -j addr, the host name): only 127.0.0.2 "
                    "was checked")  # fmt: skip


def test_a_port_in_use_is_a_one_line_usage_error():
    with Dashboard("127.0.0.1", 0) as first, pytest.raises(UsageError) as e:
        Dashboard("127.0.0.1", first.port, flag="--serve").start()
    msg = str(e.value)
    assert msg.startswith(f"--serve 127.0.0.1:{first.port}: ") and "in use" in msg and "\n" not in msg
    if sys.platform == "linux":  # who listens there, as a busy serial port's message names its holder
        assert f"(pid {os.getpid()}) listens there" in msg, msg
    with pytest.raises(UsageError, match="not an address of this machine"):
        Dashboard("192.0.2.1", 0).start()  # TEST-NET-1: never this machine's


def test_run_with_a_port_in_use_exits_with_the_usage_code_and_one_line(tmp_path, small_bundle):
    with Dashboard("127.0.0.1", 0) as first:
        r = subprocess.run([sys.executable, "-m", "edgessl", "run", str(small_bundle), "--port", str(tmp_path / "nope"),
                            "--wait", "0", "--serve", f"127.0.0.1:{first.port}"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == ExitCode.USAGE, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"edgessl run: error: --serve 127.0.0.1:{first.port}: cannot listen there: the address is in use")


def test_run_with_a_missing_bundle_fails_before_announcing_the_page(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgessl", "run", "nope.essl", "--port", str(tmp_path / "imu"),
                        "--serve", "127.0.0.1:0"], capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert r.returncode == ExitCode.USAGE and "dashboard at" not in r.stdout, (r.stdout, r.stderr)
    assert r.stderr.strip() == "edgessl run: error: nope.essl: no such bundle"


def test_a_page_is_told_when_the_command_ends():
    d = Dashboard("127.0.0.1", 0).start()
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
    try:
        c.request("GET", "/events")
        r = c.getresponse()
        while not r.fp.readline().startswith(b"data: "):  # the snapshot: the page is attached
            pass
        d.close()
        rest = r.read()  # to the end of the stream
    finally:
        c.close()
        d.close()
    last = [ln for ln in rest.split(b"\n") if ln.startswith(b"data: ")][-1]
    assert json.loads(last[6:]) == {"type": "end", "reason": "stopped (the command ended)", "wall": pytest.approx(time.time(), abs=5)}


def test_a_non_loopback_address_warns_once(capsys):
    import io

    from edgessl.dashboard import open_dashboard
    from edgessl.dashboard.address import outward_address

    out = io.StringIO()
    d = open_dashboard(("0.0.0.0", 0), "run", out)
    try:
        # the URL others open, not http://0.0.0.0:PORT/ (which opens nowhere)
        addr = outward_address()
        assert out.getvalue() == (f"# dashboard at http://{addr}:{d.port}/ (all interfaces; anyone on the network "
                                  "can watch; read-only)\n" if addr else
                                  f"# dashboard at http://127.0.0.1:{d.port}/ (all interfaces, but no network "
                                  "address found; read-only)\n")  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"edgessl run: warning: --serve 0.0.0.0:{d.port}: anyone")
        assert get(d, "/state", headers={"Host": "pi.local:1"})[0] == 200  # served to the network on purpose
    finally:
        d.close()
