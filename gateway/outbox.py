"""The durable outbox: nothing leaves the gateway before it is on disk.

Tables:

- ``pending``: readings and events written by the buses, not yet in a message.
- ``sealed``: messages with their final ``seq`` and payload: unpublished until the
  broker's PUBACK (``published_ms`` null), then kept until a collector says the store
  holds them (:meth:`Outbox.confirm`): a PUBACK only says the broker has it in memory.
- ``meta``: ``epoch`` (creation time, part of every message's identity), the next
  ``seq`` per stream, and lifetime counters.
- ``rejects``: input kept aside (garbled serial lines) with its reason.

Sealing moves rows from ``pending`` to one ``sealed`` message and takes a ``seq`` in a
single transaction, so a ``seq`` always names the same payload, across crashes too.
The database runs in WAL mode with ``synchronous=FULL``: a committed poll survives a
power cut.

:class:`Outbox` is synchronous and must be used from one thread;
:class:`gateway.outbox_file.AsyncOutbox` runs it on a worker thread for the event loop.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from coldchain import wire, wire_batch
from coldchain.wire import Event, Stream
from gateway.clock import now_ms
from gateway.outbox_file import (
    Transaction,
    drop_oldest_sealed,
    hold_lock,
    lost_epoch,
    move_aside,
    newest_time,
    open_checked,
    record_epoch,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT    NOT NULL,
    ts_ms  INTEGER NOT NULL,
    body   BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_stream_id ON pending (stream, id);
CREATE TABLE IF NOT EXISTS sealed (
    stream     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    payload    BLOB    NOT NULL,
    published_ms INTEGER,
    PRIMARY KEY (stream, seq)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejects (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms  INTEGER NOT NULL,
    source TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    raw    BLOB    NOT NULL
);
"""

SCHEMA_VERSION = 2
MAX_REJECTS = 10_000


