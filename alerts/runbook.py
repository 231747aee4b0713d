"""Alert annotations: a static summary, a templated description and the runbook link.

The runbook's location (``kpis.series.RUNBOOK_URL``) is shared with the dashboards; operators
who publish their own copy pass ``runbook_base`` (``carekpi alerts build --runbook-url``).
"""

from __future__ import annotations

from kpis.series import RUNBOOK_URL, runbook_url


def rule_annotations(alert: str, summary: str, description: str,
                base: str = RUNBOOK_URL) -> dict[str, str]:
    return {"summary": summary, "description": description, "runbook_url": runbook_url(alert, base)}
