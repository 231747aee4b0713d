"""The exporter's HTTP(S) endpoint and its exporter-toolkit web config, over real sockets.

Certificates come from a throwaway CA made here; passwords are bcrypt hashes of cost 4.
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.client
import ipaddress
import logging
import socket
import ssl
import time
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Gauge

from collectors import web_auth
from collectors.web import WebServer, load_web_config, start_server
from kpis.errors import CareKPIError, ConfigError

PASSWORD = "s3cret-scrape"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


# ---------------------------------------------------------------- a throwaway PKI

def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Name] | None,
           sans: list[x509.GeneralName], ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    signer, issuer_name = issuer or (key, _name(subject))
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(signer, hashes.SHA256())


def _write(folder: Path, stem: str, key, cert) -> None:
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca, server (localhost, 127.0.0.1), client (SAN scraper.example) and client2
    (SAN other.example) signed by ca; rogue signed by a CA the server does not trust."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _issue("CareKPI test CA", None, [], ca=True)
    _write(folder, "ca", ca_key, ca_cert)
    issuer = (ca_key, ca_cert.subject)
    local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    _write(folder, "server", *_issue("localhost", issuer, local))
    _write(folder, "client", *_issue("scraper", issuer, [x509.DNSName("scraper.example")]))
    _write(folder, "client2", *_issue("other", issuer, [x509.DNSName("other.example")]))
    rogue_ca = _issue("Rogue CA", None, [], ca=True)
    _write(folder, "rogue", *_issue("scraper", (rogue_ca[0], rogue_ca[1].subject),
                                    [x509.DNSName("scraper.example")]))
    return folder


def _config(folder: Path, text: str, name: str = "web-config.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- clients and servers

@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("carekpi_test_answer", "A known value.", registry=registry).set(42)
    Gauge("carekpi_test_other", "Another value.", registry=registry).set(7)
    return registry


@pytest.fixture
def serve(registry) -> Iterator:
    servers: list[WebServer] = []

    def start(config: Path | None = None, **kwargs) -> WebServer:
        server = start_server(registry, "127.0.0.1", 0,
                              load_web_config(config) if config else None, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


def _get(server: WebServer, path: str = "/metrics", headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None, method: str = "GET"):
    if server.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=context, timeout=10)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()  # names: any case
    finally:
        conn.close()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64encode(f"{user}:{password}".encode()).decode()}


def _tls_client(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        context.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
    return context


# ---------------------------------------------------------------- plain HTTP

def test_metrics_are_served_with_negotiated_format_and_compression(serve):
    server = serve()
    assert server.url == f"http://127.0.0.1:{server.port}"
    status, headers, body = _get(server)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "carekpi_test_answer 42.0" in body.decode()

    _, headers, body = _get(server, headers={"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert "carekpi_test_answer 42.0" in gzip.decompress(body).decode()

    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    _, headers, body = _get(server, headers=accept)
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")

    _, _, body = _get(server, "/metrics?name[]=carekpi_test_other")
    assert "carekpi_test_other 7.0" in body.decode()
    assert "carekpi_test_answer" not in body.decode()


def test_landing_health_unknown_path_and_methods(serve):
    server = serve(extra_routes={"/-/ready": lambda query: (503, "text/plain", "not yet\n")})
    status, headers, body = _get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<a href="/metrics">' in body and b'<a href="/-/ready">' in body
    assert _get(server, "/-/healthy")[0::2] == (200, b"OK\n")
    assert _get(server, "/-/ready")[0::2] == (503, b"not yet\n")
    assert _get(server, "/nope")[0] == 404
    status, headers, _ = _get(server, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = _get(server, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert "BaseHTTP" not in headers["Server"] and "Python" not in headers["Server"]


def test_keep_alive_connection_serves_head_then_get(serve):
    server = serve()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("HEAD", "/metrics")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        conn.request("GET", "/metrics")
        assert b"carekpi_test_answer 42.0" in conn.getresponse().read()
    finally:
        conn.close()


def test_a_malformed_request_is_answered_and_logged_safely(serve, caplog):
    caplog.set_level(logging.INFO, logger="carekpi.web")
    server = serve(log_requests=True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"GET /metrics?token=hunter2 HTTP/A.B\r\n\r\n")
        answer = b"".join(iter(lambda: raw.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 400 ") and b"hunter2" not in answer
    assert _get(server, "/-/healthy")[0] == 200
    assert all("hunter2" not in r.getMessage() for r in caplog.records)
    assert caplog.records[-1].getMessage() == '127.0.0.1 "GET /-/healthy" 200'


def test_extra_routes_cannot_replace_built_ins(registry):
    with pytest.raises(CareKPIError, match="built-ins"):
        start_server(registry, "127.0.0.1", 0, None, {"/metrics": lambda q: (200, "x", b"")})


def test_port_in_use_is_a_one_line_error(registry):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CareKPIError) as caught:
            start_server(registry, "127.0.0.1", port, None)
    assert str(caught.value) == (f"port {port} on 127.0.0.1 is already in use; "
                                 "choose another with --port")


def test_a_silent_client_does_not_block_others(serve, pki):
    server = serve(_config(pki, "tls_server_config:\n  cert_file: server.crt\n"
                                "  key_file: server.key\n", "tls-only.yml"))
    with socket.create_connection(("127.0.0.1", server.port)):  # connects, never speaks
        started = time.monotonic()
        status, _, _ = _get(server, context=_tls_client(pki))
        assert status == 200
        assert time.monotonic() - started < 2


def test_requests_are_not_logged_unless_asked_and_never_with_query(serve, caplog):
    caplog.set_level(logging.DEBUG, logger="carekpi.web")
    quiet = serve()
    _get(quiet, "/metrics?name[]=secret_token_123")
    assert caplog.records == []
    loud = serve(log_requests=True)
    _get(loud, "/metrics?name[]=secret_token_123")
    assert [r.getMessage() for r in caplog.records] == ['127.0.0.1 "GET /metrics" 200']


# ---------------------------------------------------------------- basic auth

@pytest.fixture
def auth_config(tmp_path) -> Path:
    return _config(tmp_path, f"basic_auth_users:\n  prometheus: '{HASH}'\n"
                             "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")


def test_basic_auth(serve, auth_config):
    server = serve(auth_config)
    status, headers, body = _get(server)
    assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="CareKPI"')
    assert b"carekpi_test_answer" not in body
    assert _get(server, headers=_basic("prometheus", "wrong"))[0] == 401
    assert _get(server, headers=_basic("intruder", PASSWORD))[0] == 401
    assert _get(server, headers={"Authorization": "Basic !!notbase64"})[0] == 401
    assert _get(server, headers={"Authorization": "Bearer x"})[0] == 401
    assert _get(server, "/-/healthy")[0] == 401
    status, headers, body = _get(server, headers=_basic("prometheus", PASSWORD))
    assert status == 200 and b"carekpi_test_answer 42.0" in body
    assert headers["X-Frame-Options"] == "deny"


def test_successful_checks_are_cached_failed_ones_are_not(serve, auth_config, monkeypatch):
    server = serve(auth_config)
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(web_auth.bcrypt, "checkpw", counting)
    for _ in range(3):
        assert _get(server, headers=_basic("prometheus", PASSWORD))[0] == 200
    assert calls == [PASSWORD.encode()]
    for _ in range(2):
        assert _get(server, headers=_basic("prometheus", "wrong"))[0] == 401
    assert calls == [PASSWORD.encode(), b"wrong", b"wrong"]


def test_rate_limit(serve, tmp_path):
    server = serve(_config(tmp_path, "rate_limit:\n  interval: 1h\n  burst: 2\n"))
    assert [_get(server)[0] for _ in range(3)] == [200, 200, 429]


# ---------------------------------------------------------------- TLS

def test_tls_serves_https_and_refuses_plain_http(serve, pki):
    server = serve(_config(pki, f"tls_server_config:\n  cert_file: server.crt\n"
                                f"  key_file: {pki / 'server.key'}\n"
                                f"basic_auth_users:\n  prometheus: '{HASH}'\n", "tls.yml"))
    assert server.url.startswith("https://")
    status, _, body = _get(server, headers=_basic("prometheus", PASSWORD),
                           context=_tls_client(pki))
    assert status == 200 and b"carekpi_test_answer 42.0" in body

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain:
        plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b"".join(iter(lambda: plain.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.0 400 Bad Request")
    assert b"HTTP request to an HTTPS server" in answer and b"carekpi_test" not in answer


def _refused(server: WebServer, context: ssl.SSLContext) -> bool:
    try:
        _get(server, context=context)
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected):
        return True
    return False


def test_client_certificates_are_enforced(serve, pki):
    server = serve(_config(pki, "tls_server_config:\n  cert_file: server.crt\n"
                                "  key_file: server.key\n"
                                "  client_auth_type: RequireAndVerifyClientCert\n"
                                "  client_ca_file: ca.crt\n", "mtls.yml"))
    assert _get(server, context=_tls_client(pki, "client"))[0] == 200
    assert _refused(server, _tls_client(pki))
    assert _refused(server, _tls_client(pki, "rogue"))


def test_client_allowed_sans(serve, pki):
    server = serve(_config(pki, "tls_server_config:\n  cert_file: server.crt\n"
                                "  key_file: server.key\n"
                                "  client_auth_type: RequireAndVerifyClientCert\n"
                                "  client_ca_file: ca.crt\n"
                                "  client_allowed_sans: [scraper.example]\n", "sans.yml"))
    assert _get(server, context=_tls_client(pki, "client"))[0] == 200
    assert _refused(server, _tls_client(pki, "client2"))


def test_rotated_certificate_is_picked_up_without_restart(serve, pki, tmp_path):
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    server = serve(_config(tmp_path, "tls_server_config:\n  cert_file: server.crt\n"
                                     "  key_file: server.key\n"))

    def served_serial() -> int:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
                _tls_client(pki).wrap_socket(raw, server_hostname="localhost") as conn:
            der = conn.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der).serial_number

    before = served_serial()
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key, cert = _issue("localhost", (ca_key, ca_cert.subject), [x509.DNSName("localhost")])
    _write(tmp_path, "server", key, cert)
    assert served_serial() == cert.serial_number != before


# ---------------------------------------------------------------- configs refused at load

GOOD_TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


@pytest.mark.parametrize(("text", "key", "message"), [
    (GOOD_TLS + "  min_version: TLS11\n", "tls_server_config.min_version", "deprecated"),
    (GOOD_TLS + "  min_version: SSL3\n", "tls_server_config.min_version", "one of TLS10"),
    (GOOD_TLS + "  max_version: TLS12\n  min_version: TLS13\n", "tls_server_config.max_version",
     "lower than min_version"),
    (GOOD_TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n",
     "tls_server_config.client_auth_type", "without verifying"),
    (GOOD_TLS + "  client_ca_file: ca.crt\n", "tls_server_config.client_auth_type",
     "NoClientCert"),
    (GOOD_TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file", "needs a client CA"),
    (GOOD_TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
     "tls_server_config.cipher_suites", "not supported"),
    (GOOD_TLS + "  cert_fil: x\n", "tls_server_config.cert_fil", "unknown key"),
    ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file", "missing"),
    ("tls_server_config:\n  cert_file: garbage.pem\n  key_file: server.key\n",
     "tls_server_config.cert_file", "not a PEM certificate"),
    ("tls_server_config:\n  cert_file: absent.crt\n  key_file: server.key\n",
     "tls_server_config.cert_file", "cannot read"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: garbage.pem\n",
     "tls_server_config.key_file", "not an unencrypted PEM private key"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n",
     "tls_server_config.key_file", "does not match the certificate"),
    ("basic_auth_users:\n  prometheus: plaintext-password\n", "basic_auth_users.prometheus",
     "not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': '" + HASH + "'\n", "basic_auth_users.a:b", "':'"),
    # Shaped like a hash, but every request would fail: bcrypt refuses the salt.
    ("basic_auth_users:\n  prometheus: '$2b$04$" + "!" * 53 + "'\n",
     "basic_auth_users.prometheus", "salt is invalid"),
    # Cost 31: start-up alone would hash for days, unknown users for as long each.
    ("basic_auth_users:\n  prometheus: '$2b$31$" + HASH[7:] + "'\n",
     "basic_auth_users.prometheus", "bcrypt cost 31 is above 14"),
    ("http_server_config:\n  headers:\n"
     "    Content-Security-Policy: \"default-src \u2018none\u2019\"\n",
     "http_server_config.headers.Content-Security-Policy", "printable ASCII"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "http_server_config.headers.X-Frame-Options", "one of deny, sameorigin"),
    ("http_server_config:\n  headers:\n    X-Powered-By: me\n",
     "http_server_config.headers.X-Powered-By", "unknown key"),
    ("rate_limit:\n  interval: often\n", "rate_limit.interval", "duration"),
    ("basic_auth:\n  prometheus: x\n", "basic_auth", "unknown key"),
    ("- just\n- a list\n", "", "expected a mapping"),
    ("tls_server_config: [\n", "", "YAML syntax error"),
])
def test_bad_configs_are_refused_at_load(pki, text, key, message):
    (pki / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    path = _config(pki, text, "bad.yml")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert message in caught.value.message
    assert "\n" not in str(caught.value)
    assert "plaintext-password" not in str(caught.value)


def test_an_empty_file_is_a_valid_config(tmp_path):
    config = load_web_config(_config(tmp_path, ""))
    assert config.tls is None and config.users == {} and config.headers == {}


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_web_config(tmp_path / "absent.yml")


def test_a_header_written_as_a_yaml_block_is_one_line(pki):
    path = _config(pki, "http_server_config:\n  headers:\n    Content-Security-Policy: |\n"
                        "      default-src 'none'\n", "block.yml")
    assert load_web_config(path).headers == {"Content-Security-Policy": "default-src 'none'"}
