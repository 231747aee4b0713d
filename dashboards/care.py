"""Leadership's dashboards: the care quality overview and the clinic drill-down."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards import board, promql, targets
from dashboards.kpi_panels import enabled, quantiles, tile, trend
from dashboards.panels import Query, table_panel
from kpis import names
from kpis.catalog import SECTIONS, Kpi
from kpis.config import Config

OVERVIEW_UID = "carekpi-overview"
CLINIC_UID = "carekpi-clinic"
TILES_PER_ROW = 6


def _by_section(kpis: list[Kpi]) -> dict[str, list[Kpi]]:
    grouped: dict[str, list[Kpi]] = {}
    for kpi in kpis:
        grouped.setdefault(kpi.section, []).append(kpi)
    return grouped


def _ranking(kpis: list[Kpi], config: Config | None) -> Query:
    terms = []
    for kpi in kpis:
        goal = targets.goal(kpi, config)
        if goal is None or kpi.kind == "freshness":
            continue
        terms.append(promql.breach(kpi, goal.min_volume))
    return Query(promql.breach_count(terms), instant=True, fmt="table")


def overview(config: Config | None) -> Dashboard:
    """One scorecard tile per KPI with a target, then clinics ranked by KPIs in breach."""
    kpis = enabled(config)
    dash = board.new(
        OVERVIEW_UID, "CareKPI / Care quality overview",
        "Every KPI with a target, over the selected clinics and window, against its target; "
        "clinics ranked by how many KPIs miss their target.", config)
    for section, members in _by_section(kpis).items():
        scored = [k for k in members if k.target is not None]
        if not scored:
            continue
        dash = dash.with_row(board.row(SECTIONS[section]))
        for kpi in scored:
            dash = dash.with_panel(tile(kpi, config, width=24 // TILES_PER_ROW))
    dash = dash.with_row(board.row("Clinics"))
    description = (
        "Clinics ranked by how many KPIs miss the clinic's own target (per-clinic override or "
        "global) in the selected window. A KPI counts only when the clinic has at least the KPI's "
        "minimum volume. Freshness is per data source, not per clinic, and is not counted. "
        "Target: no KPI in breach."
    )
    dash = dash.with_panel(table_panel(
        "Clinics ranked by KPIs in breach", description, "short", [_ranking(kpis, config)],
        _breach_steps(), sort_by="Value", width=24, height=10))
    return dash.with_panel(table_panel(
        "Suspect results", "KPIs whose value the data makes doubtful, per clinic and reason: "
        "most_excluded (exclusions removed most of the records it rests on), "
        "identical_durations (every duration is the same value, e.g. all waits 0 s). A tile of "
        "such a KPI may look green and be wrong: check the mapping (README \"Mapping a real "
        "schema\"). Target: none.", "short",
        [Query(f"count by (kpi, reason, clinic) ({names.KPI_SUSPECT})", instant=True,
               fmt="table")], _breach_steps(), alerts=(names.ALERT_SUSPECT,), width=24,
        height=8))


def _breach_steps() -> targets.Steps:
    """Any KPI in breach marks the clinic (the target is zero breaches)."""
    return [(None, targets.MET), (1.0, targets.MISSED)]


def clinic(config: Config | None) -> Dashboard:
    """Every KPI for one clinic: current value beside the clinic's target, and its trend."""
    kpis = [k for k in enabled(config) if k.kind != "freshness"]
    dash = board.new(
        CLINIC_UID, "CareKPI / Clinic drill-down",
        "Every KPI for the selected clinic: the current value beside the clinic's effective "
        "target, and the trend. Freshness is per data source: see the Data quality dashboard.",
        config, clinic="single")
    for section, members in _by_section(kpis).items():
        dash = dash.with_row(board.row(SECTIONS[section]))
        for kpi in members:
            dash = dash.with_panel(tile(kpi, config, width=6, by_clinic=True))
            if kpi.kind == "duration" and kpi.target is not None and kpi.target.stat != "mean":
                dash = dash.with_panel(quantiles(kpi, config, width=18))
            else:
                by = tuple(d for d in kpi.dimensions if d in ("reminder", "lead_time"))
                dash = dash.with_panel(trend(kpi, config, by=by, width=18, clinic_target=True))
    return dash
