"""The ``checks:`` section of carekpi.yaml, validated strictly (unknown keys are errors).

```yaml
checks:
  since: 24h                  # default window of `checks run` (absent: check every record)
  schedule: 1h                # `carekpi serve` runs the checks this often (absent: never)
  freshness_max_age: 2h       # D5
  future_tolerance: 5m        # clock skew allowed before a timestamp counts as "in the future"
  required: {appointments: [id, clinic, start, created, status]}   # replaces the built-in list
  formats: {calls: {caller_ref: phone}}                            # phone or a regex
  rules:                      # thresholds and severities of the built-in checks (Kahn et al.)
    completeness: {threshold: 0.98, severity: error}
    freshness: {severity: error}
    appointments.time_order: {enabled: false}
  custom:
    - {entity: calls, expectation: expect_column_values_to_not_be_null,
       kwargs: {column: reason, mostly: 0.9}, severity: warning}
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from kpis import model
from kpis.durations import Duration
from kpis.strict import Strict, duration

Severity = Literal["error", "warning"]
SUITES = ("completeness", "conformance", "plausibility", "freshness", "custom")

# Built-in check -> (suite, default threshold, default severity), in the Kahn et al. (2016)
# data-quality dimensions; D5 is the catalog's freshness KPI (`carekpi kpis show D5`).
BUILTIN_CHECKS: dict[str, tuple[str, float, Severity]] = {
    "completeness": ("completeness", 0.98, "error"),  # D1, per required field
    "record_completeness": ("completeness", 0.95, "error"),  # D2
    "conformance": ("conformance", 0.99, "error"),  # D3, coded fields
    "format": ("conformance", 0.99, "error"),  # D3, phone and other formats
    "time_order": ("plausibility", 1.0, "error"),  # D4
    "score_range": ("plausibility", 1.0, "error"),  # D4
    "not_future": ("plausibility", 1.0, "error"),  # D4
    "freshness": ("freshness", 7200.0, "warning"),  # D5: seconds, checked via freshness_max_age
}

# Fields a record needs for the KPIs of its entity (D1 checks each, D2 all of them together).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "appointments": ("id", "clinic", "start", "created", "status"),
    "messages": ("id", "clinic", "channel", "received"),
    "calls": ("id",),  # IVR-only calls never enter a queue: queue fields may be empty
    "follow_ups": ("id", "clinic", "due_from"),
    "complaints": ("id", "clinic", "received"),
    "surveys": ("id", "clinic", "submitted"),  # a skipped item has no score (S1 excludes it)
    "survey_invitations": ("id", "clinic", "sent"),
}

FORMATS = {
    # E.164 or national notation: digits with spaces, dots, dashes, parentheses; 6-15 digits.
    "phone": r"^\+?[0-9][0-9 ().-]{4,18}[0-9]$",
}


class Rule(Strict):
    enabled: bool = True
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    severity: Severity | None = None


COLUMN_ARGS = ("column", "column_A", "column_B")
LIST_ARGS = ("column_list",)


def referenced_columns(kwargs: Mapping[str, Any]) -> list[str]:
    """The logical columns an expectation's arguments name, in argument order."""
    names = [str(kwargs[a]) for a in COLUMN_ARGS if a in kwargs]
    for arg in LIST_ARGS:
        value = kwargs.get(arg)
        if isinstance(value, list):
            names.extend(str(c) for c in value)
    return names


class CustomCheck(Strict):
    entity: str
    expectation: str
    kwargs: dict[str, Any] = {}
    severity: Severity = "error"
    name: str | None = None

    @field_validator("expectation")
    @classmethod
    def _snake(cls, value: str) -> str:
        if not value.startswith("expect_"):
            raise ValueError("an expectation name starts with expect_ (see the GX gallery)")
        return value

    @property
    def check(self) -> str:
        return self.name or self.expectation

    @property
    def label(self) -> str:
        """The ``column`` of its results and metrics: the columns it reads, or ``*``."""
        return ",".join(referenced_columns(self.kwargs)) or "*"


