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


calls = sa.Table(
    "acd_calls", md,
    sa.Column("call_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("q", sa.String(20)), sa.Column("queued_at", sa.DateTime),
    sa.Column("answered_at", sa.DateTime), sa.Column("hangup_at", sa.DateTime),
    sa.Column("caller", sa.String(20)), sa.Column("reason", sa.String(8)),
    sa.Column("closed_ok", sa.Boolean),
)


def _c(i: int, queued: datetime | None, answered: datetime | None = None,
       hangup: datetime | None = None, caller: str = "555-0100", reason: str | None = "R9",
       resolved: bool = False, site: str = "north") -> dict[str, Any]:
    return dict(call_id=i, site=site, q="billing", queued_at=queued, answered_at=answered,
                hangup_at=hangup, caller=caller, reason=reason, closed_ok=resolved)


T = D(2026, 3, 2)
CALLS = [
    _c(1, T.replace(hour=10), T.replace(hour=10, second=20)),  # answered in 20 s
    _c(2, T.replace(hour=10, minute=5), T.replace(hour=10, minute=5)),  # straight to an agent: 0
    _c(3, T.replace(hour=10, minute=10), hangup=T.replace(hour=10, minute=10, second=3)),  # short
    _c(4, T.replace(hour=10, minute=20), hangup=T.replace(hour=10, minute=21)),  # abandoned 60 s
    _c(5, T.replace(hour=10, minute=30), hangup=T.replace(hour=10, minute=30, second=20)),  # 20 s
    _c(6, T.replace(hour=11), T.replace(hour=11, minute=1, second=30)),  # answered in 90 s
    _c(7, None),  # IVR only: never offered to the queue
    # First-contact resolution, counted when the 7-day period ends in the window:
    _c(11, D(2026, 2, 20, 10), D(2026, 2, 20, 10, 1), caller="555-0101", reason="R1",
       resolved=True),  # resolved, no repeat: FCR
    _c(12, D(2026, 2, 20, 11), D(2026, 2, 20, 11, 1), caller="555-0102", reason="R1",
       resolved=True),  # repeated on day 4 for the same reason: not FCR
    _c(13, D(2026, 2, 24, 9), D(2026, 2, 24, 9, 1), caller="555-0102", reason="R1",
       resolved=True),
    _c(14, D(2026, 2, 21, 9), D(2026, 2, 21, 9, 1), caller="555-0103", reason="R2"),  # unresolved
    _c(15, D(2026, 2, 21, 10), D(2026, 2, 21, 10, 1), caller="555-0104", reason=None,
       resolved=True),  # no reason: not resolvable
    _c(16, D(2026, 2, 22, 9), D(2026, 2, 22, 9, 1), caller="555-0101", reason="R2",
       resolved=True),  # repeat only after 8 days: FCR
    _c(17, D(2026, 3, 2, 9), D(2026, 3, 2, 9, 0, 10), caller="555-0101", reason="R2",
       site="south"),
]

follow_ups = sa.Table(
    "post_visit", md,
    sa.Column("fu_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("visit_end", sa.DateTime), sa.Column("contact_at", sa.DateTime),
    sa.Column("result", sa.String(8)),
)
FOLLOW_UPS = [  # SLA 2 business days = 48 h without a calendar
    dict(fu_id=1, site="north", visit_end=D(2026, 2, 27, 10), contact_at=D(2026, 2, 28, 9),
         result="OK"),  # deadline Sun 10:00 (7d): met
    dict(fu_id=2, site="north", visit_end=D(2026, 2, 28, 11), contact_at=D(2026, 3, 1, 10),
         result="VM"),  # deadline Mon 11:00 (1h): voicemail does not count
    dict(fu_id=3, site="north", visit_end=D(2026, 2, 27, 14), contact_at=None,
         result=None),  # deadline Sun 14:00 (1d): missed
    dict(fu_id=4, site="north", visit_end=D(2026, 2, 26, 9), contact_at=D(2026, 2, 27, 9),
         result="OK"),  # deadline Sat 09:00 (7d): met
]

complaints = sa.Table(
    "grievance", md,
    sa.Column("g_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("opened", sa.DateTime), sa.Column("first_letter", sa.DateTime),
    sa.Column("closed", sa.DateTime),
)
COMPLAINTS = [  # deadline: 7 days after receipt
    dict(g_id=1, site="north", opened=D(2026, 2, 22, 10), first_letter=D(2026, 2, 25),
         closed=D(2026, 2, 26)),  # deadline Mar 1 10:00 (7d): met
    dict(g_id=2, site="north", opened=D(2026, 2, 23, 13), first_letter=D(2026, 3, 2, 14),
         closed=None),  # deadline Mar 2 13:00: not yet due, not overdue
    dict(g_id=3, site="north", opened=D(2026, 2, 22, 20), first_letter=None,
         closed=None),  # deadline Mar 1 20:00 (1d): missed; overdue
    dict(g_id=4, site="north", opened=D(2026, 2, 10), first_letter=D(2026, 2, 12),
         closed=D(2026, 2, 15)),  # 30d: met
    dict(g_id=5, site="north", opened=D(2026, 2, 1), first_letter=D(2026, 2, 20),
         closed=None),  # 30d: missed; overdue
]

answers = sa.Table(
    "survey_answer", md,
    sa.Column("ans_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("answered_at", sa.DateTime), sa.Column("question", sa.String(20)),
    sa.Column("points", sa.Integer), sa.Column("scale_cd", sa.String(6)),
    sa.Column("called_back", sa.DateTime),
)


MONDAY_8AM = D(2026, 3, 2, 8)


def _s(i: int, item: str, scale: str, score: int | None, at: datetime = MONDAY_8AM,
       called: datetime | None = None) -> dict[str, Any]:
    return dict(ans_id=i, site="north", answered_at=at, question=item, points=score,
                scale_cd=scale, called_back=called)


ANSWERS = [
    _s(1, "overall", "0-10", 10),  # top box
    _s(2, "overall", "0-10", 8),
    _s(3, "courtesy", "1-4", 4),  # "Always": top box
    _s(4, "courtesy", "1-4", None),  # not applicable: not valid
    _s(5, "recommend", "0-10", 9),  # promoter, top box
    _s(6, "recommend", "0-10", 6, D(2026, 2, 27, 10), D(2026, 2, 28)),  # detractor, called back
    _s(7, "recommend", "0-10", 7),  # passive
    _s(8, "csat", "1-5", 5),
    _s(9, "csat", "1-5", 3),
    _s(10, "csat", "1-5", 11),  # out of range: not valid
    _s(11, "recommend", "0-10", 3, D(2026, 3, 1, 11)),  # detractor, deadline not yet passed
    _s(12, "recommend", "0-10", 2, D(2026, 2, 26, 11), D(2026, 3, 1)),  # called back too late
]

invitations = sa.Table(
    "survey_invite", md,
    sa.Column("inv_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
    sa.Column("sent_at", sa.DateTime), sa.Column("done_at", sa.DateTime),
)
INVITATIONS = [
    dict(inv_id=1, site="north", sent_at=D(2026, 3, 2, 8), done_at=D(2026, 3, 2, 9)),
    dict(inv_id=2, site="north", sent_at=D(2026, 3, 2, 8), done_at=D(2026, 3, 2, 13)),  # later
    dict(inv_id=3, site="north", sent_at=D(2026, 3, 1, 15), done_at=None),
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
            "calls": {
                "source": "main", "table": "acd_calls",
                "fields": {"id": "call_id", "clinic": "site", "queue": "q",
                           "queue_entered": "queued_at", "answered": "answered_at",
                           "abandoned": "hangup_at", "caller_ref": "caller", "reason": "reason",
                           "resolved": "closed_ok"},
            },
            "follow_ups": {
                "source": "main", "table": "post_visit",
                "fields": {"id": "fu_id", "clinic": "site", "due_from": "visit_end",
                           "completed": "contact_at", "outcome": "result"},
                "codes": {"outcome": {"reached": ["OK"], "voicemail": ["VM"]}},
            },
            "complaints": {
                "source": "main", "table": "grievance",
                "fields": {"id": "g_id", "clinic": "site", "received": "opened",
                           "responded": "first_letter", "resolved": "closed"},
            },
            "surveys": {
                "source": "main", "table": "survey_answer",
                "fields": {"id": "ans_id", "clinic": "site", "submitted": "answered_at",
                           "item": "question", "score": "points", "scale": "scale_cd",
                           "contacted": "called_back"},
            },
            "survey_invitations": {
                "source": "main", "table": "survey_invite",
                "fields": {"id": "inv_id", "clinic": "site", "sent": "sent_at",
                           "completed": "done_at"},
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
        conn.execute(calls.insert(), CALLS)
        conn.execute(follow_ups.insert(), FOLLOW_UPS)
        conn.execute(complaints.insert(), COMPLAINTS)
        conn.execute(answers.insert(), ANSWERS)
        conn.execute(invitations.insert(), INVITATIONS)
    engine.dispose()


# Bad rows, added on top of the rows above by load_bad(); each is counted as excluded or lands
# in no window, and the numbers they may change are known (tests/test_bad_data.py).
BAD_APPOINTMENTS = [
    _a(101, "north", D(2026, 3, 2, 9, 30), D(2026, 2, 20, 9), "XX"),  # unknown status code
    _a(102, "north", D(2026, 3, 2, 9, 40), D(2026, 2, 20, 9), None),  # no status
    # Seen before arriving and before the start: a negative wait. Lead 1 day.
    _a(103, "north", D(2026, 3, 2, 10, 30), D(2026, 3, 1, 8), "DONE",
       checkin_at=D(2026, 3, 2, 10, 20), roomed_at=D(2026, 3, 2, 10)),
    _a(104, "north", D(2026, 3, 2, 10, 45), D(1900, 1, 1), "DONE"),  # booked in 1900
    # Waited 19 hours: implausible. Lead 1 day.
    _a(105, "north", D(2026, 3, 1, 13), D(2026, 2, 28, 9), "DONE",
       checkin_at=D(2026, 3, 1, 12, 50), roomed_at=D(2026, 3, 2, 8)),
    _a(106, "north", D(2100, 1, 1, 9), D(2026, 2, 20, 9), "DONE"),  # in 2100: in no window
    _a(107, "north", D(1900, 1, 1, 9), D(1900, 1, 1, 8), "NS"),  # in 1900: in no window
    _a(109, "south", D(2026, 3, 2, 10), D(2026, 2, 20, 9), "CAN"),  # cancelled, time unknown
    # Near misses of the code NS: unmapped on every database (MariaDB's collations would match).
    _a(110, "south", D(2026, 3, 2, 10, 30), D(2026, 2, 20, 9), "ns"),
    _a(111, "south", D(2026, 3, 2, 11), D(2026, 2, 20, 9), "NS "),
    # Entered in error, with a full visit's times: in no KPI (wait and cycle included).
    _a(112, "north", D(2026, 3, 2, 11), D(2026, 2, 20, 9), "ERR", checkin_at=D(2026, 3, 2, 11),
       roomed_at=D(2026, 3, 2, 11, 10), checkout_at=D(2026, 3, 2, 11, 30)),
]
BAD_MESSAGES = [
    _m(108, "portal", "R", D(2026, 3, 1, 11), D(2026, 3, 1, 10)),  # replied before receipt
]
BAD_ANSWERS = [
    _s(113, "overall", "0-10", 11),  # off its scale
    _s(114, "csat", "1-5", 0),
]


def load_bad(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(appt.insert(), BAD_APPOINTMENTS)
        conn.execute(msg.insert(), BAD_MESSAGES)
        conn.execute(answers.insert(), BAD_ANSWERS)
    engine.dispose()
