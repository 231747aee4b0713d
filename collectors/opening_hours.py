"""``carekpi_calendar_open{calendar}``: 1 inside the calendar's opening hours, else 0.

PromQL has no time zones: rules that should hold only while a clinic is open (the stale-feed
alert) read this series instead of doing calendar arithmetic on ``time()``. It is computed at
each scrape with zoneinfo, so daylight saving time and holidays are right all year.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors.business_clock import is_open
from kpis import names
from kpis.config import Calendar


class OpeningHoursCollector(Collector):
    """The open state of the configured calendar at scrape time. ``version`` changes when the
    state does, so a cached exposition renews its body then (and only then)."""

    def __init__(self, calendar: Calendar,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.calendar = calendar
        self.clock = clock
        self._state: bool | None = None
        self._version = 0

    def is_open(self) -> bool:
        state = is_open(self.calendar, self.clock())
        if state != self._state:
            self._state = state
            self._version += 1
        return state

    @property
    def version(self) -> int:
        self.is_open()
        return self._version

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric([names.DEFAULT_CALENDAR], 1.0 if self.is_open() else 0.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(names.CALENDAR_OPEN, "1 inside the calendar's opening hours "
                                 "(its time zone, holidays closed), else 0.",
                                 labels=[names.CALENDAR])
