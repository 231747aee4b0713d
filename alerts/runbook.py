"""Alert annotations: a static summary, a templated description and the runbook link.

``RUNBOOK_BASE_URL`` is where the shipped runbook lives relative to the project; operators who
publish their own copy pass ``runbook_base`` (``carekpi alerts build --runbook-url``).
"""

from __future__ import annotations

RUNBOOK_BASE_URL = "alerts/RUNBOOK.md"


def anchor(alert: str) -> str:
    """The Markdown heading anchor of an alert's runbook section (GitHub style: lower case)."""
    return alert.lower()


def runbook_url(alert: str, base: str = RUNBOOK_BASE_URL) -> str:
    return f"{base}#{anchor(alert)}"


def rule_annotations(alert: str, summary: str, description: str,
                base: str = RUNBOOK_BASE_URL) -> dict[str, str]:
    return {"summary": summary, "description": description, "runbook_url": runbook_url(alert, base)}
