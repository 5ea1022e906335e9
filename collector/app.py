"""The collector: MQTT in, validated batches into the store, acknowledgements out.

The shared :class:`~coldchain.mqtt.Consumer` takes the broker side: paho's thread only
queues, one worker hands batches to :meth:`Collector.handle`, which validates them,
writes them in one store transaction and only then lets the consumer acknowledge each
message. While the store is unavailable the handler retries the same batch with jittered
exponential backoff and acknowledges nothing; the broker stops sending at the Receive
Maximum and keeps the rest in our session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from coldchain import wire
from coldchain.backoff import Backoff
from coldchain.mqtt import Consumer, Delivery, SessionSpec
from coldchain.runner import run_until_signalled
from coldchain.wire import Stream
from collector.config import CollectorConfig
from collector.errors import Rejected, StoreUnavailable
from collector.store import Incoming, QuarantineItem, Store, WriteResult, open_store
from collector.validate import Limits, validate

log = logging.getLogger("coldchain.collector")


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
        section = config.collector
        self.limits = Limits(future_tolerance_ms=int(section.future_tolerance_s * 1000))
        self._store_down_since: float | None = None
        self._last_rejection: dict[str, str] = {}
        self.consumer = Consumer(
            config.mqtt,
            SessionSpec(
                section.id,
                clean_start=False,
                expiry_s=section.session_expiry_s,
                receive_maximum=section.receive_maximum,
            ),
            [(topic, 1) for topic in subscriptions(section.group, section.sites)],
            self.handle,
            name="collector-writer",
            batch_max=section.batch_max_messages,
            linger_ms=section.linger_ms,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.consumer.start()

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect (the rest comes again next time)."""
        self.consumer.stop()
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
        return self.consumer.connected

    def retire(self, quiet_s: float = 3.0, timeout_s: float = 600.0) -> int:
        """Leave the shared group for good, losing nothing: resume this member's session,
        take no new share (unsubscribe), store what the broker had queued for it, then
        end the session (Session Expiry 0). A collector removed without this keeps its
        share of the stream queued at the broker for as long as its session lives.
        Returns the number of messages it stored on the way out."""
        consumer = self.consumer
        consumer.start()
        deadline = time.monotonic() + timeout_s
        while not consumer.connected:
            if time.monotonic() > deadline:
                raise TimeoutError("the broker did not accept the retiring collector")
            time.sleep(0.05)
        consumer.unsubscribe()
        while (
            time.monotonic() - consumer.last_message_monotonic < quiet_s
            or consumer.handled < consumer.received
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the retiring collector did not drain its queue")
            time.sleep(0.1)
        consumer.stop(end_session=True)
        log.info(
            "collector %s retired from group %s: stored %d readings from %d queued messages",
            self.config.collector.id,
            self.config.collector.group,
            self.counters.readings_stored,
            self.counters.messages,
        )
        return self.counters.messages

    # ------------------------------------------------------------------ writer
    def handle(self, batch: Sequence[Delivery]) -> bool:
        """Validate and store one batch; True once it is committed (acknowledge it)."""
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
            return False  # stopping: nothing acknowledged, the broker sends it again
        self.counters.messages += len(batch)
        return True

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
                if self.consumer.wait(backoff.failed()):
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


def run_collector(config: CollectorConfig) -> None:
    """Run a collector until SIGINT/SIGTERM (the store must open, else StoreUnavailable)."""
    store = open_store(config.store)
    service = Collector(config, store)
    run_until_signalled(
        service.start,
        service.stop,
        store.close,
        healthy=lambda: service.connected,
        alive=lambda: service.consumer.alive,
    )


def retire_collector(config: CollectorConfig, quiet_s: float) -> int:
    """Store what the broker queued for this member, then end its session for good."""
    store = open_store(config.store)
    try:
        return Collector(config, store).retire(quiet_s=quiet_s)
    finally:
        store.close()
