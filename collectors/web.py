"""The HTTP(S) endpoint: ``/metrics`` from a registry, ``/-/healthy`` and a landing page.

TLS, basic auth, response headers and a rate limit come from a web config file in the
exporter-toolkit format Prometheus operators already know (``--web.config.file``). The
format is followed strictly: an unknown key, an unreadable certificate, a password that is
not a bcrypt hash or a weak setting (TLS below 1.2, client certificates that are not
verified) is a :class:`ConfigError` at load time, never a surprise at the first scrape.
Certificate files are re-read when they change on disk, so a rotated certificate needs no
restart. Requests are not logged unless asked; query strings and headers never are.
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
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import bcrypt
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from kpis import durations
from kpis.errors import CareKPIError, ConfigError

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


# ---------------------------------------------------------------- the web config file

_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_HEADERS = {"Content-Security-Policy": None, "X-Frame-Options": ("deny", "sameorigin"),
            "X-Content-Type-Options": ("nosniff",), "X-XSS-Protection": None,
            "Strict-Transport-Security": None}
_TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
             "client_ca_file", "client_allowed_sans", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences")
_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
_HTPASSWD_HINT = "make one with: htpasswd -nBC 10 '' | tr -d ':\\n'"


@dataclass(frozen=True)
class _Pem:
    """A PEM item of tls_server_config: a file (re-read when it changes) or inline text."""

    key: str
    path: Path | None = None
    text: str | None = None

    def read(self) -> str:
        if self.text is not None:
            return self.text
        assert self.path is not None
        return self.path.read_text(encoding="ascii")

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat() if self.path else None
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size) if info else None


@dataclass(frozen=True)
class TLSSettings:
    file: str
    cert: _Pem
    key: _Pem
    client_ca: _Pem | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_allowed_sans: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True

    def stamp(self) -> tuple[Any, ...]:
        return tuple(p.stamp() for p in (self.cert, self.key, self.client_ca) if p)

    def context(self) -> ssl.SSLContext:
        """A server SSLContext; a file that does not load is a ConfigError naming its key."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version, ctx.maximum_version = self.min_version, self.max_version
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_alpn_protocols(["http/1.1"])
        cert, key = self._pem(self.cert), self._pem(self.key)
        self._certificates(self.cert, cert)
        with tempfile.TemporaryDirectory(prefix="carekpi-tls-") as tmp:
            # load_cert_chain reads files only; inline PEM goes through a private directory.
            cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_path.write_text(cert, encoding="ascii")
            key_path.touch(mode=0o600)
            key_path.write_text(key, encoding="ascii")
            try:
                ctx.load_cert_chain(cert_path, key_path, password=lambda: b"")
            except ssl.SSLError as exc:
                why = ("does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc)
                       else "not an unencrypted PEM private key")
                raise ConfigError(self.file, f"tls_server_config.{self.key.key}", why) from None
        if self.client_ca is not None:
            self._certificates(self.client_ca, ca := self._pem(self.client_ca))
            ctx.load_verify_locations(cadata=ca)
        ctx.verify_mode = self.client_auth
        return ctx

    def _pem(self, pem: _Pem) -> str:
        try:
            return pem.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(self.file, f"tls_server_config.{pem.key}",
                              f"cannot read {pem.path}: {getattr(exc, 'strerror', exc)}") from None

    def _certificates(self, pem: _Pem, text: str) -> None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
        except (ssl.SSLError, ValueError):
            raise ConfigError(self.file, f"tls_server_config.{pem.key}",
                              "not a PEM certificate") from None


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: TLS settings, basic-auth users, headers and a rate limit."""

    file: str
    tls: TLSSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: tuple[float, int] | None = None  # (seconds between requests, burst)


class _Reader:
    def __init__(self, file: str, base: Path) -> None:
        self.file, self.base = file, base

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(self.file, key, message)

    def mapping(self, node: Any, key: str, known: tuple[str, ...] | None) -> dict[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.fail(key, "expected a mapping")
        for name in node:
            if not isinstance(name, str):
                self.fail(key, f"keys must be strings, got {name!r}")
            if known is not None and name not in known:
                self.fail(f"{key}.{name}" if key else name,
                          f"unknown key; known keys: {', '.join(known)}")
        return node

    def string(self, node: Any, key: str) -> str:
        if not isinstance(node, str) or not node.strip():
            self.fail(key, "expected a non-empty string")
        return node

    def pem(self, data: dict[str, Any], name: str, required: bool) -> _Pem | None:
        inline, file_key = data.get(name), f"{name}_file"
        path = data.get(file_key)
        if inline is not None and path is not None:
            self.fail(f"tls_server_config.{name}", f"give either {name} or {file_key}, not both")
        if path is not None:
            full = self.base / self.string(path, f"tls_server_config.{file_key}")
            return _Pem(file_key, path=full)
        if inline is not None:
            return _Pem(name, text=self.string(inline, f"tls_server_config.{name}"))
        if required:
            self.fail(f"tls_server_config.{file_key}", "missing: TLS needs a certificate and key")
        return None

    def tls(self, node: Any) -> TLSSettings:
        data = self.mapping(node, "tls_server_config", _TLS_KEYS)
        for unsupported in ("cipher_suites", "curve_preferences"):
            if data.get(unsupported):
                self.fail(f"tls_server_config.{unsupported}",
                          "not supported: OpenSSL's secure defaults apply")
        versions = {}
        for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            name = data.get(key, default)
            if name not in _TLS_VERSIONS:
                self.fail(f"tls_server_config.{key}",
                          f"expected one of {', '.join(_TLS_VERSIONS)}, got {name!r}")
            versions[key] = _TLS_VERSIONS[name]
        if versions["min_version"] < ssl.TLSVersion.TLSv1_2:
            self.fail("tls_server_config.min_version",
                      "TLS 1.0 and 1.1 are deprecated and insecure (RFC 8996); use TLS12 or TLS13")
        if versions["max_version"] < versions["min_version"]:
            self.fail("tls_server_config.max_version", "lower than min_version")
        cert, private_key = self.pem(data, "cert", True), self.pem(data, "key", True)
        assert cert is not None and private_key is not None
        client_ca, client_auth, sans = self._client_auth(data)
        return TLSSettings(
            file=self.file, cert=cert, key=private_key, client_ca=client_ca,
            client_auth=client_auth, client_allowed_sans=sans, min_version=versions["min_version"],
            max_version=versions["max_version"],
            prefer_server_cipher_suites=self.boolean(
                data.get("prefer_server_cipher_suites", True),
                "tls_server_config.prefer_server_cipher_suites"),
        )

    def _client_auth(
        self, data: dict[str, Any]
    ) -> tuple[_Pem | None, ssl.VerifyMode, tuple[str, ...]]:
        key = "tls_server_config.client_auth_type"
        auth_type = data.get("client_auth_type", "NoClientCert")
        if auth_type in _UNVERIFIED_CLIENT_AUTH:
            self.fail(key, f"{auth_type} accepts any certificate without verifying it; "
                           "use RequireAndVerifyClientCert")
        if auth_type not in _CLIENT_AUTH:
            self.fail(key, f"expected one of {', '.join(_CLIENT_AUTH)}, got {auth_type!r}")
        client_ca = self.pem(data, "client_ca", False)
        if client_ca is not None and auth_type == "NoClientCert":
            self.fail(key, "a client CA is set but client_auth_type is NoClientCert, "
                           "so client certificates would not be checked")
        if client_ca is None and auth_type != "NoClientCert":
            self.fail("tls_server_config.client_ca_file", f"{auth_type} needs a client CA")
        sans = data.get("client_allowed_sans") or []
        if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
            self.fail("tls_server_config.client_allowed_sans", "expected a list of strings")
        if sans and auth_type != "RequireAndVerifyClientCert":
            self.fail("tls_server_config.client_allowed_sans",
                      "needs client_auth_type RequireAndVerifyClientCert")
        return client_ca, _CLIENT_AUTH[auth_type], tuple(sans)

    def boolean(self, node: Any, key: str) -> bool:
        if not isinstance(node, bool):
            self.fail(key, f"expected true or false, got {node!r}")
        return node

    def users(self, node: Any) -> dict[str, bytes]:
        users = {}
        for user, hashed in self.mapping(node, "basic_auth_users", None).items():
            key = f"basic_auth_users.{user}"
            if ":" in user or not user:
                self.fail(key, "a user name cannot be empty or contain ':'")
            raw = hashed.encode() if isinstance(hashed, str) else b""
            parts = raw.split(b"$")
            if (not raw.startswith(_BCRYPT_PREFIXES) or len(parts) != 4 or not parts[2].isdigit()
                    or not 4 <= int(parts[2]) <= 31 or len(parts[3]) != 53):
                self.fail(key, f"not a bcrypt hash ({_HTPASSWD_HINT})")
            users[user] = raw
        return users

    def headers(self, node: Any) -> dict[str, str]:
        data = self.mapping(node, "http_server_config", ("http2", "headers"))
        if "http2" in data:  # HTTP/2 is Go's; this server speaks HTTP/1.1 either way
            self.boolean(data["http2"], "http_server_config.http2")
        headers = self.mapping(data.get("headers"), "http_server_config.headers", tuple(_HEADERS))
        result = {}
        for name, value in headers.items():
            key = f"http_server_config.headers.{name}"
            if value in (None, ""):
                continue
            allowed = _HEADERS[name]
            if not isinstance(value, str) or (allowed and value.lower() not in allowed):
                choices = f"one of {', '.join(allowed)}" if allowed else "a string"
                self.fail(key, f"expected {choices}, got {value!r}")
            result[name] = value
        return result

    def rate_limit(self, node: Any) -> tuple[float, int] | None:
        data = self.mapping(node, "rate_limit", ("interval", "burst"))
        if not data:
            return None
        try:
            interval = durations.parse(data.get("interval", 0)).seconds
        except ValueError as exc:
            self.fail("rate_limit.interval", str(exc))
        burst = data.get("burst", 1)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            self.fail("rate_limit.burst", f"expected a whole number of at least 1, got {burst!r}")
        return (interval, burst) if interval > 0 else None


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; relative file names are relative to its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {getattr(exc, 'strerror', exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(str(path), "", f"{where}YAML syntax error") from None
    reader = _Reader(str(path), path.parent)
    data = reader.mapping(data, "", ("tls_server_config", "http_server_config",
                                     "basic_auth_users", "rate_limit"))
    tls = reader.tls(data["tls_server_config"]) if "tls_server_config" in data else None
    if tls is not None:
        tls.context()  # loads every certificate and key now, so a bad one fails at start-up
    return WebConfig(file=str(path), tls=tls, users=reader.users(data.get("basic_auth_users")),
                     headers=reader.headers(data.get("http_server_config")),
                     rate_limit=reader.rate_limit(data.get("rate_limit")))


# ---------------------------------------------------------------- the server


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
                body = render(encoder, zipped)
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
            raise CareKPIError(f"port {port} on {bind or '0.0.0.0'} is already in use") from None
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
