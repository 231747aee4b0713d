"""Compose merged plans into one aggregate SELECT and decode its rows into snapshot cells.

Windows are nested (1h inside 1d inside 7d ...), so each row is tagged with the innermost
window that holds it (its *slot*) and grouped by labels and slot; a window's numbers are the
running sum over slots, added up in Python. Each measure is thus aggregated once, not once per
window.

Per-row values (a wait, a business-time delay) become a histogram bucket index, one more
grouping key (``width_bucket`` on PostgreSQL, a CASE elsewhere), whose group counts are added
up in Python. On PostgreSQL and SQLite the values are computed once, in a sub-query that the
planners cannot inline (it carries a LIMIT). MariaDB/MySQL would materialise such a sub-query
into a temporary table, so there they are inlined, except when costly per row (business-time
arithmetic).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.expression import ColumnElement, Select, Subquery

from collectors.plan import Plan
from collectors.sqlfuncs import (
    DaysBetween,
    SecondsBetween,
    bucket_index,
    count_if,
    number,
    sum_if,
)
from kpis.db.entity import MappedSql
from kpis.names import OTHER
from kpis.snapshot import Cell, Histogram, Spread

_NO_LIMIT = 2**62
_PIPELINED_SUBQUERIES = ("postgresql", "sqlite")


@dataclass(frozen=True)
class _Column:
    plan: int
    measure: int
    part: str  # "n" (count), "sum", "min", "max" or "le<i>"; bucket counts "b<i>" decoded


Parts = dict[tuple[int, int, str], Any]  # (plan, measure, part) -> value (None: no min/max)
ROWS = (-1, -1, "rows")  # the rows of a slot, counted or not (a label set exists with any)


def _row_values(plans: list[Plan], slot: ColumnElement[Any] | None
                ) -> dict[str, ColumnElement[Any]]:
    """Per-row expressions: labels, slot, and each measure's condition and value."""
    first = plans[0]
    values: dict[str, ColumnElement[Any]] = {
        f"d{i}": expr for i, (_, expr) in enumerate(first.dims)}
    values["slot"] = slot if slot is not None else sa.case(
        *((in_window, sa.literal_column(str(i), sa.Integer())) for
          i, (_, in_window) in enumerate(first.windows)), else_=sa.null())
    for p, plan in enumerate(plans):
        for m, measure in enumerate(plan.measures):
            values[f"f{p}_{m}"] = measure.when
            if measure.value is not None:
                values[f"v{p}_{m}"] = measure.value
    return values


def _fence(first: Plan, values: dict[str, ColumnElement[Any]], dialect: str
           ) -> tuple[Subquery, dict[str, ColumnElement[Any]]]:
    """The per-row expressions over fenced sub-queries, each costly part computed once per
    row. On PostgreSQL and SQLite: the time differences and code tests in ``r`` (with the raw
    columns the rest reads), each once however many measures build it (:func:`_same`), the
    values over them in ``m``, the conditions over the values in ``n``. A
    duration is read by its four measures and, through the CASE that tolerates clock skew,
    three times in each: inlined, its time difference would be computed a dozen times per
    row. MariaDB would materialise each level, so there, and for plans reading a sub-query
    or the mapping's SQL text (see :func:`_opaque`), every expression is computed in ``r``."""
    measured = {name: expr for name, expr in values.items() if name[0] in "fv"}
    if dialect not in _PIPELINED_SUBQUERIES or _any_opaque(measured.values()):
        inner = _rows_query(first, values)
        return inner, {name: inner.c[name] for name in values}
    below = {name: expr for name, expr in values.items() if name[0] not in "fv"}
    passed: dict[Any, str] = {}  # time difference, code test or raw column (_same) -> name in r
    named = {_same(expr): name for name, expr in values.items() if name[0] == "v"}
    shapes = {_shape(expr) for name, expr in values.items() if name[0] == "v"}

    def atom(element: Any) -> Any:
        if isinstance(element, (SecondsBetween, DaysBetween)) or _membership(element) or (
                isinstance(element, sa.sql.expression.ColumnClause)
                and element.table is not None):
            same = _same(element)
            name = passed.get(same)
            if name is None:
                name = passed[same] = f"c{len(passed)}"
                below[name] = element
            return _Later(name)
        return None

    def value_or_atom(element: Any) -> Any:
        name = named.get(_same(element)) if _shape(element) in shapes else None
        return _Later(name) if name is not None else atom(element)

    swapped = {name: visitors.replacement_traverse(  # type: ignore[call-overload]
        expr, {}, atom if name[0] == "v" else value_or_atom) for name, expr in measured.items()}
    r = _rows_query(first, below)
    m = _level(r, {**{name: r.c[name] for name in below}, **{
        name: _resolve(expr, r) for name, expr in swapped.items() if name[0] == "v"}}, "m")
    # Fenced again: inlined, each condition would read the values' expressions once more.
    conditions = {name: _resolve(expr, m) for name, expr in swapped.items() if name[0] == "f"}
    # Each value where its measure counts it, else NULL (``w``): a histogram's counts per
    # bound then test one column, not its condition three times (appointment unit at 10M:
    # 1.1 s -> 0.9 s); conditions no aggregate reads are left out by the planner.
    counted = {f"w{name[1:]}": sa.case((sa.and_(conditions[f"f{name[1:]}"],
                                                m.c[name] >= number(0)), m.c[name]))
               for name in values if name[0] == "v"}
    n = _level(m, {**{name: m.c[name] for name in values if name[0] != "f"}, **conditions,
                   **counted}, "n")
    return n, {name: n.c[name] for name in [*values, *counted]}


