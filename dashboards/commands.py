"""``carekpi dashboards build|publish``: thin commands over dashboards.build and .publish."""

from __future__ import annotations

from pathlib import Path

import click

from kpis.commandline import Group
from kpis.config import Config
from kpis.errors import CareKPIError
from kpis.generated_files import write_texts
from kpis.series import RUNBOOK_URL


def _config(path: str | None) -> Config | None:
    if path is None:
        return None
    from kpis import config

    return config.load(path)


@click.group("dashboards", cls=Group)
def dashboards_group() -> None:
    """Grafana dashboards built from the KPI catalog and your config."""


@dashboards_group.command("build")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="carekpi.yaml: its targets colour the panels and its windows fill the "
                   "window variable. Without it, the catalog defaults.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write the dashboard JSON files into.")
@click.option("--runbook-url", default=RUNBOOK_URL, show_default=True,
              help="URL of your published runbook; panels link to its alert anchors.")
@click.option("--format", "fmt", type=click.Choice(["json", "configmap"]), default="json",
              show_default=True, help="JSON files, or ConfigMaps for Grafana's dashboard "
                                      "sidecar (kube-prometheus-stack).")
@click.option("--namespace", help="With configmap: the ConfigMaps' namespace.")
def build_command(config_path: str | None, out_dir: str, runbook_url: str, fmt: str,
                  namespace: str | None) -> None:
    """Write every dashboard as deterministic JSON.

    \b
    Example: carekpi dashboards build --config carekpi.yaml --out /var/lib/grafana/carekpi
             carekpi dashboards build --config carekpi.yaml --out k8s --format configmap
    """
    from dashboards import build, configmap

    config = _config(config_path)
    if "://" not in runbook_url:
        click.echo(f"carekpi: warning: --runbook-url {runbook_url} is not an absolute URL: "
                   "Grafana resolves panel links against its own address, so the runbook links "
                   "will not open; pass the URL of your published RUNBOOK.md", err=True)
    files = build.build_files(config, runbook_base=runbook_url)
    if fmt == "configmap":
        files = configmap.build_file(files, namespace=namespace)
    written = write_texts(files, out_dir, "dashboards")
    for path in written:
        click.echo(str(Path(path)))


@dashboards_group.command("publish")
@click.option("--url", required=True, help="Grafana's root URL, e.g. https://grafana.example.org")
@click.option("--token", envvar="GRAFANA_TOKEN", help="Service account token (or GRAFANA_TOKEN).")
@click.option("--user", help="User for basic auth (with --password).")
@click.option("--password", envvar="GRAFANA_PASSWORD",
              help="Password for basic auth (or GRAFANA_PASSWORD).")
@click.option("--folder", default="CareKPI", show_default=True, help="Folder to publish into.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="carekpi.yaml (targets and windows); without it, the catalog defaults.")
@click.option("--runbook-url", default=RUNBOOK_URL, show_default=True,
              help="URL of your published runbook; panels link to its alert anchors.")
def publish_command(url: str, token: str | None, user: str | None, password: str | None,
                    folder: str, config_path: str | None, runbook_url: str) -> None:
    """Create the folder and upsert every dashboard (same uid, overwrite); idempotent.

    Example: carekpi dashboards publish --url https://grafana.example.org --token "$GRAFANA_TOKEN"
    """
    from dashboards import build, publish

    if token and (user or password):
        raise CareKPIError("Grafana: give either --token or --user/--password, not both")
    boards = build.dashboards(_config(config_path), runbook_base=runbook_url)
    api = publish.connect(url, token=token, user=user, password=password)
    outcomes = publish.publish(api, url, boards, folder=folder)
    for outcome in outcomes:
        click.echo(f"{outcome.action:9} {outcome.uid}  {outcome.title}")


def write_committed(root: Path) -> list[Path]:
    """The committed dashboards, from the catalog's defaults."""
    from dashboards import build

    return [Path(p) for p in build.write(None, root / "dashboards" / "generated")]
