"""The live hub behind ``/api/live`` and the latest readings.

One MQTT subscription (plain, clean session: the pages show what is happening now; the
collector is the one that must never miss a reading) on the sites' readings and
statuses. The hub keeps the newest reading per sensor and each gateway's state, and
fans events out to the SSE clients through bounded queues: a client too slow to keep
up loses live events (it is told so), never the server's memory. Alarm changes come
from polling the alarms table once a second, since any process may change an alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.models import AlarmRow
from coldchain import wire
from coldchain.wire import Stream

log = logging.getLogger("coldchain.api.live")

QUEUE_SIZE = 2000


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


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # reading | status | alarm | broker
    data: dict[str, object]


@dataclass(eq=False)
class _Client:
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


class LiveHub:
    def __init__(
        self,
        engine: Engine,
        host: str,
        port: int,
        sites: tuple[str, ...] = ("+",),
        client_id: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.host, self.port, self.sites, self.poll_s = host, port, sites, poll_s
        self.latest: dict[tuple[str, str], LatestReading] = {}
        #: gateway id: online | offline | back-filling
        self.gateways: dict[str, str] = {}
        self.broker_connected = False
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._alarms: dict[int, tuple[object, ...]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"coldchain-api-{id(self):x}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def credentials(self, username: str, password: str | None) -> None:
        self._client.username_pw_set(username, password)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._alarms = await asyncio.to_thread(self._alarm_states)
        self._client.connect_async(self.host, self.port, clean_start=True)
        self._client.loop_start()
        self._poller = asyncio.create_task(self._poll_alarms())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ clients
    def subscribe(self) -> _Client:
        client = _Client()
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
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the live hub: %s", reason)
            return
        self.broker_connected = True
        log.info("live hub connected to %s:%s", self.host, self.port)
        topics = [(wire.subscription(Stream.READINGS, site), 0) for site in self.sites]
        topics += [(wire.subscription(Stream.STATUS, site), 1) for site in self.sites]
        client.subscribe(topics)
        self._emit(Event("broker", {"connected": True}))

    def _on_disconnect(self, *_args: object) -> None:
        if self.broker_connected:
            log.warning("live hub lost the broker; reconnecting")
        self.broker_connected = False
        self._emit(Event("broker", {"connected": False}))

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        stream = Stream.STATUS if msg.topic.endswith("/status") else Stream.READINGS
        try:
            message = wire.decode(stream, bytes(msg.payload))
        except wire.WireError:
            return  # the collector quarantines it
        if isinstance(message, wire.ReadingsBatch):
            for reading in message.readings:
                try:
                    quantity, value = reading.measure()
                except wire.WireError:
                    continue
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
                )
                key = (message.gateway, reading.sensor)
                current = self.latest.get(key)
                if current is not None and current.ts_ms >= reading.ts_ms:
                    continue  # a backlog reading: older than what is shown
                self.latest[key] = latest
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
                        },
                    )
                )
        elif isinstance(message, wire.Status):
            state: str = message.state
            if state == "online" and message.stats and message.stats.get("backlog", 0) > 0:
                state = "back-filling"
            if self.gateways.get(message.gateway) != state:
                self.gateways[message.gateway] = state
                self._emit(Event("status", {"gateway": message.gateway, "state": state}))

    # ------------------------------------------------------------------ alarms
    def _alarm_states(self) -> dict[int, tuple[object, ...]]:
        """Alarms not closed, and those closed in the last minute (so a closing is seen)."""
        since = time.time_ns() // 1_000_000 - 60_000
        with Session(self.engine) as s:
            rows = s.execute(
                select(AlarmRow).where(or_(AlarmRow.state != "closed", AlarmRow.closed_ms >= since))
            ).scalars()
            return {
                r.id: (r.state, r.acknowledged_by, r.assigned_to, r.cleared_ms, r.level)
                for r in rows
            }

    async def _poll_alarms(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                now = await asyncio.to_thread(self._alarm_states)
            except SQLAlchemyError as exc:
                log.warning("alarm poll failed: %s", exc)
                continue
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
                                "new": alarm_id not in self._alarms,
                            },
                        )
                    )
            self._alarms = now
