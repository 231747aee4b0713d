"""The collectors' commands: ``serve``, ``collect``, ``demo`` and ``config validate``.

Scheduled data-quality checks run inside the exporter as extra Prometheus collectors; this
package cannot import ``checks`` (the import contracts keep them independent), so ``kpis.cli``
hands in a factory for them (:data:`ExtraCollectors`).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kpis import __version__, catalog
from kpis import config as config_module
from kpis.commandline import as_of, config_option, log, log_option, setup_logging
from kpis.demo.world import HISTORY_DAYS
from kpis.errors import CareKPIError
from kpis.sources import usual_driver

DEFAULT_PORT = 9880
DEMO_REUSE_SECONDS = 3600
ExtraCollectors = Callable[[config_module.Config], list[Any]]
shard_option = click.option(
    "--shard", metavar="I/N", help="Serve shard I of N of the refresh units (README: Running at "
    "scale); overrides the config's shard.")


def _load(config_path: str, shard: str | None) -> config_module.Config:
    """The config, with ``--shard`` (when given) in place of its own shard."""
    config = config_module.load(config_path)
    if shard is None:
        return config
    from kpis.sharding import Shard

    return config.model_copy(update={"shard": Shard.parse(shard)})


def commands(extra_collectors: ExtraCollectors) -> list[click.Command]:
    """``serve``, ``collect`` and ``demo``; the exporter also registers ``extra_collectors``."""

    @click.command()
    @config_option
    @click.option("--port", default=DEFAULT_PORT, show_default=True,
                  type=click.IntRange(0, 65535))
    @click.option("--bind", default="0.0.0.0", show_default=True, help="Address to listen on.")
    @click.option("--web-config", type=click.Path(dir_okay=False),
                  help="exporter-toolkit web-config.yml: TLS and basic auth for /metrics.")
    @strict_option
    @shard_option
    @log_option
    def serve(config_path: str, port: int, bind: str, web_config: str | None, strict: bool,
              shard: str | None, log_level: str) -> None:
        """Serve KPI metrics for your databases, refreshed in the background.

        \b
        Example:
          carekpi serve --config carekpi.yaml --port 9880
        """
        setup_logging(log_level)
        config = _load(config_path, shard)
        for note in _unchecked_sql(config):
            log.warning("%s: %s", config_path, note)
        if strict:
            _refuse_risks(config_path, config)
        else:  # in the background: a slow database does not hold up the start
            threading.Thread(target=_log_risks, args=(config_path, config), daemon=True,
                             name="carekpi-privileges").start()
        # Sharded, shard 1 alone runs the scheduled checks, so their series exist once.
        extra = [] if config.shard and config.shard.index != 1 else extra_collectors(config)
        run_exporter(config, bind, port, web_config, extra)

    @click.command()
    @click.option("--port", default=DEFAULT_PORT, show_default=True,
                  type=click.IntRange(0, 65535))
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
    @click.option("--days", default=HISTORY_DAYS, show_default=True, type=click.IntRange(7, 366),
                  help="Days of history to generate (a week seeds in seconds).")
    @click.option("--no-checks", is_flag=True,
                  help="Do not run the data-quality checks (by default hourly, first at start).")
    @log_option
    def demo(port: int, bind: str, url: str | None, incidents: tuple[str, ...],
             list_incidents: bool, seed_only: bool, config_out: str | None,
             refresh_interval: str, reseed: bool, days: int, no_checks: bool,
             log_level: str) -> None:
        """Seed a database of realistic synthetic data and serve its KPIs.

        \b
        Examples:
          carekpi demo                                  # SQLite, http://127.0.0.1:9880/metrics
          carekpi demo --incident portal-backlog        # an inbox that stops being answered
          carekpi demo --seed-only --db postgresql+psycopg://postgres@127.0.0.1/demo \\
                       --config-out carekpi.yaml
        """
        setup_logging(log_level)
        config = _demo_config(url, incidents, list_incidents, seed_only, config_out,
                              refresh_interval, reseed, days, no_checks)
        if config is not None:
            run_exporter(config, bind, port, None, extra_collectors(config),
                         banner="carekpi demo: ")

    return [serve, collect, demo]


@click.command()
@config_option
@click.option("--once", is_flag=True, hidden=True,
              help="Accepted for old scripts: collect always evaluates once.")
@click.option("--as-of", "as_of_text", help="Evaluate at this time (ISO 8601); default: now.")
@click.option("--format", "fmt", type=click.Choice(["json", "prometheus"]), default="json",
              show_default=True)
@click.option("--kpi", "only", multiple=True,
              help="Only these KPIs, by key or id (no_show, A1; repeatable).")
@click.option("--fail-on-breach", is_flag=True,
              help="Exit 1 when a KPI misses its target (cells under the minimum volume aside).")
@shard_option
@log_option
def collect(config_path: str, once: bool, as_of_text: str | None, fmt: str,
            only: tuple[str, ...], fail_on_breach: bool, shard: str | None,
            log_level: str) -> None:
    """Evaluate every KPI once and print the numbers.

    \b
    Exit codes: 0 every KPI asked for was evaluated; 1 a KPI misses its target (only with
    --fail-on-breach); 2 a KPI could not be evaluated (database or query error, or a KPI
    asked for with --kpi is unavailable), or a bad config or option.

    \b
    Example (the same numbers on every run):
      carekpi collect --config carekpi.yaml --as-of 2026-03-01T00:00:00Z
    """
    setup_logging(log_level)
    from collectors import evaluate
    from collectors.store import Store
    from kpis.db import engines
    from kpis.report import as_data

    config = _load(config_path, shard)
    moment = as_of(as_of_text)
    keys = [_kpi_key(ref) for ref in only]
    store = Store(config)
    with engines.opened(config) as opened:
        results = evaluate.evaluate(config, opened, moment, keys or None, store.caps)
    if keys:
        results = [r for r in results if r.kpi.key in keys]
    if fmt == "json":
        from kpis.report import as_json

        click.echo(as_json(results, config, moment))
    else:
        click.echo(prometheus_text(store, results, frozenset(keys) if keys else None), nl=False)
    entries = as_data(results, config, moment)["kpis"]
    failed = [e["id"] for e in entries if e["status"] == "error"
              or (keys and e["status"] == "unavailable")]
    if failed:
        click.echo(f"carekpi: not evaluated: {', '.join(failed)} (see status and reason)",
                   err=True)
        sys.exit(2)
    if fail_on_breach and any(e.get("breaches") for e in entries):
        sys.exit(1)


def _kpi_key(ref: str) -> str:
    """A KPI key from a key (no_show) or an id (A1); a typo lists the valid ones."""
    try:
        return catalog.get(ref).key
    except KeyError:
        valid = ", ".join(f"{k.id}/{k.key}" for k in catalog.load())
        raise click.BadParameter(f"unknown KPI {ref!r}; one of {valid}",
                                 param_hint="--kpi") from None


strict_option = click.option(
    "--strict", is_flag=True,
    help="Refuse (exit 2) when the database role can do more than read the mapped tables.")


@click.command("validate")
@config_option
@click.option("--offline", is_flag=True, help="Only the static checks; no connection.")
@strict_option
def config_validate(config_path: str, offline: bool, strict: bool) -> None:
    """Validate the file, then check every mapped table, column and code against the database.

    \b
    Example:
      carekpi config validate --config carekpi.yaml
    """
    config = config_module.load(config_path)
    if offline:
        _valid(config_path, config)
        return
    from collectors.validate import check_live, unreachable
    from kpis.db import engines, privileges

    with engines.opened(config) as opened:
        down = unreachable(config, opened)
        if down:  # one line for the whole file, not one per entity
            reasons = [why if len(config.sources) == 1 else f"source {name}: {why}"
                       for name, why in down.items()]
            raise CareKPIError(f"{config_path}: valid file; database unreachable: "
                               f"{'; '.join(reasons)}")
        findings = check_live(config, opened)
        risks, unknown = privileges.risks(config, opened)
    _valid(config_path, config)
    for finding in findings:
        click.echo(f"{config_path}: {finding}", err=finding.level == "error")
    for line in [*map(_risk_line, risks), *unknown]:
        click.echo(f"{config_path}: {'error' if strict else 'WARNING'}: {line}", err=True)
    if any(f.level == "error" for f in findings) or (strict and (risks or unknown)):
        sys.exit(2)
    click.echo(f"{config_path}: every mapped table and column answered")


def _risk_line(risk: Any) -> str:
    return f"{risk}: CareKPI needs SELECT on the mapped tables only (README: Security)"


def _risks(config: config_module.Config) -> tuple[list[Any], list[str]]:
    """What the configured roles may do beyond reading (and what could not be read)."""
    from kpis.db import engines, privileges

    with engines.opened(config) as opened:
        return privileges.risks(config, opened)


def _log_risks(config_path: str, config: config_module.Config) -> None:
    risks, unknown = _risks(config)
    for line in [*map(_risk_line, risks), *unknown]:
        log.warning("%s: %s", config_path, line)


def _refuse_risks(config_path: str, config: config_module.Config) -> None:
    """serve --strict: one line naming every risk (or why privileges could not be read)."""
    risks, unknown = _risks(config)
    if risks or unknown:
        raise CareKPIError(f"{config_path}: --strict: "
                           + "; ".join([*map(str, risks), *unknown])
                           + " (CareKPI needs SELECT on the mapped tables only)")


def _unchecked_sql(config: config_module.Config) -> list[str]:
    """The functions the operator let through the SQL guard (sql.allow_functions)."""
    return [f"sql.allow_functions: {name}() runs without CareKPI's read-only check (vetted by "
            "you)" for name in config.sql.allow_functions]


def _valid(config_path: str, config: config_module.Config) -> None:
    click.echo(f"{config_path}: file valid ({len(config.sources)} sources, "
               f"{len(config.entities)} entities)")
    for note in _unchecked_sql(config):
        click.echo(f"{config_path}: warning: {note}", err=True)


def prometheus_text(store: Any, results: list[Any], only: frozenset[str] | None = None) -> str:
    """The exposition of one evaluation, as ``serve`` would render it."""
    from prometheus_client import CollectorRegistry, generate_latest

    from collectors.exposition import CareKpiCollector

    config = store.config
    for result in results:
        store.put([result], config.sources[result.source].refresh_interval.seconds
                  if result.source in config.sources else 0.0)
    registry = CollectorRegistry()
    registry.register(CareKpiCollector(store, only))
    return generate_latest(registry).decode()


def run_exporter(config: config_module.Config, bind: str, port: int,
                 web_config_path: str | None, extra_collectors: list[Any],
                 banner: str = "") -> None:
    """Serve until SIGINT or SIGTERM."""
    from collectors.service import Exporter, exit_process, tune_process
    from collectors.web import load_web_config

    web_config = load_web_config(web_config_path) if web_config_path else None
    tune_process()
    exporter = Exporter(config, extra_collectors=extra_collectors)
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


def _default_demo_url() -> str:
    import os

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "carekpi"
    return f"sqlite:///{cache / 'demo.db'}"


def _demo_config(url: str | None, incidents: tuple[str, ...], list_incidents: bool,
                 seed_only: bool, config_out: str | None, refresh_interval: str, reseed: bool,
                 days: int, no_checks: bool) -> config_module.Config | None:
    """Seed (or reuse) the demo database; the config to serve, or None when done."""
    import yaml

    from kpis import demo as demo_data
    from kpis.demo.world import FUTURE_DAYS
    from kpis.durations import parse as parse_duration

    if list_incidents:
        for name, description in demo_data.INCIDENTS.items():
            click.echo(f"{name:<18} {description}")
        return None
    url = usual_driver(url or _default_demo_url())  # postgres:// and mysql:// as in a config
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        _prepare_sqlite_folder(url)
    now = datetime.now(UTC)
    summary = None if reseed else demo_data.existing(url)
    if summary is None or sorted(summary.incidents) != sorted(incidents) or (
            now - summary.now).total_seconds() > DEMO_REUSE_SECONDS or summary.days != days:
        click.echo(f"carekpi demo: seeding {days} days of synthetic data (and "
                   f"{FUTURE_DAYS} days of bookings ahead) ...", err=True)
        summary = demo_data.seed(url, now=now, incidents=incidents, days=days)
    text = demo_data.config_yaml(url)
    if config_out:
        try:
            Path(config_out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CareKPIError(f"{config_out}: cannot write: {exc.strerror}") from None
        click.echo(f"carekpi demo: wrote {config_out}", err=True)
    if seed_only:
        return None
    try:
        interval = parse_duration(refresh_interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--refresh-interval") from None
    data = yaml.safe_load(text)
    for source in data["sources"].values():
        source["refresh_interval"] = interval.seconds
    if not no_checks:
        data.setdefault("checks", {}).setdefault("schedule", "1h")
    return config_module.parse(data, "demo carekpi.yaml")


def _prepare_sqlite_folder(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///").split("?")[0])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CareKPIError(f"{path.parent}: cannot create the demo folder: "
                           f"{exc.strerror}") from None
