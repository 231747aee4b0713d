"""Health alerts: a data feed gone stale during opening hours, KPI refreshes that stopped, a
source the exporter cannot reach, and the exporter's own scrape target missing or down."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerts import runbook
from alerts.settings import KpiRules
from kpis import names
from kpis.config import WEEKDAYS, Calendar
from kpis.series import STALE_REFRESHES, selector

Rule = dict[str, Any]
DEFAULT_JOB = "carekpi"


def standard_offset(timezone: str) -> int:
    """The zone's UTC offset in mid-January, in seconds (PromQL has no time zones: the opening
    hours guard uses this offset all year, so it is an hour off during daylight saving time)."""
    offset = datetime(2024, 1, 15, 12, tzinfo=ZoneInfo(timezone)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _local(func: str, offset: int) -> str:
    now = f"time() + {offset}" if offset else "time()"
    return f"{func}(vector({now}))"


def opening_hours(calendar: Calendar) -> str:
    """A PromQL expression with one (label-less) sample while the calendar says open."""
    offset = standard_offset(calendar.timezone)
    minute_of_week = (f"({_local('day_of_week', offset)} * 1440 + {_local('hour', offset)} * 60"
                      f" + {_local('minute', offset)})")
    spans = []
    for index, day in enumerate(WEEKDAYS):
        opening = calendar.hours.get(day)  # type: ignore[call-overload]
        if opening is None:
            continue
        start, end = (int(t[:2]) * 60 + int(t[3:]) for t in opening.split("-"))
        base = ((index + 1) % 7) * 1440  # PromQL's day_of_week: 0 is Sunday
        spans.append(f"{minute_of_week} >= {base + start} < {base + end}")
    expr = "(\n  " + "\n  or\n  ".join(spans) + "\n)"
    if calendar.holidays:
        ymd = (f"({_local('year', offset)} * 10000 + {_local('month', offset)} * 100"
               f" + {_local('day_of_month', offset)})")
        days = " or ".join(f"{ymd} == {d.strftime('%Y%m%d')}" for d in sorted(calendar.holidays))
        expr += f"\nunless on ()\n({days})"
    return expr


def stale_feed_alert(item: KpiRules, calendar: Calendar | None, runbook_base: str) -> Rule:
    kpi = item.kpi
    fallback = f"{item.target:g}" if item.target is not None else "7200"
    limit = f"(max({selector(names.KPI_TARGET, kpi=kpi.key)}) or vector({fallback}))"
    expr = f"time() - {names.NEWEST_RECORD}\n  > on () group_left ()\n{limit}"
    when = "during opening hours" if calendar is not None else "(no calendar: checked at any hour)"
    if calendar is not None:
        expr = f"(\n{expr}\n)\nand on ()\n{opening_hours(calendar)}"
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
        "labels": {"severity": kpi.severity, names.KPI: kpi.key},
        "annotations": runbook.rule_annotations(
            names.ALERT_STALE_FEED, "A data feed has stopped delivering new records.",
            description, runbook_base),
    }


def refresh_stale_alert(runbook_base: str) -> Rule:
    name = names.ALERT_REFRESH_STALE
    return {
        "alert": name,
        "expr": f"time() - {names.KPI_LAST_SUCCESS}\n  > {STALE_REFRESHES} * "
                f"{names.KPI_REFRESH_INTERVAL}",
        "for": "5m",
        "labels": {"severity": "warning"},
        "annotations": runbook.rule_annotations(
            name, "A KPI has not refreshed successfully for several intervals.",
            "{{ $labels.kpi }} from source {{ $labels.source }}: last successful refresh "
            "{{ $value | humanizeDuration }} ago, more than "
            f"{STALE_REFRESHES} refresh intervals.", runbook_base),
    }


def source_down_alert(runbook_base: str) -> Rule:
    name = names.ALERT_SOURCE_DOWN
    return {
        "alert": name,
        "expr": f"{names.SOURCE_UP} == 0",
        "for": "5m",
        "labels": {"severity": "critical"},
        "annotations": runbook.rule_annotations(
            name, "The exporter cannot query a source database.",
            "Source {{ $labels.source }} has been unreachable or failing for 5 minutes; "
            "its KPIs are stale and their alerts are inhibited.", runbook_base),
    }


def exporter_absent_alert(job: str, runbook_base: str) -> Rule:
    name = names.ALERT_EXPORTER_ABSENT
    up = selector("up", job=job)
    return {
        "alert": name,
        "expr": f"{up} == 0\nor\nabsent({up})",
        "for": "5m",
        "labels": {"severity": "critical", "job": job},
        "annotations": runbook.rule_annotations(
            name, "Prometheus cannot scrape the CareKPI exporter.",
            f"Scrape job {job} is down or missing{{{{ with $labels.instance }}}} (instance "
            "{{ . }}){{ end }}: no KPI is "
            "measured and no KPI alert can fire.", runbook_base),
    }


def health_alerts(items: tuple[KpiRules, ...], calendar: Calendar | None, job: str,
                  runbook_base: str) -> list[Rule]:
    rules = [stale_feed_alert(i, calendar, runbook_base) for i in items
             if i.kpi.kind == "freshness"]
    rules += [refresh_stale_alert(runbook_base), source_down_alert(runbook_base),
              exporter_absent_alert(job, runbook_base)]
    return rules

