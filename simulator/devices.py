"""Simulated devices on real transports: pymodbus servers (TCP, RTU over a pty pair),
ASCII probes and GPS receivers writing to a pty pair.

Every device can be told to misbehave, for the tests and the scripted events:
``silent`` (no answer), ``exception`` (Modbus exception 4), ``sentinel`` (fault value
in its probe registers) and, for line devices, ``garbled`` (corrupt lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.decode import encode_registers, raw_for_value
from gateway.profiles import DataType as PointType
from gateway.profiles import ModbusProfile, Table, load_profile
from simulator.broker import stop_process
from simulator.route import _checksum

Mode = Literal["ok", "silent", "exception", "sentinel", "garbled", "gateway_no_answer"]
Values = Callable[[], dict[str, float | bool]]

_READ_FC = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}


class PtyPair:
    """Two connected pseudo-terminals made by socat; ``device`` end and ``host`` end.

    The socat process is ours: it is stopped by its PID, never by name.
    """

    def __init__(self, name: str, directory: Path | None = None) -> None:
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed (Debian package 'socat')")
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="coldchain-pty-")
        base = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        base.mkdir(parents=True, exist_ok=True)
        self.device = str(base / f"{name}.dev")
        self.host = str(base / f"{name}.tty")
        self.process = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.host}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.device) and os.path.exists(self.host)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"socat did not create the pty pair {name}")
            time.sleep(0.01)

    def close(self) -> None:
        stop_process(self.process, timeout_s=5)
        if self._tmp is not None:
            self._tmp.cleanup()


@dataclass
class ModbusUnit:
    """One simulated Modbus device (unit id) following a shipped profile."""

    unit: int
    profile_name: str
    values: Values
    mode: Mode = "ok"
    #: function codes the device does not implement (it answers exception 1)
    refused: frozenset[int] = frozenset()
    #: registers and bits laid out by hand, as a manual prints them: (table, protocol
    #: address) -> raw word or bit, written over what ``values`` gives
    raw: dict[tuple[Table, int], int | bool] = field(default_factory=dict)
    profile: ModbusProfile = field(init=False)

    def __post_init__(self) -> None:
        profile = load_profile(self.profile_name)
        assert isinstance(profile, ModbusProfile)
        self.profile = profile

    def sim_device(self) -> SimDevice:
        sizes = {t: 0 for t in Table}
        for p in self.profile.points:
            sizes[p.table] = max(sizes[p.table], p.address + p.register_count)
        for table, address in self.raw:
            sizes[table] = max(sizes[table], address + 1)
        blocks: list[list[SimData]] = []
        for table in (Table.COIL, Table.DISCRETE, Table.HOLDING, Table.INPUT):
            count = max(sizes[table], 1)
            if table.is_bit:
                blocks.append([SimData(0, count=count, values=False, datatype=DataType.BITS)])
            else:
                blocks.append([SimData(0, count=count, values=0, datatype=DataType.REGISTERS)])
        return SimDevice(
            id=self.unit, simdata=(blocks[0], blocks[1], blocks[2], blocks[3]), action=self._action
        )

    async def _action(
        self,
        fc: int,
        _start: int,
        _address: int,
        _count: int,
        _regs: list[int],
        _set: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if fc in self.refused:
            return ExcCodes.ILLEGAL_FUNCTION
        if self.mode == "gateway_no_answer":  # an RS-485 converter for a dead sensor
            return ExcCodes.GATEWAY_NO_RESPONSE
        return ExcCodes.DEVICE_FAILURE if self.mode == "exception" else None

    def register_writes(self) -> list[tuple[int, int, list[int] | list[bool]]]:
        """(function code, address, values) that bring the registers up to date."""
        values = self.values()
        writes: list[tuple[int, int, list[int] | list[bool]]] = []
        flags: dict[tuple[Table, int], int] = {}  # status words built bit by bit
        for p in self.profile.points:
            if p.name not in values:
                continue
            value = values[p.name]
            fc = _READ_FC[p.table]
            if p.table.is_bit:
                writes.append((fc, p.address, [bool(value) != p.invert]))
                continue
            if p.bit is not None:
                word = flags.setdefault((p.table, p.address), 0)
                flags[(p.table, p.address)] = word | ((bool(value) != p.invert) << p.bit)
                continue
            if self.mode == "sentinel" and p.fault_values:
                raw: int | float = p.fault_values[0]
            elif self.mode == "sentinel" and p.type is PointType.FLOAT32:
                raw = float("nan")
            else:  # a scale chosen by a device setting: the first one the profile lists
                scale = next(iter(p.scale_from.values.values())) if p.scale_from else None
                raw = raw_for_value(p, float(value), float(scale) if scale else None)
            writes.append(
                (fc, p.address, encode_registers(raw, p.type, p.byte_order, p.word_order))
            )
        for (table, address), word in flags.items():
            writes.append((_READ_FC[table], address, [word]))
        for (table, address), given in self.raw.items():
            bits: list[bool] = [bool(given)]
            words: list[int] = [int(given) & 0xFFFF]
            writes.append((_READ_FC[table], address, bits if table.is_bit else words))
        return writes


class ModbusServer:
    """A pymodbus server (TCP port, or RTU on the device end of a pty pair)."""

    def __init__(
        self,
        units: list[ModbusUnit],
        *,
        tcp_port: int | None = None,
        pty: PtyPair | None = None,
        baudrate: int = 9600,
    ) -> None:
        self.units = {u.unit: u for u in units}
        self.tcp_port = tcp_port
        self.pty = pty
        self.server: ModbusTcpServer | ModbusSerialServer
        devices = [u.sim_device() for u in units]
        if tcp_port is not None:
            self.server = ModbusTcpServer(
                devices, address=("127.0.0.1", tcp_port), trace_packet=self._trace_tcp
            )
        else:
            assert pty is not None
            self.server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=pty.device,
                baudrate=baudrate,
                trace_packet=self._trace_rtu,
            )

    @property
    def address(self) -> str:
        if self.tcp_port is not None:
            return f"tcp 127.0.0.1:{self.tcp_port}"
        assert self.pty is not None
        return f"rtu {self.pty.host}"

    def _silenced(self, unit: int) -> bool:
        u = self.units.get(unit)
        return u is not None and u.mode == "silent"

    def _trace_tcp(self, sending: bool, packet: bytes) -> bytes:
        if sending and len(packet) > 6 and self._silenced(packet[6]):
            return b""
        return packet

    def _trace_rtu(self, sending: bool, packet: bytes) -> bytes:
        if sending and packet and self._silenced(packet[0]):
            return b""
        return packet

    async def start(self) -> None:
        await self.refresh()
        await self.server.serve_forever(background=True)

    async def refresh(self) -> None:
        for unit in self.units.values():
            for fc, address, values in unit.register_writes():
                await self.server.context.async_setValues(unit.unit, fc, address, values)

    async def stop(self) -> None:
        await self.server.shutdown()  # type: ignore[no-untyped-call]


class LineWriter:
    """A serial device that prints lines: writes to the device end of a pty pair."""

    def __init__(self, pty: PtyPair, interval_s: float, lines: Callable[[], list[bytes]]) -> None:
        self.pty = pty
        self.interval_s = interval_s
        self.lines = lines
        self.mode: Mode = "ok"
        self._fd: int | None = None

    async def run(self) -> None:
        self._fd = os.open(self.pty.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            while True:
                if self.mode != "silent":
                    for line in self.lines():
                        if self.mode == "garbled":
                            line = garble(line)
                        with contextlib.suppress(BlockingIOError):
                            os.write(self._fd, line)
                await asyncio.sleep(self.interval_s)
        finally:
            os.close(self._fd)


def garble(line: bytes) -> bytes:
    """What a noisy RS-232 cable does: a flipped bit in the middle of the line."""
    data = bytearray(line)
    middle = len(data) // 2
    data[middle] ^= 0x04
    return bytes(data)


def ascii_probe_line(temp_c: float, probe: int = 1, ok: bool = True) -> bytes:
    body = f"TMP,{probe:02d},{temp_c:.1f},{'OK' if ok else 'ER'}"
    return f"${body}*{_checksum(body)}\r\n".encode("ascii")
