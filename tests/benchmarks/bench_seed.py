"""Seeding the benchmark data: the demo schema (kpis/demo/schema.py) in a PostgreSQL schema per
size, filled by ``INSERT ... SELECT generate_series`` with ``random()`` (no Python rows).

Every size has the same daily volume (DAILY rows per entity per day); a bigger size is a longer
history. Appointments extend FUTURE_DAYS into the future (booked slots); the other entities
end at ``now``. Indexes (the ones the demo schema declares: timestamps, clinic + timestamp,
caller + time) are built after the load, then VACUUM ANALYZE.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateSchema, CreateTable, DropSchema

from kpis.demo import schema

FORMAT = "bench-2"
CLINICS = 40
FUTURE_DAYS = 30
DAILY = {  # rows per day: a health system of CLINICS clinics
    "appointment": 10000, "portal_message": 3000, "call_log": 4000,
    "post_visit_followup": 1500, "patient_complaint": 30, "survey_invite": 2000,
    "survey_answer": 3000,
}
_SITE = f"'C' || lpad(((g::bigint * 7919) % {CLINICS})::text, 3, '0')"
_RANDOM = "random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5"

INSERTS = {
    "appointment": """
INSERT INTO {s}.appointment
SELECT g, {site}, 'D' || (g % 5), slot, booked,
  status, CASE WHEN status = 'CAN' THEN booked + (slot - booked) * r2 END,
  CASE WHEN status = 'CMP' THEN slot + make_interval(secs => (r2 * 25 - 15) * 60) END,
  CASE WHEN status = 'CMP' THEN slot + make_interval(secs => (r2 * 25 - 15 + r4 * 10) * 60) END,
  CASE WHEN status = 'CMP' THEN slot + make_interval(secs => (r2 * 25 - 13 + r4 * 45) * 60) END,
  CASE WHEN status = 'CMP' THEN slot
    + make_interval(secs => (r2 * 25 + r4 * 45 + r5 * 30) * 60) END,
  (ARRAY['WEB','WEB','WEB','APP','PHONE','PHONE','PHONE','PHONE','DESK','DESK'])[g % 10 + 1],
  g % 7 = 0,
  CASE WHEN r5 < 0.85 AND booked < slot - interval '36 hours' THEN slot - interval '36 hours'
  END,
  'Patient ' || g, '555-' || lpad((g % 10000000)::text, 7, '0'), 'MRN' || g, md5(g::text)
FROM (SELECT g, slot, slot - make_interval(secs => r3 * r3 * 60 * 86400) AS booked,
        CASE WHEN slot >= :now THEN (CASE WHEN r1 < 0.05 THEN 'CAN' ELSE 'SCH' END)
             WHEN r1 < 0.07 THEN 'NOS' WHEN r1 < 0.17 THEN 'CAN' WHEN r1 < 0.175 THEN 'ERR'
             ELSE 'CMP' END AS status, r2, r4, r5
      FROM (SELECT g, :now + make_interval(days => {future})
                      - make_interval(secs => g * :spacing) AS slot, {random}
            FROM generate_series(1, :rows) AS g) AS raw) AS a
""",
    "portal_message": """
INSERT INTO {s}.portal_message
SELECT g, {site}, (ARRAY['portal','email','chat'])[g % 3 + 1],
  CASE WHEN r1 < 0.1 THEN 'urgent' ELSE 'routine' END, t, t + interval '30 seconds',
  CASE WHEN r2 >= 0.05 THEN t + make_interval(secs => r3 * r3 * 3 * 86400) END,
  'Sender ' || g, 'Subject ' || md5(g::text), md5(g::text) || md5((g + 1)::text)
FROM (SELECT g, :now - make_interval(secs => g * :spacing) AS t, {random}
      FROM generate_series(1, :rows) AS g) AS raw
""",
    "call_log": """
INSERT INTO {s}.call_log
SELECT g, {site}, (ARRAY['sched','billing','nurse','rx'])[g % 4 + 1], t, q,
  CASE WHEN r1 < 0.88 THEN q + make_interval(secs => r2 * r2 * 300) END,
  CASE WHEN r1 >= 0.88 THEN q + make_interval(secs => r2 * 200) END,
  t + make_interval(secs => 30 + r3 * 600),
  '555-' || lpad((r4 * 200000)::int::text, 7, '0'), 'R' || (g % 8), r5 < 0.75
FROM (SELECT g, t, CASE WHEN g % 20 <> 0 THEN t + interval '15 seconds' END AS q,
             r1, r2, r3, r4, r5
      FROM (SELECT g, :now - make_interval(secs => g * :spacing) AS t, {random}
            FROM generate_series(1, :rows) AS g) AS raw) AS c
""",
    "post_visit_followup": """
INSERT INTO {s}.post_visit_followup
SELECT g, g, {site}, t,
  CASE WHEN r1 >= 0.1 THEN t + make_interval(secs => r2 * r2 * 4 * 86400) END,
  CASE WHEN r1 < 0.1 THEN NULL WHEN r3 < 0.7 THEN 'REACHED' WHEN r3 < 0.85 THEN 'VM'
       ELSE 'NOANS' END,
  md5(g::text)
FROM (SELECT g, :now - make_interval(secs => g * :spacing) AS t, {random}
      FROM generate_series(1, :rows) AS g) AS raw
""",
    "patient_complaint": """
INSERT INTO {s}.patient_complaint
SELECT g, {site}, (ARRAY['billing','access','staff','care'])[g % 4 + 1], t,
  CASE WHEN r1 >= 0.1 THEN t + make_interval(secs => r2 * 10 * 86400) END,
  CASE WHEN r1 >= 0.2 THEN t + make_interval(secs => r2 * 20 * 86400) END,
  'Complainant ' || g, md5(g::text)
