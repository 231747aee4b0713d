"""The baseline: the heaviest refresh units' aggregates as hand-written SQL run through psycopg.

Three queries, one per entity, each one pass over the window with ``count(*) FILTER``, grouped
by the labels and the innermost window (summed into the nested windows in Python, as a
person writing this by hand for a dashboard would):

- appointments: no_show, late_cancellation, lead_time, wait_to_be_seen, visit_cycle_time,
  reminder_coverage, telehealth (the KPIs CareKPI merges into its biggest unit);
- calls: call_answer_wait, call_abandonment, service_level;
- messages: response_sla. Business time has no plain-SQL form: the deadline ranges and the
  business-seconds expression come from ``collectors.business_clock.BusinessClock`` (the
  calendar arithmetic), the query around them is written by hand.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from collectors.business_clock import BusinessClock
from kpis import catalog
from kpis.config import Config

KPIS = ("no_show", "late_cancellation", "lead_time", "wait_to_be_seen", "visit_cycle_time",
        "reminder_coverage", "telehealth", "call_answer_wait", "call_abandonment",
        "service_level", "response_sla")
DAY = 86400.0


def _slot(col: str, since: list[str]) -> str:
    arms = " ".join(f"WHEN {col} >= {s} THEN {i}" for i, s in enumerate(since[:-1]))
    return f"CASE {arms} ELSE {len(since) - 1} END"


def _histogram(name: str, value: str, when: str, buckets: tuple[float, ...]) -> list[str]:
    ok = f"{when} AND {value} >= 0"
    return [f"count(*) FILTER (WHERE {ok}) AS {name}_n",
            f"sum({value}) FILTER (WHERE {ok}) AS {name}_sum",
            *(f"count(*) FILTER (WHERE {ok} AND {value} <= {b}) AS {name}_le{i}"
              for i, b in enumerate(buckets))]


def appointments_sql(schema: str, nwin: int) -> str:
    since = [f"%(since{i})s" for i in range(nwin)]
    kept = "status IN ('SCH','ARR','CHK','CMP','NOS')"
    booked = "status IN ('SCH','ARR','CHK','CMP','CAN','NOS')"
    cols = [
        "count(*) FILTER (WHERE status IN ('ARR','CHK','CMP','NOS')) AS no_show_den",
        "count(*) FILTER (WHERE status = 'NOS') AS no_show_num",
        f"count(*) FILTER (WHERE {booked}) AS late_cancellation_den",
        "count(*) FILTER (WHERE status = 'CAN' AND start - cancelled < interval '24 hours')"
        " AS late_cancellation_num",
        *_histogram("lead_time", "lead", kept, catalog.get("lead_time").buckets),
        *_histogram("wait_to_be_seen", "wait", "seen IS NOT NULL",
                    catalog.get("wait_to_be_seen").buckets),
        *_histogram("visit_cycle_time", "cycle", "departed IS NOT NULL",
                    catalog.get("visit_cycle_time").buckets),
        f"count(*) FILTER (WHERE {booked} AND start - created >= interval '48 hours' AND NOT "
        "coalesce(status = 'CAN' AND start - cancelled > interval '48 hours', false))"
        " AS reminder_coverage_den",
        f"count(*) FILTER (WHERE {booked} AND start - created >= interval '48 hours' AND NOT "
        "coalesce(status = 'CAN' AND start - cancelled > interval '48 hours', false) AND "
        "start - reminder BETWEEN interval '24 hours' AND interval '48 hours')"
        " AS reminder_coverage_num",
        f"count(*) FILTER (WHERE {kept}) AS telehealth_den",
        f"count(*) FILTER (WHERE {kept} AND virtual) AS telehealth_num",
    ]
    return f"""
SELECT clinic, slot, {', '.join(cols)}
FROM (SELECT site_code AS clinic, {_slot('slot_start', since)} AS slot,
             appt_status AS status, slot_start AS start, booked_at AS created,
             cancelled_at AS cancelled, first_reminder_at AS reminder,
             provider_seen_at AS seen, checkout_at AS departed, is_telehealth AS virtual,
             (slot_start::date - booked_at::date) * 86400 AS lead,
             -- the mapping's 5 s clock skew: a wait down to -5 s counts as 0
             CASE WHEN w.raw < 0 AND w.raw >= -5 THEN 0 ELSE w.raw END AS wait,
             extract(epoch FROM checkout_at - greatest(checkin_at, slot_start)) AS cycle
      FROM {schema}.appointment CROSS JOIN LATERAL (SELECT extract(
               epoch FROM provider_seen_at - greatest(checkin_at, slot_start)) AS raw) AS w
      WHERE slot_start >= %(since{nwin - 1})s AND slot_start < %(now)s) AS a
GROUP BY 1, 2"""


def calls_sql(schema: str, nwin: int, threshold: float = 30) -> str:
    since = [f"%(since{i})s" for i in range(nwin)]
    abandoned = "abandoned IS NOT NULL AND answered IS NULL"
    offered = f"NOT coalesce({abandoned} AND abandon_wait <= 5, false)"
    answered_or_late = f"(answered IS NOT NULL OR ({abandoned} AND abandon_wait > {threshold}))"
    cols = [
        *_histogram("call_answer_wait", "answer_wait", "answered IS NOT NULL",
                    catalog.get("call_answer_wait").buckets),
        f"count(*) FILTER (WHERE {offered}) AS call_abandonment_den",
        f"count(*) FILTER (WHERE {offered} AND {abandoned}) AS call_abandonment_num",
        f"count(*) FILTER (WHERE {answered_or_late}) AS service_level_den",
        f"count(*) FILTER (WHERE {answered_or_late} AND answered IS NOT NULL AND "
        f"answer_wait <= {threshold}) AS service_level_num",
    ]
    return f"""
