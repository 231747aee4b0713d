"""The SQL guard parses the mapping's SQL per dialect: one SELECT, no locks, no INTO, and only
functions on the read-only list (an allowlist). Anything else is refused when the config loads,
with the function's name and the config key, on one line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlglot import exp

from kpis import config as config_module
from kpis import sql_functions, sql_guard
from kpis.config import Entity, Source
from kpis.errors import ConfigError

URLS = {"postgres": "postgresql+psycopg://u@db.example/x",
        "mysql": "mysql+pymysql://u@db.example/x", "sqlite": "sqlite:///unused.db"}

HARMFUL = {  # dialect -> SQL whose function must be named in the refusal
    "postgres": {
        "pg_terminate_backend": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
        "pg_cancel_backend": "SELECT pg_cancel_backend(42)",
        "pg_read_file": "SELECT pg_read_file('/etc/passwd') AS id",
        "pg_read_binary_file": "SELECT pg_read_binary_file('/etc/passwd')",
        "pg_ls_dir": "SELECT * FROM pg_ls_dir('.')",
        "lo_import": "SELECT lo_import('/etc/passwd')",
        "pg_sleep": "SELECT id FROM t WHERE pg_sleep(10) IS NOT NULL",
        "pg_sleep_for": "SELECT pg_sleep_for('5 minutes')",
        "set_config": "SELECT set_config('statement_timeout', '0', false)",
        "nextval": "SELECT nextval('visits_id_seq')",
        "setval": "SELECT setval('visits_id_seq', 1)",
        "query_to_xml": "SELECT query_to_xml('DELETE FROM t', true, true, '')",
        "dblink": "SELECT * FROM dblink('host=evil', 'SELECT 1') AS x(a int)",
        "current_setting": "SELECT current_setting('data_directory')",
        "pg_catalog.pg_terminate_backend": "SELECT pg_catalog.pg_terminate_backend(1)",
        "public.lower": "SELECT public.lower(name) FROM t",
        "txid_current": "WITH x AS (SELECT txid_current()) SELECT * FROM x",
    },
    "mysql": {
        "SLEEP": "SELECT SLEEP(10)",
        "BENCHMARK": "SELECT BENCHMARK(100000000, MD5('a'))",
        "LOAD_FILE": "SELECT LOAD_FILE('/etc/passwd')",
        "GET_LOCK": "SELECT GET_LOCK('carekpi', 10)",
        "RELEASE_LOCK": "SELECT id FROM t WHERE RELEASE_LOCK('x') = 1",
        "version": "SELECT version()",
    },
    "sqlite": {
        "load_extension": "SELECT load_extension('/tmp/evil.so')",
        "readfile": "SELECT readfile('/etc/passwd')",
        "writefile": "SELECT writefile('/tmp/x', 'y')",
        "pragma_table_info": "SELECT * FROM pragma_table_info('t')",
        "randomblob": "SELECT randomblob(1000000000)",
    },
}

NOT_A_READ = {  # dialect -> (SQL, words the refusal must contain)
    "postgres": [
        ("SELECT a FROM t FOR UPDATE", "locking clause"),
        ("SELECT a FROM t FOR SHARE", "locking clause"),
        ("SELECT a FROM t FOR NO KEY UPDATE", "locking clause"),
        ("SELECT a INTO copy_of_t FROM t", "INTO"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d", "DELETE writes"),
        ("SELECT id FROM t; DROP TABLE t", "only one statement"),
        ("DELETE FROM t", "must be a SELECT"),
        ("UPDATE t SET a = 1", "must be a SELECT"),
        ("SET statement_timeout = 0", "must be a SELECT"),
        ("COPY t TO '/tmp/x'", "must be a SELECT"),
        ("CALL p()", "must be a SELECT"),
        ("LOCK TABLE t", "must be a SELECT"),
        ("VALUES (1)", "must be a SELECT"),
        ("SELECT $$ ' $$, pg_sleep(1), ' $$", "not valid PostgreSQL SQL"),
        # A cast that looks a row's value up in the catalog: its error quotes the value.
        ("SELECT CAST(concat('\"', name, '\"') AS regclass)::text FROM t", "cast to regclass"),
        ("SELECT name::pg_catalog.regproc FROM t", "cast to regproc"),
        ("SELECT name::\"regnamespace\" FROM t", "cast to regnamespace"),
        ("SELECT id FROM t WHERE name::regrole IS NOT NULL", "cast to regrole"),
    ],
    "mysql": [
        ("SELECT a FROM t LOCK IN SHARE MODE", "locking clause"),
        ("SELECT a FROM t FOR UPDATE", "locking clause"),
        ("SELECT a INTO OUTFILE '/tmp/x' FROM t", "not valid"),
        ("SELECT @x := 1", "assignment"),
        ("SELECT @@global.secure_file_priv", "session variables"),
        ("SELECT 1 /*! , SLEEP(5) */", "executable comments"),
        ("SELECT 1 /*M! , SLEEP(5) */", "executable comments"),
        ("SELECT 'a\\', SLEEP(5), ''", "backslash"),
        ("REPLACE INTO t VALUES (1)", "must be a SELECT"),
        ("HANDLER t READ FIRST", "not valid"),
    ],
    "sqlite": [
        ("ATTACH DATABASE '/tmp/x' AS y", "must be a SELECT"),
        ("PRAGMA writable_schema = 1", "must be a SELECT"),
        ("SELECT 1; SELECT 2", "only one statement"),
    ],
}

HARMLESS_QUERIES = {
    "postgres": [
        "SELECT replace(site_code, ' ', '') AS clinic, id FROM appt",
        "WITH recent AS (SELECT * FROM appt WHERE booked_at > now() - interval '90 days') "
        "SELECT r.id, upper(trim(r.site)) AS clinic FROM recent r "
        "JOIN sites s ON s.code = r.site WHERE s.active AND r.id IN (SELECT id FROM keep)",
        "SELECT id, date_trunc('day', a)::date AS d, extract(epoch FROM b - a) AS s, "
        "coalesce(nullif(x, ''), 'none') AS c, CASE WHEN y THEN 1 ELSE 0 END AS f, "
        "count(*) FILTER (WHERE z) OVER (PARTITION BY site) AS n, to_char(a, 'YYYY') AS yr, "
        "a AT TIME ZONE 'UTC' AS utc, pg_catalog.lower(name) AS l, js->>'k' AS k FROM t",
        "SELECT id FROM a UNION ALL SELECT id FROM b",
        "SELECT id, string_agg(code, ',') AS codes FROM t GROUP BY id",
        "SELECT id FROM t;",
        "SELECT id FROM t -- comment /* pg_sleep(1) */",
    ],
    "mysql": [
        "SELECT REPLACE(site_code, ' ', '') AS clinic, id FROM appt",
        "SELECT id, IFNULL(a, b) AS x, DATE_FORMAT(a, '%Y-%m-%d') AS d, "
        "TIMESTAMPDIFF(SECOND, a, b) AS s, IF(c = 'Y', 1, 0) AS f, CONVERT_TZ(a, '+00:00', "
        "'+01:00') AS local_a, STR_TO_DATE(txt, '%d/%m/%Y') AS parsed, `Odd Col` FROM `t`",
        "WITH x AS (SELECT id FROM t) SELECT * FROM x # trailing comment",
        "SELECT id, GROUP_CONCAT(code SEPARATOR ',') AS codes FROM t GROUP BY id",
    ],
    "sqlite": [
        "SELECT replace(site_code, ' ', '') AS clinic, id FROM appt",
        "SELECT id, julianday(b) - julianday(a) AS days, strftime('%Y', a) AS y, "
        "datetime(a, '+1 hour') AS later, iif(c = 'Y', 1, 0) AS f, ifnull(x, 0) AS x0, "
        "substr(code, 1, 3) AS p, instr(code, '-') AS dash, group_concat(k, ',') AS ks "
        "FROM t GROUP BY id",
    ],
}

HARMLESS_EXPRESSIONS = {
    "postgres": ["replace(site_code, ' ', '')", "coalesce(checkout_at, discharged_at)",
                 "score_val + 0", "CASE WHEN flag = 'S' THEN true ELSE false END",
                 "booked_at + interval '2 hours'", "to_timestamp(epoch_s)", "a::timestamp"],
    "mysql": ["REPLACE(site_code, ' ', '')", "IF(flag = 'S', 1, 0)",
              "TIMESTAMPADD(HOUR, 2, booked_at)", "FROM_UNIXTIME(epoch_s)"],
    "sqlite": ["replace(site_code, ' ', '')", "datetime(epoch_s, 'unixepoch')",
               "coalesce(checkout_at, discharged_at)"],
}

NOT_AN_EXPRESSION = [
    ("note; DELETE FROM canary", "only one statement"),
    ("(SELECT 1)", "sub-query"),
    ("note FROM canary", "single expression"),
    ("note AS clinic", "single expression"),
    ("note || (UPDATE x)", "single expression"),
    ("", "empty"),
    ("pg_sleep(10)", "pg_sleep"),
]


def cases(table: dict[str, dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(d, name, sql) for d, items in table.items() for name, sql in items.items()]


@pytest.mark.parametrize(("dialect", "name", "sql"), cases(HARMFUL))
def test_harmful_functions_are_refused_by_name(dialect: str, name: str, sql: str) -> None:
    with pytest.raises(sql_guard.RefusedSql) as caught:
        sql_guard.check_select(sql, dialect)
    assert f"function {name}()" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "sqlite"])
def test_unknown_functions_are_refused_not_just_known_bad_ones(dialect: str) -> None:
    """An allowlist: a function nobody thought of is refused too."""
    for name in ("my_func", "evil_proc", "sleep_a_bit"):
        with pytest.raises(sql_guard.RefusedSql, match=rf"function {name}\(\)"):
            sql_guard.check_expression(f"{name}(site)", dialect)


@pytest.mark.parametrize(("dialect", "sql", "why"),
                         [(d, sql, why) for d, items in NOT_A_READ.items() for sql, why in items])
def test_anything_but_one_plain_select_is_refused(dialect: str, sql: str, why: str) -> None:
    with pytest.raises(sql_guard.RefusedSql, match=why):
        sql_guard.check_select(sql, dialect)


@pytest.mark.parametrize(("dialect", "sql"),
                         [(d, sql) for d, items in HARMLESS_QUERIES.items() for sql in items])
def test_ordinary_read_only_queries_are_accepted(dialect: str, sql: str) -> None:
    sql_guard.check_select(sql, dialect)


@pytest.mark.parametrize(("dialect", "sql"),
                         [(d, sql) for d, items in HARMLESS_EXPRESSIONS.items() for sql in items])
def test_ordinary_field_expressions_are_accepted(dialect: str, sql: str) -> None:
    sql_guard.check_expression(sql, dialect)


@pytest.mark.parametrize(("sql", "why"), NOT_AN_EXPRESSION)
def test_a_field_expression_is_one_expression(sql: str, why: str) -> None:
    for dialect in ("postgres", "mysql", "sqlite"):
        with pytest.raises(sql_guard.RefusedSql, match=why):
            sql_guard.check_expression(sql, dialect)


def test_the_lists_name_only_functions_the_parser_knows() -> None:
    """A typo (or a sqlglot upgrade renaming a node) would silently refuse a function."""
    for name in sql_functions.KNOWN:
        node = getattr(exp, name, None)
        assert isinstance(node, type) and issubclass(node, exp.Func), name


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "carekpi.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def mapping(dialect: str, query: str | None = None, expression: str | None = None) -> dict:
    entity: dict = {"source": "db", "fields": {"id": "id", "clinic": "site"}}
    if query is not None:
        entity["query"] = query
    else:
        entity["table"] = "appt"
    if expression is not None:
        entity["fields"]["clinic"] = {"sql": expression}
    return {"version": 1, "sources": {"db": {"url": URLS[dialect]}},
            "entities": {"appointments": entity}}


def test_a_refusal_names_the_function_and_the_key_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, mapping("postgres", "SELECT id, site FROM appt "
                                   "WHERE pg_terminate_backend(42)"))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert str(caught.value).startswith(f"{path}: entities.appointments.query: function "
                                        "pg_terminate_backend() is not on CareKPI's list")
    assert len(str(caught.value).splitlines()) == 1
    path = write(tmp_path, mapping("mysql", expression="CONCAT(site, SLEEP(5))"))
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert caught.value.key == "entities.appointments.fields.clinic.sql"
    assert "function SLEEP()" in caught.value.message


def test_the_dialect_comes_from_the_entitys_source(tmp_path: Path) -> None:
    """IF() is MySQL's; SQLite spells it iif() (both are sqlglot's If), strftime is SQLite's."""
    assert config_module.load(write(tmp_path, mapping("sqlite", expression="strftime('%Y', a)")))
    with pytest.raises(ConfigError, match=r"function strftime\(\)"):
        config_module.load(write(tmp_path, mapping("postgres", expression="strftime('%Y', a)")))


