"""The HTTP(S) endpoint: ``/metrics`` from a registry, ``/-/healthy`` and a landing page.

TLS, basic auth, response headers and a rate limit come from a web config file in the
exporter-toolkit format Prometheus operators already know (``--web.config.file``), read by
:mod:`collectors.web_config`. Certificate files are re-read when they change on disk, so a
rotated certificate needs no restart. Requests are not logged unless asked; query strings
and headers never are.
"""

from __future__ import annotations

import base64
import binascii
import errno
import gzip
import hashlib
import html
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from collectors.web_config import TLSSettings, WebConfig, load_web_config
from kpis.errors import CareKPIError

__all__ = ["Route", "WebConfig", "WebServer", "load_web_config", "start_server"]

log = logging.getLogger("carekpi.web")

# A route gets the parsed query string and returns (status, content type, body).
Route = Callable[[Mapping[str, list[str]]], tuple[int, str, bytes | str]]

HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
_AUTH_CACHE_SIZE = 256
_PLAIN_HTTP_REPLY = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)
_LANDING = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>CareKPI exporter</title></head>
<body><h1>CareKPI exporter</h1>
<p>Customer-care KPIs for Prometheus.</p>
<ul>{links}</ul>
</body></html>
"""



class _BasicAuth:
    """bcrypt checks, with successful (user, hash, password) checks remembered: a bcrypt round
    costs tens of milliseconds and Prometheus sends the same credentials on every scrape."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        # Unknown users are checked against a dummy hash of the same cost, so the answer time
        # does not tell which user names exist.
        cost = int(next(iter(self._users.values())).split(b"$")[2])
        self._dummy = bcrypt.hashpw(b"carekpi-unknown-user", bcrypt.gensalt(rounds=cost))

    def allows(self, header: str | None) -> bool:
        credentials = _parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        stored = self._users.get(user)
        if stored is None:
            bcrypt.checkpw(password, self._dummy)
            return False
        key = hashlib.sha256(b"\0".join((user.encode(), stored, password))).digest()
        with self._lock:
            if key in self._ok:
                self._ok.move_to_end(key)
                return True
        if not bcrypt.checkpw(password, stored):
            return False
        with self._lock:
            self._ok[key] = None
            while len(self._ok) > _AUTH_CACHE_SIZE:
                self._ok.popitem(last=False)
        return True


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password.encode()) if sep else None


