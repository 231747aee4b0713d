"""On the demo database, the checks find exactly the planted dirty records of the manifest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from checks.runner import run_suites
from kpis import config as kpi_config
from kpis import demo

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _fields(check: str, column: str) -> tuple[str, ...]:
    if check == "score_range":
        return ("score", "scale")
    return tuple(column.split("<="))


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql",
                                                            marks=pytest.mark.postgresql)])
def test_checks_find_exactly_the_dirty_records(fresh_database, dialect):
    url = fresh_database(dialect)
    demo.seed(url, now=NOW)
    config = kpi_config.parse(yaml.safe_load(demo.config_yaml(url, now=NOW)), "demo.yaml")
    results = run_suites(config, now=NOW, show_failing_keys=True)
    assert all(r.error is None for r in results)
    found = {(r.entity, _fields(r.check, r.column)): r.unexpected for r in results
             if r.unexpected and r.check != "record_completeness"}
    planted = {(d.entity, d.fields): d.count for d in demo.DIRTY_RECORDS}
    assert found == planted
    incomplete = {r.entity: r.unexpected for r in results if r.check == "record_completeness"}
    assert incomplete["appointments"] == 2 and set(incomplete.values()) <= {0, 2}
    freshness = [r for r in results if r.check == "freshness"]
    assert freshness and all(r.passed for r in freshness)
