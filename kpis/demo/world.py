"""What every part of the generator shares: the random stream, the time frame and the incidents."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from kpis.demo.clinics import OPENS, BusinessClock, holidays_between, local_date, to_utc

Row = dict[str, Any]

HISTORY_DAYS = 90
FUTURE_DAYS = 60


@dataclass
class World:
    rng: random.Random
    now: datetime  # naive UTC
    incidents: frozenset[str]
    seed: int = 7
    history_days: int = HISTORY_DAYS  # the size knob: a week of history proves most points
    clock: BusinessClock = field(init=False)
    first_day: date = field(init=False)
    last_day: date = field(init=False)
    _ids: dict[str, Iterator[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.first_day = local_date(self.now - timedelta(days=self.history_days))
        self.last_day = local_date(self.now + timedelta(days=FUTURE_DAYS))
        self.clock = BusinessClock(set(holidays_between(self.first_day, self.last_day)))

    def stream(self, name: str) -> None:
        """Switch to the random stream of one part, so an incident in one part or clinic
        leaves the others' rows unchanged."""
        self.rng = random.Random(f"{self.seed}:{name}")

    @property
    def start(self) -> datetime:
        return self.now - timedelta(days=self.history_days)

    def next_id(self, table: str) -> int:
        return next(self._ids.setdefault(table, itertools.count(1)))

    def days(self, first: date, last: date) -> Iterator[date]:
        day = first
        while day <= last:
            yield day
            day += timedelta(days=1)

    def minutes(self, median: float, sigma: float, cap: float | None = None) -> timedelta:
        """A log-normal duration in minutes (skewed right, as waits and visits are)."""
        value = self.rng.lognormvariate(math.log(median), sigma)
        return timedelta(minutes=min(value, cap) if cap is not None else value)

    def poisson(self, mean: float) -> int:
        """A Poisson count (normal approximation above 30, exact below)."""
        if mean > 30:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def past(self, moment: datetime | None) -> datetime | None:
        """The moment if it already happened at ``now``, else None (not recorded yet)."""
        return moment if moment is not None and moment <= self.now else None

    def last_open_day_start(self) -> datetime:
        """Opening time of the latest business day that has begun at ``now``."""
        day = local_date(self.now)
        while not self.clock.is_open_day(day) or to_utc(day, OPENS) > self.now:
            day -= timedelta(days=1)
        return to_utc(day, OPENS)

    def today_start(self) -> datetime:
        """The start of "today" for incidents: the last 24 h, or the last business day when
        the last 24 h had no opening hours (a Monday morning, a weekend)."""
        return min(self.now - timedelta(days=1), self.last_open_day_start())
