"""The installer's tools for device profiles (issue 17): a profile of the site's own,
outside the installed package (by path, or from the gateway's profiles_dir), checked by
``coldchain profile check`` and tried on a live device with ``coldchain profile probe``
against a real pymodbus server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.profiles import load_profile, profile_path
from simulator.devices import ModbusServer, ModbusUnit
from tests.harness import free_port

SHIPPED = profile_path("th_transmitter_int16")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args], capture_output=True, text=True, timeout=60
    )


def site_profile(folder: Path, name: str) -> Path:
    """A site's own device: the shipped transmitter's map under another model name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(SHIPPED.read_text().replace('model = "TH-485A"', 'model = "RS-WS-N01-SITE"'))
    return path


def test_profile_check_lists_the_requests_or_names_the_field_that_is_wrong(tmp_path: Path) -> None:
    good = cli("profile", "check", str(site_profile(tmp_path, "site-th")))
    assert good.returncode == 0, good.stderr
    assert "modbus profile RS-WS-N01-SITE" in good.stdout
    assert "input 0+2: rh, temp" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('protocol = "modbus"\nmodel = "X"\n[[points]]\nname = "t"\n')
    refused = cli("profile", "check", str(bad))
    assert refused.returncode == 2
    assert str(bad) in refused.stderr and "points.0.address: missing" in refused.stderr


GATEWAY = """
[gateway]
id = "store-gw"
site = "county-store"
{profiles_dir}

[outbox]
path = "outbox.sqlite"

[[buses]]
kind = "modbus_tcp"
name = "rs485-converter"
host = "127.0.0.1"
port = 5020
[[buses.devices]]
id = "cr9-th"
profile = "{profile}"
"""


def test_a_site_profile_comes_from_profiles_dir_or_a_path_never_the_package(
    tmp_path: Path,
) -> None:
    own = tmp_path / "site-profiles"
    site_profile(own, "site-th")
    config = tmp_path / "gateway.toml"
    config.write_text(GATEWAY.format(profiles_dir=f'profiles_dir = "{own}"', profile="site-th"))
    (device,) = load_config(config).buses[0].devices
    assert device.profile == str(own / "site-th.toml")
    assert load_profile(device.profile).model == "RS-WS-N01-SITE"
    by_path = tmp_path / "by-path.toml"
    by_path.write_text(GATEWAY.format(profiles_dir="", profile=str(own / "site-th.toml")))
    assert load_config(by_path).buses[0].devices[0].profile.endswith("site-th.toml")
    shutil.rmtree(own)  # a path that is not there is named
    refused = cli("gateway", "check", str(by_path))
    assert refused.returncode == 2 and "no such profile file" in refused.stderr


def test_profile_probe_reads_a_live_device_and_prints_what_each_point_decodes_to() -> None:
    async def scenario() -> str:
        port = free_port()
        values = {"rh": 86.4, "temp": -18.7, "door": True}
        server = ModbusServer(
            [ModbusUnit(1, "th_transmitter_int16", lambda: values)], tcp_port=port
        )
        await server.start()
        try:
            probe = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ops.cli", "profile", "probe",
                "--profile", "th_transmitter_int16", "--host", "127.0.0.1", "--port", str(port),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(probe.communicate(), 60)
            assert probe.returncode == 0, err.decode()
            return out.decode()
        finally:
            await server.stop()

    printed = asyncio.run(scenario())
    lines = {line.split()[0]: line.split() for line in printed.splitlines() if line.strip()}
    assert lines["probe.temp"][1:4] == ["temp_c", "-18.7", "ok"]
    assert lines["probe.rh"][1:4] == ["rh_pct", "86.4", "ok"]
    assert lines["probe.door"][1:4] == ["door_open", "True", "ok"]


def test_profile_check_names_the_manual_and_the_points_it_could_not_confirm() -> None:
    checked = cli("profile", "check", str(profile_path("dixell_xr60cx")))
    assert checked.returncode == 0, checked.stderr
    assert "from: MODBUS-RTU applied to DIXELL devices, rel. 2.6" in checked.stdout
    assert "holding 3328+1: door_alarm, di_alarm" in checked.stdout
    assert "air: probe register from §3.1.1 (p. 8), not confirmed" in checked.stdout
    sure = cli("profile", "check", str(profile_path("renke_rs_ws_n01")))
    assert "1 points not confirmed" in sure.stdout and "temp: the manual names no" in sure.stdout
