"""Evaluate KPIs against the mapped databases at one instant.

KPIs are grouped into refresh units (one SELECT each): KPIs on the same entity, anchor and
labels share a query. When a merged query fails, each KPI of the unit is retried alone, so one
bad mapping cannot take its neighbours down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import Select

from collectors import access_plans, call_plans, deadline_plans, shards, survey_plans
from collectors.labels import WIDE, LabelCaps, TooWide
from collectors.load import LoadMeter, fetching
from collectors.plan import Context, Plan, at, with_exclusions
from collectors.query import compose, decode, folded_away
from kpis import cadence, catalog, effective, model
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.db.entity import MappedEntity
from kpis.db.errors import describe, reachable, timed_out
from kpis.durations import format_seconds
from kpis.snapshot import Cell, KpiResult

log = logging.getLogger("carekpi.collectors")
PROBE_ROWS = 50_000  # a refresh query returns a few thousand rows; past this many, stream
STREAMED_ROWS = 10_000  # fetched at a time: a query's rows are never all held before the cap
Builder = Callable[[Context, Kpi, MappedEntity], Plan]
BUILDERS: dict[str, Builder] = {**access_plans.BUILDERS, **call_plans.BUILDERS,
                                 **deadline_plans.BUILDERS, **survey_plans.BUILDERS}


@dataclass(frozen=True)
class Unit:
    """A refresh unit: KPIs evaluated by one query on one source, for some of the windows."""

    source: str
    entity: str | None  # None: the freshness unit of the source
    kpis: tuple[Kpi, ...]
    interval: float
    windows: tuple[float, ...] | None = None  # seconds; None: every configured window

    @property
    def name(self) -> str:
        return f"{self.source}/{self.label}"

    @property
    def window_labels(self) -> tuple[str, ...]:
        """The windows this unit refreshes; () for every window (or a windowless KPI)."""
        return tuple(map(format_seconds, self.windows)) if self.windows else ()

    @property
    def label(self) -> str:
        """The unit within its source, as the ``unit`` label of the load metrics."""
        kpis = "+".join(k.key for k in self.kpis)
        windows = f"@{','.join(self.window_labels)}" if self.windows else ""
        return f"{self.entity or 'freshness'}/{kpis}{windows}"

    @property
    def cost(self) -> int:
        """A rough size of the unit's query: its counted columns (histograms weigh their
        buckets)."""
        return sum(len(kpi.buckets) + 2 for kpi in self.kpis)


def start_order(units: list[Unit], pool_sizes: dict[str, int]) -> list[int]:
    """Cheapest first, so the first scrapes already carry most KPIs; but where a source has
    two or more workers, its heaviest unit goes first, to run beside all the others rather
    than after them (every KPI is there sooner)."""
    by_cost = sorted(range(len(units)), key=lambda i: units[i].cost)
    heaviest = {units[i].source: i for i in by_cost  # the last, costliest, per source wins
                if pool_sizes.get(units[i].source, 1) > 1}
    first = sorted(heaviest.values(), key=lambda i: -units[i].cost)
    return first + [i for i in by_cost if i not in first]


def unavailable_reason(kpi: Kpi, config: Config) -> str | None:
    """Why a KPI cannot be computed from this mapping (None when it can)."""
    if kpi.kind == "freshness":
        return None if config.entities else "no entity mapped"
    entity = config.entity(kpi.entity)
    if entity is None:
        return f"entity {kpi.entity} not mapped"
    return catalog.missing_reason(kpi, entity.mapped)


def units(config: Config, cadences: bool = True) -> list[Unit]:
    """This shard's refresh units (every unit unsharded) in a stable order: mergeable KPIs
    share a unit. With ``cadences``, one unit per group of windows sharing a refresh interval
    (kpis/cadence.py), each scanning only its own range; without, one unit for all windows
    (``collect``). A shard owns whole KPIs: all their windows' units."""
    return _units(config, cadences, _owned(config))


def all_units(config: Config, cadences: bool = False) -> list[Unit]:
    """Every shard's units (what the shards are dealt)."""
    return _units(config, cadences, None)


