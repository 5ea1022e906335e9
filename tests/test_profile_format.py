"""The profile format says what real controllers and transmitters say (issue 17): one
bit of a status word, sign-magnitude words, error-code ranges, a scale or unit chosen
by one of the device's own registers, alarm bits, quantities beyond temperature, and
registers numbered from 1 as the manuals print them. Table-driven, each row as a
manual would print it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from coldchain.wire import Quality
from gateway.decode import decode_point, decode_registers, encode_registers, setting_of
from gateway.profiles import DataType, ModbusProfile, RegisterPoint


def point(**fields: Any) -> RegisterPoint:
    base: dict[str, Any] = {"name": "p", "quantity": "temp_c", "table": "holding", "address": 0}
    return RegisterPoint.model_validate(base | fields)


# (word as sent, value): bit 15 is the sign, the rest the magnitude
SIGN_MAGNITUDE = [(0x0000, 0), (0x0005, 5), (0x8005, -5), (0x7FFF, 32767), (0xFFFF, -32767)]


@pytest.mark.parametrize(("word", "value"), SIGN_MAGNITUDE)
def test_sign_magnitude_words_decode_and_encode(word: int, value: int) -> None:
    assert decode_registers([word], DataType.INT16_SM) == value
    assert encode_registers(value, DataType.INT16_SM) == [word]


# (point fields, registers, settings, value, quality, fault)
POINTS: list[tuple[dict[str, Any], list[int], dict[str, int], Any, Quality, str | None]] = [
    # one bit of a status word: bit 11 of 0x0800 is set, bit 3 is not; the sign bit too
    ({"quantity": "alarm_on", "alarm": "door", "type": "uint16", "bit": 11}, [0x0800], {},
     True, Quality.OK, None),
    ({"quantity": "alarm_on", "alarm": "door", "type": "uint16", "bit": 3}, [0x0800], {},
     False, Quality.OK, None),
    ({"quantity": "fan_on", "type": "int16", "bit": 15}, [0x8000], {}, True, Quality.OK, None),
    ({"quantity": "light_on", "type": "uint32", "bit": 17}, [0x0002, 0x0000], {},
     True, Quality.OK, None),
    ({"quantity": "compressor_on", "type": "uint16", "bit": 0, "invert": True}, [0x0001], {},
     False, Quality.OK, None),
    # "values below −32000 are error N": −32005 is error 5
    ({"scale": 0.1, "fault_ranges": [{"min": -32768, "max": -32001, "code_from": -32000,
      "reason": "error_{code}"}]}, [0x82FB], {}, None, Quality.FAULT, "error_5"),
    ({"scale": 0.1, "fault_ranges": [{"min": -32768, "max": -32001, "code_from": -32000,
      "reason": "error_{code}"}]}, [0x8300], {}, -3200.0, Quality.OK, None),
    ({"fault_ranges": [{"min": 32000, "max": 32767, "reason": "raw_{raw}"}]}, [0x7D00], {},
     None, Quality.FAULT, "raw_32000"),
    # sign-magnitude probe, tenths
    ({"type": "int16_sm", "scale": 0.1}, [0x80B9], {}, -18.5, Quality.OK, None),
    # the device's decimals register chooses the scale
    ({"scale_from": {"point": "res", "values": {"0": 1, "1": 0.1}}}, [0xFF47], {"res": 1},
     -18.5, Quality.OK, None),
    ({"scale_from": {"point": "res", "values": {"0": 1, "1": 0.1}}}, [0xFFEE], {"res": 0},
     -18.0, Quality.OK, None),
    ({"scale_from": {"point": "res", "values": {"0": 1, "1": 0.1}}}, [0xFFEE], {"res": 7},
     None, Quality.FAULT, "unknown_setting"),
    ({"scale_from": {"point": "res", "values": {"0": 1, "1": 0.1}}}, [0xFFEE], {},
     None, Quality.FAULT, "unknown_setting"),
    # the device's unit register: a °F display is published in °C
    ({"scale": 0.1, "unit_from": {"point": "cf", "values": {"0": "c", "1": "f"}}}, [392],
     {"cf": 1}, 4.0, Quality.OK, None),
    ({"scale": 0.1, "unit_from": {"point": "cf", "values": {"0": "c", "1": "f"}}}, [0xFFFC],
     {"cf": 1}, -18.0, Quality.OK, None),
    ({"scale": 0.1, "unit_from": {"point": "cf", "values": {"0": "c", "1": "f"}}}, [392],
     {"cf": 0}, 39.2, Quality.OK, None),
    # other quantities: suction pressure in hundredths of a bar, a mode number
    ({"quantity": "pressure_bar", "scale": 0.01}, [0x00C8], {}, 2.0, Quality.OK, None),
    ({"quantity": "status_code", "type": "uint16"}, [3], {}, 3.0, Quality.OK, None),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "regs", "settings", "value", "quality", "fault"), POINTS)
def test_points_decode_as_the_manual_prints_them(
    fields: dict[str, Any],
    regs: list[int],
    settings: dict[str, int],
    value: Any,
    quality: Quality,
    fault: str | None,
) -> None:
    decoded = decode_point(point(**fields), regs, settings)
    assert (decoded.value, decoded.quality, decoded.fault) == (value, quality, fault)


def test_a_setting_register_is_read_as_its_raw_integer() -> None:
    assert setting_of(point(quantity="status_code", type="uint16"), [1]) == 1
    assert setting_of(point(quantity="status_code", type="int16"), [0xFFFF]) == -1


# (point fields, what the refusal says)
REFUSED = [
    ({"quantity": "alarm_on", "type": "uint16", "bit": 2}, "names its alarm"),
    ({"quantity": "temp_c", "alarm": "high_temp", "type": "uint16", "bit": 2}, "does not fit"),
    ({"quantity": "alarm_on", "alarm": "x", "type": "float32", "bit": 2}, "not a bit"),
    ({"quantity": "alarm_on", "alarm": "x", "type": "uint16", "bit": 16}, "not a bit"),
    ({"quantity": "door_open", "type": "uint16"}, "does not fit"),
    ({"quantity": "rh_pct", "unit_from": {"point": "cf", "values": {"1": "f"}}}, "temperatures"),
    ({"fault_ranges": [{"min": 5, "max": 1}]}, "above max"),
    ({"fault_ranges": [{"min": 1, "max": 5, "reason": "e_{what}"}]}, "{raw} and {code}"),
    ({"scale_from": {"point": "res", "values": {"one": 1}}}, "not a raw register value"),
]


@pytest.mark.parametrize(("fields", "says"), REFUSED)
def test_a_point_that_cannot_be_meant_is_refused_saying_why(
    fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says.replace("{", r"\{").replace("}", r"\}")):
        point(**fields)


def profile(**fields: Any) -> ModbusProfile:
    return ModbusProfile.model_validate({"protocol": "modbus", "model": "M"} | fields)


def test_registers_numbered_from_one_as_the_manual_prints_them_are_read_one_lower() -> None:
    points = [
        {"name": "air", "quantity": "temp_c", "table": "holding", "address": 4},
        {"name": "compressor", "quantity": "compressor_on", "table": "coil", "address": 1,
         "type": "bool"},
    ]  # fmt: skip
    by_name = {p.name: p.address for p in profile(address_base=1, points=points).points}
    assert by_name == {"air": 3, "compressor": 0}
    assert {p.name: p.address for p in profile(points=points).points} == {
        "air": 4,
        "compressor": 1,
    }
    with pytest.raises(ValidationError, match="a 1-based map has no register 0"):
        profile(address_base=1, points=[points[0] | {"address": 0}])


def test_a_setting_must_be_a_register_point_of_the_same_profile() -> None:
    chosen = {"point": "res", "values": {"0": 1, "1": 0.1}}
    air = {"name": "air", "quantity": "temp_c", "table": "holding", "address": 0}
    with pytest.raises(ValidationError, match="'res' is not a register point"):
        profile(points=[air | {"scale_from": chosen}])
    res = {"name": "res", "quantity": "status_code", "table": "holding", "address": 9,
           "publish": False}  # fmt: skip
    assert profile(points=[air | {"scale_from": chosen}, res]).points[1].publish is False
    with pytest.raises(ValidationError, match="scale_from maps to numbers"):
        profile(points=[air | {"scale_from": {"point": "res", "values": {"0": "c"}}}, res])
