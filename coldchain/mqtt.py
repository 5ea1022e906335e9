"""The one MQTT module: how every coldchain program makes its paho client, and the
acknowledge-after-commit consumer that the collector, the alert service and the API's
live hub share.

:func:`make_client` turns an :class:`~coldchain.settings.MqttConfig` into a paho client
(MQTT 5, credentials from the environment, TLS, reconnect backoff); :func:`connect`
starts it with the session's properties (clean start or a persistent session with its
expiry, Receive Maximum) and the config's keepalive.

:class:`Consumer` is the shape of every subscriber: paho's network thread only queues
what arrives; one worker thread takes batches from the queue, calls the handler, and
acknowledges each message only after the handler returned True (the work is committed).
A handler that returns False (stopping) leaves its batch unacknowledged: the broker
sends it again. A message received on an older connection is not acknowledged by
packet id (the id may now belong to a redelivered copy): the generation guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from coldchain.health import Health
from coldchain.heartbeat import BEAT_VERSION, ServiceBeat, beat_topic, encode_beat
from coldchain.settings import MqttConfig

log = logging.getLogger("coldchain.mqtt")

#: a topic filter and the QoS it is subscribed with
Subscription = tuple[str, int]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """Which session a client opens: its id, a clean start or a persistent session kept
    ``expiry_s`` by the broker while the client is away, and how many unacknowledged
    messages the broker may send at once (MQTT 5 Receive Maximum)."""

    client_id: str
    clean_start: bool = True
    expiry_s: int = 0
    receive_maximum: int | None = None
    manual_ack: bool = False


def make_client(config: MqttConfig, session: SessionSpec) -> mqtt.Client:
    """A paho client for the config: MQTT 5, credentials, TLS, reconnect backoff."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=config.client_id or session.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=session.manual_ack,
    )
    if config.username:
        client.username_pw_set(config.username, config.password())
    if config.tls:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        client.tls_set_context(context)
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
    return client


def connect(client: mqtt.Client, config: MqttConfig, session: SessionSpec) -> None:
    """Connect in the background (paho reconnects by itself) and start its loop."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session.expiry_s
    if session.receive_maximum is not None:
        props.ReceiveMaximum = session.receive_maximum
    client.connect_async(
        config.host,
        config.port,
        keepalive=config.keepalive_s,
        clean_start=session.clean_start,
        properties=props,
    )
    client.loop_start()


def disconnect_for_good(client: mqtt.Client) -> None:
    """Disconnect and tell the broker to discard the session now (expiry 0)."""
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    client.disconnect(properties=props)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the consumer's worker sees it."""

    topic: str
    payload: bytes
    received_ms: int
    mid: int
    qos: int
    generation: int


#: takes a batch of deliveries; True when their work is committed (acknowledge them),
#: False when it is not and will not be (stopping: the broker sends them again)
Handler = Callable[[Sequence[Delivery]], bool]


