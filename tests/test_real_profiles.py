"""The shipped profiles of real devices (issue 17) against a real pymodbus server whose
registers are laid out by hand from each device's manual, not from the profile: one
device per unit id on one Modbus TCP endpoint, read by the gateway's own bus poller.
Each row says what the manual says a register holds and what must come out of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from coldchain.wire import Event, Quality, Reading
from gateway.config import DeviceConfig, ModbusTcpBus
from gateway.health import Health
from gateway.modbus_bus import ModbusBus
from gateway.outbox import Outbox
from gateway.outbox_file import AsyncOutbox
from gateway.profiles import Table
from gateway.sink import Sink
from simulator.devices import ModbusServer, ModbusUnit
from tests.harness import free_port

H, IN, C = Table.HOLDING, Table.INPUT, Table.COIL
FAULT = Quality.FAULT

# profile -> (registers as the manual lays them out, {point: value or (quality, fault)},
#             alarms the gateway must report as events)
DEVICES: dict[str, tuple[dict[tuple[Table, int], int | bool], dict[str, Any], set[str]]] = {
    # 0292H = 65.8 %RH; FF9BH = −10.1 °C (the manual's own example)
    "renke_rs_ws_n01": ({(H, 0): 0x0292, (H, 1): 0xFF9B}, {"rh": 65.8, "temp": -10.1}, set()),
    "xy_md02": (
        {(IN, 1): -185, (IN, 2): 856, (H, 0x0103): -5, (H, 0x0104): 10},
        {"temp": -18.5, "rh": 85.6, "temp_correction": -0.5, "rh_correction": 1.0},
        set(),
    ),
    "pt100_8ch": (
        {(H, 0): -185, (H, 1): 32767, (H, 2): -32768, **{(H, n): 40 for n in range(3, 8)}},
        {"ch1": -18.5, "ch2": (FAULT, "sentinel"), "ch3": (Quality.OUT_OF_RANGE, None),
         "ch4": 4.0, "ch8": 4.0},
        set(),
    ),
    # resolution in tenths, °C; evaporator probe failed; compressor and fan on; door alarm
    "dixell_xr60cx": (
        {(H, 785): 0, (H, 786): 1, (H, 256): -185, (H, 257): -32100, (H, 258): 32500,
         (H, 1536): 0b101, (H, 3328): 1 << 11},
        {"air": -18.5, "evap": (FAULT, "probe_failure"), "p3": (FAULT, "probe_failure"),
         "compressor": True, "defrost": False, "fan": True, "door_alarm": True,
         "di_alarm": False},
        {"door_alarm"},
    ),
    # a controller showing °F in tenths: 39.2 °F is published as 4.0 °C
    "dixell_xr06cx": (
        {(H, 785): 1, (H, 786): 1, (H, 256): 392, (H, 257): -32768, (H, 1536): 1,
         (H, 3328): 1 << 12},
        {"air": 4.0, "p2": (FAULT, "probe_failure"), "compressor": True, "di_alarm": True,
         "door_alarm": False},
        {"di_alarm"},
    ),
    # whole degrees; the fourth probe failed; high-pressure alarm
    "dixell_xr70cx": (
        {(H, 787): 0, (H, 788): 0, (H, 256): -18, (H, 257): -25, (H, 258): 5,
         (H, 259): -32001, (H, 1536): 0b1000, (H, 3329): 1 << 9},
        {"air": -18.0, "evap": -25.0, "p3": 5.0, "p4": (FAULT, "probe_failure"),
         "aux": True, "compressor": False, "high_pressure_alarm": True,
         "low_pressure_alarm": False},
        {"high_pressure_alarm"},
    ),
    # supervisor variables numbered from 1: A4 is protocol register 3, D16 coil 15
    "carel_ir33": (
        {(H, 3): -185, (H, 4): -250, (H, 5): 0, (H, 6): 0, (C, 0): True, (C, 15): True,
         (C, 36): True},
        {"air": -18.5, "evap": -25.0, "compressor": True, "defrost": False,
         "high_alarm": True, "low_alarm": False, "door": True},
        {"high_alarm"},
    ),
}  # fmt: skip


async def poll(tmp_path: Path) -> tuple[list[Reading], list[Event]]:
    port = free_port()
    units = [
        ModbusUnit(unit, name, dict, raw=raw)
        for unit, (name, (raw, _, _)) in enumerate(DEVICES.items(), start=1)
    ]
    server = ModbusServer(units, tcp_port=port)
    await server.start()
    events: list[Event] = []
    config = ModbusTcpBus(
        kind="modbus_tcp",
        name="manuals",
        host="127.0.0.1",
        port=port,
        devices=[
            DeviceConfig(id=u.profile_name, profile=u.profile_name, unit=u.unit) for u in units
        ],
    )
    outbox = AsyncOutbox(
        Outbox(tmp_path / "o.sqlite", gateway="g", site="s", max_rows=99, max_age_h=1)
    )
    bus = ModbusBus(config, Sink(outbox, lambda: None), Health(emit=events.append))
    try:
        return await bus.poll_once(), events
    finally:
        bus.client.close()
        outbox.close()
        await server.stop()


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Reading], list[Event]]:
    readings, events = asyncio.run(poll(tmp_path_factory.mktemp("manuals")))
    return {r.sensor: r for r in readings}, events


@pytest.mark.parametrize("name", list(DEVICES))
def test_a_real_device_laid_out_from_its_manual_decodes_as_the_manual_says(
    name: str, polled: tuple[dict[str, Reading], list[Event]]
) -> None:
    readings, events = polled
    _, expected, alarms = DEVICES[name]
    for point, want in expected.items():
        got = readings[f"{name}.{point}"]
        if isinstance(want, tuple):
            assert (got.q, got.fault) == want, point
        else:
            assert (got.value(), got.q) == (want, Quality.OK), point
    # the device's own alarms that are on, each an event (one that is off is not news)
    raised = {
        e.source.removeprefix(f"{name}.")
        for e in events
        if e.kind == "alarm" and e.source.startswith(f"{name}.")
    }
    assert raised == alarms
    assert all(e.state == "on" for e in events if e.kind == "alarm")
    # settings read for the other points' sake are not published
    assert not any(s.startswith(f"{name}.") and s.endswith((".cf", ".res")) for s in readings)


def test_every_device_answered_every_request(
    polled: tuple[dict[str, Reading], list[Event]],
) -> None:
    _, events = polled
    assert {e.source: e.state for e in events if e.kind == "device"} == {
        name: "ok" for name in DEVICES
    }
    details = {e.source: e.detail for e in events if e.kind == "alarm"}
    assert details["carel_ir33.high_alarm"] == "high_temp"
    assert details["dixell_xr70cx.high_pressure_alarm"] == "high_pressure"
