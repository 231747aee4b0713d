"""The data-quality checks obey the same rules as the collectors: every query they run, Great
Expectations' included, goes through kpis.db.engines (read-only session, server-side statement
timeout). The attacks of the security review, reproduced on PostgreSQL and MariaDB: a view that
calls nextval() for the rows a full scan reaches, and a view that sleeps there. Both views let
the mapping probe (one row) through, so only the expectations' own queries meet them."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from checks.runner import run_suites
from kpis import config as config_module
from kpis.errors import CareKPIError
from tests import known_data

SERVERS = [pytest.param("postgresql", marks=pytest.mark.postgresql),
           pytest.param("mysql", marks=pytest.mark.mysql)]
TIMEOUT = 2.0
LAST = max(row["appt_id"] for row in known_data.APPOINTMENTS)


def _attack_sql(dialect: str, view: str, effect: str) -> list[str]:
    """A view over appt whose filter runs ``effect`` (a number) on the last row only."""
    last = f"CASE WHEN appt_id = {LAST} THEN {effect} ELSE 1000000 END"
    return [f"CREATE VIEW {view} AS SELECT * FROM appt WHERE appt_id < {last}"]


def _prepared(fresh_database, dialect: str, view: str, effect: str, setup: list[str]) -> str:
    url = fresh_database(dialect)
    known_data.load(url)
    writer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with writer.begin() as conn:
        for statement in [*setup, *_attack_sql(dialect, view, effect)]:
            conn.execute(sa.text(statement))
    writer.dispose()
    return url


def _config(url: str, view: str) -> config_module.Config:
    document = known_data.config(url)
    document["sources"]["main"]["query_timeout"] = f"{TIMEOUT:g}s"
    document["entities"]["appointments"]["table"] = view
    return config_module.parse(document, "carekpi.yaml")


def _run(config: config_module.Config) -> tuple[list, str | None]:
    """The appointment checks' results, or the one-line error that stopped the run."""
    try:
        return run_suites(config, entity="appointments"), None
    except CareKPIError as exc:
        return [], str(exc)


def _sequence_value(url: str, dialect: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if dialect == "postgresql":
            value, called = conn.execute(sa.text("SELECT last_value, is_called FROM attack_seq")
                                         ).one()
            value = value if called else 0
        else:
            value = conn.execute(sa.text("SELECT next_not_cached_value FROM attack_seq")
                                 ).scalar_one() - 1
    engine.dispose()
    return int(value)


@pytest.mark.parametrize("dialect", SERVERS)
def test_a_view_calling_nextval_cannot_advance_the_sequence(fresh_database, dialect: str):
    nextval = "nextval('attack_seq')" if dialect == "postgresql" else "nextval(attack_seq)"
    url = _prepared(fresh_database, dialect, "appt_attack", f"{nextval} + 1000000",
                    ["CREATE SEQUENCE attack_seq"])
    results, error = _run(_config(url, "appt_attack"))
    assert _sequence_value(url, dialect) == 0  # the writing engine of before: 1 per query
    # The checks could not read the view: the run stops, or every check says it could not be
    # evaluated; never a pass.
    assert error is not None or (results and all(
        r.error is not None for r in results if r.check != "freshness")), (error, results)
    assert error is None or "details withheld" in error or "read" in error.lower(), error


@pytest.mark.parametrize("dialect", SERVERS)
def test_a_slow_view_is_cancelled_at_query_timeout(fresh_database, dialect: str):
    sleep = ("(SELECT 1000000 FROM pg_sleep(60))" if dialect == "postgresql"
             else "SLEEP(60) + 1000000")
    url = _prepared(fresh_database, dialect, "appt_slow", sleep, [])
    started = time.monotonic()
    results, error = _run(_config(url, "appt_slow"))
    elapsed = time.monotonic() - started
    assert error is not None or any(r.error is not None for r in results), (error, results)
    # Each query the checks send stops at query_timeout; a single 60 s sleep would be it all.
    assert elapsed < 45, elapsed
    observer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with observer.connect() as conn:
        if dialect == "postgresql":
            running = conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%appt_slow%' "
                "AND state = 'active' AND pid <> pg_backend_pid()")).scalar_one()
        else:
            running = conn.execute(sa.text(
                "SELECT count(*) FROM information_schema.processlist WHERE info LIKE "
                "'%appt_slow%' AND id <> connection_id()")).scalar_one()
    observer.dispose()
    assert running == 0
