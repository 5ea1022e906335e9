"""The live hub behind ``/api/live`` and the latest readings.

One MQTT subscription through the shared :class:`~coldchain.mqtt.Consumer` (plain,
clean session: the pages show what is happening now; the collector is the one that must
never miss a reading) on the sites' readings and statuses. The hub keeps the newest
reading per sensor and each gateway's state, and fans events out to the SSE clients
through bounded queues: a client too slow to keep up loses live events (it is told so),
never the server's memory. Alarm changes come
from polling the alarms table once a second, since any process may change an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.calibration import ByCalibratedSensor, calibrations_by_sensor, corrected, in_force
from alerts.models import AlarmRow, BreachRow
from coldchain import heartbeat, wire
from coldchain.accept import accept
from coldchain.health import CountersCollector, registry_of
from coldchain.mqtt import Consumer, Delivery, SessionSpec
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Stream

log = logging.getLogger("coldchain.api.live")

QUEUE_SIZE = 2000
#: a gateway whose oldest published message has waited this many of its
#: confirm_timeout_s (after which it sends again; 300 s for a gateway that does not say)
#: for a store's confirmation is marked: its data reaches the broker, no store takes it
UNCONFIRMED_TIMEOUTS = 2.5
UNCONFIRMED_S = 300


@dataclass(frozen=True, slots=True)
class LatestReading:
    gateway: str
    site: str
    sensor: str
    quantity: str
    value: float | bool | None
    q: str
    ts_ms: int
    lat_deg: float | None = None
    lon_deg: float | None = None
    speed_kmh: float | None = None
    #: a temperature as measured, and the calibration correction in force that
    #: ``value`` has applied (the reports apply the same, alerts.calibration)
    raw_value: float | bool | None = None
    correction_c: float = 0.0


@dataclass
class LiveCounters:
    #: messages the one way in refused (the collector quarantines its copy)
    refused: int = 0
    #: readings and gateway states passed on to the pages
    readings: int = 0
    statuses: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # reading | status | alarm | broker
    data: dict[str, object]


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False
    #: the session it was opened by (the SHA-256 of its token) and its user
    session: str = ""
    username: str = ""


#: open event streams one session, and one user, may hold (a page opens one)
STREAMS_PER_SESSION = 4
STREAMS_PER_USER = 16


class LiveHub:
    def __init__(
        self,
        engine: Engine,
        mqtt_config: MqttConfig,
        sites: tuple[str, ...] = ("+",),
        client_id: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.sites, self.poll_s = sites, poll_s
        self.latest: dict[tuple[str, str], LatestReading] = {}
        #: gateway id: online | offline | back-filling | unconfirmed
        self.gateways: dict[str, str] = {}
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alarms: dict[int, tuple[object, ...]] = {}
        #: every sensor's calibrations, reloaded with the alarms (replaced whole: the
        #: worker thread reads it)
        self._calibrations: ByCalibratedSensor = {}
        self._poller: asyncio.Task[None] | None = None
        topics = [(wire.subscription(Stream.READINGS, site), 0) for site in sites]
        topics += [(wire.subscription(Stream.STATUS, site), 1) for site in sites]
        topics += [(heartbeat.subscription(), 1)]  # the services' heartbeats, for /api/health
        self._consumer = Consumer(
            mqtt_config,
            SessionSpec(client_id or f"coldchain-api-{id(self):x}", clean_start=True),
            topics,
            self._handle,
            name="live-hub",
            batch_max=500,
        )
        self._consumer.on_connected = self._on_connect
        self._consumer.on_disconnected = self._on_disconnect
        #: the hub's worker and the broker connection, for /api/health
        self.health = self._consumer.health
        self.counters = LiveCounters()
        self.metrics = registry_of(
            CountersCollector(
                "coldchain_api_live",
                lambda: self.counters,
                self.health,
                gauges=lambda: {
                    "clients": len(self._clients),
                    "queued_messages": self._consumer.queued,
                },
                totals=lambda: {"messages_received": self._consumer.received},
            )
        )
        #: each service's last heartbeat and when it came ("kind/id")
        self.services: dict[str, tuple[heartbeat.ServiceBeat, float]] = {}

    @property
    def broker_connected(self) -> bool:
        return self._consumer.connected

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._alarms = await asyncio.to_thread(self._alarm_states)
        await asyncio.to_thread(self._consumer.start)
        self._poller = asyncio.create_task(self._poll_alarms())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await asyncio.to_thread(self._consumer.stop)

    # ------------------------------------------------------------------ clients
    def room_for(self, session: str, username: str) -> bool:
        """Whether the session and its user may open one more event stream."""
        by_session = sum(1 for c in self._clients if c.session == session)
        by_user = sum(1 for c in self._clients if c.username == username)
        return by_session < STREAMS_PER_SESSION and by_user < STREAMS_PER_USER

    def subscribe(self, session: str = "", username: str = "") -> _Client:
        client = _Client(session=session, username=username)
        self._clients.add(client)
        return client

    def unsubscribe(self, client: _Client) -> None:
        self._clients.discard(client)

    def _publish(self, event: Event) -> None:
        for client in self._clients:
            try:
                client.queue.put_nowait(event)
                client.overflowed = False
            except asyncio.QueueFull:
                if not client.overflowed:
                    client.overflowed = True
                    log.warning("a live client is too slow: dropping its events")

    def _emit(self, event: Event) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, event)

    # ------------------------------------------------------------------ MQTT
    def _on_connect(self, _session_present: bool) -> None:
        self._emit(Event("broker", {"connected": True}))

    def _on_disconnect(self) -> None:
        self._emit(Event("broker", {"connected": False}))

    def _handle(self, batch: Sequence[Delivery]) -> bool:
        for item in batch:
            self._on_message(item.topic, item.payload)
        return True

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic.startswith(heartbeat.SERVICES_ROOT + "/"):
            try:
                beat = heartbeat.decode_beat(payload)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.counters.refused += 1
                return
            self.services[f"{beat.kind}/{beat.service}"] = (beat, time.monotonic())
            return
        try:
            message = accept(topic, payload).message  # the one way in
        except wire.WireError:
            self.counters.refused += 1
            return  # the collector quarantines its copy
        if isinstance(message, wire.ReadingsBatch):
            for reading in message.readings:
                quantity, raw = reading.measure()
                value, correction = raw, 0.0
                cals = self._calibrations.get((message.gateway, reading.sensor))
                if cals and quantity is wire.Quantity.TEMP_C and isinstance(raw, float):
                    correction = in_force(cals, reading.ts_ms).correction_c
                    value = corrected(cals, reading.ts_ms, raw)
                latest = LatestReading(
                    message.gateway,
                    message.site,
                    reading.sensor,
                    quantity.value,
                    value,
                    reading.q.value,
                    reading.ts_ms,
                    reading.lat_deg,
                    reading.lon_deg,
                    reading.speed_kmh,
                    raw,
                    correction,
                )
                key = (message.gateway, reading.sensor)
                current = self.latest.get(key)
                if (
                    current is not None
                    and current.ts_ms >= reading.ts_ms
                    and not (
                        current.q == Quality.CLOCK_SUSPECT
                        and reading.q is not Quality.CLOCK_SUSPECT
                    )
                ):
                    continue  # a backlog reading: older than what is shown (a reading
                    # from a clock that was ahead gives way to one from a right clock)
                self.latest[key] = latest
                self.counters.readings += 1
                self._emit(
                    Event(
                        "reading",
                        {
                            "gateway": latest.gateway,
                            "site": latest.site,
                            "sensor": latest.sensor,
                            "quantity": latest.quantity,
                            "value": latest.value,
                            "q": latest.q,
                            "ts_ms": latest.ts_ms,
                            "lat_deg": latest.lat_deg,
                            "lon_deg": latest.lon_deg,
                            "speed_kmh": latest.speed_kmh,
                            "raw_value": latest.raw_value,
                            "correction_c": latest.correction_c,
                        },
                    )
                )
        elif isinstance(message, wire.Status):
            state: str = message.state
            stats = message.stats or {}
            timeout_s = stats.get("confirm_timeout_s")
            limit = UNCONFIRMED_TIMEOUTS * timeout_s if timeout_s else UNCONFIRMED_S
            if state == "online" and stats.get("oldest_unconfirmed_age_s", 0) > limit:
                state = "unconfirmed"  # the broker takes its data, no store confirms it
            elif state == "online" and stats.get("behind", stats.get("backlog", 0)) > 0:
                state = "back-filling"
            if self.gateways.get(message.gateway) != state:
                self.gateways[message.gateway] = state
                self.counters.statuses += 1
                self._emit(
                    Event(
                        "status",
                        {"gateway": message.gateway, "site": message.site, "state": state},
                    )
                )

    # ------------------------------------------------------------------ alarms
    def _alarm_states(self) -> dict[int, tuple[object, ...]]:
        """Alarms not closed, and those closed in the last minute (so a closing is seen);
        the calibrations are read again on the way."""
        since = time.time_ns() // 1_000_000 - 60_000
        with Session(self.engine) as s:
            self._calibrations = calibrations_by_sensor(s)
            rows = s.execute(
                select(AlarmRow, BreachRow.site_id)
                .join(BreachRow, BreachRow.id == AlarmRow.breach_id)
                .where(or_(AlarmRow.state != "closed", AlarmRow.closed_ms >= since))
            ).all()
            return {
                r.id: (r.state, r.acknowledged_by, r.assigned_to, r.cleared_ms, r.level, site)
                for r, site in rows
            }

    async def _poll_alarms(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if not self.health.alive:
                # never a live server with a dead hub: stop it for its restart policy
                log.critical("the live hub's worker stopped: stopping the API")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            try:
                now = await asyncio.to_thread(self._alarm_states)
            except SQLAlchemyError as exc:
                self.health.problem("alarm poll", f"failed: {type(exc).__name__}; retrying")
                continue
            self.health.clear("alarm poll")
            for alarm_id, state in now.items():
                if self._alarms.get(alarm_id) != state:
                    self._publish(
                        Event(
                            "alarm",
                            {
                                "id": alarm_id,
                                "state": state[0],
                                "acknowledged_by": state[1],
                                "assigned_to": state[2],
                                "level": state[4],
                                "site": state[5],
                                "new": alarm_id not in self._alarms,
                            },
                        )
                    )
            self._alarms = now
