"""promtool on the generated rules: ``check rules``, the committed unit tests, unit tests of a
build from a custom config, the opening-hours guard, and proof the unit tests can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import build, promtool_tests
from kpis.config import parse

pytestmark = pytest.mark.prometheus
ROOT = Path(__file__).resolve().parent.parent
GENERATED, UNIT_TESTS = ROOT / "alerts" / "generated", ROOT / "alerts" / "tests"


def require(binary: str) -> str:
    """The binary's path, or skip (fail when CI=true: CI must run these)."""
    path = shutil.which(binary)
    if path is None:
        reason = f"{binary} not installed (Debian packages prometheus, prometheus-alertmanager)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("promtool"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def write_build(tmp_path: Path, config: object = None) -> Path:
    """Rules under tmp/generated, unit tests under tmp/tests; returns the tests folder."""
    build.write(config, tmp_path / "generated")  # type: ignore[arg-type]
    promtool_tests.write_unit_tests(config, tmp_path / "tests")  # type: ignore[arg-type]
    return tmp_path / "tests"


@pytest.mark.parametrize("name", [build.RECORDING_FILE, build.ALERTS_FILE])
def test_promtool_check_rules(name):
    result = promtool("check", "rules", str(GENERATED / name))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in UNIT_TESTS.glob("*.yaml")))
def test_committed_promtool_unit_tests_pass(name):
    result = promtool("test", "rules", name, cwd=UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_cover_every_alert_with_firing_and_silent_cases():
    covered: dict[str, set[bool]] = {}
    for path in UNIT_TESTS.glob("*.yaml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                covered.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    alerts = {r["alert"] for g in yaml.safe_load(build.build_files()["alerts.yaml"])["groups"]
              for r in g["rules"]}
    assert set(covered) == alerts
    # Silent cases also live inside firing cases (healthy, lenient and low-volume clinics).
    assert all(True in covered[a] for a in alerts)


def test_unit_tests_of_a_custom_config_build_pass(tmp_path):
    config = parse({"version": 1, "sources": {"ehr": {"url": "sqlite://"}}, "kpis": {
        "windows": ["1h", "1d", "30d"],
        "no_show": {"target": 0.2, "clinic_targets": {"north": 0.15}, "min_volume": 50},
        "response_sla": {"target": 0.95, "clinic_targets": {"RVL": 0.85}},
        "service_level": {"enabled": False},
        "freshness": {"target": 3600},
    }}, "carekpi.yaml")
    tests = write_build(tmp_path, config)
    for path in sorted(tests.glob("*.yaml")):
        result = promtool("test", "rules", path.name, cwd=tests)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("original", "broken", "count", "alert", "file"), [
    ('carekpi_no_show_denominator{window="7d"}) >= 20',
     'carekpi_no_show_denominator{window="7d"}) >= 0', 1, "CareKPINoShowTargetBreach",
     "targets"),
    ("carekpi_kpi_target{clinic!=\"\", kpi=\"no_show\"})\n", "vector(0.1))\n", 1,
     "CareKPINoShowTargetBreach", "targets"),
    (") > 5\n", ") > 0\n", 2, "CareKPIResponseSlaFastBurn", "burn_rate"),
    ("carekpi_source_up == 0", "carekpi_source_up == 1", 1, "CareKPISourceDown", "health"),
])
def test_unit_tests_fail_when_a_rule_is_broken(tmp_path, original, broken, count, alert, file):
    """Removing the volume guard, ignoring the clinic's own target, dropping the burn factor
    or inverting a health condition makes promtool fail on that alert: the unit tests assert."""
    tests = write_build(tmp_path)
    rules = tmp_path / "generated" / build.ALERTS_FILE
    text = rules.read_text()
    assert text.count(original) >= count
    rules.write_text(text.replace(original, broken, count))
    result = promtool("test", "rules", f"{file}.test.yaml", cwd=tests)
    assert result.returncode == 1
    assert f"alertname: {alert}," in result.stdout + result.stderr


CALENDAR_TEST = """
rule_files: [../generated/recording.yaml, ../generated/alerts.yaml]
evaluation_interval: 5m
tests:
  - interval: 1m
    input_series:
      - series: 'carekpi_entity_newest_record_timestamp_seconds{source="ehr", entity="calls"}'
        values: '0+0x2000'
      - series: 'carekpi_kpi_target{kpi="freshness"}'
        values: '7200+0x2000'
    alert_rule_test:
      - {eval_time: 3h, alertname: CareKPIStaleFeed, exp_alerts: []}        # Thu 03:00: closed
      - eval_time: 9h                                                       # Thu 09:00: open
        alertname: CareKPIStaleFeed
        exp_alerts:
          - exp_labels: {source: ehr, entity: calls, kpi: freshness, severity: warning}
            exp_annotations:
              summary: A data feed has stopped delivering new records.
              description: "calls from source ehr: the newest record is 9h 0m 0s old during
                opening hours (target <= 2h 0m 0s)."
              runbook_url: alerts/RUNBOOK.md#carekpistalefeed
      - {eval_time: 19h, alertname: CareKPIStaleFeed, exp_alerts: []}       # Thu 19:00: closed
      - {eval_time: 33h, alertname: CareKPIStaleFeed, exp_alerts: []}       # Fri 09:00: holiday
"""


def test_stale_feed_fires_only_during_opening_hours(tmp_path):
    """The Unix epoch is a Thursday 00:00 UTC: open Thursday and Friday 08:00-18:00 UTC,
    Friday 2 January 1970 a holiday."""
    config = parse({"version": 1, "sources": {"ehr": {"url": "sqlite://"}}, "kpis": {
        "calendar": {"timezone": "UTC", "hours": {"thu": "08:00-18:00", "fri": "08:00-18:00"},
                     "holidays": ["1970-01-02"]}}}, "carekpi.yaml")
    build.write(config, tmp_path / "generated")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "calendar.test.yaml").write_text(CALENDAR_TEST)
    result = promtool("test", "rules", "calendar.test.yaml", cwd=tmp_path / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
