"""The ``carekpi`` command line: thin click commands over the library.

The only module that wires the packages together. A project error prints one line to stderr
and exits 2; no traceback reaches the user.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from kpis import __version__, catalog
from kpis import config as config_module
from kpis.errors import CareKPIError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PORT = 9880
log = logging.getLogger("carekpi")


def reports_errors(func: F) -> F:
    """Turn project errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CareKPIError as exc:
            click.echo(f"carekpi: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _as_of(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time such as "
                                 "2026-03-01T00:00:00Z", param_hint="--as-of") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


config_option = click.option("--config", "config_path", required=True,
                             type=click.Path(dir_okay=False), help="Path to carekpi.yaml.")
log_option = click.option("--log-level", default="warning", show_default=True,
                          type=click.Choice(["debug", "info", "warning", "error"]))


HELP_OPTIONS = ["-h", "--help"]


@click.group(context_settings={"help_option_names": HELP_OPTIONS})
@click.version_option(__version__, prog_name="carekpi")
def main() -> None:
    """CareKPI: customer-care quality KPIs from your operational databases.

    \b
    Quick start:
      carekpi demo                      # synthetic data, metrics on :9880
      carekpi serve --config carekpi.yaml
    """


@main.command()
@config_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--web-config", type=click.Path(dir_okay=False),
              help="exporter-toolkit web-config.yml: TLS and basic auth for /metrics.")
@log_option
@reports_errors
def serve(config_path: str, port: int, bind: str, web_config: str | None, log_level: str) -> None:
    """Serve KPI metrics for your databases, refreshed in the background.

    \b
    Example:
      carekpi serve --config carekpi.yaml --port 9880
    """
    _logging(log_level)
    config = config_module.load(config_path)
    for note in _unchecked_sql(config):
        log.warning("%s: %s", config_path, note)
    _run_exporter(config, bind, port, web_config)


def _unchecked_sql(config: config_module.Config) -> list[str]:
    """The functions the operator let through the SQL guard (sql.allow_functions)."""
    return [f"sql.allow_functions: {name}() runs without CareKPI's read-only check (vetted by "
            "you)" for name in config.sql.allow_functions]


def _run_exporter(config: config_module.Config, bind: str, port: int,
                  web_config_path: str | None, banner: str = "") -> None:
    from collectors.service import Exporter, exit_process, tune_process
    from collectors.web import load_web_config

    web_config = load_web_config(web_config_path) if web_config_path else None
    tune_process()
    exporter = Exporter(config, extra_collectors=_check_collectors(config))
    server = exporter.start(bind, port, web_config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"{banner}carekpi {__version__}: metrics on {server.url}/metrics "
               "(Ctrl-C to stop)", err=True)
    stop.wait()
    exporter.stop()
    click.echo("carekpi: stopped", err=True)
    exit_process(0)


def _check_collectors(config: config_module.Config) -> list[Any]:
    """Scheduled data-quality checks, when the config asks for them (off by default)."""
    if not config.checks.get("schedule"):
        return []
    from checks.scheduled import ScheduledChecks

    return [ScheduledChecks(config)]


@main.command()
@config_option
@click.option("--once", is_flag=True, required=True, help="One evaluation, printed (required).")
@click.option("--as-of", "as_of", help="Evaluate at this time (ISO 8601); default: now.")
@click.option("--format", "fmt", type=click.Choice(["json", "prometheus"]), default="json",
              show_default=True)
@click.option("--kpi", "only", multiple=True, help="Only these KPI keys (repeatable).")
@log_option
@reports_errors
def collect(config_path: str, once: bool, as_of: str | None, fmt: str, only: tuple[str, ...],
            log_level: str) -> None:
    """Evaluate every KPI once and print the numbers.

    \b
    Example (the same numbers on every run):
      carekpi collect --once --config carekpi.yaml --as-of 2026-03-01T00:00:00Z
    """
    _logging(log_level)
    from collectors import evaluate
    from collectors.service import create_engines

    config = config_module.load(config_path)
    moment = _as_of(as_of)
    for key in only:
        if key not in catalog.by_key():
            raise click.BadParameter(f"unknown KPI {key!r}", param_hint="--kpi")
    from collectors.store import Store

    store = Store(config)
    engines = create_engines(config)
    try:
        results = evaluate.evaluate(config, engines, moment, only or None, store.caps)
    finally:
        for engine in engines.values():
            engine.dispose()
    if fmt == "json":
        from kpis.report import as_json

        click.echo(as_json(results, config, moment))
        return
    click.echo(_prometheus_text(store, results), nl=False)


