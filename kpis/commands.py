"""The core's commands: ``kpis list|show``, ``config show`` and ``generate``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from kpis import catalog
from kpis import config as config_module
from kpis.commandline import Group, config_option
from kpis.errors import CareKPIError

# Writes one package's committed files (rules, their tests, dashboards) under a checkout root.
Generator = Callable[[Path], list[Path]]


@click.group(cls=Group)
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
    click.echo(f"{'ID':<3} {'KEY':<26} {'KIND':<10} {'ENTITY':<18} TARGET")
    for k in items:
        click.echo(f"{k.id:<3} {k.key:<26} {k.kind:<10} {k.entity:<18} {k.target_text}")


@kpis.command("show")
@click.argument("ref")
def kpis_show(ref: str) -> None:
    """Show one KPI by id or key, e.g. `carekpi kpis show A1`."""
    try:
        k = catalog.get(ref)
    except KeyError:
        raise CareKPIError(f"unknown KPI {ref!r}; see `carekpi kpis list`") from None
    click.echo(f"{k.id} {k.name} ({k.key})\n\n{k.definition}\n")
    click.echo(f"kind:            {k.kind}\nentity:          {k.entity}")
    required = [*k.fields, *(" or ".join(group) for group in k.any_of)]
    click.echo(f"required fields: {', '.join(required) or '-'}")
    for name in k.optional_fields:
        effect = catalog.OPTIONAL_EFFECT.get(name, "the KPI is computed without it")
        click.echo(f"optional field:  {name} (when not mapped: {effect})")
    derived = [d for d in k.dimensions if d not in k.optional_fields]
    if derived:
        click.echo(f"split by:        {', '.join(derived)}")
    click.echo("unavailable:     when a required field is not mapped (reported with the reason)")
    click.echo(f"default target:  {k.target_text}")
    click.echo("reference:       " + textwrap.fill(k.reference, 100, subsequent_indent=" " * 17))


@click.group("config", cls=Group)
def config_group() -> None:
    """Check and show a carekpi.yaml."""


@config_group.command("show")
@config_option
def config_show(config_path: str) -> None:
    """Print the resolved config with secrets masked."""
    import yaml

    data = config_module.masked(config_module.load(config_path))
    click.echo(yaml.safe_dump(data, sort_keys=False))


def generate_command(generators: Sequence[Generator]) -> click.Command:
    """``generate``: every package's committed files, rewritten from the catalog."""

    @click.command()
    @click.option("--root", type=click.Path(file_okay=False), default=".", show_default=True,
                  help="The checkout whose alerts/generated and dashboards/generated to rewrite.")
    def generate(root: str) -> None:
        """Rewrite the committed rules, their promtool tests and the dashboards from the catalog
        (default targets): run it after changing kpis/definitions."""
        for write in generators:
            for path in write(Path(root)):
                click.echo(str(path))

    return generate