def _owned(config: Config) -> set[tuple[str, str | None, str]] | None:
    """(source, entity, KPI) this shard computes; None when unsharded."""
    if config.shard is None or config.shard.whole:
        return None
    mine = shards.select(all_units(config), config.shard)
    return {(u.source, u.entity, k.key) for u in mine for k in u.kpis}


def _units(config: Config, cadences: bool, owned: set[tuple[str, str | None, str]] | None
           ) -> list[Unit]:
    grouped: dict[tuple[Any, ...], list[Kpi]] = {}
    for kpi in catalog.load():
        if not effective.enabled(kpi, config) or unavailable_reason(kpi, config):
            continue
        if kpi.kind == "freshness":
            continue
        source = config.entities[kpi.entity].source
        if owned is not None and (source, kpi.entity, kpi.key) not in owned:
            continue
        for interval, windows in _cadences(config, kpi, source, cadences):
            key = (source, kpi.entity, interval, windows, *_merge_key(kpi))
            grouped.setdefault(key, []).append(kpi)
    out = [Unit(key[0], key[1], tuple(kpis), key[2], key[3]) for key, kpis in grouped.items()]
    freshness = catalog.get("freshness")
    if effective.enabled(freshness, config):
        for source in sorted({e.source for e in config.entities.values()}):
            if owned is not None and (source, None, freshness.key) not in owned:
                continue
            out.append(Unit(source, None, (freshness,),
                            config.sources[source].refresh_interval.seconds))
    return out


def _interval(config: Config, kpi: Kpi, source: str) -> float:
    override = config.kpis.settings(kpi.key).refresh_interval
    return (override or config.sources[source].refresh_interval).seconds


def _cadences(config: Config, kpi: Kpi, source: str, split: bool
              ) -> list[tuple[float, tuple[float, ...] | None]]:
    base = _interval(config, kpi, source)
    if not split or kpi.kind == "backlog":  # a backlog is a "now" value, without windows
        return [(base, None)]
    windows = [w.seconds for w in config.kpis.windows]
    if len(windows) == 1:
        return [(base, None)]
    overrides = (config.sources[source].window_intervals,
                 config.kpis.settings(kpi.key).window_intervals)
    groups = cadence.groups(windows, base, *overrides)
    return [(interval, None if len(groups) == 1 else ws) for interval, ws in groups]


def _merge_key(kpi: Kpi) -> tuple[Any, ...]:
    if kpi.anchor == "deadline" or kpi.kind == "backlog" or kpi.key == "first_contact_resolution":
        return (kpi.key,)
    return (kpi.anchor, kpi.dimensions)


def run_unit(engine: sa.Engine, config: Config, unit: Unit, as_of: datetime,
             caps: LabelCaps, load: LoadMeter | None = None) -> list[KpiResult]:
    """Evaluate one unit; never raises for database or mapping errors (they become results).
    ``load`` accumulates the unit's query time, queries and rows."""
    ctx = Context(config, as_of, unit.windows)
    meter = load or LoadMeter()
    if unit.entity is None:
        return [_freshness(engine, ctx, unit, meter)]
    entity = MappedEntity(unit.entity, config.entities[unit.entity])
    started = time.perf_counter()
    try:
        plans = unit_plans(ctx, unit, entity)
        with meter.timed(unit.source, unit.label) as counted:
            cells, rows, in_database = _execute(engine, entity, plans, caps, unit.name)
            counted.append(rows)
    except Exception as exc:
        # Retry KPI by KPI only for a query error: a timeout (a lock, a slow plan) would just
        # cost one more timeout per KPI, and an unreachable source fails them all anyway.
        if len(unit.kpis) > 1 and not timed_out(exc) and reachable(engine):
            log.info("merged query %s failed (%s); evaluating its KPIs one by one",
                     unit.name, describe(exc))
            return [r for kpi in unit.kpis for r in run_unit(
                engine, config, replace(unit, kpis=(kpi,)), as_of, caps, load)]
        return [_failed(unit, kpi, as_of, exc, started) for kpi in unit.kpis]
    elapsed = time.perf_counter() - started
    return [KpiResult(kpi, unit.source, as_of, tuple(caps.fold(kpi, c, in_database)), None,
                      None, elapsed, rows, unit.window_labels, plan.variant)
            for kpi, c, plan in zip(unit.kpis, cells, plans, strict=True)]