class ChecksConfig(Strict):
    since: Duration | None = None
    schedule: Duration | None = None
    freshness_max_age: Duration = Duration(7200)
    future_tolerance: Duration = Duration(300)
    required: dict[str, list[str]] = {}
    formats: dict[str, dict[str, str]] = {}
    rules: dict[str, Rule] = {}
    custom: list[CustomCheck] = []

    _dur = field_validator("since", "schedule", "freshness_max_age", "future_tolerance",
                           mode="before")(lambda v: None if v is None else duration(v))

    @field_validator("since", "schedule", "freshness_max_age")
    @classmethod
    def _positive(cls, value: Duration | None) -> Duration | None:
        if value is not None and value.seconds <= 0:
            raise ValueError("must be longer than zero")
        return value

    def rule(self, entity: str, check: str) -> tuple[bool, float, Severity]:
        """Whether a built-in check runs, its threshold and severity (entity rule wins)."""
        _, threshold, severity = BUILTIN_CHECKS[check]
        if check == "freshness":
            threshold = self.freshness_max_age.seconds
        enabled = True
        for key in (check, f"{entity}.{check}"):
            rule = self.rules.get(key)
            if rule is None:
                continue
            enabled = rule.enabled
            threshold = threshold if rule.threshold is None or check == "freshness" \
                else rule.threshold
            severity = rule.severity or severity
        return enabled, threshold, severity

    def required_fields(self, entity: str) -> tuple[str, ...]:
        if entity in self.required:
            return tuple(self.required[entity])
        return REQUIRED_FIELDS.get(entity, ("id",))


class Invalid(ValueError):
    """A ``checks:`` setting that contradicts the mapping; ``loc`` is its dotted key."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def cross_check(checks: ChecksConfig, entities: Mapping[str, Any]) -> None:
    """The section against the mapping (``entities``: name -> Entity); raises :class:`Invalid`."""
    for entity, fields in checks.required.items():
        _known_entity(entities, entity, ("required", entity))
        for name in fields:
            if name not in model.entity_fields(entity):
                raise Invalid(("checks", "required", entity), f"{name!r} is not a field")
    for entity, formats in checks.formats.items():
        _known_entity(entities, entity, ("formats", entity))
        for name, pattern in formats.items():
            if name not in entities[entity].fields:
                raise Invalid(("checks", "formats", entity, name), "field not mapped")
            _regex(("checks", "formats", entity, name), pattern)
    for key in checks.rules:
        entity, _, check = key.rpartition(".")
        if check not in BUILTIN_CHECKS:
            raise Invalid(("checks", "rules", key),
                          f"unknown check; one of {', '.join(BUILTIN_CHECKS)}")
        if entity:
            _known_entity(entities, entity, ("rules", key))
    seen: set[tuple[str, str, str]] = set()
    for index, custom in enumerate(checks.custom):
        _known_entity(entities, custom.entity, ("custom", str(index), "entity"))
        if custom.check in BUILTIN_CHECKS:
            raise Invalid(("checks", "custom", str(index), "name"),
                          f"{custom.check!r} is a built-in check's name; choose another")
        # A result is known by entity, check and column(s): in the report, the history and
        # the metrics (two checks with one identity would be two series with one label set).
        ident = (custom.entity, custom.check, custom.label)
        if ident in seen:
            raise Invalid(("checks", "custom", str(index)),
                          f"another check of {custom.entity} is named {custom.check!r} on "
                          f"{custom.label}; give this one a different name")
        seen.add(ident)


def _known_entity(entities: Mapping[str, Any], entity: str, loc: tuple[str, ...]) -> None:
    if entity not in entities:
        mapped = ", ".join(sorted(entities)) or "none"
        raise Invalid(("checks", *loc), f"entity {entity!r} is not mapped (mapped: {mapped})")


def _regex(loc: tuple[str, ...], pattern: str) -> None:
    if pattern in FORMATS:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise Invalid(loc, f"not a format name ({', '.join(FORMATS)}) "
                           f"nor a valid regex: {exc}") from None


def format_regex(pattern: str) -> str:
    return FORMATS.get(pattern, pattern)
