"""The deterministic demo data set: same ``now``, ``seed`` and incidents, same rows.

``generate`` returns every row of every local table in memory (naive UTC datetimes), ready for
``executemany`` and for reference computations in tests.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa

from kpis.demo import appointments, contacts, dirty, incidents, schema, surveys
from kpis.demo import fake_identities as fake
from kpis.demo.clinics import CLINICS, local_date, to_utc
from kpis.demo.world import HISTORY_DAYS, Row, World

FRESH_WITHIN = timedelta(minutes=50)
# Local table -> the column whose newest value is the entity's freshness.
FRESHNESS_COLUMNS = {
    "appointment": "booked_at", "portal_message": "received_at", "call_log": "queue_entered_at",
    "post_visit_followup": "visit_end_at", "patient_complaint": "received_at",
    "survey_invite": "sent_at", "survey_answer": "submitted_at",
}


@dataclass(frozen=True)
class DemoData:
    now: datetime  # aware, UTC
    seed: int
    incidents: tuple[str, ...]
    tables: dict[str, list[Row]]  # local table name -> rows

    def counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


def utc_now(now: datetime) -> datetime:
    """``now`` as an aware UTC time (a naive value is taken as UTC), to the microsecond."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def generate(now: datetime, *, incidents_on: Sequence[str] = (), seed: int = 7,
             days: int = HISTORY_DAYS) -> DemoData:
    active = incidents.check(incidents_on)
    aware = utc_now(now)
    world = World(random.Random(seed), aware.replace(tzinfo=None), active, seed, days)
    appts, follow_ups = appointments.generate(world)
    world.stream("messages")
    messages = contacts.messages(world)
    world.stream("calls")
    calls = contacts.calls(world)
    world.stream("complaints")
    complaints = contacts.complaints(world)
    world.stream("surveys")
    invites = surveys.invitations(world, appts)
    answers = surveys.answers(world, invites)
    tables = {
        "appointment": appts, "portal_message": messages, "call_log": calls,
        "post_visit_followup": follow_ups, "patient_complaint": complaints,
        "survey_invite": invites, "survey_answer": answers,
    }
    world.stream("freshness")
    _keep_fresh(world, tables)
    incidents.stop_feed(world, tables)
    world.stream("dirty")
    dirty.plant(world, tables)
    _whole_seconds(tables)
    ordered = tuple(n for n in incidents.INCIDENTS if n in active)
    return DemoData(aware, seed, ordered, tables)


def _whole_seconds(tables: dict[str, list[Row]]) -> None:
    """Stored times have whole seconds, as in most systems (and MariaDB's DATETIME would round
    fractions, SQLite would keep them: truncating here gives every dialect the same values)."""
    for table in schema.ENTITY_TABLES.values():
        columns = [c.name for c in table.columns if isinstance(c.type, sa.DateTime)]
        for row in tables[table.name]:
            for column in columns:
                value = row[column]
                if value is not None and value.microsecond:
                    row[column] = value.replace(microsecond=0)


def _newest(rows: list[Row], column: str) -> datetime | None:
    return max((r[column] for r in rows if r[column] is not None), default=None)


def _keep_fresh(world: World, tables: dict[str, list[Row]]) -> None:
    """Every feed has a record from the last hour, whatever the hour: low-volume feeds
    (complaints, night-time follow-ups) get one late arrival, as a live system would."""
    for table, column in FRESHNESS_COLUMNS.items():
        newest = _newest(tables[table], column)
        if newest is not None and newest >= world.now - FRESH_WITHIN:
            continue
        at = world.now - timedelta(minutes=world.rng.uniform(5, 45))
        clinic = world.rng.choice(CLINICS).code
        tables[table].extend(_late_arrival(world, tables, table, clinic, at))


def _late_arrival(world: World, tables: dict[str, list[Row]], table: str, clinic: str,
                  at: datetime) -> list[Row]:
    if table == "appointment":
        return [_web_booking(world, clinic, at)]
    if table == "portal_message":
        return [contacts.message_row(world, clinic, at)]
    if table == "call_log":
        row = contacts.call_row(world, clinic, "NURSE", at - timedelta(seconds=90),
                                fake.phone(world.rng), "TRIAGE")
        return [row] if row is not None else []
    if table == "post_visit_followup":
        return [appointments.follow_up_row(world, None, clinic, at)]
    if table == "patient_complaint":
        return [contacts.complaint_row(world, clinic, at)]
    if table == "survey_invite":
        return [surveys.invitation_row(world, None, clinic, at, respond=False)]
    invite = surveys.invitation_row(world, None, clinic, at - timedelta(hours=3), respond=False)
    invite["completed_at"] = at
    tables["survey_invite"].append(invite)
    return surveys.answer_rows(world, invite)


def _web_booking(world: World, clinic: str, at: datetime) -> Row:
    """A patient books online, at any hour, a slot 7-20 days ahead."""
    day = local_date(world.now) + timedelta(days=world.rng.randint(7, 20))
    while not world.clock.is_open_day(day):
        day += timedelta(days=1)
    slot = to_utc(day, time(8)) + timedelta(minutes=20 * world.rng.randrange(30))
    code = next(c for c in CLINICS if c.code == clinic)
    row = appointments.booking_row(world, code, slot, at)
    row["first_reminder_at"] = None
    return row
