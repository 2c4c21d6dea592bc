"""The dashboard's HTTP server: standard library only, read-only, in daemon threads beside the command.

Routes (``GET`` and ``HEAD``; everything else 405): ``/`` the page, ``/static/<name>`` its shipped files by a
fixed list (read from the package once at start: no path from a request reaches the file system),
``/state`` a JSON snapshot, ``/events`` the live stream (Server-Sent Events). Any other path is 404.
Requests are bounded (request line :data:`MAX_REQUEST_LINE` bytes -> 414, headers :data:`MAX_HEADER_BYTES`
-> 431, a body -> 413, a malformed request -> 400), a connection that sends nothing for
:data:`REQUEST_TIMEOUT_S` is closed, at most :data:`MAX_CONNECTIONS` are served at once and
:data:`~edgessl.dashboard.hub.MAX_CLIENTS` streams (503 beyond). Bound to loopback, requests whose ``Host``
is not a loopback name are refused (403): a web page elsewhere cannot read the stream by DNS rebinding.
Every response carries ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff`` and a
Content-Security-Policy that lets the page load nothing from anywhere else.

There is no endpoint that changes the device, the model or the adaptation; a write endpoint (behind a
token) was left out on purpose.
"""

from __future__ import annotations

import errno
import queue
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from edgessl.dashboard.address import is_loopback, is_unspecified, listener_holders, outward_address
from edgessl.dashboard.hub import Hub, to_json
from edgessl.errors import UsageError

__all__ = ["Dashboard", "STATIC_FILES"]

MAX_REQUEST_LINE = 2048  # bytes, the method, target and version
MAX_HEADER_BYTES = 8192  # all header lines together
REQUEST_TIMEOUT_S = 5.0  # for the request to arrive (a slow or silent client is closed)
WRITE_TIMEOUT_S = 2.0  # for one write to a page (a page that stopped reading is dropped)
KEEPALIVE_S = 5.0  # an 'alive' event this often when nothing changes: the page's sign of a live command
MAX_CONNECTIONS = 32  # served at once, streams included; more are answered 503 and closed
STREAM_SNDBUF = 65536  # bytes the kernel may hold for a page: seconds of updates, not minutes

# the only files served: URL path -> (file in edgessl/dashboard/static, content type)
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",  # fmt: skip
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _host_of(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _load_static() -> dict[str, bytes]:
    folder = resources.files("edgessl.dashboard") / "static"
    return {name: (folder / name).read_bytes() for name, _ in set(STATIC_FILES.values())}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edgessl-dashboard"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S
    default_request_version = "HTTP/1.0"  # answers to garbage carry a status line and headers too
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s: %(explain)s\n"

    # -- bounded request parsing ------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        self.command, self.request_version, self.requestline = "", "HTTP/1.0", ""
        self.close_connection = True  # one request per connection: nothing to keep alive
        try:
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except OSError:  # timed out or reset before a request line
            self.server.count("no_request")
            return
        if not line:
            return
        if len(line) > MAX_REQUEST_LINE:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, explain=f"request line over {MAX_REQUEST_LINE} bytes")
            return
        self.raw_requestline = line
        try:
            if not self.parse_request():  # answered 400 / 431 / 505 itself
                return
        except OSError:
            self.server.count("no_request")
            return
        if self.headers.defects:  # a header line without a colon, a continuation line ... : not HTTP
            self.send_error(HTTPStatus.BAD_REQUEST, explain="malformed header lines")
            return
        if sum(len(k) + len(v) + 4 for k, v in self.headers.items()) > MAX_HEADER_BYTES:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, explain=f"headers over {MAX_HEADER_BYTES} bytes")
            return
        if self.command not in ("GET", "HEAD"):
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"405 this dashboard is read-only: GET only\n",
                        extra={"Allow": "GET, HEAD"})  # fmt: skip
            return
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") is not None or (length is not None and not length.strip().isdigit()):
            self.send_error(HTTPStatus.BAD_REQUEST, explain="a GET has no body")
            return
        if length is not None and int(length) > 0:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, explain="a GET has no body")
            return
        host = self.headers.get("Host")
        if self.server.loopback and host is not None and not is_loopback(_host_of(host.strip())):
            self.send_error(HTTPStatus.FORBIDDEN, explain="the Host is not a loopback name (this server is local)")
            return
        try:
            self._route(self.path.partition("?")[0])
            self.wfile.flush()
        except OSError:  # the client went away mid-answer
            self.server.count("client_gone")

    def _route(self, path: str) -> None:
        if path in STATIC_FILES:
            name, ctype = STATIC_FILES[path]
            self._reply(HTTPStatus.OK, self.server.static[name], ctype)
        elif path == "/state":
            self._reply(HTTPStatus.OK, to_json(self.server.hub.state()) + b"\n", "application/json")
        elif path == "/events":
            self._events()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, explain="the dashboard serves /, /static/..., /state and /events")

    def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
               extra: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _events(self) -> None:
        hub = self.server.hub
        if self.command == "HEAD":
            self._reply(HTTPStatus.OK, b"", "text/event-stream")
            return
        client = hub.attach()
        if client is None:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"503 too many pages connected\n", extra={"Retry-After": "5"})
            return
        try:
            self.connection.settimeout(WRITE_TIMEOUT_S)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")  # EventSource reconnects on its own after 2 s
            self.wfile.flush()
            while True:
                try:
                    msg = client.queue.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    msg = b"event: alive\ndata: {}\n\n"  # an event, not a comment: the page sees it
                if msg is None or client.dropped:
                    break
                self.wfile.write(msg)
                self.wfile.flush()
        except TimeoutError:  # a page that stopped reading, once the buffers between it and us are full
            self.server.count("stream_dropped")
            hub.detach(client, slow=True)
        except OSError:  # gone
            self.server.count("stream_dropped")
        finally:
            hub.detach(client)

    # -- every response: security headers; no logging to the command's terminal, counters instead -----
    def version_string(self) -> str:
        return self.server_version

    def end_headers(self) -> None:
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.count(f"status_{int(code) if str(code).isdigit() else code}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck connection never holds the command's exit
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], hub: Hub, loopback: bool):
        self.hub, self.loopback = hub, loopback
        self.static = _load_static()
        self.counts: dict[str, int] = {}
        self._active = 0
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def count(self, what: str) -> None:
        with self._count_lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            full = self._active >= MAX_CONNECTIONS
            if not full:
                self._active += 1
        if full:
            self.count("refused_busy")
            try:
                request.settimeout(0.5)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 5\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self._active -= 1


