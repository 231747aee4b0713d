"""Grafana dashboards built from the KPI catalog (grafana-foundation-sdk), written as
deterministic JSON under ``dashboards/generated/``, provisioned from files or published through
Grafana's HTTP API (grafana-client)."""
