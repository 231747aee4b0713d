"""End to end on loopback: ``carekpi demo`` -> real Prometheus (generated rules) -> real
Alertmanager -> a webhook served by the test.

The rules are a copy of ``alerts/generated`` with every ``for:`` rewritten to ``0s`` (the real
durations, 15 minutes and more, would make the test take that long); scrape and evaluation
intervals are 1 s. Ports come from 19100-19199. Bounded: every wait has a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts import build
from tests.conftest import free_port
from tests.test_alerts_alertmanager import wait_ready
from tests.test_alerts_promtool import require

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
CAREKPI_BIN = Path(sys.executable).parent / "carekpi"


class Webhook(ThreadingHTTPServer):
    """Collects the alerts Alertmanager posts."""

    def __init__(self, port: int) -> None:
        self.alerts: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.alerts.extend(body["alerts"])  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def rules_without_for(folder: Path) -> list[Path]:
    paths = []
    for name, text in build.build_files(None).items():
        path = folder / name
        path.write_text(re.sub(r"(?m)^(\s+)for: \S+$", r"\1for: 0s", text))
        paths.append(path)
    return paths


def prometheus_config(tmp: Path, demo_port: int, am_port: int | None) -> Path:
    rules = rules_without_for(tmp)
    alerting = (f"alerting:\n  alertmanagers:\n    - static_configs:\n"
                f"        - targets: ['127.0.0.1:{am_port}']\n") if am_port else ""
    text = (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: [{', '.join(str(p) for p in rules)}]\n{alerting}"
        "scrape_configs:\n  - job_name: carekpi\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{demo_port}']\n"
    )
    path = tmp / "prometheus.yml"
    path.write_text(text)
    return path


def alertmanager_config(tmp: Path, webhook_port: int) -> Path:
    path = tmp / "alertmanager.yml"
    path.write_text(
        "route:\n  receiver: hook\n  group_by: [alertname, clinic, kpi]\n"
        "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: hook\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{webhook_port}/hook\n")
    return path


def query(prometheus: str, path: str) -> Any:
    with urllib.request.urlopen(prometheus + path, timeout=5) as response:
        return json.load(response)["data"]


def wait_for(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.processes = tmp, []  # type: list[subprocess.Popen[bytes]]
        self.webhook: Webhook | None = None

    def demo(self, incident: str | None) -> int:
        port = free_port(19100, 19120)
        args = [str(CAREKPI_BIN), "demo", "--no-checks", "--port", str(port),
                "--db", f"sqlite:///{self.tmp}/demo.db"]
        args += ["--incident", incident] if incident else []
        self.processes.append(start(args, self.tmp / "demo.log"))
        wait_ready(f"http://127.0.0.1:{port}/metrics", 120)
        return port

    def alertmanager(self) -> int:
        webhook_port = free_port(19140, 19160)
        self.webhook = Webhook(webhook_port)
        threading.Thread(target=self.webhook.serve_forever, daemon=True).start()
        port = free_port(19160, 19180)
        (self.tmp / "am").mkdir()
        self.processes.append(start([
            require("prometheus-alertmanager"),
            f"--config.file={alertmanager_config(self.tmp, webhook_port)}",
            f"--storage.path={self.tmp / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="], self.tmp / "alertmanager.log"))
        wait_ready(f"http://127.0.0.1:{port}/-/ready", 30)
        return port

    def prometheus(self, demo_port: int, am_port: int | None) -> str:
        port = free_port(19120, 19140)
        (self.tmp / "tsdb").mkdir()
        self.processes.append(start([
            require("prometheus"),
            f"--config.file={prometheus_config(self.tmp, demo_port, am_port)}",
            f"--storage.tsdb.path={self.tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            self.tmp / "prometheus.log"))
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/-/ready", 30)
        return url

    def close(self) -> None:
        for process in reversed(self.processes):
            stop(process)
        if self.webhook is not None:
            self.webhook.shutdown()
            self.webhook.server_close()


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    if not CAREKPI_BIN.exists():
        pytest.skip(f"{CAREKPI_BIN} not installed")
    running = Stack(tmp_path)
    try:
        yield running
    finally:
        running.close()


def kpi_data_recorded(prometheus: str) -> bool:
    params = urllib.parse.urlencode({"query": "clinic_window:carekpi_response_sla:ratio"})
    return bool(query(prometheus, f"/api/v1/query?{params}")["result"])


def assert_rules_healthy(prometheus: str) -> None:
    """Every rule loaded and evaluates without error (no many-to-many matching, no bad
    template): an alert that errors would never fire and the silent test would pass."""
    groups = query(prometheus, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    expected = sum(len(g["rules"]) for text in build.build_files(None).values()
                   for g in yaml.safe_load(text)["groups"])
    assert len(rules) == expected
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def test_portal_backlog_reaches_the_webhook(stack):
    demo = stack.demo("portal-backlog")
    am = stack.alertmanager()
    prometheus = stack.prometheus(demo, am)
    assert stack.webhook is not None

    def backlog_alert() -> list[dict[str, Any]]:
        return [a for a in stack.webhook.alerts  # type: ignore[union-attr]
                if a["labels"]["alertname"] == "CareKPISlaBreachBacklog"]

    found = wait_for(backlog_alert, 90, "CareKPISlaBreachBacklog at the webhook")
    labels = found[0]["labels"]
    assert {k: labels.get(k) for k in ("clinic", "kpi", "severity", "source")} == {
        "clinic": "DTN", "kpi": "sla_breach_backlog", "severity": "critical", "source": "demo"}
    assert found[0]["annotations"]["runbook_url"].endswith("#carekpislabreachbacklog")
    assert "DTN:" in found[0]["annotations"]["description"]
    firing = {(a["labels"]["alertname"], a["labels"].get("clinic")) for a in
              query(prometheus, "/api/v1/alerts")["alerts"] if a["state"] == "firing"}
    assert ("CareKPIResponseSlaTargetBreach", "DTN") in firing
    assert_rules_healthy(prometheus)


def test_clean_demo_raises_no_kpi_alert(stack):
    demo = stack.demo(None)
    prometheus = stack.prometheus(demo, None)
    wait_for(lambda: kpi_data_recorded(prometheus), 90, "recorded KPI ratios")
    time.sleep(5)  # several evaluations with data
    assert_rules_healthy(prometheus)
    alerts = query(prometheus, "/api/v1/alerts")["alerts"]
    kpi_alerts = [(a["labels"]["alertname"], a["labels"].get("clinic"), a["value"])
                  for a in alerts if "kpi" in a["labels"]]
    assert kpi_alerts == []
