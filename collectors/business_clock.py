"""Business time: the SLA clock that runs only inside opening hours and skips holidays.

``BusinessClock`` maps a stored (naive, entity-local) timestamp to business seconds elapsed
since a reference, and back. It has a Python form (to turn SLA deadlines into ranges of
receipt times, so window predicates stay on raw indexed columns) and a SQL form (a balanced
CASE tree over the breakpoints, so each row costs a handful of comparisons).
Without a calendar the clock is the wall clock.
"""

from __future__ import annotations

import bisect
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from collectors.sqlfuncs import number, seconds_between
from kpis.config import Calendar


class BusinessClock:
    def __init__(self, calendar: Calendar | None, entity_zone: ZoneInfo,
                 start: datetime, end: datetime, sql: bool = True) -> None:
        """Covers stored times in [start, end] (naive, in the entity's zone). Without ``sql``
        the SQL form is a NULL (a plan built only for its time ranges: the backfill's)."""
        self.calendar = calendar
        self.sql = sql
        self.ref = start
        # Breakpoints in seconds since ref; business[i] = business seconds at points[i].
        self.opens: list[float] = []
        self.closes: list[float] = []
        self.before: list[float] = []  # business seconds elapsed before each opening
        if calendar is not None:
            self._build(calendar, entity_zone, start, end)

    @property
    def wall_clock(self) -> bool:
        return self.calendar is None

    def _build(self, calendar: Calendar, entity_zone: ZoneInfo, start: datetime,
               end: datetime) -> None:
        zone = ZoneInfo(calendar.timezone)
        first = start.replace(tzinfo=entity_zone).astimezone(zone).date() - timedelta(days=1)
        last = end.replace(tzinfo=entity_zone).astimezone(zone).date() + timedelta(days=1)
        holidays = set(calendar.holidays)
        day, total = first, 0.0
        while day <= last:
            hours = calendar.opening(day.weekday())
            if hours is not None and day not in holidays:
                opened = datetime.combine(day, hours[0], zone)
                closed = datetime.combine(day, hours[1], zone)
                o = self._offset(opened.astimezone(entity_zone).replace(tzinfo=None))
                c = self._offset(closed.astimezone(entity_zone).replace(tzinfo=None))
                if c > o:
                    self.opens.append(o)
                    self.closes.append(c)
                    self.before.append(total)
                    total += c - o
            day += timedelta(days=1)

    def _offset(self, moment: datetime) -> float:
        return (moment - self.ref).total_seconds()

    def elapsed(self, moment: datetime) -> float:
        """Business seconds from ref to moment (a naive stored time)."""
        x = self._offset(moment)
        if self.calendar is None:
            return x
        i = bisect.bisect_right(self.opens, x) - 1
        if i < 0:
            return 0.0
        return self.before[i] + min(x, self.closes[i]) - self.opens[i]

    def at(self, business: float) -> datetime:
        """The earliest stored time whose elapsed business time reaches ``business``."""
        if self.calendar is None:
            return self.ref + timedelta(seconds=business)
        if not self.opens or business <= 0:
            return self.ref
        i = bisect.bisect_left(self.before, business) - 1  # last opening that starts earlier
        inside = min(business - self.before[i], self.closes[i] - self.opens[i])
        return self.ref + timedelta(seconds=self.opens[i] + inside)

    def receipt_range(self, deadline_from: datetime, deadline_to: datetime,
                      sla_business_seconds: float) -> tuple[datetime, datetime]:
        """Stored receipt times r whose deadline (r + SLA on this clock) is in [from, to)."""
        lo = self.at(self.elapsed(deadline_from) - sla_business_seconds)
        hi = self.at(self.elapsed(deadline_to) - sla_business_seconds)
        return lo, hi

    def sql_elapsed(self, earlier: ColumnElement[Any], later: ColumnElement[Any]
                    ) -> ColumnElement[float]:
        """SQL: business seconds between two stored timestamps."""
        if not self.sql:
            return sa.cast(sa.null(), sa.Float())
        if self.calendar is None:
            return seconds_between(earlier, later)
        return self._sql_business(later) - self._sql_business(earlier)

    def _sql_business(self, moment: ColumnElement[Any]) -> ColumnElement[float]:
        x = seconds_between(sa.literal(self.ref, sa.DateTime()), moment)
        if not self.opens:
            return number(0)
        # Pieces: before the first opening 0; inside opening i linear; after closing i flat.
        points: list[tuple[float, ColumnElement[float]]] = []
        for o, c, b in zip(self.opens, self.closes, self.before, strict=True):
            points.append((o, number(b) + (x - number(o))))
            points.append((c, number(b + c - o)))
        # A NULL time would take the ELSE branches of the tree and read as a constant.
        return sa.case((moment.is_(None), sa.null()),
                       else_=self._tree(x, points, 0, len(points), number(0)))

    def _tree(self, x: ColumnElement[float], points: list[tuple[float, ColumnElement[float]]],
              lo: int, hi: int, below: ColumnElement[float]) -> ColumnElement[float]:
        """Balanced CASE: the piece whose start is the last breakpoint <= x."""
        if hi - lo == 1:
            start, piece = points[lo]
            # Only the leftmost leaf can see x before its start (every right branch has
            # already tested x >= its first breakpoint).
            return sa.case((x < number(start), below), else_=piece) if lo == 0 else piece
        mid = (lo + hi) // 2
        return sa.case(
            (x < number(points[mid][0]), self._tree(x, points, lo, mid, below)),
            else_=self._tree(x, points, mid, hi, below),
        )


def is_open(calendar: Calendar, moment: datetime) -> bool:
    """Whether ``moment`` (aware) falls inside the calendar's opening hours, on the wall clock
    of the calendar's zone (daylight saving time included); holidays are closed."""
    local = moment.astimezone(ZoneInfo(calendar.timezone))
    if local.date() in set(calendar.holidays):
        return False
    hours = calendar.opening(local.weekday())
    if hours is None:
        return False
    now = local.time()
    return hours[0] <= now and (now < hours[1] or hours[1] == time.max)  # time.max: 24:00
