"""``carekpi checks run``: data-quality checks from the command line (cron, CI).

Great Expectations and pandas are imported only inside the command, never at module import.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from kpis.checks_config import SUITES
from kpis.commandline import Group, fail
from kpis.config import Config


@click.group("checks", cls=Group)
def checks_group() -> None:
    """Data-quality checks (completeness, conformance, plausibility, freshness)."""


def _since(value: str | None) -> timedelta | None:
    from kpis.strict import duration as parse

    if value is None:
        return None
    try:
        duration = parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if duration.seconds <= 0:
        raise click.BadParameter("must be longer than zero", param_hint="--since")
    return timedelta(seconds=duration.seconds)


@checks_group.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The carekpi.yaml to read the mapping and the checks: section from.")
@click.option("--entity", help="Check only this entity (e.g. appointments).")
@click.option("--suite", type=click.Choice(SUITES), help="Run only this suite.")
@click.option("--since", "since_text", metavar="DURATION",
              help="Check only records whose main timestamp is in this recent window (24h).")
@click.option("--full", is_flag=True, help="Check every record (the default unless the "
              "config sets checks.since).")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "junit"]),
              default="text", show_default=True, help="What to print on standard output.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write checks.json, checks.junit.xml and checks.html here.")
@click.option("--strict", is_flag=True, help="Failed warnings fail the run too (exit 1).")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write Prometheus metrics here (node_exporter textfile collector).")
@click.option("--show-failing-keys", is_flag=True,
              help="List primary keys of failing records (keys only, never values).")
def run_command(config_path: str, entity: str | None, suite: str | None,
                since_text: str | None, full: bool, output_format: str,
                report_dir: Path | None, strict: bool, metrics_file: Path | None,
                show_failing_keys: bool) -> None:
    """Run the data-quality checks and exit 0 (passed), 1 (an error check failed) or 2.

    Exit 2 means the run could not happen (bad config, database unreachable) or a check could
    not be evaluated. Warnings alone exit 0 unless --strict.

    \b
    Example:
      carekpi checks run --config carekpi.yaml --since 24h --format junit \\
          --report-dir reports/ --metrics-file /var/lib/node_exporter/carekpi_checks.prom
    """
    if full and since_text:
        fail("--since and --full exclude each other")
    sys.exit(_run(config_path, entity, suite, _since(since_text), full, output_format,
                  report_dir, strict, metrics_file, show_failing_keys))


def scheduled_collectors(config: Config) -> list[Any]:
    """The exporter's extra collectors: scheduled checks, when the config asks for them (off
    by default)."""
    if config.checks.schedule is None:
        return []
    from checks.scheduled import ScheduledChecks

    return [ScheduledChecks(config)]


def _run(config_path: str, entity: str | None, suite: str | None, since: timedelta | None,
         full: bool, output_format: str, report_dir: Path | None, strict: bool,
         metrics_file: Path | None, show_failing_keys: bool) -> int:
    from checks import reports
    from checks.metrics import write_textfile
    from checks.results import exit_code
    from checks.run_info import RunInfo
    from checks.runner import run_suites
    from kpis.config import load

    config = load(config_path)
    if since is None and not full:
        default = config.checks.since
        since = timedelta(seconds=default.seconds) if default else None
    started = time.time()
    now = datetime.now(UTC)
    with _progress(output_format) as progress:
        results = run_suites(config, entity=entity, suite=suite, since=since, now=now,
                             show_failing_keys=show_failing_keys, progress=progress)
    finished = time.time()
    run = RunInfo.of(config, None if entity is None else [entity], now, finished - started,
                     since.total_seconds() if since else None)
    if output_format == "json":
        reports.write_json(results, sys.stdout, run, strict=strict)
    elif output_format == "junit":
        reports.write_junit(results, sys.stdout, run, strict=strict)
    else:
        reports.write_text(results, sys.stdout, strict=strict,
                           color=None if sys.stdout.isatty() else False)
    if report_dir is not None:
        reports.write_report_dir(results, report_dir, run, strict=strict)
    if metrics_file is not None:
        write_textfile(metrics_file, results, finished, finished - started)
    return exit_code(results, strict)


class _progress:
    """A rich progress bar on stderr when it is a terminal and the output is for people."""

    def __init__(self, output_format: str) -> None:
        self.enabled = output_format == "text" and sys.stderr.isatty()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.start()
        self.task = self.bar.add_task("checks", total=None)
        return self.update

    def update(self, entity: str, done: int, total: int) -> None:
        self.bar.update(self.task, total=total, completed=done,
                        description=f"checking {entity}" if entity else "done")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
