"""PromQL for dashboard panels, built from the raw series the exporter emits.

Ratios are always ``sum(numerator) / sum(denominator)`` over the same grouping, never an average
of per-clinic ratios; quantiles come from summed histogram buckets; a zero denominator yields no
sample instead of NaN or +Inf. Every metric name comes from :mod:`kpis.names`.
"""

from __future__ import annotations

from collections.abc import Sequence

from kpis import names
from kpis.catalog import Kpi
from kpis.series import QUANTILES, breach_operator, selector

CLINIC_VAR = "$clinic"
WINDOW_VAR = "$window"
RATE_INTERVAL = "$__rate_interval"


def kpi_matchers(kpi: Kpi, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Clinic and window filters that apply to the KPI's series (backlogs have no window)."""
    found = [f'{names.CLINIC}=~"{CLINIC_VAR}"']
    if kpi.kind != "backlog":
        found.append(f'{names.WINDOW}="{WINDOW_VAR}"')
    return (*found, *extra)


def _sum(metric: str, by: Sequence[str], matchers: Sequence[str]) -> str:
    grouping = f" by ({', '.join(by)})" if by else ""
    return f"sum{grouping} ({selector(metric, *matchers)})"


def ratio(kpi: Kpi, by: Sequence[str] = (), extra: Sequence[str] = ()) -> str:
    """A proportion KPI: summed numerator over summed (non-zero) denominator."""
    matchers = kpi_matchers(kpi, extra)
    num = _sum(names.numerator(kpi), by, matchers)
    den = _sum(names.denominator(kpi), by, matchers)
    return f"{num} / ({den} > 0)"


def quantile(kpi: Kpi, stat: str, by: Sequence[str] = ()) -> str:
    """p50/p90 of a duration KPI from its summed buckets."""
    bucket = f"{names.histogram(kpi)}_bucket"
    buckets = _sum(bucket, (names.LE, *by), kpi_matchers(kpi))
    return f"histogram_quantile({QUANTILES[stat]}, {buckets})"


def mean(kpi: Kpi, by: Sequence[str] = ()) -> str:
    base = names.histogram(kpi)
    matchers = kpi_matchers(kpi)
    return f"{_sum(base + '_sum', by, matchers)} / ({_sum(base + '_count', by, matchers)} > 0)"


def nps(kpi: Kpi, by: Sequence[str] = ()) -> str:
    """NPS = 100 * (promoters - detractors) / responses, each summed before the arithmetic."""
    matchers = kpi_matchers(kpi)
    promoters, detractors, responses = (
        _sum(names.score_count(kpi, part), by, matchers) for part in names.SCORE_COUNTS
    )
    return f"100 * ({promoters} - {detractors}) / ({responses} > 0)"


def backlog(kpi: Kpi, by: Sequence[str] = ()) -> str:
    return _sum(names.backlog(kpi), by, kpi_matchers(kpi))


def freshness_age(by: Sequence[str] = ()) -> str:
    """Age of the newest record: the freshest source of an entity counts."""
    grouping = f" by ({', '.join(by)})" if by else ""
    return f"time() - max{grouping} ({names.NEWEST_RECORD})"


def volume(kpi: Kpi, by: Sequence[str] = ()) -> str | None:
    """The count a KPI value rests on (for minimum-volume guards); None for backlogs."""
    matchers = kpi_matchers(kpi)
    if kpi.kind == "proportion":
        return _sum(names.denominator(kpi), by, matchers)
    if kpi.kind == "duration":
        return _sum(f"{names.histogram(kpi)}_count", by, matchers)
    if kpi.kind == "score":
        return _sum(names.score_count(kpi, "responses"), by, matchers)
    return None


def value(kpi: Kpi, by: Sequence[str] = (), stat: str | None = None) -> str:
    """The KPI's headline statistic (its target's stat unless ``stat`` is given)."""
    stat = stat or (kpi.target.stat if kpi.target else "ratio")
    if kpi.kind == "proportion":
        return ratio(kpi, by)
    if kpi.kind == "duration":
        return mean(kpi, by) if stat == "mean" else quantile(kpi, stat, by)
    if kpi.kind == "score":
        return nps(kpi, by)
    if kpi.kind == "backlog":
        return backlog(kpi, by)
    return freshness_age(by) if by else f"max ({freshness_age((names.ENTITY,))})"


def target(kpi: Kpi, by_clinic: bool = False) -> str:
    """The exported target: the global one, or each selected clinic's effective one."""
    kpi_matcher = f'{names.KPI}="{kpi.key}"'
    if by_clinic:
        sel = selector(names.KPI_TARGET, kpi_matcher, f'{names.CLINIC}=~"{CLINIC_VAR}"',
                       f'{names.CLINIC}!=""')
        return f"max by ({names.CLINIC}) ({sel})"
    no_clinic = f'{names.CLINIC}=""'
    return f"max ({selector(names.KPI_TARGET, kpi_matcher, no_clinic)})"


def breach(kpi: Kpi, min_volume: int) -> str:
    """1 per clinic whose value is past its own target (with enough volume), else 0.

    The clinic's effective target (override or global) is read from the exported target series,
    so per-clinic targets from the config count without rebuilding the dashboard."""
    assert kpi.target is not None
    by = (names.CLINIC,)
    past = breach_operator(kpi)
    expr = f"({value(kpi, by)}) {past} bool ({target(kpi, by_clinic=True)})"
    guard = volume(kpi, by)
    if guard is not None and min_volume > 0:
        expr = f"({expr}) * ({guard} >= bool {min_volume})"
    return f'label_replace({expr}, "{names.KPI}", "{kpi.key}", "", "")'


def breach_count(terms: Sequence[str]) -> str:
    """Clinics ranked by how many KPIs breach (each term carries a distinct kpi label)."""
    return f"sort_desc(sum by ({names.CLINIC}) ({' or '.join(terms)}))"
