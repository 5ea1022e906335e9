"""Device profiles: what a device model exposes and how to decode it, as data.

One TOML file per device model under ``firmware_configs/`` (``modbus/`` and
``serial/``). A gateway config names a profile by its file stem, e.g.
``profile = "th_transmitter_int16"``.
"""

from __future__ import annotations

import enum
import re
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coldchain.settings import problems_of
from coldchain.wire import BOOLEAN_QUANTITIES, Quantity
from gateway.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Table(enum.StrEnum):
    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bit(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


class DataType(enum.StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    #: sign and magnitude: bit 15 is the sign, bits 0–14 the magnitude (0x8005 is −5)
    INT16_SM = "int16_sm"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def registers(self) -> int:
        return 2 if self in (DataType.INT32, DataType.UINT32, DataType.FLOAT32) else 1

    @property
    def is_float(self) -> bool:
        return self is DataType.FLOAT32


Order = Literal["big", "little"]

PointName = Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]


class FaultRange(Strict):
    """Raw values from ``min`` to ``max`` (inclusive) are the device's error codes, not
    measurements: e.g. "below −32000: error N" is ``min = -32768, max = -32001,
    code_from = -32000, reason = "error_{code}"``. ``{raw}`` and ``{code}`` (``|raw −
    code_from|``) are filled in the fault reason."""

    min: int
    max: int
    reason: Annotated[str, Field(pattern=r"^[a-z0-9_{}]+$", max_length=64)] = "sentinel"
    code_from: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> FaultRange:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        try:
            self.reason.format(raw=0, code=0)
        except (KeyError, IndexError, ValueError):
            raise ValueError("reason may use {raw} and {code} only") from None
        return self

    def describe(self, raw: int) -> str:
        return self.reason.format(raw=raw, code=abs(raw - self.code_from))


class ChosenBy(Strict):
    """A setting the device keeps in one of its own registers (its display unit, its
    number of decimals): ``point`` names that register's point, ``values`` what each of
    its raw values means. A raw value not listed makes the reading a fault
    (``unknown_setting``), never a guess."""

    point: PointName
    values: dict[str, float | Literal["c", "f"]]

    @field_validator("values")
    @classmethod
    def _integer_keys(cls, values: dict[str, object]) -> dict[str, object]:
        for key in values:
            if not key.lstrip("-").isdigit():
                raise ValueError(f"{key!r} is not a raw register value (an integer)")
        return values


class RegisterPoint(Strict):
    """One value of a Modbus device: where it lives and how to turn it into a reading."""

    name: PointName
    quantity: Quantity
    table: Table
    #: as the manual prints it (see the profile's ``address_base``)
    address: Annotated[int, Field(ge=0, le=65536)]
    type: DataType = DataType.INT16
    byte_order: Order = "big"
    word_order: Order = "big"
    #: one bit (0 = least significant) of a register: a flag of a status word
    bit: Annotated[int, Field(ge=0, le=31)] | None = None
    scale: float = 1.0
    offset: float = 0.0
    #: raw values the device uses to say "no valid measurement" (open or shorted probe)
    fault_values: list[int] = []
    #: ranges of raw values that are error codes
    fault_ranges: list[FaultRange] = []
    #: the scale (e.g. 0.1 with decimals shown, 1 without) set by a device register
    scale_from: ChosenBy | None = None
    #: the unit (°C or °F) set by a device register; °F is published converted to °C
    unit_from: ChosenBy | None = None
    #: the probe's physical range; values outside are published as out_of_range
    valid_min: float | None = None
    valid_max: float | None = None
    #: invert a bit (a door contact that is closed when the door is open)
    invert: bool = False
    #: the device's own alarm this bit is (quantity alarm_on): high_temp, low_temp,
    #: probe_failure, door, high_pressure, low_pressure, general …
    alarm: PointName | None = None
    #: read for the other points' sake (a unit or decimals register), not published
    publish: bool = True
    #: a line of the manual this point was not confirmed against, for the installer
    #: (``coldchain profile check`` prints it): check it with ``coldchain profile probe``
    uncertain: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RegisterPoint:
        flag = self.table.is_bit or self.bit is not None
        if self.table.is_bit != (self.type is DataType.BOOL):
            raise ValueError(
                f"table {self.table} needs type "
                f"{'bool' if self.table.is_bit else 'a register type'}"
            )
        if self.bit is not None and (
            self.table.is_bit or self.bit >= 16 * self.type.registers or self.type.is_float
        ):
            raise ValueError(f"bit {self.bit} is not a bit of a {self.type} register")
        if (self.quantity in BOOLEAN_QUANTITIES) != flag:
            raise ValueError(
                f"quantity {self.quantity} does not fit {'a bit' if flag else f'type {self.type}'}"
            )
        if self.quantity is Quantity.POSITION:
            raise ValueError("position comes from a GPS receiver, not a register")
        if (self.alarm is not None) != (self.quantity is Quantity.ALARM_ON):
            raise ValueError("an alarm bit has quantity alarm_on and names its alarm")
        if self.unit_from is not None and self.quantity not in (
            Quantity.TEMP_C,
            Quantity.SETPOINT_C,
        ):
            raise ValueError("unit_from is for temperatures")
        if flag and (self.scale_from or self.unit_from or self.fault_ranges):
            raise ValueError("a bit has no scale, unit or fault codes")
        return self

    @property
    def register_count(self) -> int:
        return 1 if self.table.is_bit else self.type.registers


class ModbusProfile(Strict):
    protocol: Literal["modbus"]
    model: str
    vendor: str = "generic"
    description: str = ""
    #: largest request the device accepts (the Modbus limits are 125 registers, 2000 bits)
    max_registers_per_read: Annotated[int, Field(ge=1, le=125)] = 125
    max_bits_per_read: Annotated[int, Field(ge=1, le=2000)] = 2000
    #: unused registers a coalesced read may span (0: only contiguous registers)
    max_gap: Annotated[int, Field(ge=0, le=100)] = 0
    #: 1 if the manual numbers registers from 1 (register 1 is protocol address 0)
    address_base: Literal[0, 1] = 0
    #: the manual this map was taken from (document, version, pages)
    source: str = ""
    points: list[RegisterPoint]

    @field_validator("points")
    @classmethod
    def _unique_names(cls, points: list[RegisterPoint]) -> list[RegisterPoint]:
        names = [p.name for p in points]
        if len(set(names)) != len(names):
            raise ValueError("point names must be unique")
        return points

    @model_validator(mode="before")
    @classmethod
    def _to_protocol_addresses(cls, data: Any) -> Any:
        """Addresses as the manual prints them become protocol addresses: once loaded,
        a point's ``address`` is what goes on the wire."""
        if not isinstance(data, dict) or data.get("address_base") != 1:
            return data
        points = data.get("points")
        if not isinstance(points, list):
            return data
        shifted = []
        for point in points:
            if isinstance(point, dict) and isinstance(point.get("address"), int):
                if point["address"] < 1:
                    raise ValueError(
                        f"point {point.get('name')}: a 1-based map has no register "
                        f"{point['address']}"
                    )
                point = {**point, "address": point["address"] - 1}
            shifted.append(point)
        return {**data, "points": shifted}

    @model_validator(mode="after")
    def _references(self) -> ModbusProfile:
        by_name = {p.name: p for p in self.points}
        for p in self.points:
            if p.address > 65535:
                raise ValueError(f"point {p.name}: address {p.address} is past 65535")
            for chosen in (p.scale_from, p.unit_from):
                if chosen is None:
                    continue
                setting = by_name.get(chosen.point)
                if setting is None or setting.table.is_bit or setting.bit is not None:
                    raise ValueError(f"point {p.name}: {chosen.point!r} is not a register point")
                wanted = float if chosen is p.scale_from else str
                if not all(isinstance(v, wanted) for v in chosen.values.values()):
                    raise ValueError(
                        f"point {p.name}: scale_from maps to numbers, unit_from to c or f"
                    )
        return self


class LinePoint(Strict):
    """One value of an ASCII line: the regex group that holds it."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    quantity: Quantity
    group: str
    scale: float = 1.0
    offset: float = 0.0
    valid_min: float | None = None
    valid_max: float | None = None


class AsciiProfile(Strict):
    protocol: Literal["ascii"]
    model: str
    vendor: str = "generic"
    description: str = ""
    #: a full-line regex with named groups
    line_regex: str
    #: ``nmea_xor``: XOR of the bytes between '$' and '*' equals the hex group ``checksum``
    checksum: Literal["none", "nmea_xor"] = "none"
    #: a group whose listed values mean the probe reports a fault
    status_group: str | None = None
    fault_status: list[str] = []
    #: how often the device prints; silence for ``stale_after`` intervals is a fault
    interval_s: Annotated[float, Field(gt=0)] = 10.0
    stale_after: Annotated[int, Field(ge=1)] = 3
    points: list[LinePoint]

    @field_validator("line_regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _groups_exist(self) -> AsciiProfile:
        groups = set(re.compile(self.line_regex).groupindex)
        wanted = {p.group for p in self.points}
        if self.status_group:
            wanted.add(self.status_group)
        if self.checksum == "nmea_xor":
            wanted.add("checksum")
        if missing := wanted - groups:
            raise ValueError(f"line_regex lacks the named groups {sorted(missing)}")
        return self


class NmeaProfile(Strict):
    protocol: Literal["nmea"]
    model: str
    vendor: str = "generic"
    description: str = ""
    #: sentence types used for the position (talker id ignored: GP, GN, BD, GL …)
    sentences: list[Literal["RMC", "GGA"]] = ["RMC"]
    #: publish a position at most this often
    interval_s: Annotated[float, Field(gt=0)] = 30.0
    #: no valid fix for this long is a ``gps no_fix`` event
    fix_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    #: take dead-reckoning positions (GGA quality 6, RMC mode E) as fixes too; manual and
    #: simulated positions never are
    accept_estimated: bool = False


Profile = Annotated[ModbusProfile | AsciiProfile | NmeaProfile, Field(discriminator="protocol")]


class _ProfileFile(BaseModel):
    profile: Profile


PROFILE_DIR = "firmware_configs"


def profile_path(name: str) -> Path:
    root = resources.files(PROFILE_DIR)
    for sub in ("modbus", "serial"):
        candidate = root / sub / f"{name}.toml"
        if candidate.is_file():
            return Path(str(candidate))
    raise FileNotFoundError(name)


def available_profiles() -> list[str]:
    root = resources.files(PROFILE_DIR)
    return sorted(
        entry.name.removesuffix(".toml")
        for sub in ("modbus", "serial")
        for entry in (root / sub).iterdir()
        if entry.name.endswith(".toml")
    )


def load_profile_file(path: Path) -> ModbusProfile | AsciiProfile | NmeaProfile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    try:
        return _ProfileFile.model_validate({"profile": data}).profile
    except ValidationError as exc:
        raise ConfigError(path, problems_of(exc, _ProfileFile, drop_prefix=1)) from None


@cache
def load_profile(name: str) -> ModbusProfile | AsciiProfile | NmeaProfile:
    """A profile by name (the file stem of a shipped one), or a profile file of the
    site's own by its path (``…/site-device.toml``: an installer adds a device without
    touching the installed package)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(name, ["no such profile file"])
        return load_profile_file(path)
    try:
        path = profile_path(name)
    except FileNotFoundError:
        raise ConfigError(
            f"firmware_configs/*/{name}.toml",
            [f"profile {name!r} not found; shipped profiles: {', '.join(available_profiles())}"],
        ) from None
    return load_profile_file(path)