def unit_plans(ctx: Context, unit: Unit, entity: MappedEntity) -> list[Plan]:
    """The plans of a unit's KPIs, the entity's exclusion rules applied: what a refresh
    and a backfill both run."""
    return [with_exclusions(BUILDERS[k.key](ctx, k, entity)) for k in unit.kpis]


def _execute(engine: sa.Engine, entity: MappedEntity, plans: list[Plan], caps: LabelCaps,
             name: str) -> tuple[list[list[Cell]], int, dict[str, int]]:
    """Cells per plan, rows read, and per label the values the database folded into other.
    A label found too wide for its cap is folded in the database, and the query run again so
    (labels.py)."""
    labels = [label for label, _ in plans[0].dims]
    capped = {label for plan in plans for label in plan.kpi.label_dimensions}
    while True:
        fold = caps.in_database(name)
        query, layout = compose(plans, engine.dialect.name, fold=fold)
        watched = {i: label for i, label in enumerate(labels) if label in capped and i not in fold}
        with engine.connect() as conn:
            _set_zone(conn, entity)
            _hash_groups(conn)
            try:
                rows = _rows(conn, query, caps, watched)
            except TooWide as wide:
                log.warning("query %s: label %s has over %d distinct values; folding it in "
                            "the database from now on", name, labels[wide.index],
                            WIDE * caps.labels.cap(labels[wide.index]))
                caps.widened(name, wide.index, labels[wide.index])
                continue
            finally:
                conn.rollback()
        away = folded_away(plans, layout, rows, fold)
        return (decode(plans, layout, rows), len(rows),
                {labels[i]: n for i, n in away.items()})


def _rows(conn: sa.Connection, query: Any, caps: LabelCaps, watched: dict[int, str]
          ) -> list[Any]:
    """The query's rows, TooWide when a watched label has too many values. A plain query
    first, cut at PROBE_ROWS (a refresh returns a few thousand rows); only past that are the
    rows streamed through a server-side cursor (which PostgreSQL runs without parallel
    workers), so memory never holds more than the cap allows."""
    if not watched:
        result = conn.execute(query)
        with fetching():
            return list(result.all())
    result = conn.execute(_cut(query, PROBE_ROWS + 1))
    with fetching():
        probe = result.all()
    rows = caps.rows(probe, watched)
    if len(rows) <= PROBE_ROWS:
        return rows
    del probe, rows
    result = conn.execution_options(yield_per=STREAMED_ROWS).execute(query)
    try:
        with fetching():
            return caps.rows(result, watched)
    finally:
        result.close()


def _cut(query: Select[Any], rows: int) -> Select[Any]:
    """The query's first ``rows`` rows, planned as the whole query. A LIMIT on the aggregate
    itself lets PostgreSQL's planner pick a plan fast to the first rows (walking a label index
    in order: 3.6 s instead of 0.2 s for one unit at 1M appointments); a materialised CTE is
    planned for all its rows."""
    whole = query.cte("whole").prefix_with("MATERIALIZED", dialect="postgresql")
    return sa.select(whole).limit(rows)


def _set_zone(conn: sa.Connection, entity: MappedEntity) -> None:
    """PostgreSQL compares naive binds with timestamptz columns in the session zone."""
    if conn.dialect.name == "postgresql" and entity.config.timezone != "UTC":
        conn.execute(sa.text("SELECT set_config('TimeZone', :zone, true)"),
                     {"zone": entity.config.timezone})


