"""What the store has confirmed of this outbox, and what to send again.

The collectors publish, retained, what the store holds of this gateway's outbox
(``coldchain/v1/{site}/{gateway}/stored``: per stream the highest seq held with every
seq below it). A confirmation frees the sealed messages it covers. A message the broker
took (PUBACK) but the store never got (a broker that crashed before saving it, dropped
it from a full queue, or queued it for a shared member that never returns) is sent again:

- while the collectors are heard confirming (a live watermark within the timeout) and a
  stream's watermark has not moved for the timeout, its overdue messages go again,
  lowest seq first (a watermark that keeps moving is a collector catching up: nothing
  is sent twice for it);
- while nothing is heard, only the oldest overdue message goes, once per timeout: a
  probe that brings a watermark back if a collector is there, and adds one copy to the
  broker's queue if none is (the store's keys absorb the copies either way).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from coldchain import wire
from coldchain.logs import Throttled
from coldchain.wire import Stream, WireError
from gateway.clock import now_ms
from gateway.outbox import SealedMessage
from gateway.outbox_file import AsyncOutbox, unwritable

log = logging.getLogger("coldchain.gateway.confirm")

BATCH_STREAMS = (Stream.EVENTS, Stream.READINGS)
RESEND_BATCH = 500  # unconfirmed messages queued to go again per check, at most
#: how long a PUBACK waits in memory for the store's confirmation before it is written
#: (collectors confirm a gateway's outbox about once a second: collector.app)
MARK_AFTER_S = 3.0


@dataclass
class ConfirmCounters:
    #: stored watermarks received, and those that did not follow the contract
    confirmations: int = 0
    bad_confirmations: int = 0
    #: readings and events freed because the store confirmed them
    confirmed_rows: int = 0
    #: messages sent again because the store did not confirm them in time
    resent_messages: int = 0


class Confirmations:
    def __init__(
        self,
        outbox: AsyncOutbox,
        *,
        gateway: str,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.gateway = gateway
        self.timeout_s = timeout_s
        self.counters = ConfirmCounters()
        self._clock = clock
        #: the highest watermark seen per stream of this outbox's epoch
        self.upto: dict[Stream, int] = {}
        start = clock()
        self._moved_at = dict.fromkeys(BATCH_STREAMS, start)
        self._heard_at: float | None = None
        self._probed_at = start
        #: told the collector's clock (ms) carried on each live watermark
        self.on_time: Callable[[int], None] | None = None
        self._bad = Throttled(log)
        #: told when the store holds seqs the outbox has not handed out (an event)
        self.went_back: Callable[[str], object] | None = None
        #: PUBACKs not yet written (see :meth:`published`)
        self._to_mark: list[tuple[Stream, int]] = []
        self._marking = False
        #: (stream, seq) queued to go again and not yet taken by the broker
        self.resending: set[tuple[Stream, int]] = set()

    async def published(self, stream: Stream, seq: int) -> None:
        """A PUBACK: the message is kept until confirmed. Its mark on disk waits
        ``MARK_AFTER_S``: the store's confirmation nearly always comes first and frees
        the message, and then no mark is written at all (one transaction per message,
        as when a PUBACK frees it). The marks still wanted then go in one transaction.
        A mark lost with the process costs one copy sent at the next start."""
        self._to_mark.append((stream, seq))
        if self._marking:
            return
        self._marking = True
        try:
            while self._to_mark:
                await asyncio.sleep(MARK_AFTER_S)
                await self.write_marks()
        finally:
            self._marking = False

    async def write_marks(self) -> None:
        """Write the PUBACKs not yet written and not yet confirmed (also on a stop)."""
        marks, self._to_mark = self._to_mark, []
        wanted = [(st, seq) for st, seq in marks if seq > self.upto.get(st, 0)]
        try:
            if wanted:
                await self.outbox.call(self.outbox.sync.published, wanted)
        except BaseException:
            self._to_mark = marks + self._to_mark  # written with the next PUBACK
            raise
        self.resending.difference_update(marks)

    async def on_stored(self, payload: bytes, retained: bool) -> int:
        """Take a watermark; returns the number of rows it freed."""
        try:
            stored = wire.decode_stored(payload)
        except WireError as exc:
            self.counters.bad_confirmations += 1
            self._bad.warning("stored", "ignored a stored watermark: %s", exc)
            return 0
        self.counters.confirmations += 1
        if stored.gateway != self.gateway or stored.epoch != self.outbox.sync.epoch:
            return 0  # another outbox's (an older epoch's, moved aside): nothing to free
        now = self._clock()
        if not retained:  # a retained copy may be days old: it says nobody is there now
            self._heard_at = now
            if self.on_time is not None:
                self.on_time(stored.ts_ms)
        freed = 0
        for stream, upto in ((Stream.READINGS, stored.readings), (Stream.EVENTS, stored.events)):
            if upto is None or upto <= self.upto.get(stream, 0):
                continue  # several collectors: a watermark never goes back
            if stream not in self.upto:  # the first word of the store since the start
                await self._check_not_behind(stream, upto)
            try:
                freed += await self.outbox.call(self.outbox.sync.confirm, stream, upto)
            except sqlite3.OperationalError as exc:
                if not unwritable(exc):
                    raise
                self._bad.warning("disk", "cannot free confirmed messages (%s)", exc)
                continue  # freed with the next watermark
            self.upto[stream] = upto
            self._moved_at[stream] = now
        self.counters.confirmed_rows += freed
        return freed

    async def _check_not_behind(self, stream: Stream, upto: int) -> None:
        nxt = await self.outbox.call(self.outbox.sync.catch_up, stream, upto)
        if nxt is None:
            return
        detail = (
            f"the store holds {stream} up to seq {upto} but this outbox was at seq {nxt}: "
            f"its newest writes were lost (a -wal file gone?); {stream} goes on at "
            f"seq {upto + 1}"
        )
        log.error("%s", detail)
        if self.went_back is not None:
            self.went_back(detail)

    @property
    def heard(self) -> bool:
        """A collector confirmed this outbox within the timeout."""
        return self._heard_at is not None and self._clock() - self._heard_at < self.timeout_s

    async def overdue(self, limit: int) -> list[SealedMessage]:
        """Messages to send again now (see the module's docstring)."""
        now = self._clock()
        published_before = now_ms() - int(self.timeout_s * 1000)
        if self.heard:
            due: list[SealedMessage] = []
            for stream in BATCH_STREAMS:
                if now - self._moved_at[stream] >= self.timeout_s:
                    due += await self.outbox.call(
                        self.outbox.sync.overdue, stream, published_before, limit
                    )
            return due
        if now - self._probed_at < self.timeout_s:
            return []
        self._probed_at = now
        for stream in BATCH_STREAMS:
            oldest = await self.outbox.call(self.outbox.sync.overdue, stream, published_before, 1)
            if oldest:
                return oldest
        return []

    async def watch(
        self, connected: Callable[[], bool], resend: Callable[[list[SealedMessage]], None]
    ) -> None:
        """Hand what the store has not confirmed in time to ``resend``, for ever."""
        every_s = min(5.0, self.timeout_s / 4)
        while True:
            await asyncio.sleep(every_s)
            if not connected():
                continue
            probe = not self.heard
            again = [
                msg
                for msg in await self.overdue(RESEND_BATCH)
                if (msg.stream, msg.seq) not in self.resending
            ]
            if not again:
                continue
            log.info(
                "%s: sending again %d messages from %s seq %d (published, never confirmed)",
                "nobody confirms, a probe" if probe else "the store has not confirmed them",
                len(again),
                again[0].stream,
                again[0].seq,
            )
            self.resending.update((msg.stream, msg.seq) for msg in again)
            resend(again)
