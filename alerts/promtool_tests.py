"""The promtool unit-test files (``alerts/tests/*.yaml``): the KPI alerts' cases from
``kpi_cases`` and the health alerts' here, each with firing and silent cases. Deterministic
like the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerts import burn_rate, data_quality, health, kpi_cases, settings
from alerts.build import ALERTS_FILE, RECORDING_FILE, dump
from alerts.kpi_cases import SOURCE, Test, series
from alerts.targets import TARGETED_KINDS
from kpis import effective, names
from kpis.config import Calendar, Config
from kpis.generated_files import write_texts
from kpis.series import RUNBOOK_URL, selector

RULES_DIR = "../generated"  # relative to alerts/tests/
# Rules are evaluated every 5 minutes in the tests (input samples stay 1 minute apart): every
# for: duration is a multiple of it, and promtool runs five times faster than at 1m.
EVALUATION_INTERVAL = "5m"
# Checks run hourly or daily: their tests span two schedules, evaluated hourly.
DATA_QUALITY, SLOW_EVALUATION_INTERVAL = "data_quality.test.yaml", "1h"


def _firing(rule: dict[str, Any], labels: dict[str, str], value: float,
            target: float | None = None) -> dict[str, Any]:
    return kpi_cases.expected(rule, labels, value, target)


def stale_feed_tests(item: settings.KpiRules, calendar: Calendar | None, runbook_base: str,
                     job: str) -> list[Test]:
    """Messages stopped at 0 (fires once 2h + for have passed), calls keep arriving (silent).
    With a calendar the rule holds only while ``carekpi_calendar_open`` is 1: open, it fires;
    closed (a night, a holiday), the same stale feed stays silent."""
    rule = health.stale_feed_alert(item, calendar, runbook_base, job)
    assert item.target is not None
    wait = kpi_cases.minutes(item.kpi.alert_for)
    at = int(item.target // 60) + wait + 5
    newest = names.NEWEST_RECORD
    inputs = [
        {"series": selector(newest, source=SOURCE, entity="messages"),
         "values": f"0+0x{at + 5}"},
        {"series": selector(newest, source=SOURCE, entity="calls"),
         "values": f"0+60x{at + 5}"},
        kpi_cases.target_series(item.kpi, item.target, at + 5),
    ]
    labels = {"source": SOURCE, "entity": "messages"}
    firing = [_firing(rule, labels, at * 60.0, item.target)]
    name = rule["alert"]
    if calendar is None:
        return [_cases(name, inputs, [(f"{int(item.target // 60)}m", []), (f"{at}m", firing)])]
    open_now, closed = (series(names.CALENDAR_OPEN, v, at + 5, calendar=names.DEFAULT_CALENDAR)
                        for v in (1, 0))
    return [_cases(name + " open", [*inputs, open_now],
                   [(f"{int(item.target // 60)}m", []), (f"{at}m", firing)], name),
            _cases(name + " closed", [*inputs, closed], [(f"{at}m", [])], name)]


def refresh_stale_test(runbook_base: str, job: str) -> Test:
    """Per window: no_show's 1h last refreshed at 0 with a 60 s interval: firing at 10m; its
    30d window (15 min interval), also not refreshed since 0, and wait's 1h: silent. Windows
    that have never succeeded while their KPI is down fire too: all of nps's, and wait's 1d
    although its 1h succeeds (wait is down); lead_time's 1d has no success yet but lead_time
    is up (its first refresh has not finished): silent."""
    rule = health.refresh_stale_alert(runbook_base, job)
    inputs = []
    for kpi, window, every, values in (("no_show", "1h", 60, "0+0x15"),
                                       ("no_show", "30d", 900, "0+0x15"),
                                       ("wait_to_be_seen", "1h", 60, "0+60x15")):
        labels = {"kpi": kpi, "source": SOURCE, "window": window}
        inputs.append({"series": selector(names.KPI_LAST_SUCCESS, **labels),
                       "values": values})
        inputs.append(series(names.KPI_REFRESH_INTERVAL, every, 15, **labels))
    for kpi, window in (("nps", "1d"), ("wait_to_be_seen", "1d"), ("lead_time", "1d")):
        inputs.append(series(names.KPI_REFRESH_INTERVAL, 300, 15, kpi=kpi, source=SOURCE,
                             window=window))
    for kpi, up in (("no_show", 0), ("wait_to_be_seen", 0), ("nps", 0), ("lead_time", 1)):
        inputs.append(series(names.KPI_UP, up, 15, kpi=kpi, source=SOURCE))
    stale = _firing(rule, {"kpi": "no_show", "source": SOURCE, "window": "1h"}, 600.0)
    never = [_firing(rule, {"kpi": kpi, "source": SOURCE, "window": "1d"}, 300.0)
             for kpi in ("nps", "wait_to_be_seen")]
    return _cases(rule["alert"], inputs, [("4m", []), ("10m", [stale, *never])])


def source_down_test(runbook_base: str, job: str) -> Test:
    rule = health.source_down_alert(runbook_base, job)
    inputs = [series(names.SOURCE_UP, 0, 15, source="ehr"),
              series(names.SOURCE_UP, 1, 15, source="portal")]
    expected = _firing(rule, {"source": "ehr"}, 0.0)
    return _cases(rule["alert"], inputs, [("3m", []), ("10m", [expected])])


def suspect_test(runbook_base: str, job: str) -> Test:
    """C2 suspect in north (both windows, one alert): fires after 15m; healthy south: silent."""
    rule = health.suspect_alert(runbook_base, job)
    inputs = [series(names.KPI_SUSPECT, 1, 30, kpi="call_abandonment", source=SOURCE,
                     reason="identical_durations", clinic="north", queue="main", window=w)
              for w in ("1d", "7d")]
    expected = _firing(rule, {"kpi": "call_abandonment", "source": SOURCE,
                              "reason": "identical_durations", "clinic": "north"}, 1.0)
    return _cases(rule["alert"], inputs, [("10m", []), ("20m", [expected])])


def exporter_absent_tests(job: str, runbook_base: str) -> list[Test]:
    """Missing job: fires (absent); one instance down: fires; all up: silent."""
    rule = health.exporter_absent_alert(job, runbook_base)
    name = rule["alert"]
    up_down = [series("up", 0, 15, job=job, instance="exporter-a:9100"),
               series("up", 1, 15, job=job, instance="exporter-b:9100")]
    all_up = [series("up", 1, 15, job=job, instance="exporter-a:9100")]
    other_job = [series("up", 1, 15, job="node", instance="node:9100")]
    down = _firing(rule, {"job": job, "instance": "exporter-a:9100"}, 0.0)
    return [
        _cases(name + " missing", other_job, [("10m", [_firing(rule, {"job": job}, 1.0)])],
               name),
        _cases(name + " down", up_down, [("3m", []), ("10m", [down])], name),
        _cases(name + " up", all_up, [("10m", [])], name),
    ]


def data_quality_tests(config: Config | None, job: str, runbook_base: str) -> list[Test]:
    """An error check failing fires; a failing warning check and a passing error check do
    not. Checks last run at 0: silent until twice their schedule, firing after."""
    failed = data_quality.check_failed_alert(job, runbook_base)
    checks = [("error", 0, "completeness"), ("warning", 0, "conformance"),
              ("error", 1, "freshness")]
    inputs = [series(names.CHECK_PASSED, passed, 130, entity="messages", check=check,
                     column="channel", severity=severity) for severity, passed, check in checks]
    labels = {"entity": "messages", "check": "completeness", "column": "channel"}
    tests = [_cases(failed["alert"], inputs,
                    [("0m", []), ("2h", [_firing(failed, labels, 0.0)])])]
    schedule = settings.check_schedule(config) or data_quality.DEFAULT_SCHEDULE_SECONDS
    not_run = data_quality.checks_not_run_alert(schedule, job, runbook_base)
    limit = int(2 * schedule // 60)  # minutes
    late = (limit // 60 + 2) * 60  # an evaluation (hourly) past the limit and ``for``
    inputs = [{"series": names.CHECK_LAST_RUN, "values": f"0+0x{late + 5}"}]
    return [*tests, _cases(not_run["alert"], inputs, [
        (f"{limit - 5}m", []), (f"{late}m", [_firing(not_run, {}, late * 60.0)])])]
def duplicate_shard_tests(job: str, runbook_base: str) -> list[Test]:
    """Two exporters of shard 1/2: fires; shards 1/2 and 2/2, one each: silent."""
    rule = health.duplicate_shard_alert(job, runbook_base)
    name, info = rule["alert"], f"{names.BUILD_INFO}_info"

    def exporter(instance: str, shard: str) -> dict[str, str]:
        return series(info, 1, 15, job=job, instance=instance, shard=shard, version="0.1.0")

    twice = [exporter("a:9880", "1/2"), exporter("b:9880", "1/2"), exporter("c:9880", "2/2")]
    once = [exporter("a:9880", "1/2"), exporter("c:9880", "2/2")]
    fired = _firing(rule, {"job": job, "shard": "1/2"}, 2.0)
    return [_cases(name + " twice", twice, [("3m", []), ("10m", [fired])], name),
            _cases(name + " once", once, [("10m", [])], name)]


def _cases(name: str, inputs: list[dict[str, str]], cases: list[tuple[str, list[Any]]],
           alert: str | None = None) -> Test:
    return {"name": name, "interval": "1m", "input_series": inputs, "alert_rule_test": [
        {"eval_time": at, "alertname": alert or name, "exp_alerts": exp} for at, exp in cases]}


def kpi_tests(config: Config | None, runbook_base: str,
              job: str) -> tuple[list[Test], list[Test]]:
    """(target and backlog tests, burn-rate tests) for the enabled KPIs."""
    items = settings.kpi_rules(config)
    target_tests, burn_tests = [], []
    for item in items:
        if item.kpi.target is None or item.target is None:
            continue
        if item.kpi.kind in TARGETED_KINDS:
            target_tests.append(kpi_cases.target_test(item, runbook_base, job))
        elif item.kpi.kind == "backlog":
            target_tests.append(kpi_cases.backlog_test(item, runbook_base, job))
        if item.kpi.burn_rate and item.kpi.kind == "proportion":
            for tier in burn_rate.tiers(item, effective.window_seconds(config)):
                burn_tests.append(kpi_cases.burn_test(item, tier, runbook_base, job))
    return target_tests, burn_tests


def health_tests(config: Config | None, job: str, runbook_base: str) -> list[Test]:
    calendar = effective.calendar(config)
    tests = [t for i in settings.kpi_rules(config)
             if i.kpi.kind == "freshness" and i.target is not None
             for t in stale_feed_tests(i, calendar, runbook_base, job)]
    tests += [refresh_stale_test(runbook_base, job), source_down_test(runbook_base, job),
              suspect_test(runbook_base, job),
              *exporter_absent_tests(job, runbook_base), *duplicate_shard_tests(job, runbook_base)]
    return tests


def build_unit_tests(config: Config | None = None, *, rules_dir: str = RULES_DIR,
                     job: str = health.DEFAULT_JOB,
                     runbook_base: str = RUNBOOK_URL) -> dict[str, str]:
    """``{file name: text}`` of the promtool unit-test files; ``rules_dir`` is where the rule
    files are, relative to the test files. They pass for the rules built from the same
    config: with a calendar, the stale-feed tests feed ``carekpi_calendar_open``."""
    rule_files = [f"{rules_dir}/{RECORDING_FILE}", f"{rules_dir}/{ALERTS_FILE}"]
    target_tests, burn_tests = kpi_tests(config, runbook_base, job)
    files = {"targets.test.yaml": target_tests, "burn_rate.test.yaml": burn_tests,
             "health.test.yaml": health_tests(config, job, runbook_base),
             DATA_QUALITY: data_quality_tests(config, job, runbook_base)}
    return {name: dump({"evaluation_interval": SLOW_EVALUATION_INTERVAL if name == DATA_QUALITY
                        else EVALUATION_INTERVAL, "rule_files": rule_files, "tests": tests})
            for name, tests in files.items() if tests}


def write_unit_tests(config: Config | None, out_dir: str | Path, **options: Any) -> list[Path]:
    return write_texts(build_unit_tests(config, **options), out_dir, "promtool tests")
