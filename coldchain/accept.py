"""One way in for every consumer: a message as the collector, the alert service and the
live hub all take it (see docs/design-supervision.md).

:func:`accept` parses the topic, decodes the payload against the stream's bounded
schema, holds the payload to the topic (an account publishes on its own topic only, so
the topic is the truth), refuses a time before 2020 (a dead clock), and normalises
the readings: a value outside its physical range is kept and marked ``out_of_range``;
each sensor's readings come sorted by time, an exact copy dropped. A message it refuses
raises :class:`~coldchain.wire.WireError` with the reason.

A time further ahead of the consumer's clock than ``Limits.future_tolerance_ms`` is a
gateway clock that is ahead, not a reason to refuse: the message is kept, its readings
that were ``ok`` are marked ``clock_suspect`` (a fault or an out_of_range reading keeps
its mark: that is the graver news), and :attr:`Accepted.clock_ahead_ms` says by how
much, so that the alert service can raise "gateway X's clock is N min off". The store
keeps the received time beside the edge time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import msgspec

from coldchain import wire
from coldchain.wire import (
    EventsBatch,
    Quality,
    Quantity,
    Reading,
    ReadingsBatch,
    Status,
    Stream,
    WireError,
)

#: 2020-01-01: older is a gateway with a dead clock
EARLIEST_TS_MS: Final = 1_577_836_800_000

#: physical bounds: outside them a value is not a measurement but a broken sensor
BOUNDS: Final[dict[Quantity, tuple[float, float]]] = {
    Quantity.TEMP_C: (-100.0, 150.0),
    Quantity.SETPOINT_C: (-100.0, 150.0),
    Quantity.RH_PCT: (0.0, 110.0),
    Quantity.RUN_H: (0.0, 10_000_000.0),
    Quantity.PRESSURE_BAR: (-1.0, 200.0),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """How far ahead of the consumer's clock an edge timestamp may be before it is
    taken as the gateway's clock being ahead."""

    future_tolerance_ms: int = 5 * 60_000


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that follows the contract, with its topic's parts."""

    parts: wire.TopicParts
    message: wire.Message
    #: readings marked out_of_range here, and exact copies dropped
    out_of_range: int = 0
    copies: int = 0
    #: how far the newest time of the message is past the consumer's clock, when past
    #: the tolerance (0 otherwise), and the readings marked clock_suspect for it
    clock_ahead_ms: int = 0
    clock_suspect: int = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def accept(
    topic: str,
    payload: bytes,
    limits: Limits = Limits(),
    now: int | None = None,
    *,
    streams: frozenset[Stream] = wire.GATEWAY_STREAMS,
) -> Accepted:
    """Decode, check and normalise one message; raises WireError with the reason."""
    parts = wire.parse_topic(topic)
    if parts.stream not in streams:
        raise WireError(f"{parts.stream} messages are not taken here", "topic")
    msg = wire.decode(parts.stream, payload, check_measurands=False)  # measured below
    if (msg.site, msg.gateway) != (parts.site, parts.gateway):
        raise WireError(
            f"payload says {msg.site}/{msg.gateway} "
            f"but the topic says {parts.site}/{parts.gateway}",
            "topic",
        )
    received = now_ms() if now is None else now
    if isinstance(msg, Status):
        return Accepted(parts, msg, clock_ahead_ms=_ahead([msg.ts_ms], received, limits))
    items = msg.readings if isinstance(msg, ReadingsBatch) else msg.events
    if not items:
        raise WireError("empty batch", "empty")
    ahead = _ahead([item.ts_ms for item in items], received, limits)
    if isinstance(msg, EventsBatch):
        return Accepted(parts, msg, clock_ahead_ms=ahead)
    readings, out_of_range, copies = normalised(msg.readings)
    suspect = 0
    if ahead:
        readings, suspect = _clock_suspect(readings, received + limits.future_tolerance_ms)
    if out_of_range or copies or suspect or readings is not msg.readings:
        msg = msgspec.structs.replace(msg, readings=readings)
    return Accepted(parts, msg, out_of_range, copies, ahead, suspect)


def _ahead(times: list[int], received_ms: int, limits: Limits) -> int:
    """How far the newest time is past the receiver's clock, if past the tolerance;
    WireError for a time before 2020 (a clock that was never set)."""
    oldest, newest = min(times), max(times)
    if oldest < EARLIEST_TS_MS:
        raise WireError(f"timestamp {oldest} is before 2020", "time")
    ahead = newest - received_ms
    return ahead if ahead > limits.future_tolerance_ms else 0


def _clock_suspect(readings: list[Reading], latest_ms: int) -> tuple[list[Reading], int]:
    marked = [
        msgspec.structs.replace(r, q=Quality.CLOCK_SUSPECT)
        if r.ts_ms > latest_ms and r.q is Quality.OK
        else r
        for r in readings
    ]
    return marked, sum(1 for a, b in zip(readings, marked, strict=True) if a is not b)


def normalised(readings: list[Reading]) -> tuple[list[Reading], int, int]:
    """Each reading measured (one measurand, else WireError) and marked out_of_range
    where its value is past its physical bounds; each sensor's readings in time order,
    a second reading of a sensor at the same time dropped (the store keeps one reading
    per sensor and time: the first). Returns (readings, marked, copies); the list comes
    back as it came when nothing changed, which costs one pass."""
    marked = 0
    result: list[Reading] = []
    last: dict[str, int] = {}
    ordered = True
    for reading in readings:
        quantity, value = reading.measure()
        if reading.q is Quality.OK and _outside(reading, quantity, value):
            reading = msgspec.structs.replace(reading, q=Quality.OUT_OF_RANGE)
            marked += 1
        if ordered and last.get(reading.sensor, -1) >= reading.ts_ms:
            ordered = False
        last[reading.sensor] = reading.ts_ms
        result.append(reading)
    if ordered:
        return (result if marked else readings), marked, 0
    unique: dict[tuple[str, int], Reading] = {}
    for reading in result:
        unique.setdefault((reading.sensor, reading.ts_ms), reading)
    copies = len(result) - len(unique)
    return sorted(unique.values(), key=lambda r: (r.sensor, r.ts_ms)), marked, copies


def _outside(reading: Reading, quantity: Quantity, value: float | bool | None) -> bool:
    if quantity is Quantity.POSITION:
        assert reading.lat_deg is not None and reading.lon_deg is not None
        return not (-90 <= reading.lat_deg <= 90 and -180 <= reading.lon_deg <= 180)
    bounds = BOUNDS.get(quantity)
    if bounds is None or value is None or isinstance(value, bool):
        return False
    return not bounds[0] <= value <= bounds[1]
