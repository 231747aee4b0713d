"""promtool on the generated rules: ``check rules``, the committed unit tests, unit tests of
builds from custom configs (the demo's, with a calendar, and one without), and proof the unit
tests can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alerts import build, promtool_tests
from kpis import names
from kpis.config import parse
from kpis.demo.mapping import config_yaml

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


def cli_build(tmp_path: Path, config_text: str) -> Path:
    """``carekpi alerts build --config X --out G --tests-out T``, as a user runs it."""
    config = tmp_path / "carekpi.yaml"
    config.write_text(config_text)
    tests = tmp_path / "tests"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "carekpi"), "alerts", "build", "--config",
         str(config), "--out", str(tmp_path / "generated"), "--tests-out", str(tests)],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return tests


def promtool_passes_every_file(tests: Path) -> None:
    names = sorted(p.name for p in tests.glob("*.yaml"))
    assert "health.test.yaml" in names
    result = promtool("test", "rules", *names, cwd=tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_tests_pass_for_the_demo_config(tmp_path):
    """The demo's config has a calendar (America/New_York, US holidays): its stale-feed tests
    feed carekpi_calendar_open, firing while open and silent while closed."""
    tests = cli_build(tmp_path, config_yaml(f"sqlite:///{tmp_path}/demo.db"))
    stale = yaml.safe_load((tests / "health.test.yaml").read_text())["tests"]
    assert {t["name"] for t in stale} >= {"CareKPIStaleFeed open", "CareKPIStaleFeed closed"}
    rules = (tmp_path / "generated" / build.ALERTS_FILE).read_text()
    assert "max(carekpi_calendar_open) == 1" in rules
    promtool_passes_every_file(tests)


def test_generated_tests_pass_for_a_calendar_less_config(tmp_path):
    tests = cli_build(tmp_path, yaml.safe_dump({
        "version": 1, "sources": {"ehr": {"url": "sqlite://"}},
        "checks": {"schedule": "1h"}, "kpis": {"windows": ["1h", "1d", "30d"]}}))
    rules = (tmp_path / "generated" / build.ALERTS_FILE).read_text()
    assert "calendar_open" not in rules
    assert f"time() - {names.CHECK_LAST_RUN} > 7200" in rules  # twice checks.schedule
    promtool_passes_every_file(tests)


@pytest.mark.parametrize("clinic", ["Children's", "St John's", "a\\b"])
def test_the_description_finds_the_target_of_a_clinic_named_with_a_quote(clinic, tmp_path):
    """The clinic's own target is looked up by a query built from its name: quoted as a
    PromQL string, so an apostrophe (or a backslash) keeps the description whole."""
    quoted = clinic.replace("\\", "\\\\")  # in the series notation's own string
    series = {f'carekpi_no_show_{part}{{clinic="{quoted}", source="demo", window="7d"}}':
              f"{value}+0x25" for part, value in (("numerator", 9), ("denominator", 40))}
    series[f'carekpi_kpi_target{{clinic="{quoted}", kpi="no_show"}}'] = "0.08+0x25"
    series['carekpi_kpi_target{kpi="no_show"}'] = "0.1+0x25"
    test = {"evaluation_interval": "5m",
            "rule_files": [str(GENERATED / name)
                           for name in (build.RECORDING_FILE, build.ALERTS_FILE)],
            "tests": [{"interval": "1m",
                       "input_series": [{"series": s, "values": v} for s, v in series.items()],
                       "alert_rule_test": [{"alertname": "CareKPINoShowTargetBreach",
                                            "eval_time": "20m", "exp_alerts": [{
                           "exp_labels": {"clinic": clinic, "job": "carekpi", "kpi": "no_show",
                                          "objective": "no_show", "severity": "warning",
                                          "signal": "target", "source": "demo", "window": "7d"},
                           "exp_annotations": {
                               "description": f"{clinic}: No-show rate is 22.5% over the last 7d "
                                              "(target <= 8%, at least 20 events).",
                               "runbook_url": "alerts/RUNBOOK.md#carekpinoshowtargetbreach",
                               "summary": "No-show rate misses its target in a clinic."}}]}]}]}
    path = tmp_path / "quoted.test.yaml"
    path.write_text(yaml.safe_dump(test, allow_unicode=True))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_job_name_with_quotes_stays_a_label_value(tmp_path):
    """alerts build --job is written into PromQL as a string: it cannot end the selector."""
    job = 'car"} or vector(1) #\\'
    build.write(None, tmp_path, job=job)
    result = promtool("check", "rules", str(tmp_path / build.ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [r for g in yaml.safe_load((tmp_path / build.ALERTS_FILE).read_text())["groups"]
             for r in g["rules"]]
    absent = next(r for r in rules if r["alert"] == "CareKPIExporterAbsent")
    assert 'up{job="car\\"} or vector(1) #\\\\"}' in absent["expr"]
    assert all(r["labels"].get("job") in (None, job) for r in rules)
