"""The served exposition is valid, always: no family holds two samples with one label set, and
both of prometheus_client's parsers (OpenMetrics and the classic text format) accept the body,
on the clean demo and on hostile data (bad rows, odd and folded label values)."""

from __future__ import annotations

import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from collectors.service import Exporter
from kpis import catalog
from kpis import config as config_module
from kpis.demo import config_yaml, seed
from tests import known_data
from tests.test_exporter import wait_for

NOW = datetime(2026, 3, 11, 19, 30, tzinfo=UTC)
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
HOSTILE_CLINICS = ["São José", "D\u00b4ARC", 'quote"d', "back\\slash", "new\nline", "x" * 80,
                   "Ñuñoa", "north"]


def served(config: config_module.Config, as_of: datetime) -> dict[str, str]:
    """The body the exporter serves, as Prometheus asks for it and as plain text."""
    exporter = Exporter(config, registry=CollectorRegistry(), clock=lambda: as_of)
    server = exporter.start("127.0.0.1", 0)
    try:
        enabled = {r.kpi.key for r in exporter.store.results()}
        wait_for(lambda: len({r.kpi.key for r in exporter.store.results()}) >= max(
            len(enabled), len(catalog.load()) - 2), what="every KPI's first refresh")
        bodies = {}
        for accept in (OPENMETRICS, "text/plain"):
            request = urllib.request.Request(f"{server.url}/metrics", headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=20) as response:
                bodies[accept] = response.read().decode()
        return bodies
    finally:
        exporter.stop()


def assert_valid(bodies: dict[str, str]) -> None:
    for accept, body in bodies.items():
        parse = om_parse if accept == OPENMETRICS else text_parse
        families = list(parse(body))  # raises on a body the format does not allow
        assert families, accept
        for family in families:
            seen = Counter((s.name, tuple(sorted(s.labels.items()))) for s in family.samples)
            duplicates = [key for key, n in seen.items() if n > 1]
            assert duplicates == [], f"{accept}: {family.name}: {duplicates[:3]}"
    text = {(f.name, len(f.samples)) for f in text_parse(bodies["text/plain"])}
    assert ("carekpi_kpi_excluded_records", 0) not in text


@pytest.fixture(scope="module")
def demo_bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    seed(url, now=NOW)
    config = config_module.parse(yaml.safe_load(config_yaml(url, now=NOW)), "demo.yaml")
    return served(config, NOW)


def test_the_demo_exposition_has_no_duplicate_series(demo_bodies: dict[str, str]) -> None:
    assert_valid(demo_bodies)


def test_excluded_records_keep_the_kpi_dimensions(demo_bodies: dict[str, str]) -> None:
    samples = [s for f in text_parse(demo_bodies["text/plain"]) for s in f.samples
               if s.name == "carekpi_kpi_excluded_records"]
    by_kpi = {s.labels["kpi"]: s.labels for s in samples}
    assert {"reminder", "lead_time"} <= set(by_kpi["no_show_by_reminder"])
    assert "queue" in by_kpi["call_abandonment"]


def test_hostile_data_exposition_has_no_duplicate_series(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hostile.db"
    known_data.load(url)
    known_data.load_bad(url)
    engine = sa.create_engine(url)
    rows = [{**known_data.APPOINTMENTS[0], "appt_id": 900 + i, "site": clinic}
            for i, clinic in enumerate(HOSTILE_CLINICS)]
    with engine.begin() as conn:
        conn.execute(known_data.appt.insert(), rows)
    engine.dispose()
    data = known_data.config(url)
    data["labels"] = {"max_values": 4}
    assert_valid(served(config_module.parse(data, "hostile.yaml"), known_data.AS_OF))
