"""Benchmark: the built-in suite through GX next to the same checks as hand-tuned SQL.

Not run by the tests. Seeds N appointments in PostgreSQL (INSERT ... SELECT generate_series),
then times: the full GX suite, one hand-written aggregate query computing the same counts, and
a ``--since 24h`` GX run (range predicate on the indexed created column).

    /work/venv/bin/python tests/benchmarks/checks_bench.py --rows 3000000 \
        --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from checks.runner import run_suites
from kpis import config as kpi_config

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--url", default=os.environ.get(
        "CAREKPI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    name = f"carekpi_bench_{os.getpid()}"
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.make_url(args.url).set(database=name).render_as_string(hide_password=False)
    try:
        run(url, args.rows)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def run(url: str, rows: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    naive = now.replace(tzinfo=None)
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE appt (appt_id bigint PRIMARY KEY, clinic_code text, status_cd text, "
            "created_ts timestamp, start_ts timestamp, arrived_ts timestamp, seen_ts timestamp)"))
        conn.execute(sa.text(SEED), {"now": naive, "rows": rows})
        conn.execute(sa.text("CREATE INDEX appt_created ON appt (created_ts)"))
        conn.execute(sa.text("ANALYZE appt"))
    print(f"seeded {rows} appointments in {time.perf_counter() - started:.1f}s")
    settings = config(url)
    import great_expectations  # noqa: F401  (import cost is not check cost)

    started = time.perf_counter()
    results = run_suites(settings, now=now)
    gx_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect() as conn:
        counts = conn.execute(sa.text(HAND_TUNED),
                              {"latest": naive + timedelta(minutes=5)}).one()
    sql_seconds = time.perf_counter() - started
    started = time.perf_counter()
    recent = run_suites(settings, now=now, since=timedelta(hours=24))
    since_seconds = time.perf_counter() - started
    by_check = {(r.check, r.column): r.unexpected for r in results}
    assert by_check[("conformance", "status")] == counts[7], (by_check, counts)
    assert by_check[("time_order", "created<=start")] == counts[8]
    print(f"GX full suite: {len(results)} checks in {gx_seconds:.2f}s")
    print(f"hand-tuned SQL (one aggregate query): {sql_seconds:.2f}s")
    print(f"ratio GX / SQL: {gx_seconds / sql_seconds:.1f}x")
    print(f"GX --since 24h: {len(recent)} checks over {recent[0].elements} records "
          f"in {since_seconds:.2f}s")
    engine.dispose()


if __name__ == "__main__":
    main()
