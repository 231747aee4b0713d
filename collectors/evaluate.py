"""Evaluate KPIs against the mapped databases at one instant.

KPIs are grouped into refresh units (one SELECT each): KPIs on the same entity, anchor and
labels share a query. When a merged query fails, each KPI of the unit is retried alone, so one
bad mapping cannot take its neighbours down.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collectors import access_plans, response_plans
from collectors.labels import LabelCaps
from collectors.plan import Context, Plan, at
from collectors.query import compose, decode
from collectors.source import MappedEntity
from kpis import catalog, model, targets
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.snapshot import Cell, KpiResult

log = logging.getLogger("carekpi.collectors")
Builder = Callable[[Context, Kpi, MappedEntity], Plan]
BUILDERS: dict[str, Builder] = {**access_plans.BUILDERS, **response_plans.BUILDERS}
_OPTIONAL = {"clinic", "channel", "queue", "priority", "department"}


@dataclass(frozen=True)
class Unit:
    """A refresh unit: KPIs evaluated by one query on one source."""

    source: str
    entity: str | None  # None: the freshness unit of the source
    kpis: tuple[Kpi, ...]
    interval: float

    @property
    def name(self) -> str:
        return f"{self.source}/{self.entity or 'freshness'}/{'+'.join(k.key for k in self.kpis)}"


def unavailable_reason(kpi: Kpi, config: Config) -> str | None:
    """Why a KPI cannot be computed from this mapping (None when it can)."""
    if kpi.kind == "freshness":
        return None if config.entities else "no entity mapped"
    entity = config.entity(kpi.entity)
    if entity is None:
        return f"entity {kpi.entity} not mapped"
    missing = [f for f in kpi.fields if f not in _OPTIONAL and not entity.mapped(f)]
    if missing:
        return ", ".join(f"{kpi.entity}.{f}" for f in missing) + " not mapped"
    return None


def units(config: Config) -> list[Unit]:
    """Refresh units in a stable order: mergeable KPIs share a unit."""
    grouped: dict[tuple[Any, ...], list[Kpi]] = {}
    for kpi in catalog.load():
        if not targets.enabled(kpi, config) or unavailable_reason(kpi, config):
            continue
        if kpi.kind == "freshness":
            continue
        source = config.entities[kpi.entity].source
        interval = _interval(config, kpi, source)
        key = (source, kpi.entity, interval, *_merge_key(kpi))
        grouped.setdefault(key, []).append(kpi)
    out = [Unit(key[0], key[1], tuple(kpis), key[2]) for key, kpis in grouped.items()]
    freshness = catalog.get("freshness")
    if targets.enabled(freshness, config):
        for source in sorted({e.source for e in config.entities.values()}):
            out.append(Unit(source, None, (freshness,),
                            config.sources[source].refresh_interval.seconds))
    return out


def _interval(config: Config, kpi: Kpi, source: str) -> float:
    override = config.kpis.settings(kpi.key).refresh_interval
    return (override or config.sources[source].refresh_interval).seconds


def _merge_key(kpi: Kpi) -> tuple[Any, ...]:
    if kpi.anchor == "deadline" or kpi.kind == "backlog" or kpi.key == "first_contact_resolution":
        return (kpi.key,)
    return (kpi.anchor, kpi.dimensions)


def run_unit(engine: sa.Engine, config: Config, unit: Unit, as_of: datetime,
             caps: LabelCaps) -> list[KpiResult]:
    """Evaluate one unit; never raises for database or mapping errors (they become results)."""
    ctx = Context(config, as_of)
    if unit.entity is None:
        return [_freshness(engine, ctx, unit)]
    entity = MappedEntity(unit.entity, config.entities[unit.entity])
    started = time.perf_counter()
    try:
        plans = [BUILDERS[k.key](ctx, k, entity) for k in unit.kpis]
        cells, rows = _execute(engine, entity, plans)
    except Exception as exc:
        # Retry KPI by KPI only for a query error: a timeout (a lock, a slow plan) would just
        # cost one more timeout per KPI, and an unreachable source fails them all anyway.
        if len(unit.kpis) > 1 and not timed_out(exc) and reachable(engine):
            log.info("merged query %s failed (%s); evaluating its KPIs one by one",
                     unit.name, describe_error(exc))
            return [r for kpi in unit.kpis for r in run_unit(
                engine, config, Unit(unit.source, unit.entity, (kpi,), unit.interval),
                as_of, caps)]
        return [_failed(unit, kpi, as_of, exc, started) for kpi in unit.kpis]
    elapsed = time.perf_counter() - started
    return [KpiResult(kpi, unit.source, as_of, tuple(caps.fold(kpi, c)), None, None, elapsed,
                      rows) for kpi, c in zip(unit.kpis, cells, strict=True)]


def _execute(engine: sa.Engine, entity: MappedEntity, plans: list[Plan]
             ) -> tuple[list[list[Cell]], int]:
    query, layout = compose(plans, engine.dialect.name)
    with engine.connect() as conn:
        _set_zone(conn, entity)
        rows = conn.execute(query).all()
        conn.rollback()
    return decode(plans, layout, rows), len(rows)


def _set_zone(conn: sa.Connection, entity: MappedEntity) -> None:
    """PostgreSQL compares naive binds with timestamptz columns in the session zone."""
    if conn.dialect.name == "postgresql" and entity.config.timezone != "UTC":
        conn.execute(sa.text("SELECT set_config('TimeZone', :zone, true)"),
                     {"zone": entity.config.timezone})


def _freshness(engine: sa.Engine, ctx: Context, unit: Unit) -> KpiResult:
    """Newest record per entity of the source (MAX on the raw column, bounded by now)."""
    kpi, started, cells = unit.kpis[0], time.perf_counter(), []
    names = sorted(n for n, e in ctx.config.entities.items() if e.source == unit.source
                   and e.mapped(model.FRESHNESS_FIELD[n]))
    try:
        with engine.connect() as conn:
            for name in names:
                entity = MappedEntity(name, ctx.config.entities[name])
                _set_zone(conn, entity)
                col = entity.col(model.FRESHNESS_FIELD[name])
                query = sa.select(sa.func.max(col)).select_from(entity.from_).where(
                    col <= at(ctx.now(entity)))
                newest = entity.instant(conn.execute(query).scalar())
                if newest is not None:
                    cells.append(Cell((("entity", name),), {"timestamp": newest.timestamp()}))
            conn.rollback()
    except Exception as exc:
        return _failed(unit, kpi, ctx.as_of, exc, started)
    return KpiResult(kpi, unit.source, ctx.as_of, tuple(cells), None, None,
                     time.perf_counter() - started, len(cells))


def _failed(unit: Unit, kpi: Kpi, as_of: datetime, exc: BaseException, started: float
            ) -> KpiResult:
    message = describe_error(exc)
    log.warning("refresh of %s on source %s failed: %s", kpi.key, unit.source, message)
    return KpiResult(kpi, unit.source, as_of, (), None, message,
                     time.perf_counter() - started, 0)


_TIMEOUT_WORDS = ("statement timeout", "max_statement_time", "max_execution_time",
                  "interrupted", "querycanceled")


def timed_out(exc: BaseException) -> bool:
    """The server (or SQLite's progress handler) cancelled the query at query_timeout."""
    orig = getattr(exc, "orig", None)
    text = f"{type(orig).__name__} {orig}".lower()
    return any(word in text for word in _TIMEOUT_WORDS)


def reachable(engine: sa.Engine) -> bool:
    """Whether the source answers at all (tells a lost database from a bad query)."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:
        return False


def describe_error(exc: BaseException) -> str:
    """A one-line, value-free description: the exception class and the driver's first line,
    never the SQL statement or its parameters (they can hold config values, not data, but
    drivers echo offending data values in some messages, so keep only the class)."""
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        kind = type(orig).__name__ if orig is not None else type(exc).__name__
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return f"database error {kind}: {_first_line(orig)}"
        return f"query failed: {kind}"
    if isinstance(exc, sa.exc.TimeoutError):
        return "connection pool exhausted (timeout)"
    return f"{type(exc).__name__}"


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _first_line(orig: BaseException | None) -> str:
    """The driver's first line with anything quoted blanked: connection and timeout messages
    stay readable, while a value a driver might quote from a row never leaves."""
    text = str(orig or "").strip().splitlines()
    return _QUOTED.sub("'?'", text[0])[:160] if text else "no detail"


def unavailable(config: Config, as_of: datetime) -> list[KpiResult]:
    """Results for the KPIs this mapping cannot compute, with the reason."""
    out = []
    for kpi in catalog.load():
        reason = unavailable_reason(kpi, config)
        if reason and targets.enabled(kpi, config):
            out.append(KpiResult(kpi, "", as_of, unavailable=reason))
    return out


def evaluate(config: Config, engines: dict[str, sa.Engine], as_of: datetime | None = None,
             only: Iterable[str] | None = None, caps: LabelCaps | None = None
             ) -> list[KpiResult]:
    """Evaluate every enabled KPI once (``carekpi collect --once``)."""
    as_of = as_of or datetime.now(UTC)
    caps = caps or LabelCaps(config.labels)
    wanted = set(only) if only else None
    results = []
    for unit in units(config):
        if wanted and not wanted & {k.key for k in unit.kpis}:
            continue
        results.extend(run_unit(engines[unit.source], config, unit, as_of, caps))
    return [*results, *unavailable(config, as_of)]
