"""Rule evaluation: one sensor's history in, breaches out.

:func:`evaluate` is a pure function of the readings (in edge-time order) and the limits
in force: evaluating the same history again returns the same breaches with the same
identities, which is how a late backlog is handled (re-evaluate, upsert by identity)
and how a restart mid-breach keeps one breach. See docs/design-alerts.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coldchain.judging.breach import (
    DEFAULT_SERIES,
    HUMIDITY,
    MINUTE_MS,
    TEMPERATURE,
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
from coldchain.judging.cumulative import Cumulative
from coldchain.judging.limits import LevelLimits

__all__ = ["HUMIDITY", "TEMPERATURE", "SensorEvaluator", "evaluate"]


def evaluate(
    sensor: str,
    readings: Sequence[Point],
    levels: dict[Level, LevelLimits],
    settings: SeriesSettings = DEFAULT_SERIES,
) -> list[Breach]:
    """All breaches of one sensor's readings (sorted by edge time): the reference use of
    :class:`SensorEvaluator`, fed the whole history at once."""
    evaluator = SensorEvaluator(sensor, levels, settings)
    for point in readings:
        evaluator.feed(point)
    return evaluator.breaches()


class SensorEvaluator:
    """Streaming evaluation of one sensor: feed readings in edge-time order; each call
    returns the breaches it created or changed. Readings that arrive out of order are
    the caller's to handle: rebuild an evaluator from a checkpoint and feed the sorted
    history again (breaches keep their identities, so upserting them is idempotent)."""

    def __init__(
        self,
        sensor: str,
        levels: dict[Level, LevelLimits],
        settings: SeriesSettings = DEFAULT_SERIES,
        measure: Measure = TEMPERATURE,
    ) -> None:
        self.sensor = sensor
        self.settings = settings
        self.measure = measure
        self.last_ts_ms: int | None = None
        self._pairs: list[tuple[_Continuous, Cumulative | None]] = []
        for level, limits in levels.items():
            for direction in ("high", "low"):
                limit = limits.high_c if direction == "high" else limits.low_c
                if limit is None:
                    continue
                continuous = _Continuous(sensor, level, direction, limit, limits, settings, measure)
                cumulative = (
                    Cumulative(sensor, level, direction, limit, limits, settings, measure)
                    if limits.cumulative_min is not None
                    else None
                )
                self._pairs.append((continuous, cumulative))
        self._faults = _Faults(sensor, settings)
        self._no_data = _NoData(sensor, settings)
        self._silenced = False

    def feed(self, point: Point) -> list[Breach]:
        if self.last_ts_ms is not None and point.ts_ms <= self.last_ts_ms:
            raise ValueError(
                f"{self.sensor}: reading at {point.ts_ms} is not after "
                f"{self.last_ts_ms}; re-evaluate from a checkpoint"
            )
        changed: list[Breach] = []
        if self._silenced:
            self._silenced = False
            gap = self.last_ts_ms is not None and point.ts_ms - self.last_ts_ms > (
                self.settings.max_gap_ms
            )
            if not gap:  # data went on without a gap (it came late): not a silence
                for continuous, _cumulative in self._pairs:
                    changed += continuous.reopen()
                changed += self._faults.reopen()
        self.last_ts_ms = point.ts_ms
        if point.value is not None:
            for continuous, cumulative in self._pairs:
                changed += continuous.feed(point)
                if cumulative is not None:
                    changed += cumulative.feed(point, covered=continuous.active is not None)
        if self.measure.judge_health:
            changed += self._faults.feed(point)
            changed += self._no_data.feed(point)
        return changed

    def resume(self, ongoing: Sequence[Breach]) -> None:
        """Take over breaches still in progress when the service stopped (read back from
        the store): new readings continue them, so a restart never splits a breach."""
        for b in ongoing:
            for continuous, cumulative in self._pairs:
                if (b.kind, b.level) == (continuous.kind, continuous.level):
                    continuous.active, continuous.run_start = b, b.start_ts_ms
                    continuous.found.append(b)
                elif cumulative is not None and (b.kind, b.level) == (
                    cumulative.kind,
                    cumulative.level,
                ):
                    cumulative.resume(b)
            if b.kind is Kind.FAULT:
                self._faults.breach, self._faults.start = b, b.start_ts_ms
                self._faults.found.append(b)

    def checkpoint(self) -> dict[str, Any]:
        """What is under way and not yet a breach (runs counting toward a delay, the
        time counted toward cumulative allowances, a fault run, the last reading), as
        JSON-able data: a restart without a readings store goes on from it. Breaches
        already stored are taken over from the store (:meth:`resume`)."""
        return {
            "last_ts_ms": self.last_ts_ms,
            "silenced": self._silenced,
            "pairs": [
                {
                    "continuous": continuous.checkpoint(),
                    "cumulative": None if cumulative is None else cumulative.checkpoint(),
                }
                for continuous, cumulative in self._pairs
            ],
            "fault_start": self._faults.start,
            "no_data_previous_ts": self._no_data.previous_ts,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from a checkpoint (after :meth:`resume`, which took over the stored
        breaches): pairs are matched in order, as the same limits make them."""
        if len(state["pairs"]) != len(self._pairs):
            raise ValueError(f"{self.sensor}: a checkpoint of other limits")
        self.last_ts_ms = state["last_ts_ms"]
        self._silenced = bool(state["silenced"])
        for (continuous, cumulative), saved in zip(self._pairs, state["pairs"], strict=True):
            continuous.restore(saved["continuous"])
            if cumulative is not None and saved["cumulative"] is not None:
                cumulative.restore(saved["cumulative"])
        if self._faults.breach is None:
            self._faults.start = state["fault_start"]
        self._no_data.previous_ts = state["no_data_previous_ts"]

    def breaches(self) -> list[Breach]:
        found: list[Breach] = []
        for continuous, cumulative in self._pairs:
            found += continuous.found
            if cumulative is not None:
                found += cumulative.found
        found += self._faults.found + self._no_data.found
        found.sort(key=lambda b: (b.start_ts_ms, b.raised_ts_ms, b.kind.value, b.level.value))
        return found

    def silence(self, now_ms: int) -> list[Breach]:
        """For the live watchdog (wall clock): when nothing has arrived for the no-data
        time, the open breaches end at the last reading (reason no_data): a breach ends
        with its evidence, and a sensor that never comes back leaves nothing open. Data
        that goes on without a gap (it came late) opens them again."""
        last = self.last_ts_ms
        if self._silenced or last is None or now_ms - last <= self.settings.no_data_ms:
            return []
        self._silenced = True
        changed: list[Breach] = []
        for continuous, cumulative in self._pairs:
            changed += continuous.silence()
            if cumulative is not None:
                changed += cumulative.silence()
        changed += self._faults.silence(last)
        return changed

    def open_no_data(self, now_ms: int) -> Breach | None:
        """For the live watchdog (wall clock): an ongoing no-data breach if nothing has
        arrived for too long. It has the identity the closed one will have once data comes
        back, so it is upserted, never duplicated."""
        last = self.last_ts_ms
        if (
            not self.measure.judge_health
            or last is None
            or now_ms - last <= self.settings.no_data_ms
        ):
            return None
        return Breach(
            self.sensor,
            Kind.NO_DATA,
            Level.WARNING,
            last,
            last + self.settings.no_data_ms,
            settings={"no_data_min": self.settings.no_data_ms / MINUTE_MS},
        )


