"""Benchmark: the built-in suite (one aggregate per entity) next to hand-tuned SQL.

Not run by the tests. Seeds N appointments in PostgreSQL (INSERT ... SELECT generate_series),
then times: the full built-in suite as ``carekpi checks run`` runs it, one hand-written
aggregate query computing the same counts, and a ``--since 24h`` run (range predicate on the
indexed created column, whose plan is printed). For each run it prints the statements sent to
the server and the rows the server read from the table (pg_stat_user_tables).
``--gx`` also times the built-in suite through Great Expectations (the old way, for comparison).

    .venv/bin/python tests/benchmarks/checks_bench.py --rows 3000000 \
        --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from checks.runner import run_suites
from kpis import config as kpi_config

T = TypeVar("T")
REPEAT = 3

SEED = """
INSERT INTO appt (appt_id, clinic_code, status_cd, created_ts, start_ts, arrived_ts, seen_ts)
SELECT g,
       CASE WHEN g % 97 = 0 THEN NULL ELSE 'clinic' || (g % 12) END,
       CASE WHEN g % 211 = 0 THEN 'XX' WHEN g % 3 = 0 THEN 'BK' ELSE 'FU' END,
       :now - make_interval(secs => g * 2.0),
       :now - make_interval(secs => g * 2.0) + interval '3 days'
            - CASE WHEN g % 503 = 0 THEN interval '4 days' ELSE interval '0' END,
       :now - make_interval(secs => g * 2.0) + interval '3 days',
       :now - make_interval(secs => g * 2.0) + interval '3 days 20 minutes'
FROM generate_series(1, :rows) AS g
"""

HAND_TUNED = """
SELECT count(*),
       count(*) FILTER (WHERE appt_id IS NULL),
       count(*) FILTER (WHERE clinic_code IS NULL OR trim(clinic_code) = ''),
       count(*) FILTER (WHERE status_cd IS NULL OR trim(status_cd) = ''),
       count(*) FILTER (WHERE created_ts IS NULL),
       count(*) FILTER (WHERE start_ts IS NULL),
       count(*) FILTER (WHERE appt_id IS NULL OR clinic_code IS NULL OR trim(clinic_code) = ''
                        OR status_cd IS NULL OR created_ts IS NULL OR start_ts IS NULL),
       count(*) FILTER (WHERE status_cd NOT IN ('BK', 'FU')),
       count(*) FILTER (WHERE created_ts > start_ts),
       count(*) FILTER (WHERE arrived_ts > seen_ts),
       count(*) FILTER (WHERE created_ts > :latest),
       count(*) FILTER (WHERE arrived_ts > :latest),
       count(*) FILTER (WHERE seen_ts > :latest),
       max(created_ts)
