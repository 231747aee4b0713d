"""Panel factories over grafana-foundation-sdk builders, with the project's lint rules built in.

Every panel made here queries the ``$datasource`` variable, has a title, a description and a
unit, and takes its threshold steps from :mod:`dashboards.targets` (never literals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    TableSortByFieldState,
    VizLegendOptions,
)
from grafana_foundation_sdk.builders.dashboard import DashboardLink, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards import targets
from dashboards.targets import Steps
from kpis import names
from kpis.catalog import Kpi
from kpis.series import BURN_SUFFIXES, runbook_url

DATASOURCE_VAR = "datasource"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")



@dataclass(frozen=True)
class Query:
    """One target: a PromQL expression and how Grafana should fetch it."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"  # or "table", "heatmap"


def kpi_alert(kpi: Kpi) -> str | None:
    """The alert on a KPI's target (a backlog alert has no suffix), or the stale-feed alert."""
    if kpi.kind == "freshness":
        return names.ALERT_STALE_FEED
    if kpi.target is None:
        return None
    return names.alert_name(kpi, "" if kpi.kind == "backlog" else "TargetBreach")


def kpi_links(kpi: Kpi) -> list[str]:
    """The runbook sections of every alert a KPI has."""
    alert = kpi_alert(kpi)
    if alert is None:
        return []
    burns = [names.alert_name(kpi, s) for s in BURN_SUFFIXES] if kpi.burn_rate else []
    return [alert, *burns]


def kpi_description(kpi: Kpi, goal: targets.Goal | None, note: str = "",
                    target_text: str = "") -> str:
    """"<id> <name>: <definition> <target>" (the lint test reads the id back)."""
    extra = f" {note}" if note else ""
    return f"{kpi.id} {kpi.name}: {kpi.definition}{extra} " \
        f"{target_text or targets.sentence(kpi, goal)}"


def _targets(queries: Sequence[Query]) -> list[Builder[variants.Dataquery]]:
    built: list[Builder[variants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            Dataquery()
            .expr(query.expr)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
            .format(PromQueryFormat(query.fmt))
        )
        if query.legend:
            target = target.legend_format(query.legend)
        built.append(target.instant() if query.instant else target.range())
    return built


def _thresholds(steps: Steps) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=colour) for value, colour in steps]
    )


def _links(alerts: Sequence[str]) -> list[Builder[models.DashboardLink]]:
    return [
        DashboardLink(f"Runbook: {alert}").url(runbook_url(alert)).target_blank(True)
        for alert in alerts
    ]


_TARGET_COLOUR = [DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "text"})]


def stat_panel(title: str, description: str, unit: str, queries: Sequence[Query], steps: Steps,
               alerts: Sequence[str] = (), width: int = 4, height: int = 5) -> stat.Panel:
    """A scorecard tile: the value coloured by the target, a sparkline for the trend. A query
    with legend "target" is shown in a neutral colour beside the value."""
    panel = (
        stat.Panel().title(title).description(description).unit(unit)
        .datasource(DATASOURCE).targets(_targets(queries)).thresholds(_thresholds(steps))
        .graph_mode(BigValueGraphMode.AREA).color_mode(BigValueColorMode.VALUE)
        .text_mode(BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .links(_links(alerts)).span(width).height(height)
    )
    if any(q.legend == "target" for q in queries):
        panel = panel.override_by_name("target", _TARGET_COLOUR)
    return panel


def trend_panel(title: str, description: str, unit: str, queries: Sequence[Query], steps: Steps,
                alerts: Sequence[str] = (), width: int = 12, height: int = 8) -> timeseries.Panel:
    """A time series; the target is drawn as a dashed threshold line."""
    style = _threshold_line(steps)
    panel = (
        timeseries.Panel().title(title).description(description).unit(unit)
        .datasource(DATASOURCE).targets(_targets(queries)).thresholds(_thresholds(steps))
        .thresholds_style(GraphThresholdsStyleConfig().mode(style))
        .legend(VizLegendOptions().display_mode(LegendDisplayMode.TABLE)
                .placement(LegendPlacement.RIGHT).show_legend(True).calcs(["lastNotNull"]))
        .links(_links(alerts)).span(width).height(height)
    )
    if unit == "percentunit":
        panel = panel.min(0).max(1)
    if any(q.legend == "target" for q in queries):
        panel = panel.override_by_name("target", _TARGET_COLOUR)
    return panel


def _threshold_line(steps: Steps) -> GraphThresholdsStyleMode:
    """Draw the target line only when there is a target (more than the base step)."""
    return GraphThresholdsStyleMode.DASHED if len(steps) > 1 else GraphThresholdsStyleMode.OFF


def table_panel(title: str, description: str, unit: str, queries: Sequence[Query], steps: Steps,
                sort_by: str = "", alerts: Sequence[str] = (), width: int = 12,
                height: int = 8) -> table.Panel:
    """A table of instant values (one row per label set)."""
    panel = (
        table.Panel().title(title).description(description).unit(unit)
        .datasource(DATASOURCE).targets(_targets(queries)).thresholds(_thresholds(steps))
        .with_transformation(_organize())
        .links(_links(alerts)).span(width).height(height)
    )
    if sort_by:
        panel = panel.sort_by([TableSortByFieldState().display_name(sort_by).desc(True)])
    return panel


def _organize() -> DataTransformerConfig:
    # Hide the Time column of instant queries and the scrape labels that only add noise.
    hidden = {"Time": True, "job": True, "instance": True, "__name__": True}
    return DataTransformerConfig(id_val="organize", options={"excludeByName": hidden})


def bars_panel(title: str, description: str, unit: str, queries: Sequence[Query], steps: Steps,
               alerts: Sequence[str] = (), width: int = 12, height: int = 8) -> bargauge.Panel:
    """Horizontal bars, one per series (e.g. a histogram's buckets or a split by dimension)."""
    return (
        bargauge.Panel().title(title).description(description).unit(unit)
        .datasource(DATASOURCE).targets(_targets(queries)).thresholds(_thresholds(steps))
        .display_mode(BarGaugeDisplayMode.GRADIENT).orientation(VizOrientation.HORIZONTAL)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .links(_links(alerts)).span(width).height(height)
    )
