"""The HTTP(S) endpoint: ``/metrics`` from a registry, ``/-/healthy`` and a landing page.

TLS, basic auth, response headers and a rate limit come from a web config file in the
exporter-toolkit format Prometheus operators already know (``--web.config.file``), read by
:mod:`collectors.web_config`. Certificate files are re-read when they change on disk, so a
rotated certificate needs no restart. Requests are not logged unless asked; query strings
and headers never are. The connections themselves (limits, timeouts, TLS handshakes) are
:mod:`collectors.web_front`'s; requests are answered here, on a small worker pool, so a
bcrypt check or a first encoding never stalls the event loop.

Only two bodies exist, whatever a client's ``Accept`` says: OpenMetrics 1.0.0 when it asks
for ``application/openmetrics-text``, else the text format 0.0.4. The content type sent back
and the exposition cache's key are one of these two constants, never the client's text.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gzip
import html
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest, gzip_accepted
from prometheus_client.openmetrics import exposition as openmetrics

from collectors.web_auth import BasicAuth, TokenBucket
from collectors.web_config import TLSSettings, WebConfig, load_web_config
from collectors.web_front import Front, TLSFront
from kpis.errors import CareKPIError

__all__ = ["Route", "WebConfig", "WebServer", "load_web_config", "negotiate", "start_server"]

log = logging.getLogger("carekpi.web")

# A route gets the parsed query string and returns (status, content type, body).
Route = Callable[[Mapping[str, list[str]]], tuple[int, str, bytes | str]]
Encoder = Callable[[Any], bytes]
Landing = Callable[[list[str]], str]  # the landing page's HTML, given the endpoint's paths

MAX_HEADERS = 100  # header lines per request (their total size: web_front.MAX_HEADER_BYTES)
WORKERS = 8
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_OPENMETRICS_ENCODER: Encoder = functools.partial(
    openmetrics.generate_latest, escaping=openmetrics.UNDERSCORES, version="1.0.0")
_TEXT = "text/plain; charset=utf-8"
_LANDING = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>CareKPI exporter</title></head>
<body><h1>CareKPI exporter</h1>
<p>Customer-care KPIs for Prometheus.</p>
<ul>{links}</ul>
</body></html>
"""


def negotiate(accept: str) -> tuple[Encoder, str]:
    """The encoder and content type for an ``Accept`` header: one of two fixed formats."""
    for part in accept.split(","):
        if part.split(";", 1)[0].strip().lower() == "application/openmetrics-text":
            return _OPENMETRICS_ENCODER, OPENMETRICS
    return generate_latest, CONTENT_TYPE_PLAIN_0_0_4


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

    def client_allowed(self, peercert: Any) -> bool:
        allowed = self.settings.client_allowed_sans
        if not allowed:
            return True
        sans: Any = (peercert or {}).get("subjectAltName", ())
        return any(pair[1] in allowed for pair in sans)


