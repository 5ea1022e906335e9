"""``coldchain profile``: device profiles for the installer on site: check a profile
file, and probe a live device with a profile (the decoded values, as the gateway would
publish them)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import click

from ops.cli.common import fail


@click.group()
def profile() -> None:
    """Device profiles (register maps, serial line formats) as data."""


@profile.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def profile_check(path: Path) -> None:
    """Check a profile file (or a shipped profile, by name); exit 2 naming the file, the
    field and what was expected."""
    from gateway.decode import plan_reads
    from gateway.errors import ConfigError
    from gateway.profiles import ModbusProfile, load_profile_file, profile_path

    if not path.exists() and path.suffix != ".toml":
        try:
            path = profile_path(str(path))
        except FileNotFoundError:
            fail(f"{path}: no such file, and no shipped profile of that name", 2)
    try:
        found = load_profile_file(path)
    except (ConfigError, OSError) as exc:
        fail(exc, 2)
    click.echo(f"{path}: {found.protocol} profile {found.model} ({found.vendor})")
    if isinstance(found, ModbusProfile):
        if found.source:
            click.echo(f"  from: {found.source}")
        blocks = plan_reads(
            found.points, found.max_registers_per_read, found.max_bits_per_read, found.max_gap
        )
        click.echo(f"  {len(found.points)} points in {len(blocks)} requests (protocol addresses):")
        for block in blocks:
            names = ", ".join(p.name for p in block.points)
            click.echo(f"    {block.table} {block.address}+{block.count}: {names}")
        _uncertain(found)


def _uncertain(found: object) -> None:
    """The points the profile's author could not confirm against the manual: for the
    installer to check with ``coldchain profile probe`` before relying on them."""
    from gateway.profiles import ModbusProfile

    if not isinstance(found, ModbusProfile):
        return
    doubtful = [p for p in found.points if p.uncertain]
    if doubtful:
        click.echo(f"  {len(doubtful)} points not confirmed against the manual:")
        for p in doubtful:
            click.echo(f"    {p.name}: {p.uncertain}")


@profile.command("probe")
@click.option("--profile", "name", required=True, help="a shipped profile's name or a file")
@click.option("--host", default=None, help="Modbus TCP: the device's (or converter's) address")
@click.option("--port", default=502, show_default=True, help="Modbus TCP port")
@click.option("--serial", "device", default=None, help="Modbus RTU: the serial port")
@click.option("--baud", default=9600, show_default=True)
@click.option("--unit", default=1, show_default=True, help="the Modbus unit id")
def profile_probe(
    name: str, host: str | None, port: int, device: str | None, baud: int, unit: int
) -> None:
    """Read a live Modbus device once with a profile and print what each point
    decodes to (or why it is a fault): for the installer, before the gateway's config."""
    if (host is None) == (device is None):
        fail("give --host (Modbus TCP) or --serial (Modbus RTU)", 2)
    from gateway.profiles import load_profile

    readings = asyncio.run(_probe(name, host, port, device, baud, unit))
    for r in readings:
        value = "-" if r.value() is None else r.value()
        state = r.q.value if r.fault is None else f"{r.q.value} ({r.fault})"
        click.echo(f"{r.sensor:<28} {r.measurand().value:<14} {value!s:<10} {state}")
    _uncertain(load_profile(name))


async def _probe(
    name: str, host: str | None, port: int, device: str | None, baud: int, unit: int
) -> list:  # type: ignore[type-arg]
    from gateway.config import DeviceConfig, ModbusRtuBus, ModbusTcpBus
    from gateway.health import Health
    from gateway.modbus_bus import ModbusBus
    from gateway.outbox import Outbox
    from gateway.outbox_file import AsyncOutbox
    from gateway.sink import Sink

    devices = [DeviceConfig(id="probe", profile=name, unit=unit)]
    config: ModbusTcpBus | ModbusRtuBus
    if host is not None:
        config = ModbusTcpBus(
            kind="modbus_tcp", name="probe", host=host, port=port, devices=devices
        )
    else:
        assert device is not None
        config = ModbusRtuBus.model_validate(
            {
                "kind": "modbus_rtu",
                "name": "probe",
                "port": device,
                "baudrate": baud,
                "devices": devices,
            }
        )
    with tempfile.TemporaryDirectory() as scratch:  # the sink wants an outbox: a throwaway
        outbox = AsyncOutbox(
            Outbox(
                Path(scratch) / "probe.sqlite",
                gateway="probe",
                site="probe",
                max_rows=100,
                max_age_h=1,
            )
        )
        health = Health(emit=lambda e: click.echo(f"{e.kind} {e.state}: {e.detail or ''}"))
        bus = ModbusBus(config, Sink(outbox, lambda: None), health)
        try:
            return await bus.poll_once()
        finally:
            bus.client.close()
            outbox.close()


COMMANDS = (profile,)
