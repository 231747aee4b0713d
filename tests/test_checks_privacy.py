"""Patient data never leaves a check run; GX is loaded only when checks run."""

from __future__ import annotations

import logging
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from checks.commands import checks_group
from checks.metrics import CheckResultsCollector
from checks.runner import run_suites
from kpis import config as kpi_config
from tests import test_checks_data as data

FORMATS = (["--format", "text"], ["--format", "json"], ["--format", "junit"])
PARTS = [part for marker in data.MARKERS for part in marker.split() if len(part) > 5]


def _assert_clean(text: str) -> None:
    for marker in (*data.MARKERS, *PARTS):
        assert marker not in text, f"patient value {marker!r} leaked"


@pytest.mark.parametrize("keys", [False, True], ids=["counts", "failing-keys"])
def test_marker_values_appear_in_no_output(db_url, tmp_path, caplog, keys):
    data.build(db_url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", db_url, formats={
        "appointments": {"status": "phone", "department": "^[A-Z]+$"}})
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    outputs: list[str] = []
    for fmt in FORMATS:
        extra = ["--show-failing-keys"] if keys else []
        report_dir = tmp_path / f"report-{fmt[1]}"
        metrics = tmp_path / f"checks-{fmt[1]}.prom"
        result = runner.invoke(checks_group, ["run", "--config", path, *fmt, *extra,
                                              "--report-dir", str(report_dir),
                                              "--metrics-file", str(metrics)])
        assert result.exit_code == 1, result.output
        outputs += [result.stdout, result.stderr, metrics.read_text()]
        # The reports and the run history (SQLite, read as bytes).
        outputs += [p.read_bytes().decode("latin-1") for p in sorted(report_dir.iterdir())]
    outputs.append(caplog.text)
    outputs += [str(r.args) + r.getMessage() for r in caplog.records]
    assert len(outputs) == 3 * 7 + 1 + len(caplog.records)
    for text in outputs:
        _assert_clean(text)
    joined = "\n".join(outputs)
    assert ("4, 5" in joined) is keys  # the keys of the bad status rows, only on request


def test_results_and_exceptions_carry_no_values(fresh_database):
    url = fresh_database("sqlite")
    data.build(url, data.now())
    document = data.config(url, custom=[{
        "entity": "appointments", "expectation": "expect_column_values_to_be_between",
        "kwargs": {"column": "department", "min_value": 1, "max_value": 5}}])
    config = kpi_config.parse(document, "carekpi.yaml")
    results = run_suites(config, show_failing_keys=True)
    for result in results:
        _assert_clean(repr(result))
    registry = CollectorRegistry()
    registry.register(CheckResultsCollector(results))
    _assert_clean(generate_latest(registry).decode())


def test_junit_and_metrics_shape(fresh_database, tmp_path):
    url = fresh_database("sqlite")
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url)
    metrics = tmp_path / "textfile" / "carekpi_checks.prom"
    result = CliRunner().invoke(checks_group, ["run", "--config", path, "--format", "junit",
                                               "--metrics-file", str(metrics)])
    assert result.exit_code == 1
    root = ET.fromstring(result.stdout.split("?>", 1)[1])
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["appointments"].get("failures") == "6"
    failure = root.find(".//testcase[@name='conformance[status]']/failure")
    assert failure is not None and failure.get("message", "").startswith(
        "2 of 50 records unexpected")
    text = metrics.read_text()
    assert ('carekpi_check_unexpected_elements{check="conformance",column="status",'
            'entity="appointments",severity="error"} 2.0') in text
    assert ('carekpi_check_passed{check="freshness",column="created",'
            'entity="appointments",severity="warning"} 1.0') in text
    assert "carekpi_check_last_run_timestamp_seconds " in text
    assert list(metrics.parent.iterdir()) == [metrics]  # the temp file was renamed away


def test_collector_describe_does_not_collect():
    collector = CheckResultsCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    assert "carekpi_check_passed" in {m.name for m in collector.describe()}
    assert b"carekpi_check_passed{" not in generate_latest(registry)


def test_importing_the_cli_does_not_load_great_expectations():
    code = ("import sys, checks.commands, kpis.cli; "
            "heavy = [m for m in ('great_expectations', 'pandas') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_a_query_great_expectations_cannot_run_prints_no_statement(fresh_database, tmp_path):
    """GX logs a failed query with its statement, bound values and a traceback; the run says
    one line per check instead (here SQLite's regexp fails on the pattern '([')."""
    url = fresh_database("sqlite")
    data.build(url, data.now())
    path = data.write_config(tmp_path / "carekpi.yaml", url, custom=[{
        "entity": "appointments", "expectation": "expect_column_values_to_match_regex",
        "kwargs": {"column": "department", "regex": "(["}}])
    carekpi = str(Path(sys.executable).with_name("carekpi"))
    result = subprocess.run([carekpi, "checks", "run", "--config", path, "--suite", "custom"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "could not evaluate the check (details withheld" in result.stdout
    assert result.stderr == ""
