"""``promtool check metrics`` on the full exposition of ``carekpi demo`` once its scheduled
data-quality checks have run (KPI families, health, calendar and ``carekpi_check_*``): every
family name, type, unit suffix and help text passes Prometheus' own linter."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

from checks.metrics import exposition
from checks.results import CheckResult
from kpis import names
from tests.conftest import free_port
from tests.test_alerts_alertmanager import wait_ready
from tests.test_alerts_e2e import CAREKPI_BIN, start, stop, wait_for
from tests.test_alerts_promtool import require

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


def promtool_check_metrics(body: str) -> None:
    result = subprocess.run([require("promtool"), "check", "metrics"], input=body,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def check_families() -> str:
    """The check families as the exporter and ``--metrics-file`` expose them."""
    result = CheckResult(entity="messages", suite="completeness", check="completeness",
                         column="channel", severity="error",
                         expectation="expect_column_values_to_not_be_null", elements=120,
                         unexpected=3, observed=0.975, threshold=0.99, passed=False)
    return exposition([result], 1_700_000_000.0, 2.5).decode()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_the_full_exposition_with_checks_is_lint_clean(tmp_path):
    promtool_check_metrics(check_families())  # gauges named like a summary's _count fail
    if not CAREKPI_BIN.exists():
        pytest.skip(f"{CAREKPI_BIN} not installed")
    port = free_port(19100, 19200)
    demo = start([str(CAREKPI_BIN), "demo", "--port", str(port),
                  "--db", f"sqlite:///{tmp_path}/demo.db"], tmp_path / "demo.log")
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_ready(url, 180)
        body = wait_for(lambda: (lambda t: t if f"\n{names.CHECK_LAST_RUN} " in t else "")(
            scrape(url)), 400, "the scheduled checks' results in the exposition")
    finally:
        stop(demo)
    for family in (names.CHECK_PASSED, names.CHECK_ELEMENTS, names.CHECK_UNEXPECTED,
                   names.CALENDAR_OPEN, names.KPI_TARGET, names.SOURCE_UP):
        assert f"# TYPE {family} " in body, family
    promtool_check_metrics(body)
