"""KPIs whose rows change with the evaluation time, read once for a whole backfill.

A refresh at instant t selects each row by a range of one of its timestamps per window (a
deadline on the business clock turns into a range of receipt times, a backlog into its
lookback) and reads a later event as of t (an answer given after t counts as not given).
The plan builders' own time helpers record those ranges at every instant (plan.Trace), in
Python, without a query. One query then groups the rows by labels, by position (the
timestamp on a grid fine enough for every range bound), by row class and by the instant
their event happened, each measure computed twice: as if the event had happened and as if
not. Per window, a group counts at the interval of instants whose range holds it: its
pending values before its event, its happened values from it on. Sums become differences
per instant, added up as the instants are swept in order; minima and maxima are painted
over their intervals.

``read`` returns None when a KPI's ranges do not fit a whole-second grid (or do not move
forward with time, or read two later events): the caller then evaluates it per instant.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime
from fractions import Fraction
from itertools import pairwise
from typing import Any

import sqlalchemy as sa

from collectors import evaluate
from collectors.plan import Context, Plan, Trace, at
from collectors.query import EXTREMES, cells, compose, slot_parts
from collectors.sqlfuncs import ceil_div, floor_div, seconds_between
from kpis import model
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.db.entity import MappedEntity
from kpis.durations import Duration
from kpis.snapshot import Cell

_NEVER = -1  # an event index: not happened by the last instant (or never)


@dataclass
class Timeline:
    """One KPI's cells (before label caps) at every instant, swept in order."""

    kpi: Kpi
    plan: Plan
    windows: list[str]
    names: list[str]
    count: int
    sums: dict[tuple[tuple[str, ...], int], dict[tuple[int, int, str], Any]] = field(
        default_factory=dict)
    extremes: dict[tuple[tuple[str, ...], int], dict[tuple[int, int, str], list[Any]]] = field(
        default_factory=dict)
    presence: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    _at: int = -1
    _running: dict[tuple[tuple[str, ...], int], dict[tuple[int, int, str], Any]] = field(
        default_factory=dict)
    _present: dict[tuple[str, ...], int] = field(default_factory=dict)

    def cells(self, k: int) -> list[Cell]:
        """The KPI's cells at instant k (instants are best asked in order)."""
        if k < self._at:
            self._at, self._running, self._present = -1, {}, {}
        while self._at < k:
            self._at += 1
            self._step(self._at)
        out = []
        for dims, n in self._present.items():
            if n <= 0:
                continue
            labels = tuple(zip(self.names, dims, strict=True))
            for w, window in enumerate(self.windows):
                parts = {key: float(v) for key, v in self._running.get((dims, w), {}).items()}
                for key, painted in self.extremes.get((dims, w), {}).items():
                    parts[key] = painted[k]
                cell_labels = labels + ((("window", window),) if window else ())
                out.append(cells([self.plan], cell_labels, parts)[0])
        return out

    def _step(self, k: int) -> None:
        for dims, diff in self.presence.items():
            if diff[k]:
                self._present[dims] = self._present.get(dims, 0) + diff[k]
        for at_key, keys in self.sums.items():
            running = self._running.setdefault(at_key, {})
            for key, diff in keys.items():
                if diff[k]:
                    running[key] = running.get(key, 0) + diff[k]


@dataclass
class Newest:
    """The freshness KPI at every instant: each entity's newest record by then."""

    kpi: Kpi
    entities: list[tuple[str, list[float | None]]]  # name, per instant a POSIX time

    def cells(self, k: int) -> list[Cell]:
        return [Cell((("entity", name),), {"timestamp": moment})
                for name, newest in self.entities if (moment := newest[k]) is not None]


