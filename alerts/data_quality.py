"""Data-quality alerts, routed to the data team (``team="data"``), not to the on-call pager:
an error-severity check failing in the latest run, and checks that have not run for longer
than twice their schedule (``checks.schedule``; once a day when checks run from cron with
``--metrics-file`` and no schedule is configured)."""

from __future__ import annotations

from typing import Any

from alerts import labels, runbook
from alerts.labels import ALL
from kpis import names
from kpis.durations import format_seconds
from kpis.series import selector

Rule = dict[str, Any]
TEAM = "team"
DATA_TEAM = "data"
DEFAULT_SCHEDULE_SECONDS = 86400.0
ALERT_CHECK_FAILED = "CareKPICheckFailed"
ALERT_CHECKS_NOT_RUN = "CareKPIChecksNotRun"


def _labels(job: str) -> dict[str, str]:
    return labels.fixed("warning", job, clinic=ALL, kpi=ALL, source=ALL, **{TEAM: DATA_TEAM})


def check_failed_alert(job: str, runbook_base: str) -> Rule:
    """An error-severity check failed in the latest run (warning-severity ones only show on
    the data-quality dashboard). The check's own ``severity`` label becomes the alert's."""
    return {
        "alert": ALERT_CHECK_FAILED,
        "expr": f"{selector(names.CHECK_PASSED, severity='error')} == 0",
        "for": "5m",
        "labels": _labels(job),
        "annotations": runbook.rule_annotations(
            ALERT_CHECK_FAILED, "An error-severity data-quality check failed.",
            "Check {{ $labels.check }} on {{ $labels.entity }}{{ with $labels.column }}"
            " (field {{ . }}){{ end }} failed in the latest run: KPIs built from these "
            "records may be wrong.", runbook_base),
    }


def checks_not_run_alert(schedule_seconds: float, job: str, runbook_base: str) -> Rule:
    limit = 2 * schedule_seconds
    return {
        "alert": ALERT_CHECKS_NOT_RUN,
        "expr": f"time() - {names.CHECK_LAST_RUN} > {limit:g}",
        "for": "5m",
        "labels": _labels(job),
        "annotations": runbook.rule_annotations(
            ALERT_CHECKS_NOT_RUN, "The data-quality checks have stopped running.",
            "The latest check run finished {{ $value | humanizeDuration }} ago, more than "
            f"twice their schedule ({format_seconds(schedule_seconds)}): check results on the "
            "dashboard are stale.", runbook_base),
    }


def data_quality_alerts(schedule_seconds: float | None, job: str,
                        runbook_base: str) -> list[Rule]:
    schedule = schedule_seconds if schedule_seconds else DEFAULT_SCHEDULE_SECONDS
    return [check_failed_alert(job, runbook_base),
            checks_not_run_alert(schedule, job, runbook_base)]
