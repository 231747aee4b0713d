"""Conventions of the exported series that the alert rules and the dashboards share.

Metric names live in :mod:`kpis.names`; this module holds how they are queried and what the
rules and panels must agree on: the PromQL selector, the quantiles of the duration KPIs, the
number of refresh intervals before a KPI counts as stale, the burn-rate alert suffixes and the
runbook's location and anchors.
"""

from __future__ import annotations

import json

from kpis.catalog import Kpi

QUANTILES = {"p50": "0.5", "p90": "0.9"}  # target stat -> histogram_quantile's argument

# Refresh intervals without a successful refresh before a KPI counts as stale: its alert fires
# (CareKPIRefreshStale), its dashboard panel turns red and the exporter drops its old cells.
STALE_REFRESHES = 3

# Multiwindow burn-rate alerts of SLA-type KPIs: the fast tier pages, the slow one warns.
FAST_BURN, SLOW_BURN = "FastBurn", "SlowBurn"
BURN_SUFFIXES = (FAST_BURN, SLOW_BURN)

# Where the shipped runbook lives relative to the project; operators who publish their own copy
# pass its URL (`carekpi alerts build --runbook-url`, `carekpi dashboards build --runbook-url`).
RUNBOOK_URL = "alerts/RUNBOOK.md"


def selector(metric: str, *matchers: str, **labels: str) -> str:
    """``metric{<matchers>, a="x", b!="y"}``: ``matchers`` are written as given (``clinic=~"$c"``),
    then ``labels`` sorted by name, where a value starting with ``!`` is a negative match."""
    parts = list(matchers)
    for key, value in sorted(labels.items()):
        op, value = ("!=", value[1:]) if value.startswith("!") else ("=", value)
        # A PromQL string (Go's quoting; JSON's is a subset): a quote or backslash in a value
        # given on the command line (--job) stays inside it.
        parts.append(f"{key}{op}{json.dumps(value, ensure_ascii=False)}")
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def sum_by(labels: tuple[str, ...], expr: str) -> str:
    return f"sum by ({', '.join(labels)}) ({expr})"


def breach_operator(kpi: Kpi) -> str:
    """The comparison that is true when the KPI misses its target."""
    assert kpi.target is not None
    return ">" if kpi.target.op == "<=" else "<"


def runbook_anchor(alert: str) -> str:
    """The Markdown heading anchor of an alert's runbook section (GitHub style: lower case)."""
    return alert.lower()


def runbook_url(alert: str, base: str = RUNBOOK_URL) -> str:
    return f"{base}#{runbook_anchor(alert)}"