class _Server6(_Server):
    address_family = socket.AF_INET6


class Dashboard:
    """The live page of a command, served from daemon threads while the ``with`` block runs.

    The command's loop calls the hub's cheap methods through it (:meth:`Hub.samples`, :meth:`Hub.event`,
    :meth:`Hub.status`, :meth:`Hub.probabilities`, :meth:`Hub.prompt`, :meth:`Hub.stream`, :meth:`Hub.model`).

    Args:
        host: the address to listen on (``127.0.0.1`` by default: this machine only).
        port: the port; 0 picks a free one (:attr:`url` says which).
        command: the command serving the page (shown on it).
        flag: how the command's user spelled the address option (named in errors; ``--serve`` from a command,
            ``Dashboard`` from Python).

    Raises:
        UsageError: from :meth:`start` when the address cannot be listened on (in use, not this machine's,
            a privileged port), naming ``flag`` and the address.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, command: str = "run", flag: str = "Dashboard"):
        self.host, self.port, self.flag = host, port, flag
        self.hub = Hub(command)
        self.loopback = is_loopback(host)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        hub = self.hub
        self.samples, self.event, self.status = hub.samples, hub.event, hub.status
        self.probabilities, self.prompt, self.stream, self.model = hub.probabilities, hub.prompt, hub.stream, hub.model

    @property
    def listening(self) -> bool:
        """Whether a page is connected (skip building what nobody reads)."""
        return self.hub.listening

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def open_url(self) -> tuple[str, str]:
        """A URL that opens the page, and what it is: bound to every interface (``0.0.0.0``, ``::``), the
        machine's address on its network (``http://0.0.0.0:PORT/`` opens nowhere), else :attr:`url`."""
        if not is_unspecified(self.host):
            return self.url, ""
        v6 = ":" in self.host
        addr = outward_address(v6)
        if addr is None:
            local = "[::1]" if v6 else "127.0.0.1"
            return f"http://{local}:{self.port}/", "all interfaces, but no network address found"
        return f"http://{f'[{addr}]' if v6 else addr}:{self.port}/", "all interfaces; anyone on the network can watch"

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> Dashboard:
        cls = _Server6 if ":" in self.host else _Server
        try:
            self._server = cls((self.host, self.port), self.hub, self.loopback)
        except socket.gaierror as e:
            raise UsageError(f"{self.flag} {self.where}: cannot resolve the host ({e.strerror}); expected PORT, "
                             "HOST:PORT with an address of this machine, or 0.0.0.0:PORT") from None  # fmt: skip
        except OSError as e:
            holders = listener_holders(self.port) if e.errno == errno.EADDRINUSE else []
            who = ", ".join(f"{name} (pid {pid})" for pid, name in holders) or "another program"
            why = {errno.EADDRINUSE: f"the address is in use ({who} listens there)",
                   errno.EADDRNOTAVAIL: "not an address of this machine",
                   errno.EACCES: "permission denied (ports below 1024 need root)"}.get(e.errno or 0, e.strerror or str(e))  # fmt: skip
            raise UsageError(f"{self.flag} {self.where}: cannot listen there: {why}; expected a free port "
                             "(0 picks one) on an address of this machine") from None  # fmt: skip
        self.port = self._server.server_address[1]
        self.hub.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="dashboard-http", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def close(self) -> None:
        """End the streams and stop listening (the daemon threads of stuck connections die with the process)."""
        self.hub.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def counts(self) -> dict[str, int]:
        """Requests answered by status (``status_404`` ...), refused and dropped connections."""
        return dict(self._server.counts) if self._server is not None else {}

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
