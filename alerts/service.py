"""The alert service: readings from MQTT in, breaches and alarms out.

Its own shared-subscription group (``alerts``) and persistent session, manual
acknowledgement after the database commit, like the collector. Per assigned sensor a
streaming evaluator, judged on edge time with the limits of the profile its location
is run for. A reading older than the last one evaluated (a truck's backlog arriving
after live data) triggers a re-evaluation of the sensor's recent history, and the
breaches are upserted by identity: the late data creates the breach it should, once.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.escalation import Route, escalate, remind_calibrations
from alerts.lifecycle import Policy
from alerts.models import BreachRow, Calibration, Location, ProfileRow, SensorAssignment
from alerts.notify import Channel, deliver_due
from alerts.profiles import LevelLimits, ProductProfile
from alerts.repo import (
    GATEWAY_WIDE,
    breach_of,
    calibrations_by_sensor,
    in_force,
    open_breach,
    open_breaches,
    stored_breaches,
    supersede_breach,
    sync_alarm,
    upsert_breach,
)
from alerts.rules import (
    HUMIDITY,
    MINUTE_MS,
    TEMPERATURE,
    Breach,
    DoorEvaluator,
    Kind,
    Level,
    Point,
    SensorEvaluator,
    SeriesSettings,
)
from coldchain import wire
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Quantity, Stream
from collector.store import Store

log = logging.getLogger("coldchain.alerts")

HISTORY_MS = 48 * 3_600_000


def scaled(limits: LevelLimits, factor: float) -> LevelLimits:
    """Limits with their times divided by ``factor`` (the demo runs its county faster
    than real time; production uses factor 1)."""
    if factor == 1:
        return limits
    update: dict[str, float] = {
        "delay_min": limits.delay_min / factor,
        "clear_delay_min": limits.clear_delay_min / factor,
        "window_h": limits.window_h / factor,
    }
    if limits.cumulative_min is not None:
        update["cumulative_min"] = limits.cumulative_min / factor
    return limits.model_copy(update=update)


class Evaluator(Protocol):
    last_ts_ms: int | None

    def feed(self, point: Point) -> list[Breach]: ...

    def resume(self, ongoing: Sequence[Breach]) -> None: ...

    def breaches(self) -> list[Breach]: ...

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


@dataclass
class GatewayState:
    """What the retained status and the heartbeats say of a gateway."""

    online: bool = True
    #: newest edge time seen from it (readings, heartbeats)
    last_seen_ms: int | None = None
    offline_since_ms: int | None = None
    reason: str | None = None
    #: back online with buffered readings still draining (heartbeat ``backlog`` > 0):
    #: gaps in its sensors' data are held, not judged, until it has caught up
    backfilling: bool = False
    offline: dict[Level, Breach] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class GatewayRule:
    """Gateway offline (last will or a planned stop): warning, then critical, after these
    many minutes without it (DOMAIN.md: yellow after about an hour, red at two)."""

    levels: tuple[tuple[Level, float], ...] = ((Level.WARNING, 10.0), (Level.CRITICAL, 120.0))


@dataclass
class Escalation:
    """Who is told what, when: the policy (per site where one is configured), recipient
    routes and configured channels."""

    policy: Policy
    routes: dict[str, tuple[Route, ...]]
    channels: dict[str, Channel]
    tick_s: float = 1.0
    site_policies: dict[str, Policy] = field(default_factory=dict)
    #: how often calibrations coming due are checked (reminders are queued once each)
    reminder_every_s: float = 3600.0


@dataclass
class Received:
    payload: bytes
    topic: str
    mid: int
    generation: int


@dataclass
class AlertCounters:
    readings: int = 0
    breaches_changed: int = 0
    alarms_raised: int = 0
    late_reevaluations: int = 0
    superseded: int = 0
    statuses: int = 0


class AlertService:
    def __init__(
        self,
        engine: Engine,
        mqtt_config: MqttConfig,
        *,
        client_id: str = "alerts-1",
        group: str = "alerts",
        sites: tuple[str, ...] = ("+",),
        time_scale: float = 1.0,
        on_alarm: Callable[[str], None] | None = None,
        escalation: Escalation | None = None,
        gateway_rule: GatewayRule = GatewayRule(),
        reload_s: float = 60.0,
        history: Callable[[], Store] | None = None,
    ) -> None:
        self.engine = engine
        self.mqtt_config = mqtt_config
        self.client_id = client_id
        self.group = group
        self.sites = sites
        self.time_scale = time_scale
        self.on_alarm = on_alarm or (lambda line: log.warning("%s", line))
        self.counters = AlertCounters()
        self.escalation = escalation
        self.gateway_rule = gateway_rule
        self.reload_s = reload_s
        #: opens the readings store: a series created after a start is replayed from its
        #: recent record, so that a delay under way when the service stopped still counts
        self.history = history
        self._next_tick = 0.0
        self._next_reminder = 0.0
        self._next_reload = time.monotonic() + reload_s
        self.settings = SeriesSettings(
            max_gap_ms=int(30 * MINUTE_MS / time_scale),
            no_data_ms=int(66 * MINUTE_MS / time_scale),
            fault_ms=int(10 * MINUTE_MS / time_scale),
        )
        self._series: dict[tuple[str, str], Series] = {}
        self._assignments: dict[tuple[str, str], str] = {}
        self._locations: dict[str, Location] = {}
        self._profiles: dict[str, ProductProfile] = {}
        self._calibrations: dict[tuple[str, str], list[Calibration]] = {}
        self.gateways: dict[str, GatewayState] = {}
        self._queue: queue.Queue[Received] = queue.Queue()
        self._stop = threading.Event()
        self._generation = 0
        #: connected to the broker (the health check reads it)
        self.connected = False
        self.reload()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        mqtt_config.apply(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def reload(self) -> None:
        """Read sensor assignments, locations, their profiles and the calibrations from
        the store. A series whose limits changed is closed and starts again with the new
        ones (its ongoing breaches end with reason ``settings_changed``)."""
        with Session(self.engine) as s:
            self._profiles = {
                p.id: ProductProfile.model_validate_json(p.body)
                for p in s.execute(select(ProfileRow)).scalars()
            }
            locations = list(s.execute(select(Location)).scalars())
            for loc in locations:
                s.expunge(loc)
            self._locations = {loc.id: loc for loc in locations}
            self._assignments = {
                (a.gateway, a.sensor): a.location_id
                for a in s.execute(
                    select(SensorAssignment).where(SensorAssignment.until_ms.is_(None))
                ).scalars()
            }
        self._calibrations = calibrations_by_sensor(self.engine)
        for key, series in list(self._series.items()):
            plan = self._plan(*key, series.quantity)
            if plan is not None and plan[1] == series.signature:
                continue
            for breach in series.evaluator.breaches():
                if breach.ongoing and series.evaluator.last_ts_ms is not None:
                    breach.end_ts_ms = series.evaluator.last_ts_ms
                    breach.end_reason = "settings_changed"
                    self._store(series.gateway, breach)
            del self._series[key]

    # ------------------------------------------------------------------ MQTT
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the alert service: %s", reason)
            return
        self._generation += 1
        self.connected = True
        readings = [
            (f"$share/{self.group}/{wire.subscription(Stream.READINGS, site)}", 1)
            for site in self.sites
        ]
        # statuses are few and retained: a plain subscription gets the retained ones
        # (a shared one would not); every instance of the service sees them all
        statuses = [(wire.subscription(Stream.STATUS, site), 1) for site in self.sites]
        client.subscribe(readings + statuses)

    def _on_disconnect(self, *_args: object) -> None:
        self.connected = False

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(Received(bytes(msg.payload), msg.topic, msg.mid, self._generation))

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 7 * 24 * 3600
        self._client.connect_async(
            self.mqtt_config.host, self.mqtt_config.port, clean_start=False, properties=props
        )
        self._client.loop_start()
        self._worker = threading.Thread(target=self._work, name="alerts", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(30)
        self._client.disconnect()
        self._client.loop_stop()

    def _work(self) -> None:
        while not self._stop.is_set():
            self._tick()
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._handle(item)
            if item.generation == self._generation:
                self._client.ack(item.mid, 1)

    def _handle(self, item: Received) -> None:
        stream = Stream.STATUS if item.topic.endswith("/status") else Stream.READINGS
        try:
            message = wire.decode(stream, item.payload)
        except wire.WireError:
            return  # the collector quarantines it; nothing to evaluate
        if isinstance(message, wire.ReadingsBatch):
            self.process(message)
        elif isinstance(message, wire.Status):
            self.on_status(message)

    def _tick(self) -> None:
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + (self.escalation.tick_s if self.escalation else 1.0)
        if now >= self._next_reload:
            self._next_reload = now + self.reload_s
            self.reload()
        self.watch(time.time_ns() // 1_000_000)
        if self.escalation is None:
            return
        e, wall = self.escalation, time.time_ns() // 1_000_000
        escalate(self.engine, e.policy, e.routes, wall, e.site_policies)
        if now >= self._next_reminder:
            self._next_reminder = now + e.reminder_every_s
            remind_calibrations(self.engine, e.policy, e.routes, wall, e.site_policies)
        deliver_due(self.engine, e.channels, wall)

    # ------------------------------------------------------------------ gateways
    def on_status(self, status: wire.Status, now_ms: int | None = None) -> None:
        """A gateway's retained status, its last will or a heartbeat."""
        self.counters.statuses += 1
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        gw = self.gateways.get(status.gateway)
        if gw is None:
            gw = self.gateways[status.gateway] = self._adopt(status.gateway)
        if status.state == "offline":
            if gw.online:
                gw.online, gw.reason = False, status.reason
                # the will was written at connect time: the outage began after the last
                # thing heard from the gateway, or now if nothing was
                gw.offline_since_ms = gw.last_seen_ms if gw.last_seen_ms is not None else now
                log.warning("gateway %s offline (%s)", status.gateway, status.reason or "stopped")
            return
        gw.last_seen_ms = max(gw.last_seen_ms or status.ts_ms, status.ts_ms)
        if not gw.online or gw.offline:
            for breach in gw.offline.values():
                breach.end_ts_ms = max(status.ts_ms, breach.start_ts_ms)
                breach.end_reason = "back_online"
                self._store(status.gateway, breach)
            if not gw.online:
                log.warning("gateway %s back online", status.gateway)
            gw.offline, gw.online, gw.offline_since_ms = {}, True, None
            gw.backfilling = True  # until a heartbeat says its outbox has drained
        if status.stats is not None:
            backfilling = status.stats.get("backlog", 0) > 0
            if gw.backfilling and not backfilling:
                self._settle(status.gateway, gw)
            gw.backfilling = backfilling

    def _adopt(self, gateway: str) -> GatewayState:
        """A gateway first heard of since start: ongoing offline breaches stored before a
        restart are taken over (they stay one breach each)."""
        gw = GatewayState(backfilling=True)
        for level, _delay in self.gateway_rule.levels:
            row = open_breach(self.engine, gateway, GATEWAY_WIDE, Kind.GATEWAY_OFFLINE, level)
            if row is not None:
                gw.online, gw.offline_since_ms = False, row.start_ms
                gw.offline[level] = breach_of(row)
        return gw

    def _settle(self, gateway: str, gw: GatewayState) -> None:
        """The gateway has caught up: judge its held series on their complete record."""
        for sensor in sorted(gw.held):
            series = self._series.get((gateway, sensor))
            if series is not None:
                self._reconcile(series)
        gw.held.clear()

    def watch(self, now_ms: int) -> None:
        """Live checks on the wall clock: gateways offline too long, sensors silent while
        their gateway is online and caught up."""
        for gateway, gw in self.gateways.items():
            if gw.online or gw.offline_since_ms is None:
                continue
            for level, delay_min in self.gateway_rule.levels:
                delay_ms = int(delay_min * MINUTE_MS / self.time_scale)
                start = gw.offline_since_ms
                if level in gw.offline or now_ms - start < delay_ms:
                    continue
                breach = Breach(
                    GATEWAY_WIDE,
                    Kind.GATEWAY_OFFLINE,
                    level,
                    start,
                    start + delay_ms,
                    settings={"offline_min": delay_min, "reason": gw.reason or "stopped"},
                )
                gw.offline[level] = breach
                self._store(gateway, breach)
        for series in self._series.values():
            state = self.gateways.get(series.gateway)
            if series.watchdog is not None or (
                state is not None and (not state.online or state.backfilling)
            ):
                continue
            silent = series.evaluator.open_no_data(now_ms)
            if silent is not None:
                series.watchdog = silent
                self._store(series.gateway, silent)

    # ------------------------------------------------------------------ evaluation
    def process(self, batch: wire.ReadingsBatch) -> list[Breach]:
        """Evaluate one readings batch; store what changed; returns the changed breaches."""
        gw = self.gateways.get(batch.gateway)
        points: dict[tuple[str, str], tuple[Series, list[Point]]] = {}
        for reading in batch.readings:
            quantity, value = reading.measure()
            if gw is not None and (gw.last_seen_ms is None or reading.ts_ms > gw.last_seen_ms):
                gw.last_seen_ms = reading.ts_ms
            series = self._series_of(batch.gateway, reading.sensor, quantity)
            if series is None:
                continue
            point = Point(reading.ts_ms, self._value(series, reading, value))
            points.setdefault((batch.gateway, reading.sensor), (series, []))[1].append(point)
        holding = gw is not None and (gw.backfilling or not gw.online)
        changed: list[Breach] = []
        for series, new in points.values():
            self.counters.readings += len(new)
            changed += self._feed(series, new, gw if holding else None)
        for breach in {b.identity: b for b in changed}.values():
            if breach.kind is Kind.NO_DATA and gw is not None and holding:
                gw.held.add(breach.sensor)  # judged once the backlog is in
                continue
            self._store(batch.gateway, breach)
        return changed

    def _value(self, series: Series, reading: wire.Reading, value: object) -> float | None:
        if reading.q is Quality.FAULT or value is None or isinstance(value, tuple):
            return None
        number = float(value)  # type: ignore[arg-type]
        if series.quantity is Quantity.TEMP_C:
            cals = self._calibrations.get((series.gateway, series.sensor), ())
            number += in_force(cals, reading.ts_ms).correction_c
        return number

    def _plan(
        self, gateway: str, sensor: str, quantity: Quantity
    ) -> tuple[Callable[[], Evaluator], str] | None:
        """How a sensor is judged: the evaluator for its quantity with its location's
        limits, and their signature; None if nothing judges it."""
        location = self._locations.get(self._assignments.get((gateway, sensor), ""))
        if location is None:
            return None
        profile = self._profiles.get(location.profile_id or "")
        settings = self.settings
        if quantity is Quantity.DOOR_OPEN:
            max_open_ms = int(location.door_open_max_min * MINUTE_MS / self.time_scale)
            return (
                lambda: DoorEvaluator(sensor, max_open_ms, settings.max_gap_ms),
                f"door:{max_open_ms}",
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

    def _series_of(self, gateway: str, sensor: str, quantity: Quantity) -> Series | None:
        key = (gateway, sensor)
        series = self._series.get(key)
        if series is not None:
            return series if series.quantity is quantity else None
        plan = self._plan(gateway, sensor, quantity)
        if plan is None:
            return None
        make, signature = plan
        location = self._assignments[key]
        series = Series(gateway, sensor, quantity, location, signature, make, make())
        # a restart mid-breach keeps one breach: take over what was in progress before
        # the recent record; what is in the record is judged again from it
        stored_open = open_breaches(self.engine, gateway, sensor)
        record = self._recent(series)
        series.resumed = [b for b in stored_open if not record or b.start_ts_ms < record[0].ts_ms]
        series.evaluator = series.fresh()
        for point in record:
            series.evaluator.feed(point)
        series.history = record
        series.watchdog = next((b for b in stored_open if b.kind is Kind.NO_DATA), None)
        self._series[key] = series
        for breach in series.evaluator.breaches():
            self._store(gateway, breach)  # by identity: what was stored stays one breach
        return series

    def _recent(self, series: Series) -> list[Point]:
        """The series' last 48 h from the readings store, corrected like live readings."""
        if self.history is None:
            return []
        now = time.time_ns() // 1_000_000
        try:
            store = self.history()
            try:
                stored = list(
                    store.readings(
                        start_ms=now - HISTORY_MS,
                        end_ms=now + 1,
                        sensor=series.sensor,
                        gateway=series.gateway,
                    )
                )
            finally:
                store.close()
        except Exception as exc:  # any store's failure: judge from live data only, say so
            log.warning(
                "%s/%s: recent record unavailable (%s); judging from live data",
                series.gateway,
                series.sensor,
                exc,
            )
            return []
        cals = self._calibrations.get((series.gateway, series.sensor), ())
        points = []
        for r in stored:
            value: float | None = None
            if r.q is not Quality.FAULT and r.value is not None:
                value = float(r.value)
                if series.quantity is Quantity.TEMP_C:
                    value += in_force(cals, r.ts_ms).correction_c
            points.append(Point(r.ts_ms, value))
        return points

    def _feed(
        self, series: Series, points: list[Point], holding: GatewayState | None
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
                self._reconcile(series)
            return []
        changed: list[Breach] = []
        if fresh and series.watchdog is not None and last is None:
            # a no-data breach stored before a restart: data is back, it ends here
            series.watchdog.end_ts_ms, series.watchdog.end_reason = fresh[0].ts_ms, "data_back"
            changed.append(series.watchdog)
        for point in fresh:
            # data is back: a gap closes with the watchdog's identity (see open_no_data)
            series.watchdog = None
            series.history.append(point)
            changed += series.evaluator.feed(point)
        if fresh:
            horizon = fresh[-1].ts_ms - HISTORY_MS
            if series.history[0].ts_ms < horizon:
                series.history = [p for p in series.history if p.ts_ms >= horizon]
        return changed

    def _reconcile(self, series: Series) -> None:
        """Make the store agree with the series' evaluation of its complete recent record:
        upsert every breach by identity; a stored breach the record no longer has (a gap
        the backlog filled, a run late readings split) is superseded, never deleted."""
        found = series.evaluator.breaches()
        for breach in found:
            self._store(series.gateway, breach)
        if not series.history:
            return
        kept = {b.identity for b in found}
        since = series.history[0].ts_ms
        for breach in stored_breaches(self.engine, series.gateway, series.sensor, since):
            if breach.identity not in kept and supersede_breach(
                self.engine, series.gateway, breach
            ):
                self.counters.superseded += 1
                log.info("breach %s superseded by late data", breach.identity)

    def _store(self, gateway: str, breach: Breach) -> None:
        if breach.kind not in (Kind.GATEWAY_OFFLINE, Kind.DOOR_OPEN, Kind.NO_DATA):
            series = self._series.get((gateway, breach.sensor))
            if series is not None and series.quantity is Quantity.TEMP_C:
                cals = self._calibrations.get((gateway, breach.sensor), ())
                breach.settings.setdefault(
                    "calibration", in_force(cals, breach.start_ts_ms).as_dict()
                )
        row = upsert_breach(self.engine, gateway, breach)
        alarm, created = sync_alarm(self.engine, row)
        self.counters.breaches_changed += 1
        if created:
            self.counters.alarms_raised += 1
            self.on_alarm(_alarm_line(self._locations, gateway, breach, row, alarm.id))


def _alarm_line(
    locations: dict[str, Location], gateway: str, breach: Breach, row: BreachRow, alarm_id: int
) -> str:
    location = locations.get(row.location_id or "")
    name = location.name if location is not None else f"gateway {gateway}"
    since = datetime.fromtimestamp(breach.start_ts_ms / 1000, UTC).strftime("%H:%M:%S")
    unit = "%" if breach.kind in (Kind.RH_HIGH, Kind.RH_LOW) else " °C"
    values = ""
    if (
        breach.kind in (Kind.HIGH, Kind.CUMULATIVE_HIGH, Kind.RH_HIGH)
        and breach.max_value is not None
    ):
        values = f" max {breach.max_value:.1f}{unit}"
    elif breach.min_value is not None:
        values = f" min {breach.min_value:.1f}{unit}"
    where = f"{gateway}/{breach.sensor}" if breach.sensor else gateway
    batches = ", ".join(json.loads(row.batches)) or "none"
    return (
        f"ALARM {breach.level.value} {breach.kind.value}: {name} ({where}) since "
        f"{since}Z{values}; batches {batches} [alarm {alarm_id}]"
    )
