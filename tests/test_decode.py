"""Register decoding (table-driven and property-based) and register coalescing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coldchain.wire import Quality, Quantity
from gateway.decode import decode_point, decode_registers, encode_registers, plan_reads
from gateway.profiles import DataType, RegisterPoint, Table

# (registers as the device sends them, type, byte order, word order, value)
TABLE = [
    ([0x00FF], DataType.INT16, "big", "big", 255),
    ([0xFF38], DataType.INT16, "big", "big", -200),
    ([0x38FF], DataType.INT16, "little", "big", -200),
    ([0x8000], DataType.INT16, "big", "big", -32768),
    ([0xFF38], DataType.UINT16, "big", "big", 65336),
    ([0x38FF], DataType.UINT16, "little", "big", 65336),
    ([0x0001, 0x0002], DataType.INT32, "big", "big", 0x00010002),
    ([0x0002, 0x0001], DataType.INT32, "big", "little", 0x00010002),
    ([0x0100, 0x0200], DataType.INT32, "little", "big", 0x00010002),
    ([0x0200, 0x0100], DataType.INT32, "little", "little", 0x00010002),
    ([0xFFFF, 0xB1E0], DataType.INT32, "big", "big", -20000),
    ([0xB1E0, 0xFFFF], DataType.INT32, "big", "little", -20000),
    ([0xFFFF, 0xFFFE], DataType.UINT32, "big", "big", 4294967294),
    ([0xFFFE, 0xFFFF], DataType.UINT32, "big", "little", 4294967294),
    ([0x0000, 0x1234], DataType.UINT32, "little", "big", 0x3412),
    ([0xC190, 0x0000], DataType.FLOAT32, "big", "big", -18.0),  # ABCD
    ([0x0000, 0xC190], DataType.FLOAT32, "big", "little", -18.0),  # CDAB
    ([0x90C1, 0x0000], DataType.FLOAT32, "little", "big", -18.0),  # BADC
    ([0x0000, 0x90C1], DataType.FLOAT32, "little", "little", -18.0),  # DCBA
    ([0x4049, 0x0FDB], DataType.FLOAT32, "big", "big", 3.1415927410125732),
]


@pytest.mark.parametrize(("regs", "dtype", "byte_order", "word_order", "value"), TABLE)
def test_registers_decode_to_the_documented_value(regs, dtype, byte_order, word_order, value):
    assert decode_registers(regs, dtype, byte_order, word_order) == value


@pytest.mark.parametrize(("regs", "dtype", "byte_order", "word_order", "value"), TABLE)
def test_values_encode_to_the_documented_registers(regs, dtype, byte_order, word_order, value):
    assert encode_registers(value, dtype, byte_order, word_order) == regs


ORDERS = st.sampled_from(["big", "little"])
VALUES = {
    DataType.INT16: st.integers(-(2**15), 2**15 - 1),
    DataType.UINT16: st.integers(0, 2**16 - 1),
    DataType.INT32: st.integers(-(2**31), 2**31 - 1),
    DataType.UINT32: st.integers(0, 2**32 - 1),
    DataType.FLOAT32: st.floats(width=32, allow_nan=False),
}


@pytest.mark.parametrize("dtype", list(VALUES))
@given(data=st.data(), byte_order=ORDERS, word_order=ORDERS)
def test_every_type_and_order_round_trips(dtype, data, byte_order, word_order):
    value = data.draw(VALUES[dtype])
    regs = encode_registers(value, dtype, byte_order, word_order)
    assert len(regs) == dtype.registers
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_registers(regs, dtype, byte_order, word_order) == value


@given(
    regs=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
    byte_order=ORDERS,
    word_order=ORDERS,
)
def test_any_two_registers_decode_as_float_without_error(regs, byte_order, word_order):
    value = decode_registers(regs, DataType.FLOAT32, byte_order, word_order)
    assert isinstance(value, float)


def point(**kw) -> RegisterPoint:
    base = {
        "name": "temp",
        "quantity": Quantity.TEMP_C,
        "table": Table.INPUT,
        "address": 0,
        "type": DataType.INT16,
        "scale": 0.1,
    }
    return RegisterPoint(**(base | kw))


@pytest.mark.parametrize(
    ("p", "regs", "value", "quality", "fault"),
    [
        (point(), [0xFF4C], -18.0, Quality.OK, None),
        (point(fault_values=[32767, -32768]), [0x7FFF], None, Quality.FAULT, "sentinel"),
        (point(fault_values=[32767, -32768]), [0x8000], None, Quality.FAULT, "sentinel"),
        (point(valid_min=-40, valid_max=80), [900], None, Quality.OUT_OF_RANGE, None),
        (point(scale=1.0, offset=-40.0, type=DataType.UINT16), [22], -18.0, Quality.OK, None),
        (
            point(type=DataType.FLOAT32, scale=1.0),
            [0x7FC0, 0x0000],
            None,
            Quality.FAULT,
            "sentinel",
        ),
        (
            point(
                name="door",
                quantity=Quantity.DOOR_OPEN,
                table=Table.DISCRETE,
                type=DataType.BOOL,
                scale=1.0,
                invert=True,
            ),
            [False],
            True,
            Quality.OK,
            None,
        ),
    ],
)
def test_point_decoding_marks_quality(p, regs, value, quality, fault):
    decoded = decode_point(p, regs)
    assert decoded.quality is quality
    assert decoded.fault == fault
    if value is not None:
        assert decoded.value == value
    elif quality is Quality.OUT_OF_RANGE:
        assert decoded.value == 90.0
    else:
        assert decoded.value is None


@given(raw=st.integers(-(2**15), 2**15 - 1))
def test_scaled_int16_matches_arithmetic(raw):
    decoded = decode_point(point(), encode_registers(raw, DataType.INT16))
    assert decoded.value is not None
    assert math.isclose(float(decoded.value), raw * 0.1, abs_tol=1e-6)


def test_ten_contiguous_registers_cost_one_request():
    points = [point(name=f"p{i}", address=100 + i) for i in range(10)]
    blocks = plan_reads(points)
    assert [(b.table, b.address, b.count) for b in blocks] == [(Table.INPUT, 100, 10)]
    assert len(blocks[0].points) == 10


def test_coalescing_keeps_tables_apart_and_respects_gaps_and_limits():
    points = [
        point(name="a", address=0),
        point(name="b", address=1),
        point(name="c", address=5),  # gap of 3
        point(name="f", address=10, type=DataType.FLOAT32, scale=1.0),
        point(name="h", table=Table.HOLDING, address=0),
        point(
            name="d",
            quantity=Quantity.DOOR_OPEN,
            table=Table.DISCRETE,
            type=DataType.BOOL,
            scale=1.0,
            address=3,
        ),
    ]
    strict = plan_reads(points, max_gap=0)
    assert [(b.table, b.address, b.count) for b in strict] == [
        (Table.DISCRETE, 3, 1),
        (Table.HOLDING, 0, 1),
        (Table.INPUT, 0, 2),
        (Table.INPUT, 5, 1),
        (Table.INPUT, 10, 2),
    ]
    bridged = plan_reads(points, max_gap=4)
    assert [(b.table, b.address, b.count) for b in bridged] == [
        (Table.DISCRETE, 3, 1),
        (Table.HOLDING, 0, 1),
        (Table.INPUT, 0, 12),
    ]
    limited = plan_reads([point(name=f"p{i}", address=i) for i in range(300)])
    assert [(b.address, b.count) for b in limited] == [(0, 125), (125, 125), (250, 50)]


@given(
    addresses=st.sets(st.integers(0, 400), min_size=1, max_size=60),
    max_registers=st.integers(2, 125),
    max_gap=st.integers(0, 5),
)
def test_read_plan_covers_every_point_within_limits(addresses, max_registers, max_gap):
    points = [point(name=f"p{a}", address=a) for a in addresses]
    blocks = plan_reads(points, max_registers=max_registers, max_gap=max_gap)
    covered = [p.name for b in blocks for p in b.points]
    assert sorted(covered) == sorted(p.name for p in points)
    for b in blocks:
        assert b.count <= max_registers
        for p in b.points:
            assert b.address <= p.address and p.address + 1 <= b.end
