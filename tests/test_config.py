"""Config and profile files: every shipped profile loads; errors name file, field, expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.profiles import (
    AsciiProfile,
    ModbusProfile,
    NmeaProfile,
    available_profiles,
    load_profile,
    load_profile_file,
)

GOOD = """
[gateway]
id = "store-gw"
site = "county-store"

[outbox]
path = "outbox.sqlite"

[[buses]]
kind = "modbus_tcp"
name = "cr1"
host = "127.0.0.1"
port = 5020
[[buses.devices]]
id = "cr1-ctrl"
profile = "reefer_controller"

[[buses]]
kind = "modbus_rtu"
name = "line1"
port = "/dev/ttyUSB0"
baudrate = 9600
parity = "E"
[[buses.devices]]
id = "cr1-th"
profile = "th_transmitter_int16"
unit = 1
[[buses.devices]]
id = "cr2-th"
profile = "th_transmitter_float32"
unit = 2

[[buses]]
kind = "serial_ascii"
name = "probe"
port = "/dev/ttyUSB1"
[[buses.devices]]
id = "ct-probe"
profile = "ascii_temp_probe"

[[buses]]
kind = "nmea_gps"
name = "gps"
port = "/dev/ttyUSB2"
baudrate = 4800
[[buses.devices]]
id = "truck-gps"
profile = "nmea_gps"
"""


def test_shipped_profiles_cover_the_required_device_kinds() -> None:
    profiles = {name: load_profile(name) for name in available_profiles()}
    modbus = [p for p in profiles.values() if isinstance(p, ModbusProfile)]
    th = [p for p in modbus if {pt.quantity for pt in p.points} >= {"temp_c", "rh_pct"}]
    reefer = [
        p
        for p in modbus
        if {"setpoint_c", "compressor_on", "defrost_on"} <= {pt.quantity for pt in p.points}
    ]
    assert len(th) >= 2
    assert reefer
    assert any(isinstance(p, AsciiProfile) for p in profiles.values())
    assert any(isinstance(p, NmeaProfile) for p in profiles.values())
    types = {pt.type for p in modbus for pt in p.points}
    assert types >= {"int16", "uint16", "int32", "uint32", "float32", "bool"}
    assert any(
        pt.quantity == "door_open" and pt.table == "discrete" for p in modbus for pt in p.points
    )


def test_good_config_loads_and_resolves_outbox_next_to_it(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.outbox.path == tmp_path / "outbox.sqlite"
    assert [b.kind for b in config.buses] == [
        "modbus_tcp",
        "modbus_rtu",
        "serial_ascii",
        "nmea_gps",
    ]


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (("port = 5020", "port = 70000"), "buses.0.port", "less than or equal to 65535"),
        (('parity = "E"', 'parity = "X"'), "buses.1.parity", "'N', 'E' or 'O'"),
        (("baudrate = 9600", "baudrate = 9601"), "buses.1.baudrate", "9600"),
        (("unit = 2", "unit = 300"), "buses.1.devices.1.unit", "less than or equal to 247"),
        (("unit = 2", "unit = 1"), "buses.1.devices.1.unit", "used twice"),
        (('id = "cr2-th"', 'id = "cr1-th"'), "buses.1.devices.1.id", "used twice"),
        (
            ('profile = "reefer_controller"', 'profile = "no_such_model"'),
            "buses.0.devices.0.profile",
            "not found",
        ),
        (
            ('profile = "nmea_gps"', 'profile = "reefer_controller"'),
            "buses.3.devices.0.profile",
            "modbus profile",
        ),
        (('kind = "modbus_tcp"', 'kind = "modbus_udp"'), "buses.0", "modbus_tcp"),
        (('site = "county-store"', 'site = "County Store"'), "gateway.site", "pattern"),
        (('name = "cr1"', 'name = "cr1"\nhostname = "x"'), "buses.0.hostname", "unknown field"),
        (('[outbox]\npath = "outbox.sqlite"', "[outbox]"), "outbox.path", "missing"),
    ],
)
def test_config_error_names_file_field_and_expectation(
    tmp_path: Path, change: tuple[str, str], field: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    old, new = change
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert field in message, message
    assert expected in message, message


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[gateway\nid = 1\n")
    with pytest.raises(ConfigError, match=r"(?s)broken.toml.*line 1"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'protocol = "modbus"\nmodel = "X"\n[[points]]\nname = "t"\nquantity = "temp_c"\n'
            'table = "coil"\naddress = 0\ntype = "int16"\n',
            "table coil needs type bool",
        ),
        (
            'protocol = "modbus"\nmodel = "X"\n[[points]]\nname = "t"\nquantity = "temp_c"\n'
            'table = "input"\naddress = 0\ntype = "int64"\n',
            "points.0.type",
        ),
        (
            'protocol = "ascii"\nmodel = "X"\nline_regex = "^(?P<a>x)$"\n[[points]]\nname = "t"\n'
            'quantity = "temp_c"\ngroup = "b"\n',
            "lacks the named groups ['b']",
        ),
        ('protocol = "can"\nmodel = "X"\n', "protocol"),
    ],
)
def test_profile_error_is_explained(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "model.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_profile_file(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_gateway_check_command_exits_2_with_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace("port = 5020", 'port = "five"'))
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "gateway", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "buses.0.port" in result.stderr
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "gateway", "check", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "4 buses, 5 devices" in result.stdout
