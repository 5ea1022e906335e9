"""The collector's quarantine: the messages it refused, with the reason, kept in an
SQLite table (in the store's file for the SQLite store, in a file beside the collector
for InfluxDB: raw payloads are not time series).

Bounded: :data:`MAX_ROWS` rows and :data:`MAX_AGE_MS` at most; :func:`trim` drops what is
past either and the stores count it. ``coldchain quarantine`` lists, shows and replays
(:func:`collector.app.replay_quarantined`) what is kept.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from collector.config import InfluxStoreConfig, SqliteStoreConfig

MAX_ROWS = 100_000
MAX_AGE_MS = 90 * 86_400_000

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


def trim(db: sqlite3.Connection, now_ms: int) -> int:
    """Drop what is too old or past the bound (inside the caller's transaction)."""
    dropped = db.execute(
        "DELETE FROM quarantine WHERE received_ms < ?", (now_ms - MAX_AGE_MS,)
    ).rowcount
    (count,) = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()
    if count > MAX_ROWS:
        dropped += db.execute(
            "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)",
            (count - MAX_ROWS,),
        ).rowcount
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
