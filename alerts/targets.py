"""Target alerts: a KPI's statistic past its target per clinic for ``alert_for``, guarded by a
minimum volume, and the backlog alerts (a "now" count above its target, zero by default)."""

from __future__ import annotations

from typing import Any

from alerts import labels, runbook
from alerts.promql import (
    CLINIC_LABELS,
    CLINIC_LEVEL,
    humanizer,
    past_target,
    target_query,
    volume,
)
from alerts.settings import KpiRules
from kpis import names
from kpis.series import selector, sum_by

Rule = dict[str, Any]
TARGETED_KINDS = ("proportion", "duration", "score")


def target_alert_name(item: KpiRules) -> str:
    if item.kpi.kind == "backlog":
        return names.alert_name(item.kpi, "")
    return names.alert_name(item.kpi)


def _guarded(expr: str, item: KpiRules, window: str) -> str:
    if item.min_volume <= 0:
        return expr
    guard = f"{volume(item.kpi, window)} >= {item.min_volume}"
    return f"(\n{expr}\n)\nand on ({', '.join(CLINIC_LABELS)})\n{guard}"


def target_alert(item: KpiRules, runbook_base: str, job: str) -> Rule:
    """The alert for a KPI whose ratio, quantile, mean or score misses its target."""
    kpi, window = item.kpi, item.alert_window
    assert kpi.target is not None
    value = selector(names.value_rule(kpi, CLINIC_LEVEL), window=window)
    name = target_alert_name(item)
    description = (
        f"{{{{ $labels.clinic }}}}: {kpi.name} is {{{{ $value | {humanizer(kpi)} }}}} over the "
        f"last {{{{ $labels.window }}}} (target {kpi.target.op} {target_query(kpi)}, "
        f"at least {item.min_volume} events)."
    )
    return {
        "alert": name,
        "expr": _guarded(past_target(value, kpi), item, window),
        "for": kpi.alert_for,
        "labels": labels.kpi_alert(kpi, kpi.severity, job, "target"),
        "annotations": runbook.rule_annotations(
            name, f"{kpi.name} misses its target in a clinic.", description, runbook_base),
    }


def backlog_alert(item: KpiRules, runbook_base: str, job: str) -> Rule:
    """The alert for a backlog (items past their deadline, now) above its target."""
    kpi = item.kpi
    assert kpi.target is not None
    value = sum_by((names.SOURCE, names.CLINIC), names.backlog(kpi))
    name = target_alert_name(item)
    description = (
        f"{{{{ $labels.clinic }}}}: {{{{ $value | printf \"%.0f\" }}}} {kpi.counts} "
        f"(target {kpi.target.op} {target_query(kpi)})."
    )
    return {
        "alert": name,
        "expr": past_target(value, kpi),
        "for": kpi.alert_for,
        "labels": labels.kpi_alert(kpi, kpi.severity, job, "backlog"),
        "annotations": runbook.rule_annotations(
            name, f"{kpi.name}: items are past their deadline.", description, runbook_base),
    }


def target_alerts(items: tuple[KpiRules, ...], runbook_base: str, job: str) -> list[Rule]:
    rules = []
    for item in items:
        if item.kpi.target is None or item.target is None:
            continue
        if item.kpi.kind in TARGETED_KINDS:
            rules.append(target_alert(item, runbook_base, job))
        elif item.kpi.kind == "backlog":
            rules.append(backlog_alert(item, runbook_base, job))
    return rules
