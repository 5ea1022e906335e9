"""Rule evaluation: one sensor's history in, breaches out.

:func:`evaluate` is a pure function of the readings (in edge-time order) and the limits
in force: evaluating the same history again returns the same breaches with the same
identities, which is how a late backlog is handled (re-evaluate, upsert by identity)
and how a restart mid-breach keeps one breach. See docs/design-alerts.md.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from alerts.profiles import LevelLimits

MINUTE_MS = 60_000


class Kind(enum.StrEnum):
    HIGH = "high"
    LOW = "low"
    CUMULATIVE_HIGH = "cumulative_high"
    CUMULATIVE_LOW = "cumulative_low"
    FAULT = "sensor_fault"
    NO_DATA = "no_data"
    DOOR_OPEN = "door_open"


class Level(enum.StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Point:
    """One reading of a temperature (or humidity) sensor; value None = fault."""

    ts_ms: int
    value: float | None


@dataclass(slots=True)
class Breach:
    sensor: str
    kind: Kind
    level: Level
    start_ts_ms: int
    #: edge time at which the rule fired (the delay had elapsed)
    raised_ts_ms: int
    end_ts_ms: int | None = None
    #: why it ended: back_in_range | no_data | window_end; None while ongoing
    end_reason: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str, int]:
        return (self.sensor, self.kind.value, self.level.value, self.start_ts_ms)

    @property
    def ongoing(self) -> bool:
        return self.end_ts_ms is None

    def duration_ms(self, now_ms: int | None = None) -> int:
        end = self.end_ts_ms if self.end_ts_ms is not None else now_ms
        return 0 if end is None else end - self.start_ts_ms


@dataclass(frozen=True, slots=True)
class SeriesSettings:
    #: readings further apart than this are a gap: no run continues across it
    max_gap_ms: int = 30 * MINUTE_MS
    #: a gap this long is a no-data breach
    no_data_ms: int = 66 * MINUTE_MS
    #: fault readings for this long are a sensor-fault breach
    fault_ms: int = 10 * MINUTE_MS


Direction = Literal["high", "low"]


def evaluate(
    sensor: str,
    readings: Sequence[Point],
    levels: dict[Level, LevelLimits],
    settings: SeriesSettings = SeriesSettings(),
) -> list[Breach]:
    """All breaches of one sensor's readings (sorted by edge time)."""
    valid = [p for p in readings if p.value is not None]
    breaches: list[Breach] = []
    for level, limits in levels.items():
        for direction in ("high", "low"):
            limit = limits.high_c if direction == "high" else limits.low_c
            if limit is None:
                continue
            continuous = _continuous(sensor, valid, level, direction, limit, limits, settings)
            breaches += continuous
            if limits.cumulative_min is not None:
                breaches += _cumulative(
                    sensor, valid, level, direction, limit, limits, settings, already=continuous
                )
    breaches += _faults(sensor, readings, settings)
    breaches += _no_data(sensor, readings, settings)
    breaches.sort(key=lambda b: (b.start_ts_ms, b.raised_ts_ms, b.kind.value, b.level.value))
    return breaches


def _is_out(value: float, limit: float, direction: Direction) -> bool:
    return value > limit if direction == "high" else value < limit


def _is_back(value: float, limit: float, deadband: float, direction: Direction) -> bool:
    return value <= limit - deadband if direction == "high" else value >= limit + deadband


def _continuous(
    sensor: str,
    points: Sequence[Point],
    level: Level,
    direction: Direction,
    limit: float,
    limits: LevelLimits,
    settings: SeriesSettings,
) -> list[Breach]:
    kind = Kind.HIGH if direction == "high" else Kind.LOW
    delay = int(limits.delay_min * MINUTE_MS)
    clear_delay = int(limits.clear_delay_min * MINUTE_MS)
    snapshot: dict[str, object] = {
        "limit_c": limit,
        "delay_min": limits.delay_min,
        "deadband_c": limits.deadband_c,
        "clear_delay_min": limits.clear_delay_min,
    }
    out: list[Breach] = []
    run_start: int | None = None  # first out reading of a run not yet raised
    run_values: list[float] = []
    active: Breach | None = None
    back_since: int | None = None
    previous: Point | None = None

    def close(breach: Breach, end: int, reason: str) -> None:
        breach.end_ts_ms = end
        breach.end_reason = reason

    for p in points:
        assert p.value is not None
        if previous is not None and p.ts_ms - previous.ts_ms > settings.max_gap_ms:
            # a gap: nothing continues across it
            if active is not None:
                close(active, previous.ts_ms, "no_data")
                active = None
            run_start, run_values, back_since = None, [], None
        previous = p
        v = p.value
        if active is None:
            if _is_out(v, limit, direction):
                if run_start is None:
                    run_start, run_values = p.ts_ms, []
                run_values.append(v)
                if p.ts_ms - run_start >= delay:
                    active = Breach(
                        sensor,
                        kind,
                        level,
                        run_start,
                        p.ts_ms,
                        min_value=min(run_values),
                        max_value=max(run_values),
                        settings=dict(snapshot),
                    )
                    out.append(active)
            else:
                run_start, run_values = None, []
            continue
        if _is_back(v, limit, limits.deadband_c, direction):
            if back_since is None:
                back_since = p.ts_ms
            if p.ts_ms - back_since >= clear_delay:
                close(active, back_since, "back_in_range")
                active, back_since, run_start, run_values = None, None, None, []
            continue
        back_since = None
        active.min_value = v if active.min_value is None else min(active.min_value, v)
        active.max_value = v if active.max_value is None else max(active.max_value, v)
    return out


