"""The gateway's bus drivers against real simulated devices: pymodbus servers over TCP
and over RTU on a socat pty pair, an ASCII probe and a GPS receiver on pty pairs."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coldchain.wire import Event, Quality, Reading
from gateway.clock import ClockCheck
from gateway.config import DeviceConfig, ModbusRtuBus, ModbusTcpBus, NmeaGpsBus, SerialAsciiBus
from gateway.health import Health
from gateway.modbus_bus import ModbusBus
from gateway.outbox import Outbox
from gateway.outbox_file import AsyncOutbox
from gateway.profiles import ModbusProfile, load_profile
from gateway.serial_bus import AsciiDevice, GpsDevice
from gateway.sink import Sink
from simulator.devices import LineWriter, ModbusServer, ModbusUnit, PtyPair, ascii_probe_line
from simulator.route import Position, _checksum, nmea_sentences
from tests.harness import free_port

pytestmark = pytest.mark.e2e

VALUES: dict[str, dict[str, float | bool]] = {
    "th_transmitter_int16": {"rh": 86.4, "temp": -18.7, "door": True},
    "th_transmitter_float32": {"temp": 3.25, "rh": 91.5, "core": 2.875},
    "reefer_controller": {
        "setpoint": -20.0,
        "air": -19.3,
        "evap": -27.1,
        "run": 15324.7,
        "compressor": True,
        "defrost": False,
        "door": False,
    },
}


class Rig:
    """A sink on a real outbox file, and the events the health tracker emitted."""

    def __init__(self, tmp: Path) -> None:
        self.outbox = AsyncOutbox(
            Outbox(tmp / "outbox.sqlite", gateway="gw", site="s", max_rows=100_000, max_age_h=24)
        )
        self.sink = Sink(self.outbox, lambda: None)
        self.events: list[Event] = []
        self.health = Health(self.events.append)

    def events_of(self, source: str) -> list[tuple[str, str]]:
        return [(e.kind, e.state) for e in self.events if e.source == source]

    def close(self) -> None:
        self.outbox.close()


def run(coro_fn: Callable[[], Awaitable[Any]], timeout_s: float = 60) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout_s)

    return asyncio.run(main())


def assert_matches_profile(readings: list[Reading], device: str, profile_name: str) -> None:
    profile = load_profile(profile_name)
    assert isinstance(profile, ModbusProfile)
    got = {r.sensor: r for r in readings if r.sensor.startswith(device + ".")}
    assert set(got) == {f"{device}.{p.name}" for p in profile.points}
    for p in profile.points:
        reading = got[f"{device}.{p.name}"]
        assert reading.q is Quality.OK, reading
        assert reading.measurand() == p.quantity
        expected = VALUES[profile_name][p.name]
        if isinstance(expected, bool):
            assert reading.value() is expected
        else:
            assert math.isclose(
                float(reading.value()),
                expected,  # type: ignore[arg-type]
                abs_tol=abs(p.scale) / 2 + 1e-4,
            )


def tcp_bus(rig: Rig, port: int, device: str, profile: str) -> ModbusBus:
    config = ModbusTcpBus(
        kind="modbus_tcp",
        name="b",
        host="127.0.0.1",
        port=port,
        devices=[DeviceConfig(id=device, profile=profile)],
    )
    return ModbusBus(config, rig.sink, rig.health)


def unit(n: int, profile: str) -> ModbusUnit:
    return ModbusUnit(n, profile, lambda: VALUES[profile])


@pytest.mark.parametrize("profile", sorted(VALUES))
def test_every_modbus_profile_is_read_and_decoded_over_tcp(tmp_path: Path, profile: str) -> None:
    rig = Rig(tmp_path)

    async def scenario() -> list[Reading]:
        port = free_port()
        server = ModbusServer([unit(1, profile)], tcp_port=port)
        await server.start()
        bus = tcp_bus(rig, port, "dev", profile)
        try:
            readings = await bus.poll_once()
            assert rig.sink.counters.modbus_requests == bus.requests_per_cycle
            return readings
        finally:
            bus.client.close()
            await server.stop()

    readings = run(scenario)
    rig.close()
    assert_matches_profile(readings, "dev", profile)


def test_three_units_share_one_rs485_line_over_a_pty(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    pty = PtyPair("line", tmp_path)
    names = sorted(VALUES)

    async def scenario() -> list[Reading]:
        server = ModbusServer([unit(i + 1, p) for i, p in enumerate(names)], pty=pty)
        await server.start()
        bus = ModbusBus(
            ModbusRtuBus(
                kind="modbus_rtu",
                name="line",
                port=pty.host,
                baudrate=9600,
                parity="N",
                timeout_s=1.0,
                devices=[
                    DeviceConfig(id=f"d{i + 1}", profile=p, unit=i + 1) for i, p in enumerate(names)
                ],
            ),
            rig.sink,
            rig.health,
        )
        try:
            first = await bus.poll_once()
            second = await bus.poll_once()
            assert len(second) == len(first)
            return first
        finally:
            bus.client.close()
            await server.stop()

    try:
        readings = run(scenario)
    finally:
        pty.close()
        rig.close()
    for i, profile in enumerate(names):
        assert_matches_profile(readings, f"d{i + 1}", profile)


def test_reefer_coalesces_its_registers_into_one_request_per_table(tmp_path: Path) -> None:
    profile = load_profile("reefer_controller")
    assert isinstance(profile, ModbusProfile)
    rig = Rig(tmp_path)

    async def make() -> ModbusBus:
        return tcp_bus(rig, 1, "r", "reefer_controller")

    bus = run(make)
    rig.close()
    tables = {p.table for p in profile.points}
    assert len(profile.points) == 7
    assert bus.requests_per_cycle == len(tables) == 4


def test_silent_device_is_reported_once_and_backs_off_while_its_neighbour_keeps_polling(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    pty = PtyPair("line", tmp_path)

    async def scenario() -> tuple[list[list[Reading]], int]:
        bad = unit(1, "th_transmitter_int16")
        good = unit(2, "th_transmitter_int16")
        server = ModbusServer([bad, good], pty=pty)
        await server.start()
        cfg = ModbusRtuBus(
            kind="modbus_rtu",
            name="line",
            port=pty.host,
            timeout_s=0.3,
            backoff_min_s=30,
            backoff_max_s=60,
            devices=[
                DeviceConfig(id="bad", profile="th_transmitter_int16", unit=1),
                DeviceConfig(id="good", profile="th_transmitter_int16", unit=2),
            ],
        )
        bus = ModbusBus(cfg, rig.sink, rig.health)
        cycles = []
        try:
            cycles.append(await bus.poll_once())
            bad.mode = "silent"
            before = rig.sink.counters.modbus_requests
            for _ in range(5):
                cycles.append(await bus.poll_once())
            requests = rig.sink.counters.modbus_requests - before
            bad.mode = "ok"
            bus.devices[0].backoff.retry_at = 0  # the backoff has elapsed
            cycles.append(await bus.poll_once())
            return cycles, requests
        finally:
            bus.client.close()
            await server.stop()

    try:
        cycles, requests = run(scenario)
    finally:
        pty.close()
        rig.close()
    # device-level transitions, each once: ok -> no_response -> ok
    assert [s for k, s in rig.events_of("bad") if k == "device"] == ["ok", "no_response", "ok"]
    assert rig.events_of("good") == [("device", "ok")]
    for cycle in cycles[1:6]:
        bad_readings = [r for r in cycle if r.sensor.startswith("bad.")]
        good_readings = [r for r in cycle if r.sensor.startswith("good.")]
        assert {r.q for r in bad_readings} == {Quality.FAULT}
        assert {r.fault for r in bad_readings} == {"no_response"}
        assert {r.q for r in good_readings} == {Quality.OK}
    # one timed-out request to the silent unit, then backoff: 5 cycles × 2 requests for the
    # good unit (input registers, discrete input) + 1 for the bad one
    assert requests == 5 * 2 + 1
    assert rig.sink.counters.modbus_no_response >= 1
    assert {r.q for r in cycles[-1]} == {Quality.OK}


def test_exception_response_is_kept_apart_from_no_response(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    async def scenario() -> list[list[Reading]]:
        port = free_port()
        dev = unit(1, "reefer_controller")
        server = ModbusServer([dev], tcp_port=port)
        await server.start()
        bus = tcp_bus(rig, port, "r", "reefer_controller")
        try:
            dev.mode = "exception"
            cycles = [await bus.poll_once() for _ in range(3)]
            await server.stop()  # now nobody answers at all
            cycles += [await bus.poll_once() for _ in range(2)]
            return cycles
        finally:
            bus.client.close()

    cycles = run(scenario)
    rig.close()
    assert {r.fault for r in cycles[0]} == {"exception_4"}
    assert {r.fault for r in cycles[-1]} == {"no_response"}
    device_events = [e for e in rig.events if e.kind == "device"]
    assert [e.state for e in device_events] == ["exception", "no_response"]
    assert "exception 4 (device failure)" in (device_events[0].detail or "")
    # one per exception answered: the reefer's four blocks, three polls
    assert rig.sink.counters.modbus_exceptions == 3 * 4


def test_probe_sentinel_becomes_a_fault_reading_and_one_sensor_event(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    async def scenario() -> list[list[Reading]]:
        port = free_port()
        dev = unit(1, "th_transmitter_int16")
        server = ModbusServer([dev], tcp_port=port)
        await server.start()
        bus = tcp_bus(rig, port, "t", "th_transmitter_int16")
        try:
            cycles = [await bus.poll_once()]
            dev.mode = "sentinel"
            await server.refresh()
            cycles += [await bus.poll_once() for _ in range(3)]
            return cycles
        finally:
            bus.client.close()
            await server.stop()

    cycles = run(scenario)
    rig.close()
    temp = [next(r for r in c if r.sensor == "t.temp") for c in cycles]
    assert temp[0].q is Quality.OK
    assert all(r.q is Quality.FAULT and r.fault == "sentinel" for r in temp[1:])
    assert rig.events_of("t.temp") == [("sensor", "fault")]


async def _drain(rig: Rig) -> list[Reading]:
    from coldchain import wire
    from coldchain.wire import Stream

    out: list[Reading] = []
    while msg := await rig.outbox.call(rig.outbox.sync.seal, Stream.READINGS, limit=5000):
        batch = wire.decode(Stream.READINGS, msg.payload)
        assert isinstance(batch, wire.ReadingsBatch)
        out += batch.readings
    return out


async def run_line_device(
    rig: Rig, device: AsciiDevice | GpsDevice, writer: LineWriter, modes: list[str], each_s: float
) -> list[Reading]:
    """Run a serial device against a line writer through modes (ok, garbled …), then
    stop both and return the readings that reached the outbox."""
    tasks = [asyncio.ensure_future(device.run()), asyncio.ensure_future(writer.run())]
    for mode in modes:
        writer.mode = mode  # type: ignore[assignment]
        await asyncio.sleep(each_s)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return await _drain(rig)


def test_ascii_probe_lines_are_read_and_garbled_lines_kept_aside(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    pty = PtyPair("probe", tmp_path)
    temps = iter([-18.3, -18.4, -18.2, -18.1, -18.0, -17.9, -17.8, -17.7] * 10)

    async def scenario() -> list[Reading]:
        writer = LineWriter(pty, 0.05, lambda: [ascii_probe_line(next(temps))])
        device = AsciiDevice(
            SerialAsciiBus(
                kind="serial_ascii",
                name="p",
                port=pty.host,
                devices=[DeviceConfig(id="probe", profile="ascii_temp_probe")],
            ),
            rig.sink,
            rig.health,
        )
        return await run_line_device(rig, device, writer, ["ok", "garbled", "ok"], 0.6)

    try:
        readings = run(scenario)
        rejects = rig.outbox.sync.rejects()
    finally:
        pty.close()
        rig.close()
    assert len(readings) >= 10
    assert all(
        r.q is Quality.OK and r.temp_c is not None and -18.5 < r.temp_c < -17.5 for r in readings
    )
    assert [s for k, s in rig.events_of("probe") if k == "device"] == ["ok", "garbled", "ok"]
    assert rejects and all(
        reason in ("checksum mismatch", "does not match the line format")
        for _, _, reason, _ in rejects
    )
    assert rig.sink.counters.lines_garbled == len(rejects)


def gps_device(rig: Rig, pty: PtyPair) -> GpsDevice:
    """A truck's GPS receiver on the host side of a pty pair."""
    return GpsDevice(
        NmeaGpsBus(
            kind="nmea_gps",
            name="g",
            port=pty.host,
            devices=[DeviceConfig(id="truck-gps", profile="nmea_gps")],
        ),
        rig.sink,
        rig.health,
    )