SELECT clinic, queue, slot, {', '.join(cols)}
FROM (SELECT site_code AS clinic, queue_name AS queue,
             {_slot('queue_entered_at', since)} AS slot,
             answered_at AS answered, abandoned_at AS abandoned,
             extract(epoch FROM answered_at - queue_entered_at) AS answer_wait,
             extract(epoch FROM abandoned_at - queue_entered_at) AS abandon_wait
      FROM {schema}.call_log
      WHERE queue_entered_at >= %(since{nwin - 1})s AND queue_entered_at < %(now)s) AS c
GROUP BY 1, 2, 3"""


def _literal(expr: Any) -> str:
    # A bound timestamp rendered inline is an untyped string literal: isfinite('...') would be
    # ambiguous (isfinite has a date and a timestamp form), so the literals are typed.
    text = str(expr.compile(dialect=postgresql.dialect(),
                            compile_kwargs={"literal_binds": True}))
    return re.sub(r"'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?)'", r"TIMESTAMP '\1'", text)


def messages_sql(schema: str, config: Config, now: datetime,
                 windows: list[tuple[str, float]]) -> str:
    """response_sla: urgent 4 h, routine 1 business day (the bench config), deadline windows."""
    calendar = config.kpis.calendar
    longest = max(s for _, s in windows)
    sla = {"urgent": 4 * 3600.0,
           "routine": calendar.business_day_seconds if calendar else DAY}
    lookback = longest + 14 * DAY + max(sla.values())
    clock = BusinessClock(calendar, ZoneInfo("UTC"), now - timedelta(seconds=lookback + DAY),
                          now + timedelta(days=1))
    arms, lows, highs = [], [], []
    for i, (_, seconds) in enumerate(windows):
        parts = []
        for cls, s in sla.items():
            lo, hi = clock.receipt_range(now - timedelta(seconds=seconds), now, s)
            match = "priority = 'urgent'" if cls == "urgent" else \
                "priority IS DISTINCT FROM 'urgent'"
            parts.append(f"({match} AND received_at >= '{lo}' AND received_at < '{hi}')")
            lows.append(lo)
            highs.append(hi)
        arms.append(f"WHEN {' OR '.join(parts)} THEN {i}")
    business = clock._sql_business
    received = _literal(business(sa.literal_column("received_at")))
    replied = _literal(business(sa.literal_column("reply")))
    return f"""
SELECT clinic, channel, slot, count(*) AS response_sla_den,
       count(*) FILTER (WHERE elapsed <= CASE prio WHEN 'urgent' THEN {sla['urgent']}
                                              ELSE {sla['routine']} END) AS response_sla_num
FROM (SELECT clinic, channel, prio, received, slot, ({replied}) - ({received}) AS elapsed
      FROM (SELECT site_code AS clinic, channel, received_at, received_at AS received,
                   CASE WHEN priority = 'urgent' THEN 'urgent' ELSE 'routine' END AS prio,
                   CASE WHEN first_staff_reply_at <= '{now}' THEN first_staff_reply_at END
                     AS reply,
                   CASE {' '.join(arms)} END AS slot
            FROM {schema}.portal_message
            WHERE received_at >= '{min(lows)}' AND received_at < '{max(highs)}'
            OFFSET 0) AS m) AS e
WHERE slot IS NOT NULL
GROUP BY 1, 2, 3"""


def run(dsn: str, schema: str, config: Config, now: datetime,
        windows: list[tuple[str, float]]) -> dict[tuple[str, ...], dict[str, float]]:
    """All three queries; counts keyed by (kpi part, window, labels...)."""
    params: dict[str, Any] = {"now": now, **{f"since{i}": now - timedelta(seconds=s)
                                              for i, (_, s) in enumerate(windows)}}
    out: dict[tuple[str, ...], dict[str, float]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql, ndims in ((appointments_sql(schema, len(windows)), 1),
                           (calls_sql(schema, len(windows)), 2),
                           (messages_sql(schema, config, now, windows), 2)):
            cur = conn.execute(sql, params)
            names = [d.name for d in cur.description]
            _accumulate(out, cur.fetchall(), names, ndims, [w for w, _ in windows])
    return out


def _accumulate(out: dict[tuple[str, ...], dict[str, float]], rows: list[Any],
                names: list[str], ndims: int, windows: list[str]) -> None:
    by_labels: dict[tuple[str, ...], dict[int, tuple[Any, ...]]] = defaultdict(dict)
    for row in rows:
        by_labels[tuple(str(v) for v in row[:ndims])][int(row[ndims])] = row[ndims + 1:]
    for labels, slots in by_labels.items():
        running = [0.0] * (len(names) - ndims - 1)
        for w, window in enumerate(windows):
            for i, v in enumerate(slots.get(w, ())):
                running[i] += float(v or 0)
            out[(window, *labels)] = dict(zip(names[ndims + 1:], running, strict=True))
