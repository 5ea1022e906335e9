"""The store interface: how the collector writes, and how everything else reads history.

The collector hands a store a list of :class:`Incoming` (validated messages) and of
:class:`QuarantineItem` (rejected ones); the store writes all of it or nothing, and
raises :class:`StoreUnavailable` when it cannot. The alert service and the API read
history through :meth:`Store.readings`, whichever store is configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from coldchain.wire import BOOLEAN_QUANTITIES, EventsBatch, Quality, Quantity, ReadingsBatch
from collector.config import InfluxStoreConfig, SqliteStoreConfig
from collector.watermark import Watermarks


@dataclass(frozen=True, slots=True)
class Incoming:
    message: ReadingsBatch | EventsBatch
    received_ms: int


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    topic: str
    payload: bytes
    reason: str
    received_ms: int
    #: the rule it broke (coldchain.wire.WireError.kind), or ``store`` when the store refused it
    kind: str = "contract"


@dataclass(frozen=True, slots=True)
class WriteResult:
    readings_stored: int
    readings_duplicate: int
    messages_duplicate: int
    events_stored: int
    quarantined: int
    #: old quarantined messages dropped to keep the quarantine bounded
    quarantine_dropped: int = 0


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading as history gives it back."""

    site: str
    gateway: str
    sensor: str
    ts_ms: int
    quantity: Quantity
    value: float | bool | None
    q: Quality
    fault: str | None = None
    lat_deg: float | None = None
    lon_deg: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    #: a position's fix quality: satellites used, horizontal dilution of precision
    sats: int | None = None
    hdop: float | None = None

    @classmethod
    def restore(
        cls,
        site: str,
        gateway: str,
        sensor: str,
        ts_ms: int,
        quantity: str,
        value: float | bool | None,
        q: str,
        fault: str | None = None,
        lat_deg: float | None = None,
        lon_deg: float | None = None,
        speed_kmh: float | None = None,
        course_deg: float | None = None,
        sats: int | None = None,
        hdop: float | None = None,
    ) -> StoredReading:
        """From what a store keeps (names, numbers) back to typed values: door, compressor
        and defrost states come back as booleans."""
        qty = Quantity(quantity)
        if value is not None and qty in BOOLEAN_QUANTITIES:
            value = bool(value)
        return cls(
            site, gateway, sensor, ts_ms, qty, value, Quality(q), fault, lat_deg, lon_deg,
            speed_kmh, course_deg, sats, hdop,
        )  # fmt: skip


class Store(Protocol):
    def write(self, batch: list[Incoming], quarantine: list[QuarantineItem]) -> WriteResult:
        """Write everything in one transaction, or raise StoreUnavailable."""
        ...

    def readings(
        self,
        *,
        start_ms: int,
        end_ms: int,
        sensor: str | None = None,
        site: str | None = None,
        gateway: str | None = None,
    ) -> Iterator[StoredReading]:
        """History in time order, ``start_ms <= ts_ms < end_ms``; a sensor or a site."""
        ...

    def watermarks(self, outboxes: Iterable[tuple[str, int]]) -> Watermarks:
        """Per (gateway, epoch): the highest seq of each stream held with every seq
        below it (collector.watermark), as the store holds it now."""
        ...

    def close(self) -> None: ...


def check_secrets(config: SqliteStoreConfig | InfluxStoreConfig) -> None:
    """Raise ConfigError if a secret the store needs is missing or a placeholder: for the
    programs that open their store later, so that they refuse to start instead."""
    if isinstance(config, InfluxStoreConfig):
        config.secrets()


def open_store(config: SqliteStoreConfig | InfluxStoreConfig) -> Store:
    """The readings store a config section names: the one opener every program uses
    (collector, alert service replay, API history, export and reports)."""
    if isinstance(config, SqliteStoreConfig):
        from collector.sqlite_store import SqliteStore

        return SqliteStore(config.path)
    from collector.influx_store import InfluxStore

    org, bucket, token = config.secrets()
    return InfluxStore(
        url=config.url, org=org, bucket=bucket, token=token, quarantine_path=config.quarantine_path
    )