class Consumer:
    """Subscribe, hand batches to a handler on one worker thread, acknowledge after it."""

    def __init__(
        self,
        config: MqttConfig,
        session: SessionSpec,
        subscriptions: Sequence[Subscription],
        handler: Handler,
        *,
        name: str,
        batch_max: int = 1,
        linger_ms: float = 0.0,
        tick: Callable[[], None] | None = None,
        poll_s: float = 0.2,
        health: Health | None = None,
        beat_as: tuple[str, str] | None = None,
    ) -> None:
        self.config = config
        self.session = dataclasses.replace(session, manual_ack=True)
        self.subscriptions = list(subscriptions)
        self.name = name
        self._handler = handler
        self._tick = tick
        self._batch_max = batch_max
        self._linger_s = linger_ms / 1000
        self._poll_s = poll_s
        self._queue: queue.Queue[Delivery] = queue.Queue()
        self._stop = threading.Event()
        self._generation = 0
        self._worker: threading.Thread | None = None
        #: what stopped the worker, if an error did (nothing is acknowledged after it)
        self.failure: Exception | None = None
        #: connected to the broker now
        self.connected = False
        #: the worker found the queue empty since the last (re)connect: whatever the
        #: broker had queued for this session has been handled (a consumer catching up on
        #: a backlog is behind the wall clock)
        self.caught_up = False
        #: messages received from the broker, and those handled and acknowledged
        self.received = 0
        self.handled = 0
        self.last_message_monotonic = time.monotonic()
        #: the service's health: the worker beats it, the broker's state is a problem
        self.health = health if health is not None else Health(name)
        self.health.problem("broker", "not connected yet", quiet=True)
        #: called on the network thread after each (re)connect, with session_present
        self.on_connected: Callable[[bool], None] | None = None
        self.on_disconnected: Callable[[], None] | None = None
        self.client = make_client(config, self.session)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        #: (kind, service id) of this service's heartbeat, with its last will set
        self.beat_as = beat_as
        if beat_as is not None:
            will = self._beat("dead", ["the process died or lost its broker connection"], {})
            self.client.will_set(beat_topic(*beat_as), will, qos=1, retain=True)

    # ------------------------------------------------------------------ network thread
    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:  # logged once per change of reason, not per retry
            self.health.problem("broker", f"refused the connection: {reason} (retrying)")
            return
        self.health.clear("broker")
        self._generation += 1
        self.connected = True
        self.caught_up = False  # until a poll finds nothing more: the session's backlog
        if self.subscriptions:
            client.subscribe(self.subscriptions)
        log.info(
            "%s: broker connected %s:%s (session %s), subscribed to %s",
            self.name,
            self.config.host,
            self.config.port,
            "resumed" if flags.session_present else "new",
            ", ".join(topic for topic, _qos in self.subscriptions) or "nothing",
        )
        if self.on_connected is not None:
            self.on_connected(bool(flags.session_present))

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if self.connected and not self._stop.is_set():
            self.health.problem(
                "broker", f"connection lost: {reason}; unacknowledged messages will come again"
            )
        self.connected = False
        if self.on_disconnected is not None:
            self.on_disconnected()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        self.last_message_monotonic = time.monotonic()
        self._queue.put(
            Delivery(msg.topic, bytes(msg.payload), now_ms(), msg.mid, msg.qos, self._generation)
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        connect(self.client, self.config, self.session)
        self._worker = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._worker.start()

    def publish_beat(self, progress: dict[str, int]) -> None:
        """This service's heartbeat: its health now and counters that show progress."""
        if self.beat_as is None or not self.connected:
            return
        status = self.health.status()
        payload = self._beat(status.state.value, list(status.reasons), progress)
        self.client.publish(beat_topic(*self.beat_as), payload, qos=1, retain=True)

    def _beat(self, state: str, reasons: list[str], progress: dict[str, int]) -> bytes:
        assert self.beat_as is not None
        kind, service = self.beat_as
        return encode_beat(
            ServiceBeat(
                BEAT_VERSION,
                kind,
                service,
                state,  # type: ignore[arg-type]
                now_ms(),
                [r[:256] for r in reasons[:32]],
                progress,
            )
        )

    def stop(self, *, end_session: bool = False) -> None:
        """Finish the batch in hand, then disconnect (what is unacknowledged comes again
        next time, unless ``end_session`` discards the session)."""
        self.stop_worker()
        if self.beat_as is not None and self.connected:
            info = self.client.publish(
                beat_topic(*self.beat_as), self._beat("stopped", [], {}), qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        if end_session:
            disconnect_for_good(self.client)
        else:
            self.client.disconnect()
        self.client.loop_stop()

    def stop_worker(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(30)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``; True if the consumer is stopping (a retry loop's wait)."""
        return self._stop.wait(timeout_s)

    def unsubscribe(self) -> None:
        self.client.unsubscribe([topic for topic, _qos in self.subscriptions])

    # ------------------------------------------------------------------ worker thread
    @property
    def alive(self) -> bool:
        """The worker runs (started, not stopped by an error)."""
        return self._worker is not None and self._worker.is_alive() and self.failure is None

    @property
    def queued(self) -> int:
        """Messages received and not yet handled (the consumer's lag in messages)."""
        return self.received - self.handled

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                self.health.beat()
                if self._tick is not None:
                    self._tick()
                batch = self._take_batch()
                if not batch:
                    self.caught_up = self.connected
                elif self._handler(batch):
                    self._acknowledge(batch)
        except Exception as exc:
            # never a live connection with a dead worker in silence: what is in hand stays
            # unacknowledged (the broker sends it again), and ``alive`` turns False so that
            # the process runner stops the process for its restart policy
            self.failure = exc
            self.health.died(repr(exc))
            log.critical("%s: the worker stopped on an error: %r", self.name, exc, exc_info=exc)

    def _acknowledge(self, batch: Sequence[Delivery]) -> None:
        for item in batch:
            if item.generation == self._generation:
                self.client.ack(item.mid, item.qos)
        self.handled += len(batch)

    def _take_batch(self) -> list[Delivery]:
        try:
            first = self._queue.get(timeout=self._poll_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self._linger_s
        while len(batch) < self._batch_max:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch
