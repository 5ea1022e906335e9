"""The store interface: how the collector writes, and how everything else reads history.

The collector hands a store a list of :class:`Incoming` (validated messages) and of
:class:`QuarantineItem` (rejected ones); the store writes all of it or nothing, and
raises :class:`StoreUnavailable` when it cannot. The alert service and the API read
history through :meth:`Store.readings`, whichever store is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from coldchain.wire import EventsBatch, Quality, Quantity, Reading, ReadingsBatch


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


@dataclass(frozen=True, slots=True)
class WriteResult:
    readings_stored: int
    readings_duplicate: int
    messages_duplicate: int
    events_stored: int
    quarantined: int


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

    @classmethod
    def of(cls, site: str, gateway: str, reading: Reading) -> StoredReading:
        quantity = reading.measurand()
        return cls(
            site,
            gateway,
            reading.sensor,
            reading.ts_ms,
            quantity,
            reading.value(),
            reading.q,
            reading.fault,
            reading.lat_deg,
            reading.lon_deg,
            reading.speed_kmh,
        )


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

    def close(self) -> None: ...