class _TokenBucket:
    """exporter-toolkit's rate_limit: one request per interval, bursts of ``burst``."""

    def __init__(self, interval: float, burst: int) -> None:
        self._rate, self._burst = 1.0 / interval, float(burst)
        self._tokens, self._last = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class _TLSState:
    """The server's SSLContext, rebuilt when a certificate, key or CA file changes on disk."""

    def __init__(self, settings: TLSSettings) -> None:
        self.settings = settings
        self._stamp = settings.stamp()
        self._context = settings.context()
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        stamp = self.settings.stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._context = self.settings.context()
                        log.info("TLS certificate files changed; reloaded them")
                    except CareKPIError as exc:
                        log.warning("TLS files changed but do not load; keeping the old: %s", exc)
        return self._context

    def client_allowed(self, conn: ssl.SSLSocket) -> bool:
        allowed = self.settings.client_allowed_sans
        if not allowed:
            return True
        sans: Any = (conn.getpeercert() or {}).get("subjectAltName", ())
        return any(pair[1] in allowed for pair in sans)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog is 5: a burst of concurrent scrapers overflows it and
    # waits out a 1 s SYN retransmit (measured: p99 2 s with 50 scrapers, p50 20 ms).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 handler: type[_Handler]) -> None:
        self.address_family = family
        super().__init__(address, handler)
        self.registry: CollectorRegistry = CollectorRegistry()
        self.tls: _TLSState | None = None
        self.auth: _BasicAuth | None = None
        self.limiter: _TokenBucket | None = None
        self.headers: dict[str, str] = {}
        self.routes: dict[str, Route] = {}
        self.log_requests = False

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the connection's own thread, so a slow or silent client
        # never holds up the accept loop.
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":  # not a TLS handshake record: plain HTTP or junk
                request.sendall(_PLAIN_HTTP_REPLY)
                return
            conn = self.tls.context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            if self.tls.client_allowed(conn):
                super().finish_request(conn, client_address)
            else:
                log.debug("client certificate of %s has no allowed SAN", client_address[0])
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "CareKPI"
    sys_version = ""
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_GET

    def _not_allowed(self) -> None:
        self.close_connection = True  # the request body, if any, was not read
        self._send(405, "text/plain; charset=utf-8", b"Method not allowed\n",
                   {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _dispatch(self) -> None:
        server = self.server
        if server.limiter is not None and not server.limiter.take():
            self._send(429, "text/plain; charset=utf-8", b"Too many requests\n")
            return
        if server.auth is not None and not server.auth.allows(self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n",
                       {"WWW-Authenticate": 'Basic realm="CareKPI", charset="UTF-8"'})
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/metrics":
            self._metrics(query)
        elif url.path == "/-/healthy":
            self._send(200, "text/plain; charset=utf-8", b"OK\n")
        elif url.path == "/":
            self._landing()
        elif url.path in server.routes:
            self._route(server.routes[url.path], query)
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not found\n")

    def _metrics(self, query: Mapping[str, list[str]]) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        registry: Any = self.server.registry
        if "name[]" in query:
            registry = registry.restricted_registry(query["name[]"])
        zipped = gzip_accepted(self.headers.get("Accept-Encoding", ""))
        try:
            render = getattr(registry, "render", None)  # a cached exposition (service.py)
            if render is not None:
                body = render(encoder, content_type, zipped)
            else:
                body = encoder(registry)
                body = gzip.compress(body) if zipped else body
        except Exception:  # a collector bug must not take the endpoint down
            log.exception("collecting metrics failed")
            self._send(500, "text/plain; charset=utf-8", b"Collecting metrics failed\n")
            return
        extra = {"Vary": "Accept, Accept-Encoding"}
        if zipped:
            extra["Content-Encoding"] = "gzip"
        self._send(200, content_type, body, extra)

    def _landing(self) -> None:
        paths = ["/metrics", "/-/healthy", *sorted(self.server.routes)]
        links = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in paths)
        self._send(200, "text/html; charset=utf-8", _LANDING.format(links=links).encode())

    def _route(self, route: Route, query: Mapping[str, list[str]]) -> None:
        try:
            status, content_type, body = route(query)
        except Exception:
            log.exception("route %s failed", urlsplit(self.path).path)
            self._send(500, "text/plain; charset=utf-8", b"Internal error\n")
            return
        self._send(status, content_type, body.encode() if isinstance(body, str) else body)

    def _send(self, status: int, content_type: str, body: bytes,
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**self.server.headers, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.log_requests:
            path = urlsplit(getattr(self, "path", "")).path  # never the query string
            log.info('%s "%s %s" %s', self.client_address[0], self.command or "-", path, code)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the base class would echo raw request lines, query strings included."""


class WebServer:
    """A running exporter endpoint. ``shutdown()`` stops it and frees the port."""

    def __init__(self, server: _Server, thread: threading.Thread, scheme: str, bind: str) -> None:
        self._server, self._thread = server, thread
        self.scheme, self.bind = scheme, bind

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.bind, self.bind)
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def start_server(registry: CollectorRegistry, bind: str, port: int,
                 web_config: WebConfig | None,
                 extra_routes: dict[str, Route] | None = None,
                 *, log_requests: bool = False) -> WebServer:
    """Serve ``registry`` on ``bind:port`` (port 0: any free port) in background threads."""
    routes = dict(extra_routes or {})
    taken = sorted(set(routes) & {"/", "/metrics", "/-/healthy"})
    if taken or any(not path.startswith("/") for path in routes):
        raise CareKPIError(f"extra routes must start with / and not replace built-ins: {routes}")
    try:
        family = socket.getaddrinfo(bind or None, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror:
        raise CareKPIError(f"cannot listen on {bind!r}: not a local address") from None
    try:
        server = _Server((bind, port), family, _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CareKPIError(f"port {port} on {bind or '0.0.0.0'} is already in use; "
                               "choose another with --port") from None
        raise CareKPIError(f"cannot listen on {bind or '0.0.0.0'}:{port}: "
                           f"{exc.strerror or exc}") from None
    server.registry, server.routes, server.log_requests = registry, routes, log_requests
    if web_config is not None:
        server.tls = _TLSState(web_config.tls) if web_config.tls else None
        server.auth = _BasicAuth(web_config.users) if web_config.users else None
        if web_config.rate_limit is not None:
            server.limiter = _TokenBucket(*web_config.rate_limit)
        server.headers = dict(web_config.headers)
    thread = threading.Thread(target=server.serve_forever, name=f"carekpi-web-{port}",
                              kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    return WebServer(server, thread, "https" if server.tls else "http", bind)