class _Answer:
    """Answers requests: (status, headers, body), from a worker thread."""

    def __init__(self, registry: Any, routes: dict[str, Route], log_requests: bool) -> None:
        self.registry, self.routes, self.log_requests = registry, routes, log_requests
        self.auth: BasicAuth | None = None
        self.limiter: TokenBucket | None = None
        self.headers: dict[str, str] = {}
        self.landing: Landing | None = None

    def __call__(self, method: str, path: str, query: str, headers: Mapping[str, str],
                 client: str, *, quick: bool = False, limited: bool = False
                 ) -> tuple[int, dict[str, str], bytes] | None:
        """The answer; with ``quick``, None where it would block (a bcrypt round, a first
        encoding, a route's own work): the caller then asks again, ``limited`` (the rate
        limit already taken), from a worker thread."""
        try:
            status, extra, body = self._answer(method, path, query, headers, quick, limited)
        except _Blocks:
            return None
        if self.log_requests:
            log.info('%s "%s %s" %s', client, method, path, status)  # never the query string
        return status, {**extra, **self.headers}, body

    def _answer(self, method: str, path: str, query: str, headers: Mapping[str, str],
                quick: bool, limited: bool) -> tuple[int, dict[str, str], bytes]:
        if method not in ("GET", "HEAD"):
            return _plain(405, "Method not allowed\n", {"Allow": "GET, HEAD",
                                                        "Connection": "close"})
        if not limited and self.limiter is not None and not self.limiter.take():
            return _plain(429, "Too many requests\n")
        if self.auth is not None:
            allowed = self.auth.allows(headers.get("authorization"), remembered_only=quick)
            if allowed is None:
                raise _Blocks
            if not allowed:
                return _plain(401, "Unauthorized\n",
                              {"WWW-Authenticate": 'Basic realm="CareKPI", charset="UTF-8"'})
        if quick and (path in self.routes or path == "/" or (
                path == "/metrics" and not self._ready(query, headers))):
            raise _Blocks
        if path == "/metrics":
            return self._metrics(parse_qs(query), headers)
        if path == "/-/healthy":
            return _plain(200, "OK\n")
        if path == "/":
            return self._landing()
        if path in self.routes:
            return self._route(path, parse_qs(query))
        return _plain(404, "Not found\n")

    def _ready(self, query: str, headers: Mapping[str, str]) -> bool:
        ready = getattr(self.registry, "ready", None)  # a cached exposition (service.py)
        return ready is not None and "name[]" not in parse_qs(query) and bool(ready(
            negotiate(headers.get("accept", ""))[1],
            gzip_accepted(headers.get("accept-encoding", ""))))

    def _metrics(self, query: Mapping[str, list[str]], headers: Mapping[str, str]
                 ) -> tuple[int, dict[str, str], bytes]:
        encoder, content_type = negotiate(headers.get("accept", ""))
        registry: Any = self.registry
        if "name[]" in query:
            registry = registry.restricted_registry(query["name[]"])
        zipped = gzip_accepted(headers.get("accept-encoding", ""))
        try:
            render = getattr(registry, "render", None)  # a cached exposition (service.py)
            if render is not None:
                body = render(encoder, content_type, zipped)
            else:
                body = encoder(registry)
                body = gzip.compress(body) if zipped else body
        except Exception:  # a collector bug must not take the endpoint down
            log.exception("collecting metrics failed")
            return _plain(500, "Collecting metrics failed\n")
        extra = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if zipped:
            extra["Content-Encoding"] = "gzip"
        return 200, extra, body

    def _landing(self) -> tuple[int, dict[str, str], bytes]:
        paths = ["/metrics", "/-/healthy", *sorted(self.routes)]
        if self.landing is not None:  # the exporter's KPI page (collectors.landing)
            try:
                text = self.landing(paths)
            except Exception:
                log.exception("rendering the landing page failed")
                return _plain(500, "Internal error\n")
        else:
            text = _LANDING.format(links="".join(
                f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in paths))
        return 200, {"Content-Type": "text/html; charset=utf-8"}, text.encode()

    def _route(self, path: str, query: Mapping[str, list[str]]
               ) -> tuple[int, dict[str, str], bytes]:
        try:
            status, content_type, body = self.routes[path](query)
        except Exception:
            log.exception("route %s failed", path)
            return _plain(500, "Internal error\n")
        return status, {"Content-Type": content_type}, (
            body.encode() if isinstance(body, str) else body)


def _plain(status: int, text: str, extra: Mapping[str, str] | None = None
           ) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": _TEXT, **(extra or {})}, text.encode()


class _Blocks(Exception):
    """The answer needs a worker thread."""


class _App:
    """The ASGI application: header limits on the loop, the answer on a worker thread."""

    def __init__(self, answer: _Answer) -> None:
        self.answer = answer
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="carekpi-web")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = scope["headers"]
        if len(raw) > MAX_HEADERS:
            status, extra, body = _plain(431, "Too many request headers\n",
                                         {"Connection": "close"})
        else:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
            request = (scope["method"], scope["path"], scope["query_string"].decode("latin-1"),
                       headers, (scope.get("client") or ("-",))[0])
            # Answered on the loop when nothing blocks (a remembered password, a body already
            # encoded: every scrape but the first), else on a worker.
            answer = self.answer(*request, quick=True)
            if answer is None:
                answer = await asyncio.get_running_loop().run_in_executor(
                    self.pool, functools.partial(self.answer, *request, limited=True))
            assert answer is not None
            status, extra, body = answer
        out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})


class WebServer:
    """A running exporter endpoint. ``shutdown()`` stops it and frees the port."""

    def __init__(self, front: Front, app: _App, port: int, scheme: str, bind: str) -> None:
        self._front, self._app = front, app
        self.port, self.scheme, self.bind = port, scheme, bind

    @property
    def url(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.bind, self.bind)
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{self.port}"

    def shutdown(self) -> None:
        self._front.stop()
        self._app.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def start_server(registry: CollectorRegistry, bind: str, port: int,
                 web_config: WebConfig | None,
                 extra_routes: dict[str, Route] | None = None,
                 *, log_requests: bool = False, landing: Landing | None = None) -> WebServer:
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
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((bind, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CareKPIError(f"port {port} on {bind or '0.0.0.0'} is already in use; "
                               "choose another with --port") from None
        raise CareKPIError(f"cannot listen on {bind or '0.0.0.0'}:{port}: "
                           f"{exc.strerror or exc}") from None
    answer = _Answer(registry, routes, log_requests)
    answer.landing = landing
    tls = None
    if web_config is not None:
        tls = _TLSState(web_config.tls) if web_config.tls else None
        answer.auth = BasicAuth(web_config.users) if web_config.users else None
        if web_config.rate_limit is not None:
            answer.limiter = TokenBucket(*web_config.rate_limit)
        answer.headers = dict(web_config.headers)
    app = _App(answer)
    bound = int(sock.getsockname()[1])
    front = Front(app, sock, TLSFront(tls.context, tls.client_allowed) if tls else None,
                  name=f"carekpi-web-{port}")
    front.start()
    return WebServer(front, app, bound, "https" if tls else "http", bind)
