"""The user's ``carekpi.yaml``: strict models, secret references, one-line errors.

``load(path)`` returns a validated :class:`Config` or raises :class:`ConfigError` whose message
names the file, the dotted key and (for config values only) the bad value.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kpis import cadence, label_values, model, secrets, sql_guard, yaml_file
from kpis.checks_config import ChecksConfig, Invalid, cross_check
from kpis.durations import Duration
from kpis.errors import CareKPIError, ConfigError
from kpis.kpi_settings import Kpis, KpiSettings, SlaOverride
from kpis.mapping import Entity, FieldMapping, SqlExpression
from kpis.opening_hours import WEEKDAYS, Calendar
from kpis.secrets import SecretError, mask_url
from kpis.sharding import Shard
from kpis.sources import Source
from kpis.strict import NAME, Located, Strict, describe, listed, suggest

__all__ = [
    "NAME",
    "WEEKDAYS",
    "Calendar",
    "Config",
    "Entity",
    "FieldMapping",
    "KpiSettings",
    "Kpis",
    "Labels",
    "SlaOverride",
    "Source",
    "SqlExpression",
    "SqlSettings",
    "document",
    "load",
    "masked",
    "parse",
]


LabelName = Literal["clinic", "department", "channel", "queue"]


class Labels(Strict):
    max_values: int = Field(100, ge=1, le=10000)
    limits: dict[LabelName, Annotated[int, Field(ge=1, le=10000)]] = {}
    allow: dict[LabelName, list[str]] = {}  # only these values are exported; others -> other

    @field_validator("allow", mode="before")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for label, codes in value.items():
            if not isinstance(codes, list):
                continue
            for i, code in enumerate(codes):
                error = label_values.code_error(str(code))
                if error or isinstance(code, bool) or not isinstance(code, str | int):
                    raise Located(("labels", "allow", str(label), str(i)),
                                   error or "an allowed label value is a code or a name")
        return {label: [str(c) for c in codes] if isinstance(codes, list) else codes
                for label, codes in value.items()}

    def allowed(self, label: str) -> frozenset[str] | None:
        """The values that may be exported for this label, or None when any safe value may."""
        codes = {str(k): v for k, v in self.allow.items()}.get(label)
        return None if codes is None else frozenset(codes)

    def cap(self, label: str) -> int:
        limits: dict[str, int] = {str(k): v for k, v in self.limits.items()}
        return limits.get(label, self.max_values)


_FUNCTION_NAME = r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$"


class SqlSettings(Strict):
    """``sql:``: the escape hatch for functions CareKPI's SQL guard does not know."""

    allow_functions: list[Annotated[str, Field(pattern=_FUNCTION_NAME)]] = []


class Config(Strict):
    version: Literal[1]
    sources: dict[str, Source]
    entities: dict[str, Entity] = {}
    kpis: Kpis = Kpis()
    labels: Labels = Labels()
    sql: SqlSettings = SqlSettings()
    checks: ChecksConfig = ChecksConfig()  # kpis/checks_config.py
    shard: Shard | None = None  # this process's part of the refresh units ("I/N"); --shard wins
    path: str = Field("carekpi.yaml", exclude=True)
    secret_refs: dict[str, str] = Field({}, exclude=True)  # key -> ${env:}/${file:} text

    @field_validator("shard", mode="before")
    @classmethod
    def _shard(cls, value: Any) -> Shard | None:
        try:
            return None if value is None else Shard.parse(value, where="")
        except CareKPIError as exc:
            raise ValueError(str(exc).strip()) from None

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        for name, entity in self.entities.items():
            if name not in model.ENTITIES:
                raise Located(("entities", name), "unknown entity"
                               f"{suggest(name, model.ENTITIES)}")
            if entity.source not in self.sources:
                raise Located(("entities", name, "source"),
                               f"unknown source {entity.source!r}; defined: {listed(self.sources)}")
            known = model.entity_fields(name)
            for field_name in entity.fields:
                if field_name not in known:
                    raise Located(("entities", name, "fields", field_name),
                                   f"not a field of {name}{suggest(field_name, known)}")
            for field_name, mapping in entity.codes.items():
                _check_codes(name, field_name, mapping, known)
            _check_distinct(name, entity)
            _check_sql(name, entity, self.sources[entity.source], self.sql.allow_functions)
        for name, source in self.sources.items():
            _check_cadences(("sources", name), source.window_intervals, self.kpis.windows)
        for key, section in (self.kpis.model_extra or {}).items():
            if isinstance(section, KpiSettings):
                _check_cadences(("kpis", key), section.window_intervals, self.kpis.windows)
        try:
            cross_check(self.checks, self.entities)
        except Invalid as exc:
            raise Located(exc.loc, str(exc)) from None
        return self

    def entity(self, name: str) -> Entity | None:
        return self.entities.get(name)



