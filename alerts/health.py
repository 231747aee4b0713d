"""Health alerts: a data feed gone stale during opening hours, KPI refreshes that stopped, a
source the exporter cannot reach, and the exporter's own scrape target missing or down.

Opening hours come from the exporter: ``carekpi_calendar_open`` is 1 inside the calendar's
opening hours (holidays closed), computed with the calendar's time zone (daylight saving time
included), so the stale-feed guard needs no time arithmetic in PromQL."""

from __future__ import annotations

from typing import Any

from alerts import labels, runbook
from alerts.labels import ALL
from alerts.settings import KpiRules
from kpis import names
from kpis.config import Calendar
from kpis.series import STALE_REFRESHES, selector

Rule = dict[str, Any]
DEFAULT_JOB = "carekpi"


def opening_hours() -> str:
    """A PromQL expression with one (label-less) sample while the calendar says open."""
    return f"max({names.CALENDAR_OPEN}) == 1"


def stale_feed_alert(item: KpiRules, calendar: Calendar | None, runbook_base: str,
                     job: str = DEFAULT_JOB) -> Rule:
    kpi = item.kpi
    fallback = f"{item.target:g}" if item.target is not None else "7200"
    limit = f"(max({selector(names.KPI_TARGET, kpi=kpi.key)}) or vector({fallback}))"
    expr = f"time() - {names.NEWEST_RECORD}\n  > on () group_left ()\n{limit}"
    when = "during opening hours" if calendar is not None else "(no calendar: checked at any hour)"
    if calendar is not None:
        expr = f"(\n{expr}\n)\nand on ()\n{opening_hours()}"
    target_now = (f"{{{{ with query \"max({names.KPI_TARGET}{{kpi='{kpi.key}'}})\" }}}}"
                  f"{{{{ . | first | value | humanizeDuration }}}}{{{{ end }}}}")
    description = (
        "{{ $labels.entity }} from source {{ $labels.source }}: the newest record is "
        f"{{{{ $value | humanizeDuration }}}} old {when} (target <= {target_now})."
    )
    return {
        "alert": names.ALERT_STALE_FEED,
        "expr": expr,
        "for": kpi.alert_for,
        "labels": {**labels.kpi_alert(kpi, kpi.severity, job, "stale_feed"), names.CLINIC: ALL},
        "annotations": runbook.rule_annotations(
            names.ALERT_STALE_FEED, "A data feed has stopped delivering new records.",
            description, runbook_base),
    }


def refresh_stale_alert(runbook_base: str, job: str = DEFAULT_JOB) -> Rule:
    """A window whose last success is older than a few intervals, or a KPI failing that has
    never succeeded since the exporter started (it has no last success to age: a table the
    exporter may not read, a column that is missing)."""
    name = names.ALERT_REFRESH_STALE
    # Per window: a window that has never succeeded has an interval but no last success
    # (another window of the KPI may well have one), while its KPI is down.
    never = (f"{names.KPI_REFRESH_INTERVAL}\n  unless on (job, instance, {names.KPI}, "
             f"{names.SOURCE}, {names.WINDOW}) {names.KPI_LAST_SUCCESS}\n  and on (job, "
             f"instance, {names.KPI}, {names.SOURCE}) {names.KPI_UP} == 0")
    return {
        "alert": name,
        "expr": f"time() - {names.KPI_LAST_SUCCESS}\n  > {STALE_REFRESHES} * "
                f"{names.KPI_REFRESH_INTERVAL}\nor\n  {never}",
        "for": "5m",
        "labels": labels.fixed("warning", job, clinic=ALL),
        "annotations": runbook.rule_annotations(
            name, "A KPI has not refreshed successfully for several intervals.",
            "{{ $labels.kpi }} from source {{ $labels.source }}: no successful refresh for "
            f"more than {STALE_REFRESHES} refresh intervals, or none since the exporter "
            f"started (failures: {names.KPI_REFRESH_ERRORS}_total).", runbook_base),
    }


def source_down_alert(runbook_base: str, job: str = DEFAULT_JOB) -> Rule:
    name = names.ALERT_SOURCE_DOWN
    return {
        "alert": name,
        "expr": f"{names.SOURCE_UP} == 0",
        "for": "5m",
        "labels": labels.fixed("critical", job, clinic=ALL, kpi=ALL),
        "annotations": runbook.rule_annotations(
            name, "The exporter cannot query a source database.",
            "Source {{ $labels.source }} has been unreachable or failing for 5 minutes; "
            "its KPIs are stale and their alerts are inhibited.", runbook_base),
    }


def suspect_alert(runbook_base: str, job: str = DEFAULT_JOB) -> Rule:
    """info: the data makes a KPI's value doubtful (carekpi_kpi_suspect); not paged."""
    name = names.ALERT_SUSPECT
    return {
        "alert": name,
        "expr": f"max by (kpi, source, reason, clinic) ({names.KPI_SUSPECT}) > 0",
        "for": "15m",
        "labels": labels.fixed("info", job),
        "annotations": runbook.rule_annotations(
            name, "A KPI's value is doubtful: check the mapping before trusting it.",
            "{{ $labels.kpi }} for clinic {{ $labels.clinic }} (source {{ $labels.source }}) "
            "is suspect: {{ $labels.reason }} (most_excluded: exclusions removed most of its "
            "records; identical_durations: every duration is the same value).", runbook_base),
    }


def exporter_absent_alert(job: str, runbook_base: str) -> Rule:
    name = names.ALERT_EXPORTER_ABSENT
    up = selector("up", job=job)
    return {
        "alert": name,
        "expr": f"{up} == 0\nor\nabsent({up})",
        "for": "5m",
        "labels": labels.fixed("critical", job, clinic=ALL, kpi=ALL, source=ALL),
        "annotations": runbook.rule_annotations(
            name, "Prometheus cannot scrape the CareKPI exporter.",
            f"Scrape job {job} is down or missing{{{{ with $labels.instance }}}} (instance "
            "{{ . }}){{ end }}: no KPI is "
            "measured and no KPI alert can fire.", runbook_base),
    }


def duplicate_shard_alert(job: str, runbook_base: str) -> Rule:
    """Two exporters serving the same shard (or two unsharded ones) export every count twice:
    every sum in every rule and dashboard doubles."""
    name = names.ALERT_DUPLICATE_SHARD
    info = selector(f"{names.BUILD_INFO}_info", job=job)
    return {
        "alert": name,
        "expr": f"count by (job, shard) ({info}) > 1",
        "for": "5m",
        "labels": labels.fixed("critical", job, clinic=ALL, kpi=ALL, source=ALL),
        "annotations": runbook.rule_annotations(
            name, "Two CareKPI exporters serve the same shard: every KPI count is doubled.",
            "{{ $value | printf \"%.0f\" }} exporters of job {{ $labels.job }} serve shard "
            "{{ $labels.shard }}; "
            "sums over them count every record twice. Run one exporter per shard.",
            runbook_base),
    }


def health_alerts(items: tuple[KpiRules, ...], calendar: Calendar | None, job: str,
                  runbook_base: str) -> list[Rule]:
    rules = [stale_feed_alert(i, calendar, runbook_base, job) for i in items
             if i.kpi.kind == "freshness"]
    rules += [refresh_stale_alert(runbook_base, job), source_down_alert(runbook_base, job),
              suspect_alert(runbook_base, job),
              exporter_absent_alert(job, runbook_base), duplicate_shard_alert(job, runbook_base)]
    return rules

