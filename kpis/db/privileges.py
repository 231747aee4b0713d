"""Least privilege: what the connected database role could do beyond reading the mapped tables.

CareKPI needs SELECT on the mapped tables only (README "Security" has the SQL for a read-only
role). ``config validate`` and ``serve`` warn when the role is a superuser, can signal other
sessions, read (or write) the server's files, or can INSERT, UPDATE, DELETE or TRUNCATE a
mapped table; with ``--strict`` they refuse. SQLite has no roles: its file is opened read-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from kpis import sql_guard
from kpis.config import Config
from kpis.db.errors import scrub

_PG_ROLES = {"pg_signal_backend": "can signal other sessions (member of pg_signal_backend)",
             "pg_read_server_files": "can read the server's files (pg_read_server_files)",
             "pg_write_server_files": "can write the server's files (pg_write_server_files)",
             "pg_execute_server_program": "can run programs on the server "
                                          "(pg_execute_server_program)"}
_WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
_MY_GLOBAL = {"SUPER": "has the SUPER privilege (a superuser)",
              "CONNECTION ADMIN": "can kill other sessions (CONNECTION ADMIN)",
              "FILE": "can read and write the server's files (FILE privilege)"}
_MY_GRANTEE = ("CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
               "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')")


@dataclass(frozen=True)
class Risk:
    """One thing the role can do that CareKPI does not need, worded for an operator."""

    source: str
    role: str
    what: str

    def __str__(self) -> str:
        return f"source {self.source}: role {self.role} {self.what}"


def risks(config: Config, engines: dict[str, sa.Engine]) -> tuple[list[Risk], list[str]]:
    """The risks per source, and the sources whose privileges could not be read (why)."""
    found: list[Risk] = []
    unknown: list[str] = []
    for name, engine in engines.items():
        backend = engine.dialect.name
        if backend not in ("postgresql", "mysql", "mariadb"):
            continue
        tables = mapped_tables(config, name)
        try:
            with engine.connect() as conn:
                probe = _postgres if backend == "postgresql" else _mysql
                found.extend(Risk(name, role, what) for role, what in probe(conn, tables))
        except sa.exc.SQLAlchemyError as exc:
            unknown.append(f"source {name}: privileges not checked: {scrub(exc)}")
    return found, unknown


def mapped_tables(config: Config, source: str) -> list[tuple[str | None, str]]:
    """(schema, table) of every table the source's entities read, sorted, without repeats."""
    tables: set[tuple[str | None, str]] = set()
    url = config.sources[source].url
    for entity in config.entities.values():
        if entity.source != source:
            continue
        if entity.table is not None:
            tables.add((entity.db_schema, entity.table))
        elif entity.query is not None:
            dialect = sql_guard.dialect_of(make_url(url).get_backend_name())
            tables.update(sql_guard.tables(entity.query, dialect))
    return sorted(tables, key=lambda t: (t[0] or "", t[1]))


def _postgres(conn: sa.Connection, tables: list[tuple[str | None, str]]) -> list[tuple[str, str]]:
    role, superuser = conn.execute(sa.text(
        "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")).one()
    if superuser:
        return [(role, "is a superuser")]
    found = [(role, _PG_ROLES[member]) for (member,) in conn.execute(sa.text(
        "SELECT r.rolname FROM pg_roles r WHERE r.rolname = ANY(:names) "
        "AND pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY r.rolname"),
        {"names": list(_PG_ROLES)})]
    quote = conn.dialect.identifier_preparer.quote
    for schema, table in tables:
        name = f"{quote(schema)}.{quote(table)}" if schema else quote(table)
        checks = ", ".join(f"has_table_privilege(c, '{p}')" for p in _WRITES)
        row = conn.execute(sa.text(f"SELECT {checks} FROM (SELECT to_regclass(:t) AS c) x"),
                           {"t": name}).one()
        granted = [p for p, ok in zip(_WRITES, row, strict=True) if ok]
        if granted:
            found.append((role, f"can {', '.join(granted)} mapped table {name}"))
    return found


def _mysql(conn: sa.Connection, tables: list[tuple[str | None, str]]) -> list[tuple[str, str]]:
    grantee = str(conn.execute(sa.text(f"SELECT {_MY_GRANTEE}")).scalar_one())
    database = conn.execute(sa.text("SELECT DATABASE()")).scalar_one()
    global_ = {str(p) for (p,) in conn.execute(sa.text(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = :g"),
        {"g": grantee})}
    found = [(grantee, what) for privilege, what in _MY_GLOBAL.items() if privilege in global_]
    for schema, table in tables:
        schema = schema or database
        granted = {str(p) for (p,) in conn.execute(sa.text(
            "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
            "WHERE GRANTEE = :g AND :s LIKE TABLE_SCHEMA UNION "
            "SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES "
            "WHERE GRANTEE = :g AND TABLE_SCHEMA = :s AND TABLE_NAME = :t"),
            {"g": grantee, "s": schema, "t": table})} | global_
        writes = [p for p in ("INSERT", "UPDATE", "DELETE", "DROP") if p in granted]
        if writes:
            found.append((grantee, f"can {', '.join(writes)} mapped table {schema}.{table}"))
    return found
