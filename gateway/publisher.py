"""The MQTT side of the gateway: from the outbox to the broker, and PUBACKs back.

paho-mqtt runs its network loop on its own thread; every callback is handed to the
asyncio loop with ``call_soon_threadsafe``, so all bookkeeping happens on one thread.

Two lanes share the in-flight window:

- live: rows added since the last (re)connect, sealed together after ``linger_ms``;
- backlog: rows from before, oldest first, ``backlog_chunk`` rows per message, at most
  ``backlog_rate_per_s`` rows per second and never the last two window slots, so live
  readings keep flowing while days of backlog drain.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from coldchain import wire
from coldchain.backoff import Backoff
from coldchain.logs import Throttled
from coldchain.mqtt import SessionSpec, connect, make_client
from coldchain.wire import Status, Stream
from gateway.clock import now_ms
from gateway.config import GatewayConfig
from gateway.confirm import Confirmations
from gateway.outbox import SealedMessage
from gateway.outbox_file import AsyncOutbox, unwritable

log = logging.getLogger("coldchain.gateway.mqtt")

LIVE_RESERVE = 2  # window slots the backlog lane never takes
NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason: accepted, but delivered to nobody


@dataclass
class PublisherCounters:
    published_messages: int = 0
    published_rows: int = 0
    acked_messages: int = 0
    acked_readings: int = 0
    rejected_acks: int = 0
    connects: int = 0
    disconnects: int = 0


class Publisher:
    def __init__(self, config: GatewayConfig, outbox: AsyncOutbox, version: str) -> None:
        self.config = config
        self.outbox = outbox
        self.version = version
        self.counters = PublisherCounters()
        self._gw = config.gateway
        self._opts = config.outbox
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._connected = False
        self._republish_done = False
        # rows with id <= boundary are backlog; None while disconnected (all backlog)
        self._boundary: int | None = None
        self._inflight: dict[int, SealedMessage] = {}
        self._refused: list[SealedMessage] = []
        self._refused_connect: str | None = None
        # per stream: why the broker last refused it, and when to try again
        self._refusal: dict[Stream, str] = {}
        self._retry_backoff = {s: Backoff(1.0, 60.0) for s in (Stream.READINGS, Stream.EVENTS)}
        self._retry_tasks: dict[Stream, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        #: the error that stopped a helper task (the run loop raises it)
        self._failure: BaseException | None = None
        self._by_store = self._opts.confirm == "store"
        self.confirmations = Confirmations(
            outbox, gateway=self._gw.id, timeout_s=self._opts.confirm_timeout_s
        )
        #: overdue messages waiting to be sent again
        self._resends: deque[SealedMessage] = deque()
        #: told each limits message for the cab's own alarms (gateway/cab_alarms.py)
        self.on_limits: Callable[[bytes], None] | None = None
        self._disk = Throttled(log)
        self._tokens = float(self._opts.backlog_chunk)
        self._tokens_at = time.monotonic()
        self._stopping = False
        # a clean session: the outbox, not the broker, keeps what is not yet acknowledged
        self._session = SessionSpec(config.mqtt.client_id or self._gw.id, clean_start=True)
        self._client = self._make_client()

    # ------------------------------------------------------------------ paho setup
    def _make_client(self) -> mqtt.Client:
        client = make_client(self.config.mqtt, self._session)
        client.max_inflight_messages_set(self._opts.window)
        will = self._status("offline", "lwt")
        client.will_set(self.topic(Stream.STATUS), will, qos=1, retain=True)
        # paho calls these on its network thread: each hands over to the loop
        client.on_connect = lambda _c, _u, _f, reason, _p: self._soon(self._on_connect, reason)
        client.on_disconnect = lambda _c, _u, _f, why, _p: self._soon(self._on_disconnect, why)
        client.on_publish = lambda _c, _u, mid, why, _p: self._soon(self._on_publish, mid, why)
        client.on_message = lambda _c, _u, msg: self._soon(
            self._on_message, msg.topic, bytes(msg.payload), bool(msg.retain)
        )
        return client

    def topic(self, stream: Stream) -> str:
        return wire.topic(self._gw.site, self._gw.id, stream)

    def _soon(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ events (loop)
    def _on_connect(self, reason: ReasonCode) -> None:
        if reason.is_failure:
            if str(reason) != self._refused_connect:  # once per change, not per retry
                log.error("broker refused the connection: %s (retrying)", reason)
            self._refused_connect = str(reason)
            return
        self._refused_connect = None
        self._connected = True
        self.counters.connects += 1
        self._spawn(self._after_connect())

    async def _after_connect(self) -> None:
        self._boundary = await self.outbox.call(self.outbox.sync.last_pending_id)
        stats = await self.outbox.call(self.outbox.sync.stats)
        log.info(
            "broker connected %s:%s (backlog: %d rows, %d sealed messages)",
            self.config.mqtt.host,
            self.config.mqtt.port,
            stats.pending,
            stats.sealed_messages,
        )
        if self._by_store:  # QoS 0: each watermark covers the ones before, and the
            # retained one comes with every subscribe; no PUBACK for each
            self._client.subscribe(self.topic(Stream.STORED), qos=0)
        if self.on_limits is not None:  # retained too: the latest comes with the subscribe
            self._client.subscribe(self.topic(Stream.LIMITS), qos=1)
        self.publish_status("online")
        refused, self._refused = self._refused, []
        for msg in refused:
            self._send(msg)
        self._wake.set()

    def _on_disconnect(self, reason: ReasonCode) -> None:
        if self._connected and not self._stopping:
            log.warning("broker connection lost: %s; buffering in the outbox", reason)
            self.counters.disconnects += 1
        self._connected = False
        self._boundary = None
        self._resends.clear()  # the next check queues what is still overdue
        self.confirmations.resending.clear()

    def _on_publish(self, mid: int, reason: ReasonCode) -> None:
        msg = self._inflight.pop(mid, None)
        if msg is None:  # status messages are not tracked
            return
        no_subscriber = reason.value == NO_MATCHING_SUBSCRIBERS and self._opts.require_subscriber
        if reason.is_failure or no_subscriber:
            # keep the message (it stays sealed in the outbox) and send it again later:
            # an ACL may be fixed, a collector may create its session
            self.counters.rejected_acks += 1
            key = str(reason)
            if self._refusal.get(msg.stream) != key:  # once per change of state
                log.error(
                    "broker did not take %s seq %d: %s; kept in the outbox, retrying",
                    msg.stream,
                    msg.seq,
                    reason,
                )
                self._refusal[msg.stream] = key
            self._refused.append(msg)
            self._schedule_retry(msg.stream)
            return
        if msg.stream in self._refusal:
            log.info("broker takes %s again (after %s)", msg.stream, self._refusal.pop(msg.stream))
            self._retry_backoff[msg.stream].succeeded()
        self.counters.acked_messages += 1
        if msg.stream is Stream.READINGS:
            self.counters.acked_readings += msg.n
        self._spawn(self._ack(msg))

    def _schedule_retry(self, stream: Stream) -> None:
        task = self._retry_tasks.get(stream)
        if task is None or task.done():
            self._retry_tasks[stream] = self._spawn(self._retry_refused(stream))

    async def _retry_refused(self, stream: Stream) -> None:
        await asyncio.sleep(self._retry_backoff[stream].failed())
        if not self._connected:
            return  # _after_connect resends them
        again = [m for m in self._refused if m.stream is stream]
        self._refused = [m for m in self._refused if m.stream is not stream]
        for msg in again:
            self._send(msg)

    async def _ack(self, msg: SealedMessage) -> None:
        try:
            if self._by_store:  # kept until the store confirms it
                self._wake.set()  # the window has room now, not when the mark is written
                await self.confirmations.published(msg.stream, msg.seq)
            else:
                await self.outbox.call(self.outbox.sync.ack, msg.stream, msg.seq)
        except sqlite3.OperationalError as exc:
            if not unwritable(exc):
                raise
            # still unpublished on disk: it goes again (a copy the store absorbs)
            self._disk.warning("outbox", "cannot record a PUBACK in the outbox (%s)", exc)
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if not topic.endswith(f"/{Stream.LIMITS}"):
            self._spawn(self.confirmations.on_stored(payload, retained))
        elif self.on_limits is not None:
            self.on_limits(payload)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """A helper task whose error ends the publisher (and so the gateway, whose unit
        restarts it), never a task that dies unseen."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            self._wake.set()

    def _queue_resends(self, messages: list[SealedMessage]) -> None:
        self._resends.extend(messages)
        self._wake.set()

    # ------------------------------------------------------------------ public
    def notify(self) -> None:
        """New rows are in the outbox."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._connected

    def publish_status(
        self, state: str, reason: str | None = None, stats: dict[str, int] | None = None
    ) -> None:
        status = self._status(state, reason, stats)
        self._client.publish(self.topic(Stream.STATUS), status, qos=1, retain=True)

    def _status(self, state: str, reason: str | None, stats: dict[str, int] | None = None) -> bytes:
        return wire.encode(
            Status(
                v=wire.SCHEMA_VERSION,
                gateway=self._gw.id,
                site=self._gw.site,
                state="online" if state == "online" else "offline",
                ts_ms=now_ms(),
                reason=reason,
                version=self.version,
                stats=stats,
            )
        )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        connect(self._client, self.config.mqtt, self._session)
        if self._by_store:
            self._spawn(self.confirmations.watch(lambda: self._connected, self._queue_resends))
        try:
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:  # a helper task cannot go on: neither can we
                    raise self._failure
                if self._connected and self._boundary is not None:
                    await self._pump_unless_unwritable()
        finally:
            self._client.loop_stop()

    async def drain(self, timeout_s: float) -> bool:
        """On a planned stop: send what is buffered while the broker is there (bounded)."""
        deadline = time.monotonic() + timeout_s
        while self._connected and time.monotonic() < deadline:
            stats = await self.outbox.call(self.outbox.sync.stats)
            published = stats.pending == 0 and stats.unpublished == 0 and not self._inflight
            # and confirmed, while collectors are confirming; what they have not
            # confirmed by the deadline stays on disk for the next start
            if published and (stats.unconfirmed == 0 or not self.confirmations.heard):
                return True
            self._wake.set()
            await asyncio.sleep(0.05)
        return False

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Publish offline status, wait briefly for in-flight PUBACKs, disconnect."""
        if self._connected:
            self.publish_status("offline", reason="shutdown")
            deadline = time.monotonic() + timeout_s
            while self._inflight and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # PUBACKs arrive on paho's thread
        if self._by_store:  # what the broker took is not sent again at the next start
            try:
                await self.confirmations.write_marks()
            except sqlite3.OperationalError as exc:
                if not unwritable(exc):
                    raise
        self._stopping = True
        self._client.disconnect()
        log.info("disconnected from the broker")
        self._wake.set()

    # ------------------------------------------------------------------ pumping
    def _room(self) -> int:
        return self._opts.window - len(self._inflight)

    async def _pump_unless_unwritable(self) -> None:
        """Pump; an outbox the disk does not take (full) is tried again a second later,
        never the end of the publisher (the sink keeps the polls in memory meanwhile)."""
        try:
            await self._pump()
        except sqlite3.OperationalError as exc:
            if not unwritable(exc):
                raise
            self._disk.warning("outbox", "cannot seal in the outbox (%s); trying again", exc)
            await asyncio.sleep(1.0)
            self._wake.set()

    async def _pump(self) -> None:
        if not self._republish_done:
            await self._republish_previous_run()
        await self._pump_live()
        await self._pump_backlog()

    async def _republish_previous_run(self) -> None:
        """Sealed messages left by a previous process go first, in seq order."""
        leftovers = await self.outbox.call(self.outbox.sync.unpublished)
        for msg in leftovers:
            while self._room() <= 0 and self._connected:
                await self._wait_for_room()
            if not self._connected:
                return  # paho resends what it already took; the rest waits for reconnect
            self._send(msg)
        self._republish_done = True
        if leftovers:
            log.info("republished %d sealed messages from before the restart", len(leftovers))

    async def _wait_for_room(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    async def _pump_live(self) -> None:
        boundary = self._boundary
        if boundary is None or self._room() <= 0:
            return
        last = await self.outbox.call(self.outbox.sync.last_pending_id)
        if last <= boundary:
            return
        if self._opts.linger_ms:
            await asyncio.sleep(self._opts.linger_ms / 1000)
        for stream in self._sendable_streams():
            while self._room() > 0 and self._connected:
                msg = await self.outbox.call(
                    self.outbox.sync.seal, stream, after_id=boundary, limit=self._opts.backlog_chunk
                )
                if msg is None:
                    break
                self._send(msg)

    async def _pump_backlog(self) -> None:
        while self._connected and self._boundary is not None:
            room = self._room() - LIVE_RESERVE
            if room <= 0:
                return
            self._refill_tokens()
            if self._tokens < 0:
                # a full chunk went out on credit: wait the debt off, so that the rate
                # holds on average and every backlog message is a full chunk
                await asyncio.sleep(-self._tokens / self._opts.backlog_rate_per_s)
                self._wake.set()  # come back to live first
                return
            if self._resends:  # what the store did not confirm goes before new backlog
                again = self._resends.popleft()
                self._tokens -= again.n
                self.confirmations.counters.resent_messages += 1
                self._send(again)
                continue
            limit = self._opts.backlog_chunk
            msg = None
            for stream in self._sendable_streams():
                msg = await self.outbox.call(
                    self.outbox.sync.seal, stream, up_to_id=self._boundary, limit=limit
                )
                if msg is not None:
                    break
            if msg is None:
                return
            self._tokens -= msg.n
            self._send(msg)

    def _sendable_streams(self) -> list[Stream]:
        """Streams the broker takes: while it refuses one, its refused messages are retried
        first (order kept, broker not flooded) and the rest waits in the outbox."""
        return [s for s in (Stream.EVENTS, Stream.READINGS) if s not in self._refusal]

    def _refill_tokens(self) -> None:
        now, opts = time.monotonic(), self._opts
        gained = (now - self._tokens_at) * opts.backlog_rate_per_s
        self._tokens, self._tokens_at = min(float(opts.backlog_chunk), self._tokens + gained), now

    def _send(self, msg: SealedMessage) -> None:
        info = self._client.publish(self.topic(msg.stream), msg.payload, qos=1)
        self._inflight[info.mid] = msg
        self.counters.published_messages += 1
        self.counters.published_rows += msg.n