def test_replace_is_a_function_not_a_keyword(tmp_path: Path) -> None:
    """The keyword list refused `replace(site_code, ' ', '')` as "SQL keyword REPLACE"."""
    for dialect in URLS:
        config_module.load(write(tmp_path, mapping(dialect, "SELECT id, replace(site_code, ' ', "
                                                   "'') AS site FROM appt")))
        config_module.load(write(tmp_path, mapping(dialect, expression="replace(site, ' ', '')")))


def test_a_vetted_function_is_allowed_only_when_named(tmp_path: Path) -> None:
    data = mapping("postgres", "SELECT id, reporting.clinic_code(site) AS site FROM appt")
    with pytest.raises(ConfigError, match=r"function reporting\.clinic_code\(\)"):
        config_module.load(write(tmp_path, data))
    data["sql"] = {"allow_functions": ["reporting.clinic_code"]}
    config = config_module.load(write(tmp_path, data))
    assert config.sql.allow_functions == ["reporting.clinic_code"]
    data["sql"] = {"allow_functions": ["clinic_code; DROP TABLE x"]}
    with pytest.raises(ConfigError) as caught:
        config_module.load(write(tmp_path, data))
    assert caught.value.key == "sql.allow_functions.0"


@pytest.mark.parametrize("dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql),
                                     pytest.param("mysql", marks=pytest.mark.mysql), "sqlite"])
