"""Plans for the contact center (C1-C4), from whatever the source records about a call.

One home for "which calls were answered or abandoned, and after how long", so every KPI
agrees about the same calls:
- answered: an answer time, or an outcome code ``answered``;
- the answer wait: ``answered - queue_entered``, or a recorded ``answer_wait`` in seconds;
- abandoned: an abandon time, or an outcome code ``abandoned`` (a flag-only export maps its
  answered flag as the outcome); with no abandon time the short-abandon rule cannot apply, all
  abandons count, and the plan says so (variant ``all_abandons``);
- ``ivr`` outcomes never entered the agent queue: not offered;
- waits down to -clock_skew count as 0; more negative ones are left out of C1 and C3 alike
  (negative_duration), so C1's answered population is C3's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from collectors.access_plans import PLAUSIBLE, duration, proportion, unmapped, unmapped_code
from collectors.plan import (
    Context,
    Measure,
    Plan,
    at,
    deadline_anchored,
    excluded,
    label_dims,
    tolerate_skew,
)
from collectors.sqlfuncs import number, seconds_between
from kpis.catalog import Kpi
from kpis.db.entity import MappedEntity
from kpis.durations import Duration

SHORT_ABANDON = 5.0  # seconds: hung up this soon, usually a misdial (ICMI)
FCR_PERIOD = 7 * 86400.0
SHORT_ABANDONS_EXCLUDED = "short_abandons_excluded"
ALL_ABANDONS = "all_abandons"  # no abandon time: the short-abandon rule cannot apply


def _either(*parts: ColumnElement[bool]) -> ColumnElement[bool]:
    return sa.func.coalesce(sa.or_(*parts), sa.false()) if parts else sa.false()


def offered(e: MappedEntity) -> ColumnElement[bool]:
    """Calls that entered the agent queue (IVR-only outcomes did not). With an outcome mapped,
    a call whose outcome no code maps to (or none) is not known to be offered: left out, and
    counted by :func:`_with_outcome_check`."""
    if not e.mapped("outcome"):
        return sa.true()
    return sa.and_(sa.not_(e.is_code("outcome", "ivr")), sa.not_(unmapped(e, "outcome")))


def _with_outcome_check(e: MappedEntity, plan: Plan) -> Plan:
    if not e.mapped("outcome"):
        return plan
    return replace(plan, measures=[*plan.measures, unmapped_code(e, "outcome")])


def answered(e: MappedEntity) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if e.mapped("answered"):
        parts.append(e.col("answered").is_not(None))
    if e.mapped("outcome"):
        parts.append(e.is_code("outcome", "answered"))
    if not parts:  # only a recorded wait: a call with a wait was answered
        parts.append(e.col("answer_wait").is_not(None))
    return sa.and_(offered(e), _either(*parts))


def answer_wait(e: MappedEntity) -> ColumnElement[Any]:
    """Seconds from queue entry to answer, skew-tolerant (NULL when not recorded)."""
    if e.mapped("answered"):
        raw: ColumnElement[Any] = seconds_between(e.col("queue_entered"), e.col("answered"))
        if e.mapped("answer_wait"):
            raw = sa.func.coalesce(raw, e.col("answer_wait"))
        return tolerate_skew(e, raw)
    return tolerate_skew(e, e.col("answer_wait"))


def abandoned(e: MappedEntity) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if e.mapped("abandoned"):
        parts.append(e.col("abandoned").is_not(None))
    if e.mapped("outcome"):
        parts.append(e.is_code("outcome", "abandoned"))
    return sa.and_(offered(e), _either(*parts), sa.not_(answered(e)))


def abandon_wait(e: MappedEntity) -> ColumnElement[Any] | None:
    """Seconds from queue entry to hang-up, skew-tolerant; None without an abandon time."""
    if not e.mapped("abandoned"):
        return None
    return tolerate_skew(e, seconds_between(e.col("queue_entered"), e.col("abandoned")))


def _answer_exclusions(e: MappedEntity) -> tuple[ColumnElement[bool], list[Measure]]:
    """Answered calls with a usable wait, and the counted reasons for the others."""
    wait, limit = answer_wait(e), number(PLAUSIBLE["call_answer_wait"])
    usable = sa.and_(answered(e), wait >= number(0), wait <= limit)
    return usable, [excluded("negative_duration", sa.and_(answered(e), wait < number(0))),
                    excluded("implausible_duration", sa.and_(answered(e), wait > limit)),
                    excluded("unusable_duration", sa.and_(answered(e), wait.is_(None)))]


def call_answer_wait(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    # duration_measures leaves out negative and unusable waits, with C3's reasons.
    return _with_outcome_check(e, duration(ctx, kpi, e, answered(e), answer_wait(e)))


def call_abandonment(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    gave_up = abandoned(e)
    wait = abandon_wait(e)
    if wait is None:
        plan = proportion(ctx, kpi, e, gave_up, offered(e))
        return _with_outcome_check(e, replace(plan, variant=ALL_ABANDONS))
    short = sa.and_(gave_up, wait >= number(0), wait <= number(SHORT_ABANDON))
    negative = sa.and_(gave_up, wait < number(0))
    counted = sa.and_(offered(e), sa.not_(_either(short)), sa.not_(_either(negative)))
    plan = proportion(ctx, kpi, e, gave_up, counted)
    extra = [excluded("short_abandon", short), excluded("negative_duration", negative),
             Measure("abandon_wait", gave_up, wait)]
    return _with_outcome_check(e, replace(plan, measures=[*plan.measures, *extra],
                                          variant=SHORT_ABANDONS_EXCLUDED))


def service_level(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    """Answered within Y / (answered + abandoned after Y); without an abandon time every
    abandon counts against the level (variant all_abandons)."""
    y = (ctx.settings(kpi).threshold or Duration(30)).seconds
    usable, reasons = _answer_exclusions(e)
    wait = abandon_wait(e)
    if wait is None:
        late_abandon, variant = abandoned(e), ALL_ABANDONS
    else:
        late_abandon, variant = sa.and_(abandoned(e), wait > number(y)), None
    plan = proportion(ctx, kpi, e, sa.and_(usable, answer_wait(e) <= number(y)),
                      sa.or_(usable, _either(late_abandon)))
    return _with_outcome_check(e, replace(plan, measures=[*plan.measures, *reasons],
                                          variant=variant))


def first_contact_resolution(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    """Counted when the 7-day observation period ends in the window."""
    classes = [(sa.true(), FCR_PERIOD)]
    clock = ctx.clock(e, max(s for _, s in ctx.windows) + FCR_PERIOD, business=False)
    where, windows = deadline_anchored(ctx, e, "queue_entered", clock, classes)
    repeat = MappedEntity(e.name, e.config, alias="repeat_call")
    now = at(ctx.now(e))
    if ctx.config.sources[e.config.source].backend == "postgresql":
        repeated = _followed(ctx, e, repeat, now)
    else:
        repeated = sa.exists().where(*_repeats(e, repeat, now)).select_from(repeat.from_)
    resolvable = sa.and_(answered(e), e.col("caller_ref").is_not(None),
                         e.col("reason").is_not(None))
    resolved = sa.and_(e.is_true("resolved"), sa.not_(repeated))
    measures = [Measure("denominator", resolvable),
                Measure("numerator", sa.and_(resolvable, resolved))]
    return Plan(kpi, e, where, windows, measures, label_dims(kpi, e), (kpi.key,))


def _repeats(call: MappedEntity, repeat: MappedEntity, now: Any) -> list[ColumnElement[bool]]:
    """``repeat`` repeats ``call``: same caller and reason, later, before ``now``, within the
    observation period, and not excluded."""
    later = seconds_between(call.col("queue_entered"), repeat.col("queue_entered"))
    return [repeat.col("caller_ref") == call.col("caller_ref"),
            repeat.col("reason") == call.col("reason"),
            repeat.col("queue_entered") > call.col("queue_entered"),
            repeat.col("queue_entered") < now,
            later <= number(FCR_PERIOD),
            sa.not_(repeat.excluded())]


def _followed(ctx: Context, e: MappedEntity, repeat: MappedEntity, now: Any
              ) -> ColumnElement[bool]:
    """Whether a repeat followed the call, on PostgreSQL: the call's (caller, reason, time)
    looked up in the set of calls followed by a repeat, found by one join, which PostgreSQL
    hashes (10M calls: 0.35 s -> 0.11 s). The EXISTS elsewhere probes the caller index once
    per call; MariaDB probes it for the join too (no hash join by default), and its EXISTS
    was the faster there (250,000 calls: 0.27 s against 0.34 s)."""
    first = MappedEntity(e.name, e.config, alias="first_call")
    # From a day before the earliest call a window counts: a superset of the calls looked up.
    since = at(ctx.since(e, max(s for _, s in ctx.windows) + FCR_PERIOD + 86400))
    conditions = _repeats(first, repeat, now)  # the first two: the join keys
    followed = sa.select(first.col("caller_ref"), first.col("reason"),
                         first.col("queue_entered")).select_from(
        first.from_.join(repeat.from_, sa.and_(*conditions[:2]))).where(
        *conditions[2:], first.col("queue_entered") >= since,
        first.col("queue_entered") < now, repeat.col("queue_entered") >= since)
    return sa.tuple_(e.col("caller_ref"), e.col("reason"), e.col("queue_entered")).in_(followed)


BUILDERS: dict[str, Any] = {
    "call_answer_wait": call_answer_wait,
    "call_abandonment": call_abandonment,
    "service_level": service_level,
    "first_contact_resolution": first_contact_resolution,
}
