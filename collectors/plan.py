"""A KPI's query plan: which rows (window predicates on raw columns), grouped by which labels,
counting what. Plans on the same entity, anchor and labels are merged into one SELECT."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from collectors.business_clock import BusinessClock
from collectors.sqlfuncs import number
from kpis.catalog import Kpi
from kpis.config import Config, KpiSettings
from kpis.db.entity import MappedEntity
from kpis.durations import Duration, format_seconds
from kpis.snapshot import EXCLUDED


@dataclass
class Measure:
    """A count of rows meeting ``when``; with ``value`` a histogram of it (seconds), or with
    ``value`` and no buckets just its count and extremes (for the plausibility guard)."""

    name: str
    when: ColumnElement[bool]
    value: ColumnElement[Any] | None = None
    buckets: tuple[float, ...] = ()
    heavy: bool = False  # costly per row: computed once in a fenced sub-query


def excluded(reason: str, when: ColumnElement[bool]) -> Measure:
    """Rows left out of the KPI for a data defect, counted per reason (never silently)."""
    return Measure(f"{EXCLUDED}{reason}", sa.func.coalesce(when, sa.false()))


@dataclass
class Plan:
    kpi: Kpi
    entity: MappedEntity
    where: ColumnElement[bool]
    windows: list[tuple[str, ColumnElement[bool]]]  # ("" = a "now" value: no window label)
    measures: list[Measure]
    dims: list[tuple[str, ColumnElement[Any]]] = field(default_factory=list)
    merge_key: tuple[Any, ...] = ()
    variant: str | None = None  # the pinned variant the mapping allowed (see the catalog)


def with_exclusions(plan: Plan) -> Plan:
    """The plan with the entity's exclusion rules applied: matching records leave every
    measure and are counted per rule (the first matching rule counts a record)."""
    rules = plan.entity.exclusions()
    if not rules:
        return plan
    keep = sa.not_(plan.entity.excluded())
    measures = [replace(m, when=sa.and_(keep, m.when)) for m in plan.measures]
    earlier: list[ColumnElement[bool]] = []
    for reason, rule in rules:
        matched = sa.func.coalesce(rule, sa.false())
        measures.append(excluded(reason, sa.and_(matched, *(sa.not_(e) for e in earlier))))
        earlier.append(matched)
    return replace(plan, measures=measures)


def tolerate_skew(entity: MappedEntity, seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    """A duration between two systems' clocks: slightly negative (down to -clock_skew) counts
    as 0; more negative stays negative, so it is left out as negative_duration."""
    skew = entity.clock_skew
    if skew <= 0:
        return seconds
    return sa.case((sa.and_(seconds < number(0), seconds >= number(-skew)), number(0)),
                   else_=seconds)


@dataclass
class Trace:
    """How a plan built at one instant depends on that instant, for the backfill's one pass:
    the stored timestamp its rows are selected on, the row classes (mutually exclusive), per
    window and class the [lo, hi) range of that timestamp, per class the time before which a
    row counts in the measure named ``value`` (``due``: the SLA breach backlog, whose replay
    plans leave that condition out), and the later events read as of the instant. Recorded
    by the time helpers below when a context carries one."""

    column: str = ""
    classes: list[ColumnElement[bool]] = field(default_factory=list)
    ranges: list[tuple[str, list[tuple[datetime, datetime]]]] = field(default_factory=list)
    due: list[datetime] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What every plan needs: the config, the evaluation time, the windows.

    ``events``: how a later event (:func:`pinned`) reads: as of the evaluation time (a
    refresh), or as if it had happened, or not yet (the backfill's two states of a row)."""

    config: Config
    as_of: datetime  # aware, UTC
    only: tuple[float, ...] | None = None  # the windows refreshed now (seconds); None: all
    events: str = "as_of"  # or "happened", "pending"
    trace: Trace | None = None  # with events "as_of": plans built for their trace alone

    @property
    def windows(self) -> list[tuple[str, float]]:
        """(label, seconds) of the windows evaluated, shortest first: plans scan only their
        range, so a refresh of the short windows reads a day of rows, not a month."""
        return [(format_seconds(w.seconds), w.seconds) for w in self.config.kpis.windows
                if self.only is None or w.seconds in self.only]

    @property
    def replay(self) -> bool:
        """Plans for the backfill's one pass: conditions on the evaluation time itself are
        left to it (see Trace)."""
        return self.events != "as_of"

    def settings(self, kpi: Kpi) -> KpiSettings:
        return self.config.kpis.settings(kpi.key)

    def now(self, entity: MappedEntity) -> datetime:
        return entity.local_time(self.as_of)

    def since(self, entity: MappedEntity, seconds: float) -> datetime:
        return entity.local_time(self.as_of - timedelta(seconds=seconds))

    def clock(self, entity: MappedEntity, lookback: float, business: bool = True) -> BusinessClock:
        """A clock covering receipts from ``lookback`` before the evaluation time to it."""
        calendar = self.config.kpis.calendar if business else None
        start = self.since(entity, lookback + 86400)
        return BusinessClock(calendar, entity.zone, start, self.now(entity) + timedelta(days=1),
                             sql=self.trace is None or self.replay)

    def sla_seconds(self, sla: Duration) -> float:
        """An SLA on the business clock: business days count calendar.business_day each, or
        24 wall-clock hours without a calendar."""
        if not sla.is_business:
            return sla.seconds
        calendar = self.config.kpis.calendar
        per_day = calendar.business_day_seconds if calendar else 86400.0
        return sla.business_days * per_day