FROM (SELECT g, :now - make_interval(secs => g * :spacing) AS t, {random}
      FROM generate_series(1, :rows) AS g) AS raw
""",
    "survey_invite": """
INSERT INTO {s}.survey_invite
SELECT g, g, {site}, (ARRAY['sms','email'])[g % 2 + 1], t,
  CASE WHEN r1 < 0.3 THEN t + make_interval(secs => r2 * 3 * 86400) END,
  '555-' || lpad((g % 10000000)::text, 7, '0')
FROM (SELECT g, :now - make_interval(secs => g * :spacing) AS t, {random}
      FROM generate_series(1, :rows) AS g) AS raw
""",
    "survey_answer": """
INSERT INTO {s}.survey_answer
SELECT g, g / 4, {site}, t, CASE WHEN g % 5 = 0 THEN 'PVS' ELSE 'CGCAHPS' END,
  (ARRAY['recommend','overall','courtesy','csat'])[g % 4 + 1],
  CASE g % 4 WHEN 0 THEN least(10, floor(11 - r1 * r1 * 11))::int
             WHEN 1 THEN least(10, floor(11 - r1 * 11))::int
             WHEN 2 THEN 1 + floor(r1 * 4)::int ELSE 1 + floor(r1 * 5)::int END,
  (ARRAY['0-10','0-10','1-4','1-5'])[g % 4 + 1],
  CASE WHEN r2 < 0.6 THEN t + make_interval(secs => r3 * 4 * 86400) END,
  md5(g::text)
FROM (SELECT g, :now - make_interval(secs => g * :spacing) AS t, {random}
      FROM generate_series(1, :rows) AS g) AS raw
""",
}


def history_days(appointments: int) -> float:
    """Days of past data for a size (appointments span history + FUTURE_DAYS)."""
    return appointments / DAILY["appointment"] - FUTURE_DAYS


def planned_rows(appointments: int) -> dict[str, int]:
    past = history_days(appointments)
    return {table: appointments if table == "appointment" else int(per_day * past)
            for table, per_day in DAILY.items()}


def schema_name(appointments: int) -> str:
    return f"bench_{appointments}"


def ensure(server: str, database: str, appointments: int) -> tuple[str, datetime]:
    """(URL, seeding time) of the data set of this size in ``database``, created and seeded
    when missing (progress on stderr): what the benchmark scripts start from."""
    import sys

    from tests.benchmarks.bench_serve import create_database

    url = f"{server}/{database}"
    create_database(server, database)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    as_of = existing(engine, appointments)
    if as_of is None:
        print(f"seeding {appointments:,} appointments ...", file=sys.stderr)
        as_of, _ = seed(engine, appointments, lambda *a: print(*a, file=sys.stderr))
    engine.dispose()
    return url, as_of


def existing(engine: sa.Engine, appointments: int) -> datetime | None:
    """The seeding time of a complete, current-format data set of this size, else None."""
    name = schema_name(appointments)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("carekpi_demo_meta", schema=name):
            return None
        meta = dict(conn.execute(sa.text(
            f"SELECT meta_key, meta_value FROM {name}.carekpi_demo_meta")).all())
    if meta.get("format") != FORMAT or meta.get("complete") != "yes":
        return None
    return datetime.fromisoformat(meta["now"])


def seed(engine: sa.Engine, appointments: int, progress: callable = print) -> tuple[
        datetime, dict[str, float]]:
    """Create schema ``bench_<N>`` with the demo tables, load, index, VACUUM ANALYZE."""
    if appointments < 400000:
        raise SystemExit("--appointments: at least 400000 (the history must cover 30d windows)")
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    name = schema_name(appointments)
    timings: dict[str, float] = {}
    with engine.begin() as conn:
        conn.execute(DropSchema(name, cascade=True, if_exists=True))
        conn.execute(CreateSchema(name))
        for table in [*schema.ENTITY_TABLES.values(), schema.demo_meta]:
            conn.execute(CreateTable(table.to_metadata(sa.MetaData(), schema=name),
                                     include_foreign_key_constraints=[]))
    for table, rows in planned_rows(appointments).items():
        started = time.perf_counter()
        sql = INSERTS[table].format(s=name, site=_SITE, random=_RANDOM, future=FUTURE_DAYS)
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT setseed(0.42)"))
            conn.execute(sa.text(sql), {"now": now, "rows": rows,
                                        "spacing": 86400.0 / DAILY[table]})
        timings[f"insert {table}"] = time.perf_counter() - started
        progress(f"  {name}.{table}: {rows:,} rows in {timings[f'insert {table}']:.1f}s")
    started = time.perf_counter()
    with engine.begin() as conn:
        for table in schema.ENTITY_TABLES.values():
            copy = table.to_metadata(sa.MetaData(), schema=name)
            for index in copy.indexes:
                conn.execute(CreateIndex(index))
    timings["indexes"] = time.perf_counter() - started
    progress(f"  {name}: indexes in {timings['indexes']:.1f}s")
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in schema.ENTITY_TABLES.values():
            conn.execute(sa.text(f"VACUUM ANALYZE {name}.{table.name}"))
    timings["vacuum_analyze"] = time.perf_counter() - started
    progress(f"  {name}: VACUUM ANALYZE in {timings['vacuum_analyze']:.1f}s")
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {name}.carekpi_demo_meta VALUES "
                             "('format', :f), ('now', :now), ('complete', 'yes')"),
                     {"f": FORMAT, "now": now.replace(tzinfo=UTC).isoformat()})
    return now.replace(tzinfo=UTC), timings
