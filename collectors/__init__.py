"""Collectors: SQL building and running, the refresh scheduler and the Prometheus exporter."""