def at(value: datetime) -> ColumnElement[Any]:
    return sa.literal(value, sa.DateTime())


Selection = tuple[ColumnElement[bool], list[tuple[str, ColumnElement[bool]]]]


def ranged(ctx: Context, entity: MappedEntity, column: str,
           classes: Sequence[ColumnElement[bool]],
           ranges: list[tuple[str, list[tuple[datetime, datetime]]]]) -> Selection:
    """The row predicate and per-window predicates of rows whose ``column`` falls, for its
    class, in the window's [lo, hi) range (recorded in the context's trace)."""
    if ctx.trace is not None:
        ctx.trace.column, ctx.trace.classes = column, list(classes)
        ctx.trace.ranges = ranges
    col = entity.col(column)
    windows = []
    for label, bounds in ranges:
        if len(set(bounds)) == 1:  # the classes are exhaustive: one range for all
            lo, hi = bounds[0]
            windows.append((label, sa.and_(col >= at(lo), col < at(hi))))
            continue
        windows.append((label, sa.or_(*(sa.and_(cond, col >= at(lo), col < at(hi))
                                         for cond, (lo, hi) in zip(classes, bounds,
                                                                   strict=True)))))
    lows = [lo for _, bounds in ranges for lo, _ in bounds]
    highs = [hi for _, bounds in ranges for _, hi in bounds]
    return sa.and_(col >= at(min(lows)), col < at(max(highs))), windows


def anchored(ctx: Context, entity: MappedEntity, anchor: str) -> Selection:
    """Rows whose anchor timestamp falls in each window ending at the evaluation time."""
    now = ctx.now(entity)
    return ranged(ctx, entity, anchor, [sa.true()],
                  [(label, [(ctx.since(entity, s), now)]) for label, s in ctx.windows])


def deadline_anchored(
    ctx: Context, entity: MappedEntity, receipt: str, clock: BusinessClock,
    classes: Sequence[tuple[ColumnElement[bool], float]],
) -> Selection:
    """Rows whose deadline (receipt + SLA on the clock) falls in each window.

    classes: mutually exclusive row conditions with their SLA in clock seconds. Each deadline
    window becomes a range of receipt times per class, on the raw receipt column.
    """
    now = ctx.now(entity)
    ranges = [(label, [clock.receipt_range(ctx.since(entity, seconds), now, sla)
                       for _, sla in classes]) for label, seconds in ctx.windows]
    return ranged(ctx, entity, receipt, [cond for cond, _ in classes], ranges)


def pinned(ctx: Context, entity: MappedEntity, name: str) -> ColumnElement[Any]:
    """A later event as of the evaluation time: values after it count as not yet happened."""
    col = entity.col(name)
    if ctx.trace is not None and name not in ctx.trace.events:
        ctx.trace.events.append(name)
    if ctx.events == "happened":
        return col
    if ctx.events == "pending":
        return sa.cast(sa.null(), sa.DateTime())
    return sa.case((col <= at(ctx.now(entity)), col), else_=None)


def label_dims(kpi: Kpi, entity: MappedEntity) -> list[tuple[str, ColumnElement[Any]]]:
    """The KPI's mapped label dimensions; an unmapped one is the constant ``all``."""
    dims: list[tuple[str, ColumnElement[Any]]] = []
    for name in kpi.label_dimensions:
        expr = entity.col(name) if entity.mapped(name) else sa.literal_column("'all'")
        dims.append((name, expr))
    return dims
