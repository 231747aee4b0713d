"""Database engines: read-only sessions, server-side statement timeouts, bounded pools.

PostgreSQL: ``default_transaction_read_only`` and ``statement_timeout`` set at connect.
MariaDB/MySQL: ``SET SESSION TRANSACTION READ ONLY`` and ``max_statement_time`` (MariaDB) or
``max_execution_time`` (MySQL). SQLite: opened with ``mode=ro`` and interrupted from a
progress handler when the timeout passes.

Client-side deadlines (a server that stops answering): see :mod:`kpis.db.deadlines`; the
drivers' connect timeouts, TCP keepalives and ``TCP_USER_TIMEOUT`` are set here.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from kpis.config import Config, Source
from kpis.db import deadlines
from kpis.errors import SourceError

_sqlite_deadlines: dict[int, float] = {}  # id(sqlite3 connection) -> monotonic deadline


def create(name: str, source: Source, session_zone: str = "UTC") -> sa.Engine:
    """A pooled, read-only engine for one configured source. ``session_zone`` is PostgreSQL's
    session time zone: the zone in which it reads a naive time compared with a
    ``timestamptz`` column (the refreshes set it per transaction instead)."""
    url = make_url(source.url)
    timeout = source.query_timeout.seconds
    connect = source.connect_timeout.seconds
    backend = url.get_backend_name()
    # No compiled-statement cache: each refresh's statements carry that refresh's time bounds
    # inline, so cached entries are never reused and the cache only fills memory (hundreds of
    # MB for 500 large aggregate statements).
    kwargs: dict[str, Any] = {"pool_recycle": 1800, "query_cache_size": 0}
    give_up = deadlines.overdue_after(timeout)
    if backend == "sqlite":
        kwargs["pool_pre_ping"] = True
        url = _read_only_sqlite(url)
        kwargs["connect_args"] = {"check_same_thread": False,
                                  "timeout": min(connect, timeout)}
        if url.database not in (None, "", ":memory:"):
            kwargs.update(pool_size=source.pool_size + 1, max_overflow=0,
                          pool_timeout=max(connect, timeout))
    else:
        kwargs.update(pool_size=source.pool_size, max_overflow=0,
                      pool_timeout=max(connect, timeout))
    if backend == "postgresql":
        # jit=off: compiling the aggregate's expressions costs more than it saves here.
        # standard_conforming_strings=on: a backslash in a string is read as kpis.sql_guard
        # read it (a server set to off would end a string elsewhere than the guard saw).
        # cursor_tuple_fraction=1: rows are streamed through a server-side cursor (so a label
        # with a million values never lands in memory at once); by default the planner would
        # then plan for the first tenth of the rows (nested loops over hash aggregates) and
        # the whole query takes several times longer.
        options = (f"-c default_transaction_read_only=on -c statement_timeout={int(timeout * 1000)}"
                   f" -c TimeZone={session_zone} -c jit=off -c application_name=carekpi-{name}"
                   " -c standard_conforming_strings=on -c cursor_tuple_fraction=1")
        # A silent network (nothing acknowledges) is noticed by keepalives and TCP_USER_TIMEOUT.
        kwargs["connect_args"] = {"options": options, "connect_timeout": int(max(1, connect)),
                                  "keepalives": 1, "keepalives_idle": 10,
                                  "keepalives_interval": 5, "keepalives_count": 3,
                                  "tcp_user_timeout": int(give_up * 1000)}
    elif backend in ("mysql", "mariadb"):
        kwargs["connect_args"] = {"connect_timeout": int(max(1, connect)),
                                  "read_timeout": int(give_up + 1),
                                  "write_timeout": int(give_up + 1)}
    _driver_installed(name, url)
    engine = sa.create_engine(url, **kwargs)
    if backend != "sqlite":
        deadlines.install(engine, timeout, connect)
    if backend in ("mysql", "mariadb"):
        event.listen(engine, "connect", _mysql_session(timeout))
        if url.get_driver_name() == "pymysql":
            event.listen(engine, "do_connect", _pymysql_shared_tls)
    elif backend == "sqlite":
        event.listen(engine, "connect", _sqlite_interrupt)
        event.listen(engine, "close", _sqlite_forget)
        event.listen(engine, "before_cursor_execute", _sqlite_deadline(timeout))
    return engine


# The package that provides each driver SQLAlchemy may ask for.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary",
                   "pg8000": "pg8000", "asyncpg": "asyncpg", "pymysql": "pymysql",
                   "mysqldb": "mysqlclient", "mysqlconnector": "mysql-connector-python",
                   "mariadbconnector": "mariadb", "pysqlite": "(built in)"}


def _driver_installed(name: str, url: sa.URL) -> None:
    """One line naming the package to install when the URL's driver is missing."""
    try:
        url.get_dialect().import_dbapi()
    except ImportError:
        driver = url.get_driver_name()
        package = DRIVER_PACKAGES.get(driver, f"the {driver} driver")
        raise SourceError(f"source {name}: the database driver {driver!r} for "
                          f"{url.get_backend_name()} is not installed: pip install "
                          f"'{package}'") from None


