"""The SELECT each entity's checks run over (a GX query asset), built with SQLAlchemy Core.

Columns are aliased to the logical field names, so built-in and custom checks speak the logical
model whatever the user's table looks like (plain columns, SQL expressions or an entity query).
Incremental runs add ``WHERE <raw timestamp column> >= '<bound>'`` on the entity's main
timestamp (kpis.model.FRESHNESS_FIELD), a plain range predicate an index on that column serves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from checks.suites import (
    KEY,
    RECORD_COMPLETE,
    SCORE_IN_SCALE,
    present_column,
    required_mapped,
)
from kpis import model
from kpis.checks_config import ChecksConfig
from kpis.config import Config
from kpis.db.entity import MappedEntity
from kpis.errors import ConfigError

AnySelect = sa.Select[*tuple[Any, ...]]  # a SELECT of any columns
_TEXTUAL = (model.FieldType.ID, model.FieldType.LABEL, model.FieldType.CODE,
            model.FieldType.TEXT)


def blank(column: sa.ColumnElement[Any], field_type: model.FieldType,
          never_blank_text: bool = False) -> sa.ColumnElement[bool]:
    """A field counts as missing: NULL, or (textual fields) empty or only blanks.

    ``never_blank_text``: the column's database type is numeric or temporal (reflected), so
    the text test can never hold and is left out (no per-row cast to text).
    """
    if field_type not in _TEXTUAL or never_blank_text:
        return column.is_(None)
    return sa.or_(column.is_(None), sa.func.trim(sa.cast(column, sa.String)) == "")


def _present(entity: MappedEntity, name: str, field_type: model.FieldType
             ) -> sa.ColumnElement[object]:
    expr = entity.expression(name)
    condition: sa.ColumnElement[bool] = expr.is_not(None)
    if field_type in _TEXTUAL:
        condition = sa.and_(condition, sa.func.trim(sa.cast(expr, sa.String)) != "")
    return sa.case((condition, 1), else_=sa.null())


def _score_in_scale(entity: MappedEntity) -> sa.ColumnElement[object]:
    score = entity.expression("score")
    if not entity.mapped("scale"):
        return sa.case((score.is_(None), sa.null()),
                       (score.between(0, 10), 1), else_=0)
    scale = entity.expression("scale")
    local = entity.config.codes.get("scale") or {code: [code] for code in model.SCALE_BOUNDS}
    whens: list[tuple[sa.ColumnElement[bool], object]] = [
        (sa.or_(score.is_(None), scale.is_(None)), sa.null())
    ]
    for canonical in local:  # matched as the S-KPIs match it (exactly, on every database)
        low, high = model.SCALE_BOUNDS[canonical]
        whens.append((sa.and_(entity.is_code("scale", canonical), score.between(low, high)), 1))
    return sa.case(*whens, else_=0)


def undated(config: Config, name: str) -> AnySelect:
    """The records without their main timestamp: in no ``--since`` window, they are counted
    apart, for the completeness of that timestamp (checks.runner)."""
    entity = MappedEntity(name, config.entities[name])
    stamp = entity.expression(model.FRESHNESS_FIELD[name])
    return sa.select(sa.func.count()).select_from(entity.from_).where(stamp.is_(None))


def check_query(config: Config, checks: ChecksConfig, name: str, dialect: sa.Dialect,
                since: datetime | None) -> str:
    """The check query of one entity as SQL text for the source's dialect.

    ``since`` is a naive wall-clock time of the entity's time zone (the lower bound).
    """
    stmt = check_select(config, checks, name, since)
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


def check_select(config: Config, checks: ChecksConfig, name: str,
                 since: datetime | None) -> AnySelect:
    """The check query of one entity as a SQLAlchemy SELECT (see :func:`check_query`)."""
    entity = MappedEntity(name, config.entities[name], alias="src")
    fields = model.entity_fields(name)
    columns: list[sa.ColumnElement[object]] = [
        entity.expression(f).label(f) for f in entity.config.fields
    ]
    required = required_mapped(checks, name, entity.config)
    for field_name in required:
        columns.append(_present(entity, field_name, fields[field_name].type)
                       .label(present_column(field_name)))
    if required:
        everything = sa.and_(*[_present(entity, f, fields[f].type).is_not(None)
                               for f in required])
        columns.append(sa.case((everything, 1), else_=sa.null()).label(RECORD_COMPLETE))
    if entity.mapped("score"):
        columns.append(_score_in_scale(entity).label(SCORE_IN_SCALE))
    key = entity.config.primary_key
    key_expr = entity.expression(key) if entity.mapped(key) else sa.column(key)
    columns.append(key_expr.label(KEY))
    stmt: AnySelect = sa.select(*columns).select_from(entity.from_)
    if since is not None:
        fresh = model.FRESHNESS_FIELD[name]
        if not entity.mapped(fresh):
            raise ConfigError(config.path, f"entities.{name}.fields",
                              f"--since needs {name}.{fresh} mapped (its main timestamp)")
        bound = since.replace(microsecond=0).isoformat(sep=" ")
        stmt = stmt.where(entity.expression(fresh) >= sa.literal(bound, sa.String))
    return stmt
