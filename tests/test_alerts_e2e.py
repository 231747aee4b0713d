"""End to end on loopback: ``carekpi demo`` -> real Prometheus (generated rules) -> real
Alertmanager with the shipped ``alerts/alertmanager.yml`` -> a webhook served by the test,
which counts the notifications each receiver gets.

The rules are a copy of ``alerts/generated`` with the KPI alerts' ``for:`` scaled down to 20 s
(the real durations, 15 minutes and more, would make the test take that long; burn rates have
none and fire first, as in production); scrape and evaluation intervals are 1 s. The
Alertmanager config is the shipped one with its webhook URLs pointed at the test and its group
timers shortened. Ports come from 19100-19199. Bounded: every wait has a deadline.
"""

from __future__ import annotations

import json
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
SHIPPED_ALERTMANAGER = Path(__file__).resolve().parent.parent / "alerts" / "alertmanager.yml"
PAGERS = ("pager", "clinic-dtn-pager")
# 15 minutes and more in production, where a burn rate (no for:) fires first: the order holds.
SCALED_FOR = "20s"


class Webhook(ThreadingHTTPServer):
    """Collects the notifications Alertmanager posts: (receiver, payload)."""

    def __init__(self, port: int) -> None:
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [a for _, body in self.notifications for a in body["alerts"]]

    def received(self, receiver: str) -> list[dict[str, Any]]:
        """The notifications (payloads) of one receiver, firing ones only."""
        return [body for name, body in self.notifications
                if name == receiver and body["status"] == "firing"]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.notifications.append(  # type: ignore[attr-defined]
            (self.path.strip("/"), body))
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
    """The generated rules, KPI alerts (those with a ``signal``) with ``for:`` scaled down
    to SCALED_FOR; health alerts keep theirs (5 minutes: ExporterAbsent would fire before
    the first scrape)."""
    paths = []
    for name, text in build.build_files(None).items():
        document = yaml.safe_load(text)
        for group in document["groups"]:
            for rule in group["rules"]:
                if "signal" in rule.get("labels", {}) and "for" in rule:
                    rule["for"] = SCALED_FOR
        path = folder / name
        path.write_text(yaml.safe_dump(document))
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
    """The shipped routing and inhibition, each receiver's webhook at /<receiver name>."""
    config = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text())
    # group_wait 10 s (shipped: 30 s): alerts of one incident that turn firing a few seconds
    # apart (a rule reading a recorded ratio lags one reading the raw series) meet in the
    # first notification, where the inhibition applies, as they do within the shipped 30 s.
    config["route"].update(group_wait="10s", group_interval="2s", repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{webhook_port}/{receiver['name']}"
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
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
    raise AssertionError(f"timed out after {seconds:.0f}s waiting for "
                         f"{what() if callable(what) else what}")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.processes = tmp, []  # type: list[subprocess.Popen[bytes]]
        self.webhook: Webhook | None = None

    def demo(self, *incidents: str) -> int:
        port = free_port(19100, 19120)
        args = [str(CAREKPI_BIN), "demo", "--no-checks", "--port", str(port),
                "--db", f"sqlite:///{self.tmp}/demo.db"]
        for incident in incidents:
            args += ["--incident", incident]
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


def pages(webhook: Webhook) -> list[dict[str, Any]]:
    return [body for receiver in PAGERS for body in webhook.received(receiver)]


def paged(webhook: Webhook) -> set[tuple[str, str, str]]:
    """(alertname, kpi, clinic) of every alert in a page."""
    return {(a["labels"]["alertname"], a["labels"]["kpi"], a["labels"]["clinic"])
            for body in pages(webhook) for a in body["alerts"]}


def test_portal_backlog_pages_once(stack):
    """DTN's inbox: the slow burn, the target breach and the backlog fire in Prometheus, and
    the fast burn too while DTN's last hour had deadlines (the demo runs at the real time of
    day: after closing time the 1 h window is empty); the coordinator gets exactly one page,
    for the highest of them, and at most one ticket."""
    demo = stack.demo("portal-backlog")
    am = stack.alertmanager()
    prometheus = stack.prometheus(demo, am)
    webhook = stack.webhook
    assert webhook is not None

    def firing() -> set[str]:
        return {a["labels"]["alertname"] for a in query(prometheus, "/api/v1/alerts")["alerts"]
                if a["state"] == "firing" and a["labels"].get("clinic") == "DTN"}

    wanted = {"CareKPIResponseSlaSlowBurn", "CareKPIResponseSlaTargetBreach",
              "CareKPISlaBreachBacklog"}
    wait_for(lambda: wanted <= firing(), 180,
             lambda: f"the portal-backlog alerts firing in Prometheus (firing: {firing()})")
    wait_for(lambda: pages(webhook), 30, "a page at the webhook")
    time.sleep(15)  # past group_wait and several group intervals: nothing else may arrive
    assert len(pages(webhook)) == 1, pages(webhook)
    page = pages(webhook)[0]
    top = ("CareKPIResponseSlaFastBurn" if "CareKPIResponseSlaFastBurn" in firing()
           else "CareKPIResponseSlaTargetBreach")
    assert [a["labels"]["alertname"] for a in page["alerts"]] == [top]
    labels = page["alerts"][0]["labels"]
    assert {k: labels.get(k) for k in ("clinic", "kpi", "severity", "source")} == {
        "clinic": "DTN", "kpi": "response_sla", "severity": "critical", "source": "demo"}
    assert webhook.received("clinic-dtn-pager") == [page]  # DTN's own rota
    assert page["alerts"][0]["annotations"]["runbook_url"].endswith("#" + top.lower())
    assert len(webhook.received("tickets")) <= 1
    assert_rules_healthy(prometheus)


# What each planted incident is about (kpis/demo/incidents.py): its KPIs and clinics (None:
# every clinic; the stale feed's alert is about no clinic).
INCIDENT_SCOPE: dict[str, tuple[set[str], set[str] | None]] = {
    "portal-backlog": ({"response_sla", "sla_breach_backlog", "first_response_time"}, {"DTN"}),
    "no-show-spike": ({"no_show"}, {"PED"}),
    "long-waits": ({"wait_to_be_seen", "visit_cycle_time"}, {"DTN"}),
    "call-abandonment": ({"call_abandonment", "service_level"}, None),
    "stale-feed": ({"freshness"}, {"all"}),
}


def incident_of(labels: dict[str, str]) -> str | None:
    for incident, (kpis, clinics) in INCIDENT_SCOPE.items():
        if labels["kpi"] in kpis and (clinics is None or labels["clinic"] in clinics):
            return incident
    return None


def test_each_incident_pages_for_its_own_kpi_and_clinic(stack):
    """All five incidents at once: every notification (page or ticket) is about one of the
    incidents' own KPIs and clinics, every incident is notified, and no clinic gets two pages
    for one objective."""
    demo = stack.demo(*INCIDENT_SCOPE)
    am = stack.alertmanager()
    stack.prometheus(demo, am)
    webhook = stack.webhook
    assert webhook is not None
    receivers = ("pager", "clinic-dtn-pager", "tickets")

    def notified() -> list[dict[str, str]]:
        return [a["labels"] for receiver in receivers for body in webhook.received(receiver)
                for a in body["alerts"]]

    wait_for(lambda: {incident_of(labels) for labels in notified()} >= set(INCIDENT_SCOPE),
             180, lambda: f"a notification per incident (so far: {notified()})")
    time.sleep(12)
    assert [(a["alertname"], a["clinic"]) for a in notified() if incident_of(a) is None] == []
    paged_labels = [a["labels"] for body in pages(webhook) for a in body["alerts"]]
    page_keys = [(a["objective"], a["clinic"]) for a in paged_labels]
    assert len(page_keys) == len(set(page_keys)), [
        [(a["labels"]["alertname"], a["status"], a["startsAt"], a["endsAt"]) for a in b["alerts"]]
        for b in pages(webhook)]
    assert ("response_sla", "DTN") in page_keys and ("wait_to_be_seen", "DTN") in page_keys
    assert {a["severity"] for a in paged_labels} == {"critical"}


def test_clean_demo_pages_nothing(stack):
    demo = stack.demo()
    am = stack.alertmanager()
    prometheus = stack.prometheus(demo, am)
    wait_for(lambda: kpi_data_recorded(prometheus), 90, "recorded KPI ratios")
    time.sleep(10)  # several evaluations with data, past group_wait
    assert_rules_healthy(prometheus)
    alerts = query(prometheus, "/api/v1/alerts")["alerts"]
    kpi_alerts = [(a["labels"]["alertname"], a["labels"].get("clinic"), a["value"])
                  for a in alerts if a["labels"].get("kpi", "all") != "all"
                  and a["labels"].get("severity") != "info"]  # info: shown, never routed
    assert kpi_alerts == []
    assert stack.webhook is not None and stack.webhook.notifications == []
