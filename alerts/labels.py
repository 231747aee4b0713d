"""The labels every alert carries, so routing and inhibition never fall through.

``severity``, ``clinic``, ``kpi`` and ``source`` are on every alert: from the series where the
alert is about one clinic or one source, else the fixed value ``all``. ``job`` (the exporter's
scrape job) lets ``CareKPIExporterAbsent`` silence only the alerts of its own exporter, and
``objective`` (the KPI whose objective an alert is about: a backlog belongs to its SLA) lets a
fast burn silence the backlog of the same SLA. ``signal`` ranks a KPI alert in the hierarchy
the inhibition rules follow: ``fast_burn`` over ``target`` over ``slow_burn`` and ``backlog``
(see alerts/alertmanager.yml and RUNBOOK.md, "One incident, one page").
"""

from __future__ import annotations

from kpis import names
from kpis.catalog import Kpi

ALL = "all"  # the value of a label an alert is not about (no single clinic, KPI or source)
SEVERITY, OBJECTIVE, JOB, SIGNAL = "severity", "objective", "job", "signal"
SIGNALS = ("fast_burn", "target", "slow_burn", "backlog", "stale_feed")


def kpi_alert(kpi: Kpi, severity: str, job: str, signal: str) -> dict[str, str]:
    """A KPI alert's fixed labels; clinic and source come from the series."""
    assert signal in SIGNALS, signal
    return {SEVERITY: severity, names.KPI: kpi.key, OBJECTIVE: kpi.objective, JOB: job,
            SIGNAL: signal}


def fixed(severity: str, job: str, **labels: str) -> dict[str, str]:
    """A health alert's fixed labels: severity, job and ``labels`` (``all`` for each of clinic,
    kpi and source that its series does not carry)."""
    result = {SEVERITY: severity, JOB: job}
    result.update(labels)
    return result
