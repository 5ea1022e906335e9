"""``coldchain demo`` and ``coldchain simulate``: the simulated county, alone or with
the whole system on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import click

_COUNTY_OPTIONS = (
    click.option("--duration-s", type=float, default=None, help="stop after N seconds"),
    click.option(
        "--accel",
        default=60.0,
        show_default=True,
        help="time acceleration: simulated seconds per real second",
    ),
    click.option(
        "--interval-s", default=5.0, show_default=True, help="the gateways' poll interval"
    ),
    click.option("--no-events", is_flag=True, help="no scripted door/compressor/signal events"),
)


def county_options(f: Callable[..., None]) -> Callable[..., None]:
    """How the simulated county runs: for how long, how fast, with which events."""
    for option in reversed(_COUNTY_OPTIONS):
        f = option(f)
    return f


@click.command()
@click.option(
    "--mqtt-url",
    default=None,
    help=(
        "use this broker (mqtt://host:port) instead of starting a Mosquitto of its own; "
        "it must keep queued messages (persistence true, autosave_interval 1) and have "
        "room to queue them (max_queued_messages 1000000, max_queued_bytes 268435456, "
        "message_size_limit 1048576): a stock Mosquitto drops past 1,000 queued messages"
    ),
)
@click.option(
    "--workdir",
    default=Path("var/demo"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="broker data, outboxes, pty links",
)
@county_options
@click.option(
    "--web-port",
    default=8080,
    show_default=True,
    help="port of the web pages and API on 127.0.0.1 (0: any free port)",
)
def demo(
    mqtt_url: str | None,
    workdir: Path,
    duration_s: float | None,
    accel: float,
    interval_s: float,
    no_events: bool,
    web_port: int,
) -> None:
    """Run broker, simulated county and gateways on embedded defaults, with a live summary."""
    from simulator.demo import run_demo

    workdir_abs = workdir.resolve()
    asyncio.run(
        run_demo(
            mqtt_url=mqtt_url,
            workdir=workdir_abs,
            duration_s=duration_s,
            accel=accel,
            interval_s=interval_s,
            scripted=not no_events,
            web_port=web_port,
        )
    )


@click.command()
@click.option("--mqtt-host", default="127.0.0.1", show_default=True)
@click.option("--mqtt-port", default=1883, show_default=True, type=int)
@click.option(
    "--workdir",
    default=Path("var/sim"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="where pty links and gateway configs go",
)
@county_options
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
    from simulator.county import County

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


COMMANDS = (demo, simulate)
