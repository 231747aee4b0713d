"""SQL that writes is refused twice: by the config validation (kpis.sql_guard), and, when that is
bypassed, by the database itself, because kpis.db.engines opens read-only sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from kpis import config as config_module
from kpis.config import Entity, Source
from kpis.db import engines
from kpis.errors import ConfigError

WRITES = {
    "delete": "DELETE FROM canary",
    "update": "UPDATE canary SET note = 'changed'",
    "insert": "INSERT INTO canary (id, note) VALUES (99, 'planted')",
    "drop": "SELECT id FROM canary; DROP TABLE canary",
    "drop-only": "DROP TABLE canary",
    "truncate": "TRUNCATE TABLE canary",
    "cte-delete": "WITH d AS (DELETE FROM canary RETURNING *) SELECT count(*) FROM d",
}
SYNTAX_ONLY_ON = {("cte-delete", "sqlite"), ("cte-delete", "mysql"), ("truncate", "sqlite")}
READ_ONLY = ("read-only", "read only", "readonly")
# Stacked statements: refused before they reach the server (sqlite3, PyMySQL without
# MULTI_STATEMENTS reports a syntax error at the ';') or by the read-only session (psycopg).
STACKED = ("one statement at a time", "error in your sql syntax")
ROWS = [{"id": i, "note": f"row {i}"} for i in range(1, 6)]


def canary_table(url: str) -> sa.Table:
    table = sa.Table("canary", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("note", sa.String(40)))
    writer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with writer.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), ROWS)
    writer.dispose()
    return table


def contents(url: str) -> list[tuple[int, str]]:
    reader = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with reader.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, note FROM canary ORDER BY id")).all()
    reader.dispose()
    return [tuple(r) for r in rows]


def config_with_query(query: str) -> dict:
    return {"version": 1, "sources": {"db": {"url": "sqlite:///unused.db"}},
            "entities": {"appointments": {"source": "db", "query": query,
                                          "fields": {"id": "id", "clinic": "note"}}}}


@pytest.mark.parametrize("statement", WRITES.values(), ids=WRITES.keys())
def test_the_config_refuses_writing_sql(statement: str, tmp_path: Path) -> None:
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(config_with_query(statement)))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "entities.appointments.query"


@pytest.mark.parametrize("expression", ["note; DELETE FROM canary", "(DELETE FROM canary)",
                                        "(SELECT 1)", "pg_sleep(10)", "note || (UPDATE x)"])
def test_the_config_refuses_writing_field_expressions(expression: str, tmp_path: Path) -> None:
    data = config_with_query("SELECT id, note FROM canary")
    data["entities"]["appointments"]["fields"]["clinic"] = {"sql": expression}
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "entities.appointments.fields.clinic.sql"


def test_the_database_refuses_writes_on_carekpi_connections(db_url: str) -> None:
    """Validation bypassed (Entity.model_construct): every write fails on the read-only
    engine, inside a transaction that would otherwise commit, and the table is untouched."""
    canary_table(db_url)
    before = contents(db_url)
    engine = engines.create("db", Source(url=db_url, query_timeout="10s"))
    dialect = engine.dialect.name
    try:
        with engine.connect() as conn:  # the engine reads: a plain SELECT works
            assert conn.execute(sa.text("SELECT count(*) FROM canary")).scalar_one() == 5
        for name, statement in WRITES.items():
            if (name, dialect) in SYNTAX_ONLY_ON:
                continue  # not this dialect's syntax: nothing to prove
            entity = Entity.model_construct(source="db", query=statement, fields={"id": "id"})
            with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
                conn.execute(sa.text(entity.query))
            message = str(caught.value.orig).lower()
            reasons = READ_ONLY + (STACKED if name == "drop" else ())
            assert any(word in message for word in reasons), (name, dialect, message)
            assert contents(db_url) == before, f"{name} changed the table on {dialect}"
    finally:
        engine.dispose()
    assert contents(db_url) == before == [(r["id"], r["note"]) for r in ROWS]


@pytest.mark.parametrize("form", ["sqlite:///{}", "sqlite:///file:{}?uri=true",
                                  "sqlite:///file:{}?mode=rw&uri=true"])
def test_a_sqlite_file_is_opened_read_only_however_the_url_names_it(form: str, tmp_path: Path
                                                                    ) -> None:
    url = form.format(tmp_path / "clinic.db")
    setup = sa.create_engine(f"sqlite:///{tmp_path / 'clinic.db'}")
    with setup.begin() as conn:
        conn.execute(sa.text("CREATE TABLE canary (id INTEGER)"))
    setup.dispose()
    engine = engines.create("db", Source(url=url, query_timeout="10s"))
    try:
        with pytest.raises(sa.exc.OperationalError, match="readonly"), engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO canary VALUES (1)"))
    finally:
        engine.dispose()