def _prometheus_text(store: Any, results: list[Any]) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    from collectors.exposition import CareKpiCollector

    config = store.config
    for result in results:
        store.put([result], config.sources[result.source].refresh_interval.seconds
                  if result.source in config.sources else 0.0)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store))
    return generate_latest(registry).decode()


@main.group()
def kpis() -> None:
    """The KPI catalog."""


@kpis.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def kpis_list(as_json: bool) -> None:
    """List every KPI: id, key, kind, entity and default target."""
    items = catalog.load()
    if as_json:
        click.echo(json.dumps([k.model_dump(mode="json") for k in items], indent=2))
        return
    for k in items:
        target = f"{k.target.stat} {k.target.op} {k.target.value:g}" if k.target else "trend only"
        click.echo(f"{k.id:<3} {k.key:<26} {k.kind:<10} {k.entity:<18} {target}")


@kpis.command("show")
@click.argument("ref")
@reports_errors
def kpis_show(ref: str) -> None:
    """Show one KPI by id or key, e.g. `carekpi kpis show A1`."""
    try:
        k = catalog.get(ref)
    except KeyError:
        raise CareKPIError(f"unknown KPI {ref!r}; see `carekpi kpis list`") from None
    target = f"{k.target.stat} {k.target.op} {k.target.value:g}" if k.target else "trend only"
    click.echo(f"{k.id} {k.name} ({k.key})\n\n{k.definition}\n")
    click.echo(f"kind:            {k.kind}\nentity:          {k.entity}")
    click.echo(f"required fields: {', '.join(k.fields) or '-'}")
    if k.optional_fields or k.dimensions:
        click.echo(f"optional:        {', '.join((*k.optional_fields, *k.dimensions))}")
    click.echo(f"default target:  {target}\nsource:          KPIS.md {k.id}")


@main.group("config")
def config_group() -> None:
    """Check and show a carekpi.yaml."""


@config_group.command("validate")
@config_option
@click.option("--offline", is_flag=True, help="Only the static checks; no connection.")
@reports_errors
def config_validate(config_path: str, offline: bool) -> None:
    """Validate the file, then check every mapped table, column and code against the database.

    \b
    Example:
      carekpi config validate --config carekpi.yaml
    """
    config = config_module.load(config_path)
    click.echo(f"{config_path}: valid ({len(config.sources)} sources, "
               f"{len(config.entities)} entities)")
    for note in _unchecked_sql(config):
        click.echo(f"{config_path}: warning: {note}", err=True)
    if offline:
        return
    from collectors.service import create_engines
    from collectors.validate import check_live

    engines = create_engines(config)
    try:
        findings = check_live(config, engines)
    finally:
        for engine in engines.values():
            engine.dispose()
    for finding in findings:
        click.echo(f"{config_path}: {finding}", err=finding.level == "error")
    if any(f.level == "error" for f in findings):
        sys.exit(2)
    click.echo(f"{config_path}: every mapped table and column answered")


@config_group.command("show")
@config_option
@reports_errors
def config_show(config_path: str) -> None:
    """Print the resolved config with secrets masked."""
    import yaml

    data = config_module.masked(config_module.load(config_path))
    click.echo(yaml.safe_dump(data, sort_keys=False))


@main.command()
@click.option("--root", type=click.Path(file_okay=False), default=".", show_default=True,
              help="The checkout whose alerts/generated and dashboards/generated to rewrite.")
@reports_errors
def generate(root: str) -> None:
    """Rewrite the committed rules, their promtool tests and the dashboards from the catalog
    (default targets): run it after changing kpis/definitions."""
    from alerts import build as alerts_build
    from alerts import promtool_tests
    from dashboards import build as dashboards_build

    base = Path(root)
    written = [*alerts_build.write(None, base / "alerts" / "generated"),
               *promtool_tests.write_unit_tests(None, base / "alerts" / "tests"),
               *dashboards_build.write(None, base / "dashboards" / "generated")]
    for path in written:
        click.echo(str(path))