def newest(config: Config, engine: sa.Engine, unit: evaluate.Unit, instants: list[datetime]
           ) -> Newest:
    """Each entity's newest record at every instant: the newest before the first instant,
    then the newest per instant after it, in two queries per entity."""
    out = []
    with engine.connect() as conn:
        for name in evaluate.fresh_entities(config, unit.source):
            entity = MappedEntity(name, config.entities[name])
            evaluate._set_zone(conn, entity)
            col = entity.col(model.FRESHNESS_FIELD[name])
            nows = [entity.local_time(instant) for instant in instants]
            offsets = [int((now - nows[0]).total_seconds()) for now in nows]
            fine = math.gcd(*offsets) or 1
            position = ceil_div(seconds_between(at(nows[0]), col), fine)
            before = conn.execute(sa.select(sa.func.max(col)).select_from(entity.from_).where(
                col <= at(nows[0]))).scalar()
            after = sorted(conn.execute(
                sa.select(position, sa.func.max(col)).select_from(entity.from_)
                .where(col > at(nows[0]), col <= at(nows[-1])).group_by(position)).all(),
                key=lambda row: float(row[0]))
            newest, i, line = entity.instant(before), 0, []
            for offset in offsets:
                while i < len(after) and float(after[i][0]) * fine <= offset:
                    moment = entity.instant(after[i][1])
                    if moment is not None and (newest is None or moment > newest):
                        newest = moment
                    i += 1
                line.append(None if newest is None else newest.timestamp())
            out.append((name, line))
        conn.rollback()
    return Newest(unit.kpis[0], out)


@dataclass(frozen=True)
class _Grid:
    """Positions on a whole-second grid from ``origin`` (naive, the entity's local time)."""

    origin: datetime
    fine: int

    def pos(self, moment: datetime) -> int:
        return int((moment - self.origin).total_seconds()) // self.fine


def read(config: Config, engine: sa.Engine, unit: evaluate.Unit, kpi: Kpi,
         instants: list[datetime]) -> Timeline | None:
    """The KPI read once for ``instants`` (aware, UTC, ascending); None: not replayable."""
    assert unit.entity is not None
    entity = MappedEntity(unit.entity, config.entities[unit.entity])
    one = replace(unit, kpis=(kpi,))
    traces = []
    for instant in instants:
        ctx = Context(config, instant, trace=Trace())
        evaluate.unit_plans(ctx, one, entity)
        assert ctx.trace is not None
        traces.append(ctx.trace)
    first = traces[0]
    shape = (first.column, len(first.classes), [label for label, _ in first.ranges],
             len(first.due))
    if len(first.events) > 1 or any(
            (t.column, len(t.classes), [label for label, _ in t.ranges], len(t.due)) != shape
            or t.events != first.events for t in traces):
        return None
    nows = [entity.local_time(instant) for instant in instants]
    grid = _fit(traces, nows)
    if grid is None:
        return None
    windows = [label for label, _ in first.ranges]
    nclasses = len(first.classes)
    # Per window and class, the positions of each instant's [lo, hi) range; per class, due.
    lows = [[[grid.pos(t.ranges[w][1][c][0]) for t in traces] for c in range(nclasses)]
            for w in range(len(windows))]
    highs = [[[grid.pos(t.ranges[w][1][c][1]) for t in traces] for c in range(nclasses)]
             for w in range(len(windows))]
    dues = [[grid.pos(t.due[c]) for t in traces] for c in range(len(first.due))]
    if not all(_ascending(seq) for seqs in (*lows, *highs, dues) for seq in seqs):
        return None
    now_pos = [grid.pos(now) for now in nows]

    plans, key, span = _plans(config, one, entity, instants, grid, first, nows)
    where_hi = max(t.ranges[w][1][c][1] for t in traces for w in range(len(windows))
                   for c in range(nclasses))
    col = entity.col(first.column)
    where = sa.and_(col >= at(grid.origin), col < at(where_hi))
    plans = [replace(plan, where=where) for plan in plans]
    query, layout = compose(plans, engine.dialect.name, key, every_bucket=True)
    with engine.connect() as conn:
        evaluate._set_zone(conn, entity)
        rows = conn.execute(query).all()
        conn.rollback()

    line = Timeline(kpi, plans[0], windows, [name for name, _ in plans[0].dims], len(instants))
    due_measure = {m for m, measure in enumerate(plans[0].measures) if measure.name == "value"
                   } if first.due else set()
    for dims, groups in slot_parts(plans, layout, rows).items():
        presence = line.presence.setdefault(dims, [0] * (line.count + 1))
        for packed, parts in groups.items():
            rest, event = divmod(packed, span)
            f, c = divmod(rest, nclasses)
            e = line.count if event - 1 == _NEVER else bisect_left(now_pos, event - 1)
            kd = bisect_right(dues[c], f) if first.due else 0
            first_k, last_k = line.count, -1
            for w in range(len(windows)):
                ks = bisect_right(highs[w][c], f)  # the first instant whose range ends after f
                ke = bisect_right(lows[w][c], f) - 1  # the last instant whose range starts by f
                if ks > ke:
                    continue
                first_k, last_k = min(first_k, ks), max(last_k, ke)
                sums = line.sums.setdefault((dims, w), {})
                extremes = line.extremes.setdefault((dims, w), {})
                for (p, m, part), value in parts.items():
                    if p < 0 or value is None:
                        continue
                    lo = max(ks, kd) if m in due_measure else ks
                    a, b = (lo, min(ke, e - 1)) if p == 0 else (max(lo, e), ke)
                    if a > b:
                        continue
                    if part in EXTREMES:
                        extremes.setdefault((0, m, part), []).append((a, b, value))
                        continue
                    diff: Any = sums.get((0, m, part))
                    if diff is None:
                        diff = sums[(0, m, part)] = (
                            [0] * (line.count + 1) if part == "sum"
                            else array("q", bytes(8 * (line.count + 1))))
                    amount: Any = Fraction(value) if part == "sum" else int(value)
                    diff[a] += amount
                    diff[b + 1] -= amount
            if first_k <= last_k:
                presence[first_k] += 1
                presence[last_k + 1] -= 1
    for keys in line.extremes.values():
        for key, intervals in keys.items():
            keys[key] = _paint(intervals, line.count, key[2])
    return line


