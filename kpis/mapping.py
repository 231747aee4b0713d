"""``entities:``: how a logical entity maps onto the user's table or query (fields, codes,
time zone, clock skew, exclusions)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from kpis.durations import Duration
from kpis.strict import Strict, duration, time_zone


class SqlExpression(Strict):
    sql: str  # checked by kpis.sql_guard in the dialect of the entity's source (Config)


def _mapping_kind(value: Any) -> str:
    return "SqlExpression" if isinstance(value, dict | SqlExpression) else "str"


# Discriminated, so that a refused ``{sql: ...}`` reports why, not "should be a valid string".
FieldMapping = Annotated[
    Annotated[str, Tag("str")] | Annotated[SqlExpression, Tag("SqlExpression")],
    Discriminator(_mapping_kind),
]


class Entity(Strict):
    source: str
    table: str | None = None
    query: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    timezone: str = "UTC"
    primary_key: str = "id"
    fields: dict[str, FieldMapping]
    codes: dict[str, dict[str, list[str | int | bool]]] = {}
    # Clocks of two systems disagree: a duration down to -clock_skew counts as 0, a more
    # negative one is left out and counted (negative_duration), in every KPI alike.
    clock_skew: Duration = Duration(5)
    exclude: str | None = None  # a read-only SQL condition: matching records are left out

    _skew = field_validator("clock_skew", mode="before")(duration)

    @field_validator("codes", mode="before")
    @classmethod
    def _bool_keys(cls, value: Any) -> Any:
        """YAML reads ``true:``/``false:`` keys of a boolean code map as booleans."""
        if not isinstance(value, dict):
            return value
        return {name: {str(k).lower() if isinstance(k, bool) else k: v for k, v in m.items()}
                if isinstance(m, dict) else m for name, m in value.items()}


    _tz = field_validator("timezone")(time_zone)

    @model_validator(mode="after")
    def _table_or_query(self) -> Entity:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self

    def mapped(self, name: str) -> bool:
        return name in self.fields
