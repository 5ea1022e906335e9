"""Registers in, values out; and the read plan that coalesces adjacent registers.

Byte order is the order of the two bytes inside each 16-bit register ("big": high byte
first, as the Modbus spec sends them). Word order is the order of the registers of a
32-bit value ("big": the first register holds the high word, often written ABCD;
"little": CDAB).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from coldchain.wire import Quality
from gateway.profiles import DataType, Order, RegisterPoint, Table

_STRUCT = {
    DataType.INT16: "h",
    DataType.INT16_SM: "H",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
}


def _swap16(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def decode_registers(
    regs: list[int], dtype: DataType, byte_order: Order = "big", word_order: Order = "big"
) -> int | float:
    """The raw (unscaled) value held by ``regs``, as the device meant it."""
    if len(regs) != dtype.registers:
        raise ValueError(f"{dtype} needs {dtype.registers} registers, got {len(regs)}")
    words = list(regs)
    if byte_order == "little":
        words = [_swap16(w) for w in words]
    if word_order == "little":
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    value: int | float = struct.unpack(f">{_STRUCT[dtype]}", raw)[0]
    if dtype is DataType.INT16_SM and int(value) & 0x8000:
        return -(int(value) & 0x7FFF)
    return value


def encode_registers(
    value: int | float, dtype: DataType, byte_order: Order = "big", word_order: Order = "big"
) -> list[int]:
    """The inverse of :func:`decode_registers` (used by the simulators and the tests)."""
    if dtype is DataType.INT16_SM and value < 0:
        value = 0x8000 | int(-value)
    raw = struct.pack(f">{_STRUCT[dtype]}", value)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [_swap16(w) for w in words]
    return words


def raw_for_value(point: RegisterPoint, value: float, scale: float | None = None) -> int | float:
    """The raw register value a device would hold for an engineering value."""
    raw = (value - point.offset) / (point.scale if scale is None else scale)
    return raw if point.type is DataType.FLOAT32 else round(raw)


@dataclass(frozen=True, slots=True)
class Decoded:
    value: float | bool | None
    quality: Quality
    fault: str | None = None


_UNSIGNED = {DataType.INT16: DataType.UINT16, DataType.INT32: DataType.UINT32}


def setting_of(point: RegisterPoint, regs: list[int] | list[bool]) -> int:
    """The raw integer a setting register holds (its unit, its number of decimals)."""
    return int(
        decode_registers([int(r) for r in regs], point.type, point.byte_order, point.word_order)
    )


def decode_point(
    point: RegisterPoint,
    regs: list[int] | list[bool],
    settings: Mapping[str, int] | None = None,
) -> Decoded:
    """Turn the registers (or the bit) of one point into a value and its quality.
    ``settings``: the raw values of the device's setting points read in the same cycle
    (for ``scale_from`` and ``unit_from``)."""
    if point.table.is_bit:
        return Decoded(bool(regs[0]) != point.invert, Quality.OK)
    words = [int(r) for r in regs]
    if point.bit is not None:  # a flag of a status word: the bits as they are
        word = decode_registers(
            words, _UNSIGNED.get(point.type, point.type), point.byte_order, point.word_order
        )
        return Decoded(bool((int(word) >> point.bit) & 1) != point.invert, Quality.OK)
    raw = decode_registers(words, point.type, point.byte_order, point.word_order)
    if isinstance(raw, float) and not math.isfinite(raw):
        return Decoded(None, Quality.FAULT, "sentinel")
    if isinstance(raw, int):
        if raw in point.fault_values:
            return Decoded(None, Quality.FAULT, "sentinel")
        for codes in point.fault_ranges:
            if codes.min <= raw <= codes.max:
                return Decoded(None, Quality.FAULT, codes.describe(raw))
    scale, unit = point.scale, "c"
    if point.scale_from is not None:
        chosen = _chosen(point.scale_from.point, point.scale_from.values, settings)
        if chosen is None:
            return Decoded(None, Quality.FAULT, "unknown_setting")
        scale = float(chosen)
    if point.unit_from is not None:
        chosen = _chosen(point.unit_from.point, point.unit_from.values, settings)
        if chosen is None:
            return Decoded(None, Quality.FAULT, "unknown_setting")
        unit = str(chosen)
    value = raw * scale + point.offset
    # a device showing °F is published in °C, like every other: the wire has one unit
    value = round((value - 32) / 1.8, 3) if unit == "f" else round(value, 6)
    return Decoded(value, quality_of(value, point.valid_min, point.valid_max))


def _chosen(
    name: str, values: Mapping[str, float | str], settings: Mapping[str, int] | None
) -> float | str | None:
    raw = None if settings is None else settings.get(name)
    return None if raw is None else values.get(str(raw))


def quality_of(value: float, valid_min: float | None, valid_max: float | None) -> Quality:
    if (valid_min is not None and value < valid_min) or (
        valid_max is not None and value > valid_max
    ):
        return Quality.OUT_OF_RANGE
    return Quality.OK


@dataclass(slots=True)
class ReadBlock:
    """One Modbus request: a table, a start address, a count, and the points it serves."""

    table: Table
    address: int
    count: int
    points: list[RegisterPoint] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.address + self.count

    def slice_for(
        self, point: RegisterPoint, values: list[int] | list[bool]
    ) -> list[int] | list[bool]:
        start = point.address - self.address
        return values[start : start + point.register_count]


def plan_reads(
    points: list[RegisterPoint], max_registers: int = 125, max_bits: int = 2000, max_gap: int = 0
) -> list[ReadBlock]:
    """Group points into as few requests as the limits allow.

    Points of one table are merged when the merged request stays within the limit and
    the hole between them is at most ``max_gap`` (reading unmapped registers can draw
    an exception from strict devices, so the default is 0).
    """
    blocks: list[ReadBlock] = []
    ordered = sorted(points, key=lambda p: (list(Table).index(p.table), p.address))
    for point in ordered:
        limit = max_bits if point.table.is_bit else max_registers
        last = blocks[-1] if blocks else None
        point_end = point.address + point.register_count
        if (
            last is not None
            and last.table is point.table
            and point.address - last.end <= max_gap
            and max(last.end, point_end) - last.address <= limit
        ):
            last.count = max(last.end, point_end) - last.address
            last.points.append(point)
        else:
            blocks.append(ReadBlock(point.table, point.address, point.register_count, [point]))
    return blocks
