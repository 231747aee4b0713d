"""The landing page (``/``): each KPI's latest value per clinic against its target.

Server-rendered HTML from the exporter's in-memory snapshot (no query, no JavaScript), so a
coordinator without Grafana can tell "is it us or the dashboard?". Colours as on the
dashboards: green where the target is met, red where it is missed, blue for a KPI without a
target; grey where the value cannot be judged (the refresh fails, the KPI is unavailable, too
few records); amber where the plausibility guard doubts it (kpis/plausibility.py): a doubtful
number is never shown green. Only aggregates and clinic labels appear, never a record.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from datetime import datetime

from collectors.store import Store
from kpis import catalog, durations, effective, plausibility, snapshot
from kpis.catalog import Kpi
from kpis.snapshot import Cell, KpiResult

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{margin:0 0 .3rem}h2{font-size:1.05rem;margin:1.4rem 0 .3rem}
table{border-collapse:collapse;min-width:24rem}td,th{padding:.25rem .7rem;text-align:left}
th{border-bottom:1px solid #999}td.v{font-weight:600;color:#fff;text-align:right}
.met{background:#37872d}.missed{background:#c4162a}.neutral{background:#1f60c4}
.unknown{background:#8e8e8e}.suspect{background:#e0b400;color:#222}
p.note{margin:.2rem 0;color:#555}nav a{margin-right:1rem}
"""


def page(store: Store, links: Iterable[str]) -> str:
    """The whole page, for the store's latest results."""
    by_kpi: dict[str, list[KpiResult]] = {}
    for result in store.results():
        by_kpi.setdefault(result.kpi.key, []).append(result)
    sections = [_section(kpi, by_kpi[kpi.key], store) for kpi in catalog.load()
                if kpi.key in by_kpi and effective.enabled(kpi, store.config)]
    nav = "".join(f'<a href="{html.escape(p)}">{html.escape(p)}</a>' for p in links)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="60"><title>CareKPI exporter</title>'
            f"<style>{_STYLE}</style></head><body><h1>CareKPI exporter</h1>"
            f"<nav>{nav}</nav><p class=\"note\">Latest values at {stamp}; green: target met, "
            "red: missed, blue: no target, grey: cannot be judged, amber: doubtful (hover for why)."
            "</p>"
            + ("".join(sections) or "<p>No KPI refreshed yet.</p>") + "</body></html>\n")


def _section(kpi: Kpi, results: list[KpiResult], store: Store) -> str:
    config = store.config
    goal = effective.target(kpi, config)
    window = _window(kpi, results, effective.nearest_window(kpi.alert_window, config))
    title = f"{kpi.id} {kpi.name}"
    aim = f"target {goal.op} {_format(kpi, goal.value)}" if goal else "no target"
    head = (f"<h2>{html.escape(title)}</h2><p class=\"note\">{html.escape(aim)}; "
            f"window {html.escape(window if kpi.windowed else 'now')}</p>")
    unavailable = [r.unavailable for r in results if r.unavailable]
    if unavailable:
        return head + f'<p class="note unknown-text">unavailable: {html.escape(unavailable[0])}</p>'
    failing = [r.error for r in results if r.error]
    rows = []
    for group, cell, evaluated in _groups(kpi, results, window):
        value = snapshot.value(kpi, cell)
        if kpi.kind == "freshness" and value is not None:
            value = evaluated.timestamp() - value  # age of the newest record
        clinic_goal = effective.target(kpi, config, group) if goal else None
        state = _state(kpi, value, snapshot.volume(kpi, cell), clinic_goal, bool(failing),
                       effective.min_volume(kpi, config))
        shown = "no data" if value is None else _format(kpi, value)
        doubts = plausibility.doubts(kpi, cell)
        why = ""
        if doubts and state != "unknown":
            state, shown = "suspect", f"{shown} ?"
            why = f' title="{html.escape("; ".join(d.detail for d in doubts))}"'
        rows.append(f"<tr><td>{html.escape(group)}</td>"
                    f'<td class="v {state}"{why}>{html.escape(shown)}</td></tr>')
    note = f'<p class="note">refresh failing: {html.escape(failing[0])}</p>' if failing else ""
    label = "entity" if kpi.kind == "freshness" else "clinic"
    table = (f"<table><tr><th>{label}</th><th>value</th></tr>{''.join(rows)}</table>"
             if rows else '<p class="note">no data in this window</p>')
    return head + note + table


def _window(kpi: Kpi, results: list[KpiResult], wanted: str) -> str:
    """The KPI's alert window, else the shortest window that has values (a window longer
    than the data's span, or not refreshed yet, has none)."""
    present = {c.label("window") for r in results for c in r.cells} - {None}
    if wanted in present or not present:
        return wanted
    return min(present, key=lambda w: durations.parse(str(w)).seconds) or wanted


def _groups(kpi: Kpi, results: list[KpiResult], window: str
            ) -> list[tuple[str, Cell, datetime]]:
    """One cell per clinic (per entity for freshness) in ``window``, other dimensions added
    up."""
    merged: dict[str, tuple[Cell, datetime]] = {}
    for result in results:
        for cell in result.cells:
            if kpi.windowed and cell.label("window") != window:
                continue
            group = cell.label("clinic") or cell.label("entity") or "all"
            kept = merged.get(group)
            merged[group] = (cell if kept is None else kept[0].plus(cell), result.evaluated_at)
    return [(group, cell, at) for group, (cell, at) in sorted(merged.items())]


def _state(kpi: Kpi, value: float | None, volume: float, goal: catalog.Target | None,
           failing: bool, min_volume: int) -> str:
    if value is None or failing:
        return "unknown"
    if goal is None:
        return "neutral"
    if kpi.kind in ("proportion", "score", "duration") and volume < min_volume:
        return "unknown"
    return "met" if goal.met(value) else "missed"


def _format(kpi: Kpi, value: float) -> str:
    if kpi.unit == "percentunit":
        return f"{value * 100:.1f} %"
    if kpi.unit == "s":
        for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(value) >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:.0f} s"
    if kpi.unit == "none" and kpi.kind == "score":
        return f"{value:+.0f}"
    return f"{value:g}"
