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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.escalation import Route, escalate
from alerts.lifecycle import Policy
from alerts.models import Location, ProfileRow, SensorAssignment
from alerts.notify import Channel, deliver_due
from alerts.profiles import LevelLimits, ProductProfile
from alerts.repo import sync_alarm, upsert_breach
from alerts.rules import MINUTE_MS, Breach, Level, Point, SensorEvaluator, SeriesSettings
from coldchain import wire
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Quantity, Stream

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


@dataclass
class Series:
    evaluator: SensorEvaluator
    levels: dict[Level, LevelLimits]
    location: str
    history: list[Point] = field(default_factory=list)


@dataclass
class Escalation:
    """Who is told what, when: the policy, recipient routes and configured channels."""

    policy: Policy
    routes: dict[str, tuple[Route, ...]]
    channels: dict[str, Channel]
    tick_s: float = 1.0


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
        self._next_tick = 0.0
        self.settings = SeriesSettings(
            max_gap_ms=int(30 * MINUTE_MS / time_scale),
            no_data_ms=int(66 * MINUTE_MS / time_scale),
            fault_ms=int(10 * MINUTE_MS / time_scale),
        )
        self._series: dict[tuple[str, str], Series] = {}
        self._assignments: dict[tuple[str, str], str] = {}
        self._locations: dict[str, tuple[str, ProductProfile | None]] = {}
        self._queue: queue.Queue[Received] = queue.Queue()
        self._stop = threading.Event()
        self._generation = 0
        self.reload()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        mqtt_config.apply(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def reload(self) -> None:
        """Read sensor assignments, locations and their profiles from the store."""
        with Session(self.engine) as s:
            profiles = {
                p.id: ProductProfile.model_validate_json(p.body)
                for p in s.execute(select(ProfileRow)).scalars()
            }
            self._locations = {
                loc.id: (loc.name, profiles.get(loc.profile_id) if loc.profile_id else None)
                for loc in s.execute(select(Location)).scalars()
            }
            self._assignments = {
                (a.gateway, a.sensor): a.location_id
                for a in s.execute(
                    select(SensorAssignment).where(SensorAssignment.until_ms.is_(None))
                ).scalars()
            }

    # ------------------------------------------------------------------ MQTT
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the alert service: %s", reason)
            return
        self._generation += 1
        client.subscribe(
            [
                (f"$share/{self.group}/{wire.subscription(Stream.READINGS, site)}", 1)
                for site in self.sites
            ]
        )

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
            self._escalate()
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                batch = wire.decode(Stream.READINGS, item.payload)
            except wire.WireError:
                batch = None  # the collector quarantines it; nothing to evaluate
            if isinstance(batch, wire.ReadingsBatch):
                self.process(batch)
            if item.generation == self._generation:
                self._client.ack(item.mid, 1)

    def _escalate(self) -> None:
        if self.escalation is None or time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.escalation.tick_s
        now = time.time_ns() // 1_000_000
        escalate(self.engine, self.escalation.policy, self.escalation.routes, now)
        deliver_due(self.engine, self.escalation.channels, now)

    # ------------------------------------------------------------------ evaluation
    def process(self, batch: wire.ReadingsBatch) -> list[Breach]:
        """Evaluate one readings batch; store what changed; returns the changed breaches."""
        changed: list[Breach] = []
        for reading in batch.readings:
            quantity, value = reading.measure()
            if quantity is not Quantity.TEMP_C:
                continue
            series = self._series_of(batch.gateway, reading.sensor)
            if series is None:
                continue
            self.counters.readings += 1
            point = Point(
                reading.ts_ms,
                None
                if reading.q is Quality.FAULT
                else (float(value) if value is not None else None),
            )
            changed += self._feed(series, point)
        for breach in {b.identity: b for b in changed}.values():
            self._store(batch.gateway, breach)
        return changed

    def _series_of(self, gateway: str, sensor: str) -> Series | None:
        key = (gateway, sensor)
        series = self._series.get(key)
        if series is not None:
            return series
        location = self._assignments.get(key)
        if location is None:
            return None
        _name, profile = self._locations.get(location, ("", None))
        if profile is None:
            return None
        levels = {
            Level.WARNING: scaled(profile.warning, self.time_scale),
            Level.CRITICAL: scaled(profile.critical, self.time_scale),
        }
        series = Series(SensorEvaluator(sensor, levels, self.settings), levels, location)
        self._series[key] = series
        return series

    def _feed(self, series: Series, point: Point) -> list[Breach]:
        last = series.evaluator.last_ts_ms
        if last is not None and point.ts_ms <= last:
            if any(p.ts_ms == point.ts_ms for p in series.history):
                return []  # the same reading again (QoS 1 redelivery)
            # late data: re-evaluate the recent history with it, upsert by identity
            self.counters.late_reevaluations += 1
            series.history.append(point)
            series.history.sort(key=lambda p: p.ts_ms)
            rebuilt = SensorEvaluator(series.evaluator.sensor, series.levels, self.settings)
            for p in series.history:
                rebuilt.feed(p)
            series.evaluator = rebuilt
            return rebuilt.breaches()
        series.history.append(point)
        horizon = point.ts_ms - HISTORY_MS
        if series.history[0].ts_ms < horizon:
            series.history = [p for p in series.history if p.ts_ms >= horizon]
        return series.evaluator.feed(point)

    def _store(self, gateway: str, breach: Breach) -> None:
        row = upsert_breach(self.engine, gateway, breach)
        alarm, created = sync_alarm(self.engine, row)
        self.counters.breaches_changed += 1
        if created:
            self.counters.alarms_raised += 1
            name, _profile = self._locations.get(row.location_id or "", ("?", None))
            since = datetime.fromtimestamp(breach.start_ts_ms / 1000, UTC).strftime("%H:%M:%S")
            values = (
                f"max {breach.max_value:.1f} °C"
                if breach.kind.value == "high" and breach.max_value is not None
                else f"min {breach.min_value:.1f} °C"
                if breach.min_value is not None
                else ""
            )
            self.on_alarm(
                f"ALARM {breach.level.value} {breach.kind.value}: {name} "
                f"({gateway}/{breach.sensor}) since {since}Z {values}; batches "
                f"{', '.join(_batches(row.batches)) or 'none'} [alarm {alarm.id}]"
            )


def _batches(text: str) -> list[str]:
    return list(json.loads(text))
