"""A gateway box installs ``coldchain[gateway]`` only (issue 17): a running gateway, with
a Modbus device, a GPS receiver on a serial line and its cab view, imports nothing but
the packages that extra and the core install (and what they depend on). Read from the
running process's own import log (``PYTHONPROFILEIMPORTTIME``), not from the sources.
Its Modbus device is read with a site's own profile, from ``profiles_dir`` outside the
installed package."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from simulator.devices import LineWriter, ModbusServer, ModbusUnit, PtyPair
from simulator.route import Position, nmea_sentences
from tests.harness import Broker, GatewayProcess, LoopThread, Recorder, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "coldchain",
    "gateway",
    "collector",
    "alerts",
    "api",
    "simulator",
    "ops",
    "firmware_configs",
}
#: imported when present, never needed: setuptools' own hook that every virtualenv with
#: setuptools loads at start (``_distutils_hack``), and python-multipart, which Starlette
#: tries for form parsing and goes on without (the cab view parses no forms)
WHEN_PRESENT = {"setuptools", "python-multipart"}


def installed_by(extras: list[str]) -> set[str]:
    """The distributions ``pip install coldchain[extras]`` brings: the core's and the
    extras' requirements, and theirs, as the installed packages' metadata says."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        todo += [Requirement(r) for r in project["optional-dependencies"][extra]]
    found: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found.add(name)
        try:
            wanted = requires(req.name) or []
        except PackageNotFoundError:
            continue
        for line in wanted:
            dep = Requirement(line)
            if dep.marker is None or any(
                dep.marker.evaluate({"extra": e}) for e in ("", *sorted(req.extras))
            ):
                todo.append(dep)
    return found


def imported(log: str) -> set[str]:
    """The distributions whose modules the process imported."""
    tops = {
        m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+(\S+)\s*$", log, re.M)
    }
    owners = packages_distributions()
    return {canonicalize_name(dist) for top in tops - OURS for dist in owners.get(top, [])}


def test_a_running_gateway_needs_only_what_coldchain_gateway_installs(
    tmp_path: Path, broker: Broker
) -> None:
    loop, pty = LoopThread(), PtyPair("gps", tmp_path)
    port = free_port()
    server: ModbusServer | None = None

    async def serve() -> ModbusServer:  # pymodbus makes its server inside a running loop
        made = ModbusServer(
            [ModbusUnit(1, "xy_md02", lambda: {"temp": 3.5, "rh": 80.0})], tcp_port=port
        )
        await made.start()
        return made

    writer = LineWriter(pty, 0.2, lambda: nmea_sentences(Position(36.05, 103.83, 40.0, 90.0, None)))
    own = tmp_path / "site-profiles"  # the installer's folder, outside the package
    own.mkdir()
    shipped = ROOT / "firmware_configs/modbus/xy_md02.toml"
    (own / "reefer-th.toml").write_text(
        shipped.read_text().replace('model = "XY-MD02"', 'model = "REEFER-TH-SITE"')
    )
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "truck-09"
site = "fleet"
profiles_dir = "{own}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[outbox]
path = "outbox.sqlite"
confirm = "broker"
[cab]
port = {free_port()}
[[buses]]
kind = "modbus_tcp"
name = "reefer"
host = "127.0.0.1"
port = {port}
interval_s = 0.5
[[buses.devices]]
id = "t09-th"
profile = "reefer-th"
[[buses]]
kind = "nmea_gps"
name = "gps"
port = "{pty.host}"
[[buses.devices]]
id = "t09-gps"
profile = "beidou_atgm336h"
""")
    log = tmp_path / "gateway.log"
    gateway = GatewayProcess(config, log, env={"PYTHONPROFILEIMPORTTIME": "1"})
    recorder = Recorder(broker.port, "coldchain/v1/fleet/truck-09/readings", "light-install")
    try:
        server = loop.run(serve())
        loop.spawn(writer.run())
        gateway.start()
        wait_for(
            lambda: (
                {"t09-th.temp", "t09-gps.pos"}
                <= {r.sensor for b in recorder.batches() for r in b.readings}
            ),
            timeout_s=60,
            what="a Modbus reading and a position",
        )
    finally:
        gateway.stop()
        recorder.close()
        if server is not None:
            loop.run(server.stop())
        loop.close()
        pty.close()
    used = imported(log.read_text(errors="replace"))
    assert {"pymodbus", "pyserial", "paho-mqtt", "uvicorn", "starlette"} <= used
    assert used - installed_by(["gateway"]) - WHEN_PRESENT == set()
    assert not used & {"sqlalchemy", "fastapi", "matplotlib", "weasyprint", "influxdb-client"}
