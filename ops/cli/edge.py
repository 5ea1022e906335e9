"""``coldchain gateway``: run an edge gateway, check its config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ops.cli.common import fail

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def _load_gateway_config(path: Path) -> GatewayConfig:
    """The config, or exit 2 with the file, the field and what was expected."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(exc, 2)


@click.group()
def gateway() -> None:
    """Edge gateway: read sensors, buffer durably, publish over MQTT."""


@gateway.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="gateway config file (TOML)",
)
def gateway_run(config_path: Path) -> None:
    """Run a gateway until SIGINT/SIGTERM."""
    from gateway.app import run_gateway
    from gateway.errors import TaskFailed
    from gateway.outbox_file import OutboxBusy

    try:
        run_gateway(_load_gateway_config(config_path))
    except OutboxBusy as exc:  # a second gateway process on one config
        fail(exc, 3)
    except TaskFailed as exc:  # logged where it died; the unit restarts the gateway
        fail(exc, 1)


@gateway.command("check")
@click.argument("config_path", type=click.Path(path_type=Path))
def gateway_check(config_path: Path) -> None:
    """Validate a gateway config file and the profiles it names."""
    config = _load_gateway_config(config_path)
    devices = sum(len(b.devices) for b in config.buses)
    click.echo(f"{config_path}: ok ({len(config.buses)} buses, {devices} devices)")


COMMANDS = (gateway,)
