"""One poller per Modbus bus: a TCP endpoint or an RS-485 line with several unit ids.

Each tick (aligned to the wall clock), the devices of the bus are read one after the
other — one request at a time on the line — with their registers coalesced into as
few requests as the Modbus limits allow. pymodbus errors are translated here, once:

- no answer (timeout, refused, lost connection, serial I/O)  -> :class:`NoResponse`:
  the device's readings are faults (``no_response``) and the device backs off;
- an exception response                                       -> :class:`ExceptionResponse`:
  faults (``exception_N``) of that block's points only (a transmitter that does not
  implement one function code keeps its other readings), no backoff: the line works;
- exception 10 or 11 (what an RS-485 gateway answers for a device behind it that did
  not answer)                                                   -> :class:`NoResponse`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from pymodbus import ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.pdu import ExceptionResponse as PduExceptionResponse

from coldchain.backoff import Backoff
from coldchain.wire import Quality, Quantity, Reading
from gateway.clock import now_ms
from gateway.config import DeviceConfig, ModbusRtuBus, ModbusTcpBus
from gateway.decode import ReadBlock, decode_point, plan_reads, setting_of
from gateway.errors import BadResponse, ExceptionResponse, NoResponse
from gateway.health import Health
from gateway.profiles import ModbusProfile, RegisterPoint, Table, load_profile
from gateway.sink import Sink

log = logging.getLogger("coldchain.gateway.modbus")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # we log state changes ourselves

MODBUS_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusDevice:
    """One unit on a bus: its read plan, sensor ids and backoff."""

    def __init__(self, config: DeviceConfig, bus_backoff: tuple[float, float]) -> None:
        profile = load_profile(config.profile)
        assert isinstance(profile, ModbusProfile)
        self.id = config.id
        self.unit = config.unit
        self.profile = profile
        self.blocks = plan_reads(
            profile.points,
            profile.max_registers_per_read,
            profile.max_bits_per_read,
            profile.max_gap,
        )
        self.sensor = {p.name: f"{config.id}.{p.name}" for p in profile.points}
        #: the points other points take their unit or scale from
        self.setting_points = {
            chosen.point
            for p in profile.points
            for chosen in (p.scale_from, p.unit_from)
            if chosen is not None
        }
        self.backoff = Backoff(*bus_backoff)
        #: the last state of each door and alarm bit (an event per change)
        self.last_flag: dict[str, bool] = {}

    def settings(self, answered: list[tuple[ReadBlock, list[int] | list[bool]]]) -> dict[str, int]:
        """The raw values of the setting registers read this cycle."""
        return {
            p.name: setting_of(p, block.slice_for(p, values))
            for block, values in answered
            for p in block.points
            if p.name in self.setting_points
        }

    def fault_readings(self, ts_ms: int, fault: str) -> list[Reading]:
        return self._faults(self.profile.points, ts_ms, fault)

    def block_faults(self, block: ReadBlock, ts_ms: int, fault: str) -> list[Reading]:
        return self._faults(block.points, ts_ms, fault)

    def _faults(self, points: Sequence[RegisterPoint], ts_ms: int, fault: str) -> list[Reading]:
        return [
            Reading(
                sensor=self.sensor[p.name],
                ts_ms=ts_ms,
                q=Quality.FAULT,
                fault=fault,
                quantity=p.quantity,
            )
            for p in points
            if p.publish
        ]


#: "gateway path unavailable", "gateway target device failed to respond": nobody answered
NO_ANSWER_CODES = frozenset({10, 11})

Reader = Callable[[int, int, int], Awaitable[object]]


class ModbusBus:
    def __init__(self, config: ModbusTcpBus | ModbusRtuBus, sink: Sink, health: Health) -> None:
        self.config = config
        self.sink = sink
        self.health = health
        self.devices = [
            ModbusDevice(d, (config.backoff_min_s, config.backoff_max_s)) for d in config.devices
        ]
        self.client = self._make_client()
        self._link_backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self.requests_per_cycle = sum(len(d.blocks) for d in self.devices)

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        cfg = self.config
        # reconnect_delay=0: pymodbus does not reconnect on its own; we do, with backoff
        if isinstance(cfg, ModbusTcpBus):
            return AsyncModbusTcpClient(
                cfg.host,
                port=cfg.port,
                timeout=cfg.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=cfg.name,
            )
        return AsyncModbusSerialClient(
            cfg.port,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=cfg.bytesize,
            timeout=cfg.timeout_s,
            retries=0,
            reconnect_delay=0,
            name=cfg.name,
        )

    @property
    def where(self) -> str:
        cfg = self.config
        return f"{cfg.host}:{cfg.port}" if isinstance(cfg, ModbusTcpBus) else cfg.port

    async def run(self) -> None:
        interval = self.config.interval_s
        failing: str | None = None
        try:
            while True:
                await _sleep_until_next_tick(interval)
                started = time.monotonic()
                try:
                    readings = await self.poll_once()
                except Exception as exc:  # one bus's bug never stops the gateway
                    self.sink.counters.bus_failures += 1
                    if repr(exc) != failing:  # once per change, not per cycle
                        log.error("bus %s: a poll cycle failed: %r", self.where, exc, exc_info=exc)
                    failing = repr(exc)
                    continue
                if failing is not None:
                    log.info("bus %s: polling again", self.where)
                    failing = None
                await self.sink.add_readings(readings)
                self.sink.counters.poll_cycles += 1
                if time.monotonic() - started > interval:
                    self.sink.counters.overruns += 1
        finally:
            self.client.close()

    async def poll_once(self) -> list[Reading]:
        readings: list[Reading] = []
        link_ok = await self._ensure_connected()
        for device in self.devices:
            readings.extend(await self._poll_device(device, link_ok))
        return readings

    async def _ensure_connected(self) -> bool:
        if self.client.connected:
            return True
        if self._link_backoff.waiting():
            return False
        try:
            ok = await self.client.connect()
        except (ModbusException, OSError) as exc:
            log.debug("connect to %s failed: %s", self.where, exc)
            ok = False
        if ok:
            self._link_backoff.succeeded()
            return True
        self._link_backoff.failed()
        return False

    async def _poll_device(self, device: ModbusDevice, link_ok: bool) -> list[Reading]:
        ts = now_ms()
        if not link_ok:
            self._mark_failed(
                device, NoResponse(device.id, f"cannot connect to {self.where}"), ts, backoff=False
            )
            return device.fault_readings(ts, "no_response")
        if device.backoff.waiting():
            return device.fault_readings(ts, "no_response")
        answered: list[tuple[ReadBlock, list[int] | list[bool]]] = []
        refused: list[tuple[ReadBlock, str]] = []  # a block the device refused, and why
        failure: ExceptionResponse | None = None
        for block in device.blocks:
            try:
                answered.append((block, await self._read(device, block)))
            except NoResponse as exc:
                self._mark_failed(device, exc, now_ms(), backoff=True)
                return device.fault_readings(ts, "no_response")
            except ExceptionResponse as exc:
                if exc.code in NO_ANSWER_CODES:  # a gateway answered for a silent device
                    silent = NoResponse(device.id, exc.detail)
                    self._mark_failed(device, silent, now_ms(), backoff=True)
                    return device.fault_readings(ts, "no_response")
                self.sink.counters.modbus_exceptions += 1
                refused.append((block, f"exception_{exc.code}"))
                failure = failure or exc
            except BadResponse as exc:  # garbled: nothing it says this time is believed
                return self._garbled(device, exc, ts)
        ts = now_ms()
        readings = [
            fault for block, why in refused for fault in device.block_faults(block, ts, why)
        ]
        try:  # a refused block marks only its own points
            settings = device.settings(answered)
        except (ValueError, IndexError) as exc:  # a response that does not fit its request
            return self._garbled(device, BadResponse(device.id, f"settings: {exc}"), ts)
        try:
            for block, vals in answered:
                readings += [
                    self._reading(device, p, block.slice_for(p, vals), settings, ts)
                    for p in block.points
                    if p.publish
                ]
        except BadResponse as exc:
            return self._garbled(device, exc, ts)
        device.backoff.succeeded()  # it answered
        if failure is not None:
            self.health.report("device", device.id, failure.state, ts, failure.detail)
        else:
            self.health.report("device", device.id, "ok", ts)
        return readings

    def _garbled(self, device: ModbusDevice, exc: BadResponse, ts: int) -> list[Reading]:
        """An answer that does not fit its request: the line or the device is not to be
        believed, so none of the device's readings are (no backoff: it answers)."""
        self.sink.counters.modbus_bad_responses += 1
        self.health.report("device", device.id, exc.state, ts, exc.detail)
        return device.fault_readings(ts, "bad_response")

    def _mark_failed(self, device: ModbusDevice, exc: NoResponse, ts: int, backoff: bool) -> None:
        """Nobody answered: every reading of the device is a fault; ``backoff``: it is
        asked again only after its backoff (its link works, it is silent)."""
        self.sink.counters.modbus_no_response += 1
        detail = exc.detail
        if backoff:
            delay = device.backoff.failed()
            detail = f"{detail}; next attempt in {delay:.0f} s"
        self.health.report("device", device.id, exc.state, ts, detail)

    def _reading(
        self,
        device: ModbusDevice,
        point: RegisterPoint,
        regs: list[int] | list[bool],
        settings: dict[str, int],
        ts: int,
    ) -> Reading:
        try:
            decoded = decode_point(point, regs, settings)
        except (ValueError, IndexError) as exc:  # a response that does not fit its request
            raise BadResponse(device.id, f"{point.name}: {exc}") from None
        sensor = device.sensor[point.name]
        if point.quantity is Quantity.DOOR_OPEN or point.alarm is not None:
            on = bool(decoded.value)
            if device.last_flag.get(sensor) != on:
                device.last_flag[sensor] = on
                if point.alarm is not None:
                    self.health.report("alarm", sensor, "on" if on else "off", ts, point.alarm)
                else:
                    self.health.report("door", sensor, "open" if on else "closed", ts)
        elif not point.table.is_bit and point.bit is None:
            self.health.report("sensor", sensor, decoded.quality.value, ts, decoded.fault)
        reading = Reading(sensor=sensor, ts_ms=ts, q=decoded.quality, fault=decoded.fault)
        if decoded.value is None:
            reading.quantity = point.quantity
        else:
            setattr(reading, point.quantity.value, decoded.value)
        return reading

    async def _read(self, device: ModbusDevice, block: ReadBlock) -> list[int] | list[bool]:
        client = self.client
        fn = {
            Table.COIL: client.read_coils,
            Table.DISCRETE: client.read_discrete_inputs,
            Table.HOLDING: client.read_holding_registers,
            Table.INPUT: client.read_input_registers,
        }[block.table]
        self.sink.counters.modbus_requests += 1
        try:
            response = await fn(block.address, count=block.count, device_id=device.unit)
        except (TimeoutError, ModbusException, OSError) as exc:
            raise NoResponse(
                device.id,
                f"no answer from unit {device.unit} at {self.where}: {type(exc).__name__}",
            ) from None
        except Exception as exc:  # pymodbus failing to parse what came back
            raise BadResponse(
                device.id, f"unreadable answer from unit {device.unit}: {exc!r}"[:200]
            ) from None
        if isinstance(response, PduExceptionResponse):
            code = int(response.exception_code)
            raise ExceptionResponse(
                device.id,
                code,
                f"unit {device.unit} answered exception {code} "
                f"({MODBUS_EXCEPTION_NAMES.get(code, 'unknown')}) to {block.table} "
                f"{block.address}+{block.count}",
            )
        if response.isError():
            raise NoResponse(device.id, f"bad response from unit {device.unit}: {response}")
        got = response.bits if block.table.is_bit else response.registers
        if (
            got is None
            or len(got) < block.count
            or (not block.table.is_bit and len(got) != block.count)
        ):
            raise BadResponse(
                device.id,
                f"unit {device.unit} answered {0 if got is None else len(got)} "
                f"{'bits' if block.table.is_bit else 'registers'} to a request for "
                f"{block.table} {block.address}+{block.count}",
            )
        return list(got[: block.count])


async def _sleep_until_next_tick(interval_s: float) -> None:
    now = time.time()
    next_tick = (int(now / interval_s) + 1) * interval_s
    await asyncio.sleep(next_tick - now)
