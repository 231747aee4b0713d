"""The logical data model: entities, their fields and canonical codes (FHIR-aligned names).

Users' databases never use these names; the config maps each logical field to a column or
SQL expression of theirs and their local codes to the canonical ones below.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FieldType(StrEnum):
    ID = "id"  # a record identifier: never exported, never logged
    LABEL = "label"  # a low-cardinality dimension that may become a metric label
    TIMESTAMP = "timestamp"
    CODE = "code"  # a coded value mapped to canonical codes
    BOOL = "bool"
    NUMBER = "number"
    TEXT = "text"  # free text or a personal reference: compared in SQL only, never exported


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    codes: tuple[str, ...] = ()  # canonical codes, for CODE fields
    pinned: bool = False  # a later event: values after the evaluation time count as absent


APPOINTMENT_STATUSES = (
    "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
    "entered-in-error", "checked-in", "waitlist",
)


# Survey scales: code -> (lowest, highest) valid score. Scores outside are counted, left out.
SCALE_BOUNDS: dict[str, tuple[int, int]] = {"0-10": (0, 10), "1-5": (1, 5), "1-4": (1, 4)}
# A call's coded outcome (disposition): a flag-only export maps its answered flag here
# (``answered: [Y], abandoned: [N]``); ``ivr`` calls never entered the agent queue.
CALL_OUTCOMES = ("answered", "abandoned", "ivr", "other")
# Every coded or boolean field also accepts this canonical value: its records are left out of
# every KPI of the entity (test calls, phantom records, internal test patients), and counted.
EXCLUDED_CODE = "excluded"
BOOL_CODES = ("true", "false")


def _f(name: str, type_: FieldType, codes: tuple[str, ...] = (), pinned: bool = False) -> Field:
    return Field(name, type_, codes, pinned)


ID, LABEL, TS, CODE, BOOL, NUM, TEXT = (
    FieldType.ID, FieldType.LABEL, FieldType.TIMESTAMP, FieldType.CODE, FieldType.BOOL,
    FieldType.NUMBER, FieldType.TEXT,
)

ENTITIES: dict[str, tuple[Field, ...]] = {
    "appointments": (
        _f("id", ID), _f("clinic", LABEL), _f("department", LABEL),
        _f("start", TS), _f("created", TS), _f("status", CODE, APPOINTMENT_STATUSES),
        _f("cancellation_date", TS), _f("arrived", TS), _f("provider_start", TS),
        _f("departed", TS), _f("booking_channel", CODE, ("online", "phone", "in-person", "other")),
        _f("virtual", BOOL), _f("reminder_sent", TS), _f("reminded", BOOL),
    ),
    "messages": (
        _f("id", ID), _f("clinic", LABEL), _f("channel", LABEL),
        _f("priority", CODE, ("routine", "urgent")), _f("received", TS),
        _f("first_response", TS, pinned=True), _f("auto_ack", TS),
    ),
    "calls": (
        _f("id", ID), _f("clinic", LABEL), _f("queue", LABEL), _f("queue_entered", TS),
        _f("answered", TS), _f("abandoned", TS), _f("ended", TS), _f("caller_ref", TEXT),
        _f("reason", TEXT), _f("resolved", BOOL),
        _f("outcome", CODE, CALL_OUTCOMES), _f("answer_wait", NUM),
    ),
    "follow_ups": (
        _f("id", ID), _f("clinic", LABEL), _f("due_from", TS), _f("completed", TS, pinned=True),
        _f("outcome", CODE, ("reached", "voicemail", "no-answer", "other")),
    ),
    "complaints": (
        _f("id", ID), _f("clinic", LABEL), _f("received", TS), _f("responded", TS, pinned=True),
        _f("resolved", TS, pinned=True),
    ),
    "surveys": (
        _f("id", ID), _f("clinic", LABEL), _f("submitted", TS), _f("instrument", LABEL),
        _f("item", TEXT), _f("score", NUM), _f("scale", CODE, tuple(SCALE_BOUNDS)),
        _f("contacted", TS, pinned=True),
    ),
    "survey_invitations": (
        _f("id", ID), _f("clinic", LABEL), _f("sent", TS), _f("completed", TS, pinned=True),
    ),
}

# The timestamp whose newest value measures an entity's freshness (D5).
FRESHNESS_FIELD: dict[str, str] = {
    "appointments": "created",
    "messages": "received",
    "calls": "queue_entered",
    "follow_ups": "due_from",
    "complaints": "received",
    "surveys": "submitted",
    "survey_invitations": "sent",
}

# Dimensions that may become metric labels (each capped in distinct values).
LABEL_DIMENSIONS = ("clinic", "department", "channel", "queue")


def canonical_codes(f: Field) -> tuple[str, ...]:
    """The canonical values a code map of the field may use."""
    return (*(BOOL_CODES if f.type is FieldType.BOOL else f.codes), EXCLUDED_CODE)


def entity_fields(entity: str) -> dict[str, Field]:
    return {f.name: f for f in ENTITIES[entity]}


def field(entity: str, name: str) -> Field:
    return entity_fields(entity)[name]
