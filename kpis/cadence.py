"""How often each rolling window is refreshed: as often as it can visibly change.

A 30-day count moves by a few hundredths of a percent in a minute, so recomputing it every
minute only loads the operational database. Each window has its own interval: by default the
windows shorter than 7 days every ``refresh_interval`` of their source, 7 days every 5 minutes
and 30 days (or longer) every 15 minutes, never more often than the source's
``refresh_interval``. ``window_intervals`` on a source, then on a KPI, overrides them; an
interval longer than a twelfth of its window is refused (the series would lag its window by
more than about 8 %).
"""

from __future__ import annotations

from collections.abc import Mapping

from kpis.durations import Duration, format_seconds

WEEK, MONTH = 7 * 86400.0, 30 * 86400.0
DEFAULT_LONG_WINDOW_INTERVALS = ((MONTH, 900.0), (WEEK, 300.0))  # longest first
WINDOW_FRACTION = 12  # an interval is at most 1/WINDOW_FRACTION of its window


def default_interval(window: float, refresh_interval: float) -> float:
    """A window's interval without overrides (never below the source's refresh interval)."""
    for at_least, interval in DEFAULT_LONG_WINDOW_INTERVALS:
        if window >= at_least:
            return max(interval, refresh_interval)
    return refresh_interval


def too_long(window: float, interval: float) -> str | None:
    """Why an explicit interval is refused for a window (None when it is fine)."""
    if interval <= 0:
        return "must be longer than zero"
    if interval > window / WINDOW_FRACTION:
        return (f"{format_seconds(interval)} is longer than 1/{WINDOW_FRACTION} of the "
                f"{format_seconds(window)} window (at most "
                f"{format_seconds(window / WINDOW_FRACTION)})")
    return None


def intervals(windows: list[float], refresh_interval: float,
              *overrides: Mapping[Duration, Duration]) -> dict[float, float]:
    """Each window's refresh interval in seconds; later overrides win."""
    out = {w: default_interval(w, refresh_interval) for w in windows}
    for override in overrides:
        for window, interval in override.items():
            out[window.seconds] = interval.seconds
    return out


def groups(windows: list[float], refresh_interval: float,
           *overrides: Mapping[Duration, Duration]) -> list[tuple[float, tuple[float, ...]]]:
    """The windows refreshed together (same interval), shortest interval first."""
    by_interval: dict[float, list[float]] = {}
    for window, interval in intervals(windows, refresh_interval, *overrides).items():
        by_interval.setdefault(interval, []).append(window)
    return [(interval, tuple(sorted(ws))) for interval, ws in sorted(by_interval.items())]
