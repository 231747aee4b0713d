"""The exporter-toolkit web config (``--web-config``): TLS, basic auth, headers, rate limit.

The format is followed strictly: an unknown key, an unreadable certificate, a password that is
not a bcrypt hash or a weak setting (TLS below 1.2, client certificates that are not verified)
is a :class:`ConfigError` at load time, never a surprise at the first scrape.
"""

from __future__ import annotations

import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from kpis import durations, yaml_file
from kpis.errors import ConfigError

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
# Salt and hash in bcrypt's base64: the salt's 22nd character carries 2 bits, so it is one of
# . O e u (bcrypt refuses any other salt, on every request).
_BCRYPT_SALT_AND_HASH = re.compile(rb"[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{31}")
# Every request from an unknown user costs a bcrypt round at this cost (and start-up one):
# above 14 that is over a second of CPU each. htpasswd's -C 10 to 12 is the usual choice.
MAX_BCRYPT_COST = 14
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
            if int(parts[2]) > MAX_BCRYPT_COST:
                self.fail(key, f"bcrypt cost {int(parts[2])} is above {MAX_BCRYPT_COST}: every "
                          f"request of an unknown user would take seconds ({_HTPASSWD_HINT})")
            if not _BCRYPT_SALT_AND_HASH.fullmatch(parts[3]):
                self.fail(key, f"not a bcrypt hash: its salt is invalid ({_HTPASSWD_HINT})")
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
            if isinstance(value, str):
                value = value.strip()  # a YAML block (|) ends with a newline
            if not isinstance(value, str) or (allowed and value.lower() not in allowed):
                choices = f"one of {', '.join(allowed)}" if allowed else "a string"
                self.fail(key, f"expected {choices}, got {value!r}")
            if not all(" " <= c <= "~" for c in value):
                self.fail(key, "a header value is one line of printable ASCII (no line break, "
                          "no curly quote or other non-ASCII character)")
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
    data = yaml_file.read(path)
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
