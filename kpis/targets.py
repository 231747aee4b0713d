"""Effective targets: the catalog default, overridden per KPI and per clinic in the config."""

from __future__ import annotations

from kpis.catalog import Kpi, Target
from kpis.config import Config


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


def min_volume(kpi: Kpi, config: Config | None) -> int:
    if config is not None:
        override = config.kpis.settings(kpi.key).min_volume
        if override is not None:
            return override
    return kpi.min_volume


def enabled(kpi: Kpi, config: Config | None) -> bool:
    return config is None or config.kpis.settings(kpi.key).enabled
