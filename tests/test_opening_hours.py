"""``carekpi_calendar_open``: opening hours in the calendar's own time zone, daylight saving
time and holidays included (the stale-feed alert is guarded by it)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collectors.business_clock import is_open
from collectors.opening_hours import OpeningHoursCollector
from kpis.config import Calendar

NEW_YORK = Calendar(timezone="America/New_York",
                    hours={"mon": "08:00-18:00", "wed": "08:00-18:00", "sat": "09:00-24:00"},
                    holidays=["2026-07-01"])


@pytest.mark.parametrize(("moment", "open_"), [
    # Summer (EDT, UTC-4): 08:30 local is 12:30 UTC; a standard-offset guard said closed.
    (datetime(2026, 6, 29, 12, 30, tzinfo=UTC), True),
    (datetime(2026, 6, 29, 11, 59, tzinfo=UTC), False),   # 07:59 EDT
    (datetime(2026, 6, 29, 21, 59, tzinfo=UTC), True),    # 17:59 EDT
    (datetime(2026, 6, 29, 22, 0, tzinfo=UTC), False),    # 18:00 EDT: closing time
    # Winter (EST, UTC-5).
    (datetime(2026, 1, 5, 13, 0, tzinfo=UTC), True),      # Monday 08:00 EST
    (datetime(2026, 1, 5, 12, 59, tzinfo=UTC), False),
    (datetime(2026, 7, 1, 14, 0, tzinfo=UTC), False),     # a Wednesday, but a holiday
    (datetime(2026, 6, 30, 14, 0, tzinfo=UTC), False),    # Tuesday: no hours
    (datetime(2026, 7, 5, 3, 59, tzinfo=UTC), True),      # Saturday 23:59 EDT (open to 24:00)
    (datetime(2026, 7, 5, 4, 0, tzinfo=UTC), False),      # Sunday 00:00 EDT
])
def test_open_in_the_calendar_zone(moment, open_):
    assert is_open(NEW_YORK, moment) is open_


def test_the_exporter_exports_the_state_at_scrape_time():
    now = [datetime(2026, 6, 29, 12, 30, tzinfo=UTC)]
    collector = OpeningHoursCollector(NEW_YORK, lambda: now[0])
    registry = CollectorRegistry()
    registry.register(collector)
    assert b'carekpi_calendar_open{calendar="default"} 1.0' in generate_latest(registry)
    version = collector.version
    now[0] = datetime(2026, 6, 29, 22, 0, tzinfo=UTC)
    assert collector.version == version + 1  # a cached exposition renews its body
    assert b'carekpi_calendar_open{calendar="default"} 0.0' in generate_latest(registry)
    assert collector.version == version + 1
