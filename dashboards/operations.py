"""Operators' dashboards: data quality (checks, freshness) and the exporter's own health."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import board, promql, targets
from dashboards.panels import (
    Query,
    bars_panel,
    kpi_description,
    kpi_links,
    stat_panel,
    table_panel,
    trend_panel,
)
from kpis import catalog, names
from kpis.config import Config
from kpis.series import STALE_REFRESHES

DATA_QUALITY_UID = "carekpi-data-quality"
EXPORTER_UID = "carekpi-exporter"
# A check passes at 1; any failing check (or unavailable KPI, or down source) is the problem.
NONE_FAILING: targets.Steps = [(None, targets.MET), (1.0, targets.MISSED)]
ALL_UP: targets.Steps = [(None, targets.MISSED), (1.0, targets.MET)]


def data_quality(config: Config | None) -> Dashboard:
    """Check results (from ``carekpi checks run``), completeness, freshness, KPI availability."""
    dash = board.new(
        DATA_QUALITY_UID, "CareKPI / Data quality",
        "Results of the data-quality checks (completeness, conformance, plausibility) and the "
        "freshness of every entity's newest record.", config, clinic="none", window=False)
    dash = dash.with_row(board.row("Checks"))
    dash = dash.with_panel(stat_panel(
        "Failing checks",
        "Data-quality checks whose last run failed (carekpi checks run). Target: none failing.",
        "short", [Query(f"sum (1 - {names.CHECK_PASSED})", legend="failing")], NONE_FAILING,
        width=6))
    dash = dash.with_panel(stat_panel(
        "Checks passing",
        "Share of data-quality checks whose last run passed. Target: all of them.",
        "percentunit",
        [Query(f"sum ({names.CHECK_PASSED}) / count ({names.CHECK_PASSED})", legend="passing")],
        ALL_UP, width=6))
    dash = dash.with_panel(stat_panel(
        "Time since the last check run",
        "Age of the newest check run. Checks run from cron or CI: a growing age means they "
        "stopped. No target: compare with your schedule.",
        "s", [Query(f"time() - max ({names.CHECK_LAST_RUN})", legend="age")],
        targets.steps(None), width=6))
    dash = dash.with_panel(stat_panel(
        "Records checked",
        "Records the last check runs examined, summed over all checks. No target.",
        "short", [Query(f"sum ({names.CHECK_ELEMENTS})", legend="records")],
        targets.steps(None), width=6))
    check_labels = "entity, check, column, severity"
    dash = dash.with_panel(table_panel(
        "Check results",
        "1 when the check passed in its last run, 0 when it failed (labels: entity, check, "
        "column, severity). Thresholds per check are set in the checks config (defaults: "
        "completeness 98 % per field, 95 % per record, conformance 99 %, plausibility 100 %). "
        "Target: every check passes.",
        "short", [Query(f"max by ({check_labels}) ({names.CHECK_PASSED})", instant=True,
                        fmt="table")], ALL_UP, width=12, height=10))
    dash = dash.with_panel(bars_panel(
        "Completeness by entity and field",
        "Share of records with the field present (check=completeness) and with every required "
        "field present (check=record_completeness, column *), from the last check run. The pass "
        "threshold of each check is in the checks config; failures show in Check results.",
        "percentunit",
        [Query(f'min by (entity, column) ({names.CHECK_OBSERVED_RATIO}'
               '{check=~"completeness|record_completeness"})',
               legend="{{entity}}.{{column}}", instant=True)],
        targets.steps(None), width=12, height=10))
    dash = dash.with_panel(table_panel(
        "Non-conforming records per check",
        "Count of records that failed each check in its last run (counts only, never values). "
        "Target: none.",
        "short", [Query(f"max by ({check_labels}) ({names.CHECK_UNEXPECTED})", instant=True,
                        fmt="table")], NONE_FAILING, sort_by="Value", width=24, height=10))
    freshness = catalog.by_key()["freshness"]
    goal = targets.goal(freshness, config)
    dash = dash.with_row(board.row("Freshness and availability"))
    dash = dash.with_panel(trend_panel(
        "Age of the newest record by entity",
        kpi_description(freshness, goal, "One line per entity and source."), freshness.unit,
        [Query(promql.freshness_age((names.ENTITY, names.SOURCE)),
               legend="{{" + names.ENTITY + "}} ({{" + names.SOURCE + "}})")],
        targets.steps(goal), kpi_links(freshness), width=16))
    dash = dash.with_panel(stat_panel(
        "Stalest entity", kpi_description(freshness, goal), freshness.unit,
        [Query(promql.value(freshness), legend="age")], targets.steps(goal),
        kpi_links(freshness), width=8, height=8))
    return dash.with_panel(table_panel(
        "KPI availability",
        "1 when a KPI can be computed from the mapped data; 0 with the reason (e.g. a field not "
        "mapped) when it cannot. Unavailable KPIs are reported, never shown as zero. Target: all "
        "available.",
        "short", [Query(names.KPI_AVAILABLE, instant=True, fmt="table")], ALL_UP,
        width=24, height=10))


def _rate(counter: str, by: str) -> str:
    """Counters: rate over $__rate_interval first, then aggregate."""
    return f"sum by ({by}) (rate({counter}_total[{promql.RATE_INTERVAL}]))"


def exporter(config: Config | None) -> Dashboard:
    """Sources up, refresh durations and load, errors, staleness, rows read, folded labels."""
    dash = board.new(
        EXPORTER_UID, "CareKPI / Exporter health",
        "The exporter's own metrics: are the databases reachable, are KPIs refreshing on time, "
        "how long refreshes take and how often they fail.", config, clinic="none",
        window=False)
    dash = dash.with_row(board.row("Sources"))
    dash = dash.with_panel(stat_panel(
        "Sources up", "1 when the exporter reached the source database on its last attempt. "
        "Target: every source up.", "short",
        [Query(f"max by ({names.SOURCE}) ({names.SOURCE_UP})", legend="{{source}}")], ALL_UP,
        alerts=(names.ALERT_SOURCE_DOWN,), width=12))
    dash = dash.with_panel(stat_panel(
        "KPIs refreshing", "Share of KPIs whose last refresh succeeded. Target: all of them.",
        "percentunit", [Query(f"sum ({names.KPI_UP}) / count ({names.KPI_UP})", legend="up")],
        ALL_UP, alerts=(names.ALERT_REFRESH_STALE,), width=12))
    dash = dash.with_row(board.row("Refreshes"))
    stale = (
        f"(time() - {names.KPI_LAST_SUCCESS}) / on ({names.KPI}, {names.SOURCE}, {names.WINDOW})"
        f" {names.KPI_REFRESH_INTERVAL}"
    )
    dash = dash.with_panel(trend_panel(
        "Refresh age in intervals",
        "Time since each KPI's last successful refresh, in refresh intervals. Under 1 is on "
        f"time; the stale alert fires at {STALE_REFRESHES} intervals. Target: below "
        f"{STALE_REFRESHES}.", "none",
        [Query(f"max by ({names.KPI}, {names.SOURCE}) ({stale})", legend="{{kpi}} ({{source}})")],
        [(None, targets.MET), (float(STALE_REFRESHES), targets.MISSED)],
        alerts=(names.ALERT_REFRESH_STALE,)))
    dash = dash.with_panel(trend_panel(
        "Refresh duration",
        "Duration of each KPI's last refresh (the database queries). No target: compare with "
        "the refresh load panel and the source's query timeout.", "s",
        [Query(f"max by ({names.KPI}, {names.SOURCE}) ({names.KPI_REFRESH_DURATION})",
               legend="{{kpi}} ({{source}})")], targets.steps(None)))
    load = (
        f"{names.KPI_REFRESH_DURATION} / on ({names.KPI}, {names.SOURCE}, {names.WINDOW}) "
        f"{names.KPI_REFRESH_INTERVAL}"
    )
    dash = dash.with_panel(bars_panel(
        "Refresh load",
        "Share of its refresh interval each KPI spends refreshing. At 100 % refreshes run back "
        "to back and values age. Target: below 100 %.", "percentunit",
        [Query(f"max by ({names.KPI}) ({load})", legend="{{kpi}}", instant=True)],
        [(None, targets.MET), (1.0, targets.MISSED)]))
    dash = dash.with_panel(trend_panel(
        "Refresh errors per second",
        "Rate of failed refreshes by KPI and source (counter rate over $__rate_interval, summed "
        "after the rate). Target: none.", "short",
        [Query(_rate(names.KPI_REFRESH_ERRORS, f"{names.KPI}, {names.SOURCE}"),
               legend="{{kpi}} ({{source}})")], NONE_FAILING))
    dash = dash.with_panel(trend_panel(
        "Database time per minute by unit",
        "Seconds of query time each refresh unit costs its source per minute (measured by the "
        "exporter: rate of carekpi_source_query_seconds_total x 60). Long windows refresh less "
        "often than short ones; tune window_intervals, or point the source at a replica, when "
        "a unit weighs on the database. No target.", "s",
        [Query(f"60 * {_rate(names.SOURCE_QUERY_SECONDS, f'{names.SOURCE}, {names.UNIT}')}",
               legend="{{unit}} ({{source}})")], targets.steps(None)))
    dash = dash.with_row(board.row("Volume"))
    dash = dash.with_panel(trend_panel(
        "Rows read per second",
        "Rows the refresh queries read, by source (counter rate, summed after the rate). "
        "No target: a sudden change means the data or the mapping changed.", "short",
        [Query(_rate(names.KPI_ROWS_READ, names.SOURCE), legend="{{source}}")],
        targets.steps(None)))
    return dash.with_panel(table_panel(
        "Build",
        "The running exporter's version (carekpi_build_info); when it is missing the exporter is "
        "not scraped. No target.", "short",
        [Query(f"{names.BUILD_INFO}_info", instant=True, fmt="table")], targets.steps(None),
        alerts=(names.ALERT_EXPORTER_ABSENT,)))
