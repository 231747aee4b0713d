"""The enabled KPIs with what their rules need (kpis.effective resolves every setting).
``None`` stands for the defaults of the catalog (no config file)."""

from __future__ import annotations

from dataclasses import dataclass

from kpis import catalog, effective
from kpis.catalog import Kpi
from kpis.config import Config


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


def kpi_rules(config: Config | None) -> tuple[KpiRules, ...]:
    """The enabled KPIs of the catalog, in catalog order, with their effective settings."""
    result = []
    for kpi in catalog.load():
        if not effective.enabled(kpi, config):
            continue
        goal = effective.target(kpi, config)
        result.append(KpiRules(
            kpi=kpi,
            target=goal.value if goal is not None else None,
            clinic_targets=effective.clinic_targets(kpi, config),
            min_volume=effective.min_volume(kpi, config),
            alert_window=effective.nearest_window(kpi.alert_window, config),
        ))
    return tuple(result)


def check_schedule(config: Config | None) -> float | None:
    """Seconds between scheduled check runs (``checks.schedule``), if configured."""
    if config is None or config.checks.schedule is None:
        return None
    return config.checks.schedule.seconds
