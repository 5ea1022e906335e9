"""The embedded default store: one SQLite file, no server.

WAL mode with ``synchronous=FULL`` (a committed batch survives a power cut); the schema
is created and migrated by ``PRAGMA user_version``. Several collector processes may
write the same file (SQLite serialises writers; ``busy_timeout`` absorbs short waits).
"""

from __future__ import annotations

import contextlib
import heapq
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from coldchain.wire import EventsBatch, Quantity, ReadingsBatch
from collector import chunk_reads, chunks, compaction, rollups, watermark
from collector.buckets import HOUR_MS, Bucket
from collector.chunks import Minute
from collector.errors import StoreRefused, StoreUnavailable
from collector.quarantine import row as kept_row
from collector.quarantine import trim
from collector.sqlite_readings import CatalogueBehind, ReadingsWriter
from collector.sqlite_schema import MIGRATIONS
from collector.store import Incoming, QuarantineItem, StoredReading, WriteResult

#: errors that mean "not now" rather than "bug"
_UNAVAILABLE = (
    "locked",
    "busy",
    "disk i/o",
    "unable to open",
    "database or disk is full",
    "readonly",
)


def _unavailable(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(
        word in str(exc).lower() for word in _UNAVAILABLE
    )


class SqliteStore:
    def __init__(self, path: Path, busy_timeout_ms: int = 2000) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"sqlite {path}: {exc}") from None
            raise

    def _migrate(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ writing
    def write(self, batch: list[Incoming], quarantine: list[QuarantineItem]) -> WriteResult:
        """All or nothing. StoreUnavailable when SQLite says "not now" (locked, busy, disk
        full or failing), StoreRefused for any other error (a bug or a value SQLite
        cannot hold): the collector then finds the message that causes it."""
        try:
            return self._transaction(batch, quarantine, careful=False)
        except CatalogueBehind:
            return self._transaction(batch, quarantine, careful=True)

    def _transaction(
        self, batch: list[Incoming], quarantine: list[QuarantineItem], *, careful: bool
    ) -> WriteResult:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            result = self._write(batch, quarantine, ReadingsWriter(self._db, careful=careful))
            self._db.execute("COMMIT")
            return result
        except (sqlite3.Error, OverflowError, ValueError) as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error) and _unavailable(exc):
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
            raise StoreRefused(f"sqlite {self.path}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # SQLite rolls a failed COMMIT back by itself (disk full): roll back only what
        # is still open, or ROLLBACK raises "no transaction is active"
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _write(
        self, batch: list[Incoming], quarantine: list[QuarantineItem], readings: ReadingsWriter
    ) -> WriteResult:
        stored = duplicate_readings = duplicate_messages = events = 0
        for item in batch:
            msg = item.message
            copy = watermark.record_message(self._db, msg)
            duplicate_messages += copy
            if isinstance(msg, ReadingsBatch):
                added = readings.add(msg, item.received_ms, copy)
                stored += added
                duplicate_readings += len(msg.readings) - added
                rollups.unsettle(self._db, msg)
            else:
                events += self._write_events(msg, item.received_ms)
        readings.finish()
        dropped = 0
        if quarantine:
            self._db.executemany(
                "INSERT INTO quarantine (received_ms, topic, payload, reason) VALUES (?, ?, ?, ?)",
                [kept_row(q) for q in quarantine],
            )
            dropped = trim(self._db, max(q.received_ms for q in quarantine))
        return WriteResult(
            stored, duplicate_readings, duplicate_messages, events, len(quarantine), dropped
        )

    def _write_events(self, msg: EventsBatch, received_ms: int) -> int:
        cur = self._db.executemany(
            "INSERT OR IGNORE INTO events (gateway, epoch, seq, idx, site, ts_ms, kind, "
            "source, state, detail, count, received_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    msg.gateway,
                    msg.epoch,
                    msg.seq,
                    i,
                    msg.site,
                    e.ts_ms,
                    e.kind,
                    e.source,
                    e.state,
                    e.detail,
                    e.count,
                    received_ms,
                )
                for i, e in enumerate(msg.events)
            ],
        )
        return int(cur.rowcount)

    def watermarks(self, outboxes: Iterable[tuple[str, int]]) -> watermark.Watermarks:
        try:
            return watermark.read(self._db, outboxes)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None

    # ------------------------------------------------------------------ reading
    def readings(
        self,
        *,
        start_ms: int,
        end_ms: int,
        sensor: str | None = None,
        site: str | None = None,
        gateway: str | None = None,
    ) -> Iterator[StoredReading]:
        series = self.series(
            start_ms=start_ms, end_ms=end_ms, sensor=sensor, site=site, gateway=gateway
        )
        scans = [self._scan(g, s, start_ms, end_ms) for g, s in series]
        yield from heapq.merge(*scans, key=lambda r: (r.ts_ms, r.gateway, r.sensor))

    def series(
        self,
        *,
        start_ms: int,
        end_ms: int,
        sensor: str | None = None,
        site: str | None = None,
        gateway: str | None = None,
    ) -> list[tuple[str, str]]:
        """(gateway, sensor) pairs with readings in the range, from the catalogue."""
        where = ["first_ts_ms < ?", "last_ts_ms >= ?"]
        args: list[object] = [end_ms, start_ms]
        for column, value in (("sensor", sensor), ("site", site), ("gateway", gateway)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return [
            (g, s)
            for g, s in self._db.execute(
                f"SELECT gateway, sensor FROM sensors WHERE {' AND '.join(where)} "
                "ORDER BY gateway, sensor",
                args,
            )
        ]

    def _scan(
        self, gateway: str, sensor: str, start_ms: int, end_ms: int
    ) -> Iterator[StoredReading]:
        # a day at a time, each in one snapshot (compaction may move a day meanwhile)
        return chunk_reads.scan(self._db, gateway, sensor, start_ms, end_ms)

    def of_quantity(self, quantity: Quantity, start_ms: int, end_ms: int) -> list[StoredReading]:
        """Every reading of the sensors of one quantity in a range (the trucks' positions
        for the map), sensor by sensor in time order."""
        pairs = self._db.execute(
            "SELECT gateway, sensor FROM sensors WHERE quantity = ? AND first_ts_ms < ? "
            "AND last_ts_ms >= ? ORDER BY gateway, sensor",
            (quantity.value, end_ms, start_ms),
        ).fetchall()
        return [r for g, s in pairs for r in self._scan(g, s, start_ms, end_ms)]

    def count(self, gateway: str, sensor: str, start_ms: int, end_ms: int) -> int:
        """How many readings a sensor has in a range (a primary-key range count, and the
        counts of its compacted days; past keep_raw_days, as their roll-ups counted)."""
        with chunk_reads.snapshot(self._db):
            row = self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE gateway = ? AND sensor = ? AND ts_ms >= ? "
                "AND ts_ms < ?",
                (gateway, sensor, start_ms, end_ms),
            ).fetchone()
            return int(row[0]) + chunk_reads.counted(self._db, gateway, sensor, start_ms, end_ms)

    def buckets(
        self,
        gateway: str,
        sensor: str,
        start_ms: int,
        end_ms: int,
        width_ms: int,
        origin_ms: int | None = None,
    ) -> list[Bucket]:
        """A sensor's readings of a range in buckets of ``width_ms`` counted from
        ``origin_ms`` (default: the range's start): one GROUP BY over its primary-key
        range (collector.buckets)."""
        origin = start_ms if origin_ms is None else origin_ms
        if width_ms % HOUR_MS == 0 and (origin % HOUR_MS) == 0:
            return rollups.hourly(self._db, gateway, sensor, start_ms, end_ms, width_ms, origin)
        return rollups.grouped(self._db, gateway, sensor, start_ms, end_ms, width_ms, origin)

    def raw_gone(self, gateway: str, sensor: str, start_ms: int, end_ms: int) -> bool:
        """Whether a day of the range keeps only its roll-ups (past keep_raw_days)."""
        return chunk_reads.any_chunk(self._db, gateway, sensor, start_ms, end_ms, raw_gone=True)

    def rolled_up(
        self, gateway: str, sensor: str, start_ms: int, end_ms: int
    ) -> tuple[str, list[Minute]]:
        """The sensor's quantity and the 1-minute roll-ups of the range's days past
        keep_raw_days (whose readings are gone), in time order."""
        with chunk_reads.snapshot(self._db):
            found = self._db.execute(
                "SELECT quantity FROM sensors WHERE gateway = ? AND sensor = ?", (gateway, sensor)
            ).fetchone()
            minutes = chunk_reads.minutes_gone(self._db, gateway, sensor, start_ms, end_ms)
        return ("" if found is None else str(found[0])), minutes

    def count_readings(self) -> int:
        """Readings held: in ``readings`` and in the chunks that still hold theirs."""
        with chunk_reads.snapshot(self._db):
            (hot,) = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()
            (cold,) = self._db.execute(
                "SELECT COALESCE(SUM(n), 0) FROM chunks WHERE raw IS NOT NULL"
            ).fetchone()
        return int(hot) + int(cold)

    # ------------------------------------------------------------------ compaction
    def compaction_plan(self, horizon_ms: int) -> Iterator[tuple[str, str, int]]:
        """The sensor-days to compact: with rows in ``readings``, ended before the horizon."""
        return compaction.plan(self._db, horizon_ms)

    def compact_day(self, gateway: str, sensor: str, day_ms: int) -> compaction.Moved:
        """One sensor-day into its chunk (collector.compaction); StoreUnavailable when
        SQLite says "not now", DamagedChunk when its stored chunk does not decode."""
        with self._not_now():
            return compaction.compact_day(self._db, gateway, sensor, day_ms)

    def damaged_chunks(self) -> Iterator[tuple[str, str]]:
        """(gateway/sensor/day, reason) of each chunk that does not decode."""
        for gateway, sensor, day, raw, minutes in self._db.execute(
            "SELECT gateway, sensor, day_ms, raw, minutes FROM chunks ORDER BY id"
        ):
            try:
                if raw is not None:
                    chunks.decode(raw)
                chunks.decode_minutes(minutes)
            except chunks.DamagedChunk as exc:
                yield f"{gateway}/{sensor} day {day}", str(exc)

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def prune(self, now_ms: int, keep_raw_days: int, keep_rollups_days: int) -> compaction.Pruned:
        with self._not_now():
            return compaction.prune(self._db, now_ms, keep_raw_days, keep_rollups_days)

    @contextlib.contextmanager
    def _not_now(self) -> Iterator[None]:
        """SQLite's "not now" (locked, busy, full) as StoreUnavailable."""
        try:
            yield
        except sqlite3.Error as exc:
            if _unavailable(exc):
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from None
            raise

    def quarantined(self) -> list[tuple[str, bytes, str]]:
        return [
            (t, bytes(p), r)
            for t, p, r in self._db.execute(
                "SELECT topic, payload, reason FROM quarantine ORDER BY id"
            )
        ]

    def events(self, site: str | None = None) -> list[tuple[str, str, str, str]]:
        sql = "SELECT gateway, kind, source, state FROM events"
        args: tuple[str, ...] = ()
        if site is not None:
            sql += " WHERE site = ?"
            args = (site,)
        return list(self._db.execute(sql + " ORDER BY ts_ms", args))

    def close(self) -> None:
        self._db.close()
