"""The demo health system: its clinics, their opening hours, US holidays and business time.

All times handled by the generator are naive UTC datetimes (as stored); opening hours are
local to America/New_York and converted per day, so daylight-saving changes are honoured.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZONE_NAME = "America/New_York"
ZONE = ZoneInfo(ZONE_NAME)
UTC = ZoneInfo("UTC")
OPENS, CLOSES = time(8, 0), time(18, 0)
BUSINESS_DAY = 10 * 3600.0  # seconds of one business day (08:00-18:00)


@dataclass(frozen=True)
class Clinic:
    code: str  # site_code as stored
    name: str
    departments: tuple[str, ...]
    daily_visits: int  # scheduled appointments on an average weekday
    no_show: float  # probability a non-cancelled past appointment is a no-show
    telehealth: float  # share of scheduled visits that are virtual
    online_booking: float  # share booked through WEB/APP
    wait_median_min: float  # median wait to be seen, minutes
    same_day: float  # share of same-day bookings
    messages_per_day: int
    calls_per_day: int
    complaints_per_month: float
    follow_up_share: float  # share of completed visits flagged for a follow-up call


CLINICS: tuple[Clinic, ...] = (
    Clinic("DTN", "Downtown Medical Center", ("FM", "IM", "CARD", "DERM", "ORTH"), 170, 0.065,
           0.08, 0.45, 9.0, 0.18, 120, 150, 12, 0.12),
    Clinic("RVL", "Riverside Rural Health", ("FM",), 35, 0.03, 0.05, 0.15, 6.0, 0.20, 20, 70,
           4, 0.30),
    Clinic("PED", "Maple Children's Clinic", ("PEDS", "ADOL"), 80, 0.075, 0.06, 0.35, 8.0,
           0.35, 60, 100, 6, 0.15),
    Clinic("TEL", "Virtual Care Center", ("PC", "BH"), 50, 0.05, 0.85, 0.80, 4.0, 0.22, 50, 80,
           5, 0.20),
)
VIRTUAL_URGENT_CARE = "VUC"  # TEL's on-demand video visits, around the clock
WEEKDAY_FACTOR = (1.18, 1.05, 1.0, 0.97, 0.80, 0.0, 0.0)  # Mon..Sun


@functools.lru_cache(maxsize=65536)
def to_utc(day: date, at: time) -> datetime:
    """Naive UTC time of a local wall-clock time on a day."""
    return datetime.combine(day, at, ZONE).astimezone(UTC).replace(tzinfo=None)


@functools.lru_cache(maxsize=65536)
def _utc_offset(year: int, month: int, day: int, hour: int) -> timedelta:
    # New York changes offset on whole UTC hours, so one lookup per hour is exact.
    offset = datetime(year, month, day, hour, tzinfo=UTC).astimezone(ZONE).utcoffset()
    return offset if offset is not None else timedelta(0)


def local_time(moment: datetime) -> datetime:
    """Naive New York wall-clock time of a naive UTC moment."""
    return moment + _utc_offset(moment.year, moment.month, moment.day, moment.hour)


def local_date(moment: datetime) -> date:
    return local_time(moment).date()


def local_hour(moment: datetime) -> float:
    local = local_time(moment)
    return local.hour + local.minute / 60


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    if n > 0:
        return first + timedelta(days=offset + 7 * (n - 1))
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def us_holidays(year: int) -> list[date]:
    """US federal holidays of a year, on their observed (weekday) dates."""
    fixed = [date(year, 1, 1), date(year, 6, 19), date(year, 7, 4), date(year, 11, 11),
             date(year, 12, 25)]
    floating = [
        _nth_weekday(year, 1, 0, 3), _nth_weekday(year, 2, 0, 3), _nth_weekday(year, 5, 0, -1),
        _nth_weekday(year, 9, 0, 1), _nth_weekday(year, 10, 0, 2), _nth_weekday(year, 11, 3, 4),
    ]
    return sorted({_observed(d) for d in fixed} | set(floating))


def holidays_between(first: date, last: date) -> list[date]:
    days = {d for y in range(first.year - 1, last.year + 2) for d in us_holidays(y)}
    return sorted(d for d in days if first <= d <= last)


class BusinessClock:
    """Opening hours Mon-Fri 08:00-18:00 New York time, minus holidays; UTC in and out."""

    def __init__(self, holidays: set[date]) -> None:
        self.holidays = holidays

    def is_open_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def hours(self, day: date) -> tuple[datetime, datetime] | None:
        if not self.is_open_day(day):
            return None
        return to_utc(day, OPENS), to_utc(day, CLOSES)

    def is_open(self, moment: datetime) -> bool:
        span = self.hours(local_date(moment))
        return span is not None and span[0] <= moment < span[1]

    def add(self, moment: datetime, seconds: float) -> datetime:
        """The moment when ``seconds`` of business time have run after ``moment``."""
        day = local_date(moment)
        for _ in range(400):
            span = self.hours(day)
            if span is not None:
                start = max(moment, span[0])
                if start < span[1]:
                    available = (span[1] - start).total_seconds()
                    if seconds <= available:
                        return start + timedelta(seconds=seconds)
                    seconds -= available
            day += timedelta(days=1)
        raise ValueError("business time beyond 400 days")

    def back(self, moment: datetime, seconds: float) -> datetime:
        """The moment from which ``seconds`` of business time run until ``moment``."""
        day = local_date(moment)
        for _ in range(400):
            span = self.hours(day)
            if span is not None:
                end = min(moment, span[1])
                if end > span[0]:
                    available = (end - span[0]).total_seconds()
                    if seconds <= available:
                        return end - timedelta(seconds=seconds)
                    seconds -= available
            day -= timedelta(days=1)
        raise ValueError("business time beyond 400 days")
