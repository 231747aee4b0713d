"""The KPI catalog: every KPI's definition, loaded from kpis/definitions/*.yaml.

The catalog is the single source the collectors, the alert rules and the dashboards are built
from. It is read once and cached; it is data shipped with the package, so a defect here is a
bug, reported as a CatalogError naming the file and the KPI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kpis import model
from kpis.durations import format_seconds
from kpis.errors import CatalogError

Kind = Literal["proportion", "duration", "score", "backlog", "freshness"]
Stat = Literal["ratio", "p50", "p90", "mean", "value", "age"]
Param = Literal["sla", "sla_overrides", "threshold", "item", "lookback"]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    stat: Stat
    op: Literal["<=", ">="]
    value: float

    def met(self, value: float) -> bool:
        return value <= self.value if self.op == "<=" else value >= self.value

    def text(self, unit: str) -> str:
        """As a user reads and writes it: ``p50 <= 7d`` for seconds, ``ratio <= 0.1``."""
        value = format_seconds(self.value) if unit == "s" else f"{self.value:g}"
        return f"{self.stat} {self.op} {value}"


class Kpi(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    key: str
    name: str
    section: str
    entity: str
    kind: Kind
    anchor: str
    fields: tuple[str, ...]  # required: every one must be mapped
    any_of: tuple[tuple[str, ...], ...] = ()  # at least one field of each group is required
    optional_fields: tuple[str, ...] = ()  # used when mapped; OPTIONAL_EFFECT says otherwise
    dimensions: tuple[str, ...] = ()
    definition: str
    reference: str = Field(min_length=1)  # where the definition comes from; FHIR elements
    target: Target | None = None
    buckets: tuple[float, ...] = ()
    min_volume: int = 0
    alert_window: str = "1d"
    alert_for: str = "15m"
    severity: Literal["critical", "warning", "info"] = "warning"
    burn_rate: bool = False
    unit: str
    params: tuple[Param, ...] = ()
    # A backlog is the live view of another KPI's objective (the SLA it counts breaches of):
    # alerts carry that KPI's key as their ``objective`` label, so a page for the objective
    # silences the backlog's page (alerts/alertmanager.yml).
    objective_of: str | None = None
    # What a backlog counts, in words for a description: "portal messages past their SLA".
    counts: str | None = None

    @property
    def windowed(self) -> bool:
        """Its values are per window; a backlog and freshness are values of the moment."""
        return self.kind not in ("backlog", "freshness")

    @property
    def objective(self) -> str:
        """The key of the KPI whose objective this KPI's alerts belong to."""
        return self.objective_of or self.key

    @property
    def target_text(self) -> str:
        return self.target.text(self.unit) if self.target else "trend only"

    @property
    def label_dimensions(self) -> tuple[str, ...]:
        """Dimensions that are mapped fields (clinic first), as opposed to derived ones."""
        derived = {"reminder", "lead_time"}
        return ("clinic", *(d for d in self.dimensions if d not in derived))


# What a KPI does when an optional field is not mapped (``carekpi kpis show``).
OPTIONAL_EFFECT = {
    "clinic": 'every record counts under clinic="all"',
    "department": 'every record counts under department="all"',
    "channel": 'every record counts under channel="all"',
    "queue": 'every record counts under queue="all"',
    "priority": "every message has the default SLA (no per-priority override applies)",
    "item": "every answer counts, whatever the survey item",
    "outcome": "every call with a queue entry is offered (no IVR-only or coded outcomes)",
    "answered": "a call with an abandon time or outcome counts as abandoned",
}


def missing_reason(kpi: Kpi, mapped: Callable[[str], bool]) -> str | None:
    """Why the mapping cannot provide the KPI's required fields (None when it can)."""
    missing = [f"{kpi.entity}.{f}" for f in kpi.fields if not mapped(f)]
    missing += [" or ".join(f"{kpi.entity}.{f}" for f in group) for group in kpi.any_of
                if not any(mapped(f) for f in group)]
    return ", ".join(missing) + " not mapped" if missing else None


SECTIONS = {
    "access": "Access, scheduling and waiting",
    "messages": "Response SLAs",
    "calls": "Contact center",
    "follow_up": "Follow-up and closing the loop",
    "experience": "Patient satisfaction",
    "data_quality": "Records and data quality",
}


def _check(kpi: Kpi, source: str) -> None:
    where = f"{source}: {kpi.id}"
    if kpi.entity != "*":
        if kpi.entity not in model.ENTITIES:
            raise CatalogError(f"{where}: unknown entity {kpi.entity!r}")
        known = model.entity_fields(kpi.entity)
        alternatives = [n for group in kpi.any_of for n in group]
        for name in (*kpi.fields, *alternatives, *kpi.optional_fields):
            if name not in known:
                raise CatalogError(f"{where}: unknown field {kpi.entity}.{name}")
        if len({*kpi.fields, *kpi.optional_fields, *alternatives}) != len(
                kpi.fields) + len(kpi.optional_fields) + len(alternatives):
            raise CatalogError(f"{where}: a field is either required or optional")
    if kpi.kind == "duration" and list(kpi.buckets) != sorted(set(kpi.buckets)):
        raise CatalogError(f"{where}: buckets must be strictly increasing")
    if kpi.kind == "duration" and not kpi.buckets:
        raise CatalogError(f"{where}: a duration KPI needs buckets")
    if kpi.section not in SECTIONS:
        raise CatalogError(f"{where}: unknown section {kpi.section!r}")
    if kpi.kind == "backlog" and not kpi.counts:
        raise CatalogError(f"{where}: a backlog KPI says what it counts (counts:)")


@functools.cache
def load() -> tuple[Kpi, ...]:
    """All KPIs, in catalog order (files sorted by name, KPIs in file order)."""
    kpis: list[Kpi] = []
    folder = resources.files("kpis") / "definitions"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".yaml"):
            continue
        source = f"kpis/definitions/{entry.name}"
        for raw in yaml.safe_load(entry.read_text(encoding="utf-8")) or []:
            try:
                kpi = Kpi.model_validate(raw)
            except ValidationError as exc:
                raise CatalogError(f"{source}: {exc.errors()[0]['msg']}") from None
            _check(kpi, source)
            kpis.append(kpi)
    order = {"access": 0, "messages": 1, "calls": 2, "follow_up": 3, "experience": 4}
    kpis.sort(key=lambda k: (order.get(k.section, 9), k.id[0], int(k.id[1:])))
    keys = [k.key for k in kpis]
    if len(set(keys)) != len(keys):
        raise CatalogError("kpis/definitions: duplicate KPI key")
    for kpi in kpis:
        if kpi.objective_of is not None and kpi.objective_of not in keys:
            raise CatalogError(f"kpis/definitions: {kpi.id}: objective_of names no KPI "
                               f"({kpi.objective_of!r})")
    return tuple(kpis)


def by_key() -> dict[str, Kpi]:
    return {k.key: k for k in load()}


def get(ref: str) -> Kpi:
    """A KPI by key (``no_show``) or id (``A1``), case-insensitive for ids."""
    for kpi in load():
        if ref == kpi.key or ref.upper() == kpi.id:
            return kpi
    raise KeyError(ref)
