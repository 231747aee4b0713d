"""Plans for the KPIs with a deadline: response SLAs (M1-M3), follow-up and complaints
(F1-F3); an answer, a call back or a letter is on time or late, counted on the business
clock where the KPI says so."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from collectors.access_plans import duration_measures
from collectors.plan import (
    Context,
    Measure,
    Plan,
    anchored,
    at,
    deadline_anchored,
    excluded,
    label_dims,
    pinned,
    ranged,
    tolerate_skew,
)
from collectors.sqlfuncs import number, seconds_between
from kpis.catalog import Kpi
from kpis.db.entity import MappedEntity
from kpis.durations import Duration

DAY = 86400.0
DEFAULT_SLA = {"response_sla": Duration(0, 1), "sla_breach_backlog": Duration(0, 1),
               "first_response_time": Duration(0, 1), "follow_up": Duration(0, 2),
               "detractor_follow_up": Duration(0, 2)}
DEFAULT_LOOKBACK = {"sla_breach_backlog": 30 * DAY, "overdue_complaints": 365 * DAY}
COMPLAINT_DEADLINE = 7 * DAY


def sla_classes(ctx: Context, kpi: Kpi, e: MappedEntity
                ) -> list[tuple[ColumnElement[bool], float]]:
    """Mutually exclusive (condition, SLA seconds) pairs: overrides in order, then the default."""
    settings = ctx.settings(kpi)
    default = ctx.sla_seconds(settings.sla or DEFAULT_SLA[kpi.key])
    classes: list[tuple[ColumnElement[bool], float]] = []
    earlier: list[ColumnElement[bool]] = []
    for override in settings.sla_overrides:
        parts: list[ColumnElement[bool]] = []
        if override.channel is not None:
            parts.append(_equals(e, "channel", override.channel))
        if override.priority is not None:
            parts.append(_equals(e, "priority", override.priority))
        match = sa.and_(*parts)
        classes.append((sa.and_(match, *(sa.not_(m) for m in earlier)), ctx.sla_seconds(
            override.sla)))
        earlier.append(match)
    classes.append((sa.and_(sa.true(), *(sa.not_(m) for m in earlier)), default))
    return classes


def _equals(e: MappedEntity, name: str, value: str) -> ColumnElement[bool]:
    if not e.mapped(name):
        return sa.false()
    if name == "priority":
        return sa.func.coalesce(e.is_code("priority", value), sa.false())
    return sa.func.coalesce(e.col(name), "") == value


def _sla_of(classes: list[tuple[ColumnElement[bool], float]]) -> ColumnElement[float]:
    if len(classes) == 1:
        return number(classes[0][1])
    return sa.case(*((cond, number(sla)) for cond, sla in classes[:-1]),
                   else_=number(classes[-1][1]))


def deadline_plan(ctx: Context, kpi: Kpi, e: MappedEntity, receipt: str, done: str,
                   classes: list[tuple[ColumnElement[bool], float]], business: bool,
                   eligible: ColumnElement[bool] | None = None,
                   success: ColumnElement[bool] | None = None) -> Plan:
    lookback = max(s for _, s in ctx.windows) + 14 * DAY + max(s for _, s in classes)
    clock = ctx.clock(e, lookback, business)
    where, windows = deadline_anchored(ctx, e, receipt, clock, classes)
    elapsed = clock.sql_elapsed(e.col(receipt), pinned(ctx, e, done))
    met = elapsed <= _sla_of(classes)
    if success is not None:
        met = sa.and_(met, success)
    early = sa.and_(eligible if eligible is not None else sa.true(),
                    _before_receipt(ctx, e, receipt, done))
    base = sa.and_(eligible if eligible is not None else sa.true(),
                   sa.not_(sa.func.coalesce(early, sa.false())))
    measures = [Measure("denominator", base),
                Measure("numerator", sa.and_(base, met), heavy=not clock.wall_clock),
                excluded("response_before_receipt", early)]
    return Plan(kpi, e, where, windows, measures, label_dims(kpi, e), (kpi.key,))


def _before_receipt(ctx: Context, e: MappedEntity, receipt: str, done: str
                    ) -> ColumnElement[bool]:
    """A response recorded before its receipt (beyond the clock skew, on the wall clock: the
    business clock reads both as 0 outside opening hours): a data error, counted, not scored."""
    return seconds_between(e.col(receipt), pinned(ctx, e, done)) < number(-e.clock_skew)


def first_response_time(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    """Answered messages only: one not answered by the evaluation time is pending, not an
    unusable record (it would make a healthy inbox look suspect)."""
    where, windows = anchored(ctx, e, "received")
    clock = ctx.clock(e, max(s for _, s in ctx.windows))
    response = pinned(ctx, e, "first_response")
    elapsed = tolerate_skew(e, clock.sql_elapsed(e.col("received"), response))
    early = sa.func.coalesce(_before_receipt(ctx, e, "received", "first_response"), sa.false())
    scored = sa.and_(response.is_not(None), sa.not_(early))
    measures = [*duration_measures(kpi, scored, elapsed, heavy=not clock.wall_clock),
                excluded("response_before_receipt", early)]
    return Plan(kpi, e, where, windows, measures, label_dims(kpi, e), (kpi.key,))


def response_sla(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    return deadline_plan(ctx, kpi, e, "received", "first_response",
                          sla_classes(ctx, kpi, e), business=True)


def sla_breach_backlog(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    """Unanswered now, deadline passed: receipts before the per-class latest receipt time."""
    classes = sla_classes(ctx, kpi, e)
    lookback = (ctx.settings(kpi).lookback or Duration(DEFAULT_LOOKBACK[kpi.key])).seconds
    clock = ctx.clock(e, lookback)
    received, now = e.col("received"), ctx.now(e)
    due = [clock.at(clock.elapsed(now) - sla) for _, sla in classes]
    if ctx.trace is not None:
        ctx.trace.due = due
    overdue = [sa.and_(cond, received < at(until))
               for (cond, _), until in zip(classes, due, strict=True)]
    oldest = ctx.since(e, lookback)
    where, windows = ranged(ctx, e, "received", [cond for cond, _ in classes],
                            [("", [(oldest, now)] * len(classes))])
    unanswered = pinned(ctx, e, "first_response").is_(None)
    measures = [Measure("value", sa.and_(unanswered, sa.true() if ctx.replay else
                                         sa.or_(*overdue)))]
    return Plan(kpi, e, where, windows, measures, label_dims(kpi, e), (kpi.key,))


def follow_up(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    sla = ctx.sla_seconds(ctx.settings(kpi).sla or DEFAULT_SLA[kpi.key])
    two_way = e.is_code("outcome", "reached")
    return deadline_plan(ctx, kpi, e, "due_from", "completed", [(sa.true(), sla)],
                          business=True, success=two_way)


def complaint_response(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    return deadline_plan(ctx, kpi, e, "received", "responded",
                          [(sa.true(), COMPLAINT_DEADLINE)], business=False)


def overdue_complaints(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    lookback = (ctx.settings(kpi).lookback or Duration(DEFAULT_LOOKBACK[kpi.key])).seconds
    where, windows = ranged(ctx, e, "received", [sa.true()], [
        ("", [(ctx.since(e, lookback), ctx.since(e, COMPLAINT_DEADLINE))])])
    measures = [Measure("value", pinned(ctx, e, "resolved").is_(None))]
    return Plan(kpi, e, where, windows, measures, label_dims(kpi, e), (kpi.key,))


BUILDERS: dict[str, Any] = {
    "first_response_time": first_response_time,
    "response_sla": response_sla,
    "sla_breach_backlog": sla_breach_backlog,
    "follow_up": follow_up,
    "complaint_response": complaint_response,
    "overdue_complaints": overdue_complaints,
}
