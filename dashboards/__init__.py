"""Grafana dashboards built from the KPI catalog (grafana-foundation-sdk), written as
deterministic JSON under ``dashboards/generated/``, provisioned from files or published through
Grafana's HTTP API (grafana-client)."""

# The runbook the alerts package ships (anchors: alert names, lowercased). Operators pass the URL
# of their published copy (`carekpi dashboards build --runbook-url`). Here, not in panels.py, so
# the CLI gets it without importing grafana-foundation-sdk (about 2 MB in every `serve`).
RUNBOOK_URL = "alerts/RUNBOOK.md"  # as alerts.annotations.RUNBOOK_BASE_URL; override on build
