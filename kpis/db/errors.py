"""Database errors as CareKPI reports them, and the probes that find them early.

Drivers quote values in some messages (a code that failed a cast, a key that collided), so
every database message leaves through :func:`scrub` (first line, anything quoted blanked) or
:func:`describe` (the error class, plus the scrubbed first line for connection and timeout
errors only). The same rules serve the exporter, ``config validate`` and the checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kpis import model
from kpis.db.entity import MappedEntity
from kpis.errors import SourceError, one_line

# Quoted text; an apostrophe inside a word (Can't) starts no quote.
_QUOTED = re.compile(r"(?<![A-Za-z])'[^']*'|\"[^\"]*\"")
_TIMEOUT_WORDS = ("statement timeout", "max_statement_time", "max_execution_time",
                  "interrupted", "querycanceled")
_NUMERIC_OK = (sa.types.Integer, sa.types.Numeric, sa.types.Float, sa.types.Boolean)
_TIME_OK = (sa.types.DateTime, sa.types.Date, sa.types.String, sa.types.NullType)


class SourceUnreachable(SourceError):
    """The source did not answer ``SELECT 1``; the message names the source, masked URL and
    the driver's scrubbed first line."""


@dataclass(frozen=True)
class MappingProblem:
    """A mapped table, column or expression the server refuses: ``where`` is the config key."""

    where: str
    message: str


def scrub(exc: BaseException | str | None) -> str:
    """The driver's first line with anything quoted blanked: connection and timeout messages
    stay readable, while a value a driver might quote from a row never leaves."""
    if isinstance(exc, BaseException):
        exc = getattr(exc, "orig", None) or exc
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
            exc = f"({args[0]}) {args[1]}"  # PyMySQL's (errno, message): the message in quotes
    text = str(exc or "").strip().splitlines()
    return _QUOTED.sub("'?'", text[0])[:160] if text else "no detail"


# Errors whose message quotes only names from the mapping or the login (a column, function,
# table, database, user@host), never a row's value: shown as the server wrote them.
_SCHEMA_SQLSTATES = {"42703", "42883", "42P01", "42501", "3D000", "3F000", "28000", "28P01"}
_SCHEMA_MYSQL_ERRNOS = {1044, 1045, 1049, 1054, 1142, 1143, 1146, 1305, 1630, 1698}
_SCHEMA_SQLITE = ("no such column", "no such table", "no such function", "no such module")


def schema_message(orig: BaseException | None) -> str | None:
    """The first line of a schema or access error (unknown column, function or table; access
    denied for user@host), or None for any other error (data errors may quote a value)."""
    if orig is None:
        return None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args: tuple[Any, ...] = tuple(getattr(orig, "args", ()))
    errno = args[0] if len(args) > 1 and isinstance(args[0], int) else None  # (errno, text)
    mysql = errno in _SCHEMA_MYSQL_ERRNOS
    text = str(args[1] if errno is not None else orig).strip()
    first = text.splitlines()[0] if text else ""
    if sqlstate in _SCHEMA_SQLSTATES or mysql or first.startswith(_SCHEMA_SQLITE):
        return one_line(first)[:200]
    return None


def describe(exc: BaseException) -> str:
    """A one-line, value-free description: the exception class and, for connection errors,
    the driver's scrubbed first line; never the SQL statement or its parameters."""
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        kind = type(orig).__name__ if orig is not None else type(exc).__name__
        schema = schema_message(orig)
        if schema is not None:  # the server's own words: they quote names, not values
            return f"query failed: {kind}: {schema}"
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return f"database error {kind}: {scrub(orig)}"
        return f"query failed: {kind}"
    if isinstance(exc, sa.exc.TimeoutError):
        return "connection pool exhausted (timeout)"
    return f"{type(exc).__name__}"


def timed_out(exc: BaseException) -> bool:
    """The server (or SQLite's progress handler) cancelled the query at query_timeout."""
    orig = getattr(exc, "orig", None)
    text = f"{type(orig).__name__} {orig}".lower()
    return any(word in text for word in _TIMEOUT_WORDS)


def ping(engine: sa.Engine) -> None:
    """``SELECT 1`` on a pooled connection; raises the driver's error when the source does not
    answer."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def reachable(engine: sa.Engine) -> bool:
    """Whether the source answers at all (tells a lost database from a bad query)."""
    try:
        ping(engine)
    except Exception:
        return False
    return True


def unreachable(source: str, masked_url: str, exc: BaseException) -> SourceUnreachable:
    return SourceUnreachable(f"source {source} ({masked_url}) unreachable: {scrub(exc)}")


def probe_mapping(conn: sa.Connection, e: MappedEntity) -> list[MappingProblem]:
    """The live-mapping probe: the table (or query) can be read, every mapped column exists
    with a usable type, every mapped expression can be selected. Reads at most one row per
    expression and reports none of its values."""
    where = f"entities.{e.name}"
    try:
        conn.execute(sa.select(sa.literal(1)).select_from(e.from_).limit(0))
    except sa.exc.DBAPIError as exc:
        conn.rollback()
        if e.config.table is not None:
            return [MappingProblem(f"{where}.table", f"table {e.config.table!r} cannot be read "
                                   f"on source {e.config.source} ({describe(exc)})")]
        return [MappingProblem(f"{where}.query", f"query cannot be read ({describe(exc)})")]
    columns = _column_types(conn, e)
    problems = []
    for name in e.config.fields:
        message = _field_problem(conn, e, name, columns)
        if message is not None:
            problems.append(MappingProblem(f"{where}.fields.{name}", message))
    return problems


def _column_types(conn: sa.Connection, e: MappedEntity) -> dict[str, Any] | None:
    """The table's columns by name (also lower-cased), or None for a query or no inspector."""
    if e.config.table is None:
        return None
    try:
        found = sa.inspect(conn).get_columns(e.config.table, schema=e.config.db_schema)
    except sa.exc.SQLAlchemyError:
        return None
    types = {c["name"].lower(): c["type"] for c in found}
    types.update({c["name"]: c["type"] for c in found})
    return types


def _field_problem(conn: sa.Connection, e: MappedEntity, name: str,
                   columns: dict[str, Any] | None) -> str | None:
    mapping = e.config.fields[name]
    type_ = None
    if isinstance(mapping, str) and columns is not None:
        type_ = columns.get(mapping, columns.get(mapping.lower()))
        if type_ is None:
            return f"column {mapping!r} not found in table {e.config.table!r}"
    kind = e.fields[name].type
    if type_ is not None:  # the column's declared type first: the driver may not read it as one
        if kind is model.FieldType.TIMESTAMP and not isinstance(type_, _TIME_OK):
            return f"column {mapping!r} has type {type_}; a timestamp is needed"
        coded_bool = kind is model.FieldType.BOOL and name in e.config.codes  # Y/N, S/N, T/F
        if kind in (model.FieldType.NUMBER, model.FieldType.BOOL) and not coded_bool and \
                not isinstance(type_, _NUMERIC_OK):
            return f"column {mapping!r} has type {type_}; a number or boolean is needed"
    shown = mapping if isinstance(mapping, str) else "expression"
    try:
        conn.execute(sa.select(e.col(name)).select_from(e.from_).limit(1)).all()
    except sa.exc.DBAPIError as exc:
        conn.rollback()
        return (f"{shown!r} cannot be selected from {e.config.table or 'the query'} "
                f"({describe(exc)})")
    except sa.exc.InvalidRequestError:  # e.g. text where a number is mapped (PostgreSQL)
        conn.rollback()
        return f"{shown!r} cannot be read as a {kind.value} (check the column's type)"
    return None
