"""Client-side deadlines: no database call waits longer than its deadline, whatever the server.

The server-side statement timeout cancels a slow query, but it cannot fire on a server that
does not run at all (a stopped process, a hung host, a network black hole): the kernel keeps
acknowledging the connection and the driver waits for an answer forever. Here every pooled
connection, while checked out, carries a deadline: ``query_timeout`` plus ``GRACE`` from
each statement's start (``connect_timeout`` plus ``GRACE`` for the liveness ping at
checkout). One watchdog thread for the whole process shuts down the socket of a connection
whose deadline passed: the blocked driver call returns at once with a disconnection error,
SQLAlchemy discards the connection (and the pool's other connections, which are as stale),
and the refresh fails instead of hanging. ``abort_in_flight`` does the same at once for every
checked-out connection of an engine (the exporter's stop).

Connecting is bounded by the drivers themselves (libpq ``connect_timeout``, PyMySQL
``connect_timeout``), and a silent network by TCP keepalives and ``TCP_USER_TIMEOUT``
(set where the engines are made).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["GRACE", "abort_in_flight", "install", "overdue_after"]

log = logging.getLogger("carekpi.deadlines")

GRACE = 2.0  # seconds on top of the server-side statement timeout before the client gives up


def overdue_after(query_timeout: float) -> float:
    """Seconds after which a statement (and so a refresh) is given up by the client."""
    return query_timeout + GRACE


class _Watchdog:
    """Deadlines of checked-out connections; one daemon thread acts on the passed ones."""

    def __init__(self) -> None:
        # id(DBAPI connection) -> (monotonic deadline, id(engine), abort)
        self._armed: dict[int, tuple[float, int, Callable[[], None]]] = {}
        self._aborted: set[int] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, key: int, seconds: float, engine: int, abort: Callable[[], None]) -> None:
        with self._wake:
            self._armed[key] = (time.monotonic() + seconds, engine, abort)
            self._aborted.discard(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="carekpi-deadlines")
                self._thread.start()
            self._wake.notify()

    def disarm(self, key: int) -> bool:
        """Forget the connection's deadline; True when the watchdog had cut it."""
        with self._wake:
            self._armed.pop(key, None)
            if key in self._aborted:
                self._aborted.discard(key)
                return True
            return False

    def abort_engine(self, engine: int) -> int:
        with self._wake:
            due = [key for key, (_, owner, _) in self._armed.items() if owner == engine]
            aborts = [self._take(key) for key in due]
        for abort in aborts:
            _quietly(abort)
        return len(aborts)

    def _take(self, key: int) -> Callable[[], None]:
        _, _, abort = self._armed.pop(key)
        self._aborted.add(key)
        return abort

    def _loop(self) -> None:
        while True:
            with self._wake:
                if not self._armed:  # nothing to watch: end, arm() starts a new thread
                    self._wake.wait(1.0)
                    if not self._armed:
                        self._thread = None
                        return
                now = time.monotonic()
                due = [key for key, (deadline, _, _) in self._armed.items() if deadline <= now]
                aborts = [self._take(key) for key in due]
                if not aborts:
                    nearest = min((d for d, _, _ in self._armed.values()), default=now + 1)
                    self._wake.wait(max(nearest - now, 0.01))
                    continue
            for abort in aborts:
                log.warning("a database call passed its client-side deadline; "
                            "dropping its connection")
                _quietly(abort)


_WATCHDOG = _Watchdog()


def _quietly(abort: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        abort()


def _shutdown_socket(dbapi_connection: Any) -> Callable[[], None]:
    """How to cut the connection's socket from another thread (psycopg, PyMySQL)."""

    def abort() -> None:
        pgconn = getattr(dbapi_connection, "pgconn", None)
        if pgconn is not None:  # psycopg 3: libpq owns the socket; shut down a duplicate
            with socket.socket(fileno=os.dup(pgconn.socket)) as dup:
                dup.shutdown(socket.SHUT_RDWR)
            return
        sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    return abort


class _OneLine(logging.Filter):
    """SQLAlchemy's pool logs a failed reset (a rollback on a connection cut by a deadline)
    with a traceback: keep one line, the exception's class, no driver text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {type(record.exc_info[1]).__name__}"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def install(engine: sa.Engine, query_timeout: float, connect_timeout: float) -> None:
    """Arm a deadline on each checked-out connection of a server engine (not SQLite).

    Replaces ``pool_pre_ping``: the ping runs under its own, short deadline, and a ping that
    fails invalidates the pool, as SQLAlchemy's pre-ping does.
    """
    pool_log = logging.getLogger(f"sqlalchemy.pool.impl.{type(engine.pool).__name__}")
    if not any(isinstance(f, _OneLine) for f in pool_log.filters):
        pool_log.addFilter(_OneLine())
    owner = id(engine)
    statement = overdue_after(query_timeout)
    ping = connect_timeout + GRACE
    dialect = engine.dialect

    def arm(dbapi_connection: Any, seconds: float) -> None:
        _WATCHDOG.arm(id(dbapi_connection), seconds, owner, _shutdown_socket(dbapi_connection))

    @event.listens_for(engine.pool, "connect")
    def fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info["carekpi_fresh"] = True

    @event.listens_for(engine.pool, "checkout")
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop("carekpi_fresh", False):
            arm(dbapi_connection, statement)
            return
        arm(dbapi_connection, ping)
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            cut = _WATCHDOG.disarm(id(dbapi_connection))
            lost = isinstance(exc, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
                exc, dbapi_connection, None)
            if cut or lost:
                raise sa.exc.InvalidatePoolError() from exc  # stale: reconnect, as pre-ping
            raise
        if _WATCHDOG.disarm(id(dbapi_connection)):
            raise sa.exc.InvalidatePoolError()
        arm(dbapi_connection, statement)

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: sa.Connection, *_args: Any) -> None:
        arm(conn.connection.dbapi_connection, statement)

    @event.listens_for(engine.pool, "checkin")
    def checkin(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            _WATCHDOG.disarm(id(dbapi_connection))

    @event.listens_for(engine.pool, "close")
    def close(dbapi_connection: Any, _record: Any) -> None:
        _WATCHDOG.disarm(id(dbapi_connection))


def abort_in_flight(engine: sa.Engine) -> int:
    """Cut every checked-out connection of ``engine`` now (a stopping exporter); how many."""
    return _WATCHDOG.abort_engine(id(engine))
