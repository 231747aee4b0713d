"""Compose merged plans into one aggregate SELECT and decode its rows into snapshot cells."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement, Select

from collectors.plan import Plan
from collectors.sqlfuncs import count_if, number, sum_if
from kpis.snapshot import Cell, Histogram


@dataclass(frozen=True)
class _Column:
    plan: int
    window: int
    measure: int
    part: str  # "n" (count), "sum", or "le<i>"


def compose(plans: list[Plan]) -> tuple[Select[Any], list[_Column]]:
    """One SELECT for plans sharing entity, row predicate and labels (plans[0] gives them)."""
    first = plans[0]
    selected: list[ColumnElement[Any]] = [expr.label(f"d{i}") for i, (_, expr) in
                                          enumerate(first.dims)]
    layout: list[_Column] = []
    for p, plan in enumerate(plans):
        for w, (_, in_window) in enumerate(plan.windows):
            for m, measure in enumerate(plan.measures):
                when = sa.and_(in_window, measure.when)
                if measure.value is None:
                    layout.append(_Column(p, w, m, "n"))
                    selected.append(count_if(when))
                    continue
                counted = sa.and_(when, measure.value >= number(0))
                layout.append(_Column(p, w, m, "n"))
                selected.append(count_if(counted))
                layout.append(_Column(p, w, m, "sum"))
                selected.append(sum_if(counted, measure.value))
                for b, bound in enumerate(measure.buckets):
                    layout.append(_Column(p, w, m, f"le{b}"))
                    selected.append(count_if(sa.and_(counted, measure.value <= number(bound))))
    query = sa.select(*selected).select_from(first.entity.from_).where(first.where)
    if first.dims:
        query = query.group_by(*(sa.literal_column(str(i + 1)) for i in range(len(first.dims))))
    return query, [*layout]


def decode(plans: list[Plan], layout: list[_Column], rows: list[Any]
           ) -> list[list[Cell]]:
    """Cells per plan, one per (labels, window); empty groups yield no cell."""
    ndims = len(plans[0].dims)
    out: list[list[Cell]] = [[] for _ in plans]
    for row in rows:
        dims = tuple((name, _label_value(row[i])) for i, (name, _) in
                     enumerate(plans[0].dims))
        values: dict[tuple[int, int], dict[tuple[int, str], float]] = defaultdict(dict)
        for column, raw in zip(layout, row[ndims:], strict=True):
            values[(column.plan, column.window)][(column.measure, column.part)] = float(raw or 0)
        for (p, w), parts in values.items():
            plan = plans[p]
            window_label = plan.windows[w][0]
            labels = dims + ((("window", window_label),) if window_label else ())
            out[p].append(_cell(plan, labels, parts))
    return out


def _cell(plan: Plan, labels: tuple[tuple[str, str], ...],
          parts: dict[tuple[int, str], float]) -> Cell:
    counts: dict[str, float] = {}
    histogram = None
    for m, measure in enumerate(plan.measures):
        if measure.value is None:
            counts[measure.name] = parts[(m, "n")]
            continue
        cumulative = tuple(int(parts[(m, f"le{b}")]) for b in range(len(measure.buckets)))
        histogram = Histogram(measure.buckets, cumulative, int(parts[(m, "n")]),
                              round(parts[(m, "sum")], 3))
    return Cell(labels, counts, histogram)


def _label_value(raw: Any) -> str:
    if raw is None:
        return "unknown"
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return str(raw)
