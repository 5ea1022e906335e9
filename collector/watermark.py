"""What the store holds of each gateway outbox: the seq watermark.

Per (gateway, stream, epoch) the store keeps ``upto``, the highest seq it holds with
every seq below it, and the seqs it holds above that (``seq_seen``). The collector
publishes ``upto`` after each commit (``coldchain/v1/{site}/{gateway}/stored``) and the
gateway frees what it covers, so ``upto`` must never claim a seq the store does not
hold: a first message seen at seq 37 starts the watermark at 0, not 36, unless the
message says (``held_from``) that the gateway holds nothing below its floor any more.

The SQLite store keeps these tables in its own file, inside the write's transaction;
the InfluxDB store keeps them in its side file, written after InfluxDB took the points.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from coldchain.wire import EventsBatch, ReadingsBatch

SCHEMA = """
CREATE TABLE IF NOT EXISTS seq_watermark (
    gateway TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    epoch   INTEGER NOT NULL,
    upto    INTEGER NOT NULL,
    PRIMARY KEY (gateway, stream, epoch)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seq_seen (
    gateway TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    epoch   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (gateway, stream, epoch, seq)
) WITHOUT ROWID
"""

#: (gateway, stream, epoch)
Key = tuple[str, str, int]
#: (gateway, epoch) → {stream: upto}
Watermarks = dict[tuple[str, int], dict[str, int]]


def record_message(db: sqlite3.Connection, msg: ReadingsBatch | EventsBatch) -> bool:
    """:func:`record` for one message; True if the store held it already (a copy)."""
    stream = "readings" if isinstance(msg, ReadingsBatch) else "events"
    return record(db, (msg.gateway, stream, msg.epoch), msg.seq, msg.held_from)


def create(db: sqlite3.Connection) -> None:
    for statement in filter(str.strip, SCHEMA.split(";")):
        db.execute(statement)


def record(db: sqlite3.Connection, key: Key, seq: int, held_from: int | None) -> bool:
    """Record that the store holds ``seq`` (in the caller's transaction); True if it
    held it already (a copy)."""
    row = db.execute(
        "SELECT upto FROM seq_watermark WHERE gateway = ? AND stream = ? AND epoch = ?", key
    ).fetchone()
    floor = 0 if held_from is None else held_from - 1
    if row is None:
        upto = floor
        db.execute("INSERT INTO seq_watermark VALUES (?, ?, ?, ?)", (*key, upto))
    else:
        upto = int(row[0])
    copy = seq <= upto
    if not copy:
        copy = not db.execute(
            "INSERT OR IGNORE INTO seq_seen VALUES (?, ?, ?, ?)", (*key, seq)
        ).rowcount
    if floor > upto or seq == upto + 1:
        _advance(db, key, max(upto, floor))
    return copy


def _advance(db: sqlite3.Connection, key: Key, upto: int) -> None:
    """Move the watermark to ``upto`` and over every contiguous seq recorded above it."""
    rows = db.execute(
        "SELECT seq FROM seq_seen WHERE gateway = ? AND stream = ? AND epoch = ? "
        "AND seq > ? ORDER BY seq LIMIT 100000",
        (*key, upto),
    ).fetchall()
    for (seq,) in rows:
        if seq != upto + 1:
            break
        upto = seq
    db.execute(
        "DELETE FROM seq_seen WHERE gateway = ? AND stream = ? AND epoch = ? AND seq <= ?",
        (*key, upto),
    )
    db.execute(
        "UPDATE seq_watermark SET upto = ? WHERE gateway = ? AND stream = ? AND epoch = ?",
        (upto, *key),
    )


def read(db: sqlite3.Connection, outboxes: Iterable[tuple[str, int]]) -> Watermarks:
    """The watermarks of these (gateway, epoch) outboxes, as the store holds them now
    (several collectors write one store: this is the store's word, not one collector's)."""
    found: Watermarks = {}
    for gateway, epoch in set(outboxes):
        streams = found.setdefault((gateway, epoch), {})
        for stream, upto in db.execute(
            "SELECT stream, upto FROM seq_watermark WHERE gateway = ? AND epoch = ?",
            (gateway, epoch),
        ):
            streams[str(stream)] = int(upto)
    return found
