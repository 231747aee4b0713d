"""The SLA clock that runs only inside opening hours (collectors/business_clock.py): in
Python, and as the SQL a plan runs, against hours counted by hand. Pure code and SQLite."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from collectors.business_clock import BusinessClock, is_open
from kpis.config import Calendar

UTC = ZoneInfo("UTC")
# Mon-Fri 08:00-18:00 in New York, closed on Tuesday 2026-03-10; stored times are UTC.
CALENDAR = Calendar(timezone="America/New_York",
                    hours={d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                    holidays=[date(2026, 3, 10)])
START, END = datetime(2026, 3, 1), datetime(2026, 3, 20)
HOUR = 3600.0

# (earlier, later, business hours between them), counted by hand. New York is UTC-5 until
# 2026-03-08 02:00, then UTC-4: Friday 6 March opens 13:00 UTC, Monday 9 March 12:00 UTC.
CASES = [
    (datetime(2026, 3, 6, 14), datetime(2026, 3, 6, 16), 2),  # inside one day
    (datetime(2026, 3, 6, 22), datetime(2026, 3, 9, 13), 2),  # Fri 17:00 EST -> Mon 09:00 EDT
    (datetime(2026, 3, 7, 12), datetime(2026, 3, 8, 12), 0),  # the weekend
    (datetime(2026, 3, 9, 12), datetime(2026, 3, 11, 12), 10),  # Monday, holiday Tuesday
    (datetime(2026, 3, 6, 4), datetime(2026, 3, 6, 5), 0),  # before opening
    (datetime(2026, 3, 9, 21), datetime(2026, 3, 12, 0), 11),  # Mon 17:00 EDT -> Wed 20:00
]


@pytest.fixture(scope="module")
def clock() -> BusinessClock:
    return BusinessClock(CALENDAR, UTC, START, END)


@pytest.mark.parametrize(("earlier", "later", "hours"), CASES)
def test_business_seconds_between_two_times(clock, earlier, later, hours) -> None:
    assert clock.elapsed(later) - clock.elapsed(earlier) == hours * HOUR


def test_at_is_the_earliest_time_that_reaches_the_business_seconds(clock) -> None:
    friday_close = datetime(2026, 3, 6, 23)  # 18:00 EST
    monday_open = datetime(2026, 3, 9, 12)  # 08:00 EDT
    reached = clock.elapsed(friday_close)
    assert clock.at(reached) <= monday_open  # a closed stretch adds nothing
    assert clock.at(reached + 1) == datetime(2026, 3, 9, 12, 0, 1)


def test_the_sql_clock_agrees_with_the_python_clock_on_sqlite(clock) -> None:
    md = sa.MetaData()
    spans = sa.Table("spans", md, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("a", sa.DateTime), sa.Column("b", sa.DateTime))
    engine = sa.create_engine("sqlite://")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(spans.insert(), [{"id": i, "a": a, "b": b}
                                      for i, (a, b, _) in enumerate(CASES, 1)])
        got = dict(conn.execute(sa.select(spans.c.id,
                                          clock.sql_elapsed(spans.c.a, spans.c.b))).all())
    assert {i: float(v) for i, v in got.items()} == {
        i: h * HOUR for i, (_, _, h) in enumerate(CASES, 1)}


def test_without_a_calendar_it_is_the_wall_clock() -> None:
    wall = BusinessClock(None, UTC, START, END)
    assert wall.wall_clock
    assert wall.elapsed(datetime(2026, 3, 2)) - wall.elapsed(datetime(2026, 3, 1)) == 24 * HOUR


@pytest.mark.parametrize(("moment", "open_"), [
    (datetime(2026, 3, 6, 13, 0, tzinfo=UTC), True),  # Friday 08:00 EST
    (datetime(2026, 3, 6, 12, 59, tzinfo=UTC), False),
    (datetime(2026, 3, 9, 12, 0, tzinfo=UTC), True),  # Monday 08:00 EDT
    (datetime(2026, 3, 10, 15, 0, tzinfo=UTC), False),  # the holiday
    (datetime(2026, 3, 7, 15, 0, tzinfo=UTC), False),  # Saturday
])
def test_is_open_on_the_calendars_own_wall_clock(moment, open_) -> None:
    assert is_open(CALENDAR, moment) is open_