@dataclass(frozen=True, slots=True)
class SealedMessage:
    stream: Stream
    seq: int
    n: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    #: sealed messages: not yet published, or published and not yet confirmed stored
    sealed_messages: int
    sealed_rows: int
    dropped: int
    rejects: int
    taken_readings: int
    #: sealed messages not yet taken by the broker (a PUBACK frees none of them)
    unpublished: int = 0
    #: published and not yet confirmed stored, and when the oldest of them was published
    unconfirmed: int = 0
    oldest_unconfirmed_ms: int | None = None


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        gateway: str,
        site: str,
        max_rows: int,
        max_age_h: float,
        clock: Callable[[], int] = now_ms,
        encoding: wire_batch.Encoding = "json",
    ) -> None:
        self.path = path
        #: readings batches as version 1 JSON or the compact version 2 (wire_batch)
        self.encoding = encoding
        self.gateway = gateway
        self.site = site
        self.max_rows = max_rows
        self.max_age_ms = int(max_age_h * 3_600_000)
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock, before = hold_lock(path)
        self._pending = self._sealed_rows = 0
        #: why the outbox found at start could not be used, and what it held (an event)
        self.replaced: str | None = None
        existed = path.exists()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:  # a power cut's damage: never a crash loop
            self.replaced = move_aside(path, exc)
            self._db = self._open()
        self.epoch = int(self._meta("epoch") or 0)
        self.replaced = self.replaced or lost_epoch(before, self.epoch, existed)
        record_epoch(self._lock, self.epoch)
        self._pending = self._count("SELECT COUNT(*) FROM pending")
        self._sealed_rows = self._count("SELECT COALESCE(SUM(n), 0) FROM sealed")
        self._last_age_check_ms = 0
        #: the newest edge time this outbox has seen: the clock never stamps before it
        self.newest_ms = newest_time(self._db)

    def _open(self) -> sqlite3.Connection:
        db = open_checked(self.path)
        try:
            db.executescript(_SCHEMA)
            self._db = db
            with self._tx():
                if (self._meta("schema") or SCHEMA_VERSION) < 2:
                    # version 1 deleted a message on its PUBACK: what is left was never acked
                    db.execute("ALTER TABLE sealed ADD COLUMN published_ms INTEGER")
                self._set_meta("schema", SCHEMA_VERSION)
                if self._meta("epoch") is None:
                    self._set_meta("epoch", self._clock())
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def catch_up(self, stream: Stream, stored_upto: int) -> int | None:
        """The store holds seqs this outbox has not handed out yet: the file went back
        in time (its -wal lost after a power cut). Skip past them, so that no seq names
        two payloads; returns the next seq it would have used, or None if all is well."""
        key = f"next_seq.{stream.value}"
        with self._tx():
            nxt = self._meta(key) or 1
            if nxt > stored_upto:
                return None
            self._set_meta(key, stored_upto + 1)
            return nxt

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; a rollback (a full disk fails a COMMIT) restores the counts."""
        counts = (self._pending, self._sealed_rows)
        try:
            with Transaction(self._db):
                yield self._db
        except BaseException:
            self._pending, self._sealed_rows = counts
            raise

    def _count(self, sql: str) -> int:
        return int(self._db.execute(sql).fetchone()[0])

    def _meta(self, key: str) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _add_meta(self, key: str, delta: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = value + excluded.value",
            (key, delta),
        )

    # ------------------------------------------------------------------ writing
    def add(self, stream: Stream, items: list[tuple[int, bytes]]) -> int:
        """Store readings or events (``(ts_ms, encoded body)``); returns the last row id."""
        if not items:
            return self.last_pending_id()
        with self._tx():
            self._db.executemany(
                "INSERT INTO pending (stream, ts_ms, body) VALUES (?, ?, ?)",
                [(stream.value, ts, body) for ts, body in items],
            )
            self._add_meta(f"taken.{stream.value}", len(items))
            self._pending += len(items)
            self._enforce_bounds()
            return self.last_pending_id()

    def reject(self, source: str, reason: str, raw: bytes) -> None:
        """Keep bad input aside with its reason (bounded: oldest rejects go first)."""
        with self._tx():
            self._db.execute(
                "INSERT INTO rejects (ts_ms, source, reason, raw) VALUES (?, ?, ?, ?)",
                (self._clock(), source, reason, raw),
            )
            self._db.execute(
                "DELETE FROM rejects WHERE id <= (SELECT MAX(id) FROM rejects) - ?", (MAX_REJECTS,)
            )

    def _enforce_bounds(self) -> None:
        dropped = 0
        oldest: int | None = None
        excess = self._pending + self._sealed_rows - self.max_rows
        if excess > 0 and self._sealed_rows:
            # sealed messages waiting for the store are the oldest rows: they go first
            dropped, oldest = drop_oldest_sealed(self._db, excess)
            self._sealed_rows -= dropped
        sealed_dropped = dropped
        if excess > dropped:
            row = self._db.execute(
                "SELECT MAX(id), MIN(ts_ms) FROM (SELECT id, ts_ms FROM pending "
                "ORDER BY id LIMIT ?)",
                (excess - dropped,),
            ).fetchone()
            if row[0] is not None:
                dropped += self._db.execute("DELETE FROM pending WHERE id <= ?", (row[0],)).rowcount
                oldest = row[1] if oldest is None else min(oldest, row[1])
        now = self._clock()
        if now - self._last_age_check_ms > 60_000:
            self._last_age_check_ms = now
            cutoff = now - self.max_age_ms
            row = self._db.execute(
                "SELECT MIN(ts_ms) FROM pending WHERE ts_ms < ?", (cutoff,)
            ).fetchone()
            if row[0] is not None:
                oldest = row[0] if oldest is None else min(oldest, row[0])
                dropped += self._db.execute(
                    "DELETE FROM pending WHERE ts_ms < ?", (cutoff,)
                ).rowcount
        if dropped:
            self._pending -= dropped - sealed_dropped
            self._add_meta("dropped", dropped)
            event = Event(
                ts_ms=now,
                kind="outbox",
                source=self.gateway,
                state="overflow",
                count=dropped,
                detail=f"outbox bound reached: dropped the {dropped} oldest "
                f"buffered rows (oldest from ts_ms {oldest})",
            )
            self._db.execute(
                "INSERT INTO pending (stream, ts_ms, body) VALUES (?, ?, ?)",
                (Stream.EVENTS.value, now, wire.encode(event)),
            )
            self._pending += 1

    # ------------------------------------------------------------------ sealing
    def last_pending_id(self) -> int:
        row = self._db.execute("SELECT MAX(id) FROM pending").fetchone()
        return int(row[0] or 0)

    def seal(
        self, stream: Stream, *, after_id: int = 0, up_to_id: int | None = None, limit: int = 500
    ) -> SealedMessage | None:
        """Move up to ``limit`` oldest pending rows of ``stream`` with
        ``after_id < id <= up_to_id`` into one message; None if there are none."""
        with self._tx():
            rows = self._db.execute(
                "SELECT id, body FROM pending WHERE stream = ? AND id > ? AND id <= ? "
                "ORDER BY id LIMIT ?",
                (stream.value, after_id, up_to_id if up_to_id is not None else 2**62, limit),
            ).fetchall()
            if not rows:
                return None
            rows = rows[: wire_batch.bodies_that_fit([body for _id, body in rows])]
            seq_key = f"next_seq.{stream.value}"
            seq = self._meta(seq_key) or 1
            self._set_meta(seq_key, seq + 1)
            held = self._db.execute(
                "SELECT MIN(seq) FROM sealed WHERE stream = ?", (stream.value,)
            ).fetchone()[0]
            payload = wire_batch.batch_payload(
                stream,
                self.encoding,
                gateway=self.gateway,
                site=self.site,
                epoch=self.epoch,
                seq=seq,
                bodies=[bytes(r[1]) for r in rows],
                held_from=seq if held is None else int(held),
            )
            self._db.execute(
                "DELETE FROM pending WHERE stream = ? AND id >= ? AND id <= ?",
                (stream.value, rows[0][0], rows[-1][0]),
            )
            created = self._clock()
            self._set_meta("clock_ms", created)  # survives the message: the clock's floor
            self._db.execute(
                "INSERT INTO sealed (stream, seq, n, created_ms, payload) VALUES (?, ?, ?, ?, ?)",
                (stream.value, seq, len(rows), created, payload),
            )
            self._pending -= len(rows)
            self._sealed_rows += len(rows)
            return SealedMessage(stream, seq, len(rows), payload)

    def unpublished(self) -> list[SealedMessage]:
        """Sealed messages the broker has not taken, oldest first (to send at start)."""
        return self._messages(
            "SELECT stream, seq, n, payload FROM sealed WHERE published_ms IS NULL "
            "ORDER BY created_ms, stream, seq"
        )

    def overdue(self, stream: Stream, published_before_ms: int, limit: int) -> list[SealedMessage]:
        """Published before then and still not confirmed stored, lowest seq first."""
        return self._messages(
            "SELECT stream, seq, n, payload FROM sealed WHERE stream = ? AND "
            "published_ms < ? ORDER BY seq LIMIT ?",
            (stream.value, published_before_ms, limit),
        )

    def _messages(self, sql: str, args: tuple[object, ...] = ()) -> list[SealedMessage]:
        return [
            SealedMessage(Stream(s), seq, n, bytes(p))
            for s, seq, n, p in self._db.execute(sql, args)
        ]

    def published(self, messages: list[tuple[Stream, int]]) -> None:
        """The broker took them (PUBACKs, several in one transaction): kept until a
        stored watermark covers them."""
        with self._tx():
            now = self._clock()
            self._db.executemany(
                "UPDATE sealed SET published_ms = ? WHERE stream = ? AND seq = ?",
                [(now, stream.value, seq) for stream, seq in messages],
            )

    def confirm(self, stream: Stream, upto: int) -> int:
        """The store holds every seq of ``stream`` up to ``upto``: free those messages.
        Returns the number of rows freed."""
        with self._tx():
            freed = sum(
                int(n)
                for (n,) in self._db.execute(
                    "DELETE FROM sealed WHERE stream = ? AND seq <= ? RETURNING n",
                    (stream.value, upto),
                )
            )
            if freed:
                self._sealed_rows -= freed
                self._add_meta(f"confirmed.{stream.value}", freed)
            return freed

    def ack(self, stream: Stream, seq: int) -> None:
        """Free one message on the broker's word alone (``confirm = "broker"``: for a
        broker whose collectors publish no stored watermark)."""
        with self._tx():
            row = self._db.execute(
                "DELETE FROM sealed WHERE stream = ? AND seq = ? RETURNING n", (stream.value, seq)
            ).fetchone()
            if row is not None:
                self._sealed_rows -= int(row[0])
                self._add_meta(f"confirmed.{stream.value}", int(row[0]))

    def stats(self) -> OutboxStats:
        sealed, unpublished, oldest = self._db.execute(
            "SELECT COUNT(*), COUNT(*) - COUNT(published_ms), MIN(published_ms) FROM sealed"
        ).fetchone()
        return OutboxStats(
            pending=self._pending,
            sealed_messages=int(sealed),
            sealed_rows=self._sealed_rows,
            dropped=self._meta("dropped") or 0,
            rejects=self._count("SELECT COUNT(*) FROM rejects"),
            taken_readings=self._meta("taken.readings") or 0,
            unpublished=int(unpublished),
            unconfirmed=int(sealed) - int(unpublished),
            oldest_unconfirmed_ms=None if oldest is None else int(oldest),
        )

    def behind(self, older_than_ms: int) -> tuple[int, int | None]:
        """Unsent readings and events taken before ``older_than_ms`` (a backlog, not the
        cycle in hand), and the edge time of the oldest unsent one."""
        pending, oldest_pending = self._db.execute(
            "SELECT COUNT(*), MIN(ts_ms) FROM pending WHERE ts_ms < ?", (older_than_ms,)
        ).fetchone()
        sealed, oldest_sealed = self._db.execute(
            "SELECT COALESCE(SUM(n), 0), MIN(created_ms) FROM sealed WHERE created_ms < ?",
            (older_than_ms,),
        ).fetchone()
        oldest = [t for t in (oldest_pending, oldest_sealed) if t is not None]
        return int(pending) + int(sealed), (min(oldest) if oldest else None)

    def rejects(self, limit: int = 100) -> list[tuple[int, str, str, bytes]]:
        sql = "SELECT ts_ms, source, reason, raw FROM rejects ORDER BY id DESC LIMIT ?"
        return [(int(t), s, r, bytes(raw)) for t, s, r, raw in self._db.execute(sql, (limit,))]

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # the kernel frees the lock with the file
