"""The reading of the mapping's SQL with sqlglot, per dialect: what kpis.sql_guard checks
(imported on the first check only; the rules are described there)."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError, TokenError

from kpis import sql_functions
from kpis.sql_guard import RefusedSql

_NAMES = {"postgres": "PostgreSQL", "mysql": "MariaDB/MySQL", "sqlite": "SQLite"}

# Nodes that write, lock, change the session or hide a statement sqlglot did not understand.
_REFUSED: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.DML, "{kind} writes"),
    (exp.DDL, "{kind} changes the schema"),
    (exp.Command, "{kind} is not a query"),
    (exp.Lock, "a locking clause (FOR UPDATE/SHARE, LOCK IN SHARE MODE) takes locks"),
    (exp.Into, "SELECT ... INTO writes"),
    (exp.Set, "SET changes the session"),
    (exp.Pragma, "PRAGMA changes the session"),
    (exp.Copy, "COPY reads or writes files"),
    (exp.PropertyEQ, "an assignment (:=) changes the session"),
    (exp.Parameter, "variables and parameters are not allowed"),
    (exp.SessionParameter, "session variables are not allowed"),
    (exp.Placeholder, "placeholders are not allowed"),
)
# PostgreSQL's object identifier types: casting a value to one looks the value up in the
# catalog by name, and the error for a name not found quotes the value (relation "<a row's
# value>" does not exist), in the SQLSTATE of a schema error that errors.describe shows.
_LOOKUP_TYPES = frozenset({
    "regclass", "regcollation", "regconfig", "regdictionary", "regnamespace", "regoper",
    "regoperator", "regproc", "regprocedure", "regrole", "regtype"})
# MySQL/MariaDB run the text of /*! ... */ and /*M! ... */ comments, which a parser skips.
_EXECUTABLE_COMMENT = re.compile(r"/\*\s*M?!")

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to Command" notes



def check_select(sql: str, dialect: str, allowed: Collection[str] = ()) -> None:
    """An entity query: one read-only SELECT, refused with the reason otherwise."""
    statement = _parse(sql, dialect)
    if not isinstance(statement, exp.Select | exp.SetOperation):
        raise RefusedSql(f"an entity query must be a SELECT (or WITH ... SELECT), "
                         f"not {_kind(statement)}")
    _check_tree(statement, sql, dialect, allowed)


def check_expression(sql: str, dialect: str, allowed: Collection[str] = ()) -> None:
    """A field expression (or a condition): one read-only expression without a sub-query."""
    if not sql.strip():
        raise RefusedSql("a field expression cannot be empty")
    text = f"SELECT {sql}"
    wrapper = _parse(text, dialect)
    clauses = [key for key, value in wrapper.args.items() if value and key != "expressions"]
    if (not isinstance(wrapper, exp.Select) or clauses or len(wrapper.expressions) != 1
            or any(isinstance(node, exp.Alias) for node in wrapper.expressions[0].walk())):
        raise RefusedSql("a field expression must be a single expression (no FROM, alias or "
                         "clause); use an entity query for more")
    if any(isinstance(node, exp.Query) for node in wrapper.expressions[0].walk()):
        raise RefusedSql("a field expression cannot contain a sub-query; use an entity query")
    _check_tree(wrapper.expressions[0], text, dialect, allowed)


def _parse(sql: str, dialect: str) -> exp.Expr:
    if dialect == "mysql" and _EXECUTABLE_COMMENT.search(sql):
        raise RefusedSql("MySQL executable comments (/*! ... */) are not allowed")
    if dialect == "mysql" and "\\" in sql:
        # sql_mode NO_BACKSLASH_ESCAPES changes where a string ends: what is read is unsure.
        raise RefusedSql("a backslash is read differently under MySQL's sql_mode "
                         "NO_BACKSLASH_ESCAPES; write the SQL without one")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as exc:
        raise RefusedSql(f"not valid {_NAMES[dialect]} SQL: {_first_line(exc)}") from None
    except RecursionError:
        raise RefusedSql("the SQL is nested too deeply") from None
    if len(statements) != 1:
        raise RefusedSql(f"only one statement is allowed (found {len(statements)}; a ';' "
                         "separates statements)")
    return statements[0]


def _check_tree(tree: exp.Expr, text: str, dialect: str, allowed: Collection[str]) -> None:
    vetted = {name.lower() for name in allowed}
    for node in tree.walk():
        for kind, reason in _REFUSED:
            if isinstance(node, kind):
                raise RefusedSql(f"{reason.format(kind=_kind(node))}: CareKPI only reads")
        if isinstance(node, exp.Alias) and isinstance(node.parent, exp.Paren):
            raise RefusedSql(f"{node.alias} after {node.this.sql()} inside parentheses is not "
                             "an expression")
        if isinstance(node, exp.Query) and not isinstance(
                node, exp.Select | exp.SetOperation | exp.Subquery):
            raise RefusedSql(f"only SELECTs are allowed inside a query, not {_kind(node)}")
        if isinstance(node, exp.DataType) and _type_name(node, dialect) in _LOOKUP_TYPES:
            raise RefusedSql(f"a cast to {_type_name(node, dialect)} looks a value up in the "
                             "catalog, and its error would quote the value: cast to text or a "
                             "number instead")
        if isinstance(node, exp.Func) and not _allowed(node, dialect, vetted):
            raise RefusedSql(f"function {function_name(node, text)}() is not on CareKPI's list of "
                             "read-only functions (a vetted function can be allowed with "
                             "sql.allow_functions)")


def function_name(node: exp.Func, text: str = "") -> str:
    """The name as written in text (qualified when it was), else sqlglot's name for the node."""
    start, end = node.meta.get("start"), node.meta.get("end")
    if isinstance(node, exp.Anonymous):
        name = node.name
    elif isinstance(start, int) and isinstance(end, int) and text[start:end + 1].strip():
        name = text[start:end + 1].strip()
    else:
        name = node.sql_name().lower()
    qualifier = _qualifier(node)
    return f"{qualifier}.{name}" if qualifier else name