DEMO_REUSE_SECONDS = 3600


def _default_demo_url() -> str:
    import os

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "carekpi"
    return f"sqlite:///{cache / 'demo.db'}"


@main.command()
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--db", "url", help="SQLAlchemy URL to seed; default: a SQLite file in "
              "~/.cache/carekpi/demo.db. PostgreSQL and MariaDB URLs work too.")
@click.option("--incident", "incidents", multiple=True,
              help="Plant an incident (repeatable); see --list-incidents.")
@click.option("--list-incidents", is_flag=True, help="List the incidents and exit.")
@click.option("--seed-only", is_flag=True, help="Write the data (and --config-out), then exit.")
@click.option("--config-out", type=click.Path(dir_okay=False),
              help="Write the carekpi.yaml that maps the demo schema.")
@click.option("--refresh-interval", default="15s", show_default=True,
              help="How often the demo refreshes its KPIs.")
@click.option("--reseed", is_flag=True, help="Seed again even when the database is recent.")
@click.option("--no-checks", is_flag=True,
              help="Do not run the data-quality checks (by default hourly, first at start).")
@log_option
@reports_errors
def demo(port: int, bind: str, url: str | None, incidents: tuple[str, ...],
         list_incidents: bool, seed_only: bool, config_out: str | None,
         refresh_interval: str, reseed: bool, no_checks: bool, log_level: str) -> None:
    """Seed a database of realistic synthetic data and serve its KPIs.

    \b
    Examples:
      carekpi demo                                  # SQLite, http://127.0.0.1:9880/metrics
      carekpi demo --incident portal-backlog        # an inbox that stops being answered
      carekpi demo --seed-only --db postgresql+psycopg://postgres@127.0.0.1/demo \\
                   --config-out carekpi.yaml
    """
    import yaml

    from kpis import demo as demo_data
    from kpis.durations import parse as parse_duration

    _logging(log_level)
    if list_incidents:
        for name, description in demo_data.INCIDENTS.items():
            click.echo(f"{name:<18} {description}")
        return
    url = url or _default_demo_url()
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        _prepare_sqlite_folder(url)
    now = datetime.now(UTC)
    summary = None if reseed else demo_data.existing(url)
    if summary is None or sorted(summary.incidents) != sorted(incidents) or (
            now - summary.now).total_seconds() > DEMO_REUSE_SECONDS:
        click.echo("carekpi demo: seeding 90 days of synthetic data ...", err=True)
        summary = demo_data.seed(url, now=now, incidents=incidents)
    text = demo_data.config_yaml(url)
    if config_out:
        try:
            Path(config_out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CareKPIError(f"{config_out}: cannot write: {exc.strerror}") from None
        click.echo(f"carekpi demo: wrote {config_out}", err=True)
    if seed_only:
        return
    try:
        interval = parse_duration(refresh_interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--refresh-interval") from None
    data = yaml.safe_load(text)
    for source in data["sources"].values():
        source["refresh_interval"] = interval.seconds
    if not no_checks:
        data.setdefault("checks", {}).setdefault("schedule", "1h")
    config = config_module.parse(data, "demo carekpi.yaml")
    _run_exporter(config, bind, port, None, banner="carekpi demo: ")


def _prepare_sqlite_folder(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///").split("?")[0])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CareKPIError(f"{path.parent}: cannot create the demo folder: "
                           f"{exc.strerror}") from None


from alerts.commands import alerts_group  # noqa: E402
from checks.commands import checks_group  # noqa: E402
from collectors.deploy_commands import deploy_group  # noqa: E402
from dashboards.commands import dashboards_group  # noqa: E402

for _group in (alerts_group, dashboards_group, checks_group, deploy_group):
    # The same help options however the group is reached (click caches a command's help
    # option the first time it is built, so a group invoked on its own must agree).
    _group.context_settings.setdefault("help_option_names", HELP_OPTIONS)
    main.add_command(_group)