def _membership(element: Any) -> bool:
    """``x IN (codes)`` or ``NOT IN``: computed once per row in ``r``. A unit's KPIs test the
    same status sets again and again (which statuses a rate counts, which are unknown), each
    test a string comparison per code: at 10M, a third of the appointment unit's time went to
    them (its 30-day refresh 1.47 s -> 1.06 s with each distinct set tested once)."""
    return (isinstance(element, sa.sql.expression.BinaryExpression)
            and element.operator in (operators.in_op, operators.not_in_op))


def _shape(element: Any) -> tuple[type, Any]:
    """What :func:`_same` keys must share, cheap to tell: a condition's many comparisons
    and conjunctions are not looked up as values (a multiplication, a clamp)."""
    return type(element), getattr(element, "operator", None)


def _same(element: Any) -> Any:
    """A key equal for the same SQL however often it was built: the KPIs of a unit build
    their time differences and values each on its own (call answer wait, abandonment and
    service level each read answered - entered): computed once per row instead of three
    times, the calls unit at 1M took 1.0 s -> 0.8 s in the backfill's reads. (SQLAlchemy's
    cache key, with the bound values it leaves out; the object itself where either cannot
    serve as a key.)"""
    key = element._generate_cache_key()
    if key is None:
        return id(element)
    same = key.key, tuple(bind.effective_value for bind in key.bindparams)
    try:
        hash(same)
    except TypeError:  # a bound list (an IN of plain values)
        return id(element)
    return same


def _rows_query(first: Plan, values: dict[str, ColumnElement[Any]]) -> Subquery:
    """The entity's rows in range with ``values`` computed, behind a LIMIT the planners
    cannot inline."""
    return (sa.select(*(expr.label(name) for name, expr in values.items()))
            .select_from(first.entity.from_).where(first.where).limit(_NO_LIMIT)
            .subquery("r"))


def _level(below: Subquery, columns: dict[str, ColumnElement[Any]], name: str) -> Subquery:
    return (sa.select(*(expr.label(n) for n, expr in columns.items())).select_from(below)
            .limit(_NO_LIMIT).subquery(name))


def _resolve(expr: ColumnElement[Any], below: Subquery) -> ColumnElement[Any]:
    return visitors.replacement_traverse(  # type: ignore[call-overload, no-any-return]
        expr, {}, lambda e: below.c[e.name] if isinstance(e, _Later) else None)


