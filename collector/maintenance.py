"""The collector's upkeep of an SQLite store: compaction and retention
(collector.compaction), done between batches in the writer's own thread, a little at a
time, so that it never holds the store for long nor races the writes.

Every ``compact_every_s`` a pass starts: the settled sensor-days are compacted one
transaction each, within a budget of time per turn of the worker; when none is left the
retention runs. A store that is busy or full ("not now") puts the pass off with backoff
while health says so; a chunk that does not decode is named once, counted, kept, and the
pass goes on without that day. Neither ever costs a reading: the rows stay in
``readings`` until their chunk is committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from coldchain.backoff import Backoff
from coldchain.health import Health
from coldchain.logs import Throttled
from collector.buckets import SETTLE_MS, wall_ms
from collector.chunks import DamagedChunk
from collector.config import SqliteStoreConfig
from collector.errors import StoreUnavailable
from collector.sqlite_store import SqliteStore

log = logging.getLogger("coldchain.collector")

#: the work done in one turn of the writer at most (then the writer takes its batches)
BUDGET_S = 0.25


@dataclass
class UpkeepCounters:
    readings_compacted: int = 0
    reading_copies_dropped: int = 0
    days_compacted: int = 0
    compaction_failures: int = 0
    raw_days_pruned: int = 0
    days_pruned: int = 0
    compaction_passes: int = 0


class Maintenance:
    def __init__(
        self,
        store: SqliteStore,
        config: SqliteStoreConfig,
        health: Health,
        counters: UpkeepCounters | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.health = health
        self.counters = UpkeepCounters() if counters is None else counters
        self._plan: Iterator[tuple[str, str, int]] | None = None
        self._next = time.monotonic() + config.compact_every_s
        self._backoff = Backoff(5.0, 600.0)
        self._damaged: set[tuple[str, str, int]] = set()
        self._said = Throttled(log, every_s=3600.0)

    def step(self, budget_s: float = BUDGET_S) -> bool:
        """Do some of the pass under way, or start one when due; True while one is under
        way. Never raises for the store's sake: a failure is said, counted and retried."""
        now = time.monotonic()
        if self._plan is None:
            if now < self._next:
                return False
            self._plan = self.store.compaction_plan(wall_ms() - SETTLE_MS)
            self.counters.compaction_passes += 1
        deadline = now + budget_s
        try:
            while time.monotonic() < deadline:
                unit = next(self._plan, None)
                if unit is None:
                    self._finish()
                    return False
                if unit not in self._damaged:
                    self._compact(*unit)
        except StoreUnavailable as exc:
            delay = self._backoff.failed()
            self.health.problem("compaction", f"compaction put off, retried with backoff: {exc}")
            self._plan, self._next = None, time.monotonic() + delay
            return False
        return True

    def run(self) -> None:
        """A whole pass now (the ``coldchain readings compact`` command)."""
        self._next = 0.0
        while self.step(budget_s=3600.0):
            pass

    def _compact(self, gateway: str, sensor: str, day: int) -> None:
        try:
            moved = self.store.compact_day(gateway, sensor, day)
        except DamagedChunk as exc:
            self._damaged.add((gateway, sensor, day))
            self.counters.compaction_failures += 1
            self._said.warning(
                f"{gateway}/{sensor}/{day}",
                "a stored chunk does not decode; it is kept and its new readings stay "
                "uncompacted: %s",
                exc,
            )
            self.health.problem(
                "compaction",
                f"{len(self._damaged)} sensor-days cannot be compacted (damaged chunks, "
                "kept): see the log and `coldchain store check`",
            )
            return
        self.counters.readings_compacted += moved.readings
        self.counters.reading_copies_dropped += moved.copies
        self.counters.days_compacted += 1

    def _finish(self) -> None:
        c = self.config
        pruned = self.store.prune(wall_ms(), c.keep_raw_days, c.keep_rollups_days)
        self.counters.raw_days_pruned += pruned.raw_days
        self.counters.days_pruned += pruned.days
        self._plan, self._next = None, time.monotonic() + c.compact_every_s
        self._backoff.succeeded()
        if not self._damaged:
            self.health.clear("compaction")
