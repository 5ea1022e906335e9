"""The cab's own alarms: a truck's gateway judges its compartments by the limits the
alert service sent down (coldchain.wire_limits), with the alert service's own rules
(coldchain.judging), so that the driver sees a warning or critical breach in the cab
with no signal. The alert service stays the record: nothing judged here is published.

The latest limits message is kept on disk beside the outbox (written whole, then
renamed): a gateway started in a dead zone judges by the limits it last had. A message
that does not follow the contract is refused with its reason and the ones before stay
in force.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from coldchain.judging.breach import TEMPERATURE, Breach, Level, Point, SeriesSettings
from coldchain.judging.door import DoorEvaluator
from coldchain.judging.limits import LevelLimits
from coldchain.judging.rules import SensorEvaluator
from coldchain.logs import Throttled
from coldchain.wire import Quality, Quantity, Reading, WireError
from coldchain.wire_limits import Limits, SensorLimits, decode_limits, encode_limits

log = logging.getLogger("coldchain.gateway.cab")

#: the cab judges no silence (its page shows how old each reading is)
_NEVER_MS = 10**15
_RANK = {None: 0, Level.WARNING.value: 1, Level.CRITICAL.value: 2}


@dataclass
class Judged:
    """One sensor judged for the cab: its limits, its evaluator and its open breaches."""

    limits: SensorLimits
    levels: dict[Level, LevelLimits]
    evaluator: SensorEvaluator | DoorEvaluator | None = None
    last_ts_ms: int | None = None
    last_value: float | None = None
    open: dict[tuple[str, str, str, int], Breach] = field(default_factory=dict)

    def feed(self, reading: Reading, settings: SeriesSettings) -> None:
        if self.last_ts_ms is not None and reading.ts_ms <= self.last_ts_ms:
            return  # an older reading (a bus's clock stepped back): the record judges it
        mine, value = self._value(reading)
        if not mine:
            return
        if self.evaluator is None:
            self.evaluator = self._evaluator(reading, settings)
        self.last_ts_ms, self.last_value = reading.ts_ms, value
        for breach in self.evaluator.feed(Point(reading.ts_ms, value)):
            if breach.ongoing:
                self.open[breach.identity] = breach
            else:
                self.open.pop(breach.identity, None)

    def _value(self, r: Reading) -> tuple[bool, float | None]:
        """Whether the reading is one this sensor is judged on, and its value (a
        temperature corrected by the calibration in force; a door 1 open, 0 closed;
        None for a fault)."""
        if r.door_open is not None:
            return self.limits.door_max_min is not None, 1.0 if r.door_open else 0.0
        if r.temp_c is not None and r.q is Quality.OK:
            return True, round(r.temp_c + self.limits.correction_c, 3)
        return r.temp_c is not None or r.quantity is Quantity.TEMP_C, None

    def _evaluator(self, r: Reading, settings: SeriesSettings) -> SensorEvaluator | DoorEvaluator:
        if r.door_open is not None and self.limits.door_max_min is not None:
            return DoorEvaluator(
                self.limits.sensor, int(self.limits.door_max_min * 60_000), settings.max_gap_ms
            )
        return SensorEvaluator(self.limits.sensor, self.levels, settings, TEMPERATURE)

    def worst(self) -> Breach | None:
        return max(
            self.open.values(), key=lambda b: (_RANK[b.level.value], -b.start_ts_ms), default=None
        )

    def outside(self) -> bool:
        """The last value is beyond the warning limits (a breach may not be due yet)."""
        w, v = self.levels[Level.WARNING], self.last_value
        if v is None or isinstance(self.evaluator, DoorEvaluator):
            return False
        return (w.high_c is not None and v > w.high_c) or (w.low_c is not None and v < w.low_c)


@dataclass
class LimitsCounters:
    limits_taken: int = 0
    #: limits messages that did not follow the contract (the ones before stay in force)
    limits_refused: int = 0


class CabAlarms:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.judged: dict[str, Judged] = {}
        self.settings = SeriesSettings(no_data_ms=_NEVER_MS)
        self.counters = LimitsCounters()
        self._refusals = Throttled(log)
        #: when the limits in force were made by the alert service (None: none yet)
        self.made_ms: int | None = None
        if path.exists():
            try:
                self._apply(decode_limits(path.read_bytes()))
            except (WireError, ValidationError, OSError) as exc:
                log.error("the limits kept in %s are unusable (%s): none until new ones", path, exc)

    def take(self, payload: bytes) -> None:
        """A limits message from the broker: checked, kept on disk, put in force."""
        try:
            limits = decode_limits(payload)
            self._apply(limits)
        except (WireError, ValidationError) as exc:
            self.counters.limits_refused += 1
            self._refusals.warning(
                "limits", "limits message refused (%s); the ones before stay", exc
            )
            return
        self.counters.limits_taken += 1
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_bytes(encode_limits(limits))
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk: in force now, not across a restart
            log.warning("cannot keep the limits on disk (%s)", exc)

    def _apply(self, limits: Limits) -> None:
        judged: dict[str, Judged] = {}
        for s in limits.sensors:
            levels = {
                Level.WARNING: LevelLimits.model_validate(s.warning),
                Level.CRITICAL: LevelLimits.model_validate(s.critical),
            }
            before = self.judged.get(s.sensor)
            # the same limits: the evaluation goes on; others: it starts again
            same = before is not None and before.limits == s
            judged[s.sensor] = before if same and before is not None else Judged(s, levels)
        self.settings = SeriesSettings(
            max_gap_ms=limits.max_gap_ms, no_data_ms=_NEVER_MS, fault_ms=limits.fault_ms
        )
        self.judged, self.made_ms = judged, limits.ts_ms
        log.info("cab limits in force for %d sensors", len(judged))

    def feed(self, readings: list[Reading]) -> None:
        for reading in readings:
            judged = self.judged.get(reading.sensor)
            if judged is not None:
                judged.feed(reading, self.settings)

    def state(self, sensors: list[str]) -> dict[str, object]:
        """The cab's view of a compartment's sensors: the worst open breach, whether the
        temperature is beyond its warning limits now, and the limits themselves."""
        mine = [self.judged[s] for s in sensors if s in self.judged]
        breaches = [b for j in mine if (b := j.worst()) is not None]
        worst = max(breaches, key=lambda b: _RANK[b.level.value], default=None)
        temps = [j for j in mine if not isinstance(j.evaluator, DoorEvaluator)]
        first = temps[0] if temps else None
        w = first.levels[Level.WARNING] if first else None
        c = first.levels[Level.CRITICAL] if first else None
        return {
            "level": None if worst is None else worst.level.value,
            "kind": None if worst is None else worst.kind.value,
            "since_ms": None if worst is None else worst.start_ts_ms,
            "outside": any(j.outside() for j in temps),
            "limits": None
            if w is None or c is None
            else {"low_c": w.low_c, "high_c": w.high_c, "critical_low_c": c.low_c,
                  "critical_high_c": c.high_c},
            "profile": first.limits.profile if first else None,
        }  # fmt: skip
