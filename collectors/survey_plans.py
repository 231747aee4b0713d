"""Plans for the survey KPIs (S1-S5): scores on their scales, response rate and the
detractors' call back."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from collectors.deadline_plans import DEFAULT_SLA, deadline_plan
from collectors.plan import (
    Context,
    Measure,
    Plan,
    anchored,
    excluded,
    label_dims,
    pinned,
)
from collectors.sqlfuncs import number
from kpis.catalog import Kpi
from kpis.db.entity import MappedEntity
from kpis.model import SCALE_BOUNDS


def _plain(ctx: Context, kpi: Kpi, e: MappedEntity, measures: list[Measure]) -> Plan:
    where, windows = anchored(ctx, e, kpi.anchor)
    dims = label_dims(kpi, e)
    return Plan(kpi, e, where, windows, measures, dims,
                (e.name, kpi.anchor, tuple(n for n, _ in dims)))


def _scale(e: MappedEntity, scale: str, low: int, high: int) -> ColumnElement[bool]:
    score = e.col("score")
    return sa.and_(e.is_code("scale", scale), score >= number(low), score <= number(high))


def _on_scale(e: MappedEntity, scale: str) -> ColumnElement[bool]:
    """A score within its scale's bounds (kpis.model.SCALE_BOUNDS)."""
    return _scale(e, scale, *SCALE_BOUNDS[scale])


def _recommend(ctx: Context, kpi: Kpi, e: MappedEntity) -> ColumnElement[bool]:
    item = ctx.settings(kpi).item or "recommend"
    return sa.and_(e.col("item") == item, _on_scale(e, "0-10"))


def _off_scale(e: MappedEntity, *scales: str) -> Measure:
    """Scores outside their scale (or on a scale no code maps to): counted, left out."""
    score = e.col("score")
    on_scale = [sa.and_(e.is_code("scale", s), sa.or_(score < number(lo), score > number(hi)))
                for s, (lo, hi) in ((s, SCALE_BOUNDS[s]) for s in scales)]
    return excluded("score_out_of_range", sa.and_(score.is_not(None), sa.or_(*on_scale)))


def top_box(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    valid = sa.or_(_on_scale(e, "0-10"), _on_scale(e, "1-4"))
    top = sa.or_(_scale(e, "0-10", 9, 10), _scale(e, "1-4", 4, 4))
    return _plain(ctx, kpi, e, [Measure("denominator", valid),
                                Measure("numerator", sa.and_(valid, top)),
                                _off_scale(e, "0-10", "1-4")])


def nps(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    answer = _recommend(ctx, kpi, e)
    score = e.col("score")
    return _plain(ctx, kpi, e, [Measure("responses", answer),
                                Measure("promoters", sa.and_(answer, score >= number(9))),
                                Measure("detractors", sa.and_(answer, score <= number(6)))])


def csat(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    valid = _on_scale(e, "1-5")
    return _plain(ctx, kpi, e, [Measure("denominator", valid),
                                Measure("numerator", sa.and_(valid, e.col("score") >= 4)),
                                _off_scale(e, "1-5")])


def survey_response(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    completed = pinned(ctx, e, "completed").is_not(None)
    return _plain(ctx, kpi, e, [Measure("denominator", sa.true()),
                                Measure("numerator", completed)])


def detractor_follow_up(ctx: Context, kpi: Kpi, e: MappedEntity) -> Plan:
    sla = ctx.sla_seconds(ctx.settings(kpi).sla or DEFAULT_SLA[kpi.key])
    detractor = sa.and_(_recommend(ctx, kpi, e), e.col("score") <= number(6))
    return deadline_plan(ctx, kpi, e, "submitted", "contacted", [(sa.true(), sla)],
                          business=True, eligible=detractor)


BUILDERS: dict[str, Any] = {
    "top_box": top_box,
    "nps": nps,
    "csat": csat,
    "survey_response": survey_response,
    "detractor_follow_up": detractor_follow_up,
}
