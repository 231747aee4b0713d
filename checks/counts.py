"""The built-in suite in one pass: every built-in check's counts from ONE aggregate per entity.

Great Expectations resolves each expectation with scans of its own (about one per
expectation), 11x the cost of one hand-written aggregate on millions of rows. The built-in
checks are a closed set of expectation shapes over the entity's check query
(:mod:`checks.batches`), so each becomes conditional counts (rows checked, rows unexpected), or
a max for freshness, in a single ``SELECT ... FROM (check query)``; the verdict is GX's rule for
the same expectation (:func:`verdict`). Custom expectations still run through GX by name.

Only counts, and the newest timestamp of the freshness check (reduced to an age by the runner),
leave the database; failing keys are read only on request, and then the key column alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from checks.batches import AnySelect, blank
from checks.results import MAX_KEYS
from checks.suites import KEY, RECORD_COMPLETE, CheckSpec, required_mapped
from kpis import model
from kpis.checks_config import ChecksConfig
from kpis.config import Config
from kpis.db.entity import exact
from kpis.model import FieldType

PRESENT = "__present_"

# The expectation shapes the built-in suite uses (checks.suites.builtin), computed here.
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
REGEX = "expect_column_values_to_match_regex"
PAIR = "expect_column_pair_values_a_to_be_greater_than_b"
BETWEEN = "expect_column_values_to_be_between"
MAX = "expect_column_max_to_be_between"


@dataclass(frozen=True)
class Counts:
    """One built-in check over the rows of a run (GX's element, missing and unexpected counts)."""

    elements: int  # rows in the batch
    considered: int  # rows the check looks at (elements - missing)
    unexpected: int  # of those, rows failing the check
    maximum: Any = None  # the column's max (freshness only)

    @property
    def missing(self) -> int:
        return self.elements - self.considered


@dataclass(frozen=True)
class Fields:
    """What the blank test of each checked field needs: its logical type, whether its
    database type is numeric or temporal (never blank text), and the fields a complete
    record needs (D2)."""

    types: dict[str, FieldType]
    never_blank_text: frozenset[str] = frozenset()
    required: tuple[str, ...] = ()

    def blank(self, q: sa.Subquery, name: str) -> sa.ColumnElement[bool]:
        return blank(q.c[name], self.types[name], name in self.never_blank_text)


def fields_of(config: Config, checks: ChecksConfig, name: str,
              never_blank_text: frozenset[str] = frozenset()) -> Fields:
    return Fields({f.name: f.type for f in model.ENTITIES[name]}, never_blank_text,
                  required_mapped(checks, name, config.entities[name]))


@dataclass(frozen=True)
class _Measure:
    considered: sa.ColumnElement[bool] | None  # None: every row
    unexpected: sa.ColumnElement[bool] | None  # None: an aggregate-only check (max)
    maximum: sa.ColumnElement[Any] | None = None


def _literal(value: Any) -> Any:
    """Datetimes compare as the naive ISO text GX binds them as (a plain string literal)."""
    if isinstance(value, datetime):
        return sa.literal(value.isoformat(sep=" "), sa.String)
    return value


def _measure(spec: CheckSpec, q: sa.Subquery, fields: Fields) -> _Measure:
    """Conditions over the check query's logical columns. A comparison with a NULL is NULL,
    which no count counts: "unexpected" needs no IS NOT NULL guard of its own."""
    args = spec.kwargs
    if spec.expectation == PAIR:
        a, b = q.c[args["column_A"]], q.c[args["column_B"]]
        return _Measure(sa.and_(a.is_not(None), b.is_not(None)),
                        a < b if args.get("or_equal") else a <= b)
    name = str(args["column"])
    if spec.expectation == NOT_NULL:  # completeness of a field, or of the whole record
        if name == RECORD_COMPLETE:
            return _Measure(None, sa.or_(*[fields.blank(q, f) for f in fields.required]))
        if name.startswith(PRESENT):
            return _Measure(None, fields.blank(q, name.removeprefix(PRESENT)))
        return _Measure(None, q.c[name].is_(None))
    column = q.c[name]
    considered = column.is_not(None)
    if spec.expectation == IN_SET:
        values = list(args["value_set"])
        return _Measure(considered, exact(column, values).not_in(values))
    if spec.expectation == REGEX:
        return _Measure(considered, sa.not_(column.regexp_match(args["regex"])))
    if spec.expectation == BETWEEN:
        outside = []
        if args.get("min_value") is not None:
            outside.append(column < _literal(args["min_value"]))
        if args.get("max_value") is not None:
            outside.append(column > _literal(args["max_value"]))
        return _Measure(considered, sa.or_(*outside))
    if spec.expectation == MAX:
        if spec.newest_until is None:
            return _Measure(None, None, sa.func.max(column))
        return _Measure(None, None, sa.func.max(
            sa.case((column <= _literal(spec.newest_until), column))))
    raise ValueError(f"{spec.expectation} is not a built-in shape")  # a CareKPI bug


def supported(spec: CheckSpec) -> bool:
    return spec.suite != "custom" and spec.expectation in (NOT_NULL, IN_SET, REGEX, PAIR,
                                                           BETWEEN, MAX)


def _count(condition: sa.ColumnElement[bool], dialect: sa.Dialect) -> sa.ColumnElement[Any]:
    """Rows where ``condition`` is true: FILTER where the server has it (PostgreSQL, SQLite),
    a sum of CASE elsewhere (MariaDB, MySQL)."""
    if dialect.name in ("postgresql", "sqlite"):
        return sa.func.count().filter(condition)
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


Layout = list[tuple[int | None, int | None, int | None]]


def aggregate(check_select: AnySelect, specs: list[CheckSpec], fields: Fields,
              dialect: sa.Dialect) -> tuple[AnySelect, Layout]:
    """One SELECT of every spec's counts; identical expressions are computed once."""
    q = check_select.subquery("checked")
    columns: list[sa.ColumnElement[Any]] = [sa.func.count().label("c0")]
    seen: dict[str, int] = {}

    def slot(expr: sa.ColumnElement[Any] | None) -> int | None:
        if expr is None:
            return None
        key = str(expr.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if key not in seen:
            seen[key] = len(columns)
            columns.append(expr.label(f"c{len(columns)}"))
        return seen[key]

    def considered(m: _Measure) -> sa.ColumnElement[Any] | None:
        if m.considered is None:
            return None
        column = _single_column(m.considered)
        return sa.func.count(column) if column is not None else _count(m.considered, dialect)

    layout: Layout = []
    for spec in specs:
        m = _measure(spec, q, fields)
        layout.append((slot(considered(m)),
                       slot(_count(m.unexpected, dialect) if m.unexpected is not None else None),
                       slot(m.maximum)))
    return sa.select(*columns), layout


def _single_column(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any] | None:
    """``x IS NOT NULL`` -> ``x`` (count(x) counts the non-NULL values, the cheapest form)."""
    from sqlalchemy.sql import operators
    from sqlalchemy.sql.elements import BinaryExpression

    if isinstance(condition, BinaryExpression) and condition.operator is operators.is_not:
        return condition.left
    return None


def run(conn: sa.Connection, check_select: AnySelect, specs: list[CheckSpec],
        fields: Fields) -> list[Counts]:
    """Every spec's counts from one statement (literal SQL: the server sees no bind casts)."""
    stmt, layout = aggregate(check_select, specs, fields, conn.dialect)
    sql = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    row = conn.execute(sa.text(str(sql))).one()

    def number(index: int | None, default: int) -> int:
        value = None if index is None else row[index]
        return default if value is None else int(value)  # MySQL returns counts as decimals

    elements = number(0, 0)
    return [Counts(elements, number(considered, elements), number(unexpected, 0),
                   None if maximum is None else row[maximum])
            for considered, unexpected, maximum in layout]


def failing_keys(conn: sa.Connection, check_select: AnySelect, spec: CheckSpec,
                 fields: Fields) -> tuple[str, ...]:
    """The primary keys of a check's failing rows (the key column only, at most MAX_KEYS)."""
    q = check_select.subquery("checked")
    m = _measure(spec, q, fields)
    if m.unexpected is None:
        return ()
    stmt = sa.select(q.c[KEY]).where(m.unexpected).order_by(q.c[KEY]).limit(MAX_KEYS)
    sql = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return tuple(str(k) for (k,) in conn.execute(sa.text(str(sql))) if k is not None)


def verdict(spec: CheckSpec, counts: Counts) -> bool:
    """GX's rule for a column map expectation: vacuously true with nothing unexpected or
    nothing considered, else the share of considered rows that passed must reach ``mostly``."""
    if counts.unexpected == 0 or counts.considered == 0:
        return True
    mostly = float(spec.kwargs.get("mostly", 1.0))
    return (counts.considered - counts.unexpected) / counts.considered >= mostly