def test_gps_fix_becomes_a_position_reading(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    pty = PtyPair("gps", tmp_path)
    where = Position(35.7521, 103.0118, 36.0, 215.5, None)

    async def scenario() -> list[Reading]:
        gsv = f"$GPGSV,3,1,11*{_checksum('GPGSV,3,1,11')}\r\n".encode()
        writer = LineWriter(pty, 0.05, lambda: [gsv, *nmea_sentences(where)])
        device = gps_device(rig, pty)
        return await run_line_device(rig, device, writer, ["ok"], 0.5)

    try:
        readings = run(scenario)
    finally:
        pty.close()
        rig.close()
    assert len(readings) == 1  # at most one position per interval_s
    pos = readings[0]
    assert pos.sensor == "truck-gps.pos"
    assert pos.lat_deg is not None and pos.lon_deg is not None
    assert math.isclose(pos.lat_deg, 35.7521, abs_tol=1e-5)
    assert math.isclose(pos.lon_deg, 103.0118, abs_tol=1e-5)
    assert pos.speed_kmh is not None and math.isclose(pos.speed_kmh, 36.0, abs_tol=0.2)
    assert sorted(rig.events_of("truck-gps")) == [("device", "ok"), ("gps", "fix")]


def test_a_gps_receivers_utc_checks_the_gateways_clock_over_a_real_serial_line(
    tmp_path: Path,
) -> None:
    """On a truck the GPS receiver is the reference: its fixes' UTC, 10 minutes behind
    the gateway's clock here, and the gateway's clock check says so once."""
    rig = Rig(tmp_path)
    pty = PtyPair("gps", tmp_path)
    where = Position(35.7521, 103.0118, 36.0, 215.5, None)
    told: list[tuple[str, str]] = []
    check = ClockCheck(lambda state, detail: told.append((state, detail)), 60_000)

    async def scenario() -> list[Reading]:
        writer = LineWriter(
            pty,
            0.05,
            lambda: nmea_sentences(where, datetime.now(UTC) - timedelta(minutes=10)),
        )
        device = gps_device(rig, pty)
        device.on_time = lambda utc_ms: check.observe(utc_ms, "GPS receiver")
        return await run_line_device(rig, device, writer, ["ok"], 0.5)

    try:
        run(scenario)
    finally:
        pty.close()
        rig.close()
    assert check.checks >= 3  # every valid RMC fix
    assert len(told) == 1 and told[0][0] == "off", told
    assert told[0][1] in (
        "10 min 0 s ahead of the GPS receiver's clock",
        "10 min 1 s ahead of the GPS receiver's clock",  # the sentence's whole second
    )


async def misbehaving_modbus_device(port: int) -> asyncio.Server:
    """A real Modbus TCP device that answers every request wrongly, by unit id: 1 with
    fewer registers than asked, 2 with an odd byte count, 3 with another function code."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _pid, length, unit_id = struct.unpack(">HHHB", await reader.readexactly(7))
                function = (await reader.readexactly(length - 1))[0]
                body = {
                    1: bytes([function, 2, 0, 1]),
                    2: bytes([function, 3, 0, 1, 2]),
                }.get(unit_id, bytes([1, 1, 0]))
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit_id) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", port)


def test_malformed_modbus_answers_are_faults_of_their_device_and_the_next_bus_keeps_polling(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)

    async def scenario() -> tuple[list[list[Reading]], list[Reading]]:
        bad_port, good_port = free_port(), free_port()
        bad_device = await misbehaving_modbus_device(bad_port)
        good_server = ModbusServer([unit(1, "th_transmitter_int16")], tcp_port=good_port)
        await good_server.start()
        bad_bus = ModbusBus(
            ModbusTcpBus(
                kind="modbus_tcp",
                name="bad",
                host="127.0.0.1",
                port=bad_port,
                timeout_s=1.0,
                devices=[
                    DeviceConfig(id=f"broken{u}", profile="th_transmitter_int16", unit=u)
                    for u in (1, 2, 3)
                ],
            ),
            rig.sink,
            rig.health,
        )
        good_bus = tcp_bus(rig, good_port, "good", "th_transmitter_int16")
        try:
            cycles = [await bad_bus.poll_once() for _ in range(3)]
            return cycles, await good_bus.poll_once()
        finally:
            bad_bus.client.close()
            good_bus.client.close()
            bad_device.close()
            await good_server.stop()

    cycles, good = run(scenario)
    rig.close()
    for readings in cycles:
        assert len(readings) == 9  # three devices, three points each, every cycle
        assert all(r.q is Quality.FAULT and r.fault == "bad_response" for r in readings)
    for u in (1, 2, 3):
        # once per change of state, not once per cycle; no door or value from a bad answer
        assert rig.events_of(f"broken{u}") == [("device", "garbled")]
        assert not rig.events_of(f"broken{u}.door")
    assert rig.sink.counters.modbus_bad_responses == 9
    assert_matches_profile(good, "good", "th_transmitter_int16")


def test_a_gga_takes_speed_and_course_only_from_the_rmc_of_its_own_epoch(tmp_path: Path) -> None:
    """Receivers send RMC and GGA for each fix, in either order: a GGA never carries the
    previous epoch's speed, and a position with no RMC of its epoch has none."""
    rig = Rig(tmp_path)
    pty = PtyPair("gps", tmp_path)
    device = gps_device(rig, pty)
    device.profile = device.profile.model_copy(
        update={"interval_s": 0.0, "sentences": ["RMC", "GGA"]}
    )
    first = datetime(2026, 12, 7, 6, 15, 30, tzinfo=UTC)
    then = first + timedelta(seconds=1)
    moving = Position(35.6, 103.8, 40.0, 90.0, None)
    rmc_first, _gga_first = nmea_sentences(moving, first)
    _rmc_then, gga_then = nmea_sentences(moving, then)
    try:
        assert device.parse(gga_then.strip(), 0) == []  # held: its epoch's RMC is to come
        (alone,) = device.parse(rmc_first.strip(), 0)  # another epoch's: the GGA goes alone
        assert alone.speed_kmh is None and alone.course_deg is None
        rmc_then, gga_then = nmea_sentences(moving, then)
        (paired,) = device.parse(rmc_then.strip(), 0)  # the GGA's own epoch: a pair
        assert paired.speed_kmh is not None and math.isclose(paired.speed_kmh, 40.0, abs_tol=0.2)
        assert paired.course_deg == 90.0
    finally:
        pty.close()
        rig.close()


def test_a_block_the_device_refuses_faults_only_its_own_points(tmp_path: Path) -> None:
    """A transmitter without function code 2 (discrete inputs) answers exception 1 for
    its door contact: its temperature and humidity still come through."""
    rig = Rig(tmp_path)

    async def scenario() -> list[Reading]:
        port = free_port()
        dev = unit(1, "th_transmitter_int16")
        dev.refused = frozenset({2})
        server = ModbusServer([dev], tcp_port=port)
        await server.start()
        bus = tcp_bus(rig, port, "th", "th_transmitter_int16")
        try:
            return await bus.poll_once()
        finally:
            bus.client.close()
            await server.stop()

    readings = {r.sensor: r for r in run(scenario)}
    rig.close()
    assert readings["th.door"].q is Quality.FAULT and readings["th.door"].fault == "exception_1"
    assert readings["th.temp"].q is Quality.OK and readings["th.rh"].q is Quality.OK
    (event,) = [e for e in rig.events if e.kind == "device"]
    assert event.state == "exception" and "exception 1" in (event.detail or "")


def test_exception_11_from_an_rs485_gateway_is_no_answer_and_backs_off(tmp_path: Path) -> None:
    """A Modbus TCP-to-RS-485 converter answers exception 11 for a sensor behind it that
    did not answer: that is a silent device, asked again only after its backoff."""
    rig = Rig(tmp_path)

    async def scenario() -> tuple[list[list[Reading]], int]:
        port = free_port()
        dev = unit(1, "th_transmitter_int16")
        dev.mode = "gateway_no_answer"
        server = ModbusServer([dev], tcp_port=port)
        await server.start()
        bus = tcp_bus(rig, port, "th", "th_transmitter_int16")
        try:
            cycles = [await bus.poll_once() for _ in range(3)]
            return cycles, rig.sink.counters.modbus_requests
        finally:
            bus.client.close()
            await server.stop()

    cycles, requests = run(scenario)
    rig.close()
    assert all({r.fault for r in cycle} == {"no_response"} for cycle in cycles)
    assert requests == 1  # the next polls wait for the backoff
    (event,) = [e for e in rig.events if e.kind == "device"]
    assert event.state == "no_response" and "next attempt in" in (event.detail or "")
