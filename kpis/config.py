"""The user's ``carekpi.yaml``: strict models, secret references, one-line errors.

``load(path)`` returns a validated :class:`Config` or raises :class:`ConfigError` whose message
names the file, the dotted key and (for config values only) the bad value.
"""

from __future__ import annotations

import math
import re
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from kpis import cadence, catalog, label_values, model, secrets, sql_guard, yaml_file
from kpis.checks_config import ChecksConfig, Invalid, cross_check
from kpis.durations import Duration
from kpis.durations import parse as parse_duration
from kpis.errors import CareKPIError, ConfigError
from kpis.secrets import SecretError, mask_url
from kpis.sharding import Shard
from kpis.suggest import did_you_mean, keys_at

NAME = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
MAX_DURATION_SECONDS = 10 * 366 * 86400  # longer is a typo, and overflows datetime arithmetic


def _duration(value: Any, business: bool = False) -> Duration:
    if isinstance(value, Duration):
        return value
    duration = parse_duration(value, business=business)
    if not math.isfinite(duration.seconds) or duration.seconds > MAX_DURATION_SECONDS:
        raise ValueError("a duration must be finite and at most 10 years")
    if not math.isfinite(duration.business_days) or duration.business_days > 366:
        raise ValueError("an SLA must be at most 366 business days")
    return duration


def _window_intervals(value: Any) -> Any:
    """``{7d: 5m, 30d: 15m}``: window -> refresh interval, both durations."""
    if not isinstance(value, dict):
        return value
    out = {}
    for window, interval in value.items():
        try:
            out[_duration(window)] = _duration(interval)
        except ValueError as exc:
            raise ValueError(f"{window}: {exc}") from None
    return out


def _sla_duration(value: Any) -> Duration:
    sla = _duration(value, business=True)
    if not sla.is_business and sla.seconds <= 0:
        raise ValueError("an SLA must be longer than zero")
    return sla


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# URLs as platforms hand them out: ``postgres://`` (Heroku, Render, Fly.io, ...) and a dialect
# without a driver get the driver CareKPI installs (psycopg 3, PyMySQL), not SQLAlchemy's
# default (psycopg2, mysqlclient), which a plain install does not have.
_SCHEME_DRIVER = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                  "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}


def _usual_driver(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in _SCHEME_DRIVER:
        return f"{_SCHEME_DRIVER[scheme.lower()]}://{rest}"
    if sep and scheme.lower().startswith("postgres+"):
        return f"postgresql+{scheme.partition('+')[2]}://{rest}"
    return url


class Source(Strict):
    url: str
    query_timeout: Duration = Duration(30)
    pool_size: int = Field(2, ge=1, le=32)
    refresh_interval: Duration = Duration(60)
    window_intervals: dict[Duration, Duration] = {}  # see kpis/cadence.py
    connect_timeout: Duration = Duration(10)

    _dur = field_validator("query_timeout", "refresh_interval", "connect_timeout", mode="before")(
        _duration
    )
    _win = field_validator("window_intervals", mode="before")(_window_intervals)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        value = _usual_driver(value)
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(f"not a SQLAlchemy database URL: {mask_url(value)!r}") from None
        try:
            url.get_dialect()
        except NoSuchModuleError:
            raise ValueError(f"unknown database dialect {url.drivername!r}: use postgresql://, "
                             "mysql:// (MariaDB too) or sqlite:///") from None
        return value

    @field_validator("query_timeout", "refresh_interval")
    @classmethod
    def _positive(cls, value: Duration) -> Duration:
        if value.seconds <= 0:
            raise ValueError("must be longer than zero")
        return value

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)


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

    _skew = field_validator("clock_skew", mode="before")(_duration)

    @field_validator("codes", mode="before")
    @classmethod
    def _bool_keys(cls, value: Any) -> Any:
        """YAML reads ``true:``/``false:`` keys of a boolean code map as booleans."""
        if not isinstance(value, dict):
            return value
        return {name: {str(k).lower() if isinstance(k, bool) else k: v for k, v in m.items()}
                if isinstance(m, dict) else m for name, m in value.items()}


    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
            raise ValueError(f"unknown time zone {value[:60]!r}") from None
        return value

    @model_validator(mode="after")
    def _table_or_query(self) -> Entity:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self

    def mapped(self, name: str) -> bool:
        return name in self.fields


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Calendar(Strict):
    """Opening hours and holidays; the SLA clock runs only inside them."""

    timezone: str = "UTC"
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], str]
    holidays: list[date] = []
    business_day: Duration | None = None  # default: the longest day's opening hours

    _tz = field_validator("timezone")(Entity._tz.__func__)  # type: ignore[attr-defined]
    _dur = field_validator("business_day", mode="before")(_duration)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, str]) -> dict[str, str]:
        for day, span in value.items():
            match = _HOURS.match(span)
            if not match or span[:5] >= span[6:]:
                raise _Located(("kpis", "calendar", "hours", day),
                               f"expected opening hours like 08:00-18:00, got {span!r}")
        if not value:
            raise ValueError("at least one day needs opening hours")
        return value

    def opening(self, weekday: int) -> tuple[time, time] | None:
        span = self.hours.get(WEEKDAYS[weekday])  # type: ignore[call-overload]
        if span is None:
            return None
        start, end = span.split("-")
        close = time.max if end == "24:00" else time.fromisoformat(end)
        return time.fromisoformat(start), close

    @property
    def business_day_seconds(self) -> float:
        if self.business_day is not None:
            return self.business_day.seconds
        longest = 0.0
        for span in self.hours.values():
            start, end = span.split("-")
            h0, m0 = map(int, start.split(":"))
            h1, m1 = map(int, end.split(":"))
            longest = max(longest, (h1 * 60 + m1 - h0 * 60 - m0) * 60.0)
        return longest


