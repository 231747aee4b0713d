"""``carekpi collect --format json``: per KPI, label set and window, the counts, the value,
the target and a status. Deterministic for a pinned ``--as-of``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kpis import catalog, effective, names, plausibility
from kpis.config import Config
from kpis.snapshot import EXCLUDED, Cell, KpiResult, value, volume


def _cell(result: KpiResult, cell: Cell, config: Config) -> dict[str, Any]:
    kpi = result.kpi
    row: dict[str, Any] = {"source": result.source, **dict(cell.labels)}
    excluded = {k.removeprefix(EXCLUDED): _number(v) for k, v in sorted(cell.counts.items())
                if k.startswith(EXCLUDED)}
    row.update({k: _number(v) for k, v in sorted(cell.counts.items())
                if not k.startswith(EXCLUDED)})
    if excluded:
        row["excluded"] = excluded
    if cell.histogram is not None:
        h = cell.histogram
        row.update(count=h.count, sum=_number(h.sum), p50=_number(h.quantile(0.5)),
                   p90=_number(h.quantile(0.9)), mean=_number(h.mean))
    if kpi.kind == "freshness":
        row["age_seconds"] = _number(result.evaluated_at.timestamp() - cell.counts["timestamp"])
    current = value(kpi, cell) if kpi.kind != "freshness" else row["age_seconds"]
    row["value"] = _number(current)
    goal = effective.target(kpi, config, cell.label(names.CLINIC))
    row["target"] = None if goal is None else goal.value
    if kpi.kind in ("proportion", "score", "duration"):
        row["volume"] = _number(volume(kpi, cell))
        # Alerts ignore cells under the minimum volume; say so rather than hide the number.
        row["low_volume"] = volume(kpi, cell) < effective.min_volume(kpi, config)
    if current is None:
        row["status"] = "no_data"
    elif goal is None:
        row["status"] = "ok"
    else:
        row["status"] = "ok" if goal.met(current) else "breach"
    found = plausibility.doubts(kpi, cell)
    if found:  # never a plain green: the number may be wrong
        row["status"] = "suspect"
        row["suspect"] = [{"reason": d.reason, "detail": d.detail} for d in found]
    return row


def _number(x: float | None) -> float | int | None:
    if x is None:
        return None
    return int(x) if float(x).is_integer() else round(float(x), 6)


def as_data(results: list[KpiResult], config: Config, as_of: datetime) -> dict[str, Any]:
    order = {k.key: i for i, k in enumerate(catalog.load())}
    kpis = []
    for result in sorted(results, key=lambda r: (order[r.kpi.key], r.source)):
        kpi = result.kpi
        entry: dict[str, Any] = {"id": kpi.id, "kpi": kpi.key, "name": kpi.name,
                                 "kind": kpi.kind, "source": result.source}
        if result.unavailable is not None:
            entry.update(status="unavailable", reason=result.unavailable)
        elif result.error is not None:
            entry.update(status="error", reason=result.error)
        else:
            rows = [_cell(result, c, config) for c in result.cells]
            rows.sort(key=lambda r: tuple(str(r.get(k, "")) for k in
                                          ("clinic", "entity", "window", "channel", "queue",
                                           "reminder", "lead_time")))
            breaches = sum(1 for r in rows if r["status"] == "breach" and not r.get("low_volume"))
            reasons = sorted({d["reason"] for r in rows for d in r.get("suspect", ())})
            status = "suspect" if reasons else "ok" if rows else "no_data"
            entry.update(status=status, breaches=breaches, results=rows)
            if reasons:
                entry["suspect"] = reasons
            if result.variant is not None:
                entry["variant"] = result.variant
        kpis.append(entry)
    return {"as_of": as_of.isoformat().replace("+00:00", "Z"), "kpis": kpis}


def as_json(results: list[KpiResult], config: Config, as_of: datetime) -> str:
    return json.dumps(as_data(results, config, as_of), indent=2, sort_keys=False)
