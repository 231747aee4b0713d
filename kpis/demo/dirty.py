"""Dirty records: a small, exact number of defects planted in the demo data, so the
data-quality checks have something to find. None of them is recent enough (20-60 days old)
to move an alerting KPI past its target.

``DIRTY_RECORDS`` is the manifest the checks' tests assert against: each entry names the
logical entity and fields, the Kahn et al. defect kind, the exact count, and a SQL predicate on
the LOCAL demo table that selects exactly the defective rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from kpis.demo.world import Row, World


@dataclass(frozen=True)
class DirtyRecord:
    entity: str
    fields: tuple[str, ...]
    kind: str  # completeness | conformance | plausibility
    count: int
    description: str
    table: str
    where: str  # SQL predicate on the local table selecting exactly the defective rows


DIRTY_RECORDS: tuple[DirtyRecord, ...] = (
    DirtyRecord("appointments", ("arrived", "provider_start"), "plausibility", 2,
                "provider_start before arrived (check-in)", "appointment",
                "provider_seen_at < checkin_at"),
    DirtyRecord("appointments", ("clinic",), "completeness", 2, "clinic (site_code) missing",
                "appointment", "site_code IS NULL"),
    DirtyRecord("appointments", ("created", "start"), "plausibility", 2,
                "created (booked_at) after start (slot_start)", "appointment",
                "booked_at > slot_start"),
    DirtyRecord("messages", ("received", "first_response"), "plausibility", 1,
                "first_response before received", "portal_message",
                "first_staff_reply_at < received_at"),
    DirtyRecord("surveys", ("score", "scale"), "conformance", 1,
                "score 11 on a 0-10 scale", "survey_answer",
                "scale = '0-10' AND (score < 0 OR score > 10)"),
)


def _seen_before_checkin(row: Row) -> None:
    row["provider_seen_at"] = row["checkin_at"] - timedelta(minutes=4)


def _no_clinic(row: Row) -> None:
    row["site_code"] = None


def _booked_after_start(row: Row) -> None:
    row["booked_at"] = row["slot_start"] + timedelta(hours=2)
    row["first_reminder_at"] = None


def _reply_before_receipt(row: Row) -> None:
    row["first_staff_reply_at"] = row["received_at"] - timedelta(minutes=10)


def _score_out_of_range(row: Row) -> None:
    row["score"] = 11


Planter = tuple[str, str, Callable[[Row], bool], int, Callable[[Row], None]]


def plant(world: World, tables: dict[str, list[Row]]) -> None:
    """Apply each defect to distinct, otherwise clean rows 20-60 days old (with less history,
    from the first third of it to its start)."""
    span = min(60.0, float(world.history_days))
    low, high = world.now - timedelta(days=span), world.now - timedelta(days=span / 3)

    def visit(row: Row) -> bool:
        return bool(row["appt_status"] == "CMP" and not row["is_telehealth"]
                    and row["site_code"] is not None and low <= row["slot_start"] <= high)

    planters: tuple[Planter, ...] = (
        ("appointment", "seen", visit, 2, _seen_before_checkin),
        ("appointment", "clinic", visit, 2, _no_clinic),
        ("appointment", "booked", visit, 2, _booked_after_start),
        ("portal_message", "reply", lambda r: r["first_staff_reply_at"] is not None
         and low <= r["received_at"] <= high, 1, _reply_before_receipt),
        ("survey_answer", "score", lambda r: r["item"] == "overall" and r["score"] == 10
         and low <= r["submitted_at"] <= high, 1, _score_out_of_range),
    )
    used: set[int] = set()
    for table, _name, eligible, count, defect in planters:
        candidates = [i for i, r in enumerate(tables[table])
                      if eligible(r) and (table != "appointment" or i not in used)]
        for index in world.rng.sample(candidates, count):
            if table == "appointment":
                used.add(index)
            defect(tables[table][index])
