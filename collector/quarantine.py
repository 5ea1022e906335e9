"""The collector's quarantine: the messages it refused, with the reason, kept in an
SQLite table (in the store's file for the SQLite store, in a file beside the collector
for InfluxDB: raw payloads are not time series).

Bounded: :data:`MAX_ROWS` rows, :data:`MAX_BYTES` of payload and :data:`MAX_AGE_MS` at
most; :func:`trim` drops the oldest past any and the stores count it. One payload is kept
up to :data:`MAX_KEPT_BYTES` (:func:`row`: its length and SHA-256 go into the reason), so
a flood of large refused messages cannot fill the disk. ``coldchain quarantine`` lists,
shows and replays (:func:`collector.app.replay_quarantined`) what is kept.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from collector.config import InfluxStoreConfig, SqliteStoreConfig
from collector.store import QuarantineItem

MAX_ROWS = 100_000
MAX_BYTES = 64 * 1024 * 1024
MAX_KEPT_BYTES = 64 * 1024
MAX_AGE_MS = 90 * 86_400_000
MAX_REASON_CHARS = 2048

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "received_ms INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, "
    "reason TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Kept:
    id: int
    received_ms: int
    topic: str
    payload: bytes
    reason: str


def row(item: QuarantineItem) -> tuple[int, str, bytes, str]:
    """The row to insert: a payload past MAX_KEPT_BYTES is cut, and the reason says so."""
    payload, reason = item.payload, item.reason[:MAX_REASON_CHARS]
    if len(payload) > MAX_KEPT_BYTES:
        digest = hashlib.sha256(payload).hexdigest()
        # after the cut reason, so that the digest is always there to find the message by
        reason = (
            f"{reason} [{len(payload)} bytes, sha256 {digest}; the first {MAX_KEPT_BYTES} kept]"
        )
        payload = payload[:MAX_KEPT_BYTES]
    return item.received_ms, item.topic[:512], payload, reason


def trim(db: sqlite3.Connection, now_ms: int) -> int:
    """Drop what is too old or past a bound, oldest first (inside the caller's
    transaction); the number dropped."""
    dropped = db.execute(
        "DELETE FROM quarantine WHERE received_ms < ?", (now_ms - MAX_AGE_MS,)
    ).rowcount
    count, size = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM quarantine"
    ).fetchone()
    if count > MAX_ROWS or size > MAX_BYTES:
        # the newest rows that fit both bounds stay
        (keep_from,) = db.execute(
            "SELECT COALESCE(MIN(id), 0) FROM (SELECT id, SUM(length(payload)) OVER "
            "(ORDER BY id DESC) AS above, ROW_NUMBER() OVER (ORDER BY id DESC) AS n "
            "FROM quarantine) WHERE above <= ? AND n <= ?",
            (MAX_BYTES, MAX_ROWS),
        ).fetchone()
        dropped += db.execute("DELETE FROM quarantine WHERE id < ?", (keep_from,)).rowcount
    return int(dropped)


def quarantine_file(store: SqliteStoreConfig | InfluxStoreConfig) -> Path:
    return store.path if isinstance(store, SqliteStoreConfig) else store.quarantine_path


class Quarantine:
    """Read and release what a collector kept aside."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no quarantine at {path}")
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._db.execute(SCHEMA)

    def rows(self, limit: int = 100) -> list[Kept]:
        """The newest first."""
        return [
            Kept(i, r, t, bytes(p), why)
            for i, r, t, p, why in self._db.execute(
                "SELECT id, received_ms, topic, payload, reason FROM quarantine "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]

    def one(self, row_id: int) -> Kept | None:
        row = self._db.execute(
            "SELECT id, received_ms, topic, payload, reason FROM quarantine WHERE id = ?",
            (row_id,),
        ).fetchone()
        return None if row is None else Kept(row[0], row[1], row[2], bytes(row[3]), row[4])

    def release(self, row_id: int) -> None:
        self._db.execute("DELETE FROM quarantine WHERE id = ?", (row_id,))

    def close(self) -> None:
        self._db.close()
