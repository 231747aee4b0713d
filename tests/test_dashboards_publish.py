"""Publishing through grafana-client against a fake Grafana HTTP API on loopback.

The fake answers the endpoints grafana-client calls (folders by uid, folder creation, dashboard
by uid, dashboard save), checks credentials like Grafana does (401 / 403) and records every
request. It stores what it is sent and returns it as Grafana returns it (with id and version
added), which is what makes the idempotence assertions meaningful. No live Grafana is used.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from dashboards import build, publish
from dashboards.commands import dashboards_group
from kpis import config as config_module
from kpis.errors import CareKPIError
from tests.conftest import free_port

TOKEN = "glsa_test-token"
BASIC = ("admin", "s3cret")


class FakeGrafana:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.forbidden = False
        self.next_id = 1

    def writes(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] != "GET"]

    def handle(self, method: str, path: str, auth: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        basic = "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()
        if auth not in (f"Bearer {TOKEN}", basic):
            return 401, {"message": "Unauthorized"}
        if self.forbidden:
            return 403, {"message": "Access denied"}
        if method == "GET" and path.startswith("/api/folders/"):
            folder = self.folders.get(path.rsplit("/", 1)[1])
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            if body["uid"] in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 7}
            return 200, self.folders[body["uid"]]
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            stored = self.dashboards.get(path.rsplit("/", 1)[1])
            return (200, copy.deepcopy(stored)) if stored else (404, {"message": "not found"})
        if method == "POST" and path == "/api/dashboards/db":
            return self._save(body)
        return 404, {"message": "Not found"}

    def _save(self, body: dict[str, Any]) -> tuple[int, Any]:
        model = copy.deepcopy(body["dashboard"])
        uid = model["uid"]
        if body.get("folderUid") not in self.folders:
            return 400, {"message": "folder not found"}
        old = self.dashboards.get(uid)
        if old is not None and not body.get("overwrite"):
            return 412, {"message": "version-mismatch"}
        version = old["dashboard"]["version"] + 1 if old else 1
        model["id"] = old["dashboard"]["id"] if old else self.next_id
        self.next_id += old is None
        model["version"] = version
        self.dashboards[uid] = {"dashboard": model, "meta": {"folderUid": body["folderUid"]}}
        return 200, {"id": model["id"], "uid": uid, "status": "success", "version": version}


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    with running_grafana() as served:
        yield served


@contextlib.contextmanager
def running_grafana() -> Iterator[tuple[FakeGrafana, str]]:
    """A FakeGrafana answering on a loopback port: (fake, its root URL)."""
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = fake.handle(self.command, self.path.split("?")[0],
                                          self.headers.get("Authorization", ""), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port(19200, 19300)), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _publish(url: str, boards: list[dict[str, Any]] | None = None,
             **auth: Any) -> list[publish.Outcome]:
    api = publish.connect(url, **(auth or {"token": TOKEN}))
    return publish.publish(api, url, boards if boards is not None else build.dashboards())


def test_first_publish_creates_the_folder_then_every_dashboard(grafana):
    fake, url = grafana
    outcomes = _publish(url)
    uids = [d["uid"] for d in build.dashboards()]
    assert [(o.uid, o.action) for o in outcomes] == [(uid, "created") for uid in uids]
    assert fake.requests[:2] == [
        ("GET", "/api/folders/carekpi", None),
        ("POST", "/api/folders", {"title": "CareKPI", "uid": "carekpi"}),
    ]
    saves = [body for method, path, body in fake.writes() if path == "/api/dashboards/db"]
    assert [s["dashboard"]["uid"] for s in saves] == uids
    assert all(s["overwrite"] is True and s["folderUid"] == "carekpi" for s in saves)
    assert all(s["dashboard"]["id"] is None for s in saves)
    assert fake.dashboards["carekpi-overview"]["dashboard"]["title"] == \
        "CareKPI / Care quality overview"


def test_second_publish_changes_nothing(grafana):
    fake, url = grafana
    _publish(url)
    stored = copy.deepcopy(fake.dashboards)
    fake.requests.clear()
    outcomes = _publish(url)
    assert {o.action for o in outcomes} == {"unchanged"}
    assert fake.writes() == []  # no folder creation, no dashboard save, no new versions
    assert fake.dashboards == stored
    assert len(fake.requests) == 1 + len(outcomes)


def test_a_changed_target_updates_only_the_dashboards_that_show_it(grafana, tmp_path):
    fake, url = grafana
    _publish(url)
    path = tmp_path / "carekpi.yaml"
    path.write_text("version: 1\nsources: {db: {url: 'sqlite:///x.db'}}\n"
                    "kpis: {nps: {target: 40}}\n")
    fake.requests.clear()
    outcomes = _publish(url, build.dashboards(config_module.load(path)))
    changed = {o.uid for o in outcomes if o.action == "updated"}
    # NPS appears on the overview, the clinic drill-down and the patient-experience dashboard.
    assert changed == {"carekpi-overview", "carekpi-clinic", "carekpi-experience"}
    assert {o.action for o in outcomes if o.uid not in changed} == {"unchanged"}
    assert fake.dashboards["carekpi-experience"]["dashboard"]["version"] == 2
    assert fake.dashboards["carekpi-exporter"]["dashboard"]["version"] == 1


def test_an_existing_folder_is_reused(grafana):
    fake, url = grafana
    fake.folders["carekpi"] = {"uid": "carekpi", "title": "CareKPI", "id": 3}
    _publish(url)
    assert ("POST", "/api/folders") not in [(m, p) for m, p, _ in fake.requests]


def test_basic_auth_works(grafana):
    fake, url = grafana
    outcomes = _publish(url, user=BASIC[0], password=BASIC[1])
    assert len(outcomes) == len(build.BUILDERS) == len(fake.dashboards)


@pytest.mark.parametrize(("setup", "message"), [
    ("bad-token", "authentication failed (401)"),
    ("forbidden", "permission denied (403)"),
    ("wrong-path", "not found (404)"),
])
def test_http_errors_become_one_line_messages(grafana, setup, message):
    fake, url = grafana
    token = "wrong" if setup == "bad-token" else TOKEN
    fake.forbidden = setup == "forbidden"
    target = f"{url}/not-grafana" if setup == "wrong-path" else url
    with pytest.raises(CareKPIError) as caught:
        _publish(target, token=token)
    text = str(caught.value)
    assert text.startswith(f"Grafana at {target}: {message}")
    assert "\n" not in text and TOKEN not in text


def test_connection_refused_is_a_one_line_error_with_host_port_and_reason():
    port = free_port(19200, 19300)  # nothing listens there
    with pytest.raises(CareKPIError) as caught:
        _publish(f"http://127.0.0.1:{port}")
    assert str(caught.value) == (f"Grafana at http://127.0.0.1:{port}: cannot connect to "
                                 f"127.0.0.1 port {port}: connection refused")


def test_cli_publish_to_an_unreachable_server_prints_no_python_repr():
    port = free_port(19200, 19300)
    result = CliRunner().invoke(dashboards_group, ["publish", "--url", f"http://localhost:{port}",
                                                   "--token", TOKEN])
    assert result.exit_code == 2
    assert result.output.strip().endswith(f"cannot connect to localhost port {port}: "
                                          "connection refused"), result.output
    assert "object at 0x" not in result.output and "<" not in result.output


def test_missing_credentials_are_refused_before_any_request():
    with pytest.raises(CareKPIError, match="give --token, or --user and --password"):
        publish.connect("http://127.0.0.1:19299")


def test_folder_uid_is_stable_and_valid():
    assert publish.folder_uid("CareKPI") == "carekpi"
    assert publish.folder_uid("Care quality / North") == "care-quality-north"
    assert len(publish.folder_uid("x" * 80)) == 40


def test_cli_publish_prints_outcomes_and_is_idempotent(grafana):
    fake, url = grafana
    runner = CliRunner()
    args = ["publish", "--url", url, "--token", TOKEN, "--folder", "Care KPIs"]
    first = runner.invoke(dashboards_group, args)
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == len(build.BUILDERS)
    assert "care-kpis" in fake.folders
    second = runner.invoke(dashboards_group, args)
    assert second.output.count("unchanged") == len(build.BUILDERS)


def test_cli_publish_errors_exit_2_with_one_line(grafana):
    _, url = grafana
    result = CliRunner().invoke(dashboards_group, ["publish", "--url", url, "--token", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"carekpi: Grafana at {url}: authentication failed (401): check the token or user and "
        "password"
    ]
