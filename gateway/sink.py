"""Where bus drivers put what they read: the outbox, then a nudge to the publisher.

When the outbox cannot be written (its disk is full or failing) polling goes on: rows
wait in a bounded memory buffer, oldest first, and are written as soon as the disk takes
them again; an ``outbox`` event says when writing stopped (``unwritable``) and when it
resumed (``writable``, with the rows lost if the buffer overflowed meanwhile)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from coldchain import wire
from coldchain.wire import Event, Reading, Stream
from gateway.clock import now_ms
from gateway.outbox_file import AsyncOutbox, unwritable

log = logging.getLogger("coldchain.gateway")


@dataclass
class Counters:
    """Gateway-wide counters (read by the status heartbeat, the demo and the bench)."""

    readings_taken: int = 0
    events: int = 0
    poll_cycles: int = 0
    modbus_requests: int = 0
    modbus_no_response: int = 0
    modbus_exceptions: int = 0
    #: answers that did not fit their request (fewer registers, another function code)
    modbus_bad_responses: int = 0
    #: poll cycles a bus lost to an unexpected error (the bus went on with the next)
    bus_failures: int = 0
    overruns: int = 0
    lines_ok: int = 0
    lines_garbled: int = 0
    #: rows waiting in memory because the outbox could not be written, and rows lost
    #: because that buffer overflowed
    held_in_memory: int = 0
    lost_in_memory: int = 0
    #: readings a watcher (the cab's own alarms) failed on: the readings are kept anyway
    watcher_failures: int = 0


#: (stream, edge time, encoded reading or event)
Row = tuple[Stream, int, bytes]


class Sink:
    def __init__(
        self,
        outbox: AsyncOutbox,
        notify: Callable[[], None],
        *,
        gateway: str = "gateway",
        memory_rows: int = 100_000,
    ) -> None:
        self.outbox = outbox
        self.notify = notify
        self.gateway = gateway
        self.counters = Counters()
        #: the newest reading of each sensor (the cab view shows them)
        self.latest: dict[str, Reading] = {}
        #: told every reading taken (the cab's own alarms judge them); a watcher that
        #: fails never costs a reading: counted, logged once per change, health says so
        self.watchers: list[Callable[[list[Reading]], None]] = []
        self.watcher_failing: str | None = None
        self._events: list[Event] = []
        self._flushing: asyncio.Task[None] | None = None
        #: rows the outbox could not take yet, oldest first, at most ``memory_rows``
        self._held: deque[Row] = deque()
        self._memory_rows = memory_rows
        self._lost_since = 0
        self._unwritable_since: float | None = None
        self._writing = asyncio.Lock()

    async def add_readings(self, readings: list[Reading]) -> None:
        if not readings:
            return
        for r in readings:
            self.latest[r.sensor] = r
        self._tell_watchers(readings)
        await self._write([(Stream.READINGS, r.ts_ms, wire.encode(r)) for r in readings])

    def _tell_watchers(self, readings: list[Reading]) -> None:
        failing = None
        for watch in self.watchers:
            try:
                watch(readings)
            except Exception as exc:  # a bug of the cab's judgement: the readings go on
                self.counters.watcher_failures += 1
                failing = f"{type(exc).__name__}: {exc}"[:200]
                if failing != self.watcher_failing:
                    log.error("judging readings for the cab failed: %s", failing, exc_info=exc)
        if failing is None and self.watcher_failing is not None:
            log.info("judging readings for the cab works again")
        self.watcher_failing = failing

    async def _write(self, rows: list[Row]) -> None:
        async with self._writing:  # the buffer is touched by one write at a time
            self._held.extend(rows)
            try:
                await self.outbox.call(self._write_held)
            except sqlite3.OperationalError as exc:
                if not unwritable(exc):
                    raise
                self._bound_held()  # only what could not be written counts against it
                self._stopped_writing(exc)
                return
        if self._unwritable_since is not None:
            self._resumed_writing()
        self.notify()

    def _bound_held(self) -> None:
        excess = len(self._held) - self._memory_rows
        for _ in range(max(0, excess)):
            self._held.popleft()
        if excess > 0:
            self._lost_since += excess
            self.counters.lost_in_memory += excess
        self.counters.held_in_memory = len(self._held)

    def _write_held(self) -> None:
        """On the outbox thread: write what is held, stream by stream, oldest first;
        a row leaves memory only once its transaction committed."""
        while self._held:
            stream = self._held[0][0]
            items: list[tuple[int, bytes]] = []
            for row in self._held:
                if row[0] is not stream or len(items) >= 5000:
                    break
                items.append((row[1], row[2]))
            self.outbox.sync.add(stream, items)
            for _ in items:
                self._held.popleft()
            if stream is Stream.READINGS:
                # counted right after the commit: a poll cancelled while its rows were
                # being written (a stop) is still counted if they were written
                self.counters.readings_taken += len(items)
            self.counters.held_in_memory = len(self._held)

    def _stopped_writing(self, exc: sqlite3.OperationalError) -> None:
        if self._unwritable_since is not None:
            return
        self._unwritable_since = time.monotonic()
        log.error(
            "the outbox cannot be written (%s): polling goes on, up to %d rows wait in memory",
            exc,
            self._memory_rows,
        )
        self.add_event(
            Event(
                ts_ms=now_ms(),
                kind="outbox",
                source=self.gateway,
                state="unwritable",
                detail=f"{exc}: rows wait in memory (at most {self._memory_rows})"[:256],
            )
        )

    def _resumed_writing(self) -> None:
        assert self._unwritable_since is not None
        down_s = time.monotonic() - self._unwritable_since
        lost, self._lost_since = self._lost_since, 0
        self._unwritable_since = None
        log.warning(
            "the outbox is written again after %.0f s; %d rows were lost from memory",
            down_s,
            lost,
        )
        self.add_event(
            Event(
                ts_ms=now_ms(),
                kind="outbox",
                source=self.gateway,
                state="writable",
                count=lost,
                detail=f"written again after {down_s:.0f} s; {lost} rows lost "
                "(the memory buffer overflowed)"
                if lost
                else f"written again after {down_s:.0f} s; nothing lost",
            )
        )

    def add_event(self, event: Event) -> None:
        """Called synchronously (from Health); written by a task soon after."""
        self._events.append(event)
        self.counters.events += 1
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush_events())

    async def _flush_events(self) -> None:
        while self._events:
            batch, self._events = self._events, []
            await self._write([(Stream.EVENTS, e.ts_ms, wire.encode(e)) for e in batch])

    async def flush(self) -> None:
        if self._flushing is not None:
            await self._flushing
        await self._flush_events()

    async def reject(self, source: str, reason: str, raw: bytes) -> None:
        await self.outbox.call(self.outbox.sync.reject, source, reason, raw)
