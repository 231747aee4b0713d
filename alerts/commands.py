"""``carekpi alerts``: build the Prometheus rule files and their promtool unit tests."""

from __future__ import annotations

from pathlib import Path

import click

from alerts.health import DEFAULT_JOB
from kpis.commandline import Group
from kpis.generated_files import write_texts
from kpis.series import RUNBOOK_URL


@click.group("alerts", cls=Group)
def alerts_group() -> None:
    """Prometheus recording and alerting rules built from the KPI catalog and targets."""


def _plain_job(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Prometheus expands an alert's labels as templates: ``{{`` in the job would become
    something else, and the alerts would no longer carry the job they inhibit by."""
    if "{{" in value:
        raise click.BadParameter("'{{' would be expanded by Prometheus' rule templating; "
                                 "use the job name as Prometheus scrapes it")
    return value


@alerts_group.command("build")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="carekpi.yaml with targets, clinic targets, windows, calendar.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for recording.yaml and alerts.yaml (e.g. alerts/generated).")
@click.option("--tests-out", type=click.Path(file_okay=False, path_type=Path),
              help="Also write promtool unit tests here (they refer to --out relatively).")
@click.option("--job", default=DEFAULT_JOB, show_default=True, callback=_plain_job,
              help="Prometheus scrape job of the exporter (for CareKPIExporterAbsent).")
@click.option("--runbook-url", default=RUNBOOK_URL, show_default=True,
              help="Base URL of your copy of the runbook; alerts link to <url>#<alert>.")
@click.option("--format", "fmt", type=click.Choice(["files", "prometheus-operator"]),
              default="files", show_default=True,
              help="Plain rule files, or PrometheusRule resources for the Prometheus Operator.")
@click.option("--namespace", help="With prometheus-operator: the resources' namespace.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="With prometheus-operator: a label the operator's ruleSelector matches "
                   "(repeatable), e.g. release=kube-prometheus-stack.")
def build_command(config_path: Path | None, out_dir: Path, tests_out: Path | None, job: str,
                  runbook_url: str, fmt: str, namespace: str | None,
                  labels: tuple[str, ...]) -> None:
    """Write the rule files (deterministic: same input, same bytes).

    \b
    Example: carekpi alerts build --config carekpi.yaml --out alerts/generated
             carekpi alerts build --config carekpi.yaml --out k8s \\
                 --format prometheus-operator --label release=kube-prometheus-stack
    """
    import os

    from alerts import build, operator, promtool_tests
    from kpis import config as kpi_config
    from kpis import names

    config = kpi_config.load(config_path) if config_path is not None else None
    files = build.build_files(config, job=job, runbook_base=runbook_url)
    if fmt == "prometheus-operator":
        files = operator.build_file(files, namespace=namespace,
                                    labels=names.resource_labels(labels))
    written = write_texts(files, out_dir, "rules")
    if tests_out is not None:
        rules_dir = Path(os.path.relpath(out_dir.resolve(), tests_out.resolve())).as_posix()
        written += promtool_tests.write_unit_tests(config, tests_out, rules_dir=rules_dir,
                                                   job=job, runbook_base=runbook_url)
    for path in written:
        click.echo(str(path))


def write_committed(root: Path) -> list[Path]:
    """The committed rule files and their promtool tests, from the catalog's defaults."""
    from alerts import build, promtool_tests

    return [*build.write(None, root / "alerts" / "generated"),
            *promtool_tests.write_unit_tests(None, root / "alerts" / "tests")]
