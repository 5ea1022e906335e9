"""The wire contract plus plausibility: what the collector accepts, and why not."""

from __future__ import annotations

import time
from dataclasses import dataclass

from coldchain import wire
from coldchain.wire import EventsBatch, Quantity, ReadingsBatch, Stream, WireError
from collector.errors import Rejected

EARLIEST_TS_MS = 1_577_836_800_000  # 2020-01-01: older is a gateway with a dead clock

#: physical bounds: outside them a value is not a measurement but a broken encoder
BOUNDS: dict[Quantity, tuple[float, float]] = {
    Quantity.TEMP_C: (-100.0, 150.0),
    Quantity.SETPOINT_C: (-100.0, 150.0),
    Quantity.RH_PCT: (0.0, 110.0),
    Quantity.RUN_H: (0.0, 10_000_000.0),
}


@dataclass(frozen=True, slots=True)
class Limits:
    future_tolerance_ms: int = 5 * 60_000


def validate(
    topic: str, payload: bytes, limits: Limits, now_ms: int | None = None
) -> ReadingsBatch | EventsBatch:
    """Decode and check one message; raises :class:`Rejected` with the reason."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    try:
        parts = wire.parse_topic(topic)
        if parts.stream is Stream.STATUS:
            raise Rejected("status messages are not collected")
        msg = wire.decode(parts.stream, payload, check_measurands=False)  # measured below
    except WireError as exc:
        raise Rejected(str(exc)) from None
    assert isinstance(msg, ReadingsBatch | EventsBatch)
    if (msg.site, msg.gateway) != (parts.site, parts.gateway):
        raise Rejected(
            f"payload says {msg.site}/{msg.gateway} but the topic says {parts.site}/{parts.gateway}"
        )
    latest = now + limits.future_tolerance_ms
    items = msg.readings if isinstance(msg, ReadingsBatch) else msg.events
    if not items:
        raise Rejected("empty batch")
    for item in items:
        if item.ts_ms > latest:
            raise Rejected(
                f"timestamp {item.ts_ms} is {(item.ts_ms - now) / 1000:.0f} s in the future"
            )
        if item.ts_ms < EARLIEST_TS_MS:
            raise Rejected(f"timestamp {item.ts_ms} is before 2020")
    if isinstance(msg, ReadingsBatch):
        for reading in msg.readings:
            try:
                quantity, value = reading.measure()
            except WireError as exc:
                raise Rejected(str(exc)) from None
            bounds = BOUNDS.get(quantity)
            if (
                bounds
                and isinstance(value, float | int)
                and not isinstance(value, bool)
                and not bounds[0] <= value <= bounds[1]
            ):
                raise Rejected(
                    f"{reading.sensor}: {quantity.value} {value} is outside "
                    f"{bounds[0]:g}..{bounds[1]:g}"
                )
    return msg
