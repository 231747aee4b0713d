"""The demo database itself: created on a PostgreSQL or MariaDB server when it is missing.

``carekpi demo --db postgresql+psycopg://postgres@127.0.0.1/demo`` names a database that
usually does not exist yet. It is created when the server lets this user create databases;
otherwise the error says, in one line, which statement creates it.
"""

from __future__ import annotations

import sqlalchemy as sa

from kpis.errors import CareKPIError
from kpis.secrets import mask_url

# How each server says "no such database" when connecting to one.
_MISSING = {
    "postgresql": ("does not exist",),  # FATAL: database "demo" does not exist (3D000)
    "mysql": ("1049", "unknown database"),  # (1049, "Unknown database 'demo'")
    "mariadb": ("1049", "unknown database"),
}
# The database to connect to while creating another one.
_MAINTENANCE = {"postgresql": "postgres", "mysql": None, "mariadb": None}


def first_line(exc: BaseException) -> str:
    """The driver's own message, first line only (no SQL, no parameters)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines() or [type(orig).__name__]
    return lines[0][:200]


def is_missing(url: sa.URL, exc: BaseException) -> bool:
    """Whether connecting to ``url`` failed because its database does not exist."""
    needles = _MISSING.get(url.get_backend_name())
    if not needles or not url.database or not isinstance(exc, sa.exc.OperationalError):
        return False
    message = str(getattr(exc, "orig", None) or exc).lower()
    return url.database.lower() in message and any(n in message for n in needles)


def create(url: sa.URL) -> None:
    """CREATE DATABASE for ``url`` on its server, or a one-line CareKPIError saying how."""
    backend, name = url.get_backend_name(), url.database or ""
    server = url._replace(database=_MAINTENANCE.get(backend))  # set() ignores None
    engine = sa.create_engine(server, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    statement = f"CREATE DATABASE {engine.dialect.identifier_preparer.quote(name)}"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.SQLAlchemyError as exc:
        raise CareKPIError(
            f"cannot seed demo database {mask_url(url.render_as_string(hide_password=False))}: "
            f"the database does not exist and could not be created ({first_line(exc)}); "
            f"create it with `{statement}` as a user allowed to, or pass another --db"
        ) from None
    finally:
        engine.dispose()
