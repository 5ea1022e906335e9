"""The collector: MQTT in, validated batches into the store, acknowledgements out.

The shared :class:`~coldchain.mqtt.Consumer` takes the broker side: paho's thread only
queues, one worker hands batches to :meth:`Collector.handle`, which validates them,
writes them in one store transaction and only then lets the consumer acknowledge each
message. While the store is unavailable the handler retries the same batch with jittered
exponential backoff and acknowledges nothing (health degraded, with the reason); the
broker stops sending at the Receive Maximum and keeps the rest in our session. A batch
the store refuses for good is written one message at a time: the messages it refuses
are quarantined with the store's reason, the others stored (docs/design-supervision.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Histogram

from coldchain import wire
from coldchain.accept import Limits, accept
from coldchain.backoff import Backoff
from coldchain.health import CountersCollector, registry_of
from coldchain.logs import Throttled
from coldchain.mqtt import Consumer, Delivery, SessionSpec, now_ms
from coldchain.runner import run_until_signalled
from coldchain.wire import EventsBatch, ReadingsBatch, Stored, Stream, WireError
from collector.config import CollectorConfig, SqliteStoreConfig
from collector.errors import StoreRefused, StoreUnavailable
from collector.maintenance import Maintenance, UpkeepCounters
from collector.quarantine import Quarantine, quarantine_file
from collector.sqlite_store import SqliteStore
from collector.store import Incoming, QuarantineItem, Store, WriteResult, open_store

_COLLECTED = frozenset({Stream.READINGS, Stream.EVENTS})
#: a gateway's stored watermark goes out at most this often (see _publish_confirmations)
CONFIRM_EVERY_S = 1.0

log = logging.getLogger("coldchain.collector")


@dataclass
class CollectorCounters(UpkeepCounters):
    messages: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    messages_duplicate: int = 0
    events_stored: int = 0
    quarantined: int = 0
    store_retries: int = 0
    store_refused: int = 0
    quarantine_dropped: int = 0
    batches: int = 0
    #: readings kept marked out_of_range, and copies of a reading in one message dropped
    readings_out_of_range: int = 0
    reading_copies: int = 0
    #: readings kept marked clock_suspect: stamped by a gateway clock that is ahead
    readings_clock_suspect: int = 0
    #: stored watermarks published to gateways
    confirmations: int = 0


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
        self._rejections = Throttled(log)
        self._quarantine_full = False
        self._last_commit = time.monotonic()
        #: messages quarantined, by the rule they broke
        self.quarantined_by: dict[str, int] = {}
        #: outboxes (gateway, epoch) → site with commits not yet confirmed to the
        #: gateway, and when each was last confirmed (monotonic)
        self._to_confirm: dict[tuple[str, int], str] = {}
        self._confirmed_at: dict[tuple[str, int], float] = {}
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
            beat_as=("collector", section.id),
            batch_max=section.batch_max_messages,
            linger_ms=section.linger_ms,
            tick=self._tick,
        )
        self.health = self.consumer.health
        #: compaction and retention of an SQLite store, between batches
        self.upkeep = (
            Maintenance(store, config.store, self.health, self.counters)
            if isinstance(store, SqliteStore) and isinstance(config.store, SqliteStoreConfig)
            else None
        )
        self.metrics = registry_of(
            CountersCollector(
                "coldchain_collector",
                lambda: self.counters,
                self.health,
                gauges=lambda: {
                    "queued_messages": self.consumer.queued,
                    "last_commit_age_seconds": time.monotonic() - self._last_commit,
                },
                totals=lambda: {"messages_received": self.consumer.received},
                labelled=lambda: {"quarantined_by_reason": ("reason", self.quarantined_by)},
            )
        )
        self._write_seconds = Histogram(
            "coldchain_collector_store_write_seconds",
            "how long one store write (a batch, in one transaction) takes",
            registry=self.metrics,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.consumer.start()

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect (the rest comes again next time)."""
        self.consumer.stop_worker()
        self._publish_confirmations(now=True)
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
        incoming: list[tuple[Delivery, Incoming]] = []
        rejected: list[QuarantineItem] = []
        for item in batch:
            try:
                taken = accept(item.topic, item.payload, self.limits, streams=_COLLECTED)
            except WireError as exc:
                rejected.append(
                    QuarantineItem(item.topic, item.payload, str(exc), item.received_ms)
                )
                continue
            assert isinstance(taken.message, ReadingsBatch | EventsBatch)
            self.counters.readings_out_of_range += taken.out_of_range
            self.counters.reading_copies += taken.copies
            if taken.clock_ahead_ms:
                self.counters.readings_clock_suspect += taken.clock_suspect
                self._rejections.warning(
                    f"clock {taken.parts.gateway}",
                    "gateway %s's clock is %.0f s ahead: its readings are kept marked "
                    "clock_suspect, with the time they were received",
                    taken.parts.gateway,
                    taken.clock_ahead_ms / 1000,
                )
            incoming.append((item, Incoming(taken.message, item.received_ms)))
        try:
            stored = self._write_until_stored([i for _, i in incoming], rejected)
        except StoreRefused as exc:
            stored = self._write_one_by_one(incoming, rejected, exc.reason)
        if not stored:
            return False  # stopping: nothing acknowledged, the broker sends it again
        self.counters.messages += len(batch)
        self._confirm([i.message for _, i in incoming])
        return True

    def _tick(self) -> None:
        self._publish_confirmations()
        if self.upkeep is not None:
            self.upkeep.step()

    def _confirm(self, messages: list[ReadingsBatch | EventsBatch]) -> None:
        """Note the outboxes of a committed batch, and tell their gateways now or soon."""
        for m in messages:
            self._to_confirm[(m.gateway, m.epoch)] = m.site
        self._publish_confirmations()

    def _publish_confirmations(self, *, now: bool = False) -> None:
        """Tell each gateway noted what the store now holds of its outbox (read from the
        store, which several collectors share), retained on its ``stored`` topic: the
        gateway frees what this covers. Once per ``CONFIRM_EVERY_S`` per outbox at most
        (the worker's tick sends what waits): a gateway polling several times a second
        then takes one watermark a second, not one per message. A watermark not sent
        stays noted, and the gateway resends what stays unconfirmed, so a failure here
        loses nothing."""
        if not self._to_confirm or not self.consumer.connected:
            return
        clock = time.monotonic()
        due = {
            key: site
            for key, site in self._to_confirm.items()
            if now or clock - self._confirmed_at.get(key, -CONFIRM_EVERY_S) >= CONFIRM_EVERY_S
        }
        if not due:
            return
        try:
            found = self.store.watermarks(due)
        except StoreUnavailable as exc:
            self._rejections.warning("stored", "could not read the seq watermarks: %s", exc)
            return
        ts = now_ms()
        for (gateway, epoch), streams in found.items():
            stored = Stored(
                v=wire.SCHEMA_VERSION,
                gateway=gateway,
                site=due[(gateway, epoch)],
                epoch=epoch,
                ts_ms=ts,
                readings=streams.get(Stream.READINGS.value),
                events=streams.get(Stream.EVENTS.value),
            )
            self.consumer.client.publish(
                wire.topic(stored.site, gateway, Stream.STORED),
                wire.encode(stored),
                qos=1,
                retain=True,
            )
            self.counters.confirmations += 1
        for key in due:
            del self._to_confirm[key]
            self._confirmed_at[key] = clock

    def _write_one_by_one(
        self,
        incoming: list[tuple[Delivery, Incoming]],
        rejected: list[QuarantineItem],
        reason: str,
    ) -> bool:
        """The store refused a batch for good: find the messages it refuses, quarantine
        them with its reason, store the others."""
        log.warning(
            "the store refused a batch of %d (%s); writing one by one", len(incoming), reason
        )
        for delivery, one in incoming:
            try:
                if not self._write_until_stored([one], []):
                    return False
            except StoreRefused as exc:
                self.counters.store_refused += 1
                rejected.append(
                    QuarantineItem(
                        delivery.topic,
                        delivery.payload,
                        f"refused by the store: {exc.reason}",
                        delivery.received_ms,
                        "store",
                    )
                )
        # a refused quarantine write is a bug: it stops the worker (and the process)
        return self._write_until_stored([], rejected)

    def _write_until_stored(self, incoming: list[Incoming], rejected: list[QuarantineItem]) -> bool:
        """Write, retrying while the store is unavailable; False if stopping meanwhile.
        StoreRefused goes to the caller."""
        backoff = Backoff(self.config.collector.retry_min_s, self.config.collector.retry_max_s)
        while True:
            try:
                with self._write_seconds.time():
                    result = self.store.write(incoming, rejected)
            except StoreUnavailable as exc:
                self.counters.store_retries += 1
                self.health.problem(
                    "store",
                    f"store unavailable: {exc}; holding messages unacknowledged and retrying",
                )
                delay = backoff.failed()
                if exc.retry_after_s is not None:
                    delay = max(delay, exc.retry_after_s)
                if self.consumer.wait(delay):
                    return False
                self.health.beat()  # alive and retrying: degraded, not stalled
                continue
            self.health.clear("store")
            self._last_commit = time.monotonic()
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
        c.quarantine_dropped += result.quarantine_dropped
        self._note_quarantine_full(result)
        for item in rejected:
            self.quarantined_by[item.kind] = self.quarantined_by.get(item.kind, 0) + 1
            # per topic: the first, then one line a minute with the count (a flood of
            # bad messages is counted, not written out)
            self._rejections.warning(
                item.topic, "quarantined a message on %s: %s", item.topic[:200], item.reason[:300]
            )

    def _note_quarantine_full(self, result: WriteResult) -> None:
        """One line when the quarantine starts dropping its oldest rows, one when a
        message is kept again without a drop."""
        if result.quarantine_dropped and not self._quarantine_full:
            log.warning("quarantine full: dropping its oldest messages to keep new ones")
        elif result.quarantined and not result.quarantine_dropped and self._quarantine_full:
            log.warning(
                "quarantine below its bounds again (%d dropped in all)",
                self.counters.quarantine_dropped,
            )
        else:
            return
        self._quarantine_full = not self._quarantine_full


