"""The frame every CareKPI dashboard shares: variables, links, ids and deterministic JSON."""

from __future__ import annotations

import json
from typing import Any, Literal

from grafana_foundation_sdk.builders.dashboard import (
    CustomVariable,
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from dashboards.panels import DATASOURCE, DATASOURCE_VAR
from kpis import names
from kpis.config import Config, Kpis
from kpis.durations import format_seconds

# The Prometheus datasource the provisioning file creates; dashboards select it by default.
DATASOURCE_UID = "carekpi-prometheus"
DATASOURCE_NAME = "CareKPI Prometheus"
TAG = "carekpi"
DEFAULT_WINDOW_SECONDS = 7 * 86400  # a week smooths weekdays; people pick others from the list
ClinicChoice = Literal["multi", "single", "none"]


def windows(config: Config | None) -> list[str]:
    """The window label values the exporter uses (formatted as it does), shortest first."""
    section = config.kpis if config is not None else Kpis()
    return [format_seconds(w.seconds) for w in section.windows]


def _datasource_variable() -> DatasourceVariable:
    return (
        DatasourceVariable(DATASOURCE_VAR).label("Data source").type("prometheus")
        .current(VariableOption(selected=True, text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )


def _clinic_variable(choice: ClinicChoice) -> QueryVariable:
    multi = choice == "multi"
    variable = (
        QueryVariable(names.CLINIC).label("Clinic").datasource(DATASOURCE)
        .query(f'label_values({names.KPI_TARGET}{{{names.CLINIC}!=""}}, {names.CLINIC})')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
        .multi(multi).include_all(multi)
    )
    if multi:
        variable = variable.all_value(".*").current(
            VariableOption(selected=True, text="All", value="$__all"))
    return variable


def _window_variable(config: Config | None) -> CustomVariable:
    values = windows(config)
    preferred = format_seconds(DEFAULT_WINDOW_SECONDS)
    default = preferred if preferred in values else values[-1]
    return (
        CustomVariable(names.WINDOW).label("Window")
        .description("The rolling window each KPI value is computed over.")
        .values(",".join(values))
        .current(VariableOption(selected=True, text=default, value=default))
        .options([VariableOption(selected=v == default, text=v, value=v) for v in values])
    )


def new(uid: str, title: str, description: str, config: Config | None,
        clinic: ClinicChoice = "multi", window: bool = True) -> Dashboard:
    """An empty dashboard with the shared variables and links to its sibling dashboards."""
    board = (
        Dashboard(title).uid(uid).description(description).tags([TAG])
        .time("now-7d", "now").refresh("1m").timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(DashboardLink("CareKPI").type(DashboardLinkType.DASHBOARDS).tags([TAG])
              .as_dropdown(True).include_vars(True).keep_time(True))
        .with_variable(_datasource_variable())
    )
    if clinic != "none":
        board = board.with_variable(_clinic_variable(clinic))
    if window:
        board = board.with_variable(_window_variable(config))
    return board


def row(title: str) -> Row:
    return Row(title).collapsed(False)


def to_dict(board: Dashboard) -> dict[str, Any]:
    """Plain JSON data with panel ids 1..n in layout order (stable across builds)."""
    data: dict[str, Any] = json.loads(JSONEncoder().encode(board.build()))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return data


def encode(data: dict[str, Any]) -> str:
    """Deterministic text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
