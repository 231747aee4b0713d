"""Plans for the access, scheduling and waiting KPIs (A1-A9), on the appointments entity."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from collectors.plan import (
    Context,
    Measure,
    Plan,
    anchored,
    excluded,
    label_dims,
    tolerate_skew,
)
from collectors.sqlfuncs import days_between, later_of, number, seconds_between, text_literal
from kpis.catalog import Kpi
from kpis.db.entity import MappedEntity
from kpis.plausibility import UNKNOWN_CANCELLATIONS

ATTENDED_OR_NOSHOW = ("fulfilled", "arrived", "checked-in", "noshow")
BOOKED = ("booked", "arrived", "fulfilled", "cancelled", "noshow", "checked-in")
KEPT_BOOKINGS = ("booked", "arrived", "fulfilled", "noshow", "checked-in")
HOUR = 3600.0
DAY = 86400.0
# Longest plausible value per duration KPI; longer ones are data errors, counted and left out.
PLAUSIBLE = {"lead_time": 730 * DAY, "wait_to_be_seen": 12 * HOUR,
             "visit_cycle_time": 24 * HOUR, "first_response_time": 90 * DAY,
             "call_answer_wait": 24 * HOUR}
LEAD_TIME_BUCKETS = ((0, "0d"), (2, "1-2d"), (7, "3-7d"), (30, "8-30d"))


def unmapped(e: MappedEntity, name: str) -> ColumnElement[bool]:
    """A coded field's value that no canonical code maps to (NULL included): what the record
    means is unknown, so the KPIs that read the field leave it out (``config validate`` lists
    such values)."""
    mapped = e.is_code(name, *e.fields[name].codes)
    return sa.or_(e.col(name).is_(None), sa.not_(mapped))


def unmapped_code(e: MappedEntity, name: str) -> Measure:
    """The records left out for an unmapped code, counted as ``unmapped_<field>``."""
    return excluded(f"unmapped_{name}", unmapped(e, name))


def _with_status_check(kpi: Kpi, e: MappedEntity, measures: list[Measure]) -> list[Measure]:
    return [*measures, unmapped_code(e, "status")] if "status" in kpi.fields else measures


def duration_measures(kpi: Kpi, when: ColumnElement[bool], seconds: ColumnElement[Any],
                      heavy: bool = False) -> list[Measure]:
    """The histogram of plausible values, and counts of the negative, implausible and
    unusable ones (a missing value, an out-of-range timestamp such as 'infinity')."""
    limit = number(PLAUSIBLE[kpi.key])
    return [Measure("histogram", sa.and_(when, seconds <= limit), seconds, kpi.buckets, heavy),
            excluded("negative_duration", sa.and_(when, seconds < number(0))),
            excluded("implausible_duration", sa.and_(when, seconds > limit)),
            excluded("unusable_duration", sa.and_(when, seconds.is_(None)))]


def _plan(ctx: Context, kpi: Kpi, e: MappedEntity, measures: list[Measure],
          dims: list[tuple[str, ColumnElement[Any]]] | None = None) -> Plan:
    measures = _with_status_check(kpi, e, measures)
    where, windows = anchored(ctx, e, kpi.anchor)
    dims = label_dims(kpi, e) + (dims or [])
    key = (e.name, kpi.anchor, tuple(name for name, _ in dims))
    return Plan(kpi, e, where, windows, measures, dims, key)


def proportion(ctx: Context, kpi: Kpi, e: MappedEntity, numerator: ColumnElement[bool],
               denominator: ColumnElement[bool]) -> Plan:
    return _plan(ctx, kpi, e, [Measure("denominator", denominator),
                               Measure("numerator", sa.and_(denominator, numerator))])


def duration(ctx: Context, kpi: Kpi, e: MappedEntity, when: ColumnElement[bool],
             seconds: ColumnElement[Any]) -> Plan:
    return _plan(ctx, kpi, e, duration_measures(kpi, when, seconds))


def no_show(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    return proportion(ctx, kpi, e, e.is_code("status", "noshow"),
                      e.is_code("status", *ATTENDED_OR_NOSHOW))


def late_cancellation(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    """A cancellation whose time is unknown cannot be judged late or timely: it is left out
    and counted (``unknown_cancellation_time``), not scored as on time."""
    notice = seconds_between(e.col("cancellation_date"), e.col("start"))
    cancelled = e.is_code("status", "cancelled")
    unknown = sa.and_(cancelled, notice.is_(None))
    booked = sa.and_(e.is_code("status", *BOOKED), sa.not_(unknown))
    late = sa.and_(cancelled, notice < number(24 * HOUR))
    return _plan(ctx, kpi, e, [Measure("denominator", booked),
                               Measure("numerator", sa.and_(booked, late)),
                               excluded(UNKNOWN_CANCELLATIONS, unknown)])


def lead_time(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    days = days_between(e.col("created"), e.col("start"))
    return duration(ctx, kpi, e, e.is_code("status", *KEPT_BOOKINGS), days * number(86400))


def _clock_start(e: MappedEntity) -> ColumnElement[Any]:
    arrived = e.col("arrived") if e.mapped("arrived") else sa.null()
    return later_of(arrived, e.col("start"))


def _not_in_error(e: MappedEntity) -> ColumnElement[bool]:
    """Not entered in error (records with that status leave every KPI); true without a
    mapped status, and for a missing one (unknown, not an error)."""
    if not e.mapped("status"):
        return sa.true()
    return sa.not_(sa.func.coalesce(e.is_code("status", "entered-in-error"), sa.false()))


def wait_to_be_seen(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    wait = tolerate_skew(e, seconds_between(_clock_start(e), e.col("provider_start")))
    seen = sa.and_(e.col("provider_start").is_not(None), _not_in_error(e))
    return duration(ctx, kpi, e, seen, wait)


def visit_cycle_time(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    cycle = tolerate_skew(e, seconds_between(_clock_start(e), e.col("departed")))
    departed = sa.and_(e.col("departed").is_not(None), _not_in_error(e))
    return duration(ctx, kpi, e, departed, cycle)


def reminder_coverage(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    start = e.col("start")
    booked_ahead = seconds_between(e.col("created"), start) >= number(48 * HOUR)
    cancelled_early = sa.and_(
        e.is_code("status", "cancelled"),
        seconds_between(e.col("cancellation_date"), start) > number(48 * HOUR),
    )
    eligible = sa.and_(e.is_code("status", *BOOKED), booked_ahead,
                       sa.not_(sa.func.coalesce(cancelled_early, sa.false())))
    ahead = seconds_between(e.col("reminder_sent"), start)
    reminded = sa.and_(ahead >= number(24 * HOUR), ahead <= number(48 * HOUR))
    return proportion(ctx, kpi, e, reminded, eligible)


def no_show_by_reminder(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    if e.mapped("reminder_sent"):
        sent = sa.and_(e.col("reminder_sent").is_not(None),
                       e.col("reminder_sent") <= e.col("start"))
    else:  # a reminder flag: the source records that one was sent, not when
        sent = e.is_true("reminded")
    reminder = sa.case((sent, text_literal("sent")), else_=text_literal("none"))
    days = days_between(e.col("created"), e.col("start"))
    lead = sa.case(*((days <= number(d), text_literal(label)) for d, label in LEAD_TIME_BUCKETS),
                   else_=text_literal("over-30d"))
    measures = [Measure("denominator", e.is_code("status", *ATTENDED_OR_NOSHOW)),
                Measure("numerator", e.is_code("status", "noshow"))]
    return _plan(ctx, kpi, e, measures, [("reminder", reminder), ("lead_time", lead)])


def online_booking(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    return proportion(ctx, kpi, e, e.is_code("booking_channel", "online"), _not_in_error(e))


def telehealth(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    virtual = e.is_true("virtual")
    return proportion(ctx, kpi, e, virtual, e.is_code("status", *KEPT_BOOKINGS))


BUILDERS = {
    "no_show": no_show,
    "late_cancellation": late_cancellation,
    "lead_time": lead_time,
    "wait_to_be_seen": wait_to_be_seen,
    "visit_cycle_time": visit_cycle_time,
    "reminder_coverage": reminder_coverage,
    "no_show_by_reminder": no_show_by_reminder,
    "online_booking": online_booking,
    "telehealth": telehealth,
}
