"""How each sensor is judged and fed.

Per assigned sensor a :class:`Series`: the streaming evaluator for its quantity with the
limits of the profile its location is run for, and its recent history. Readings are
judged on edge time. A reading not after the last one evaluated (a truck's backlog
arriving after live data) rebuilds the series from its history, and the store is made to
agree with the complete record by breach identity (:meth:`Judge.reconcile`). A series
created after a restart is replayed from the readings store's recent record, so that a
delay under way keeps counting, and takes over the breaches that were in progress.

The judge only reads the alert store (through :class:`Reads`); what it finds goes into
an :class:`Outcome` that the service stores in one transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerts.calibration import ByCalibratedSensor, corrected, in_force
from alerts.counters import JudgeCounters
from alerts.gateways import GatewayState
from alerts.models import Location
from alerts.profiles import ProductProfile
from coldchain import wire
from coldchain.judging.breach import (
    HUMIDITY,
    MINUTE_MS,
    TEMPERATURE,
    Breach,
    EndReason,
    Kind,
    Level,
    Point,
    SeriesSettings,
)
from coldchain.judging.door import DoorEvaluator
from coldchain.judging.limits import scaled
from coldchain.judging.rules import SensorEvaluator
from coldchain.wire import Quality, Quantity
from collector.store import StoredReading

log = logging.getLogger("coldchain.alerts")

#: how far back a series keeps (and replays) its history
HISTORY_MS = 48 * 3_600_000

#: breach kinds that carry no calibration in their snapshot
_UNCALIBRATED = (Kind.GATEWAY_OFFLINE, Kind.DOOR_OPEN, Kind.NO_DATA, Kind.DEVICE_ALARM)


class Evaluator(Protocol):
    last_ts_ms: int | None

    def feed(self, point: Point) -> list[Breach]: ...

    def resume(self, ongoing: Sequence[Breach]) -> None: ...

    def breaches(self) -> list[Breach]: ...

    def silence(self, now_ms: int) -> list[Breach]: ...

    def checkpoint(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def open_no_data(self, now_ms: int) -> Breach | None: ...


@dataclass
class Series:
    """One assigned sensor's evaluation: its limits in force (``signature``; a change
    starts a new evaluator) and its recent history for late-data re-evaluation."""

    gateway: str
    sensor: str
    quantity: Quantity
    location: str
    signature: str
    make: Callable[[], Evaluator]
    evaluator: Evaluator
    history: list[Point] = field(default_factory=list)
    #: the ongoing no-data breach the live watchdog stored, if any
    watchdog: Breach | None = None
    #: breaches in progress when the service last stopped, taken over from the store
    resumed: list[Breach] = field(default_factory=list)

    def fresh(self) -> Evaluator:
        """A new evaluator that continues the resumed breaches."""
        evaluator = self.make()
        evaluator.resume([b for b in self.resumed if b.kind is not Kind.NO_DATA])
        return evaluator


class Reads(Protocol):
    """What the judge reads: the alert store's breaches and the readings store's record."""

    def open_breaches(self, gateway: str, sensor: str) -> list[Breach]: ...

    def stored_breaches(self, gateway: str, sensor: str, since_ms: int) -> list[Breach]: ...

    def recent(self, gateway: str, sensor: str, start_ms: int, end_ms: int) -> list[StoredReading]:
        """The readings store's record (empty where there is none)."""
        ...

    def saved_state(self, gateway: str, sensor: str) -> tuple[str, dict[str, Any]] | None:
        """The evaluation state saved where there is no readings store."""
        ...


@dataclass
class Outcome:
    """What a step of judging found: breaches to store (by identity) and stored breaches
    that the complete record no longer has (to supersede)."""

    store: list[tuple[str, Breach]] = field(default_factory=list)
    supersede: list[tuple[str, Breach]] = field(default_factory=list)


@dataclass
class Assigned:
    """What the judge is configured with (the service reloads it from the store)."""

    profiles: dict[str, ProductProfile] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    #: (gateway, sensor): location id, for the assignments in force
    sensors: dict[tuple[str, str], str] = field(default_factory=dict)
    calibrations: ByCalibratedSensor = field(default_factory=dict)
    timezones: dict[str, str] = field(default_factory=dict)  #: site id: IANA time zone
    gateway_sites: dict[str, str] = field(default_factory=dict)  #: gateway id: site id


