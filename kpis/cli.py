"""The ``carekpi`` command line: registration only.

Each package owns its commands; this is the only module that wires the packages together
(the import contracts allow it nowhere else). Every command reports errors the same way
(:mod:`kpis.commandline`): one line ``carekpi: ...`` on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import click

from alerts import commands as alerts_commands
from checks import commands as checks_commands
from collectors import backfill_commands, deploy_commands
from collectors import commands as collectors_commands
from dashboards import commands as dashboards_commands
from kpis import __version__
from kpis import commands as kpis_commands
from kpis.commandline import Group


@click.group(cls=Group)
@click.version_option(__version__, prog_name="carekpi")
def main() -> None:
    """CareKPI: customer-care quality KPIs from your operational databases.

    \b
    Quick start:
      carekpi demo                      # synthetic data, metrics on :9880
      carekpi serve --config carekpi.yaml
    """


for _command in collectors_commands.commands(checks_commands.scheduled_collectors):
    main.add_command(_command)
kpis_commands.config_group.add_command(collectors_commands.config_validate)
main.add_command(kpis_commands.kpis)
main.add_command(kpis_commands.config_group)
main.add_command(kpis_commands.generate_command(
    [alerts_commands.write_committed, dashboards_commands.write_committed]))
main.add_command(backfill_commands.backfill_command)
for _group in (alerts_commands.alerts_group, dashboards_commands.dashboards_group,
               checks_commands.checks_group, deploy_commands.deploy_group):
    main.add_command(_group)
