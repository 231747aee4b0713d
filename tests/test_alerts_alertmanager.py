"""The example Alertmanager config: amtool check-config, route tests, and inhibition checked on
a real Alertmanager on loopback (ports 19100-19199)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.test_alerts_promtool import require

pytestmark = pytest.mark.prometheus
CONFIG = Path(__file__).resolve().parent.parent / "alerts" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("amtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_amtool_check_config():
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 inhibit rules" in result.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=critical", "clinic=PED", "kpi=response_sla"], "pager"),
    (["severity=critical", "clinic=DTN", "kpi=sla_breach_backlog"], "clinic-dtn-pager"),
    (["severity=warning", "clinic=DTN", "kpi=no_show"], "tickets"),
    (["severity=warning", "alertname=CareKPIRefreshStale", "clinic=all"], "tickets"),
    (["severity=warning", "alertname=CareKPICheckFailed", "team=data", "clinic=all"],
     "data-team"),
    (["severity=info", "clinic=DTN"], "null"),
    (["alertname=Unlabelled"], "null"),
])
def test_routes(labels, receiver):
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}",
                    f"--verify.receivers={receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[str]:
    binary = require("prometheus-alertmanager")
    port = free_port(19180, 19200)
    process = subprocess.Popen(
        [binary, f"--config.file={CONFIG}", f"--storage.path={tmp_path}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/-/ready", 20)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {seconds}s")


def post_alerts(url: str, alerts: list[dict[str, dict[str, str]]]) -> None:
    request = urllib.request.Request(url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5):
        pass


def states(url: str) -> dict[tuple[str, str], str]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as response:
        alerts = json.load(response)
    return {(a["labels"]["alertname"], a["labels"].get("clinic") if a["labels"].get(
        "clinic", "all") != "all" else a["labels"].get("source", "")): a["status"]["state"]
            for a in alerts}


def kpi_alert(name: str, kpi: str, clinic: str, severity: str, signal: str,
              objective: str | None = None, source: str = "ehr") -> dict[str, dict[str, str]]:
    return {"labels": {"alertname": name, "kpi": kpi, "clinic": clinic, "severity": severity,
                       "signal": signal, "objective": objective or kpi, "source": source,
                       "job": "carekpi"}}


def wait_suppressed(url: str, key: tuple[str, str]) -> dict[tuple[str, str], str]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = states(url)
        if found.get(key) == "suppressed":
            break
        time.sleep(0.3)
    return found


def test_kpi_alerts_of_a_down_source_are_inhibited(alertmanager):
    post_alerts(alertmanager, [
        {"labels": {"alertname": "CareKPISourceDown", "severity": "critical", "source": "ehr",
                    "clinic": "all", "kpi": "all", "job": "carekpi"}},
        kpi_alert("CareKPINoShowTargetBreach", "no_show", "DTN", "warning", "target"),
        kpi_alert("CareKPISlaBreachBacklog", "sla_breach_backlog", "DTN", "critical",
                  "backlog", "response_sla", source="portal"),
    ])
    found = wait_suppressed(alertmanager, ("CareKPINoShowTargetBreach", "DTN"))
    assert found == {("CareKPISourceDown", "ehr"): "active",
                     ("CareKPINoShowTargetBreach", "DTN"): "suppressed",  # source ehr
                     ("CareKPISlaBreachBacklog", "DTN"): "active"}  # source portal


def test_one_incident_one_page(alertmanager):
    """DTN's portal backlog: the fast burn silences the slow burn, the target breach and the
    backlog of the same objective in DTN; PED's breach of the same KPI and DTN's no-show
    ticket stay active."""
    post_alerts(alertmanager, [
        kpi_alert("CareKPIResponseSlaFastBurn", "response_sla", "DTN", "critical", "fast_burn"),
        kpi_alert("CareKPIResponseSlaSlowBurn", "response_sla", "DTN", "warning", "slow_burn"),
        kpi_alert("CareKPIResponseSlaTargetBreach", "response_sla", "DTN", "critical", "target"),
        kpi_alert("CareKPISlaBreachBacklog", "sla_breach_backlog", "DTN", "critical", "backlog",
                  "response_sla"),
        kpi_alert("CareKPIResponseSlaTargetBreach", "response_sla", "PED", "critical", "target"),
        kpi_alert("CareKPISlaBreachBacklog", "sla_breach_backlog", "PED", "critical", "backlog",
                  "response_sla"),
        kpi_alert("CareKPINoShowTargetBreach", "no_show", "DTN", "warning", "target"),
    ])
    found = wait_suppressed(alertmanager, ("CareKPISlaBreachBacklog", "PED"))
    assert found == {
        ("CareKPIResponseSlaFastBurn", "DTN"): "active",
        ("CareKPIResponseSlaSlowBurn", "DTN"): "suppressed",
        ("CareKPIResponseSlaTargetBreach", "DTN"): "suppressed",
        ("CareKPISlaBreachBacklog", "DTN"): "suppressed",
        ("CareKPIResponseSlaTargetBreach", "PED"): "active",  # no fast burn in PED
        ("CareKPISlaBreachBacklog", "PED"): "suppressed",  # under PED's target breach
        ("CareKPINoShowTargetBreach", "DTN"): "active",  # another KPI
    }


def test_exporter_absent_silences_only_its_own_job(alertmanager):
    absent = {"labels": {"alertname": "CareKPIExporterAbsent", "severity": "critical",
                         "job": "carekpi", "clinic": "all", "kpi": "all", "source": "all"}}
    other = kpi_alert("CareKPINoShowTargetBreach", "no_show", "PED", "warning", "target")
    other["labels"]["job"] = "carekpi-east"
    post_alerts(alertmanager, [
        absent, other,
        kpi_alert("CareKPINoShowTargetBreach", "no_show", "DTN", "warning", "target")])
    found = wait_suppressed(alertmanager, ("CareKPINoShowTargetBreach", "DTN"))
    assert found == {("CareKPIExporterAbsent", "all"): "active",
                     ("CareKPINoShowTargetBreach", "DTN"): "suppressed",
                     ("CareKPINoShowTargetBreach", "PED"): "active"}


def test_one_shard_absent_silences_only_its_own_instance(alertmanager):
    """Shards: shard a's exporter is down. Its own health alert is silenced; shard b's health
    alert and every KPI alert (aggregated across shards, no instance) still page."""
    def health(instance: str) -> dict[str, dict[str, str]]:  # clinic names the instance here,
        # so that the two alerts can be told apart in the states
        return {"labels": {"alertname": "CareKPIRefreshStale", "severity": "warning",
                           "job": "carekpi", "clinic": instance, "kpi": "no_show",
                           "source": "ehr", "instance": instance}}

    down = {"labels": {"alertname": "CareKPIExporterAbsent", "severity": "critical",
                       "job": "carekpi", "clinic": "all", "kpi": "all", "source": "all",
                       "instance": "shard-a:9880"}}
    post_alerts(alertmanager, [
        down, health("shard-a:9880"), health("shard-b:9880"),
        kpi_alert("CareKPINoShowTargetBreach", "no_show", "DTN", "warning", "target")])
    found = wait_suppressed(alertmanager, ("CareKPIRefreshStale", "shard-a:9880"))
    assert found == {("CareKPIExporterAbsent", "all"): "active",
                     ("CareKPIRefreshStale", "shard-a:9880"): "suppressed",
                     ("CareKPIRefreshStale", "shard-b:9880"): "active",
                     ("CareKPINoShowTargetBreach", "DTN"): "active"}


def test_one_locked_table_one_ticket(alertmanager):
    """Ten KPIs of one source stale at once (a locked table): one ticket lists them all; a
    stale KPI of another source is its own ticket."""
    stale = [kpi_alert("CareKPIRefreshStale", kpi, "all", "warning", "stale", source="ehr")
             for kpi in ("no_show", "late_cancellation", "lead_time", "wait_to_be_seen",
                         "visit_cycle_time", "reminder_coverage", "telehealth",
                         "online_booking", "no_show_by_reminder", "freshness")]
    other = kpi_alert("CareKPIRefreshStale", "response_sla", "all", "warning", "stale",
                      source="portal")
    post_alerts(alertmanager, [*stale, other])
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(alertmanager + "/api/v2/alerts/groups", timeout=5) as r:
            groups = [g for g in json.load(r) if g["receiver"]["name"] == "tickets"]
        if sum(len(g["alerts"]) for g in groups) == 11 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(len(g["alerts"]) for g in groups) == [1, 10]
