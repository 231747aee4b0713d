"""``kpis.calendar``: opening hours and holidays, inside which the SLA clock runs."""

from __future__ import annotations

import re
from datetime import date, time
from typing import Literal

from pydantic import field_validator

from kpis.durations import Duration
from kpis.strict import Located, Strict, duration, time_zone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Calendar(Strict):
    """Opening hours and holidays; the SLA clock runs only inside them."""

    timezone: str = "UTC"
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], str]
    holidays: list[date] = []
    business_day: Duration | None = None  # default: the longest day's opening hours

    _tz = field_validator("timezone")(time_zone)
    _dur = field_validator("business_day", mode="before")(duration)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, str]) -> dict[str, str]:
        for day, span in value.items():
            match = HOURS.match(span)
            if not match or span[:5] >= span[6:]:
                raise Located(("kpis", "calendar", "hours", day),
                               f"expected opening hours like 08:00-18:00, got {span!r}")
        if not value:
            raise ValueError("at least one day needs opening hours")
        return value

    def opening(self, weekday: int) -> tuple[time, time] | None:
        span = self.hours.get(WEEKDAYS[weekday])  # type: ignore[call-overload]
        if span is None:
            return None
        start, end = span.split("-")
        close = time.max if end == "24:00" else time.fromisoformat(end)
        return time.fromisoformat(start), close

    @property
    def business_day_seconds(self) -> float:
        if self.business_day is not None:
            return self.business_day.seconds
        longest = 0.0
        for span in self.hours.values():
            start, end = span.split("-")
            h0, m0 = map(int, start.split(":"))
            h1, m1 = map(int, end.split(":"))
            longest = max(longest, (h1 * 60 + m1 - h0 * 60 - m0) * 60.0)
        return longest