FROM appt
"""


def config(url: str) -> kpi_config.Config:
    return kpi_config.parse({
        "version": 1, "sources": {"bench": {"url": url}},
        "entities": {"appointments": {
            "source": "bench", "table": "appt",
            "fields": {"id": "appt_id", "clinic": "clinic_code", "status": "status_cd",
                       "created": "created_ts", "start": "start_ts", "arrived": "arrived_ts",
                       "provider_start": "seen_ts"},
            "codes": {"status": {"booked": ["BK"], "fulfilled": ["FU"]}},
        }},
    }, "bench.yaml")


class Meter:
    """Statements sent (every engine, via a class-level event) and rows read from ``appt``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements = 0
        sa.event.listen(sa.Engine, "before_cursor_execute", self._count)

    def _count(self, *args: object) -> None:
        self.statements += 1

    def _read(self) -> int:
        time.sleep(1.0)  # closed backends flush their table statistics on exit
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            return int(conn.execute(sa.text(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_user_tables WHERE relname = 'appt'")).scalar_one())

    def measure(self, work: Callable[[], T]) -> tuple[T, float, int, int]:
        """(result, seconds, statements sent, rows read) of ``work``."""
        rows = self._read()
        statements = self.statements
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
        sent = self.statements - statements
        return result, seconds, sent, self._read() - rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--gx", action="store_true",
                        help="also run the built-in suite through Great Expectations")
    parser.add_argument("--keep", action="store_true",
                        help="keep the seeded database (named by CAREKPI_BENCH_DB) and reuse "
                        "it on the next run with the same --rows")
    parser.add_argument("--url", default=os.environ.get(
        "CAREKPI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    name = os.environ.get("CAREKPI_BENCH_DB", f"carekpi_bench_{os.getpid()}")
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                              {"n": name}).first() is not None
        if not (exists and args.keep):
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(args.url).set(database=name).render_as_string(hide_password=False)
    try:
        run(url, args.rows, args.gx)
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def seed(conn: sa.Connection, naive: datetime, rows: int) -> None:
    conn.execute(sa.text(
        "CREATE TABLE appt (appt_id bigint PRIMARY KEY, clinic_code text, status_cd text, "
        "created_ts timestamp, start_ts timestamp, arrived_ts timestamp, seen_ts timestamp)"))
    conn.execute(sa.text(SEED), {"now": naive, "rows": rows})
    conn.execute(sa.text("CREATE INDEX appt_created ON appt (created_ts)"))
    conn.execute(sa.text("ANALYZE appt"))


def run(url: str, rows: int, with_gx: bool) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    naive = now.replace(tzinfo=None)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)  # closed backends flush stats
    started = time.perf_counter()
    with engine.begin() as conn:
        reused = conn.execute(sa.text("SELECT to_regclass('appt') IS NOT NULL")).scalar_one() \
            and conn.execute(sa.text("SELECT count(*) FROM appt")).scalar_one() == rows
        if reused:
            now = conn.execute(sa.text("SELECT max(created_ts) FROM appt")).scalar_one(
                ).replace(tzinfo=UTC) + timedelta(seconds=2)
            naive = now.replace(tzinfo=None)
        else:
            conn.execute(sa.text("DROP TABLE IF EXISTS appt"))
            seed(conn, naive, rows)
    print(f"{rows} appointments ready in {time.perf_counter() - started:.1f}s "
          f"({'reused' if reused else 'seeded'})")
    settings = config(url)
    meter = Meter(engine)
    with engine.connect() as conn:  # warm the cache for both contenders alike
        conn.execute(sa.text("SELECT count(*) FROM appt")).one()

    def hand_tuned() -> sa.Row[Any]:
        with engine.connect() as conn:
            return conn.execute(sa.text(HAND_TUNED),
                                {"latest": naive + timedelta(minutes=5)}).one()

    suite_times, sql_times = [], []
    for _ in range(REPEAT):  # interleaved, best of REPEAT: the machine is shared
        results, seconds, suite_n, suite_rows = meter.measure(
            lambda: run_suites(settings, now=now))
        suite_times.append(seconds)
        counts, seconds, sql_n, sql_rows = meter.measure(hand_tuned)
        sql_times.append(seconds)
    suite_s, sql_s = min(suite_times), min(sql_times)
    recent, since_s, since_n, since_rows = meter.measure(
        lambda: run_suites(settings, now=now, since=timedelta(hours=24)))
    by_check = {(r.check, r.column): r.unexpected for r in results}
    assert by_check[("conformance", "status")] == counts[7], (by_check, counts)
    assert by_check[("time_order", "created<=start")] == counts[8]
    assert by_check[("completeness", "clinic")] == counts[2]
    assert by_check[("record_completeness", "*")] == counts[6]
    print(f"built-in suite: {len(results)} checks in {suite_s:.2f}s (best of "
          f"{_runs(suite_times)}), {suite_n} statements sent, {suite_rows} rows read")
    print(f"hand-tuned SQL (one aggregate query): {sql_s:.2f}s (best of {_runs(sql_times)}), "
          f"{sql_n} statement, {sql_rows} rows read")
    print(f"ratio suite / SQL: {suite_s / sql_s:.2f}x")
    print(f"--since 24h: {len(recent)} checks over {recent[0].elements} records in "
          f"{since_s:.2f}s, {since_n} statements sent, {since_rows} rows read")
    print(f"--since 24h plan: {since_plan(engine, settings, now)}")
    if with_gx:
        import great_expectations  # noqa: F401  (import cost is not check cost)

        old, gx_s, gx_n, gx_rows = meter.measure(
            lambda: run_suites(settings, now=now, builtin_via_gx=True))
        assert [(r.check, r.column, r.unexpected) for r in old] == [
            (r.check, r.column, r.unexpected) for r in results]
        print(f"through GX (before): {gx_s:.2f}s, {gx_n} statements sent, {gx_rows} rows "
              f"read; ratio GX / SQL {gx_s / sql_s:.1f}x")
    engine.dispose()


def _runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def since_plan(engine: sa.Engine, settings: kpi_config.Config, now: datetime) -> str:
    """The scan nodes of the --since aggregate's plan (an index or bitmap scan is wanted)."""
    from checks import batches, counts, suites

    checks = settings.checks
    specs = suites.select(settings, checks, now, "appointments")
    bound = suites.local_time(now, settings.entities["appointments"].timezone) - timedelta(
        hours=24)
    select = batches.check_select(settings, checks, "appointments", bound)
    fields = counts.fields_of(settings, checks, "appointments", frozenset({"id"}))
    stmt, _ = counts.aggregate(select, [s for s in specs if counts.supported(s)], fields,
                               engine.dialect)
    with engine.connect() as conn:
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        plan = [line for (line,) in conn.execute(sa.text("EXPLAIN " + sql))]
    return "; ".join(line.strip().lstrip("-> ").strip() for line in plan if "Scan" in line)


if __name__ == "__main__":
    main()
