"""Least privilege: `config validate` and `serve` warn loudly when the connected role can do more
than read the mapped tables (a superuser, signalling other sessions, the server's files, writing
a mapped table), and `--strict` refuses with exit 2. A role made with the README's SQL passes.

Real PostgreSQL and MariaDB: each test creates a restricted role and a privileged one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

CARE = [sys.executable, "-m", "kpis"]
_n = count()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CARE, *args], capture_output=True, text=True, timeout=120)


def config_file(tmp_path: Path, url: str) -> str:
    path = tmp_path / f"carekpi-{next(_n)}.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "sources": {"clinicdb": {"url": url, "connect_timeout": "5s"}},
        "entities": {"appointments": {
            "source": "clinicdb", "table": "appt",
            "fields": {"id": "id", "clinic": "site", "start": "start_at",
                       "created": "booked_at", "status": "st"}}}}))
    return str(path)


def make_table(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE appt (id INTEGER PRIMARY KEY, site VARCHAR(20), "
                             "start_at TIMESTAMP NULL, booked_at TIMESTAMP NULL, st VARCHAR(4))"))
    engine.dispose()


def admin(url: str) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


@pytest.fixture
def pg_roles(fresh_database) -> Iterator[tuple[str, str, str]]:
    """(database URL as postgres, as a read-only role, as a role that can do too much)."""
    url = fresh_database("postgresql")
    make_table(url)
    database = sa.make_url(url).database
    tag = f"carekpi_t{os.getpid()}_{next(_n)}"
    reader, writer = f"{tag}_ro", f"{tag}_rw"
    engine = admin(url)
    with engine.connect() as conn:
        for role in (reader, writer):  # the README's read-only role, then more on top
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
            conn.execute(sa.text(f"GRANT CONNECT ON DATABASE {database} TO {role}"))
            conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            conn.execute(sa.text(f"GRANT SELECT ON appt TO {role}"))
        conn.execute(sa.text(f"GRANT INSERT, UPDATE ON appt TO {writer}"))
        conn.execute(sa.text(f"GRANT pg_signal_backend, pg_read_server_files TO {writer}"))
    as_role = sa.make_url(url).set
    try:
        yield (url, as_role(username=reader).render_as_string(hide_password=False),
               as_role(username=writer).render_as_string(hide_password=False))
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {reader}, {writer}"))
            conn.execute(sa.text(f"REVOKE CONNECT ON DATABASE {database} FROM {reader}, {writer}"))
            conn.execute(sa.text(f"DROP ROLE {reader}, {writer}"))
        engine.dispose()


@pytest.fixture
def mysql_users(fresh_database) -> Iterator[tuple[str, str, str]]:
    url = fresh_database("mysql")
    make_table(url)
    database = sa.make_url(url).database
    tag = f"ck{os.getpid()}_{next(_n)}"
    reader, writer = f"'{tag}_ro'@'127.0.0.1'", f"'{tag}_rw'@'127.0.0.1'"
    engine = admin(url)
    with engine.connect() as conn:
        for user in (reader, writer):
            conn.execute(sa.text(f"CREATE USER {user}"))
            conn.execute(sa.text(f"GRANT SELECT ON {database}.appt TO {user}"))
        conn.execute(sa.text(f"GRANT INSERT, DELETE ON {database}.* TO {writer}"))
        conn.execute(sa.text(f"GRANT FILE ON *.* TO {writer}"))
    as_user = sa.make_url(url).set
    try:
        yield (url, as_user(username=f"{tag}_ro").render_as_string(hide_password=False),
               as_user(username=f"{tag}_rw").render_as_string(hide_password=False))
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP USER {reader}, {writer}"))
        engine.dispose()


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": WARNING: " in line]


@pytest.mark.postgresql
def test_postgresql_roles(pg_roles: tuple[str, str, str], tmp_path: Path) -> None:
    superuser, reader, writer = (config_file(tmp_path, u) for u in pg_roles)
    ok = run("config", "validate", "--strict", "--config", reader)
    assert ok.returncode == 0, ok.stderr
    assert "every mapped table and column answered" in ok.stdout and not ok.stderr

    loud = run("config", "validate", "--config", writer)
    assert loud.returncode == 0, loud.stderr
    found = warnings(loud.stderr)
    role = sa.make_url(pg_roles[2]).username
    assert found == [
        f"{writer}: WARNING: source clinicdb: role {role} can read the server's files "
        "(pg_read_server_files): CareKPI needs SELECT on the mapped tables only (README: "
        "Security)",
        f"{writer}: WARNING: source clinicdb: role {role} can signal other sessions (member of "
        "pg_signal_backend): CareKPI needs SELECT on the mapped tables only (README: Security)",
        f"{writer}: WARNING: source clinicdb: role {role} can INSERT, UPDATE mapped table appt: "
        "CareKPI needs SELECT on the mapped tables only (README: Security)"], loud.stderr
    strict = run("config", "validate", "--strict", "--config", writer)
    assert strict.returncode == 2 and ": error: source clinicdb: " in strict.stderr

    root = run("config", "validate", "--config", superuser)
    assert [w.split(": WARNING: ")[1] for w in warnings(root.stderr)] == [
        "source clinicdb: role postgres is a superuser: CareKPI needs SELECT on the mapped "
        "tables only (README: Security)"]

    refused = run("serve", "--strict", "--port", "0", "--config", writer)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"carekpi: {writer}: --strict: source clinicdb: role "
                                     f"{role} can read the server's files")


@pytest.mark.mysql
def test_mariadb_users(mysql_users: tuple[str, str, str], tmp_path: Path) -> None:
    writer_url = mysql_users[2]
    root, reader, writer = (config_file(tmp_path, u) for u in mysql_users)
    ok = run("config", "validate", "--strict", "--config", reader)
    assert ok.returncode == 0 and not ok.stderr, ok.stderr

    loud = run("config", "validate", "--config", writer)
    user = f"'{sa.make_url(writer_url).username}'@'127.0.0.1'"
    database = sa.make_url(writer_url).database
    assert [w.split(": WARNING: ")[1] for w in warnings(loud.stderr)] == [
        f"source clinicdb: role {user} can read and write the server's files (FILE privilege): "
        "CareKPI needs SELECT on the mapped tables only (README: Security)",
        f"source clinicdb: role {user} can INSERT, DELETE mapped table {database}.appt: "
        "CareKPI needs SELECT on the mapped tables only (README: Security)"], loud.stderr
    assert run("config", "validate", "--strict", "--config", writer).returncode == 2

    superuser = run("config", "validate", "--config", root)
    assert any("has the SUPER privilege" in w for w in warnings(superuser.stderr))


@pytest.mark.mysql
def test_mariadb_privileges_granted_through_roles_are_found(fresh_database,
                                                             tmp_path: Path) -> None:
    """A user with SELECT only, whose default role (and the role nested in it) can write and
    read server files: information_schema shows none of it to the user; SHOW GRANTS does."""
    url = fresh_database("mysql")
    make_table(url)
    database = sa.make_url(url).database
    tag = f"ck{os.getpid()}_{next(_n)}"
    user, outer, inner = f"'{tag}_u'@'127.0.0.1'", f"{tag}_outer", f"{tag}_inner"
    engine = admin(url)
    with engine.connect() as conn:
        for statement in (
                f"CREATE ROLE {inner}", f"GRANT FILE ON *.* TO {inner}",
                f"GRANT INSERT ON {database}.appt TO {inner}",
                f"CREATE ROLE {outer}", f"GRANT DELETE ON {database}.* TO {outer}",
                f"GRANT {inner} TO {outer}",
                f"CREATE USER {user}", f"GRANT SELECT ON {database}.appt TO {user}",
                f"GRANT {outer} TO {user}", f"SET DEFAULT ROLE {outer} FOR {user}"):
            conn.execute(sa.text(statement))
    try:
        path = config_file(tmp_path, sa.make_url(url).set(username=f"{tag}_u").render_as_string(
            hide_password=False))
        loud = run("config", "validate", "--config", path)
        shown = f"'{tag}_u'@'127.0.0.1'"
        assert [w.split(": WARNING: ")[1] for w in warnings(loud.stderr)] == [
            f"source clinicdb: role {shown} (through role {inner}) can read and write the "
            "server's files (FILE privilege): CareKPI needs SELECT on the mapped tables only "
            "(README: Security)",
            f"source clinicdb: role {shown} (through role {inner}, {outer}) can INSERT, DELETE "
            f"mapped table {database}.appt: CareKPI needs SELECT on the mapped tables only "
            "(README: Security)"], loud.stderr
        assert run("config", "validate", "--strict", "--config", path).returncode == 2
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP USER {user}"))
            conn.execute(sa.text(f"DROP ROLE {outer}"))
            conn.execute(sa.text(f"DROP ROLE {inner}"))
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgresql
def test_serve_warns_without_strict_and_keeps_serving(pg_roles: tuple[str, str, str],
                                                      tmp_path: Path) -> None:
    from tests.conftest import free_port

    writer = config_file(tmp_path, pg_roles[2])
    port = free_port()
    process = subprocess.Popen([*CARE, "serve", "--port", str(port), "--bind", "127.0.0.1",
                                "--config", writer], stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("mapped table appt" in x for x in lines):
            line = process.stderr.readline() if process.stderr else ""
            if not line:
                break
            lines.append(line)
        assert any("WARNING" in x and "can INSERT, UPDATE mapped table appt" in x
                   for x in lines), lines
        from tests.test_exporter import scrape_when

        assert "carekpi_build_info" in scrape_when(f"http://127.0.0.1:{port}/metrics",
                                                   "carekpi_build_info")
    finally:
        process.terminate()
        process.wait(timeout=30)
