"""The durable outbox: nothing leaves the gateway before it is on disk.

Tables:

- ``pending``: readings and events written by the buses, not yet in a message.
- ``sealed``: messages with their final ``seq`` and payload, waiting for a PUBACK.
- ``meta``: ``epoch`` (creation time, part of every message's identity), the next
  ``seq`` per stream, and lifetime counters.
- ``rejects``: input kept aside (garbled serial lines) with its reason.

Sealing moves rows from ``pending`` to one ``sealed`` message and takes a ``seq`` in a
single transaction, so a ``seq`` always names the same payload, across crashes too.
The database runs in WAL mode with ``synchronous=FULL``: a committed poll survives a
power cut.

:class:`Outbox` is synchronous and must be used from one thread;
:class:`AsyncOutbox` runs it on a dedicated worker thread for the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

from coldchain import wire
from coldchain.wire import Event, Stream

P = ParamSpec("P")
T = TypeVar("T")

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

SCHEMA_VERSION = 1
MAX_REJECTS = 10_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SealedMessage:
    stream: Stream
    seq: int
    n: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    sealed_messages: int
    sealed_rows: int
    dropped: int
    rejects: int
    taken_readings: int


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
    ) -> None:
        self.path = path
        self.gateway = gateway
        self.site = site
        self.max_rows = max_rows
        self.max_age_ms = int(max_age_h * 3_600_000)
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _hold_lock(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._tx():
            if self._meta("schema") is None:
                self._set_meta("schema", SCHEMA_VERSION)
            if self._meta("epoch") is None:
                self._set_meta("epoch", self._clock())
        self.epoch = int(self._meta("epoch") or 0)
        self._pending = self._count("SELECT COUNT(*) FROM pending")
        self._sealed_rows = self._count("SELECT COALESCE(SUM(n), 0) FROM sealed")
        self._last_age_check_ms = 0

    # ------------------------------------------------------------------ helpers
    def _tx(self) -> sqlite3.Connection:
        return _Transaction(self._db)  # type: ignore[return-value]

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
            cur = self._db.executemany(
                "INSERT INTO pending (stream, ts_ms, body) VALUES (?, ?, ?)",
                [(stream.value, ts, body) for ts, body in items],
            )
            del cur
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
        if excess > 0:
            row = self._db.execute(
                "SELECT MAX(id), MIN(ts_ms) FROM (SELECT id, ts_ms FROM pending "
                "ORDER BY id LIMIT ?)",
                (excess,),
            ).fetchone()
            if row[0] is not None:
                dropped += self._db.execute("DELETE FROM pending WHERE id <= ?", (row[0],)).rowcount
                oldest = row[1]
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
            self._pending -= dropped
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
            seq_key = f"next_seq.{stream.value}"
            seq = self._meta(seq_key) or 1
            self._set_meta(seq_key, seq + 1)
            payload = wire.assemble(
                stream,
                gateway=self.gateway,
                site=self.site,
                epoch=self.epoch,
                seq=seq,
                bodies=[r[1] for r in rows],
            )
            self._db.execute(
                "DELETE FROM pending WHERE stream = ? AND id >= ? AND id <= ?",
                (stream.value, rows[0][0], rows[-1][0]),
            )
            self._db.execute(
                "INSERT INTO sealed (stream, seq, n, created_ms, payload) VALUES (?, ?, ?, ?, ?)",
                (stream.value, seq, len(rows), self._clock(), payload),
            )
            self._pending -= len(rows)
            self._sealed_rows += len(rows)
            return SealedMessage(stream, seq, len(rows), payload)

    def unacked(self) -> list[SealedMessage]:
        """Sealed messages not yet acknowledged, oldest first (to republish at start)."""
        return [
            SealedMessage(Stream(s), seq, n, bytes(p))
            for s, seq, n, p in self._db.execute(
                "SELECT stream, seq, n, payload FROM sealed ORDER BY created_ms, stream, seq"
            )
        ]

    def ack(self, stream: Stream, seq: int) -> None:
        with self._tx():
            row = self._db.execute(
                "DELETE FROM sealed WHERE stream = ? AND seq = ? RETURNING n", (stream.value, seq)
            ).fetchone()
            if row is not None:
                self._sealed_rows -= int(row[0])
                self._add_meta(f"acked.{stream.value}", int(row[0]))

    def stats(self) -> OutboxStats:
        return OutboxStats(
            pending=self._pending,
            sealed_messages=self._count("SELECT COUNT(*) FROM sealed"),
            sealed_rows=self._sealed_rows,
            dropped=self._meta("dropped") or 0,
            rejects=self._count("SELECT COUNT(*) FROM rejects"),
            taken_readings=self._meta("taken.readings") or 0,
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
        return [
            (int(t), s, r, bytes(raw))
            for t, s, r, raw in self._db.execute(
                "SELECT ts_ms, source, reason, raw FROM rejects ORDER BY id DESC LIMIT ?", (limit,)
            )
        ]

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # the kernel frees the lock with the file


class OutboxBusy(RuntimeError):
    """Another process holds this outbox: two gateways on one outbox would hand out the
    same sequence numbers and lose readings as duplicates."""


def _hold_lock(path: Path) -> IO[str]:
    """One process per outbox: an exclusive lock on ``<outbox>.lock``, which names the
    holder's PID; a second process is refused, naming the first."""
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise OutboxBusy(
            f"outbox {path} is in use by process {holder}: one gateway process per outbox"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (nestable: inner levels no-op)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._outer = True
        return self._db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self._outer:
            return
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


class AsyncOutbox:
    """Runs an :class:`Outbox` on one worker thread, so fsyncs never block the loop."""

    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self.closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.sync.close()
        self.closed = True
