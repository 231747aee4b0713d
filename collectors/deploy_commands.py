"""``carekpi deploy kubernetes|systemd``: the exporter's deployment artifacts, from a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from collectors import deploy
from kpis.commandline import ConfigOption, Group
from kpis.errors import CareKPIError

config_option = click.option("--config", "config_path", cls=ConfigOption, required=True,
                             type=click.Path(dir_okay=False, path_type=Path),
                             help="carekpi.yaml (its source URLs must be ${file:} or ${env:}).")


def _read(path: Path, secret_dir: str = deploy.SECRET_DIR) -> tuple[str, Any]:
    """The config's text (shipped as is) and its document. It is validated as ``serve`` would,
    except that the secrets it refers to live on the target, not here: each referenced source
    URL stands in as an in-memory SQLite URL for the validation."""
    from kpis import config, secrets, yaml_file

    raw = yaml_file.read(path)
    deploy.check_urls(raw, str(path), secret_dir)
    for note in deploy.unprovided_references(raw, secret_dir):
        click.echo(f"carekpi: warning: {path}: {note}", err=True)
    stand_in = {**raw, "sources": {
        name: {**source, "url": "sqlite://"} if secrets.has_reference(str(source.get("url")))
        else source
        for name, source in raw["sources"].items()}}
    config.parse(stand_in, str(path), path.parent)
    return path.read_text(encoding="utf-8"), raw


@click.group("deploy", cls=Group)
def deploy_group() -> None:
    """Deployment artifacts for the exporter (Kubernetes, systemd)."""


@deploy_group.command("kubernetes")
@config_option
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Directory to write into.")
@click.option("--image", required=True, help="The exporter's container image.")
@click.option("--namespace", help="Namespace of every resource.")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Exporter processes, each serving its part of the refresh units.")
@click.option("--monitor-label", "monitor_labels", multiple=True, metavar="KEY=VALUE",
              help="Label the Prometheus Operator's serviceMonitorSelector matches.")
def kubernetes_command(config_path: Path, out_dir: Path, image: str, namespace: str | None,
                       shards: int, monitor_labels: tuple[str, ...]) -> None:
    """ConfigMap, Deployment(s), Service(s) and ServiceMonitor in exporter.yaml.

    \b
    Example: carekpi deploy kubernetes --config carekpi.yaml --out k8s \\
                 --image registry.example.org/carekpi:0.1.0 --monitor-label release=kps
    """
    from kpis.names import resource_labels

    text, raw = _read(config_path)
    labels = resource_labels(monitor_labels, "--monitor-label")
    documents = deploy.kubernetes(text, raw, str(config_path), image=image, namespace=namespace,
                                  shards=shards, monitor_labels=labels)
    path = out_dir / "exporter.yaml"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(deploy.dump_all(documents, "kubernetes"), encoding="utf-8")
    except OSError as exc:
        raise CareKPIError(f"{out_dir}: cannot write: {exc.strerror or exc}") from None
    click.echo(str(path))
    click.echo("then create the Secret it mounts (values are yours, never in a file here):\n  "
               + deploy.secret_command(raw, str(config_path), namespace), err=True)


@deploy_group.command("systemd")
@config_option
@click.option("--executable", default="/opt/carekpi/bin/carekpi", show_default=True,
              help="Absolute path of the carekpi command on the host.")
@click.option("--installed-config", default="/etc/carekpi/carekpi.yaml", show_default=True,
              help="Where the config lives on the host.")
@click.option("--user", default="carekpi", show_default=True, help="The dedicated user.")
def systemd_command(config_path: Path, executable: str, installed_config: str, user: str
                    ) -> None:
    """A hardened carekpi.service on stdout.

    Example: carekpi deploy systemd --config carekpi.yaml > /etc/systemd/system/carekpi.service
    """
    _, raw = _read(config_path, deploy.SYSTEMD_CREDENTIALS)
    click.echo(deploy.systemd_unit(raw, str(config_path), executable=executable,
                                   config=installed_config, user=user), nl=False)
