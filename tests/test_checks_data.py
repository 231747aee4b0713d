"""Small tables with planted defects whose counts are known, for the checks tests (no tests
here: a helper module named to stay within the test_checks* files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import yaml

# Values that must never appear in any output (they sit in failing rows).
MARKERS = ("Zelda Quixbottom", "+1-555-0199-7788", "complains about her neighbour Mortimer",
           "Quixbottom Clinic Annex")
N_APPOINTMENTS = 50

# Planted defects (appointment ids) and the exact counts the checks must find.
EMPTY_CLINIC = (1, 2, 3)  # '' , '   ' and NULL: clinic completeness 3 (94% < 98%)
BAD_STATUS = (4, 5)  # local codes outside the mapping: conformance 2 (96% < 99%)
CREATED_AFTER_START = (6, 7, 8)  # time order created <= start: 3
PROVIDER_BEFORE_ARRIVAL = (9,)  # time order arrived <= provider_start: 1
ARRIVED_IN_FUTURE = (10,)  # arrival 30 days ahead: not_future(arrived) 1 (start is exempt)
DEPARTMENT_FREE_TEXT = (11, 12)  # custom regex on department: 2
IN_LAST_24H = 24  # ids 1-24 were created in the last 24 hours (one per hour from now-1h)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def build(url: str, moment: datetime, *, fresh: bool = True, clean: bool = False) -> None:
    """appt (appointments), msg (messages, mapped through a query), srv (surveys)."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    appt = sa.Table(
        "appt", meta,
        sa.Column("appt_id", sa.Integer, primary_key=True),
        sa.Column("clinic_code", sa.String(40)), sa.Column("dept", sa.String(80)),
        sa.Column("status_cd", sa.String(40)), sa.Column("created_ts", sa.DateTime),
        sa.Column("start_ts", sa.DateTime), sa.Column("arrived_ts", sa.DateTime),
        sa.Column("seen_ts", sa.DateTime), sa.Column("patient_name", sa.String(80)),
    )
    msg = sa.Table(
        "msg", meta,
        sa.Column("msg_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
        sa.Column("chan", sa.String(20)), sa.Column("recv_ts", sa.DateTime),
        sa.Column("resp_ts", sa.DateTime), sa.Column("body", sa.String(200)),
    )
    srv = sa.Table(
        "srv", meta,
        sa.Column("srv_id", sa.Integer, primary_key=True), sa.Column("site", sa.String(20)),
        sa.Column("submitted_ts", sa.DateTime), sa.Column("score_val", sa.Integer),
        sa.Column("scale_cd", sa.String(10)),
    )
    meta.create_all(engine)
    base = moment.replace(tzinfo=None) - timedelta(hours=1 if fresh else 5)
    rows = [_appointment(i, base, clean) for i in range(1, N_APPOINTMENTS + 1)]
    messages = [dict(msg_id=i, site="north", chan="portal", recv_ts=base - timedelta(hours=i - 1),
                     resp_ts=base - timedelta(hours=i - 1) + timedelta(
                         minutes=-30 if i == 2 and not clean else 30),
                     body=MARKERS[2]) for i in range(1, 11)]
    surveys = [dict(srv_id=i, site="north", submitted_ts=base - timedelta(hours=i - 1),
                    score_val=(12 if i == 3 and not clean else 0 if i == 4 and not clean else 5),
                    scale_cd="T" if i % 2 else "F") for i in range(1, 11)]
    with engine.begin() as conn:
        conn.execute(appt.insert(), rows)
        conn.execute(msg.insert(), messages)
        conn.execute(srv.insert(), surveys)
    engine.dispose()


def _appointment(i: int, base: datetime, clean: bool) -> dict[str, Any]:
    created = base - timedelta(hours=i - 1) if i <= 30 else base - timedelta(days=2, hours=i)
    start = created + timedelta(days=1)
    arrived = start - timedelta(minutes=5)
    row = dict(appt_id=i, clinic_code="north", dept="CARDIO", status_cd="FU",
               created_ts=created, start_ts=start, arrived_ts=arrived,
               seen_ts=arrived + timedelta(minutes=20), patient_name=MARKERS[0])
    if clean:
        row["start_ts"] = row["created_ts"]
        row["arrived_ts"] = row["start_ts"]
        row["seen_ts"] = row["arrived_ts"]
        return row
    # Every appointment starts in the past except the planted future one.
    row["start_ts"] = created + timedelta(minutes=10)
    row["arrived_ts"] = row["start_ts"]
    row["seen_ts"] = row["start_ts"] + timedelta(minutes=15)
    if i in EMPTY_CLINIC:
        row["clinic_code"] = {1: "", 2: "   ", 3: None}[i]
    if i in BAD_STATUS:
        row["status_cd"] = MARKERS[0] if i == 4 else MARKERS[1]
    if i in CREATED_AFTER_START:
        row["start_ts"] = created - timedelta(hours=2)
        row["arrived_ts"] = row["start_ts"]
        row["seen_ts"] = row["start_ts"]
    if i in PROVIDER_BEFORE_ARRIVAL:
        row["seen_ts"] = row["arrived_ts"] - timedelta(minutes=3)
    if i in ARRIVED_IN_FUTURE:
        row["start_ts"] = base + timedelta(days=30)  # a booking ahead: fine
        row["arrived_ts"] = base + timedelta(days=30)  # an arrival ahead: implausible
        row["seen_ts"] = None
    if i in DEPARTMENT_FREE_TEXT:
        row["dept"] = MARKERS[2] if i == 11 else MARKERS[3]
    return row


def config(url: str, **checks: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "sources": {"clinicdb": {"url": url}},
        "entities": {
            "appointments": {
                "source": "clinicdb", "table": "appt", "primary_key": "id",
                "fields": {"id": "appt_id", "clinic": "clinic_code", "department": "dept",
                           "status": "status_cd", "created": "created_ts", "start": "start_ts",
                           "arrived": "arrived_ts", "provider_start": "seen_ts"},
                "codes": {"status": {"fulfilled": ["FU"], "booked": ["BK"]}},
            },
            "messages": {
                "source": "clinicdb",
                "query": "SELECT m.msg_id, m.site, m.chan, m.recv_ts, m.resp_ts FROM msg m",
                "fields": {"id": "msg_id", "clinic": "site", "channel": "chan",
                           "received": {"sql": "recv_ts"}, "first_response": "resp_ts"},
            },
            "surveys": {
                "source": "clinicdb", "table": "srv",
                "fields": {"id": "srv_id", "clinic": "site", "submitted": "submitted_ts",
                           "score": {"sql": "score_val + 0"}, "scale": "scale_cd"},
                "codes": {"scale": {"0-10": ["T"], "1-5": ["F"]}},
            },
        },
        "checks": {"custom": [{"entity": "appointments", "name": "department_code",
                               "expectation": "expect_column_values_to_match_regex",
                               "kwargs": {"column": "department", "regex": "^[A-Z]+$"},
                               "severity": "warning"}], **checks},
    }


def write_config(path: Any, url: str, **checks: Any) -> str:
    path.write_text(yaml.safe_dump(config(url, **checks)), encoding="utf-8")
    return str(path)
