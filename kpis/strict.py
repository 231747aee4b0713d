"""What every section of ``carekpi.yaml`` shares: strict models, bounded durations, located
errors and their one-line description (kpis/config.py assembles the sections)."""

from __future__ import annotations

import math
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from kpis.durations import Duration
from kpis.durations import parse as parse_duration
from kpis.suggest import did_you_mean, keys_at, near_miss

NAME = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
MAX_DURATION_SECONDS = 10 * 366 * 86400  # longer is a typo, and overflows datetime arithmetic


def duration(value: Any, business: bool = False) -> Duration:
    """A duration as users write it (30s, 1bd), finite and at most 10 years (validator)."""
    if isinstance(value, Duration):
        return value
    parsed = parse_duration(value, business=business)
    if not math.isfinite(parsed.seconds) or parsed.seconds > MAX_DURATION_SECONDS:
        raise ValueError("a duration must be finite and at most 10 years")
    if not math.isfinite(parsed.business_days) or parsed.business_days > 366:
        raise ValueError("an SLA must be at most 366 business days")
    return parsed


def parse_window_intervals(value: Any) -> Any:
    """``{7d: 5m, 30d: 15m}``: window -> refresh interval, both durations."""
    if not isinstance(value, dict):
        return value
    out = {}
    for window, interval in value.items():
        try:
            out[duration(window)] = duration(interval)
        except ValueError as exc:
            raise ValueError(f"{window}: {exc}") from None
    return out


def sla_duration(value: Any) -> Duration:
    sla = duration(value, business=True)
    if not sla.is_business and sla.seconds <= 0:
        raise ValueError("an SLA must be longer than zero")
    return sla


class Strict(BaseModel):
    """Every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def time_zone(value: str) -> str:
    """An IANA time zone name (validator)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
        raise ValueError(f"unknown time zone {value[:60]!r}") from None
    return value


class Located(ValueError):
    """A validation error that knows its dotted key (pydantic's own location is lost when a
    validator checks a nested value)."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def listed(items: Any) -> str:
    """The items sorted, comma-separated (for "one of ..." in a message)."""
    return ", ".join(sorted(items))


def suggest(word: str, choices: Any) -> str:
    """"; did you mean 'start'?" for a near miss, else the whole list."""
    return did_you_mean(word, choices) or f"; one of {listed(choices)}"


def shown(value: Any) -> str:
    """A value as an error quotes it: at most 60 characters."""
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(error: Any, root: type[BaseModel]) -> tuple[str, str]:
    """(dotted key, one-line message) of a pydantic error in a ``root`` model: unknown keys
    get the near miss among ``root``'s keys at that place; values are shown, never a URL's."""
    loc = tuple(str(p) for p in error.get("loc", ()) if not str(p).startswith("function-"))
    loc = tuple(p for p in loc if p not in ("str", "SqlExpression", "str-constrained", "[key]"))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, Located):
        return ".".join(ctx_error.loc), str(ctx_error)
    if error.get("type") == "extra_forbidden":
        allowed = keys_at(root, loc[:-1]) if loc else ()
        one_of = f"; one of {', '.join(allowed)}" if allowed else ""
        message = f"unknown key{did_you_mean(loc[-1], allowed) or one_of}" if loc else \
            "unknown key"
    value = error.get("input")
    if error.get("type") == "missing" and loc and isinstance(value, dict):
        # A required key absent while a near miss of it is there: ulr for url.
        typo = near_miss(loc[-1], [str(k) for k in value if k not in keys_at(root, loc[:-1])])
        if typo:
            message = f"{message}; is it misspelled as {typo!r}?"
    sensitive = any(p in ("url", "password") for p in loc)
    quotable = isinstance(value, str | int | float | bool) and not sensitive and error.get(
        "type") not in ("extra_forbidden", "missing")
    if quotable and f"{shown(value)!r}" not in message:
        message = f"{message} (got {shown(value)!r})"
    return ".".join(loc), message

