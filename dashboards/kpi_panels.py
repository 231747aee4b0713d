"""Panels for one catalog KPI: its scorecard tile, its trend, its distribution.

Titles, descriptions, units, thresholds and runbook links all come from the catalog entry and
the effective target, so a KPI added to kpis/definitions/ needs no dashboard code.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, stat, timeseries

from dashboards import promql, targets
from dashboards.panels import (
    Query,
    bars_panel,
    kpi_description,
    kpi_links,
    stat_panel,
    trend_panel,
)
from kpis import catalog, names
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.series import selector

CLINIC_LEGEND = "{{" + names.CLINIC + "}}"


def enabled(config: Config | None) -> list[Kpi]:
    """Catalog KPIs, in catalog order, minus those the config switches off."""
    kpis = catalog.load()
    if config is None:
        return list(kpis)
    return [k for k in kpis if config.kpis.settings(k.key).enabled]


def legend(by: Sequence[str]) -> str:
    return " ".join("{{" + label + "}}" for label in by)


def stat_label(kpi: Kpi, stat: str | None = None) -> str:
    stat = stat or (kpi.target.stat if kpi.target else "ratio")
    return {"p50": "p50", "p90": "p90", "mean": "mean"}.get(stat, "")


def tile(kpi: Kpi, config: Config | None, width: int = 4, by_clinic: bool = False) -> stat.Panel:
    """The KPI's current value over the selected clinics, coloured against its target."""
    goal = targets.goal(kpi, config)
    queries = [Query(promql.value(kpi), legend=_value_legend(kpi))]
    if goal is not None:
        queries.append(Query(promql.target(kpi, by_clinic=by_clinic), legend="target"))
    title = f"{kpi.name} {stat_label(kpi)}".strip()
    return stat_panel(title, kpi_description(kpi, goal), kpi.unit, queries,
                      targets.steps(goal), kpi_links(kpi), width=width)


def _value_legend(kpi: Kpi) -> str:
    return stat_label(kpi) or "value"


# A trend-only split is coloured against the KPI it splits: A7 against A1's target.
COLOURED_BY = {"no_show_by_reminder": "no_show"}


def goal_kpi(kpi: Kpi) -> Kpi:
    return catalog.by_key()[COLOURED_BY.get(kpi.key, kpi.key)]


def trend(kpi: Kpi, config: Config | None, by: Sequence[str] = (names.CLINIC,),
          title: str = "", note: str = "", width: int = 12,
          clinic_target: bool = False) -> timeseries.Panel:
    """The KPI's headline statistic over time, one line per label set of ``by``."""
    goal_of = goal_kpi(kpi)
    goal = targets.goal(goal_of, config)
    queries = [Query(promql.value(kpi, by), legend=legend(by) or _value_legend(kpi))]
    if clinic_target and goal is not None:
        queries.append(Query(promql.target(goal_of, by_clinic=True), legend="target"))
    split = f" by {', '.join(by)}" if by else ""
    title = title or f"{kpi.name} {stat_label(kpi)}".strip() + split
    return trend_panel(title, kpi_description(kpi, goal, note), kpi.unit, queries,
                       targets.steps(goal), kpi_links(goal_of), width=width)


def quantiles(kpi: Kpi, config: Config | None, by: Sequence[str] = (), width: int = 12,
              title: str = "") -> timeseries.Panel:
    """p50 and p90 of a duration KPI over time (a duration is a distribution, not a mean)."""
    goal = targets.goal(kpi, config)
    prefix = legend(by)
    queries = [
        Query(promql.quantile(kpi, q, by), legend=f"{prefix} {q}".strip())
        for q in ("p50", "p90")
    ]
    split = f" by {', '.join(by)}" if by else ""
    title = title or f"{kpi.name} p50 / p90{split}"
    return trend_panel(title, kpi_description(kpi, goal), kpi.unit, queries,
                       targets.steps(goal), kpi_links(kpi), width=width)


def distribution(kpi: Kpi, config: Config | None, width: int = 12) -> bargauge.Panel:
    """How many cases fall in each histogram bucket (Grafana de-accumulates the buckets)."""
    goal = targets.goal(kpi, config)
    bucket = f"{names.histogram(kpi)}_bucket"
    expr = f"sum by ({names.LE}) ({selector(bucket, *promql.kpi_matchers(kpi))})"
    query = Query(expr, legend="{{" + names.LE + "}}", instant=True, fmt="heatmap")
    note = "Bars count the cases per bucket (upper bound in seconds)."
    where = "Counts: the KPI's target applies to its quantile panel."
    return bars_panel(f"{kpi.name} distribution", kpi_description(kpi, goal, note, where),
                      "short", [query], targets.steps(None), kpi_links(kpi), width=width)


def counts(kpi: Kpi, parts: Sequence[str], title: str, note: str,
           by: Sequence[str] = (names.CLINIC,), width: int = 12) -> timeseries.Panel:
    """The raw counts a KPI rests on (volume matters as much as the rate)."""
    matchers = promql.kpi_matchers(kpi)
    grouping = ", ".join(by)
    queries = [
        Query(f"sum by ({grouping}) ({selector(names.count_metric(kpi, part), *matchers)})",
              legend=f"{legend(by)} {part}".strip())
        for part in parts
    ]
    description = kpi_description(kpi, None, note, target_text="Counts: no target.")
    return trend_panel(title, description, "short", queries, targets.steps(None), (),
                       width=width)