class SlaOverride(Strict):
    channel: str | None = None
    priority: str | None = None
    sla: Duration

    _dur = field_validator("sla", mode="before")(lambda v: _sla_duration(v))

    @model_validator(mode="after")
    def _selects(self) -> SlaOverride:
        if self.channel is None and self.priority is None:
            raise ValueError("an SLA override needs a channel, a priority or both")
        return self


class KpiSettings(Strict):
    enabled: bool = True
    target: float | None = None
    clinic_targets: dict[str, float] = {}
    min_volume: int | None = Field(None, ge=0)
    refresh_interval: Duration | None = None
    window_intervals: dict[Duration, Duration] = {}  # see kpis/cadence.py
    sla: Duration | None = None
    sla_overrides: list[SlaOverride] = []
    threshold: Duration | None = None
    item: str | None = None
    lookback: Duration | None = None

    _dur = field_validator("refresh_interval", "threshold", "lookback", mode="before")(_duration)
    _win = field_validator("window_intervals", mode="before")(_window_intervals)
    _sla = field_validator("sla", mode="before")(lambda v: _sla_duration(v))


_KPI_PARAMS = ("sla", "sla_overrides", "threshold", "item", "lookback")


class Kpis(Strict):
    """The ``kpis:`` section: shared settings, then one optional section per KPI key."""

    model_config = ConfigDict(extra="allow", frozen=True)
    windows: list[Duration] = [Duration(3600), Duration(86400), Duration(604800),
                               Duration(2592000)]
    calendar: Calendar | None = None

    _win = field_validator("windows", mode="before")(
        lambda v: [_duration(x) for x in v] if isinstance(v, list) else v
    )

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[Duration]) -> list[Duration]:
        if not value:
            raise ValueError("at least one window is needed")
        if any(w.seconds <= 0 for w in value) or len(set(value)) != len(value):
            raise ValueError("windows must be positive and distinct")
        return sorted(value)

    @model_validator(mode="before")
    @classmethod
    def _kpi_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = catalog.by_key()
        for key, section in list(data.items()):
            if key in ("windows", "calendar"):
                continue
            if key not in known:
                hint = did_you_mean(str(key), [*known, "windows", "calendar"])
                raise _Located(("kpis", key), f"unknown KPI{hint} (see `carekpi kpis list`)")
            try:
                settings = KpiSettings.model_validate(section or {})
            except ValidationError as exc:
                where, message = _describe(exc.errors()[0], section)
                raise _Located(("kpis", key, *filter(None, where.split("."))), message) from None
            kpi = known[key]
            for param in _KPI_PARAMS:
                if param in (section or {}) and param not in kpi.params:
                    raise _Located(("kpis", key, param), f"not a setting of {kpi.id} {kpi.name}")
            if (settings.target is not None or settings.clinic_targets) and kpi.target is None:
                raise _Located(("kpis", key, "target"), f"{kpi.id} is trend-only, without target")
            data[key] = settings
        return data

    def settings(self, key: str) -> KpiSettings:
        value = (self.model_extra or {}).get(key)
        return value if isinstance(value, KpiSettings) else KpiSettings()


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
                    raise _Located(("labels", "allow", str(label), str(i)),
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
                raise _Located(("entities", name), "unknown entity"
                               f"{_suggest(name, model.ENTITIES)}")
            if entity.source not in self.sources:
                raise _Located(("entities", name, "source"),
                               f"unknown source {entity.source!r}; defined: {_names(self.sources)}")
            known = model.entity_fields(name)
            for field_name in entity.fields:
                if field_name not in known:
                    raise _Located(("entities", name, "fields", field_name),
                                   f"not a field of {name}{_suggest(field_name, known)}")
            for field_name, mapping in entity.codes.items():
                _check_codes(name, field_name, mapping, known)
            _check_sql(name, entity, self.sources[entity.source], self.sql.allow_functions)
        for name, source in self.sources.items():
            _check_cadences(("sources", name), source.window_intervals, self.kpis.windows)
        for key, section in (self.kpis.model_extra or {}).items():
            if isinstance(section, KpiSettings):
                _check_cadences(("kpis", key), section.window_intervals, self.kpis.windows)
        try:
            cross_check(self.checks, self.entities)
        except Invalid as exc:
            raise _Located(exc.loc, str(exc)) from None
        return self

    def entity(self, name: str) -> Entity | None:
        return self.entities.get(name)


class _Located(ValueError):
    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _names(items: Any) -> str:
    return ", ".join(sorted(items))


def _check_cadences(loc: tuple[str, ...], intervals: dict[Duration, Duration],
                    windows: list[Duration]) -> None:
    for window, interval in intervals.items():
        where = (*loc, "window_intervals", str(window))
        if window not in windows:
            raise _Located(where, f"not a configured window; one of "
                                  f"{', '.join(str(w) for w in windows)}")
        problem = cadence.too_long(window.seconds, interval.seconds)
        if problem:
            raise _Located(where, problem)


def _suggest(word: str, choices: Any) -> str:
    """"; did you mean 'start'?" for a near miss, else the whole list."""
    return did_you_mean(word, choices) or f"; one of {_names(choices)}"


def _check_codes(entity: str, name: str, mapping: dict[str, list[Any]],
                 known: dict[str, model.Field]) -> None:
    loc = ("entities", entity, "codes", name)
    coded_types = (model.FieldType.CODE, model.FieldType.BOOL)
    if name not in known or known[name].type not in coded_types:
        coded = [f.name for f in known.values() if f.type in coded_types]
        raise _Located(loc, f"not a coded or boolean field of {entity}; those are: "
                       f"{', '.join(coded)}")
    seen: dict[str, str] = {}
    allowed = model.canonical_codes(known[name])
    for canonical, local_codes in mapping.items():
        if canonical not in allowed:
            raise _Located((*loc, canonical),
                           f"not a canonical code; one of {', '.join(allowed)}")
        for code in local_codes:
            if str(code) in seen and seen[str(code)] != canonical:
                raise _Located((*loc, canonical),
                               f"local code {code!r} is also mapped to {seen[str(code)]!r}")
            seen[str(code)] = canonical


def _check_sql(name: str, entity: Entity, source: Source, allowed: list[str]) -> None:
    from sqlalchemy.engine import make_url

    expressions = {field: mapping.sql for field, mapping in entity.fields.items()
                   if isinstance(mapping, SqlExpression)}
    try:
        backend = make_url(source.url).get_backend_name()
        sql_guard.check_entity(entity.query, expressions, backend, allowed)
    except sql_guard.RefusedSql as exc:
        raise _Located(("entities", name, *exc.where), str(exc)) from None
    if entity.exclude is not None:  # a condition: read like a field expression
        try:
            sql_guard.check_expression(entity.exclude, sql_guard.dialect_of(backend), allowed)
        except sql_guard.RefusedSql as exc:
            raise _Located(("entities", name, "exclude"), str(exc)) from None


def _describe(error: Any, data: Any) -> tuple[str, str]:
    loc = tuple(str(p) for p in error.get("loc", ()) if not str(p).startswith("function-"))
    loc = tuple(p for p in loc if p not in ("str", "SqlExpression", "str-constrained", "[key]"))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _Located):
        return ".".join(ctx_error.loc), str(ctx_error)
    if error.get("type") == "extra_forbidden":
        allowed = keys_at(Config, loc[:-1]) if loc else ()
        shown = f"; one of {', '.join(allowed)}" if allowed else ""
        message = f"unknown key{did_you_mean(loc[-1], allowed) or shown}" if loc else \
            "unknown key"
    value = error.get("input")
    sensitive = any(p in ("url", "password") for p in loc)
    if isinstance(value, str | int | float | bool) and not sensitive and error.get("type") not in (
        "extra_forbidden", "missing"
    ):
        shown = str(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        if f"{shown!r}" not in message:
            message = f"{message} (got {shown!r})"
    return ".".join(loc), message


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
        key, message = _describe(exc.errors()[0], data)
        raise ConfigError(file, key, secrets.redact(key, message, references)) from None
    except _Located as exc:
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
