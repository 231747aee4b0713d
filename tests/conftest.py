"""Shared fixtures: empty databases on SQLite, PostgreSQL and MariaDB/MySQL.

The servers default to this machine's (127.0.0.1:5432 trust auth, 127.0.0.1:3306 root without
password); CAREKPI_TEST_PG_URL and CAREKPI_TEST_MYSQL_URL point elsewhere. When a server is
missing the test skips with the reason, except in CI (CI=true), where it fails: CI must prove
every dialect.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

SERVER_URLS = {
    "postgresql": os.environ.get(
        "CAREKPI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get("CAREKPI_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
DIALECTS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
_counter = itertools.count()
_unreachable: dict[str, str] = {}


# The quick tier, `bash tests/run.sh -m "not slow"` (under a minute): pure code and SQLite.
# Slow, besides the end-to-end tests marked so in their modules: every test on a server
# database or with a Prometheus binary, and the modules below.
SLOW_MARKS = ("postgresql", "mysql", "prometheus")
SLOW_MODULES = {
    "test_demo_data": "seeds the 90-day demo, several times",
    "test_faults": "starts exporters and demos, waits out timeouts",
    "test_shards": "three exporters per dialect",
    "test_checks_demo": "seeds the demo and runs every check",
    "test_checks_privacy": "seeds the demo and runs every check",
    "test_checks_report": "headless Chromium",
    "test_landing": "headless Chromium",
    "test_exposition_valid": "serves the demo",
    "test_dashboards_publish": "a fake Grafana over HTTP",
    "test_web_attacks": "waits out the header timeouts",
    "test_ci_tooling": "runs .ci/run's functions and pytest in bash",
    "test_backfill": "runs the CLI over ranges of instants",
    "test_exporter": "serves and scrapes a live exporter",
    "test_cadence": "waits out refresh intervals",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in SLOW_MODULES or any(item.get_closest_marker(m) for m in SLOW_MARKS):
            item.add_marker(pytest.mark.slow)


def free_port(start: int = 19100, end: int = 19400, exclude: tuple[int, ...] = ()) -> int:
    """A loopback port in [start, end) that nothing listens on now."""
    for port in range(start, end):
        if port in exclude:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{end - 1}")


def execute(url: str, *statements: str) -> None:
    """Run SQL statements on a test database, in one transaction."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def server_or_skip(dialect: str) -> sa.Engine:
    """An autocommit engine on the server's admin database, or skip (fail in CI)."""
    url = SERVER_URLS[dialect]
    if dialect not in _unreachable:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
                                  connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return engine
        except sa.exc.OperationalError as exc:
            _unreachable[dialect] = str(exc.orig).splitlines()[0][:200]
    reason = f"{dialect} server at {sa.make_url(url).render_as_string()} unreachable: " \
             f"{_unreachable[dialect]}"
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


class Databases:
    """Creates empty databases on demand and drops them all at close()."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.created: list[tuple[sa.Engine, str]] = []

    def make(self, dialect: str) -> str:
        if dialect == "sqlite":
            return f"sqlite:///{self.folder}/carekpi-{next(_counter)}.db"
        admin = server_or_skip(dialect)
        name = f"carekpi_t{os.getpid()}_{next(_counter)}"
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        self.created.append((admin, name))
        return sa.make_url(SERVER_URLS[dialect]).set(database=name).render_as_string(
            hide_password=False
        )

    def close(self) -> None:
        for admin, name in self.created:
            force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
            admin.dispose()


@pytest.fixture
def fresh_database(tmp_path) -> Iterator[Callable[[str], str]]:
    """A factory: dialect name -> URL of a new, empty database (dropped after the test)."""
    databases = Databases(str(tmp_path))
    yield databases.make
    databases.close()


@pytest.fixture(params=DIALECTS)
def db_url(request, fresh_database) -> str:
    """An empty database on each dialect in turn: SQLite, PostgreSQL, MariaDB."""
    return fresh_database(request.param)


@pytest.fixture(scope="module", params=DIALECTS)
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """Like db_url, shared by the tests of one module (load data once per dialect)."""
    databases = Databases(str(tmp_path_factory.mktemp("db")))
    yield databases.make(request.param)
    databases.close()
