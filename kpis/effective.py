"""The effective KPI: the catalog's defaults with the user's config applied.

Whether a KPI is enabled, its target (global and per clinic), its direction, its minimum
volume, the exported windows and the opening-hours calendar are resolved here and nowhere
else: the exporter, the alert rules and the dashboards all ask this module. ``config=None``
stands for the catalog's defaults (no config file, as for the committed rules and dashboards).
"""

from __future__ import annotations

from kpis.catalog import Kpi, Target
from kpis.config import Calendar, Config, Kpis
from kpis.durations import format_seconds
from kpis.durations import parse as parse_duration


def enabled(kpi: Kpi, config: Config | None) -> bool:
    return config is None or config.kpis.settings(kpi.key).enabled


def target(kpi: Kpi, config: Config | None, clinic: str | None = None) -> Target | None:
    """The target that applies to a KPI (and clinic), or None for trend-only KPIs."""
    if kpi.target is None:
        return None
    if config is None:
        return kpi.target
    settings = config.kpis.settings(kpi.key)
    value = settings.target if settings.target is not None else kpi.target.value
    if clinic is not None:
        value = settings.clinic_targets.get(clinic, value)
    return kpi.target.model_copy(update={"value": value})


def clinic_targets(kpi: Kpi, config: Config | None) -> tuple[tuple[str, float], ...]:
    """The per-clinic target overrides, sorted by clinic."""
    if config is None:
        return ()
    return tuple(sorted(config.kpis.settings(kpi.key).clinic_targets.items()))


def higher_is_better(kpi: Kpi) -> bool:
    """The KPI's direction: a target of ``>=`` (answer rates, NPS) is met from above."""
    return kpi.target is not None and kpi.target.op == ">="


def min_volume(kpi: Kpi, config: Config | None) -> int:
    """Below this many events a clinic's value is not judged against the target."""
    if config is not None:
        override = config.kpis.settings(kpi.key).min_volume
        if override is not None:
            return override
    return kpi.min_volume


def _kpis_section(config: Config | None) -> Kpis:
    return config.kpis if config is not None else Kpis()


def windows(config: Config | None) -> tuple[str, ...]:
    """The exported window label values, shortest first (``1h``, ``1d``, ``7d``, ``30d``)."""
    return tuple(format_seconds(w.seconds) for w in _kpis_section(config).windows)


def window_seconds(config: Config | None) -> tuple[float, ...]:
    return tuple(w.seconds for w in _kpis_section(config).windows)


def nearest_window(wanted: str, config: Config | None) -> str:
    """The shortest exported window at least as long as ``wanted``, else the longest one."""
    seconds = parse_duration(wanted).seconds
    for value in window_seconds(config):
        if value >= seconds:
            return format_seconds(value)
    return format_seconds(window_seconds(config)[-1])


def calendar(config: Config | None) -> Calendar | None:
    """The opening hours the stale-feed alert and the business clock respect, if any."""
    return _kpis_section(config).calendar