class Judge:
    def __init__(
        self, reads: Reads, time_scale: float = 1.0, counters: JudgeCounters | None = None
    ) -> None:
        self.reads = reads
        self.time_scale = time_scale
        self.counters = JudgeCounters() if counters is None else counters
        self.settings = SeriesSettings(
            max_gap_ms=int(30 * MINUTE_MS / time_scale),
            no_data_ms=int(66 * MINUTE_MS / time_scale),
            fault_ms=int(10 * MINUTE_MS / time_scale),
        )
        self.assigned = Assigned()
        self.series: dict[tuple[str, str], Series] = {}
        #: series fed since their state was last saved (:meth:`checkpoints`)
        self.dirty: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ configuration
    def configure(self, assigned: Assigned, out: Outcome) -> None:
        """New assignments, locations, profiles and calibrations. A series whose limits
        changed is closed and starts again with the new ones (its ongoing breaches end
        with reason ``settings_changed``)."""
        self.assigned = assigned
        for key, series in list(self.series.items()):
            plan = self._plan(*key, series.quantity)
            if plan is not None and plan[1] == series.signature:
                continue
            for breach in series.evaluator.breaches():
                if breach.ongoing and series.evaluator.last_ts_ms is not None:
                    breach.end_ts_ms = series.evaluator.last_ts_ms
                    breach.end_reason = EndReason.SETTINGS_CHANGED
                    self.emit(out, series.gateway, breach)
            del self.series[key]

    def emit(self, out: Outcome, gateway: str, breach: Breach) -> None:
        """Hand a breach to the service, a temperature breach with the calibration that
        was in force when it began."""
        if breach.kind not in _UNCALIBRATED:
            series = self.series.get((gateway, breach.sensor))
            if series is not None and series.quantity is Quantity.TEMP_C:
                cals = self.assigned.calibrations.get((gateway, breach.sensor), ())
                breach.settings.setdefault(
                    "calibration", in_force(cals, breach.start_ts_ms).as_dict()
                )
        out.store.append((gateway, breach))

    def place(self, location_id: str | None, site_id: str | None) -> tuple[str | None, str]:
        """The location's name and its site's time zone (people read times in it)."""
        location = self.assigned.locations.get(location_id or "")
        tz = self.assigned.timezones.get(site_id or "", "Asia/Shanghai")
        return None if location is None else location.name, tz

    # ------------------------------------------------------------------ readings
    def process(
        self, batch: wire.ReadingsBatch, gw: GatewayState | None, out: Outcome
    ) -> list[Breach]:
        """Judge one readings batch; returns the breaches it changed."""
        points: dict[tuple[str, str], tuple[Series, list[Point]]] = {}
        for reading in batch.readings:
            if reading.q is Quality.CLOCK_SUSPECT:
                continue  # its time is not known: the gateway's clock alarm says so
            quantity, value = reading.measure()
            if gw is not None:
                gw.seen(reading.ts_ms)
            series = self._series_of(batch.gateway, reading.sensor, quantity, out)
            if series is None:
                continue
            point = Point(reading.ts_ms, self._value(series, reading.ts_ms, reading.q, value))
            points.setdefault((batch.gateway, reading.sensor), (series, []))[1].append(point)
        holding = gw if gw is not None and gw.holding else None
        changed: list[Breach] = []
        for series, new in points.values():
            self.counters.readings += len(new)
            changed += self._feed(series, new, holding, out)
        for breach in {b.identity: b for b in changed}.values():
            if breach.kind is Kind.NO_DATA and holding is not None:
                holding.held.add(breach.sensor)  # judged once the backlog is in
                continue
            self.emit(out, batch.gateway, breach)
        return changed

    def watch(self, now_ms: int, quiet: Callable[[str], bool], out: Outcome) -> None:
        """Sensors silent on the wall clock: their open breaches end at their last reading
        (whatever their gateway's state: a breach ends with its evidence), and, while
        their gateway is not ``quiet``, the no-data breach starts."""
        for series in self.series.values():
            for ended in series.evaluator.silence(now_ms):
                self.emit(out, series.gateway, ended)
            if series.watchdog is not None or quiet(series.gateway):
                continue
            silent = series.evaluator.open_no_data(now_ms)
            if silent is not None:
                series.watchdog = silent
                self.emit(out, series.gateway, silent)

    def settle(self, gateway: str, sensors: set[str], out: Outcome) -> None:
        """The gateway has caught up: judge its held series on their complete record."""
        for sensor in sorted(sensors):
            series = self.series.get((gateway, sensor))
            if series is not None:
                self.reconcile(series, out)

    def take_over(self, out: Outcome) -> None:
        """This instance takes the lead: every series' breaches into the outcome (stored
        by identity), and the no-data watchdog re-armed so that a silence it found in
        standby is stored too."""
        for series in self.series.values():
            series.watchdog = None
            for breach in series.evaluator.breaches():
                self.emit(out, series.gateway, breach)

    def forget_gateway(self, gateway: str) -> None:
        """Drop a gateway's series (after a failure mid-feed): each is rebuilt from the
        readings store's record when its next reading comes."""
        for key in [k for k in self.series if k[0] == gateway]:
            del self.series[key]

    def _value(self, series: Series, ts_ms: int, q: Quality, value: object) -> float | None:
        # a value past its physical range is a broken sensor: judged as a fault
        if q is not Quality.OK or value is None or isinstance(value, tuple):
            return None
        number = float(value)  # type: ignore[arg-type]
        if series.quantity is Quantity.TEMP_C:
            cals = self.assigned.calibrations.get((series.gateway, series.sensor), ())
            return corrected(cals, ts_ms, number)
        return number

    def _plan(
        self, gateway: str, sensor: str, quantity: Quantity
    ) -> tuple[Callable[[], Evaluator], str] | None:
        """How a sensor is judged: the evaluator for its quantity with its location's
        limits, and their signature; None if nothing judges it."""
        assigned = self.assigned
        location = assigned.locations.get(assigned.sensors.get((gateway, sensor), ""))
        if location is None:
            return None
        profile = assigned.profiles.get(location.profile_id or "")
        settings = self.settings
        if quantity is Quantity.DOOR_OPEN:
            max_open_ms = int(location.door_open_max_min * MINUTE_MS / self.time_scale)
            return (
                lambda: DoorEvaluator(sensor, max_open_ms, settings.max_gap_ms),
                f"door:{max_open_ms}",
            )
        if quantity is Quantity.ALARM_ON:  # the device's own alarm: a breach while on
            return (
                lambda: DoorEvaluator(sensor, 0, settings.max_gap_ms, Kind.DEVICE_ALARM),
                "device_alarm",
            )
        if profile is None:
            return None
        if quantity is Quantity.TEMP_C:
            levels = {
                Level.WARNING: scaled(profile.warning, self.time_scale),
                Level.CRITICAL: scaled(profile.critical, self.time_scale),
            }
            measure = TEMPERATURE
        elif quantity is Quantity.RH_PCT and profile.humidity is not None:
            levels = {Level.WARNING: scaled(profile.humidity.as_level(), self.time_scale)}
            measure = HUMIDITY
        else:
            return None
        signature = json.dumps({k.value: v.model_dump() for k, v in levels.items()})
        return (lambda: SensorEvaluator(sensor, levels, settings, measure), signature)

    def _series_of(
        self, gateway: str, sensor: str, quantity: Quantity, out: Outcome
    ) -> Series | None:
        key = (gateway, sensor)
        series = self.series.get(key)
        if series is not None:
            return series if series.quantity is quantity else None
        plan = self._plan(gateway, sensor, quantity)
        if plan is None:
            return None
        make, signature = plan
        location = self.assigned.sensors[key]
        series = Series(gateway, sensor, quantity, location, signature, make, make())
        # a restart mid-breach keeps one breach: take over what was in progress before
        # the recent record; what is in the record is judged again from it
        stored_open = self.reads.open_breaches(gateway, sensor)
        record = self._recent(series)
        series.resumed = [b for b in stored_open if not record or b.start_ts_ms < record[0].ts_ms]
        series.evaluator = series.fresh()
        for point in record:
            series.evaluator.feed(point)
        if not record:  # no record to replay: go on from the state saved before the stop
            self._restore(series)
        series.history = record
        series.watchdog = next((b for b in stored_open if b.kind is Kind.NO_DATA), None)
        self.series[key] = series
        for breach in series.evaluator.breaches():
            self.emit(out, gateway, breach)  # by identity: what was stored stays one breach
        return series

    def _restore(self, series: Series) -> None:
        saved = self.reads.saved_state(series.gateway, series.sensor)
        if saved is None or saved[0] != series.signature:
            return  # nothing saved, or saved under other limits: start afresh
        try:
            series.evaluator.restore(saved[1])
        except (KeyError, TypeError, ValueError) as exc:  # a state of an older version
            log.warning("%s/%s: saved state not used (%s)", series.gateway, series.sensor, exc)
            series.evaluator = series.fresh()

    def checkpoints(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(gateway, sensor, signature, state) of the series fed since their state was
        saved; the caller takes them out of ``dirty`` once it has saved them."""
        found = []
        for key in sorted(self.dirty):
            series = self.series.get(key)
            if series is not None:
                found.append((*key, series.signature, series.evaluator.checkpoint()))
        return found

    def _recent(self, series: Series) -> list[Point]:
        """The series' last 48 h from the readings store, corrected like live readings."""
        now = time.time_ns() // 1_000_000
        stored = self.reads.recent(series.gateway, series.sensor, now - HISTORY_MS, now + 1)
        return [Point(r.ts_ms, self._value(series, r.ts_ms, r.q, r.value)) for r in stored]

    def _feed(
        self, series: Series, points: list[Point], holding: GatewayState | None, out: Outcome
    ) -> list[Breach]:
        """Feed one series its points of a batch. Points not after the last one evaluated
        (late data) rebuild the series from its history, once per batch; while its gateway
        back-fills (``holding``) the result is judged when it has caught up."""
        last = series.evaluator.last_ts_ms
        known = {p.ts_ms for p in series.history} if last is not None else set()
        late = [p for p in points if last is not None and p.ts_ms <= last and p.ts_ms not in known]
        fresh = [p for p in points if last is None or p.ts_ms > last]
        if late:
            self.counters.late_reevaluations += 1
            series.history = sorted(
                {p.ts_ms: p for p in series.history + late + fresh}.values(),
                key=lambda p: p.ts_ms,
            )
            rebuilt = series.fresh()
            for p in series.history:
                rebuilt.feed(p)
            series.evaluator, series.watchdog = rebuilt, None
            if holding is not None:
                holding.held.add(series.sensor)
            else:
                self.reconcile(series, out)
            return []
        changed: list[Breach] = []
        watched = series.watchdog if fresh and last is not None else None
        if fresh and series.watchdog is not None and last is None:
            # a no-data breach stored before a restart: data is back, it ends here
            series.watchdog.end_ts_ms = fresh[0].ts_ms
            series.watchdog.end_reason = EndReason.DATA_BACK
            changed.append(series.watchdog)
        if fresh:
            self.dirty.add((series.gateway, series.sensor))
        for point in fresh:
            # data is back: a gap closes with the watchdog's identity (see open_no_data)
            series.watchdog = None
            series.history.append(point)
            changed += series.evaluator.feed(point)
        if watched is not None and watched.identity not in {b.identity for b in changed}:
            # the watchdog saw silence, but the readings were there (they came late, in
            # order): no gap, no breach; the stored one is superseded, never left open
            out.supersede.append((series.gateway, watched))
        if fresh:
            horizon = fresh[-1].ts_ms - HISTORY_MS
            if series.history[0].ts_ms < horizon:
                series.history = [p for p in series.history if p.ts_ms >= horizon]
        return changed

    def reconcile(self, series: Series, out: Outcome) -> None:
        """Make the store agree with the series' evaluation of its complete recent record:
        store every breach by identity; a stored breach the record no longer has (a gap
        the backlog filled, a run late readings split) is superseded, never deleted."""
        found = series.evaluator.breaches()
        for breach in found:
            self.emit(out, series.gateway, breach)
        if not series.history:
            return
        kept = {b.identity for b in found}
        since = series.history[0].ts_ms
        for breach in self.reads.stored_breaches(series.gateway, series.sensor, since):
            if breach.identity not in kept:
                out.supersede.append((series.gateway, breach))
