"""The dialect SQL every plan is built from (collectors/sqlfuncs.py), run on each database
against answers computed here in Python. The SQLite runs are in the quick tier."""

from __future__ import annotations

import bisect
import math
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.dialects import postgresql, sqlite

from collectors import evaluate
from collectors.plan import Context
from collectors.query import compose
from collectors.sqlfuncs import (
    bucket_index,
    count_if,
    days_between,
    floor_div,
    number,
    seconds_between,
    sum_if,
)
from kpis import config as config_module
from kpis.db.entity import MappedEntity
from kpis.demo import config_yaml

BASE = datetime(2026, 3, 7, 22, 15, 30)
PAIRS = [(BASE, BASE + timedelta(seconds=s))
         for s in (0, 1, 59, 3600, 86399, 86400, 90061, 40 * 86400 + 7, -45, -86400 * 3)]
BOUNDS = (60.0, 300.0, 900.0, 3600.0)
VALUES = [0.0, 59.5, 60.0, 60.5, 300.0, 899.0, 3600.0, 3600.5, 1e7]

md = sa.MetaData()
pairs = sa.Table("pairs", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("a", sa.DateTime), sa.Column("b", sa.DateTime))
values = sa.Table("vals", md, sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("v", sa.Float))


@pytest.fixture(scope="module")
def engine(module_db_url: str):
    engine = sa.create_engine(module_db_url)
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(pairs.insert(),
                     [{"id": i, "a": a, "b": b} for i, (a, b) in enumerate(PAIRS, 1)])
        conn.execute(values.insert(), [{"id": i, "v": v} for i, v in enumerate(VALUES, 1)])
    yield engine
    engine.dispose()


def test_seconds_between_two_stored_times(engine) -> None:
    query = sa.select(pairs.c.id, seconds_between(pairs.c.a, pairs.c.b)).order_by(pairs.c.id)
    with engine.connect() as conn:
        got = {i: float(s) for i, s in conn.execute(query)}
    assert got == {i: (b - a).total_seconds() for i, (a, b) in enumerate(PAIRS, 1)}


def test_days_between_counts_calendar_days(engine) -> None:
    query = sa.select(pairs.c.id, days_between(pairs.c.a, pairs.c.b)).order_by(pairs.c.id)
    with engine.connect() as conn:
        got = {i: int(d) for i, d in conn.execute(query)}
    assert got == {i: (b.date() - a.date()).days for i, (a, b) in enumerate(PAIRS, 1)}


def test_bucket_index_is_the_first_bound_at_or_above_the_value(engine) -> None:
    query = sa.select(values.c.id, bucket_index(values.c.v, BOUNDS)).order_by(values.c.id)
    with engine.connect() as conn:
        got = {i: int(b) for i, b in conn.execute(query)}
    assert got == {i: bisect.bisect_left(BOUNDS, v) for i, v in enumerate(VALUES, 1)}


def test_floor_div_is_a_time_slot_index(engine) -> None:
    query = sa.select(values.c.id, floor_div(values.c.v, 300.0)).order_by(values.c.id)
    with engine.connect() as conn:
        got = {i: int(s) for i, s in conn.execute(query)}
    assert got == {i: math.floor(v / 300.0) for i, v in enumerate(VALUES, 1)}


def test_conditional_count_and_sum(engine) -> None:
    over = values.c.v > 300.0
    query = sa.select(count_if(over), sum_if(over, values.c.v), count_if(values.c.v < 0))
    with engine.connect() as conn:
        count, total, none = conn.execute(query).one()
    assert int(count) == sum(1 for v in VALUES if v > 300.0)
    assert float(total) == pytest.approx(sum(v for v in VALUES if v > 300.0))
    assert int(none) == 0


def test_days_between_scaled_by_a_float_constant_stays_a_double(engine) -> None:
    """Lead time is days * 86400.0: on PostgreSQL an integer day count would turn that, and
    every bucket bound compared with it, into numeric arithmetic for each row."""
    scaled = days_between(pairs.c.a, pairs.c.b) * number(86400)
    with engine.connect() as conn:
        got = {i: float(s) for i, s in conn.execute(
            sa.select(pairs.c.id, scaled).order_by(pairs.c.id))}
        if engine.dialect.name == "postgresql":
            typed = conn.execute(sa.select(sa.func.pg_typeof(scaled)).limit(1)).scalar()
            assert typed == "double precision"
    assert got == {i: (b.date() - a.date()).days * 86400.0
                   for i, (a, b) in enumerate(PAIRS, 1)}


def _unit_sql(entity: str, dialect: str) -> str:
    """The demo's first query unit of ``entity``, composed and compiled for ``dialect``."""
    as_of = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    config = config_module.parse(yaml.safe_load(config_yaml("sqlite://", now=as_of)), "demo")
    unit = next(u for u in evaluate.units(config, cadences=False) if u.entity == entity)
    plans = evaluate.unit_plans(Context(config, as_of), unit,
                                MappedEntity(entity, config.entities[entity]))
    compiler = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}[dialect]
    return str(compose(plans, dialect)[0].compile(dialect=compiler))


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_unit_computes_each_time_difference_once_per_row(dialect: str) -> None:
    """The call KPIs each build answered - entered on their own; where the values are
    computed in a fenced sub-query (PostgreSQL, SQLite), the unit's query computes it once."""
    answered = {"postgresql": "(e.answered_at) - (e.queue_entered_at)",
                "sqlite": "julianday(e.answered_at) - julianday(e.queue_entered_at)"}[dialect]
    assert _unit_sql("calls", dialect).count(answered) == 1


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_unit_tests_each_status_set_once_per_row(dialect: str) -> None:
    """No-show, late cancellation, lead time ... each test the status against code sets, a
    string comparison per code; the unit's query tests each distinct set once per row."""
    sql = _unit_sql("appointments", dialect)
    attended = "e.appt_status IN ('ARR', 'CHK', 'CMP', 'NOS')"
    unknown = "e.appt_status NOT IN ('SCH', 'ARR', 'CHK', 'CMP', 'CAN', 'RSC', 'NOS', 'ERR'"
    assert sql.count(attended) == 1
    assert sql.count(unknown) == 1
