"""The targets dashboards colour against: the catalog's, overridden by the user's config.

Panel thresholds are derived here and nowhere else, so no panel carries a literal target.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpis import effective
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.durations import format_seconds

# Grafana's named colours: met, missed, and a neutral tone for trend-only KPIs.
MET, MISSED, NEUTRAL = "green", "red", "blue"
# Threshold steps (value, colour); the first step's value is None (from -infinity).
Steps = list[tuple[float | None, str]]


@dataclass(frozen=True)
class Goal:
    """A KPI's effective target: direction, value (in the stat's unit), minimum volume."""

    stat: str
    op: str
    value: float
    min_volume: int
    higher_is_better: bool  # kpis.effective decides the direction


def goal(kpi: Kpi, config: Config | None = None) -> Goal | None:
    """The KPI's target with the config's global override and minimum volume applied."""
    target = effective.target(kpi, config)
    if target is None:
        return None
    return Goal(stat=target.stat, op=target.op, value=target.value,
                min_volume=effective.min_volume(kpi, config),
                higher_is_better=effective.higher_is_better(kpi))


def just_above(value: float) -> float:
    """The smallest step past ``value`` that no KPI value falls between (a billionth of it, or
    of 1): Grafana colours a value with the last step whose value it reaches (``>=``), so an
    "at most" target's missed colour starts here, and the target itself is still met."""
    return value + 1e-9 * max(1.0, abs(value))


def steps(target: Goal | None) -> Steps:
    """Met and missed colours from the target's direction; one neutral step without a target.
    At least T: missed below T, met from T up. At most T: met up to and including T (a backlog
    of 0 against a target of 0 is green), missed above it."""
    if target is None:
        return [(None, NEUTRAL)]
    if target.higher_is_better:
        return [(None, MISSED), (target.value, MET)]
    return [(None, MET), (just_above(target.value), MISSED)]


def format_value(value: float, unit: str) -> str:
    """A target as people read it: 10 %, 30m, +50, 0."""
    if unit == "percentunit":
        return f"{value * 100:g} %"
    if unit == "s":
        return format_seconds(value)
    if unit == "none":
        return f"{value:+g}"
    return f"{value:g}"


def sentence(kpi: Kpi, target: Goal | None) -> str:
    """The target as one sentence for panel descriptions."""
    if target is None:
        return "Trend only: no target."
    op = "at most" if target.op == "<=" else "at least"
    stat = {"ratio": "rate", "value": "value", "age": "age"}.get(target.stat, target.stat)
    guard = f" (clinics with fewer than {target.min_volume} cases are not judged)" \
        if target.min_volume else ""
    return f"Target: {stat} {op} {format_value(target.value, kpi.unit)}{guard}."
