"""Build every dashboard from the catalog and the config, and write them deterministically.

``build_files(config)`` returns ``{file name: JSON text}``; ``write(config, out_dir)`` writes
them. Same catalog and config, same bytes: no timestamps, sorted keys, stable panel ids.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import board, care, operations, sections
from kpis.config import Config
from kpis.generated_files import write_texts
from kpis.series import RUNBOOK_URL

GENERATED_DIR = Path(__file__).parent / "generated"
# The Grafana version whose schema grafana-foundation-sdk's pinned build emits (pyproject.toml).
GRAFANA_VERSION = "11.6.0"
DATASOURCE_INPUT = "DS_CAREKPI_PROMETHEUS"

BUILDERS: tuple[Callable[[Config | None], Dashboard], ...] = (
    care.overview,
    care.clinic,
    sections.access,
    sections.responsiveness,
    sections.experience,
    operations.data_quality,
    operations.exporter,
)


def _relink(data: dict[str, Any], runbook_base: str) -> None:
    """Point runbook links at the operator's published copy of the runbook."""
    for panel in data.get("panels", []):
        for link in panel.get("links") or []:
            url = link.get("url", "")
            if url.startswith(RUNBOOK_URL + "#"):
                link["url"] = runbook_base + url[len(RUNBOOK_URL):]


def dashboards(config: Config | None = None,
               runbook_base: str = RUNBOOK_URL) -> list[dict[str, Any]]:
    """Every dashboard as Grafana JSON model data, in a fixed order."""
    result = []
    for build in BUILDERS:
        data = board.to_dict(build(config))
        if runbook_base != RUNBOOK_URL:
            _relink(data, runbook_base)
        result.append(data)
    return result


def importable(data: dict[str, Any]) -> dict[str, Any]:
    """The dashboard with ``__inputs`` and ``__requires``, as Grafana's own "Export for sharing
    externally" writes them, so the JSON also imports through Grafana's UI (Dashboards >
    New > Import), which asks for the Prometheus data source and checks the version."""
    panel_types = sorted({p["type"] for p in data.get("panels", []) if p.get("type") != "row"})
    requires = [{"type": "grafana", "id": "grafana", "name": "Grafana",
                 "version": GRAFANA_VERSION},
                {"type": "datasource", "id": "prometheus", "name": "Prometheus",
                 "version": "1.0.0"},
                *({"type": "panel", "id": t, "name": t, "version": ""} for t in panel_types)]
    inputs = [{"name": DATASOURCE_INPUT, "label": "Prometheus",
               "description": "The Prometheus that scrapes the CareKPI exporter",
               "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]
    return {"__inputs": inputs, "__requires": requires, **data}


def file_name(data: dict[str, Any]) -> str:
    return f"{data['uid']}.json"


def build_files(config: Config | None = None, runbook_base: str = RUNBOOK_URL) -> dict[str, str]:
    """``{file name: deterministic JSON text}`` for every dashboard."""
    return {file_name(d): board.encode(importable(d)) for d in dashboards(config, runbook_base)}


def write(config: Config | None, out_dir: str | Path,
          runbook_base: str = RUNBOOK_URL) -> list[Path]:
    """Write the dashboards into ``out_dir`` (created if needed); returns the paths written."""
    return write_texts(build_files(config, runbook_base), out_dir, "dashboards")
