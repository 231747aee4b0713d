"""The effective KPI (kpis/effective.py): the catalog's defaults with the user's settings
applied, as the exporter, the alert rules and the dashboards all see it. Pure code."""

from __future__ import annotations

from typing import Any

import pytest

from kpis import catalog, effective
from kpis import config as config_module

NO_SHOW = catalog.get("A1")  # <= 10 %, minimum volume 20, alert window 7d
RESPONSE_SLA = catalog.get("M2")  # >= 90 %
TELEHEALTH = catalog.get("A9")  # trend-only


def config(kpis: dict[str, Any]) -> config_module.Config:
    return config_module.parse({"version": 1, "sources": {"main": {"url": "sqlite://"}},
                                "kpis": kpis}, "carekpi.yaml")


def test_without_a_config_the_catalog_speaks():
    assert effective.enabled(NO_SHOW, None)
    assert effective.target(NO_SHOW, None) == NO_SHOW.target
    assert effective.min_volume(NO_SHOW, None) == 20
    assert effective.windows(None) == ("1h", "1d", "7d", "30d")
    assert effective.clinic_targets(NO_SHOW, None) == ()


def test_a_clinic_target_overrides_the_kpi_target_which_overrides_the_catalog():
    cfg = config({"no_show": {"target": 0.15, "clinic_targets": {"rural": 0.2}}})
    assert effective.target(NO_SHOW, cfg).value == 0.15
    assert effective.target(NO_SHOW, cfg, "rural").value == 0.2
    assert effective.target(NO_SHOW, cfg, "downtown").value == 0.15
    assert effective.target(NO_SHOW, cfg).op == "<="  # the direction stays the catalog's
    assert effective.clinic_targets(NO_SHOW, cfg) == (("rural", 0.2),)


def test_direction_comes_from_the_target_operator():
    assert not effective.higher_is_better(NO_SHOW)
    assert effective.higher_is_better(RESPONSE_SLA)
    assert effective.target(TELEHEALTH, config({})) is None
    assert not effective.higher_is_better(TELEHEALTH)


def test_disabled_and_minimum_volume_settings():
    cfg = config({"no_show": {"enabled": False, "min_volume": 0}})
    assert not effective.enabled(NO_SHOW, cfg) and effective.enabled(RESPONSE_SLA, cfg)
    assert effective.min_volume(NO_SHOW, cfg) == 0
    assert effective.min_volume(RESPONSE_SLA, cfg) == RESPONSE_SLA.min_volume


@pytest.mark.parametrize(("windows", "wanted", "nearest"), [
    (None, "7d", "7d"), (None, "2d", "7d"), (["1h", "1d"], "7d", "1d"),
    (["2h", "14d"], "1d", "14d"), (["30m", "2h"], "1h", "2h"),
])
def test_the_alert_window_falls_back_to_the_nearest_exported_one(windows, wanted, nearest):
    cfg = config({"windows": windows}) if windows else None
    assert effective.nearest_window(wanted, cfg) == nearest
