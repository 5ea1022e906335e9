"""Cumulative breaches: short excursions adding up against an allowance per window
(docs/design-alerts.md, "Rule semantics" and "The same minutes alarm once"). Fed by
:class:`coldchain.judging.rules.SensorEvaluator` beside the continuous rule of the same level."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from coldchain.judging.breach import (
    MINUTE_MS,
    Breach,
    Direction,
    EndReason,
    Kind,
    Level,
    Measure,
    Point,
    SeriesSettings,
    is_out,
    widen,
)
from coldchain.judging.limits import LevelLimits


class Cumulative:
    """Short excursions adding up: the time out of range in any window of ``window_h``
    (a rolling window by default; the site's local day where the profile says so)
    against the allowance.

    One rule counts each minute once (docs/design-alerts.md, "The same minutes alarm
    once"): a run of out-of-range readings counts toward the allowance when it ends
    without having become a continuous breach of the same level; a run that became one
    counts nothing here, its minutes before the delay included. The cumulative breach
    starts at the minute the allowance was passed and is raised when the run that
    passed it ends (at most one delay later); it ends when the window's time out of
    range is back within the allowance (``window_end``) or at the last reading before a
    gap (``no_data``). A reading stands for the time to the next one, capped at the gap.
    """

    def __init__(
        self,
        sensor: str,
        level: Level,
        direction: Direction,
        limit: float,
        limits: LevelLimits,
        settings: SeriesSettings,
        measure: Measure,
    ) -> None:
        assert limits.cumulative_min is not None
        self.sensor, self.level, self.direction, self.limit = sensor, level, direction, limit
        self.kind = Kind.CUMULATIVE_HIGH if direction == "high" else Kind.CUMULATIVE_LOW
        self.window = int(limits.window_h * 3_600_000)
        self.local_day = ZoneInfo(settings.tz) if limits.window == "local_day" else None
        self.allowance = int(limits.cumulative_min * MINUTE_MS)
        self.max_gap = settings.max_gap_ms
        self.snapshot: dict[str, object] = {
            f"limit_{measure.unit}": limit,
            "allowance_min": limits.cumulative_min,
            "window_h": limits.window_h,
            "window": limits.window,
        }
        self.found: list[Breach] = []
        #: the counted intervals [from, to) still inside a window, oldest first
        self.counted: deque[tuple[int, int]] = deque()
        self.run: list[tuple[Point, int]] = []  # the current run: reading, time it stands for
        self.run_covered = False
        self.pending: tuple[Point, bool] | None = None  # previous reading, covered then
        self.breach: Breach | None = None
        self.silenced = False

    def window_start(self, ts_ms: int) -> int:
        if self.local_day is None:
            return ts_ms - self.window
        local = datetime.fromtimestamp(ts_ms / 1000, self.local_day)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return int(midnight.timestamp() * 1000)

    def in_window(self, ts_ms: int) -> int:
        """Time counted in the window that ends at ``ts_ms``."""
        start = self.window_start(ts_ms)
        return sum(max(0, min(b, ts_ms) - max(a, start)) for a, b in self.counted)

    def feed(self, p: Point, covered: bool) -> list[Breach]:
        changed: list[Breach] = []
        gap = self.pending is not None and p.ts_ms - self.pending[0].ts_ms > self.max_gap
        if self.silenced:
            self.silenced = False
            if not gap and self.breach is not None:  # data went on: not a silence after all
                self.breach.end_ts_ms, self.breach.end_reason = None, None
                changed.append(self.breach)
        if self.pending is not None:
            prev, prev_covered = self.pending
            assert prev.value is not None
            if is_out(prev.value, self.limit, self.direction):
                self.run.append((prev, min(p.ts_ms - prev.ts_ms, self.max_gap)))
                self.run_covered = self.run_covered or prev_covered
            if gap:
                changed += self._end_run(prev.ts_ms)
                changed += self._end_breach(prev.ts_ms, EndReason.NO_DATA)
        assert p.value is not None
        if not is_out(p.value, self.limit, self.direction):
            changed += self._end_run(p.ts_ms)
        self.pending = (p, covered)
        if (
            self.breach is not None
            and self.breach.end_ts_ms is None
            and self.in_window(p.ts_ms) <= self.allowance
        ):
            changed += self._end_breach(p.ts_ms, EndReason.WINDOW_END)
        self._forget(p.ts_ms)
        return changed

    def silence(self) -> list[Breach]:
        """The sensor fell silent: an open breach ends at its last reading."""
        if self.pending is None or self.breach is None or self.breach.end_ts_ms is not None:
            return []
        self.silenced = True
        return self._end_breach(self.pending[0].ts_ms, EndReason.NO_DATA)

    def checkpoint(self) -> dict[str, Any]:
        pending = None
        if self.pending is not None:
            point, covered = self.pending
            pending = [point.ts_ms, point.value, covered]
        return {
            "counted": [list(interval) for interval in self.counted],
            "run": [[p.ts_ms, p.value, duration] for p, duration in self.run],
            "run_covered": self.run_covered,
            "pending": pending,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.counted = deque((a, b) for a, b in saved["counted"])
        self.run = [(Point(ts, value), duration) for ts, value, duration in saved["run"]]
        self.run_covered = bool(saved["run_covered"])
        if saved["pending"] is not None:
            ts, value, covered = saved["pending"]
            self.pending = (Point(ts, value), bool(covered))

    def resume(self, breach: Breach) -> None:
        """An open breach read back from the store: its allowance counted up to its
        start, so that it lasts until that time slides out of the window."""
        self.breach = breach
        self.counted.append((breach.start_ts_ms - self.allowance, breach.start_ts_ms))
        self.found.append(breach)

    def _end_breach(self, ts_ms: int, reason: EndReason) -> list[Breach]:
        if self.breach is None or self.breach.end_ts_ms is not None:
            return []
        self.breach.end_ts_ms, self.breach.end_reason = max(ts_ms, self.breach.start_ts_ms), reason
        ended, self.breach = self.breach, None
        return [ended]

    def _end_run(self, ended_ms: int) -> list[Breach]:
        run, covered = self.run, self.run_covered
        self.run, self.run_covered = [], False
        if not run or covered:  # a continuous breach's minutes are counted there
            return []
        changed: list[Breach] = []
        for point, duration in run:
            assert point.value is not None
            before = self.in_window(point.ts_ms)
            self.counted.append((point.ts_ms, point.ts_ms + duration))
            if self.breach is not None:
                if widen(self.breach, point.value) and self.breach not in changed:
                    changed.append(self.breach)
                continue
            if before + duration <= self.allowance:
                continue
            crossed = point.ts_ms + max(0, self.allowance - before)
            self.breach = Breach(
                self.sensor,
                self.kind,
                self.level,
                crossed,
                max(crossed, ended_ms),
                min_value=point.value,
                max_value=point.value,
                settings={**self.snapshot, "window_start_ts_ms": self.window_start(crossed)},
            )
            self.found.append(self.breach)
            changed.append(self.breach)
        return changed

    def _forget(self, now_ms: int) -> None:
        horizon = self.window_start(now_ms)
        while self.counted and self.counted[0][1] <= horizon:
            self.counted.popleft()
