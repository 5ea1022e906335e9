"""Door contacts: a door open longer than its location allows raises a breach; a short
opening for loading raises nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coldchain.judging.breach import MINUTE_MS, Breach, EndReason, Kind, Level, Point


class DoorEvaluator:
    """A door open longer than allowed (a short opening for loading raises nothing);
    streaming like :class:`SensorEvaluator`: a point's value is 1 for open, 0 for closed,
    None for a fault (which neither opens nor closes it)."""

    def __init__(
        self,
        sensor: str,
        max_open_ms: int,
        max_gap_ms: int = 30 * MINUTE_MS,
        kind: Kind = Kind.DOOR_OPEN,
    ) -> None:
        """``kind`` DEVICE_ALARM: the same rule for a device's own alarm bit (on for
        ``max_open_ms``, 0: at once, is a breach until it goes off)."""
        self.sensor, self.max_open_ms, self.max_gap_ms = sensor, max_open_ms, max_gap_ms
        self.kind = kind
        self.last_ts_ms: int | None = None
        self.found: list[Breach] = []
        self._opened: int | None = None
        self._breach: Breach | None = None

    def feed(self, point: Point) -> list[Breach]:
        previous, ts = self.last_ts_ms, point.ts_ms
        if previous is not None and ts <= previous:
            raise ValueError(f"{self.sensor}: reading at {ts} is not after {previous}")
        self.last_ts_ms = ts
        changed: list[Breach] = []
        gap = previous is not None and ts - previous > self.max_gap_ms
        if not gap and self._breach is not None and self._breach.end_reason is EndReason.NO_DATA:
            self._breach.end_ts_ms, self._breach.end_reason = None, None  # it went on
            changed.append(self._breach)
        if previous is not None and gap:
            if self._breach is not None:  # nothing continues across a gap
                self._breach.end_ts_ms, self._breach.end_reason = previous, EndReason.NO_DATA
                changed.append(self._breach)
            self._opened, self._breach = None, None
        if point.value is None:
            return changed
        if point.value:
            if self._opened is None:
                self._opened = ts
            if self._breach is None and ts - self._opened >= self.max_open_ms:
                self._breach = Breach(
                    self.sensor,
                    self.kind,
                    Level.WARNING,
                    self._opened,
                    ts,
                    settings={"max_open_min": self.max_open_ms / MINUTE_MS},
                )
                self.found.append(self._breach)
                changed.append(self._breach)
        else:
            if self._breach is not None:
                self._breach.end_ts_ms, self._breach.end_reason = ts, EndReason.CLOSED
                changed.append(self._breach)
            self._opened, self._breach = None, None
        return changed

    def resume(self, ongoing: Sequence[Breach]) -> None:
        for b in ongoing:
            if b.kind is self.kind:
                self._breach, self._opened = b, b.start_ts_ms
                self.found.append(b)

    def checkpoint(self) -> dict[str, Any]:
        """A door open, not yet too long, goes on counting after a restart."""
        return {"last_ts_ms": self.last_ts_ms, "opened": self._opened}

    def restore(self, state: dict[str, Any]) -> None:
        self.last_ts_ms = state["last_ts_ms"]
        if self._breach is None:
            self._opened = state["opened"]

    def breaches(self) -> list[Breach]:
        return list(self.found)

    def silence(self, now_ms: int) -> list[Breach]:
        """The contact silent past the gap: an open door breach ends at its last reading
        (reason no_data), and opens again if data goes on without a gap."""
        last, breach = self.last_ts_ms, self._breach
        if last is None or breach is None or now_ms - last <= self.max_gap_ms:
            return []
        if breach.end_ts_ms is not None:
            return []
        breach.end_ts_ms, breach.end_reason = last, EndReason.NO_DATA
        return [breach]

    def open_no_data(self, now_ms: int) -> Breach | None:
        return None  # the door contact's device is judged by its temperature channel


def door_open(
    sensor: str,
    readings: Sequence[tuple[int, bool]],
    max_open_ms: int,
    max_gap_ms: int = 30 * MINUTE_MS,
) -> list[Breach]:
    """Door-open breaches of a whole history of (ts_ms, is_open)."""
    evaluator = DoorEvaluator(sensor, max_open_ms, max_gap_ms)
    for ts, is_open in readings:
        evaluator.feed(Point(ts, 1.0 if is_open else 0.0))
    return evaluator.breaches()
