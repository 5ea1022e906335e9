"""The collector: MQTT in, validated batches into the store, acknowledgements out.

paho's network thread only queues what arrives; one writer thread takes batches from
the queue, validates them, writes them in one store transaction and only then
acknowledges each message (manual ack). While the store is unavailable the writer
retries the same batch with jittered exponential backoff and acknowledges nothing; the
broker stops sending at the Receive Maximum and keeps the rest in our session.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from coldchain import wire
from coldchain.backoff import Backoff
from coldchain.wire import Stream
from collector.config import CollectorConfig, InfluxStoreConfig, SqliteStoreConfig
from collector.errors import Rejected, StoreUnavailable
from collector.store import Incoming, QuarantineItem, Store, WriteResult
from collector.validate import Limits, validate

log = logging.getLogger("coldchain.collector")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_ms: int


@dataclass
class CollectorCounters:
    messages: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    messages_duplicate: int = 0
    events_stored: int = 0
    quarantined: int = 0
    store_retries: int = 0
    batches: int = 0


def open_store(config: CollectorConfig) -> Store:
    store = config.store
    if isinstance(store, SqliteStoreConfig):
        from collector.sqlite_store import SqliteStore

        return SqliteStore(store.path)
    assert isinstance(store, InfluxStoreConfig)
    from collector.influx_store import InfluxStore

    org, bucket, token = store.secrets()
    return InfluxStore(
        url=store.url, org=org, bucket=bucket, token=token, quarantine_path=store.quarantine_path
    )


def subscriptions(group: str, sites: tuple[str, ...]) -> list[str]:
    topics = [
        wire.subscription(stream, site=site)
        for site in sites
        for stream in (Stream.READINGS, Stream.EVENTS)
    ]
    return [f"$share/{group}/{t}" for t in topics] if group else topics


class Collector:
    def __init__(self, config: CollectorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.counters = CollectorCounters()
        self.limits = Limits(future_tolerance_ms=int(config.collector.future_tolerance_s * 1000))
        self._queue: queue.Queue[Received] = queue.Queue()
        self._received = 0
        self._last_message = time.monotonic()
        self._stop = threading.Event()
        self._generation = 0
        self._connected = False
        self._store_down_since: float | None = None
        self._last_rejection: dict[str, str] = {}
        self._client = self._make_client()

    # ------------------------------------------------------------------ MQTT side
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.mqtt.client_id or cfg.collector.id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        cfg.mqtt.apply(client)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self._generation += 1
        self._connected = True
        topics = subscriptions(self.config.collector.group, self.config.collector.sites)
        client.subscribe([(t, 1) for t in topics])
        log.info(
            "broker connected %s:%s (session %s), subscribed to %s",
            self.config.mqtt.host,
            self.config.mqtt.port,
            "resumed" if flags.session_present else "new",
            ", ".join(topics),
        )

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if self._connected and not self._stop.is_set():
            log.warning(
                "broker connection lost: %s; unacknowledged messages will come again", reason
            )
        self._connected = False

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._received += 1
        self._last_message = time.monotonic()
        self._queue.put(
            Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, now_ms())
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        cfg = self.config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.collector.session_expiry_s
        props.ReceiveMaximum = cfg.collector.receive_maximum
        self._client.connect_async(
            cfg.mqtt.host,
            cfg.mqtt.port,
            keepalive=cfg.mqtt.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        self._writer = threading.Thread(
            target=self._write_loop, name="collector-writer", daemon=True
        )
        self._writer.start()

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect (the rest comes again next time)."""
        self._stop.set()
        self._writer.join(30)
        self._client.disconnect()
        self._client.loop_stop()
        c = self.counters
        log.info(
            "collector %s stopped: stored %d readings (%d duplicates), %d events, quarantined %d",
            self.config.collector.id,
            c.readings_stored,
            c.readings_duplicate,
            c.events_stored,
            c.quarantined,
        )

    @property
    def connected(self) -> bool:
        return self._connected

    def retire(self, quiet_s: float = 3.0, timeout_s: float = 600.0) -> int:
        """Leave the shared group for good, losing nothing: resume this member's session,
        take no new share (unsubscribe), store what the broker had queued for it, then
        end the session (Session Expiry 0). A collector removed without this keeps its
        share of the stream queued at the broker for as long as its session lives.
        Returns the number of messages it stored on the way out."""
        self.start()
        deadline = time.monotonic() + timeout_s
        while not self._connected:
            if time.monotonic() > deadline:
                raise TimeoutError("the broker did not accept the retiring collector")
            time.sleep(0.05)
        topics = subscriptions(self.config.collector.group, self.config.collector.sites)
        self._client.unsubscribe(topics)
        while (
            time.monotonic() - self._last_message < quiet_s
            or self.counters.messages < self._received
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the retiring collector did not drain its queue")
            time.sleep(0.1)
        self._stop.set()
        self._writer.join(30)
        props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()
        log.info(
            "collector %s retired from group %s: stored %d readings from %d queued messages",
            self.config.collector.id,
            self.config.collector.group,
            self.counters.readings_stored,
            self.counters.messages,
        )
        return self.counters.messages

    # ------------------------------------------------------------------ writer
    def _write_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if batch:
                self._process(batch)

    def _take_batch(self) -> list[Received]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.collector.linger_ms / 1000
        while len(batch) < self.config.collector.batch_max_messages:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=max(0.0, remaining))
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[Received]) -> None:
        incoming: list[Incoming] = []
        rejected: list[QuarantineItem] = []
        for item in batch:
            try:
                msg = validate(item.topic, item.payload, self.limits)
                incoming.append(Incoming(msg, item.received_ms))
            except Rejected as exc:
                rejected.append(
                    QuarantineItem(item.topic, item.payload, exc.reason, item.received_ms)
                )
        if not self._write_until_stored(incoming, rejected):
            return  # stopping: nothing acknowledged, the broker sends it again
        for item in batch:
            if item.generation == self._generation:
                # an ack from an older connection could hit a redelivered copy's packet id
                self._client.ack(item.mid, item.qos)
        self.counters.messages += len(batch)

    def _write_until_stored(self, incoming: list[Incoming], rejected: list[QuarantineItem]) -> bool:
        backoff = Backoff(self.config.collector.retry_min_s, self.config.collector.retry_max_s)
        while True:
            try:
                result = self.store.write(incoming, rejected)
            except StoreUnavailable as exc:
                self.counters.store_retries += 1
                if self._store_down_since is None:
                    self._store_down_since = time.monotonic()
                    log.error(
                        "store unavailable: %s; holding %d messages unacknowledged and retrying",
                        exc,
                        len(incoming) + len(rejected),
                    )
                if self._stop.wait(backoff.failed()):
                    return False
                continue
            if self._store_down_since is not None:
                log.info(
                    "store back after %.0f s (%d retries)",
                    time.monotonic() - self._store_down_since,
                    backoff.failures,
                )
                self._store_down_since = None
            self._count(result, rejected)
            return True

    def _count(self, result: WriteResult, rejected: list[QuarantineItem]) -> None:
        c = self.counters
        c.batches += 1
        c.readings_stored += result.readings_stored
        c.readings_duplicate += result.readings_duplicate
        c.messages_duplicate += result.messages_duplicate
        c.events_stored += result.events_stored
        c.quarantined += result.quarantined
        for item in rejected:
            # once per change of reason per topic, not once per bad message
            if self._last_rejection.get(item.topic) != item.reason:
                self._last_rejection[item.topic] = item.reason
                log.warning("quarantined a message on %s: %s", item.topic, item.reason)
