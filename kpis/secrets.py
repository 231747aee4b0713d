"""``${env:NAME}`` and ``${file:PATH}`` references in config strings, and masking for display.

A value that came from a reference is never echoed: errors about it name the reference
(:func:`redact`), ``config show`` prints the reference (:func:`with_references`), and every
database URL that is printed goes through :func:`mask_url` first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

_REF = re.compile(r"\$\{(env|file):([^}]+)\}")
# Names of query parameters (and libpq keywords) that carry a credential: password, passwd,
# pwd, sslpassword, sslkey, passfile, secrets, tokens.
_NAMES = "pass|pwd|secret|token|ssl_?key|credential"
_SECRET_NAME = re.compile(f"(?i){_NAMES}")
# libpq's "key=value key='quoted value'" form, which is not a URL.
_SECRET_KEYWORD = re.compile(
    rf"(?i)(^|\s)([\w.-]*(?:{_NAMES})[\w.-]*\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


class SecretError(ValueError):
    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


def resolve(text: str, base: Path) -> str:
    """Replace every reference in text; a missing variable or file is a SecretError."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            if name not in os.environ:
                raise SecretError(f"environment variable {name} is not set")
            return os.environ[name]
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
        except ValueError as exc:  # a NUL in the path, bytes that are not UTF-8
            kind = "not UTF-8 text" if isinstance(exc, UnicodeError) else "not a valid path"
            raise SecretError(f"cannot read secret file {name!r}: {kind}") from None

    return _REF.sub(replace, text)


def resolve_tree(node: Any, base: Path, references: dict[str, str],
                 loc: tuple[str, ...] = ()) -> Any:
    """The document with every reference resolved; ``references`` gets dotted key -> the
    original text of each string that held one. A SecretError carries the key."""
    if isinstance(node, dict):
        return {k: resolve_tree(v, base, references, (*loc, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_tree(v, base, references, (*loc, str(i))) for i, v in enumerate(node)]
    if isinstance(node, str) and has_reference(node):
        try:
            resolved = resolve(node, base)
        except SecretError as exc:
            raise SecretError(str(exc), loc) from None
        references[".".join(loc)] = node
        return resolved
    return node


def has_reference(text: str) -> bool:
    return bool(_REF.search(text))


def references(text: str) -> list[tuple[str, str]]:
    """(kind, name) of each ``${env:NAME}`` and ``${file:PATH}`` in text."""
    return [(kind, name.strip()) for kind, name in _REF.findall(text)]


def redact(key: str, message: str, references: dict[str, str]) -> str:
    """An error message about a value that came from a reference: the reference, never the
    value (the message is cut at its first quote, where validators quote the value)."""
    origin = next((text for where, text in references.items()
                   if key == where or key.startswith(f"{where}.")), None)
    if origin is None:
        return message
    cut = min((i for i in (message.find("'"), message.find('"')) if i >= 0), default=-1)
    kept = (message[:cut] if cut >= 0 else message).rstrip(" :(,")
    return f"{kept} (the value of {origin}, not shown)"


def with_references(data: dict[str, Any], references: dict[str, str]) -> dict[str, Any]:
    """Plain config data with each referenced value shown as its reference (``config show``)."""
    for where, text in references.items():
        node: Any = data
        *parents, last = where.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part, {})
        if isinstance(node, dict) and last in node:
            node[last] = text
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = text
    return data


def mask_url(url: str) -> str:
    """A database URL with every credential replaced by ***, safe for logs and errors: the
    userinfo password (up to the last ``@``, so an unencoded ``@`` in it is masked too), query
    parameters such as password, passwd, pwd, sslpassword, sslkey (read as SQLAlchemy reads
    them), and libpq's ``password=...`` keywords (quoted values too)."""
    url = _SECRET_KEYWORD.sub(r"\1\2***", url)
    scheme = url.find("://")
    if scheme < 0:
        return url
    if not url[scheme + 3:].startswith("/"):
        rest = url[scheme + 3:]
        at = rest.rfind("@")
        colon = rest.find(":", 0, at) if at >= 0 else -1
        if colon >= 0:
            url = f"{url[:scheme + 3]}{rest[:colon]}:***{rest[at:]}"
    head, mark, query = url.partition("?")
    if not mark:
        return url
    # As SQLAlchemy reads the query: split on & only, each name percent-decoded (%70assword
    # is password), each value whole up to the next & (a ; or a space belongs to it).
    return f"{head}?" + "&".join(
        f"{name}=***" if eq and _SECRET_NAME.search(unquote_plus(name)) else f"{name}{eq}{value}"
        for name, eq, value in (part.partition("=") for part in query.split("&")))


def has_credential(url: str) -> bool:
    """Whether a URL holds a credential in any form :func:`mask_url` masks (a literal one: a
    ``${...}`` reference is not resolved here)."""
    return mask_url(url) != url
