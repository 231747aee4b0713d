"""Portable SQL for time arithmetic: one construct, one rendering per dialect.

Window predicates compare raw timestamp columns with bound values (so indexes are used);
these constructs appear only inside aggregates, never around an indexed column in a WHERE.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement


class SecondsBetween(FunctionElement[float]):
    """``later - earlier`` in seconds (float; NULL when either side is NULL)."""

    type = sa.Float()
    inherit_cache = True
    name = "seconds_between"


class DaysBetween(FunctionElement[int]):
    """``date(later) - date(earlier)`` in whole calendar days (a whole-valued double on
    PostgreSQL, see ``_pg_days``; an integer elsewhere)."""

    type = sa.Integer()
    inherit_cache = True
    name = "days_between"


def seconds_between(earlier: Any, later: Any) -> SecondsBetween:
    return SecondsBetween(earlier, later)


def days_between(earlier: Any, later: Any) -> DaysBetween:
    return DaysBetween(earlier, later)


def _args(element: FunctionElement[Any], compiler: Any, **kw: Any) -> tuple[str, str]:
    earlier, later = list(element.clauses)
    return compiler.process(earlier, **kw), compiler.process(later, **kw)


@compiles(SecondsBetween, "postgresql")
def _pg_seconds(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    # 'infinity' and '-infinity' are valid timestamps whose difference is an error: NULL, so
    # one such row is one record left out (counted), not a failed query. date_part, not
    # EXTRACT: since PostgreSQL 14 EXTRACT computes in numeric (appointment unit at 10M:
    # 1.45 s -> 1.21 s for its six time differences). The same double for whole seconds; with
    # microseconds, at most one unit in the last place apart (a double's own precision).
    return (f"CASE WHEN isfinite({a}) AND isfinite({b}) THEN "
            f"date_part('epoch', ({b}) - ({a})) END")


@compiles(SecondsBetween, "mysql")
@compiles(SecondsBetween, "mariadb")
def _my_seconds(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"(TIMESTAMPDIFF(MICROSECOND, {a}, {b}) / 1000000.0)"


@compiles(SecondsBetween)
def _sqlite_seconds(element: SecondsBetween, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    # julianday is exact to about 50 microseconds at today's dates: round to milliseconds.
    return f"ROUND((julianday({b}) - julianday({a})) * 86400.0, 3)"


@compiles(DaysBetween, "postgresql")
def _pg_days(element: DaysBetween, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    # A double, not the integer date subtraction gives: an integer meets the float literals of
    # :func:`number` (days * 86400.0, a bucket's bound) as numeric, and PostgreSQL then
    # multiplies, compares and sums in numeric for every row (appointment unit at 1M, the
    # backfill's 120 days: 4.1 s -> 3.5 s). Whole days are exact in a double.
    return (f"CASE WHEN isfinite({a}) AND isfinite({b}) THEN "
            f"CAST(CAST({b} AS DATE) - CAST({a} AS DATE) AS DOUBLE PRECISION) END")


@compiles(DaysBetween, "mysql")
@compiles(DaysBetween, "mariadb")
def _my_days(element: DaysBetween, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"DATEDIFF({b}, {a})"


@compiles(DaysBetween)
def _sqlite_days(element: DaysBetween, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"CAST(julianday(date({b})) - julianday(date({a})) AS INTEGER)"


def later_of(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    """max(a, b) treating a NULL ``a`` as absent (IHI: the clock starts at the later time)."""
    return sa.case((sa.and_(a.is_not(None), a > b), a), else_=b)


def number(value: float) -> ColumnElement[float]:
    """A numeric constant rendered inline (keeps GROUP BY and CASE free of typed binds)."""
    # Always a float literal: integer arithmetic overflows (days * 86400 on a 1900 date).
    return sa.literal_column(repr(float(value)), sa.Float())


def text_literal(value: str) -> ColumnElement[str]:
    """A short constant string rendered inline, safely quoted (only catalog constants)."""
    return sa.literal_column("'" + value.replace("'", "''") + "'", sa.String())


class CountIf(FunctionElement[int]):
    """Rows meeting a condition: ``count(*) FILTER (WHERE c)`` where the dialect has it."""

    type = sa.Integer()
    inherit_cache = True
    name = "count_if"


class SumIf(FunctionElement[float]):
    """The sum of a value over rows meeting a condition."""

    type = sa.Float()
    inherit_cache = True
    name = "sum_if"


@compiles(CountIf, "postgresql")
@compiles(CountIf, "sqlite")
def _filtered_count(element: CountIf, compiler: Any, **kw: Any) -> str:
    (condition,) = list(element.clauses)
    return f"count(*) FILTER (WHERE {compiler.process(condition, **kw)})"


@compiles(CountIf)
def _case_count(element: CountIf, compiler: Any, **kw: Any) -> str:
    (condition,) = list(element.clauses)
    return f"SUM(CASE WHEN {compiler.process(condition, **kw)} THEN 1 ELSE 0 END)"


@compiles(SumIf, "postgresql")
@compiles(SumIf, "sqlite")
def _filtered_sum(element: SumIf, compiler: Any, **kw: Any) -> str:
    condition, value = list(element.clauses)
    where = compiler.process(condition, **kw)
    return f"sum({compiler.process(value, **kw)}) FILTER (WHERE {where})"


@compiles(SumIf)
def _case_sum(element: SumIf, compiler: Any, **kw: Any) -> str:
    condition, value = list(element.clauses)
    return (f"SUM(CASE WHEN {compiler.process(condition, **kw)} THEN "
            f"{compiler.process(value, **kw)} END)")


def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return CountIf(condition)


def sum_if(condition: ColumnElement[bool], value: ColumnElement[Any]) -> ColumnElement[float]:
    return SumIf(condition, value)


class BucketIndex(FunctionElement[int]):
    """The index of the first upper bound ``>= value`` (``len(bounds)`` past the last one):
    a histogram's bucket, so rows group by bucket instead of one counted column per bound."""

    type = sa.Integer()
    inherit_cache = False
    name = "bucket_index"

    def __init__(self, value: ColumnElement[Any], bounds: tuple[float, ...]) -> None:
        super().__init__(value)
        self.bounds = bounds


