"""KPI history: every instant of a grid, exactly as ``carekpi collect --as-of t`` gives it.

One pass, not a refresh per instant: each unit of KPIs whose rows count by their anchor
timestamp alone is read once over ``[start - longest window, end)``, grouped by labels, time
slot (a step of the grid) and histogram bucket: the same query composition as a refresh
(collectors/query.py), with time slots instead of window slots. Every instant's windows are
then sums of consecutive slots (prefix sums in Python). Slot bounds are the grid instants in
the entity's local time, so a DST change moves them exactly as it moves a refresh's windows.

KPIs whose rows change with the evaluation time itself (a response that arrives later, a
deadline on the business clock, a backlog, the repeat-call check, freshness) are also read
once, and replayed instant by instant (collectors/replay.py). A KPI whose time ranges do not
fit that pass is evaluated at each instant, as a refresh would (``per_instant``).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Any

import sqlalchemy as sa

from collectors import evaluate, replay
from collectors.labels import LabelCaps
from collectors.plan import Context, Plan, at
from collectors.query import EXTREMES, ROWS, Parts, cells, combine, compose, slot_parts
from collectors.sqlfuncs import floor_div, seconds_between
from kpis.catalog import Kpi
from kpis.config import Config
from kpis.db.entity import MappedEntity
from kpis.db.errors import describe
from kpis.durations import Duration, format_seconds
from kpis.errors import CareKPIError
from kpis.snapshot import Cell, KpiResult

# Rows count by their anchor timestamp alone: one pass over time slots gives every instant.
SLOTTED = frozenset({
    "no_show", "late_cancellation", "lead_time", "wait_to_be_seen", "visit_cycle_time",
    "reminder_coverage", "no_show_by_reminder", "online_booking", "telehealth",
    "call_answer_wait", "call_abandonment", "service_level", "top_box", "nps", "csat",
})


# A unit with many aggregates per group (histograms counted per bound) is read a day of
# slots per query: the database's hash of groups (labels x slots x aggregates) then fits its
# work_mem instead of spilling to disk. Measured at 1M appointments on PostgreSQL, 120 days:
# the appointment unit (66 aggregates) 3.9 s in one query, 3.1 s by day; online booking (3
# aggregates, an index less correlated with the table) 0.6 s in one query, 1.0 s by day.
CHUNK_SECONDS = 86400
WIDE = 16


class BackfillError(CareKPIError):
    """Bad backfill input or a failed read: one line, exit 2."""


@dataclass(frozen=True)
class Grid:
    """Instants start, start + step, ... <= end (aware, UTC)."""

    start: datetime
    end: datetime
    step: float

    @property
    def count(self) -> int:
        return int((self.end - self.start).total_seconds() // self.step) + 1

    def instant(self, k: int) -> datetime:
        return self.start + timedelta(seconds=k * self.step)


def check(config: Config, grid: Grid) -> None:
    """Refuse a grid the slot sums cannot serve exactly, in one line."""
    if grid.end < grid.start:
        raise BackfillError(f"--end {grid.end:%Y-%m-%dT%H:%M:%SZ} is before --start "
                            f"{grid.start:%Y-%m-%dT%H:%M:%SZ}")
    if grid.step <= 0:
        raise BackfillError("--step must be longer than zero")
    windows = [w.seconds for w in config.kpis.windows]
    if grid.step > min(windows):
        raise BackfillError(f"--step {format_seconds(grid.step)} is longer than the smallest "
                            f"window ({format_seconds(min(windows))})")
    odd = [w for w in windows if w % grid.step]
    if odd:
        raise BackfillError(f"--step {format_seconds(grid.step)} does not divide the "
                            f"{format_seconds(odd[0])} window")


@dataclass
class _Slotted:
    """One unit's prefix sums: label values -> part -> running total over slots."""

    unit: evaluate.Unit
    plans: list[Plan]
    prefix: dict[tuple[str, ...], dict[tuple[int, int, str], list[Any]]]