def _hash_groups(conn: sa.Connection) -> None:
    """A refresh's groups are few (clinics x window slots x bands), but PostgreSQL's planner
    cannot count a CASE's values and guesses up to one group per row; within the default
    4MB work_mem it then sorts the window's rows, spilling to disk. 32MB for the refresh's
    transaction lets it hash them (at 10M: appointment unit 1.21 s -> 1.09 s, no-show by
    reminder 0.35 s -> 0.25 s); a hash that outgrows it spills as before, so memory stays
    bounded. Not for the backfill, whose slotted groups are many: its reads gain nothing
    from it (appointment unit's 120 by-day reads at 1M: 2.5 s at 4MB and at 32MB), so they
    keep the server's default."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT set_config('work_mem', '32MB', true)"))


def fresh_entities(config: Config, source: str) -> list[str]:
    """The source's entities whose freshness field is mapped, by name."""
    return sorted(n for n, e in config.entities.items() if e.source == source
                  and e.mapped(model.FRESHNESS_FIELD[n]))


def _freshness(engine: sa.Engine, ctx: Context, unit: Unit, meter: LoadMeter) -> KpiResult:
    """Newest record per entity of the source (MAX on the raw column, bounded by now)."""
    kpi, started, cells = unit.kpis[0], time.perf_counter(), []
    names = fresh_entities(ctx.config, unit.source)
    try:
        with meter.timed(unit.source, unit.label) as counted, engine.connect() as conn:
            for name in names:
                entity = MappedEntity(name, ctx.config.entities[name])
                _set_zone(conn, entity)
                col = entity.col(model.FRESHNESS_FIELD[name])
                query = sa.select(sa.func.max(col)).select_from(entity.from_).where(
                    col <= at(ctx.now(entity)))
                result = conn.execute(query)
                with fetching():
                    newest = entity.instant(result.scalar())
                counted.append(1)
                if newest is not None:
                    cells.append(Cell((("entity", name),), {"timestamp": newest.timestamp()}))
            conn.rollback()
    except Exception as exc:
        return _failed(unit, kpi, ctx.as_of, exc, started)
    return KpiResult(kpi, unit.source, ctx.as_of, tuple(cells), None, None,
                     time.perf_counter() - started, len(cells))


def _failed(unit: Unit, kpi: Kpi, as_of: datetime, exc: BaseException, started: float
            ) -> KpiResult:
    message = describe(exc)
    log.warning("refresh of %s on source %s failed: %s", kpi.key, unit.source, message)
    return KpiResult(kpi, unit.source, as_of, (), None, message,
                     time.perf_counter() - started, 0, unit.window_labels)


def unavailable(config: Config, as_of: datetime) -> list[KpiResult]:
    """Results for the KPIs this mapping cannot compute, with the reason."""
    out = []
    for position, kpi in enumerate(catalog.load()):
        if not shards.owns_position(position, config.shard):
            continue
        reason = unavailable_reason(kpi, config)
        if reason and effective.enabled(kpi, config):
            out.append(KpiResult(kpi, "", as_of, unavailable=reason))
    return out


def evaluate(config: Config, engines: dict[str, sa.Engine], as_of: datetime | None = None,
             only: Iterable[str] | None = None, caps: LabelCaps | None = None
             ) -> list[KpiResult]:
    """Evaluate every enabled KPI once (``carekpi collect``)."""
    as_of = as_of or datetime.now(UTC)
    caps = caps or LabelCaps(config.labels)
    wanted = set(only) if only else None
    chosen = [u for u in units(config, cadences=False)
              if not wanted or wanted & {k.key for k in u.kpis}]
    # Each source's units on its pool_size connections, in the exporter's start order (the
    # heaviest beside the others): the same concurrency ``serve`` refreshes with.
    sizes = {name: source.pool_size for name, source in config.sources.items()}
    pools = {name: ThreadPoolExecutor(max_workers=sizes[name],
                                      thread_name_prefix=f"carekpi-collect-{name}")
             for name in {u.source for u in chosen}}
    try:
        started = {i: pools[chosen[i].source].submit(
            run_unit, engines[chosen[i].source], config, chosen[i], as_of, caps)
            for i in start_order(chosen, sizes)}
        results = [r for i in range(len(chosen)) for r in started[i].result()]
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
    return [*results, *unavailable(config, as_of)]