@compiles(BucketIndex, "postgresql")
def _pg_bucket(element: BucketIndex, compiler: Any, **kw: Any) -> str:
    # width_bucket counts the thresholds <= its operand; on the negated (ascending) bounds
    # that is the number of bounds >= value, so the index is len(bounds) minus it.
    (value,) = list(element.clauses)
    negated = ", ".join(repr(-float(b)) for b in reversed(element.bounds))
    return (f"({len(element.bounds)} - width_bucket(CAST(-({compiler.process(value, **kw)}) "
            f"AS DOUBLE PRECISION), ARRAY[{negated}]::DOUBLE PRECISION[]))")


@compiles(BucketIndex)
def _case_bucket(element: BucketIndex, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    v = compiler.process(value, **kw)
    whens = " ".join(f"WHEN {v} <= {float(b)!r} THEN {i}" for i, b in enumerate(element.bounds))
    return f"CASE {whens} ELSE {len(element.bounds)} END"


def bucket_index(value: ColumnElement[Any], bounds: tuple[float, ...]) -> ColumnElement[int]:
    return BucketIndex(value, bounds)


class _Divided(FunctionElement[int]):
    """A non-negative value divided by a grid ``size``, rounded to a grid point."""

    type = sa.Integer()
    inherit_cache = False

    def __init__(self, value: ColumnElement[Any], size: float) -> None:
        super().__init__(value)
        self.size = size


class FloorDiv(_Divided):
    """``floor(value / size)``: a time slot's index."""

    inherit_cache = False
    name = "floor_div"


@compiles(FloorDiv, "postgresql")
@compiles(FloorDiv, "mysql")
@compiles(FloorDiv, "mariadb")
def _floor_div(element: FloorDiv, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return f"FLOOR(({compiler.process(value, **kw)}) / {float(element.size)!r})"


@compiles(FloorDiv)
def _sqlite_floor_div(element: FloorDiv, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)  # CAST truncates: the floor of a non-negative value
    return f"CAST(({compiler.process(value, **kw)}) / {float(element.size)!r} AS INTEGER)"


def floor_div(value: ColumnElement[Any], size: float) -> ColumnElement[int]:
    return FloorDiv(value, size)


class CeilDiv(_Divided):
    """``ceil(value / size)``: the first grid point at or after the value."""

    inherit_cache = False
    name = "ceil_div"


@compiles(CeilDiv, "postgresql")
@compiles(CeilDiv, "mysql")
@compiles(CeilDiv, "mariadb")
def _ceil_div(element: CeilDiv, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)
    return f"CEIL(({compiler.process(value, **kw)}) / {float(element.size)!r})"


@compiles(CeilDiv)
def _sqlite_ceil_div(element: CeilDiv, compiler: Any, **kw: Any) -> str:
    (value,) = list(element.clauses)  # CAST truncates; one more when a fraction is left
    q = f"(({compiler.process(value, **kw)}) / {float(element.size)!r})"
    return f"(CAST({q} AS INTEGER) + ({q} > CAST({q} AS INTEGER)))"


def ceil_div(value: ColumnElement[Any], size: float) -> ColumnElement[int]:
    return CeilDiv(value, size)
