"""Refuses SQL in the mapping that could do more than read, parsed per dialect by sqlglot.

An entity query is one SELECT (WITH ... SELECT, sub-queries and UNION of SELECTs are fine)
without a locking clause (FOR UPDATE/SHARE, LOCK IN SHARE MODE), INTO, variables or
placeholders; a field expression is one expression without a sub-query. Every function called
must be on the read-only list of kpis.sql_functions, or named by the operator in
``sql.allow_functions``: an allowlist, so an unknown function is refused, not let through.

The database connection is read-only too (collectors' engines), but a read-only transaction
does not stop ``pg_terminate_backend`` or ``pg_sleep``; this check refuses them when the config
loads, with the function's name, before any connection is made.

The parser, sqlglot, is imported by the first check (kpis/sql_tree.py): a mapping of tables
and columns only never loads it, and the exporter is the lighter for it.
"""

from __future__ import annotations

from collections.abc import Collection

# The dialect sqlglot reads for each SQLAlchemy backend name.
DIALECTS = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql",
            "mariadb": "mysql", "sqlite": "sqlite"}


class RefusedSql(ValueError):
    """One line saying what is refused and why; it quotes no more than a function's name.
    ``where`` is the key under the entity: ("query",) or ("fields", name, "sql")."""

    where: tuple[str, ...] = ()


def check_entity(query: str | None, expressions: dict[str, str], backend: str,
                 allowed: Collection[str] = ()) -> None:
    """Every piece of SQL of one entity, read in the dialect of its source's backend."""
    pieces: list[tuple[tuple[str, ...], str, bool]] = [
        (("fields", field, "sql"), sql, False) for field, sql in expressions.items()]
    if query is not None:
        pieces.insert(0, (("query",), query, True))
    for where, sql, is_query in pieces:
        try:
            dialect = dialect_of(backend)
            (check_select if is_query else check_expression)(sql, dialect, allowed)
        except RefusedSql as exc:
            exc.where = where
            raise


def dialect_of(backend: str) -> str:
    """The sqlglot dialect for a SQLAlchemy backend name, or RefusedSql when there is none."""
    dialect = DIALECTS.get(backend)
    if dialect is None:
        raise RefusedSql(f"SQL in the mapping can be checked for PostgreSQL, MariaDB/MySQL and "
                         f"SQLite only, not {backend}: map tables and columns instead")
    return dialect


def check_select(sql: str, dialect: str, allowed: Collection[str] = ()) -> None:
    """An entity query: one read-only SELECT, refused with the reason otherwise."""
    from kpis import sql_tree

    sql_tree.check_select(sql, dialect, allowed)


def check_expression(sql: str, dialect: str, allowed: Collection[str] = ()) -> None:
    """A field expression (or a condition): one read-only expression without a sub-query."""
    from kpis import sql_tree

    sql_tree.check_expression(sql, dialect, allowed)


def tables(sql: str, dialect: str) -> set[tuple[str | None, str]]:
    """(schema, table) of every table an accepted entity query reads (CTE names left out)."""
    from kpis import sql_tree

    return sql_tree.tables(sql, dialect)