def _any_opaque(expressions: Iterable[ColumnElement[Any]]) -> bool:
    """Whether any node of the expressions is :func:`_opaque`, each shared node visited once:
    the measures share their sub-expressions (a deadline's business clock is read by every
    measure), and walking each expression's tree on its own visited 86,000 nodes for the
    first-response unit, 0.27 s of a refresh's client time."""
    seen: set[int] = set()
    stack: list[Any] = list(expressions)
    while stack:
        element = stack.pop()
        if id(element) in seen:
            continue
        seen.add(id(element))
        if _opaque(element):
            return True
        stack.extend(element.get_children())
    return False


def _opaque(element: Any) -> bool:
    """A sub-query, or SQL text from the mapping (an expression field, an exclusion rule),
    whose column references cannot be passed through the fence."""
    return isinstance(element, (sa.sql.expression.Exists, sa.sql.expression.ScalarSelect,
                                sa.sql.expression.TextClause, MappedSql))


class _Later(sa.sql.expression.ColumnClause[Any]):
    """A placeholder for a column of the fenced sub-query, replaced once it exists."""

    inherit_cache = True


def _fenced(plans: list[Plan], dialect: str) -> bool:
    measures = [m for plan in plans for m in plan.measures]
    if any(m.heavy for m in measures):
        return True
    return dialect in _PIPELINED_SUBQUERIES and any(m.value is not None for m in measures)


class Layout(list[_Column]):
    """The aggregate columns after the grouping keys and the row count; ``grouped``: the
    histogram read by its bucket key (the others are counted per bound)."""

    def __init__(self) -> None:
        super().__init__()
        self.grouped: list[tuple[int, int]] = []


def compose(plans: list[Plan], dialect: str = "postgresql",
            slot: ColumnElement[Any] | None = None, fold: Mapping[int, int] | None = None,
            every_bucket: bool = False) -> tuple[Select[Any], Layout]:
    """One SELECT for plans sharing entity, row predicate, windows and labels.

    Grouped by labels, slot and, for a unit with one histogram, its bucket index (NULL for a
    row the histogram does not count): the histogram costs one grouping key and one sum, not a
    count per bound. Two or more histograms are counted per bound: their bucket keys would
    multiply each other's groups (measured at 1M appointments, three histograms: a sort
    spilling to disk, or with PostgreSQL grouping sets and a larger work_mem no faster than
    the counts per bound), except ``every_bucket``: keys so fine that a group holds about one
    row (the backfill's replay) are not multiplied by bucket keys, and the counts per bound
    would only widen each group. The slot is the innermost window holding the row, or ``slot``
    (the backfill's time slots). ``fold`` (label index -> n) keeps the n values of a label with the
    most records and sums the rest as ``other`` in the database (see :func:`_folded`).
    """
    first = plans[0]
    values = _row_values(plans, slot)
    fenced = _fenced(plans, dialect)
    inner, ref = _fence(first, values, dialect) if fenced else (None, values)
    layout = Layout()
    histograms = _histograms(plans)
    if len(histograms) == 1 or every_bucket:
        layout.grouped = histograms
    base = [ref[f"d{i}"].label(f"d{i}") for i in range(len(first.dims))]
    base.append(ref["slot"].label("slot"))
    buckets: list[ColumnElement[Any]] = []
    aggregates: list[ColumnElement[Any]] = [sa.func.count().label("rows")]
    for p, plan in enumerate(plans):
        for m, measure in enumerate(plan.measures):
            when = ref[f"f{p}_{m}"]
            if measure.value is None:
                layout.append(_Column(p, m, "n"))
                aggregates.append(count_if(when))
                continue
            fenced_value = ref.get(f"w{p}_{m}")  # NULL where not counted (see _fence)
            counted: ColumnElement[bool]
            if fenced_value is not None:
                value, counted = fenced_value, fenced_value.is_not(None)
            else:
                value = ref[f"v{p}_{m}"]
                counted = sa.and_(when, value >= number(0))
            if (p, m) in layout.grouped:
                buckets.append(sa.case((counted, bucket_index(value, measure.buckets)),
                                       else_=sa.null()))
                layout.append(_Column(p, m, "sum"))
                aggregates.append(sum_if(counted, value))
            elif measure.buckets:
                layout += [_Column(p, m, "n"), _Column(p, m, "sum")]
                aggregates += [count_if(counted), sum_if(counted, value)]
                for b, bound in enumerate(measure.buckets):
                    layout.append(_Column(p, m, f"le{b}"))
                    at_most = value <= number(bound)  # never true for NULL
                    aggregates.append(count_if(at_most if fenced_value is not None else
                                               sa.and_(counted, at_most)))
            else:  # a value measured only for its spread
                layout.append(_Column(p, m, "n"))
                aggregates.append(count_if(counted))
            # The extremes tell "every wait is exactly 0 s" from a distribution.
            layout += [_Column(p, m, "min"), _Column(p, m, "max")]
            aggregates += [sa.func.min(sa.case((counted, value), else_=sa.null())),
                           sa.func.max(sa.case((counted, value), else_=sa.null()))]
    keys = [*base, *(b.label(f"b{i}") for i, b in enumerate(buckets))]
    query = sa.select(*keys, *(a.label(f"a{i}") for i, a in enumerate(aggregates)))
    query = (query.select_from(inner) if inner is not None else
             query.select_from(first.entity.from_).where(first.where))
    query = query.group_by(*(sa.literal_column(str(i + 1)) for i in range(len(keys))))
    if fold:
        query = _folded(query, len(first.dims), len(keys), layout, fold)
    return query, layout


