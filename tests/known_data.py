"""Small data sets whose KPI values are known by construction (see each row's comment).

Local names differ from the logical ones on purpose: the mapping is part of what is tested.
Evaluation time: Monday 2026-03-02 12:00 UTC. Windows: 1h [11:00, 12:00), 1d [Sun 12:00, Mon
12:00), 7d, 30d.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

AS_OF = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
D = datetime
md = sa.MetaData()

appt = sa.Table(
    "appt", md,
    sa.Column("appt_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("slot_start", sa.DateTime), sa.Column("booked_at", sa.DateTime),
    sa.Column("st", sa.String(8)), sa.Column("cancelled_at", sa.DateTime),
    sa.Column("checkin_at", sa.DateTime), sa.Column("roomed_at", sa.DateTime),
    sa.Column("checkout_at", sa.DateTime), sa.Column("chan", sa.String(8)),
    sa.Column("is_virtual", sa.Boolean), sa.Column("reminder_at", sa.DateTime),
)


def _a(i: int, site: str, start: datetime, booked: datetime, st: str, **kw: Any) -> dict[str, Any]:
    row = dict(appt_id=i, site=site, slot_start=start, booked_at=booked, st=st, cancelled_at=None,
               checkin_at=None, roomed_at=None, checkout_at=None, chan="PHONE", is_virtual=False,
               reminder_at=None)
    row.update(kw)
    return row


APPOINTMENTS = [
    # 1: fulfilled, early arrival (clock starts at 09:00): wait 20 min, cycle 50 min, lead 10 d,
    #    reminded 45 h ahead.
    _a(1, "north", D(2026, 3, 2, 9), D(2026, 2, 20, 9), "DONE", checkin_at=D(2026, 3, 2, 8, 50),
       roomed_at=D(2026, 3, 2, 9, 20), checkout_at=D(2026, 3, 2, 9, 50),
       reminder_at=D(2026, 2, 28, 12)),
    # 2: no-show, booked 49 h ahead, no reminder, virtual, lead 2 d.
    _a(2, "north", D(2026, 3, 2, 10), D(2026, 2, 28, 9), "NS", is_virtual=True),
    # 3: fulfilled in the last hour, late arrival (clock starts at 11:40): wait 15 min, lead 0 d,
    #    booked online.
    _a(3, "north", D(2026, 3, 2, 11, 30), D(2026, 3, 2, 8), "DONE",
       checkin_at=D(2026, 3, 2, 11, 40), roomed_at=D(2026, 3, 2, 11, 55), chan="WEB"),
    # 4: cancelled 12 h before start: a late cancellation; still due a reminder.
    _a(4, "north", D(2026, 3, 2, 8), D(2026, 2, 25, 8), "CAN", cancelled_at=D(2026, 3, 1, 20)),
    # 5: cancelled 4 days ahead (7d window only): not late.
    _a(5, "north", D(2026, 3, 1, 8), D(2026, 2, 20, 8), "CAN", cancelled_at=D(2026, 2, 25, 8)),
    # 6: arrived (counts as attended), wait 35 min, lead 3 d.
    _a(6, "south", D(2026, 3, 2, 9), D(2026, 2, 27, 9), "ARR", checkin_at=D(2026, 3, 2, 9, 5),
       roomed_at=D(2026, 3, 2, 9, 40)),
    # 7: booked for later today: in no window (start after the evaluation time).
    _a(7, "south", D(2026, 3, 2, 13), D(2026, 2, 27, 9), "BOOKED"),
    # 8: entered in error: excluded everywhere.
    _a(8, "south", D(2026, 2, 28, 10), D(2026, 2, 27, 9), "ERR"),
    # 9: pending, created in the last hour by phone: only in the online-booking denominator.
    _a(9, "north", D(2026, 3, 2, 11, 15), D(2026, 3, 2, 11), "PEND"),
]

msg = sa.Table(
    "inbox", md,
    sa.Column("msg_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("medium", sa.String(10)), sa.Column("prio", sa.String(4)),
    sa.Column("got_at", sa.DateTime), sa.Column("ack_at", sa.DateTime),
    sa.Column("replied_at", sa.DateTime),
)


def _m(i: int, medium: str, prio: str, got: datetime, replied: datetime | None,
       ack: datetime | None = None) -> dict[str, Any]:
    return dict(msg_id=i, site="north", medium=medium, prio=prio, got_at=got, ack_at=ack,
                replied_at=replied)


# SLA: 1 business day (24 wall-clock hours without a calendar); urgent: 4 h.
MESSAGES = [
    _m(1, "portal", "R", D(2026, 3, 1, 10), D(2026, 3, 1, 15)),  # 5 h; deadline Mon 10:00: met
    _m(2, "portal", "R", D(2026, 3, 1, 11, 30), None),  # deadline Mon 11:30 (1h window): missed
    _m(3, "portal", "U", D(2026, 3, 2, 7), D(2026, 3, 2, 10)),  # urgent 3 h; deadline 11:00: met
    _m(4, "email", "U", D(2026, 3, 2, 6), D(2026, 3, 2, 10, 30)),  # urgent 4.5 h: missed (10:00)
    _m(5, "portal", "R", D(2026, 3, 2, 9), None),  # deadline tomorrow: in no deadline window
    # 6: answered only after the evaluation time: unanswered as of 12:00 (deadline Sat 10:00).
    _m(6, "portal", "R", D(2026, 2, 27, 10), D(2026, 3, 2, 12, 30)),
    # 7: an automatic acknowledgement is not a response.
    _m(7, "chat", "R", D(2026, 3, 1, 13), None, ack=D(2026, 3, 1, 13, 0, 5)),
]


def config(url: str, calendar: bool = False) -> dict[str, Any]:
    kpis: dict[str, Any] = {
        "response_sla": {"sla": "1bd", "sla_overrides": [{"priority": "urgent", "sla": "4h"}]},
        "sla_breach_backlog": {"sla": "1bd",
                               "sla_overrides": [{"priority": "urgent", "sla": "4h"}]},
    }
    if calendar:
        kpis["calendar"] = {"timezone": "UTC", "hours": {d: "08:00-18:00" for d in
                                                         ("mon", "tue", "wed", "thu", "fri")}}
    return {
        "version": 1,
        "sources": {"main": {"url": url}},
        "entities": {
            "appointments": {
                "source": "main", "table": "appt",
                "fields": {"id": "appt_id", "clinic": "site", "start": "slot_start",
                           "created": "booked_at", "status": "st",
                           "cancellation_date": "cancelled_at", "arrived": "checkin_at",
                           "provider_start": "roomed_at", "departed": "checkout_at",
                           "booking_channel": "chan", "virtual": "is_virtual",
                           "reminder_sent": "reminder_at"},
                "codes": {
                    "status": {"fulfilled": ["DONE"], "noshow": ["NS"], "cancelled": ["CAN"],
                               "arrived": ["ARR"], "booked": ["BOOKED"], "pending": ["PEND"],
                               "entered-in-error": ["ERR"]},
                    "booking_channel": {"online": ["WEB", "APP"], "phone": ["PHONE"]},
                },
            },
            "messages": {
                "source": "main", "table": "inbox",
                "fields": {"id": "msg_id", "clinic": "site", "channel": "medium",
                           "priority": "prio", "received": "got_at",
                           "first_response": "replied_at", "auto_ack": "ack_at"},
                "codes": {"priority": {"routine": ["R"], "urgent": ["U"]}},
            },
        },
        "kpis": kpis,
    }


def load(url: str) -> None:
    engine = sa.create_engine(url)
    md.drop_all(engine)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(appt.insert(), APPOINTMENTS)
        conn.execute(msg.insert(), MESSAGES)
    engine.dispose()