# Fields that must never read the same column: the second is what the first must not be.
DISTINCT_FIELDS = {"messages": (("first_response", "auto_ack"),)}


def _check_distinct(name: str, entity: Entity) -> None:
    for first, other in DISTINCT_FIELDS.get(name, ()):
        if first in entity.fields and entity.fields.get(other) == entity.fields[first]:
            raise Located(("entities", name, "fields", other),
                          f"the same column as {first}: an automatic acknowledgement never "
                          "counts as a response (KPIS.md M1)")


def _check_cadences(loc: tuple[str, ...], intervals: dict[Duration, Duration],
                    windows: list[Duration]) -> None:
    for window, interval in intervals.items():
        where = (*loc, "window_intervals", str(window))
        if window not in windows:
            raise Located(where, f"not a configured window; one of "
                                  f"{', '.join(str(w) for w in windows)}")
        problem = cadence.too_long(window.seconds, interval.seconds)
        if problem:
            raise Located(where, problem)


def _check_codes(entity: str, name: str, mapping: dict[str, list[Any]],
                 known: dict[str, model.Field]) -> None:
    loc = ("entities", entity, "codes", name)
    coded_types = (model.FieldType.CODE, model.FieldType.BOOL)
    if name not in known or known[name].type not in coded_types:
        coded = [f.name for f in known.values() if f.type in coded_types]
        raise Located(loc, f"not a coded or boolean field of {entity}; those are: "
                       f"{', '.join(coded)}")
    seen: dict[str, str] = {}
    allowed = model.canonical_codes(known[name])
    for canonical, local_codes in mapping.items():
        if canonical not in allowed:
            raise Located((*loc, canonical),
                           f"not a canonical code; one of {', '.join(allowed)}")
        for code in local_codes:
            if str(code) in seen and seen[str(code)] != canonical:
                raise Located((*loc, canonical),
                               f"local code {code!r} is also mapped to {seen[str(code)]!r}")
            seen[str(code)] = canonical


def _check_sql(name: str, entity: Entity, source: Source, allowed: list[str]) -> None:
    expressions = {field: mapping.sql for field, mapping in entity.fields.items()
                   if isinstance(mapping, SqlExpression)}
    try:
        backend = source.backend
        sql_guard.check_entity(entity.query, expressions, backend, allowed)
    except sql_guard.RefusedSql as exc:
        raise Located(("entities", name, *exc.where), str(exc)) from None
    if entity.exclude is not None:  # a condition: read like a field expression
        try:
            sql_guard.check_expression(entity.exclude, sql_guard.dialect_of(backend), allowed)
        except sql_guard.RefusedSql as exc:
            raise Located(("entities", name, "exclude"), str(exc)) from None


def parse(data: Any, file: str, base: Path | None = None) -> Config:
    """Validate an already-parsed YAML document."""
    base = base or Path(".")
    if not isinstance(data, dict):
        raise ConfigError(file, "", "expected a mapping with version, sources, entities and kpis")
    references: dict[str, str] = {}
    try:
        data = secrets.resolve_tree(data, base, references)
    except SecretError as exc:
        raise ConfigError(file, ".".join(exc.loc), str(exc)) from None
    try:
        return Config.model_validate({**data, "path": file, "secret_refs": references})
    except ValidationError as exc:
        key, message = describe(exc.errors()[0], Config)
        raise ConfigError(file, key, secrets.redact(key, message, references)) from None
    except Located as exc:
        key = ".".join(exc.loc)
        raise ConfigError(file, key, secrets.redact(key, str(exc), references)) from None
    except RecursionError:
        raise ConfigError(file, "", "nested too deeply") from None


def load(path: str | Path) -> Config:
    """Read, resolve and validate a config file."""
    path = Path(path)
    return parse(yaml_file.read(path), str(path), path.parent)


def masked(config: Config) -> dict[str, Any]:
    """The resolved config as plain data with every URL password masked (``config show``)."""
    data = _plain(config)
    for source in data.get("sources", {}).values():
        source["url"] = mask_url(source["url"])
    return secrets.with_references(dict(data), config.secret_refs)


def document(config: Config) -> dict[str, Any]:
    """The resolved config as plain data that loads back, secrets included: only for a private
    file (the scheduled checks' child process reads it when the config has no file)."""
    return dict(_plain(config))


def _plain(node: Any) -> Any:
    """Durations as users write them (30s, 1bd), so ``config show`` output loads back."""
    if isinstance(node, Duration | Shard):
        return str(node)
    if isinstance(node, BaseModel):
        fields = {info.alias or name: getattr(node, name)
                  for name, info in type(node).model_fields.items()
                  if not info.exclude and getattr(node, name) is not None
                  and (name in node.model_fields_set
                       or not isinstance(node, KpiSettings | ChecksConfig))}
        return _plain({**fields, **(node.model_extra or {})})
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, date):
        return node.isoformat()
    return node
