"""The gateway's configuration file (TOML), typed and strict.

Every model forbids unknown fields. :func:`load_config` raises :class:`ConfigError`
naming the file, the field path and what was expected, e.g.::

    invalid config site.toml:
      - buses.0.devices.1.unit: Input should be less than or equal to 247 (got 300)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from coldchain.settings import ConfigError, MqttConfig, Strict, load_toml
from coldchain.wire import ID_PATTERN
from gateway.profiles import AsciiProfile, ModbusProfile, NmeaProfile, load_profile

DeviceId = Annotated[str, Field(pattern=ID_PATTERN)]


class GatewayIdentity(Strict):
    id: DeviceId
    site: DeviceId
    #: the site's own device profiles (absolute path): a device's ``profile`` name is
    #: looked up here first (``NAME.toml``), then among the shipped ones
    profiles_dir: Path | None = None
    #: wall-clock interval of the retained status heartbeat with counters
    status_interval_s: Annotated[float, Field(gt=0)] = 60.0
    #: the gateway's clock further off than this from a reference (the collector's
    #: clock, a GPS receiver's UTC) is reported (a ``clock`` event, the heartbeat)
    clock_tolerance_s: Annotated[float, Field(gt=0)] = 60.0


class OutboxConfig(Strict):
    path: Path
    #: bound on buffered readings + events; 2,000,000 is ~40 days of a truck with
    #: 8 sensors at 1 minute
    max_rows: Annotated[int, Field(ge=100)] = 2_000_000
    max_age_h: Annotated[float, Field(gt=0)] = 24 * 30
    #: readings batches in the compact schema version 2 (about a tenth of the bytes:
    #: trucks pay for mobile data) or version 1 JSON (for collectors older than 0.2)
    encoding: Literal["compact", "json"] = "compact"
    #: readings per backlog message
    backlog_chunk: Annotated[int, Field(ge=1, le=5000)] = 500
    #: backlog readings sent per second at most (live readings are not limited)
    backlog_rate_per_s: Annotated[float, Field(gt=0)] = 2000.0
    #: messages published and not yet acknowledged, at most
    window: Annotated[int, Field(ge=4, le=1000)] = 20
    #: wait this long after a poll so that one tick of all buses goes in one message
    linger_ms: Annotated[int, Field(ge=0, le=5000)] = 100
    #: a PUBACK saying "no matching subscribers" means nobody stored the message (no
    #: collector session exists yet): keep it and send it again later
    require_subscriber: bool = True
    #: rows kept in memory while the outbox cannot be written (a full disk), at most
    memory_rows: Annotated[int, Field(ge=100)] = 100_000
    #: on a planned stop, keep sending buffered rows for at most this long
    drain_on_stop_s: Annotated[float, Field(ge=0)] = 10.0
    #: what frees a message: ``store``, the collectors' stored watermark (a PUBACK only
    #: says the broker has it in memory), or ``broker``, the PUBACK alone (for
    #: collectors that publish no watermark; a broker crash can then lose readings)
    confirm: Literal["store", "broker"] = "store"
    #: a message the broker took and the store has not confirmed after this long is
    #: sent again (see gateway/confirm.py for when)
    confirm_timeout_s: Annotated[float, Field(ge=1)] = 120.0


class DeviceConfig(Strict):
    id: DeviceId
    profile: str
    unit: Annotated[int, Field(ge=0, le=247)] = 1


class BusBase(Strict):
    name: DeviceId
    interval_s: Annotated[float, Field(gt=0)] = 10.0
    timeout_s: Annotated[float, Field(gt=0)] = 1.0
    #: after a device stops answering, wait before asking again: min, doubling, max
    backoff_min_s: Annotated[float, Field(gt=0)] = 2.0
    backoff_max_s: Annotated[float, Field(gt=0)] = 120.0
    devices: Annotated[list[DeviceConfig], Field(min_length=1)]


class ModbusTcpBus(BusBase):
    kind: Literal["modbus_tcp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502


class SerialLine(Strict):
    port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class ModbusRtuBus(BusBase, SerialLine):
    kind: Literal["modbus_rtu"]


class SerialAsciiBus(BusBase, SerialLine):
    kind: Literal["serial_ascii"]
    devices: Annotated[list[DeviceConfig], Field(min_length=1, max_length=1)]


class NmeaGpsBus(BusBase, SerialLine):
    kind: Literal["nmea_gps"]
    devices: Annotated[list[DeviceConfig], Field(min_length=1, max_length=1)]


Bus = Annotated[
    ModbusTcpBus | ModbusRtuBus | SerialAsciiBus | NmeaGpsBus, Field(discriminator="kind")
]

_PROTOCOL_NAME = {
    "modbus_tcp": "modbus",
    "modbus_rtu": "modbus",
    "serial_ascii": "ascii",
    "nmea_gps": "nmea",
}
_PROTOCOL_OF_BUS = {
    "modbus_tcp": ModbusProfile,
    "modbus_rtu": ModbusProfile,
    "serial_ascii": AsciiProfile,
    "nmea_gps": NmeaProfile,
}


class CabConfig(Strict):
    """The cab view this gateway serves from its own readings (a tablet in the truck's cab
    reads it over the local network; it works with no mobile signal). Read-only."""

    port: Annotated[int, Field(ge=1, le=65535)]
    #: the address to listen on: the cab network's interface, or 127.0.0.1
    host: str = "127.0.0.1"
    #: what the driver calls each device's compartment, by device id
    labels: Annotated[dict[str, str], Field(default_factory=dict)]
    #: the names and addresses the tablet uses to reach it (the Host header), besides
    #: ``host``, localhost and 127.0.0.1: any other is refused, so that a page a phone on
    #: the cab network opens cannot rebind its own name to the gateway and read it
    hosts: Annotated[list[str], Field(default_factory=list)]

    def allowed_hosts(self) -> list[str]:
        own = [] if self.host in ("0.0.0.0", "::") else [self.host]
        return sorted({*own, "localhost", "127.0.0.1", *self.hosts})


class GatewayConfig(Strict):
    gateway: GatewayIdentity
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig
    buses: Annotated[list[Bus], Field(min_length=1)]
    cab: CabConfig | None = None

    @model_validator(mode="after")
    def _check_devices(self) -> GatewayConfig:
        self._use_site_profiles()
        seen: set[str] = set()
        for b, bus in enumerate(self.buses):
            units: set[int] = set()
            for d, dev in enumerate(bus.devices):
                where = f"buses.{b}.devices.{d}"
                if dev.id in seen:
                    raise ValueError(f"{where}.id: device id {dev.id!r} is used twice")
                seen.add(dev.id)
                if bus.kind in ("modbus_tcp", "modbus_rtu"):
                    if dev.unit in units:
                        raise ValueError(
                            f"{where}.unit: unit {dev.unit} is used twice on bus {bus.name!r}"
                        )
                    units.add(dev.unit)
                try:
                    profile = load_profile(dev.profile)
                except ConfigError as exc:
                    raise ValueError(f"{where}.profile: {exc.problems[0]}") from None
                wanted = _PROTOCOL_OF_BUS[bus.kind]
                if not isinstance(profile, wanted):
                    raise ValueError(
                        f"{where}.profile: {dev.profile!r} is a "
                        f"{profile.protocol} profile; bus kind {bus.kind} needs "
                        f"a {_PROTOCOL_NAME[bus.kind]} profile"
                    )
        return self

    def _use_site_profiles(self) -> None:
        """A device's profile found in ``profiles_dir`` is that file (looked up first)."""
        folder = self.gateway.profiles_dir
        if folder is None:
            return
        if not folder.is_absolute() or not folder.is_dir():
            raise ValueError(f"gateway.profiles_dir: {folder} is not an absolute path of a folder")
        for bus in self.buses:
            for i, dev in enumerate(bus.devices):
                own = folder / f"{dev.profile}.toml"
                if not dev.profile.endswith(".toml") and own.is_file():
                    bus.devices[i] = dev.model_copy(update={"profile": str(own)})


def load_config(path: Path | str) -> GatewayConfig:
    path = Path(path)
    config = load_toml(path, GatewayConfig)
    if not config.outbox.path.is_absolute():
        outbox = config.outbox.model_copy(update={"path": path.parent / config.outbox.path})
        config = config.model_copy(update={"outbox": outbox})
    return config
