"""What the generated dashboards contain: panels, queries, metric names, variables.

Used by the lint and end-to-end tests and by the project-wide check that every metric a
dashboard mentions is one the exporter emits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

# Grafana's built-in interval variables and what a check substitutes for them.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")
_METRIC = re.compile(r"\b(carekpi_[a-z0-9_]+)\b")


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows excluded), including panels inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            yield panel, target


def variables_used(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace $var and ${var} with values (built-in intervals included)."""
    known = {**BUILTINS, **values}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in known:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return known[name]

    return _VARIABLE.sub(replace, expr)


def metrics(expr: str) -> set[str]:
    """The carekpi_* series names an expression reads (recording-rule names excluded)."""
    found = set()
    for match in _METRIC.finditer(expr):
        start = match.start()
        if start > 0 and expr[start - 1] == ":":
            continue
        found.add(match.group(1))
    return found