def create_all(config: Config) -> dict[str, sa.Engine]:
    """One engine per configured source, by source name."""
    return {name: create(name, source) for name, source in config.sources.items()}


@contextmanager
def opened(config: Config) -> Iterator[dict[str, sa.Engine]]:
    """Every source's engine for the duration of a command, disposed afterwards."""
    engines = create_all(config)
    try:
        yield engines
    finally:
        for engine in engines.values():
            engine.dispose()


def _read_only_sqlite(url: sa.URL) -> sa.URL:
    """The file opened read-only (a URI with mode=ro), also when the URL is a ``file:`` URI
    already, whatever mode it asks for."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return url
    if not database.startswith("file:"):
        url = url.set(database=f"file:{database}")
    return url.update_query_dict({"mode": "ro", "uri": "true"})


def _mysql_session(timeout: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT VERSION()")
        mariadb = "mariadb" in str(cursor.fetchone()[0]).lower()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.execute("SET time_zone = '+00:00'")
        if mariadb:
            cursor.execute(f"SET SESSION max_statement_time = {timeout:.3f}")
        else:
            cursor.execute(f"SET SESSION max_execution_time = {int(timeout * 1000)}")
        cursor.close()
        sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL: a silent network
        if sock is not None and sock.family != socket.AF_UNIX and hasattr(
                socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                            int(deadlines.overdue_after(timeout) * 1000))

    return on_connect


def _pymysql_shared_tls(_dialect: Any, _record: Any, cargs: tuple[Any, ...],
                        cparams: dict[str, Any]) -> Any:
    """PyMySQL 1.2 negotiates TLS when the server offers it and, to do so, builds a new
    default SSL context, loading the system CA bundle, for every connection: about 0.25 s of
    CPU each, which during an outage (one failed connect per refresh) starves the exporter.
    Without TLS options in the URL, every connection shares one such context."""
    return _preferred_tls_class()(*cargs, **cparams)


@functools.cache
def _preferred_tls_class() -> type:
    import pymysql.connections

    class PreferredTls(pymysql.connections.Connection):  # type: ignore[misc]
        _shared: Any = None

        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if sslp != {}:  # explicit TLS options: PyMySQL's own handling
                return super()._create_ssl_ctx(sslp)
            if PreferredTls._shared is None:
                PreferredTls._shared = super()._create_ssl_ctx(sslp)
            return PreferredTls._shared

    return PreferredTls


def _sqlite_forget(dbapi_connection: Any, _record: Any) -> None:
    _sqlite_deadlines.pop(id(dbapi_connection), None)


def _sqlite_interrupt(dbapi_connection: Any, _record: Any) -> None:
    def over_time() -> int:
        deadline = _sqlite_deadlines.get(id(dbapi_connection))
        return 1 if deadline is not None and time.monotonic() > deadline else 0

    dbapi_connection.set_progress_handler(over_time, 10000)


def _sqlite_deadline(timeout: float) -> Any:
    def before(conn: Any, _cursor: Any, *_args: Any) -> None:
        raw = conn.connection.dbapi_connection
        _sqlite_deadlines[id(raw)] = time.monotonic() + timeout

    return before
