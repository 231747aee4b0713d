"""Multiwindow, multi-burn-rate alerts (Google SRE workbook, chapter "Alerting on SLOs").

The exporter exports counts over rolling windows (default 1h, 1d, 7d, 30d), recomputed each
refresh, not counters: error ratios over 5m, 30m, 6h or 3d cannot be derived from them. The
pairs are therefore built from consecutive exported windows (see RUNBOOK.md, "Burn rates"):

- fast tier (pages when the KPI's severity is critical): long = 2nd window (1d),
  short = 1st window (1h), workbook factor 6;
- slow tier (ticket): long = 3rd window (7d), short = 2nd window (1d), workbook factor 1.

The budget period is the longest window (30d). A factor can only fire when
factor x (1 - objective) <= 1, and it then needs every event to fail; the generator caps each
factor so that it fires once half of the events fail: factor <= 0.5 / (1 - objective), for the
lowest objective in force (global and clinic targets). With a 90 % objective the fast factor is
5 (not the workbook's 14.4 or 6, which would need 144 % or 60 % of events failing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from alerts import labels, runbook
from alerts.promql import CLINIC_LEVEL, target, volume
from alerts.settings import KpiRules
from kpis import names
from kpis.catalog import Kpi
from kpis.durations import format_seconds
from kpis.series import FAST_BURN, SLOW_BURN, selector

Rule = dict[str, Any]
MAX_FAILING_SHARE = 0.5  # a tier fires once this share of events fails, at most
# A burn rate has no for: (it is already an average over its windows), so an error ratio near
# the factor would resolve and fire again at each refresh, re-paging every time: the alert
# keeps firing this long after its condition last held (Prometheus 2.42+).
KEEP_FIRING_FOR = "10m"


@dataclass(frozen=True)
class Tier:
    suffix: str
    long: str
    short: str
    factor: float
    budget_share: float  # the share of the period's error budget a factor-x burn spends
    severity: str

    @property
    def signal(self) -> str:
        """``fast_burn`` or ``slow_burn`` (the alert's ``signal`` label)."""
        return "fast_burn" if self.suffix == FAST_BURN else "slow_burn"


TIERS = ((FAST_BURN, 1, 0, 6.0), (SLOW_BURN, 2, 1, 1.0))  # suffix, long, short, workbook


def factor_for(workbook: float, objectives: tuple[float, ...]) -> float:
    """The workbook factor, capped so that the tier fires when half of the events fail."""
    budgets = [1 - o for o in objectives if o < 1]
    if not budgets:
        return workbook
    cap = MAX_FAILING_SHARE / max(budgets)
    return min(workbook, math.floor(cap * 100 + 1e-9) / 100)


def tiers(item: KpiRules, windows: tuple[float, ...]) -> list[Tier]:
    """The burn-rate tiers the exported windows allow for one KPI."""
    result = []
    period = windows[-1]
    for suffix, long_i, short_i, workbook in TIERS:
        if long_i >= len(windows):
            continue
        factor = factor_for(workbook, item.objectives)
        severity = item.kpi.severity if suffix == FAST_BURN else "warning"
        result.append(Tier(suffix, format_seconds(windows[long_i]),
                           format_seconds(windows[short_i]), factor,
                           factor * windows[long_i] / period, severity))
    return result


def error_ratio(kpi: Kpi, window: str) -> str:
    ratio = selector(names.ratio_rule(kpi, CLINIC_LEVEL), window=window)
    assert kpi.target is not None
    return f"(1 - {ratio})" if kpi.target.op == ">=" else ratio


def _budget(kpi: Kpi, per_clinic: bool) -> str:
    assert kpi.target is not None
    return f"(1 - {target(kpi, per_clinic)})" if kpi.target.op == ">=" else target(kpi, per_clinic)


def burn(kpi: Kpi, window: str) -> str:
    """The burn rate per clinic: error ratio over the error budget of the clinic's target."""
    errors = error_ratio(kpi, window)
    clinic_target = selector(names.KPI_TARGET, kpi=kpi.key, clinic="!")
    return (
        f"(\n  {errors} / on (clinic) group_left () {_budget(kpi, True)}\n  or\n"
        f"  ({errors} unless on (clinic) {clinic_target})\n"
        f"    / on () group_left () {_budget(kpi, False)}\n)"
    )


def burn_alert(item: KpiRules, tier: Tier, runbook_base: str, job: str) -> Rule:
    kpi = item.kpi
    name = names.alert_name(kpi, tier.suffix)
    by = "on (source, clinic)"
    expr = f"{burn(kpi, tier.long)} > {tier.factor:g}\nand {by}\n{burn(kpi, tier.short)} > " \
           f"{tier.factor:g}"
    if item.min_volume > 0:
        expr += f"\nand {by}\n{volume(kpi, tier.long)} >= {item.min_volume}"
    description = (
        f"{{{{ $labels.clinic }}}}: {kpi.name} burns its error budget "
        f"{{{{ $value | printf \"%.1f\" }}}}x over the last {tier.long} and over "
        f"{tier.factor:g}x over the last {tier.short} too (a {tier.factor:g}x burn for "
        f"{tier.long} spends {tier.budget_share:.0%} of the budget)."
    )
    return {
        "alert": name,
        "expr": expr,
        "keep_firing_for": KEEP_FIRING_FOR,
        "labels": labels.kpi_alert(kpi, tier.severity, job, tier.signal),
        "annotations": runbook.rule_annotations(
            name, f"{kpi.name} is burning its error budget too fast.", description,
            runbook_base),
    }


def burn_rate_alerts(items: tuple[KpiRules, ...], windows: tuple[float, ...],
                     runbook_base: str, job: str) -> list[Rule]:
    rules: list[Rule] = []
    for item in items:
        if not item.kpi.burn_rate or item.kpi.kind != "proportion" or item.target is None:
            continue
        rules.extend(burn_alert(item, tier, runbook_base, job) for tier in tiers(item, windows))
    return rules
