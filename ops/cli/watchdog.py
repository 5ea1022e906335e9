"""``coldchain watchdog``: the watchdog on the watchers (run it on a second machine)."""

from __future__ import annotations

from pathlib import Path

import click

from coldchain.settings import ConfigError, load_toml
from ops.cli.common import fail


@click.group()
def watchdog() -> None:
    """Watch the broker and the services' heartbeats; tell people when they stop."""


@watchdog.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="watchdog config (TOML): broker, services to watch, routes and channels",
)
def watchdog_run(config_path: Path) -> None:
    """Run the watchdog until SIGINT/SIGTERM."""
    from ops.watchdog import WatchdogConfig, run_watchdog

    try:
        run_watchdog(load_toml(config_path, WatchdogConfig))
    except ConfigError as exc:
        fail(exc, 2)


COMMANDS = (watchdog,)