def _folded(grouped: Select[Any], ndims: int, nkeys: int, layout: Layout,
            fold: Mapping[int, int]) -> Select[Any]:
    """The grouped query with each label of ``fold`` cut to its n values with the most records
    (ties by value) and the rest summed as ``other``, in the database, so a label with a
    million distinct values costs the exporter n of them. Label by label: the kept groups as
    they are, groups without the label as they are, the others summed per remaining key (few
    groups: a hash). After the aggregates, one column per folded label counts its distinct
    values (``w<i>``)."""
    names = list(grouped.selected_columns.keys())
    keys, aggregates = names[:nkeys], names[nkeys:]
    extreme = {f"a{n + 1}": c.part for n, c in enumerate(layout) if c.part in EXTREMES}
    current = grouped.cte("g")
    counts: list[ColumnElement[Any]] = []
    for i in sorted(fold):
        g, label = current, f"d{i}"
        column = g.c[label]
        top = (sa.select(column.label("v"), sa.func.count().over().label("n"))
               .where(column.is_not(None)).group_by(column)
               .order_by(sa.func.sum(g.c.a0).desc(), column).limit(fold[i]).cte(f"top{i}"))
        as_text = [sa.cast(g.c[n], sa.String()).label(n) if n == label else g.c[n]
                   for n in names]
        kept = sa.select(*as_text).select_from(g.join(top, column == top.c.v))
        unknown = sa.select(*as_text).where(column.is_(None))
        summed = [(sa.func.min if extreme.get(n) == "min" else sa.func.max
                   if extreme.get(n) == "max" else sa.func.sum)(g.c[n]).label(n)
                  for n in aggregates]
        rest = (sa.select(*(sa.literal(OTHER, sa.String()).label(n) if n == label else g.c[n]
                            for n in keys), *summed)
                .select_from(g.outerjoin(top, column == top.c.v))
                .where(top.c.v.is_(None), column.is_not(None))
                .group_by(*(g.c[n] for n in keys if n != label)))
        current = sa.union_all(kept, unknown, rest).cte(f"g{i}")
        counts.append(sa.select(sa.func.max(top.c.n)).scalar_subquery().label(f"w{i}"))
    return sa.select(*current.c, *counts)


def folded_away(plans: list[Plan], layout: Layout, rows: list[Any], fold: Mapping[int, int]
                ) -> dict[int, int]:
    """Label index -> distinct values a folded query summed into ``other``."""
    if not fold or not rows:
        return {}
    at = len(plans[0].dims) + 1 + len(layout.grouped) + 1 + len(layout)
    return {i: max(0, int(distinct) - fold[i])
            for i, distinct in zip(sorted(fold), rows[0][at:], strict=True)}


def _histograms(plans: list[Plan]) -> list[tuple[int, int]]:
    """(plan, measure) of each histogram."""
    return [(p, m) for p, plan in enumerate(plans) for m, measure in enumerate(plan.measures)
            if measure.value is not None and measure.buckets]