def _is_back(value: float, limit: float, deadband: float, direction: Direction) -> bool:
    return value <= limit - deadband if direction == "high" else value >= limit + deadband


class _Continuous:
    """High or low for longer than the delay; ends back inside by the deadband for the
    clear delay; a gap ends it (no_data)."""

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
        self.sensor, self.level, self.direction, self.limit = sensor, level, direction, limit
        self.kind = measure.high if direction == "high" else measure.low
        self.delay = int(limits.delay_min * MINUTE_MS)
        self.clear_delay = int(limits.clear_delay_min * MINUTE_MS)
        self.deadband = limits.deadband_c
        self.max_gap = settings.max_gap_ms
        self.snapshot: dict[str, object] = {
            f"limit_{measure.unit}": limit,
            "delay_min": limits.delay_min,
            f"deadband_{measure.unit}": limits.deadband_c,
            "clear_delay_min": limits.clear_delay_min,
        }
        self.found: list[Breach] = []
        self.active: Breach | None = None
        self.run_start: int | None = None
        self.run_values: list[float] = []
        self.back_since: int | None = None
        self.previous_ts: int | None = None

    def checkpoint(self) -> dict[str, Any]:
        values = self.run_values
        return {
            "run_start": self.run_start,
            "run_min_max": [min(values), max(values)] if values else [],
            "back_since": self.back_since,
            "previous_ts": self.previous_ts,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.previous_ts, self.back_since = saved["previous_ts"], saved["back_since"]
        if self.active is None:  # a run under way toward the delay goes on counting
            self.run_start, self.run_values = saved["run_start"], list(saved["run_min_max"])

    def silence(self) -> list[Breach]:
        if self.active is None or self.active.end_ts_ms is not None or self.previous_ts is None:
            return []
        self.active.end_ts_ms, self.active.end_reason = self.previous_ts, EndReason.NO_DATA
        return [self.active]

    def reopen(self) -> list[Breach]:
        if self.active is None or self.active.end_reason is not EndReason.NO_DATA:
            return []
        self.active.end_ts_ms, self.active.end_reason = None, None
        return [self.active]

    def feed(self, p: Point) -> list[Breach]:
        assert p.value is not None
        changed: list[Breach] = []
        if self.previous_ts is not None and p.ts_ms - self.previous_ts > self.max_gap:
            if self.active is not None:  # nothing continues across a gap
                self.active.end_ts_ms, self.active.end_reason = self.previous_ts, EndReason.NO_DATA
                changed.append(self.active)
                self.active = None
            self.run_start, self.run_values, self.back_since = None, [], None
        self.previous_ts = p.ts_ms
        v = p.value
        if self.active is None:
            if is_out(v, self.limit, self.direction):
                if self.run_start is None:
                    self.run_start, self.run_values = p.ts_ms, []
                self.run_values.append(v)
                if p.ts_ms - self.run_start >= self.delay:
                    self.active = Breach(
                        self.sensor,
                        self.kind,
                        self.level,
                        self.run_start,
                        p.ts_ms,
                        min_value=min(self.run_values),
                        max_value=max(self.run_values),
                        settings=dict(self.snapshot),
                    )
                    self.found.append(self.active)
                    changed.append(self.active)
            else:
                self.run_start, self.run_values = None, []
            return changed
        if _is_back(v, self.limit, self.deadband, self.direction):
            if self.back_since is None:
                self.back_since = p.ts_ms
            if p.ts_ms - self.back_since >= self.clear_delay:
                self.active.end_ts_ms, self.active.end_reason = (
                    self.back_since,
                    EndReason.BACK_IN_RANGE,
                )
                changed.append(self.active)
                self.active, self.back_since, self.run_start, self.run_values = None, None, None, []
            return changed
        self.back_since = None
        if widen(self.active, v):
            changed.append(self.active)  # reported only when its min or max moved
        return changed


class _Faults:
    def __init__(self, sensor: str, settings: SeriesSettings) -> None:
        self.sensor, self.fault_ms = sensor, settings.fault_ms
        self.found: list[Breach] = []
        self.start: int | None = None
        self.breach: Breach | None = None

    def silence(self, last_ts_ms: int) -> list[Breach]:
        if self.breach is None or self.breach.end_ts_ms is not None:
            return []
        self.breach.end_ts_ms, self.breach.end_reason = last_ts_ms, EndReason.NO_DATA
        return [self.breach]

    def reopen(self) -> list[Breach]:
        if self.breach is None or self.breach.end_reason is not EndReason.NO_DATA:
            return []
        self.breach.end_ts_ms, self.breach.end_reason = None, None
        return [self.breach]

    def feed(self, p: Point) -> list[Breach]:
        if p.value is None:
            if self.start is None:
                self.start = p.ts_ms
            if self.breach is None and p.ts_ms - self.start >= self.fault_ms:
                self.breach = Breach(
                    self.sensor,
                    Kind.FAULT,
                    Level.CRITICAL,
                    self.start,
                    p.ts_ms,
                    settings={"fault_min": self.fault_ms / MINUTE_MS},
                )
                self.found.append(self.breach)
                return [self.breach]
            return []
        changed = []
        if self.breach is not None:
            self.breach.end_ts_ms, self.breach.end_reason = p.ts_ms, EndReason.BACK_IN_RANGE
            changed.append(self.breach)
        self.start, self.breach = None, None
        return changed


class _NoData:
    """Gaps in the edge timestamps longer than ``no_data_ms``, closed when data comes
    back (the open one, data still missing now, is :meth:`SensorEvaluator.open_no_data`)."""

    def __init__(self, sensor: str, settings: SeriesSettings) -> None:
        self.sensor, self.no_data_ms = sensor, settings.no_data_ms
        self.found: list[Breach] = []
        self.previous_ts: int | None = None

    def feed(self, p: Point) -> list[Breach]:
        previous, self.previous_ts = self.previous_ts, p.ts_ms
        if previous is None or p.ts_ms - previous <= self.no_data_ms:
            return []
        breach = Breach(
            self.sensor,
            Kind.NO_DATA,
            Level.WARNING,
            previous,
            previous + self.no_data_ms,
            end_ts_ms=p.ts_ms,
            end_reason=EndReason.DATA_BACK,
            settings={"no_data_min": self.no_data_ms / MINUTE_MS},
        )
        self.found.append(breach)
        return [breach]