class Backfill:
    """Results per instant of the grid; ``first`` skips instants already written."""

    def __init__(self, config: Config, engines: dict[str, sa.Engine], grid: Grid,
                 first: int = 0) -> None:
        check(config, grid)
        self.config, self.engines, self.grid, self.first = config, engines, grid, first
        self.longest = max(w.seconds for w in config.kpis.windows)
        self.lead = int(self.longest // grid.step)  # slots before the first instant
        self.units = evaluate.units(config, cadences=False)
        self._slotted: list[_Slotted] = []
        self._replayed: list[tuple[evaluate.Unit, replay.Timeline | replay.Newest]] = []
        self._others: list[evaluate.Unit] = []
        instants = [self.instant(k) for k in range(self.count)]
        for unit in self.units:
            inside = tuple(k for k in unit.kpis if k.key in SLOTTED)
            if inside and unit.entity is not None:
                self._slotted.append(self._read(replace(unit, kpis=inside)))
            outside = []
            for kpi in unit.kpis:
                if kpi.key in SLOTTED:
                    continue
                line = self._replay(unit, kpi, instants)
                if line is None:
                    outside.append(kpi)
                else:
                    self._replayed.append((unit, line))
            if outside:
                self._others.append(replace(unit, kpis=tuple(outside)))

    @property
    def per_instant(self) -> list[str]:
        """The KPIs evaluated at every instant, as a refresh (their ranges do not fit the
        one pass: see collectors/replay.py)."""
        return [kpi.key for unit in self._others for kpi in unit.kpis]

    def _replay(self, unit: evaluate.Unit, kpi: Kpi, instants: list[datetime]
                ) -> replay.Timeline | replay.Newest | None:
        engine = self.engines[unit.source]
        try:
            if unit.entity is None:
                return replay.newest(self.config, engine, unit, instants)
            return replay.read(self.config, engine, unit, kpi, instants)
        except Exception as exc:
            raise BackfillError(f"source {unit.source}: reading {unit.entity or 'freshness'} "
                                f"for {kpi.key} failed: {describe(exc)}") from None

    def instant(self, k: int) -> datetime:
        return self.grid.instant(self.first + k)

    @property
    def count(self) -> int:
        return self.grid.count - self.first

    def _bounds(self, entity: MappedEntity) -> list[datetime]:
        """Slot bounds in the entity's local time: the grid instants, from the first
        instant's longest window to the last instant."""
        origin = self.instant(0) - timedelta(seconds=self.longest)
        n = self.lead + self.count
        return [entity.local_time(origin + timedelta(seconds=i * self.grid.step))
                for i in range(n)]

    def _read(self, unit: evaluate.Unit) -> _Slotted:
        """The unit's one query over the whole range, grouped by time slot."""
        assert unit.entity is not None
        entity = MappedEntity(unit.entity, self.config.entities[unit.entity])
        end = self.instant(self.count - 1)
        span = (end - self.instant(0)).total_seconds() + self.longest
        spanning = self.config.model_copy(update={"kpis": self.config.kpis.model_copy(
            update={"windows": [Duration(span)]})})
        ctx = Context(spanning, end)
        plans = evaluate.unit_plans(ctx, unit, entity)
        bounds = self._bounds(entity)
        offsets = [round((b - bounds[0]).total_seconds()) for b in bounds]
        fine = math.gcd(*offsets[1:]) if len(offsets) > 1 else int(self.grid.step)
        fine = fine or int(self.grid.step)
        anchor = entity.col(unit.kpis[0].anchor)
        slot = floor_div(seconds_between(at(bounds[0]), anchor), fine)
        dialect = self.engines[unit.source].dialect.name
        query, layout = compose(plans, dialect, slot)
        queries = [query] if len(layout) < WIDE else [
            compose([replace(p, where=sa.and_(p.where, anchor >= at(lo), anchor < at(hi)))
                     for p in plans], dialect, slot)[0]
            for lo, hi in _chunks(bounds, max(1, int(CHUNK_SECONDS // self.grid.step)))]
        rows: list[Any] = []
        try:
            with self.engines[unit.source].connect() as conn:
                evaluate._set_zone(conn, entity)
                for query in queries:
                    rows += conn.execute(query).all()
                conn.rollback()
        except Exception as exc:
            raise BackfillError(f"source {unit.source}: reading {unit.entity} failed: "
                                f"{describe(exc)}") from None
        fine_bounds = [o // fine for o in offsets]
        by_slot: dict[tuple[str, ...], dict[int, Parts]] = {}
        for dims, slots in slot_parts(plans, layout, rows).items():
            merged: dict[int, Parts] = by_slot.setdefault(dims, {})
            for f, parts in slots.items():
                i = bisect_right(fine_bounds, f) - 1
                target = merged.setdefault(i, {})
                for key, value in parts.items():
                    target[key] = combine(key[2], target.get(key), value)
        return _Slotted(unit, plans, {dims: _prefix(slots, len(bounds))
                                      for dims, slots in by_slot.items()})

    def results(self, k: int) -> list[KpiResult]:
        """Every KPI's result at instant k, as ``collect --as-of`` gives it."""
        as_of = self.instant(k)
        caps = LabelCaps(self.config.labels)
        out: list[KpiResult] = []
        for slotted in self._slotted:
            out.extend(self._slot_results(slotted, k, as_of, caps))
        for unit, line in self._replayed:
            found = line.cells(k)  # freshness, one cell per entity, is not capped
            out.append(KpiResult(line.kpi, unit.source, as_of, tuple(
                caps.fold(line.kpi, found) if unit.entity is not None else found)))
        for unit in self._others:
            for result in evaluate.run_unit(self.engines[unit.source], self.config, unit,
                                            as_of, caps):
                if result.error is not None:
                    raise BackfillError(f"source {unit.source}: {result.kpi.key} at "
                                        f"{as_of:%Y-%m-%dT%H:%M:%SZ}: {result.error}")
                out.append(result)
        return [*out, *evaluate.unavailable(self.config, as_of)]

    def _slot_results(self, slotted: _Slotted, k: int, as_of: datetime, caps: LabelCaps
                      ) -> Iterator[KpiResult]:
        plans, unit = slotted.plans, slotted.unit
        hi = self.lead + k  # slots [hi - n, hi) make a window of n steps
        windows = [(format_seconds(w.seconds), int(w.seconds // self.grid.step))
                   for w in self.config.kpis.windows]
        per_plan: list[list[Cell]] = [[] for _ in plans]
        names = [name for name, _ in plans[0].dims]
        for dims, prefix in slotted.prefix.items():
            rows = prefix[ROWS]
            if rows[hi] - rows[hi - self.lead] <= 0:
                continue  # no row in the longest window: a refresh has no such label set
            labels = tuple(zip(names, dims, strict=True))
            for window, n in windows:
                parts = {key: _over(values, hi - n, hi) for key, values in prefix.items()}
                for p, cell in enumerate(cells(plans, (*labels, ("window", window)), parts)):
                    per_plan[p].append(cell)
        for kpi, found in zip(unit.kpis, per_plan, strict=True):
            yield KpiResult(kpi, unit.source, as_of, tuple(caps.fold(kpi, found)))


class _Extremes:
    """Minimum or maximum over any range of slots in O(1) (a sparse table)."""

    def __init__(self, part: str, values: list[Any]) -> None:
        self.part = part
        self.table = [values]
        width = 1
        while width * 2 <= len(values):
            prev = self.table[-1]
            self.table.append([combine(part, prev[i], prev[i + width])
                               for i in range(len(values) - width * 2 + 1)])
            width *= 2

    def over(self, lo: int, hi: int) -> Any:
        """Over slots [lo, hi) (None when none has a value)."""
        if hi <= lo:
            return None
        level = (hi - lo).bit_length() - 1
        row = self.table[level]
        return combine(self.part, row[lo], row[hi - (1 << level)])


def _chunks(bounds: list[datetime], per: int) -> Iterator[tuple[datetime, datetime]]:
    """[lo, hi) ranges of ``per`` slots covering bounds[0] to bounds[-1] (empty ones left
    out: a DST fall-back repeats local times)."""
    edges = [*bounds[:-1:per], bounds[-1]]
    for lo, hi in pairwise(edges):
        if lo < hi:
            yield lo, hi


def _prefix(slots: dict[int, Parts], n: int) -> dict[tuple[int, int, str], Any]:
    """Per part: running totals over slots 0..n-1 (index i: the sum of slots before i), or
    extremes by range. Sums of values are kept exact (Fraction), so a window's sum is the
    exact sum of its slots."""
    keys = {key for parts in slots.values() for key in parts}
    out: dict[tuple[int, int, str], Any] = {}
    for key in keys:
        if key[2] in EXTREMES:
            out[key] = _Extremes(key[2], [slots.get(i, {}).get(key) for i in range(n)])
            continue
        exact = key[2] == "sum"
        total: Any = Fraction(0) if exact else 0.0
        # Counts in a flat array of doubles (exact up to 2**53): a list of float objects
        # took 32 bytes an entry, 1.4 GB for 90 days at 1M appointments.
        running: Any = [total] if exact else array("d", [total])
        for i in range(n):
            value = slots.get(i, {}).get(key) or 0.0
            total = total + (Fraction(value) if exact else value)
            running.append(total)
        out[key] = running
    return out


def _over(values: Any, lo: int, hi: int) -> Any:
    if isinstance(values, _Extremes):
        return values.over(lo, hi)
    return float(values[hi] - values[lo])




def oldest(config: Config, engines: dict[str, sa.Engine]) -> datetime | None:
    """The oldest record the sources hold (the earliest of each entity's freshness field)."""
    from kpis import model

    found = []
    for name, mapping in config.entities.items():
        field = model.FRESHNESS_FIELD.get(name)
        if field is None or not mapping.mapped(field):
            continue
        entity = MappedEntity(name, mapping)
        col = entity.col(field)
        try:
            with engines[mapping.source].connect() as conn:
                evaluate._set_zone(conn, entity)
                value = conn.execute(sa.select(sa.func.min(col)).select_from(
                    entity.from_)).scalar()
                conn.rollback()
        except Exception as exc:
            raise BackfillError(f"source {mapping.source}: reading {name} failed: "
                                f"{describe(exc)}") from None
        moment = entity.instant(value)
        if moment is not None:
            found.append(moment)
    return min(found) if found else None