def slot_parts(plans: list[Plan], layout: Layout, rows: Iterable[Any]
               ) -> dict[tuple[str, ...], dict[int, Parts]]:
    """Label values -> slot -> the slot's parts: the grouped histogram's bucket counts
    accumulated from its groups ("b<i>"), the others' counts per bound ("le<i>")."""
    ndims = len(plans[0].dims)
    grouped = layout.grouped
    nkeys = ndims + 1 + len(grouped)
    by_slot: dict[tuple[str, ...], dict[int, Parts]] = defaultdict(dict)
    for row in rows:
        slot = row[ndims]
        if slot is None:
            continue
        dims = tuple(_label_value(v) for v in row[:ndims])
        parts = by_slot[dims].setdefault(int(slot), {})
        count = float(row[nkeys])
        values = row[nkeys + 1:nkeys + 1 + len(layout)]
        parts[ROWS] = parts.get(ROWS, 0.0) + count
        for (p, m), bucket in zip(grouped, row[ndims + 1:nkeys], strict=True):
            if bucket is not None:
                key = (p, m, f"b{int(bucket)}")
                parts[key] = parts.get(key, 0.0) + count
        for c, v in zip(layout, values, strict=True):
            key = (c.plan, c.measure, c.part)
            parts[key] = combine(c.part, parts.get(key), v)
    return by_slot


def decode(plans: list[Plan], layout: Layout, rows: Iterable[Any]) -> list[list[Cell]]:
    """Cells per plan, one per (labels, window): running sums over the slots."""
    first = plans[0]
    out: list[list[Cell]] = [[] for _ in plans]
    for dims, slots in slot_parts(plans, layout, rows).items():
        labels = tuple(zip((name for name, _ in first.dims), dims, strict=True))
        running: Parts = {}
        for w, (window, _) in enumerate(first.windows):
            for key, value in slots.get(w, {}).items():
                running[key] = combine(key[2], running.get(key), value)
            cell_labels = labels + ((("window", window),) if window else ())
            out_cells = cells(plans, cell_labels, running)
            for p in range(len(plans)):
                out[p].append(out_cells[p])
    return out


EXTREMES = ("min", "max")


def combine(part: str, before: Any, value: Any) -> Any:
    """Sums over groups and slots; extremes for min and max (None: no value yet)."""
    if part not in EXTREMES:
        return (before or 0.0) + float(value or 0)
    if before is None or value is None:
        return value if before is None else before
    return min(before, value) if part == "min" else max(before, value)


def cells(plans: list[Plan], labels: tuple[tuple[str, str], ...], parts: Parts) -> list[Cell]:
    """One cell per plan from the summed parts of one label set and window."""
    return [_cell(p, plan, labels, parts) for p, plan in enumerate(plans)]


def _cell(p: int, plan: Plan, labels: tuple[tuple[str, str], ...], parts: Parts) -> Cell:
    counts: dict[str, float] = {}
    histogram = spread = None
    for m, measure in enumerate(plan.measures):
        if measure.value is None:
            counts[measure.name] = parts.get((p, m, "n"), 0.0)
            continue
        low, high = parts.get((p, m, "min")), parts.get((p, m, "max"))
        low, high = (None if x is None else float(x) for x in (low, high))
        if not measure.buckets:
            spread = spread or Spread(int(parts.get((p, m, "n"), 0)), low, high)
            continue
        bounds = range(len(measure.buckets))
        if (p, m, "n") in parts:  # counted per bound
            cumulative = tuple(int(parts.get((p, m, f"le{b}"), 0)) for b in bounds)
            count = int(parts[(p, m, "n")])
        else:
            per_bucket = [int(parts.get((p, m, f"b{b}"), 0)) for b in range(len(bounds) + 1)]
            cumulative, count = tuple(accumulate(per_bucket[:-1])), sum(per_bucket)
        histogram = Histogram(measure.buckets, cumulative, count,
                              round(parts.get((p, m, "sum"), 0.0), 3))
        spread = spread or Spread(histogram.count, low, high)
    return Cell(labels, counts, histogram, spread)


def _label_value(raw: Any) -> str:
    if raw is None:
        return "unknown"
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return str(raw)
