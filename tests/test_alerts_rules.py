"""The rule builders: names, targets, volume guards, burn-rate factors, config effects, drift
of the committed files and the runbook's coverage. Pure Python, no Prometheus needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from alerts import build, burn_rate, promtool_tests, rendering, settings
from kpis import catalog, effective, names
from kpis.config import parse
from kpis.series import RUNBOOK_URL, runbook_anchor

ROOT = Path(__file__).resolve().parent.parent
ALERTS_DIR = ROOT / "alerts"
REBUILD = "carekpi alerts build --out alerts/generated --tests-out alerts/tests"


def config(kpis: dict | None = None) -> object:
    return parse({"version": 1, "sources": {"ehr": {"url": "sqlite://"}}, "kpis": kpis or {}},
                 "carekpi.yaml")


def rules(files: dict[str, str], name: str) -> list[dict]:
    return [r for g in yaml.safe_load(files[name])["groups"] for r in g["rules"]]


def alerts_by_name(cfg: object = None) -> dict[str, dict]:
    return {r["alert"]: r for r in rules(build.build_files(cfg), build.ALERTS_FILE)}


def test_committed_rule_files_match_a_fresh_build():
    for name, text in build.build_files(None).items():
        committed = ALERTS_DIR / "generated" / name
        assert committed.exists(), f"{committed} missing: run `{REBUILD}`"
        assert committed.read_text(encoding="utf-8") == text, \
            f"{committed} is stale: run `{REBUILD}` (or `carekpi generate`) and commit it"


def test_committed_promtool_tests_match_a_fresh_build():
    for name, text in promtool_tests.build_unit_tests(None).items():
        committed = ALERTS_DIR / "tests" / name
        assert committed.exists() and committed.read_text(encoding="utf-8") == text, \
            f"{committed} is stale: run `{REBUILD}` and commit it"


def test_build_is_deterministic_and_carries_no_timestamp():
    first, second = build.build_files(None), build.build_files(None)
    assert first == second
    assert not re.search(r"20\d\d-\d\d-\d\d", "".join(first.values()))


def test_every_kpi_statistic_has_clinic_and_overall_recording_rules():
    recorded = {r["record"]: r["expr"] for r in rules(build.build_files(), build.RECORDING_FILE)}
    for kpi in catalog.load():
        if kpi.kind == "proportion":
            expected = [names.ratio_rule(kpi, lvl) for lvl in ("clinic_window", "window")]
        elif kpi.kind == "duration":
            expected = [f(kpi, lvl) for lvl in ("clinic_window", "window") for f in (
                lambda k, lv: names.quantile_rule(k, "p50", lv),
                lambda k, lv: names.quantile_rule(k, "p90", lv), names.mean_rule)]
        elif kpi.kind == "score":
            expected = [names.score_rule(kpi, lvl) for lvl in ("clinic_window", "window")]
        else:
            expected = []
        for record in expected:
            assert record in recorded, record
    no_show = catalog.get("no_show")
    assert recorded[names.ratio_rule(no_show)] == (
        "sum by (source, clinic, window) (carekpi_no_show_numerator)\n/\n"
        "sum by (source, clinic, window) (carekpi_no_show_denominator)")
    wait = catalog.get("wait_to_be_seen")
    assert recorded[names.quantile_rule(wait, "p90", "window")] == (
        "histogram_quantile(0.9, sum by (window, le) (carekpi_wait_to_be_seen_seconds_bucket))")
    split = recorded[names.ratio_rule(catalog.get("no_show_by_reminder"))]
    assert "sum by (source, clinic, window, reminder, lead_time)" in split


def test_every_targeted_kpi_has_an_alert_with_target_series_and_volume_guard():
    found = alerts_by_name()
    for kpi in catalog.load():
        if kpi.target is None or kpi.kind == "freshness":
            continue
        name = names.alert_name(kpi, "" if kpi.kind == "backlog" else "TargetBreach")
        rule = found[name]
        assert f'kpi="{kpi.key}"' in rule["expr"] and names.KPI_TARGET in rule["expr"]
        assert rule["labels"] == {"kpi": kpi.key, "severity": kpi.severity, "job": "carekpi",
                                  "objective": kpi.objective, "signal": (
                                      "backlog" if kpi.kind == "backlog" else "target")}
        assert rule["for"] == kpi.alert_for
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_URL}#{name.lower()}"
        if kpi.kind != "backlog":
            assert f">= {kpi.min_volume}" in rule["expr"]


def test_config_overrides_disable_kpis_change_volume_and_windows():
    cfg = config({"no_show": {"enabled": False}, "call_abandonment": {"min_volume": 3},
                  "windows": ["1h", "1d", "30d"]})
    found = alerts_by_name(cfg)
    assert "CareKPINoShowTargetBreach" not in found
    assert "clinic_window:carekpi_no_show:ratio" not in build.build_files(cfg)["recording.yaml"]
    assert ">= 3" in found["CareKPICallAbandonmentTargetBreach"]["expr"]
    # late_cancellation alerts over 7d: without a 7d window, the next longer one (30d).
    assert 'window="30d"' in found["CareKPILateCancellationTargetBreach"]["expr"]
    assert "CareKPIResponseSlaSlowBurn" in found  # long 30d, short 1d


def test_burn_rate_factors_fit_the_objective():
    assert burn_rate.factor_for(6, (0.9,)) == 5
    assert burn_rate.factor_for(6, (0.8,)) == 2.5
    assert burn_rate.factor_for(6, (0.95,)) == 6
    assert burn_rate.factor_for(14.4, (0.9,)) * (1 - 0.9) <= 1
    for item in settings.kpi_rules(None):
        for tier in burn_rate.tiers(item, effective.window_seconds(None)):
            assert all(tier.factor * (1 - o) <= burn_rate.MAX_FAILING_SHARE + 1e-9
                       for o in item.objectives)


def test_burn_rate_pairs_use_exported_windows_and_clinic_targets_lower_the_factor():
    found = alerts_by_name()
    fast, slow = found["CareKPIResponseSlaFastBurn"], found["CareKPIResponseSlaSlowBurn"]
    assert 'window="1d"' in fast["expr"] and 'window="1h"' in fast["expr"]
    assert fast["expr"].count("> 5\n") == 2 and fast["labels"]["severity"] == "critical"
    assert 'window="7d"' in slow["expr"] and slow["labels"]["severity"] == "warning"
    assert "17% of the budget" in fast["annotations"]["description"]
    cfg = config({"response_sla": {"clinic_targets": {"RVL": 0.8}}})
    assert alerts_by_name(cfg)["CareKPIResponseSlaFastBurn"]["expr"].count("> 2.5\n") == 2


def test_health_alerts_and_job_parameter():
    found = {r["alert"]: r for r in rules(build.build_files(None, job="care"), "alerts.yaml")}
    assert found[names.ALERT_EXPORTER_ABSENT]["expr"] == \
        'up{job="care"} == 0\nor\nabsent(up{job="care"})'
    assert found[names.ALERT_SOURCE_DOWN]["expr"] == f"{names.SOURCE_UP} == 0"
    assert f"3 * {names.KPI_REFRESH_INTERVAL}" in found[names.ALERT_REFRESH_STALE]["expr"]
    assert "vector(7200)" in found[names.ALERT_STALE_FEED]["expr"]


def test_calendar_adds_an_opening_hours_guard():
    cfg = config({"calendar": {"timezone": "America/New_York",
                               "hours": {"mon": "08:00-17:00", "sat": "09:00-12:00"},
                               "holidays": ["2026-12-25"]}})
    expr = alerts_by_name(cfg)[names.ALERT_STALE_FEED]["expr"]
    # The exporter computes the opening hours (zoneinfo, DST, holidays): no clock in PromQL.
    assert expr.endswith("and on ()\nmax(carekpi_calendar_open) == 1")
    assert "time() +" not in expr and "day_of_week" not in expr
    assert "calendar_open" not in alerts_by_name()[names.ALERT_STALE_FEED]["expr"]


def test_every_metric_a_rule_reads_is_emitted_or_recorded():
    files = build.build_files(None)
    recorded = {r["record"] for r in rules(files, build.RECORDING_FILE)}
    emitted = {m for k in catalog.load() for m in names.kpi_metrics(k)}
    emitted |= {names.KPI_TARGET, names.SOURCE_UP, names.KPI_UP, names.KPI_LAST_SUCCESS,
                names.KPI_REFRESH_INTERVAL, names.NEWEST_RECORD, names.KPI_SUSPECT, "up",
                names.CHECK_PASSED, names.CHECK_LAST_RUN, f"{names.BUILD_INFO}_info"}
    text = "\n".join(r.get("expr", "") for f in files for r in rules(files, f))
    used = {m for m in re.findall(r"[a-z_:0-9]+", text) if "carekpi_" in m}
    assert used - emitted - recorded == set()
    assert {names.KPI_TARGET, names.NEWEST_RECORD, "clinic_window:carekpi_no_show:ratio"} <= used


def test_runbook_has_a_section_for_every_alert():
    headings = re.findall(r"^#+ (.+)$", (ALERTS_DIR / "RUNBOOK.md").read_text(), re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    cfg = config({"calendar": {"hours": {"mon": "08:00-17:00"}}})
    for alert in {*alerts_by_name(), *alerts_by_name(cfg)}:
        assert runbook_anchor(alert) in anchors, f"alerts/RUNBOOK.md has no section for {alert}"
    assert "burn-rates" in anchors


@pytest.mark.parametrize(("value", "text"), [
    (0.5, "50%"), (0.1, "10%"), (0.225, "22.5%"), (0.95, "95%")])
def test_humanize_percentage_like_prometheus(value, text):
    assert rendering.humanize_percentage(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (0, "0s"), (30, "30s"), (2610.0000000000005, "43m 30s"), (9000, "2h 30m 0s"),
    (1209600, "14d 0h 0m 0s")])
def test_humanize_duration_like_prometheus(value, text):
    assert rendering.humanize_duration(value) == text
