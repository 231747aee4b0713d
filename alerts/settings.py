"""What the rules need from the user's config: enabled KPIs, effective targets and volumes,
windows and the calendar. ``None`` stands for the defaults of the catalog (no config file)."""

from __future__ import annotations

from dataclasses import dataclass

from kpis import catalog, targets
from kpis.catalog import Kpi
from kpis.config import Calendar, Config, Kpis
from kpis.durations import format_seconds
from kpis.durations import parse as parse_duration


@dataclass(frozen=True)
class KpiRules:
    """One KPI with its effective alerting settings."""

    kpi: Kpi
    target: float | None
    clinic_targets: tuple[tuple[str, float], ...]
    min_volume: int
    alert_window: str

    @property
    def key(self) -> str:
        return self.kpi.key

    @property
    def objectives(self) -> tuple[float, ...]:
        """Every target in force (global and per clinic): the burn-rate factors must fit all."""
        values = [v for _, v in self.clinic_targets]
        return tuple(sorted({*values, *([self.target] if self.target is not None else [])}))


def _kpis_section(config: Config | None) -> Kpis:
    return config.kpis if config is not None else Kpis()


def windows(config: Config | None) -> tuple[str, ...]:
    """The exported window label values, shortest first (``1h``, ``1d``, ``7d``, ``30d``)."""
    return tuple(format_seconds(w.seconds) for w in _kpis_section(config).windows)


def window_seconds(config: Config | None) -> tuple[float, ...]:
    return tuple(w.seconds for w in _kpis_section(config).windows)


def calendar(config: Config | None) -> Calendar | None:
    return _kpis_section(config).calendar


def nearest_window(wanted: str, config: Config | None) -> str:
    """The shortest exported window at least as long as ``wanted``, else the longest one."""
    seconds = parse_duration(wanted).seconds
    for value in window_seconds(config):
        if value >= seconds:
            return format_seconds(value)
    return format_seconds(window_seconds(config)[-1])


def kpi_rules(config: Config | None) -> tuple[KpiRules, ...]:
    """The enabled KPIs of the catalog, in catalog order, with their effective settings."""
    section = _kpis_section(config)
    result = []
    for kpi in catalog.load():
        if not targets.enabled(kpi, config):
            continue
        goal = targets.target(kpi, config)
        result.append(KpiRules(
            kpi=kpi,
            target=goal.value if goal is not None else None,
            clinic_targets=tuple(sorted(section.settings(kpi.key).clinic_targets.items())),
            min_volume=targets.min_volume(kpi, config),
            alert_window=nearest_window(kpi.alert_window, config),
        ))
    return tuple(result)