def run_collector(config: CollectorConfig) -> None:
    """Run a collector until SIGINT/SIGTERM (the store must open, else StoreUnavailable)."""
    store = open_store(config.store)
    service = Collector(config, store)
    run_until_signalled(
        service.start,
        service.stop,
        store.close,
        health=[service.health],
        registry=service.metrics,
        beat=lambda: service.consumer.publish_beat(
            {
                "messages": service.counters.messages,
                "readings_stored": service.counters.readings_stored,
                "quarantined": service.counters.quarantined,
            }
        ),
    )


def replay_quarantined(config: CollectorConfig, ids: list[int]) -> list[tuple[int, str]]:
    """Put kept messages back through the way in after their cause was fixed: each is
    validated and stored as if it had just arrived; one still refused is kept aside
    again with today's reason. Returns (id, what became of it) for each."""
    store = open_store(config.store)
    quarantine = Quarantine(quarantine_file(config.store))
    collector = Collector(config, store)
    done: list[tuple[int, str]] = []
    try:
        for row_id in ids:
            kept = quarantine.one(row_id)
            if kept is None:
                done.append((row_id, "not in the quarantine"))
                continue
            before = collector.counters.quarantined
            delivery = Delivery(kept.topic, kept.payload, kept.received_ms, 0, 1, 0)
            if not collector.handle([delivery]):
                raise StoreUnavailable("stopped before the replay was stored")
            quarantine.release(row_id)
            again = collector.counters.quarantined > before
            done.append((row_id, "kept aside again" if again else "stored"))
    finally:
        quarantine.close()
        store.close()
    return done


def retire_collector(config: CollectorConfig, quiet_s: float) -> int:
    """Store what the broker queued for this member, then end its session for good."""
    store = open_store(config.store)
    try:
        return Collector(config, store).retire(quiet_s=quiet_s)
    finally:
        store.close()
