"""``kpis:``: shared windows and calendar, then one optional section per KPI (enabled,
targets, minimum volume, cadences, SLAs and the KPI's own parameters)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from kpis import catalog
from kpis.durations import Duration
from kpis.opening_hours import Calendar
from kpis.strict import (
    Located,
    Strict,
    describe,
    duration,
    parse_window_intervals,
    shown,
    sla_duration,
)
from kpis.suggest import did_you_mean


class SlaOverride(Strict):
    channel: str | None = None
    priority: str | None = None
    sla: Duration

    _dur = field_validator("sla", mode="before")(lambda v: sla_duration(v))

    @model_validator(mode="after")
    def _selects(self) -> SlaOverride:
        if self.channel is None and self.priority is None:
            raise ValueError("an SLA override needs a channel, a priority or both")
        return self


class KpiSettings(Strict):
    enabled: bool = True
    target: float | None = None
    clinic_targets: dict[str, float] = {}
    min_volume: int | None = Field(None, ge=0)
    refresh_interval: Duration | None = None
    window_intervals: dict[Duration, Duration] = {}  # see kpis/cadence.py
    sla: Duration | None = None
    sla_overrides: list[SlaOverride] = []
    threshold: Duration | None = None
    item: str | None = None
    lookback: Duration | None = None

    _dur = field_validator("refresh_interval", "threshold", "lookback", mode="before")(duration)
    _win = field_validator("window_intervals", mode="before")(parse_window_intervals)
    _sla = field_validator("sla", mode="before")(lambda v: sla_duration(v))

    @field_validator("sla_overrides")
    @classmethod
    def _reachable(cls, overrides: list[SlaOverride]) -> list[SlaOverride]:
        """The first override that matches a message sets its SLA: one after a broader one
        (priority urgent before channel email + priority urgent) would never apply."""
        for i, later in enumerate(overrides):
            for j, earlier in enumerate(overrides[:i]):
                if all(mine is None or mine == theirs for mine, theirs in (
                        (earlier.channel, later.channel), (earlier.priority, later.priority))):
                    raise ValueError(f"override {i + 1} never applies: override {j + 1} comes "
                                     "first and matches every message it matches (the first "
                                     "match wins: put the more specific one first)")
        return overrides


_KPI_PARAMS = ("sla", "sla_overrides", "threshold", "item", "lookback")


def _window(value: Any) -> Duration:
    """One of ``kpis.windows``; its error shows which one (the list as a whole is not)."""
    try:
        return duration(value)
    except ValueError as exc:
        raise ValueError(f"{exc} (got {shown(value)!r})") from None


# What a target can be, by the KPI's unit: a ratio (0.1 for 10 %), seconds, a count, a score.
_TARGET_RANGES = {"percentunit": (0.0, 1.0, "a ratio from 0 to 1 (0.1 for 10 %)"),
                  "s": (0.0, math.inf, "seconds, 0 or more"),
                  "short": (0.0, math.inf, "a count, 0 or more"),
                  "none": (-100.0, 100.0, "a score from -100 to 100")}


def _check_targets(key: str, kpi: catalog.Kpi, settings: KpiSettings) -> None:
    """A target outside what the KPI can be (10 meant as 10 %) would never fire an alert."""
    low, high, what = _TARGET_RANGES.get(kpi.unit, (-math.inf, math.inf, "a finite number"))
    found = [(("kpis", key, "target"), settings.target)] + [
        (("kpis", key, "clinic_targets", clinic), value)
        for clinic, value in settings.clinic_targets.items()]
    for where, value in found:
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise Located(where, f"{kpi.id}'s target must be {what}, not {value:g}")


class Kpis(Strict):
    """The ``kpis:`` section: shared settings, then one optional section per KPI key."""

    model_config = ConfigDict(extra="allow", frozen=True)
    windows: list[Duration] = [Duration(3600), Duration(86400), Duration(604800),
                               Duration(2592000)]
    calendar: Calendar | None = None

    _win = field_validator("windows", mode="before")(
        lambda v: [_window(x) for x in v] if isinstance(v, list) else v
    )

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[Duration]) -> list[Duration]:
        if not value:
            raise ValueError("at least one window is needed")
        if any(w.seconds <= 0 for w in value) or len(set(value)) != len(value):
            raise ValueError("windows must be positive and distinct")
        return sorted(value)

    @model_validator(mode="before")
    @classmethod
    def _kpi_sections(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = catalog.by_key()
        for key, section in list(data.items()):
            if key in ("windows", "calendar"):
                continue
            if key not in known:
                hint = did_you_mean(str(key), [*known, "windows", "calendar"])
                raise Located(("kpis", key), f"unknown KPI{hint} (see `carekpi kpis list`)")
            try:
                settings = KpiSettings.model_validate(section or {})
            except ValidationError as exc:
                where, message = describe(exc.errors()[0], KpiSettings)
                raise Located(("kpis", key, *filter(None, where.split("."))), message) from None
            kpi = known[key]
            for param in _KPI_PARAMS:
                if param in (section or {}) and param not in kpi.params:
                    raise Located(("kpis", key, param), f"not a setting of {kpi.id} {kpi.name}")
            if (settings.target is not None or settings.clinic_targets) and kpi.target is None:
                raise Located(("kpis", key, "target"), f"{kpi.id} is trend-only, without target")
            _check_targets(key, kpi, settings)
            data[key] = settings
        return data

    def settings(self, key: str) -> KpiSettings:
        value = (self.model_extra or {}).get(key)
        return value if isinstance(value, KpiSettings) else KpiSettings()
