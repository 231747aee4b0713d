"""Writing the demo data set into any SQLAlchemy database, and finding an existing one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from kpis.demo import database, generator, incidents, schema
from kpis.demo.world import HISTORY_DAYS, Row
from kpis.errors import CareKPIError
from kpis.secrets import mask_url

BATCH = 5000
FORMAT = "1"  # bump when the schema changes so `existing` stops reusing old demo databases


@dataclass(frozen=True)
class SeedSummary:
    url: str  # masked
    now: datetime  # aware UTC
    incidents: tuple[str, ...]
    seed: int
    rows: dict[str, int] = field(default_factory=dict)  # local table -> rows
    generate_seconds: float = 0.0
    insert_seconds: float = 0.0
    days: int = HISTORY_DAYS  # of history


def _error(url: str, exc: Exception) -> CareKPIError:
    """A one-line message without SQL parameters (they hold the fake PHI columns). Reading an
    existing demo database is part of seeding one, so every failure says "cannot seed"."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.ArgumentError
                  | OSError | ModuleNotFoundError):
        detail = database.first_line(exc)
    else:
        detail = f"database error ({type(getattr(exc, 'orig', None) or exc).__name__})"
    return CareKPIError(f"cannot seed demo database {mask_url(url)}: {detail}")


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")  # SQLAlchemy's SQLite DATETIME format
    return int(value) if isinstance(value, bool) else value


def _insert(conn: sa.Connection, table: sa.Table, rows: list[Row]) -> None:
    """executemany of one batch. On SQLite the values are converted up front (C-level
    isoformat), since SQLAlchemy's per-value DATETIME formatting dominates the seeding time."""
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return
    names = [c.name for c in table.columns]
    statement = str(table.insert().compile(dialect=conn.dialect))
    conn.exec_driver_sql(statement, [tuple(_sqlite_value(r[n]) for n in names) for r in rows])


def seed(url: str, *, now: datetime, incidents: Sequence[str] = (), seed: int = 7,
         days: int = HISTORY_DAYS) -> SeedSummary:
    """Drop the demo tables if present, create them, insert the generated rows."""
    started = time.perf_counter()
    data = generator.generate(now, incidents_on=incidents, seed=seed, days=days)
    generated = time.perf_counter()
    try:
        engine = _engine(url)
        try:
            _create_if_missing(engine)
            with engine.begin() as conn:  # one transaction: a failed seed leaves nothing half-done
                schema.metadata.drop_all(conn, checkfirst=True)
                schema.metadata.create_all(conn)
                for table in schema.ENTITY_TABLES.values():
                    rows = data.tables[table.name]
                    for start in range(0, len(rows), BATCH):
                        _insert(conn, table, rows[start:start + BATCH])
                conn.execute(schema.demo_meta.insert(), [
                    {"meta_key": "format", "meta_value": FORMAT},
                    {"meta_key": "now", "meta_value": data.now.isoformat()},
                    {"meta_key": "incidents", "meta_value": ",".join(data.incidents)},
                    {"meta_key": "seed", "meta_value": str(seed)},
                    {"meta_key": "days", "meta_value": str(days)},
                ])
            _analyze(engine)
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, OSError, ModuleNotFoundError) as exc:
        raise _error(url, exc) from None
    return SeedSummary(mask_url(url), data.now, data.incidents, seed, data.counts(),
                       generated - started, time.perf_counter() - generated, days)


def _analyze(engine: sa.Engine) -> None:
    """Planner statistics for the new tables on PostgreSQL, as after any bulk load: until
    autovacuum (when it is on at all) reads them, the planner guesses a few dozen rows per
    range and joins the month of calls to itself in a nested loop (first-contact resolution
    on the demo: 16.5 s instead of 39 ms). MariaDB's InnoDB and SQLite need nothing here."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.format_table
        for table in schema.ENTITY_TABLES.values():
            conn.exec_driver_sql(f"ANALYZE {quote(table)}")


def _create_if_missing(engine: sa.Engine) -> None:
    """CREATE DATABASE when the server says the URL's database does not exist."""
    try:
        engine.connect().close()
    except sa.exc.OperationalError as exc:
        if not database.is_missing(engine.url, exc):
            raise
        database.create(engine.url)


def existing(url: str) -> SeedSummary | None:
    """What a previous ``seed`` recorded in this database, or None when it holds no (current)
    demo data. A missing SQLite file is not created."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise _error(url, exc) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).exists():
        return None
    try:
        engine = _engine(url)
        try:
            try:
                connection = engine.connect()
            except sa.exc.OperationalError as exc:
                if database.is_missing(engine.url, exc):
                    return None  # seeding creates it
                raise
            with connection as conn:
                if not sa.inspect(conn).has_table(schema.demo_meta.name):
                    return None
                pairs = conn.execute(sa.select(schema.demo_meta.c.meta_key,
                                               schema.demo_meta.c.meta_value)).all()
                meta = {str(key): str(value) for key, value in pairs}
                if meta.get("format") != FORMAT:
                    return None
                rows = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                        for t in schema.ENTITY_TABLES.values()}
        finally:
            engine.dispose()
    except (sa.exc.SQLAlchemyError, OSError, ModuleNotFoundError) as exc:
        raise _error(url, exc) from None
    names = tuple(n for n in meta.get("incidents", "").split(",") if n)
    incidents.check(names)
    return SeedSummary(mask_url(url), datetime.fromisoformat(meta["now"]), names, int(meta["seed"]),
                       {k: int(v) for k, v in rows.items()},
                       days=int(meta.get("days", HISTORY_DAYS)))
