"""The ``coldchain`` command."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from coldchain import __version__, logs

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


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


def _load_gateway_config(path: Path) -> GatewayConfig:
    """The config, or exit 2 with the file, the field and what was expected."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@main.group()
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

    run_gateway(_load_gateway_config(config_path))


@gateway.command("check")
@click.argument("config_path", type=click.Path(path_type=Path))
def gateway_check(config_path: Path) -> None:
    """Validate a gateway config file and the profiles it names."""
    config = _load_gateway_config(config_path)
    devices = sum(len(b.devices) for b in config.buses)
    click.echo(f"{config_path}: ok ({len(config.buses)} buses, {devices} devices)")


@main.command()
@click.option(
    "--mqtt-url",
    default=None,
    help="use this broker (mqtt://host:port) instead of starting a Mosquitto of its own",
)
@click.option(
    "--workdir",
    default=Path("var/demo"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="broker data, outboxes, pty links",
)
@click.option("--duration-s", type=float, default=None, help="stop after N seconds")
@click.option(
    "--accel",
    default=60.0,
    show_default=True,
    help="time acceleration: simulated seconds per real second",
)
@click.option("--interval-s", default=5.0, show_default=True, help="gateway poll interval")
@click.option("--no-events", is_flag=True, help="no scripted door/compressor/signal events")
def demo(
    mqtt_url: str | None,
    workdir: Path,
    duration_s: float | None,
    accel: float,
    interval_s: float,
    no_events: bool,
) -> None:
    """Run broker, simulated county and gateways on embedded defaults, with a live summary."""
    from coldchain.demo import run_demo

    workdir_abs = workdir.resolve()
    asyncio.run(
        run_demo(
            mqtt_url=mqtt_url,
            workdir=workdir_abs,
            duration_s=duration_s,
            accel=accel,
            interval_s=interval_s,
            scripted=not no_events,
        )
    )


@main.command()
@click.option("--mqtt-host", default="127.0.0.1", show_default=True)
@click.option("--mqtt-port", default=1883, show_default=True, type=int)
@click.option(
    "--workdir",
    default=Path("var/sim"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="where pty links and gateway configs go",
)
@click.option(
    "--accel",
    default=60.0,
    show_default=True,
    help="time acceleration: simulated seconds per real second",
)
@click.option(
    "--interval-s",
    default=5.0,
    show_default=True,
    help="poll interval written into the gateway configs",
)
@click.option("--no-events", is_flag=True, help="no scripted door/compressor/signal events")
@click.option("--duration-s", type=float, default=None, help="stop after N seconds")
def simulate(
    mqtt_host: str,
    mqtt_port: int,
    workdir: Path,
    accel: float,
    interval_s: float,
    no_events: bool,
    duration_s: float | None,
) -> None:
    """Run the simulated county cold chain (real Modbus servers and serial ptys)."""
    from coldchain.sim.county import County

    workdir_abs = workdir.resolve()

    async def run() -> None:
        county = County(
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            accel=accel,
            workdir=workdir_abs,
            interval_s=interval_s,
            scripted=not no_events,
        )
        configs = await county.start()
        click.echo("simulated devices (read them with any Modbus client, e.g. mbpoll):")
        for line in county.describe():
            click.echo(line)
        click.echo("gateway configs:")
        for path in configs:
            click.echo(f"  coldchain gateway run --config {path}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
        await county.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
