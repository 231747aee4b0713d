"""carekpi_source_query_seconds_total is the source's time: from each statement sent to its
rows received, not the time CareKPI spends building and compiling the SQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from collectors.load import LoadMeter, fetching

COMPILING = 0.3  # seconds a slow-to-compile element takes


class _SlowToCompile(ColumnElement[int]):
    type = sa.Integer()
    inherit_cache = False


@compiles(_SlowToCompile)
def _compile(element: _SlowToCompile, compiler: Any, **kw: Any) -> str:
    time.sleep(COMPILING)
    return "1"


def _metered(engine: sa.Engine, query: Any) -> tuple[float, float, list[Any]]:
    meter = LoadMeter()
    started = time.perf_counter()
    with meter.timed("main", "unit") as counted, engine.connect() as conn:
        result = conn.execute(query)
        with fetching():
            rows = result.all()
        counted.append(len(rows))
    wall = time.perf_counter() - started
    load = meter.totals()[("main", "unit")]
    assert (load.queries, load.rows) == (1, len(rows))
    return load.seconds, wall, rows


def test_compiling_the_sql_is_not_counted_as_the_sources_time(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    seconds, wall, rows = _metered(engine, sa.select(_SlowToCompile()))
    assert rows == [(1,)]
    assert wall >= COMPILING
    assert seconds < COMPILING / 3


COUNTING = sa.text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                   "WHERE i < 3000000) SELECT count(*) FROM n")


def _alone(engine: sa.Engine) -> float:
    started = time.perf_counter()
    with engine.connect() as conn:
        assert conn.execute(COUNTING).scalar() == 3_000_000
    return time.perf_counter() - started


def test_a_query_the_source_works_on_is_counted_through_its_last_row(tmp_path: Path) -> None:
    # SQLite computes as the rows are fetched: the fetch is the source's time too.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    alone = _alone(engine)
    seconds, wall, rows = _metered(engine, COUNTING)
    assert rows == [(3_000_000,)]
    assert 0.5 * alone <= seconds <= wall


def test_statements_outside_the_timed_block_are_not_counted(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    alone = _alone(engine)
    meter = LoadMeter()
    with engine.connect() as conn:
        with meter.timed("main", "unit") as counted:
            with fetching():
                conn.execute(sa.text("SELECT 2")).all()
            counted.append(1)
        conn.execute(COUNTING).all()
    assert meter.totals()[("main", "unit")].seconds < alone / 10


def test_a_statement_that_fails_is_counted_until_it_failed(tmp_path: Path) -> None:
    # A query cut by statement_timeout kept the source busy until then.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    alone = _alone(engine)
    failing = sa.text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                      "WHERE i < 3000000) SELECT abs(max(i) * 0 - 9223372036854775807 - 1) FROM n")
    meter = LoadMeter()
    with (meter.timed("main", "unit"), engine.connect() as conn,
          pytest.raises(sa.exc.OperationalError, match="integer overflow")):
        conn.execute(failing).all()
    assert meter.totals()[("main", "unit")].seconds >= 0.5 * alone
