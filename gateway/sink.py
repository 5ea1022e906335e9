"""Where bus drivers put what they read: the outbox, then a nudge to the publisher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from coldchain import wire
from coldchain.wire import Event, Reading, Stream
from gateway.outbox import AsyncOutbox

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


class Sink:
    def __init__(self, outbox: AsyncOutbox, notify: Callable[[], None]) -> None:
        self.outbox = outbox
        self.notify = notify
        self.counters = Counters()
        #: the newest reading of each sensor (the cab view shows them)
        self.latest: dict[str, Reading] = {}
        self._events: list[Event] = []
        self._flushing: asyncio.Task[None] | None = None

    async def add_readings(self, readings: list[Reading]) -> None:
        if not readings:
            return
        items = [(r.ts_ms, wire.encode(r)) for r in readings]

        def commit_and_count() -> None:
            # counted on the outbox thread right after the commit: a poll cancelled while
            # its rows were being written (a stop) is still counted if they were written
            self.outbox.sync.add(Stream.READINGS, items)
            self.counters.readings_taken += len(items)

        await self.outbox.call(commit_and_count)
        for r in readings:
            self.latest[r.sensor] = r
        self.notify()

    def add_event(self, event: Event) -> None:
        """Called synchronously (from Health); written by a task soon after."""
        self._events.append(event)
        self.counters.events += 1
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush_events())

    async def _flush_events(self) -> None:
        while self._events:
            batch, self._events = self._events, []
            items = [(e.ts_ms, wire.encode(e)) for e in batch]
            await self.outbox.call(self.outbox.sync.add, Stream.EVENTS, items)
            self.notify()

    async def flush(self) -> None:
        if self._flushing is not None:
            await self._flushing
        await self._flush_events()

    async def reject(self, source: str, reason: str, raw: bytes) -> None:
        await self.outbox.call(self.outbox.sync.reject, source, reason, raw)
