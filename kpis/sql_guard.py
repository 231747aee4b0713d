"""Refuses SQL in the mapping that could write: only a single SELECT (or WITH ... SELECT) as an
entity query, only an expression as a field. The database connection is read-only too; this
check makes the mistake visible when the config is validated, not at the first refresh."""

from __future__ import annotations

import re

_WRITES = re.compile(
    r"\b(insert|update|delete|merge|upsert|replace|drop|alter|create|truncate|grant|revoke|"
    r"copy|call|exec|execute|attach|detach|pragma|vacuum|lock|set|into|load_file|outfile|"
    r"dumpfile|pg_sleep|sleep|benchmark|dblink|lo_import|lo_export)\b",
    re.IGNORECASE,
)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/|#[^\n]*", re.DOTALL)


def _code(sql: str) -> str:
    """The SQL with string literals, quoted identifiers and comments blanked out."""
    return _STRINGS.sub("''", _COMMENTS.sub(" ", sql))


def check_select(sql: str) -> None:
    code = _code(sql).strip().rstrip(";").strip()
    if ";" in code:
        raise ValueError("only a single SELECT statement is allowed (found ';')")
    if not re.match(r"^(select|with)\b", code, re.IGNORECASE):
        raise ValueError("an entity query must be a SELECT (or WITH ... SELECT)")
    _no_writes(code)


def check_expression(sql: str) -> None:
    code = _code(sql)
    if ";" in code:
        raise ValueError("a field expression cannot contain ';'")
    if re.search(r"\b(select|with)\b", code, re.IGNORECASE):
        raise ValueError("a field expression cannot contain a sub-query; use an entity query")
    _no_writes(code)


def _no_writes(code: str) -> None:
    match = _WRITES.search(code)
    if match:
        keyword = match.group(1).upper()
        raise ValueError(f"SQL keyword {keyword!r} is not allowed: CareKPI only reads")