def _plans(config: Config, one: evaluate.Unit, entity: MappedEntity, instants: list[datetime],
           grid: _Grid, first: Trace, nows: list[datetime]) -> tuple[list[Plan], Any, int]:
    """The pending and happened plans (one plan without a later event), and the packed
    grouping key: (position * classes + class) * span + event position + 1."""
    span_seconds = (instants[-1] - instants[0]).total_seconds() + max(
        w.seconds for w in config.kpis.windows)
    spanning = config.model_copy(update={"kpis": config.kpis.model_copy(
        update={"windows": [Duration(span_seconds)]})})
    states = ("pending", "happened") if first.events else ("pending",)
    plans = [evaluate.unit_plans(Context(spanning, instants[-1], events=state), one,
                                 entity)[0] for state in states]
    col = entity.col(first.column)
    position = floor_div(seconds_between(at(grid.origin), col), grid.fine)
    classes = first.classes
    cls: Any = sa.literal(0) if len(classes) == 1 else sa.case(
        *((cond, sa.literal(c)) for c, cond in enumerate(classes[:-1])),
        else_=sa.literal(len(classes) - 1))
    last = grid.pos(nows[-1])
    span = last + 2  # event positions 0..last, and NEVER
    if first.events:
        ev = entity.col(first.events[0])
        event: Any = sa.case(
            (ev.is_(None), sa.literal(_NEVER)), (ev > at(nows[-1]), sa.literal(_NEVER)),
            (ev <= at(nows[0]), sa.literal(0)),
            else_=ceil_div(seconds_between(at(grid.origin), ev), grid.fine))
    else:
        event = sa.literal(_NEVER)
    key = (position * len(classes) + cls) * span + event + 1
    return plans, key, span


def _fit(traces: list[Trace], nows: list[datetime]) -> _Grid | None:
    """The coarsest whole-second grid holding every range bound and instant, from the
    earliest of them; None when one falls between seconds."""
    moments = [*nows, *(b for t in traces for _, bounds in t.ranges for pair in bounds
                        for b in pair), *(d for t in traces for d in t.due)]
    origin = min(moments)
    fine = 0
    for moment in set(moments):
        offset = (moment - origin).total_seconds()
        if offset != int(offset):
            return None
        fine = math.gcd(fine, int(offset))
    return _Grid(origin, fine or 1)


def _ascending(values: list[int]) -> bool:
    return all(a <= b for a, b in pairwise(values))


def _paint(intervals: list[tuple[int, int, Any]], n: int, part: str) -> list[Any]:
    """Per instant the minimum (or maximum) of the values whose interval covers it: the
    values in order, best first, each filling the instants still empty (a union-find over
    the instants skips the filled ones)."""
    out: list[Any] = [None] * n
    after = list(range(n + 1))  # the first unfilled instant at or after i

    def find(i: int) -> int:
        while after[i] != i:
            after[i] = after[after[i]]
            i = after[i]
        return i

    for a, b, value in sorted(intervals, key=lambda x: x[2], reverse=part == "max"):
        i = find(a)
        while i <= b:
            out[i] = value
            after[i] = i + 1
            i = find(i + 1)
    return out


