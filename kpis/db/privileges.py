"""Least privilege: what the connected database role could do beyond reading the mapped tables.

CareKPI needs SELECT on the mapped tables only (README "Security" has the SQL for a read-only
role). ``config validate`` and ``serve`` warn when the role is a superuser, can signal other
sessions, read (or write) the server's files, or can INSERT, UPDATE, DELETE or TRUNCATE a
mapped table; with ``--strict`` they refuse. SQLite has no roles: its file is opened read-only.
"""

from __future__ import annotations

import re
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
    """From ``SHOW GRANTS``, which lists the session's own grants and those of its enabled
    roles, nested ones included (information_schema shows the user's own grants only)."""
    grantee = str(conn.execute(sa.text(f"SELECT {_MY_GRANTEE}")).scalar_one())
    database = conn.execute(sa.text("SELECT DATABASE()")).scalar_one()
    grants = [g for (line,) in conn.execute(sa.text("SHOW GRANTS")) if (g := _grant(str(line)))]
    everywhere = [g for g in grants if g.database == "*"]
    found = [(grantee + _through(everywhere, privilege), what)
             for privilege, what in _MY_GLOBAL.items() if _holds(everywhere, privilege)]
    if _holds(everywhere, "SUPER"):
        return found[:1]  # a superuser can do everything below anyway
    for schema, table in tables:
        schema = schema or database
        applying = [g for g in grants if g.covers(schema, table)]
        writes = [p for p in ("INSERT", "UPDATE", "DELETE", "DROP") if _holds(applying, p)]
        if writes:
            through = _through(applying, *writes)
            found.append((grantee + through,
                          f"can {', '.join(writes)} mapped table {schema}.{table}"))
    return found


_GRANT = re.compile(r"^GRANT (?P<privileges>.+?) ON (?:(?:TABLE|FUNCTION|PROCEDURE) )?"
                    r"(?P<database>`(?:[^`]|``)*`|\*)\.(?P<table>`(?:[^`]|``)*`|\*) "
                    r"TO (?P<to>.+?)(?: IDENTIFIED .*| WITH .*)?$", re.DOTALL)
_ALIASES = {"CONNECTION_ADMIN": "CONNECTION ADMIN"}  # MySQL 8 spells MariaDB's with _


@dataclass(frozen=True)
class _Grant:
    privileges: frozenset[str]
    database: str  # a LIKE pattern, or * for every database
    table: str  # a name, or * for every table
    role: str | None  # the role it came through; None when granted to the user itself

    def covers(self, schema: str, table: str) -> bool:
        return (self.database == "*" or _like(schema, self.database)) and self.table in ("*", table)


def _grant(line: str) -> _Grant | None:
    found = _GRANT.match(line)
    if found is None:  # GRANT role TO user, SET DEFAULT ROLE, proxies
        return None
    listed = re.sub(r"\([^)]*\)", "", found["privileges"])  # column lists: SELECT (a, b)
    privileges = frozenset(_ALIASES.get(p.strip().upper(), p.strip().upper())
                           for p in listed.split(","))
    to = found["to"].strip()
    return _Grant(privileges, _unquote(found["database"]), _unquote(found["table"]),
                  None if "@" in to else _unquote(to))


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _like(value: str, pattern: str) -> bool:
    r"""SQL LIKE with backslash escapes, as grants match database names (my\_db, app%)."""
    regex = "".join(re.escape(part[1]) if part.startswith("\\") else
                    ".*" if part == "%" else "." if part == "_" else re.escape(part)
                    for part in re.findall(r"\\.|[%_]|[^\\%_]+", pattern))
    return re.fullmatch(regex, value) is not None


def _has(grant: _Grant, privilege: str) -> bool:
    return privilege in grant.privileges or "ALL PRIVILEGES" in grant.privileges


def _holds(grants: list[_Grant], privilege: str) -> bool:
    return any(_has(g, privilege) for g in grants)


def _through(grants: list[_Grant], *privileges: str) -> str:
    """`` (through role r)`` when a role, not the user itself, holds the privileges."""
    roles = sorted({g.role for g in grants if g.role is not None
                    and any(_has(g, p) for p in privileges)})
    return f" (through role {', '.join(roles)})" if roles else ""
