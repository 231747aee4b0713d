"""Running at scale, with real Prometheus binaries only: two shard exporters, each scraped by a
Prometheus in agent mode that remote-writes to a central Prometheus holding CareKPI's
generated recording and alerting rules. The central recording rules equal those of a
Prometheus scraping one unsharded exporter on the same data, and the planted incident raises
its alert once.

The exporters run in this process with their clocks pinned to the seeding instant, so the
shards and the reference compute the same instant's numbers. Rules have ``for:`` set to 0 s and
every interval is 1 s. Ports come from 19200-19260; every wait has a deadline.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from alerts import build
from collectors.service import Exporter
from kpis import catalog, demo
from kpis import config as kpi_config
from kpis.sharding import Shard
from tests.conftest import free_port
from tests.test_alerts_alertmanager import wait_ready
from tests.test_alerts_e2e import query, rules_without_for, start, stop, wait_for
from tests.test_alerts_promtool import require

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
JOB = "carekpi"
INCIDENT = "portal-backlog"
INCIDENT_ALERT = "CareKPIResponseSlaTargetBreach"


class Topology:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[Any] = []
        self.exporters: list[Exporter] = []
        self.used: list[int] = []

    def port(self) -> int:
        port = free_port(19200, 19260, exclude=tuple(self.used))
        self.used.append(port)
        return port

    def exporter(self, config: kpi_config.Config, now: datetime) -> int:
        exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: now)
        port = self.port()
        exporter.start("127.0.0.1", port)
        self.exporters.append(exporter)
        return port

    def prometheus(self, name: str, config: str, *flags: str) -> str:
        port = self.port()
        path = self.tmp / f"{name}.yml"
        path.write_text(config)
        storage = "--storage.agent.path" if "--enable-feature=agent" in flags else \
            "--storage.tsdb.path"
        self.processes.append(start([
            require("prometheus"), f"--config.file={path}", *flags,
            f"{storage}={self.tmp / name}", f"--web.listen-address=127.0.0.1:{port}"],
            self.tmp / f"{name}.log"))
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/-/ready", 60)
        return url

    def close(self) -> None:
        for process in reversed(self.processes):
            stop(process)
        for exporter in self.exporters:
            exporter.stop()


@pytest.fixture
def topology(tmp_path) -> Iterator[Topology]:
    running = Topology(tmp_path)
    try:
        yield running
    finally:
        running.close()


def scrape_config(targets: list[int], extra: str = "") -> str:
    listed = ", ".join(f"'127.0.0.1:{p}'" for p in targets)
    return ("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" + extra +
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
            f"      - targets: [{listed}]\n")


def recorded(prometheus: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every recording rule's current output."""
    names = [rule["record"] for text in [build.build_files(None)[build.RECORDING_FILE]]
             for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]
    out = {}
    for name in names:
        params = urllib.parse.urlencode({"query": name})
        for item in query(prometheus, f"/api/v1/query?{params}")["result"]:
            labels = tuple(sorted((k, v) for k, v in item["metric"].items()
                                  if k not in ("instance", "__name__")))
            out[(name, labels)] = float(item["value"][1])
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) or
        (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def firing(prometheus: str, alert: str) -> list[dict[str, str]]:
    return [a["labels"] for a in query(prometheus, "/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == alert and a["state"] == "firing"]


def test_two_shards_through_agents_equal_one_exporter(topology, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    url = f"sqlite:///{tmp_path}/demo.db"
    demo.seed(url, now=now, incidents=(INCIDENT,))
    document = yaml.safe_load(demo.config_yaml(url, now=now))
    for kpi in catalog.load():  # the portal's KPIs (and freshness) keep the test light
        if kpi.entity not in ("*", "messages"):
            document["kpis"].setdefault(kpi.key, {})["enabled"] = False
    config = kpi_config.parse(document, "demo.yaml")
    rules = ", ".join(str(p) for p in rules_without_for(tmp_path))
    rule_files = f"rule_files: [{rules}]\n"

    central = topology.prometheus("central", "global:\n  evaluation_interval: 1s\n" + rule_files,
                                  "--web.enable-remote-write-receiver")
    for index in (1, 2):
        port = topology.exporter(config.model_copy(update={"shard": Shard(index, 2)}), now)
        remote = f"remote_write:\n  - url: {central}/api/v1/write\n"
        topology.prometheus(f"agent{index}", scrape_config([port], remote),
                            "--enable-feature=agent")
    reference = topology.prometheus(
        "reference", scrape_config([topology.exporter(config, now)], rule_files))

    def settled() -> dict | None:
        ours, theirs = recorded(central), recorded(reference)
        return ours if ours and same(ours, theirs) else None

    figures = wait_for(settled, 120, "the central rules to equal the unsharded exporter's")
    assert any(name.endswith(":ratio") for name, _ in figures)
    # both shards arrived (remote write keeps each agent's instance label)
    params = urllib.parse.urlencode({"query": f'count by (instance) (up{{job="{JOB}"}} == 1)'})
    assert len(query(central, f"/api/v1/query?{params}")["result"]) == 2

    alerts = wait_for(lambda: firing(central, INCIDENT_ALERT), 60, f"{INCIDENT_ALERT} firing")
    assert len(alerts) == 1, alerts
    assert alerts == firing(reference, INCIDENT_ALERT)
