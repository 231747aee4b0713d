"""``${env:NAME}`` and ``${file:PATH}`` references in config strings, and masking for display."""

from __future__ import annotations

import os
import re
from pathlib import Path

_REF = re.compile(r"\$\{(env|file):([^}]+)\}")


class SecretError(ValueError):
    pass


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
            raise SecretError(f"cannot read secret file {path}: {exc}") from None

    return _REF.sub(replace, text)


def has_reference(text: str) -> bool:
    return bool(_REF.search(text))


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ***, safe for logs and errors."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
