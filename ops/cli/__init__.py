"""The ``coldchain`` command: one module per command group, each importing what it runs
only when it runs (a gateway box need not load the web stack to start)."""

from __future__ import annotations

import click

from coldchain import __version__, logs
from ops.cli import (
    admin,
    alerts,
    calibrations,
    collector,
    demo,
    deploy,
    edge,
    imports,
    profiles,
    quarantine,
    readings,
    setup,
    watchdog,
    web,
)


@click.group()
@click.version_option(__version__)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
)
def main(log_level: str) -> None:
    """Open, self-hostable cold-chain monitoring."""
    logs.setup(log_level)


for group in (
    edge,
    profiles,
    collector,
    alerts,
    readings,
    quarantine,
    watchdog,
    web,
    admin,
    setup,
    calibrations,
    imports,
    demo,
    deploy,
):
    for command in group.COMMANDS:
        main.add_command(command)
