"""Project errors. Each carries a one-line message that is safe to print: it names files, keys
and config values, never a value read from a patient database."""

from __future__ import annotations


class CareKPIError(Exception):
    """An error the CLI reports as one line and exit code 2."""

    exit_code = 2


class CatalogError(CareKPIError):
    """The shipped KPI catalog is inconsistent (a bug in CareKPI, not in the user's config)."""


class ConfigError(CareKPIError):
    """The user's config is wrong. The message reads ``file: dotted.key: what is wrong``."""

    def __init__(self, file: str, key: str, message: str) -> None:
        file, key, message = one_line(file), one_line(key), one_line(message)
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(f"{where}{message}")


class SourceError(CareKPIError):
    """A database could not be reached or refused a query; the message names the source."""


def one_line(text: str) -> str:
    """Control characters (a newline in a YAML key, say) escaped: every error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