def _durations(points: Sequence[Point], max_gap_ms: int) -> Iterator[tuple[Point, int]]:
    """Each reading with the time it stands for (to the next one, capped at the gap)."""
    for p, nxt in itertools.pairwise(points):
        yield p, min(nxt.ts_ms - p.ts_ms, max_gap_ms)


def _cumulative(
    sensor: str,
    points: Sequence[Point],
    level: Level,
    direction: Direction,
    limit: float,
    limits: LevelLimits,
    settings: SeriesSettings,
    already: Sequence[Breach] = (),
) -> list[Breach]:
    """Short excursions adding up: time out of range that is not already part of a
    continuous breach of the same level counts against the window's allowance (one
    long excursion is a continuous breach, not also a cumulative one)."""
    assert limits.cumulative_min is not None

    def covered(ts: int) -> bool:
        return any(
            b.start_ts_ms <= ts and (b.end_ts_ms is None or ts < b.end_ts_ms) for b in already
        )

    kind = Kind.CUMULATIVE_HIGH if direction == "high" else Kind.CUMULATIVE_LOW
    window = int(limits.window_h * 3_600_000)
    allowance = int(limits.cumulative_min * MINUTE_MS)
    snapshot: dict[str, object] = {
        "limit_c": limit,
        "allowance_min": limits.cumulative_min,
        "window_h": limits.window_h,
    }
    out: list[Breach] = []
    current_window = -1
    total = 0
    breach: Breach | None = None
    for p, duration in _durations(points, settings.max_gap_ms):
        assert p.value is not None
        w = p.ts_ms // window
        if w != current_window:
            current_window, total, breach = w, 0, None
        if not _is_out(p.value, limit, direction) or covered(p.ts_ms):
            continue
        if breach is not None:
            breach.min_value = (
                p.value if breach.min_value is None else min(breach.min_value, p.value)
            )
            breach.max_value = (
                p.value if breach.max_value is None else max(breach.max_value, p.value)
            )
            continue
        if total + duration > allowance:
            crossed = p.ts_ms + (allowance - total)
            window_end = (w + 1) * window
            breach = Breach(
                sensor,
                kind,
                level,
                crossed,
                crossed,
                end_ts_ms=window_end,
                end_reason="window_end",
                min_value=p.value,
                max_value=p.value,
                settings={**snapshot, "window_start_ts_ms": w * window},
            )
            out.append(breach)
        total += duration
    last = points[-1].ts_ms if points else None
    for b in out:
        if last is not None and b.end_ts_ms is not None and b.end_ts_ms > last:
            b.end_ts_ms, b.end_reason = None, None  # the window is not over yet
    return out


def _faults(sensor: str, readings: Sequence[Point], settings: SeriesSettings) -> list[Breach]:
    out: list[Breach] = []
    start: int | None = None
    breach: Breach | None = None
    for p in readings:
        if p.value is None:
            if start is None:
                start = p.ts_ms
            if breach is None and p.ts_ms - start >= settings.fault_ms:
                breach = Breach(
                    sensor,
                    Kind.FAULT,
                    Level.CRITICAL,
                    start,
                    p.ts_ms,
                    settings={"fault_min": settings.fault_ms / MINUTE_MS},
                )
                out.append(breach)
            continue
        if breach is not None:
            breach.end_ts_ms, breach.end_reason = p.ts_ms, "back_in_range"
        start, breach = None, None
    return out


def _no_data(sensor: str, readings: Sequence[Point], settings: SeriesSettings) -> list[Breach]:
    """Gaps in the edge timestamps longer than ``no_data_ms`` (closed gaps only: an open
    one, data still missing now, is for the live watchdog, which knows the wall clock)."""
    out = []
    for p, nxt in itertools.pairwise(readings):
        if nxt.ts_ms - p.ts_ms > settings.no_data_ms:
            out.append(
                Breach(
                    sensor,
                    Kind.NO_DATA,
                    Level.WARNING,
                    p.ts_ms,
                    p.ts_ms + settings.no_data_ms,
                    end_ts_ms=nxt.ts_ms,
                    end_reason="data_back",
                    settings={"no_data_min": settings.no_data_ms / MINUTE_MS},
                )
            )
    return out


def door_open(
    sensor: str,
    readings: Sequence[tuple[int, bool]],
    max_open_ms: int,
    max_gap_ms: int = 30 * MINUTE_MS,
) -> list[Breach]:
    """A door open longer than allowed (a short opening for loading raises nothing)."""
    out: list[Breach] = []
    opened: int | None = None
    breach: Breach | None = None
    previous: int | None = None
    for ts, is_open in readings:
        if previous is not None and ts - previous > max_gap_ms:
            if breach is not None:
                breach.end_ts_ms, breach.end_reason = previous, "no_data"
            opened, breach = None, None
        previous = ts
        if is_open:
            if opened is None:
                opened = ts
            if breach is None and ts - opened >= max_open_ms:
                breach = Breach(
                    sensor,
                    Kind.DOOR_OPEN,
                    Level.WARNING,
                    opened,
                    ts,
                    settings={"max_open_min": max_open_ms / MINUTE_MS},
                )
                out.append(breach)
        else:
            if breach is not None:
                breach.end_ts_ms, breach.end_reason = ts, "closed"
            opened, breach = None, None
    return out
