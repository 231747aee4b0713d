"""What every ``carekpi`` command shares: the one error handler, the common options, logging.

Each package defines its own commands with :class:`Group` (``collectors.commands``,
``checks.commands``, ``dashboards.commands``, ``alerts.commands``, ``kpis.commands``);
``kpis.cli`` only registers them. Whatever goes wrong in any command ends the same way: one
line ``carekpi: <what is wrong>`` on stderr and exit code 2, never a traceback (messages of
unexpected errors are withheld: a driver or library may quote a row value in them).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from kpis.errors import CareKPIError, one_line

HELP_OPTIONS = ["-h", "--help"]
log = logging.getLogger("carekpi")


def fail(message: str, exit_code: int = 2) -> NoReturn:
    """Print ``carekpi: message`` on one line of stderr and exit (2 unless told otherwise)."""
    click.echo(f"carekpi: {one_line(message)}", err=True)
    sys.exit(exit_code)


def report(exc: BaseException) -> NoReturn:
    """The one error handler: any exception of a command as one line and an exit code."""
    if isinstance(exc, BrokenPipeError):  # the reader stopped reading (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second one at exit
        sys.exit(0)
    if isinstance(exc, CareKPIError):
        fail(str(exc), exc.exit_code)
    if isinstance(exc, click.UsageError):
        fail(exc.format_message(), exc.exit_code)
    if isinstance(exc, OSError) and exc.filename is not None:
        fail(f"{exc.filename}: {exc.strerror or type(exc).__name__}")
    fail(f"unexpected {type(exc).__name__} (details withheld: they may quote database values;"
         " CAREKPI_DEBUG=1 shows the traceback)")


class Group(click.Group):
    """A command group whose commands (and sub-groups) all report errors through :func:`report`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {}).setdefault("help_option_names", HELP_OPTIONS)
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except click.ClickException as exc:
            if not isinstance(exc, click.UsageError):
                raise
            report(exc)
        except Exception as exc:
            if os.environ.get("CAREKPI_DEBUG") == "1":
                raise
            report(exc)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def instant(value: str) -> datetime:
    """An ISO 8601 time or date, UTC when it gives no offset (ValueError otherwise)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_of(value: str | None) -> datetime:
    """``--as-of``: an ISO 8601 time (UTC when no offset is given); default now."""
    if value is None:
        return datetime.now(UTC)
    try:
        return instant(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as "
                                 "2026-03-01T00:00:00Z", param_hint="--as-of") from None


NO_CONFIG = ("missing --config carekpi.yaml, the file that maps your database to the KPIs: "
             "write a worked example with `carekpi demo --seed-only --config-out carekpi.yaml`, "
             "or follow README.md, section \"Point it at your database\"")


class ConfigOption(click.Option):
    """``--config``, required; without it, the error says where a config comes from."""

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        if self.value_is_missing(value) and not ctx.resilient_parsing:
            raise click.UsageError(NO_CONFIG, ctx)
        return super().process_value(ctx, value)


config_option = click.option("--config", "config_path", cls=ConfigOption, required=True,
                             type=click.Path(dir_okay=False), help="Path to carekpi.yaml.")
log_option = click.option("--log-level", default="warning", show_default=True,
                          type=click.Choice(["debug", "info", "warning", "error"]))