def test_accepted_expressions_run_on_the_real_database(dialect: str, fresh_database) -> None:
    """The list is not theory: what it accepts, the server runs on the read-only engine."""
    from kpis.db import engines

    url = fresh_database(dialect)
    writer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE appt (id INTEGER PRIMARY KEY, site_code "
                             "VARCHAR(20), booked_at TIMESTAMP NULL, checkout_at TIMESTAMP NULL)"))
        conn.execute(sa.text("INSERT INTO appt VALUES (1, 'S 01', '2026-03-01 10:00:00', "
                             "'2026-03-01 11:30:00')"))
    writer.dispose()
    guard_dialect = sql_guard.DIALECTS[dialect]
    expressions = {"replace(site_code, ' ', '')": "S01",
                   "coalesce(checkout_at, booked_at)": None,
                   "upper(trim(lower(site_code)))": "S 01"}
    engine = engines.create("db", Source(url=url, query_timeout="10s"))
    try:
        with engine.connect() as conn:
            for expression, expected in expressions.items():
                sql_guard.check_expression(expression, guard_dialect)
                value = conn.execute(sa.text(f"SELECT ({expression}) FROM appt")).scalar_one()
                assert expected is None or value == expected, (expression, value)
            for query in HARMLESS_QUERIES[guard_dialect][:1]:
                sql_guard.check_select(query, guard_dialect)
                rows = conn.execute(sa.text(query)).all()
                assert [tuple(r) for r in rows] == [("S01", 1)]
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_pg_terminate_backend_no_longer_kills_another_session(fresh_database,
                                                              tmp_path: Path) -> None:
    """The attack: an entity query calling pg_terminate_backend killed another session, even on
    CareKPI's read-only engine. Bypassing the guard shows the danger is real; through the CLI
    the config is refused at load and the other session lives."""
    from kpis.db import engines

    url = fresh_database("postgresql")
    database = sa.make_url(url).database
    victim_name = f"carekpi-victim-{time.monotonic_ns()}"
    query = ("SELECT pg_terminate_backend(pid) AS id, 'x' AS site FROM pg_stat_activity "
             f"WHERE application_name = '{victim_name}' AND datname = '{database}'")

    def victim() -> sa.Connection:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                                  connect_args={"application_name": victim_name})
        conn = engine.connect()
        conn.execute(sa.text("SELECT 1"))
        return conn

    def alive(conn: sa.Connection) -> bool:
        try:
            conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.DBAPIError:
            return False

    # 1. The old guard's world: the query reaches the read-only engine and kills the victim.
    first = victim()
    entity = Entity.model_construct(source="db", query=query, fields={"id": "id"})
    engine = engines.create("db", Source(url=url, query_timeout="10s"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(entity.query)).all() == [(True, "x")]
    finally:
        engine.dispose()
    assert not alive(first), "pg_terminate_backend did not kill the session: no attack to stop"

    # 2. Now: `config validate` and `collect` refuse the config, and the victim lives.
    second = victim()
    path = write(tmp_path, {**mapping("postgres", query), "sources": {"db": {"url": url}}})
    for command in (["config", "validate"], ["collect", "--once"]):
        run = subprocess.run([sys.executable, "-m", "kpis", *command, "--config", str(path)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip() == (
            f"carekpi: {path}: entities.appointments.query: function pg_terminate_backend() is "
            "not on CareKPI's list of read-only functions (a vetted function can be allowed "
            "with sql.allow_functions)")
    assert alive(second)
    second.close()


def test_validate_reports_the_vetted_functions(tmp_path: Path) -> None:
    data = mapping("sqlite", "SELECT id, clinic_code(site) AS site FROM appt")
    data["sql"] = {"allow_functions": ["clinic_code"]}
    path = write(tmp_path, data)
    run = subprocess.run([sys.executable, "-m", "kpis", "config", "validate", "--offline",
                          "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stderr == (f"{path}: warning: sql.allow_functions: clinic_code() runs without "
                          "CareKPI's read-only check (vetted by you)\n")


@pytest.mark.postgresql
def test_postgresql_sessions_read_backslashes_as_the_guard_does(fresh_database) -> None:
    """The guard reads 'a\\' as a complete string (standard_conforming_strings); CareKPI's
    sessions force that setting, so a server configured otherwise cannot end the string
    elsewhere and run what the guard saw as text."""
    from kpis.db import engines

    url = fresh_database("postgresql")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    database = sa.make_url(url).database
    with admin.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE {database} SET standard_conforming_strings = off"))
    admin.dispose()
    sql = "SELECT 'a\\' AS x"
    sql_guard.check_select(sql, "postgres")
    engine = engines.create("db", Source(url=url, query_timeout="10s"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW standard_conforming_strings")).scalar() == "on"
            assert conn.execute(sa.text(sql)).scalar_one() == "a\\"
    finally:
        engine.dispose()
