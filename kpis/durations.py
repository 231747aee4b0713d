"""Durations as users write them: ``30s``, ``15m``, ``2h``, ``1d``, ``1w`` and business days
``1bd`` (counted on the configured calendar; 24 wall-clock hours each without one)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|bd)\s*$")


@dataclass(frozen=True, order=True)
class Duration:
    seconds: float = 0.0
    business_days: float = 0.0  # non-zero only for ``Nbd``

    @property
    def is_business(self) -> bool:
        return self.business_days > 0

    def __str__(self) -> str:
        if self.is_business:
            return f"{self.business_days:g}bd"
        return format_seconds(self.seconds)


def parse(text: str | float | int, *, business: bool = False) -> Duration:
    """Parse a duration; a bare number is seconds. ValueError names what was expected."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 30s, 15m, 1h, 1d")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return Duration(float(text))
    match = _PATTERN.match(str(text))
    units = "s, m, h, d, w" + (" or bd" if business else "")
    if not match:
        raise ValueError(f"expected a duration such as 30s, 15m, 1h, 1d (units {units})")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "bd":
        if not business:
            raise ValueError("business days (bd) are only allowed for SLAs")
        if number <= 0:
            raise ValueError("an SLA must be longer than zero")
        return Duration(0.0, number)
    return Duration(number * _UNITS[unit])


def format_seconds(seconds: float) -> str:
    """The shortest exact form in s, m, h or d: 3600 -> 1h, 90 -> 90s, 604800 -> 7d."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
