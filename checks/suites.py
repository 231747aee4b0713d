"""Built-in suites derived from the mapping (Kahn et al. 2016) plus the user's custom checks.

A :class:`CheckSpec` names one GX expectation over the entity's check query (see
:mod:`checks.batches`), whose columns are the logical field names plus a few derived columns
(``__present_<field>``, ``__record_complete``, ``__score_in_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kpis import checks_config, model
from kpis.checks_config import SUITES, ChecksConfig, CustomCheck, format_regex
from kpis.config import Config, Entity

# Later event >= earlier event, when both are present (D4).
TIME_ORDER: dict[str, tuple[tuple[str, str], ...]] = {
    "appointments": (("created", "start"), ("arrived", "provider_start"),
                     ("provider_start", "departed")),
    "messages": (("received", "first_response"),),
    "calls": (("queue_entered", "answered"),),
    "complaints": (("received", "responded"),),
    "follow_ups": (("due_from", "completed"),),
}
# Planned times, legitimately in the future: exempt from the "no future timestamps" check.
SCHEDULED = {("appointments", "start"), ("follow_ups", "due_from")}


@dataclass(frozen=True)
class CheckSpec:
    entity: str
    suite: str
    check: str
    column: str  # logical name(s), for people and labels: "start", "created<=start", "*"
    severity: str
    threshold: float | None  # a ratio 0..1, or seconds for freshness
    expectation: str  # GX snake-case name
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Freshness: the newest record up to this local time (now and not_future's tolerance); a
    # record dated later is not_future's defect, not fresh data (D5 bounds it by now too).
    newest_until: datetime | None = None

    @property
    def unit(self) -> str:
        return "seconds" if self.check == "freshness" else "ratio"


def present_column(name: str) -> str:
    return f"__present_{name}"


RECORD_COMPLETE = "__record_complete"
SCORE_IN_SCALE = "__score_in_scale"
KEY = "__key"


def required_mapped(checks: ChecksConfig, name: str, entity: Entity) -> tuple[str, ...]:
    return tuple(f for f in checks.required_fields(name) if entity.mapped(f))


def builtin(config: Config, checks: ChecksConfig, name: str, now: datetime) -> list[CheckSpec]:
    """Every enabled built-in check of one mapped entity."""
    entity = config.entities[name]
    specs: list[CheckSpec] = []

    def add(check: str, label: str, expectation: str, until: datetime | None = None,
            **kwargs: Any) -> None:
        enabled, threshold, severity = checks.rule(name, check)
        if not enabled:
            return
        suite = _suite_of(check)
        if threshold < 1.0 and check != "freshness":
            kwargs["mostly"] = threshold
        specs.append(CheckSpec(name, suite, check, label, severity, threshold, expectation,
                               kwargs, until))

    required = required_mapped(checks, name, entity)
    for field_name in required:
        add("completeness", field_name, "expect_column_values_to_not_be_null",
            column=present_column(field_name))
    if required:
        add("record_completeness", "*", "expect_column_values_to_not_be_null",
            column=RECORD_COMPLETE)
    for field_name, mapping in sorted(entity.codes.items()):
        if entity.mapped(field_name):
            local = sorted({code for codes in mapping.values() for code in codes}, key=str)
            add("conformance", field_name, "expect_column_values_to_be_in_set",
                column=field_name, value_set=local)
    for field_name, pattern in sorted(checks.formats.get(name, {}).items()):
        add("format", field_name, "expect_column_values_to_match_regex",
            column=field_name, regex=format_regex(pattern))
    for earlier, later in TIME_ORDER.get(name, ()):
        if entity.mapped(earlier) and entity.mapped(later):
            add("time_order", f"{earlier}<={later}",
                "expect_column_pair_values_a_to_be_greater_than_b", column_A=later,
                column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing")
    if entity.mapped("score"):
        add("score_range", "score", "expect_column_values_to_be_in_set",
            column=SCORE_IN_SCALE, value_set=[1])
    local_now = local_time(now, entity.timezone)
    latest = local_now + timedelta(seconds=checks.future_tolerance.seconds)
    for spec_field in model.ENTITIES[name]:
        if spec_field.type is model.FieldType.TIMESTAMP and entity.mapped(spec_field.name) \
                and (name, spec_field.name) not in SCHEDULED:
            add("not_future", spec_field.name, "expect_column_values_to_be_between",
                column=spec_field.name, max_value=latest)
    fresh = model.FRESHNESS_FIELD.get(name)
    if fresh and entity.mapped(fresh):
        oldest = local_now - timedelta(seconds=checks.freshness_max_age.seconds)
        add("freshness", fresh, "expect_column_max_to_be_between", until=latest,
            column=fresh, min_value=oldest)
    return specs


def custom(check: CustomCheck) -> CheckSpec:
    """A user's check; logical names stay (the check query aliases columns to them)."""
    kwargs = dict(check.kwargs)
    return CheckSpec(check.entity, "custom", check.check, check.label,
                     check.severity, kwargs.get("mostly"), check.expectation, kwargs)


def referenced_columns(spec: CheckSpec) -> list[str]:
    return checks_config.referenced_columns(spec.kwargs)


def select(config: Config, checks: ChecksConfig, now: datetime, entity: str | None = None,
           suite: str | None = None) -> list[CheckSpec]:
    """The checks of a run, in a stable order: entity, then built-ins, then custom."""
    names = sorted(config.entities) if entity is None else [entity]
    specs: list[CheckSpec] = []
    for name in names:
        specs.extend(builtin(config, checks, name, now))
        specs.extend(custom(c) for c in checks.custom if c.entity == name)
    return [s for s in specs if suite is None or s.suite == suite]


def local_time(now: datetime, timezone: str) -> datetime:
    """``now`` as the naive wall-clock time of the entity's time zone (how it stores stamps)."""
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)


def _suite_of(check: str) -> str:
    from kpis.checks_config import BUILTIN_CHECKS

    suite = BUILTIN_CHECKS[check][0]
    assert suite in SUITES
    return suite
