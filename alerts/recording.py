"""Recording rules: every KPI's ratio, quantiles, mean or score, per clinic and overall, per
window. Numerators and denominators are summed before dividing; quantiles are
``histogram_quantile`` over buckets summed by ``le``. Dashboards and alerts read these."""

from __future__ import annotations

from typing import Any

from alerts import settings
from alerts.promql import (
    CLINIC_LEVEL,
    OVERALL_LEVEL,
    grouping,
)
from kpis import names
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.series import QUANTILES, sum_by

Rule = dict[str, Any]


def _ratio(kpi: Kpi, overall: bool) -> str:
    by = grouping(kpi, overall)
    return f"{sum_by(by, names.numerator(kpi))}\n/\n{sum_by(by, names.denominator(kpi))}"


def _quantile(kpi: Kpi, q: str, overall: bool) -> str:
    by = (*grouping(kpi, overall), names.LE)
    return f"histogram_quantile({QUANTILES[q]}, {sum_by(by, names.histogram(kpi) + '_bucket')})"


def _mean(kpi: Kpi, overall: bool) -> str:
    by, base = grouping(kpi, overall), names.histogram(kpi)
    return f"{sum_by(by, base + '_sum')}\n/\n{sum_by(by, base + '_count')}"


def _score(kpi: Kpi, overall: bool) -> str:
    by = grouping(kpi, overall)
    promoters, detractors, responses = (
        sum_by(by, names.score_count(kpi, part)) for part in names.SCORE_COUNTS
    )
    return f"100 * (\n  {promoters}\n  -\n  {detractors}\n)\n/\n{responses}"


def kpi_recording_rules(kpi: Kpi) -> list[Rule]:
    """The recording rules of one KPI (none for backlog and freshness, already "now" values)."""
    rules: list[Rule] = []
    for level, overall in ((CLINIC_LEVEL, False), (OVERALL_LEVEL, True)):
        if kpi.kind == "proportion":
            rules.append({"record": names.ratio_rule(kpi, level), "expr": _ratio(kpi, overall)})
        elif kpi.kind == "duration":
            for q in QUANTILES:
                rules.append({"record": names.quantile_rule(kpi, q, level),
                              "expr": _quantile(kpi, q, overall)})
            rules.append({"record": names.mean_rule(kpi, level), "expr": _mean(kpi, overall)})
        elif kpi.kind == "score":
            rules.append({"record": names.score_rule(kpi, level), "expr": _score(kpi, overall)})
    return rules


def recording_groups(config: Config | None = None) -> list[dict[str, Any]]:
    """One rule group per catalog section, for the enabled KPIs."""
    groups: dict[str, list[Rule]] = {}
    for item in settings.kpi_rules(config):
        rules = kpi_recording_rules(item.kpi)
        if rules:
            groups.setdefault(item.kpi.section, []).extend(rules)
    return [{"name": f"carekpi-recording-{section.replace('_', '-')}", "rules": rules}
            for section, rules in groups.items()]