def _allowed(node: exp.Func, dialect: str, vetted: set[str]) -> bool:
    if function_name(node).lower() in vetted:
        return True
    qualifier = _qualifier(node)
    if qualifier and qualifier.lower() not in sql_functions.SYSTEM_SCHEMAS.get(dialect, ()):
        return False
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in sql_functions.BY_NAME[dialect]
    return type(node).__name__ in sql_functions.KNOWN


def _qualifier(node: exp.Func) -> str:
    parent = node.parent
    if isinstance(parent, exp.Dot) and node.arg_key == "expression":
        return str(parent.this.sql())
    return ""


def _type_name(node: exp.DataType, dialect: str) -> str:
    """A type's own name, lower case: without schema, quotes or array brackets."""
    return node.sql(dialect).lower().rsplit(".", 1)[-1].strip('"').removesuffix("[]")


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return str(node.key).upper()


def _first_line(exc: SqlglotError) -> str:
    """sqlglot's message without the echoed SQL (it highlights the text with ANSI codes)."""
    if isinstance(exc, TokenError):
        return "cannot read it as tokens (an unclosed quote or comment?)"
    errors = getattr(exc, "errors", None)
    if errors:
        first = errors[0]
        return (f"{first.get('description', 'invalid')} at line {first.get('line')}, "
                f"column {first.get('col')}")
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def tables(sql: str, dialect: str) -> set[tuple[str | None, str]]:
    """(schema, table) of every table an accepted entity query reads (CTE names left out)."""
    statement = _parse(sql, dialect)
    ctes = {cte.alias_or_name for cte in statement.find_all(exp.CTE)}
    return {(table.db or None, table.name) for table in statement.find_all(exp.Table)
            if isinstance(table.this, exp.Identifier) and table.name
            and not (not table.db and table.name in ctes)}
