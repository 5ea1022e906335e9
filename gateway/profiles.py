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
from typing import Annotated, Literal

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
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def registers(self) -> int:
        return 2 if self in (DataType.INT32, DataType.UINT32, DataType.FLOAT32) else 1


Order = Literal["big", "little"]


class RegisterPoint(Strict):
    """One value of a Modbus device: where it lives and how to turn it into a reading."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    quantity: Quantity
    table: Table
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType = DataType.INT16
    byte_order: Order = "big"
    word_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    #: raw values the device uses to say "no valid measurement" (open or shorted probe)
    fault_values: list[int] = []
    #: the probe's physical range; values outside are published as out_of_range
    valid_min: float | None = None
    valid_max: float | None = None
    #: invert a bit (a door contact that is closed when the door is open)
    invert: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> RegisterPoint:
        if self.table.is_bit != (self.type is DataType.BOOL):
            raise ValueError(
                f"table {self.table} needs type "
                f"{'bool' if self.table.is_bit else 'a register type'}"
            )
        if (self.quantity in BOOLEAN_QUANTITIES) != (self.type is DataType.BOOL):
            raise ValueError(f"quantity {self.quantity} does not fit type {self.type}")
        if self.quantity is Quantity.POSITION:
            raise ValueError("position comes from a GPS receiver, not a register")
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
    points: list[RegisterPoint]

    @field_validator("points")
    @classmethod
    def _unique_names(cls, points: list[RegisterPoint]) -> list[RegisterPoint]:
        names = [p.name for p in points]
        if len(set(names)) != len(names):
            raise ValueError("point names must be unique")
        return points


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
