"""An entity of the user's database as SQLAlchemy sees it: the table (or SELECT), each logical
field's column or expression, canonical codes, and the entity's time zone.

The one implementation of "the mapped entity as SQL": the collectors' KPI queries, the live
checks of ``config validate`` and the data-quality checks' batches are all built from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FromClause

from kpis import model
from kpis.config import Config, Entity, SqlExpression

_TYPES: dict[model.FieldType, sa.types.TypeEngine[Any]] = {
    model.FieldType.TIMESTAMP: sa.DateTime(),
    model.FieldType.BOOL: sa.Boolean(),
    model.FieldType.NUMBER: sa.Float(),
}


class MappedSql(sa.sql.expression.ColumnClause[Any]):
    """SQL text from the mapping (an expression field, an exclusion rule), rendered as
    written: the columns it reads are unknown to SQLAlchemy."""

    inherit_cache = True


class MappedEntity:
    """One logical entity bound to its table, with typed field expressions."""

    def __init__(self, name: str, entity: Entity, alias: str = "e") -> None:
        self.name, self.config = name, entity
        self.zone = ZoneInfo(entity.timezone)
        self.fields = model.entity_fields(name)
        columns = sorted({m for m in entity.fields.values() if isinstance(m, str)})
        if entity.query is not None:
            self.from_: FromClause = (
                sa.text(entity_query(entity.query)).columns(*(sa.column(c) for c in columns))
                .subquery(alias)
            )
        else:
            table = sa.table(entity.table or "", *(sa.column(c) for c in columns),
                             schema=entity.db_schema)
            self.from_ = table.alias(alias)

    def expression(self, name: str) -> ColumnElement[Any]:
        """The field's column or SQL expression as mapped, untyped."""
        mapping = self.config.fields[name]
        if isinstance(mapping, SqlExpression):
            return MappedSql(f"({mapping.sql})", is_literal=True)
        return self.from_.c[mapping]

    def probe(self) -> sa.Select[Any]:
        """Every mapped field over no rows: proves the mapping compiles on the server without
        reading a value."""
        columns = [self.expression(f).label(f) for f in self.config.fields]
        return sa.select(*columns).select_from(self.from_).where(sa.false())

    def mapped(self, *names: str) -> bool:
        return all(n in self.config.fields for n in names)

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.config.fields]

    def col(self, name: str) -> ColumnElement[Any]:
        """The field's expression, typed by its logical type (timestamps parse on SQLite)."""
        type_ = _TYPES.get(self.fields[name].type, sa.String())
        if name in self.config.codes:  # a coded boolean (Y/N) is compared as its codes
            type_ = sa.String()
        return sa.type_coerce(self.expression(name), type_)

    def local_codes(self, name: str, canonical: Iterable[str]) -> list[Any]:
        """The local codes that mean any of the canonical codes (identity when unmapped)."""
        wanted = set(canonical)
        codes = self.config.codes.get(name)
        if codes is None:
            return sorted(wanted)
        return [code for canon, local in codes.items() if canon in wanted for code in local]

    def is_code(self, name: str, *canonical: str) -> ColumnElement[bool]:
        """``field IN (local codes)``; false when nothing maps to the canonical codes."""
        codes = self.local_codes(name, canonical)
        if not codes:
            return sa.false()
        return exact(self.col(name), codes).in_([_code_literal(c) for c in codes])

    def is_true(self, name: str) -> ColumnElement[bool]:
        """A boolean field is true: through its code map (Y/N, S/N, 1/0, T/F) when it has one,
        else the database's own boolean. Unmapped or NULL values are not true."""
        if name in self.config.codes:
            return self.is_code(name, "true")
        return sa.func.coalesce(self.col(name) == sa.true(), sa.false())

    def exclusions(self) -> list[tuple[str, ColumnElement[bool]]]:
        """The entity's exclusion rules as (reason, condition): the ``exclude:`` condition,
        then local codes mapped to the canonical ``excluded``. Matching records are left out
        of every KPI of the entity and counted under the reason."""
        rules: list[tuple[str, ColumnElement[bool]]] = []
        if self.config.exclude is not None:
            text = MappedSql(f"({self.config.exclude})", is_literal=True)
            rule = sa.type_coerce(text, sa.Boolean())
            rules.append(("excluded_by_rule", rule))
        coded = [self.is_code(name, model.EXCLUDED_CODE) for name, codes in
                 sorted(self.config.codes.items())
                 if model.EXCLUDED_CODE in codes and name in self.config.fields]
        if coded:
            rules.append(("excluded_code", sa.or_(*coded)))
        return rules

    def excluded(self) -> ColumnElement[bool]:
        """Whether a record matches any exclusion rule (never NULL)."""
        rules = self.exclusions()
        if not rules:
            return sa.false()
        return sa.or_(*(sa.func.coalesce(rule, sa.false()) for _, rule in rules))

    @property
    def clock_skew(self) -> float:
        return self.config.clock_skew.seconds

    def local_time(self, moment: datetime) -> datetime:
        """A UTC instant as the naive local time the entity's timestamps are stored in."""
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def instant(self, stored: datetime | str | None) -> datetime | None:
        """A stored naive timestamp (or an aware one) as an aware UTC instant."""
        if stored is None:
            return None
        if isinstance(stored, str):
            stored = datetime.fromisoformat(stored)
        if stored.tzinfo is None:
            stored = stored.replace(tzinfo=self.zone)
        return stored.astimezone(ZoneInfo("UTC"))


def entity_query(query: str) -> str:
    """An entity's ``query:`` as a subquery body: surrounding blanks and trailing ``;`` removed
    (``SELECT ...;`` is a complete statement on its own, but a syntax error inside parentheses)."""
    return query.strip().rstrip(";").rstrip()


class ExactText(sa.sql.functions.FunctionElement[Any]):
    """A text value compared byte for byte. MariaDB and MySQL compare strings through the
    column's collation, which usually ignores case and trailing spaces: ``'ns'`` and
    ``'NS '`` would match the code ``NS`` there and nowhere else. Elsewhere the value is
    compared as it is."""

    inherit_cache = True
    type = sa.String()


@compiles(ExactText)
def _exact_text(element: ExactText, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(ExactText, "mysql")
@compiles(ExactText, "mariadb")
def _exact_text_mysql(element: ExactText, compiler: SQLCompiler, **kw: Any) -> str:
    # In utf8mb4 first, the connection's character set (the codes' literals are sent in it),
    # so that a latin1 or utf16 column compares byte for byte with them.
    return f"CAST(CONVERT({compiler.process(element.clauses, **kw)} USING utf8mb4) AS BINARY)"


def exact(column: ColumnElement[Any], codes: Iterable[Any]) -> ColumnElement[Any]:
    """The column as compared with ``codes``: byte for byte when they are text with a letter
    (see ExactText), where case could be folded; as it is otherwise (numbers, booleans,
    digit codes such as '3', which a DECIMAL or BIT column matches as a number)."""
    codes = list(codes)
    if codes and all(isinstance(c, str) for c in codes) and any(
            ch.isalpha() for c in codes for ch in c):
        return ExactText(column)
    return column


def _code_literal(code: Any) -> ColumnElement[Any]:
    if isinstance(code, bool):
        return sa.true() if code else sa.false()
    if isinstance(code, int):
        return sa.literal_column(str(code))
    return sa.literal_column("'" + str(code).replace("'", "''") + "'")


def mapped_entities(config: Config) -> dict[str, MappedEntity]:
    return {name: MappedEntity(name, entity) for name, entity in config.entities.items()}
