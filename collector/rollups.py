"""The SQLite store's buckets for the charts (collector.buckets): one GROUP BY over a
sensor's primary-key range, or, for whole-hour buckets, the hourly roll-ups of settled
hours (``rollup_1h``: a cache of the readings, made by the first query that needs an hour
in one write transaction, dropped for an hour that a late reading changes) with the
partial and unsettled hours at the ends from the readings."""

from __future__ import annotations

import contextlib
import sqlite3

from coldchain.wire import ReadingsBatch
from collector import chunk_reads
from collector.buckets import DAY_MS, HOUR_MS, SETTLE_MS, Bucket, combined, wall_ms

#: a reading with a value to draw (out of range is a broken probe; a fault has none)
DRAWN = "(q IN ('ok', 'clock_suspect') AND value IS NOT NULL)"


def grouped(
    db: sqlite3.Connection,
    gateway: str,
    sensor: str,
    start_ms: int,
    end_ms: int,
    width_ms: int,
    origin: int,
) -> list[Bucket]:
    with chunk_reads.snapshot(db):  # the rows and the chunks as of one moment
        rows = db.execute(
            f"SELECT (ts_ms - ?1) / ?2 AS k, COUNT(CASE WHEN {DRAWN} THEN 1 END), "
            f"MIN(CASE WHEN {DRAWN} THEN value END), AVG(CASE WHEN {DRAWN} THEN value END), "
            f"MAX(CASE WHEN {DRAWN} THEN value END), COUNT(CASE WHEN NOT {DRAWN} THEN 1 END) "
            "FROM readings WHERE gateway = ?3 AND sensor = ?4 AND ts_ms >= ?5 AND ts_ms < ?6 "
            "GROUP BY k ORDER BY k",
            (origin, width_ms, gateway, sensor, start_ms, end_ms),
        ).fetchall()
        # the compacted days of the range (collector.compaction), if any
        cold = chunk_reads.buckets(db, gateway, sensor, start_ms, end_ms, width_ms, origin)
    hot = [Bucket(origin + k * width_ms, n, lo, mean, hi, bad) for k, n, lo, mean, hi, bad in rows]
    return chunk_reads.combine(hot, cold)


def hourly(
    db: sqlite3.Connection,
    gateway: str,
    sensor: str,
    start_ms: int,
    end_ms: int,
    width_ms: int,
    origin: int,
) -> list[Bucket]:
    """Buckets of whole hours: the settled hours from their roll-ups (made first
    where missing, in one write transaction so that a late reading cannot slip
    between), the partial and unsettled hours at the ends from the readings."""
    first = start_ms + (-start_ms % HOUR_MS)
    last = min(end_ms - end_ms % HOUR_MS, wall_ms() - SETTLE_MS)
    last -= last % HOUR_MS
    if last <= first:
        return grouped(db, gateway, sensor, start_ms, end_ms, width_ms, origin)
    try:
        roll_up(db, gateway, sensor, first, last)
    except sqlite3.OperationalError:  # a collector holds the file: from the readings
        return grouped(db, gateway, sensor, start_ms, end_ms, width_ms, origin)
    with chunk_reads.snapshot(db):  # an hour unsettled meanwhile is not missed
        parts = grouped(db, gateway, sensor, start_ms, first, width_ms, origin)
        parts += [
            Bucket(origin + k * width_ms, n, lo, None if n == 0 else total / n, hi, bad)
            for k, n, lo, total, hi, bad in db.execute(
                "SELECT (hour_ms - ?1) / ?2 AS k, SUM(n), MIN(lo), SUM(total), MAX(hi), "
                "SUM(bad) FROM rollup_1h WHERE gateway = ?3 AND sensor = ?4 AND hour_ms >= ?5 "
                "AND hour_ms < ?6 GROUP BY k ORDER BY k",
                (origin, width_ms, gateway, sensor, first, last),
            )
        ]
        parts += grouped(db, gateway, sensor, last, end_ms, width_ms, origin)
    return combined(parts)  # a bucket may have parts from both sides of an edge


def roll_up(db: sqlite3.Connection, gateway: str, sensor: str, first: int, last: int) -> None:
    have = db.execute(
        "SELECT COUNT(*) FROM rollup_1h WHERE gateway = ? AND sensor = ? AND hour_ms >= ? "
        "AND hour_ms < ?",
        (gateway, sensor, first, last),
    ).fetchone()[0]
    if have == (last - first) // HOUR_MS:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # hours of compacted days first, from their chunks and the rows that came later
        # (the readings table alone would miss the chunk's)
        if days := chunk_reads.compacted_days(db, gateway, sensor, first, last):
            present = {
                h
                for (h,) in db.execute(
                    "SELECT hour_ms FROM rollup_1h WHERE gateway = ? AND sensor = ? "
                    "AND hour_ms >= ? AND hour_ms < ?",
                    (gateway, sensor, first, last),
                )
            }
            missing = {
                h
                for h in range(first, last, HOUR_MS)
                if h not in present and h - h % DAY_MS in days
            }
            made = chunk_reads.hour_rollups(db, gateway, sensor, missing)
            db.executemany(
                "INSERT OR IGNORE INTO rollup_1h (gateway, sensor, hour_ms, n, lo, hi, total, "
                "bad) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(gateway, sensor, *h) for h in made],
            )
        # the hours without readings get a row too: nothing to make next time
        db.execute(
            "INSERT OR IGNORE INTO rollup_1h (gateway, sensor, hour_ms, n, lo, hi, total, "
            f"bad) SELECT ?1, ?2, ts_ms - ts_ms % {HOUR_MS} AS h, "
            f"COUNT(CASE WHEN {DRAWN} THEN 1 END), MIN(CASE WHEN {DRAWN} THEN value END), "
            f"MAX(CASE WHEN {DRAWN} THEN value END), SUM(CASE WHEN {DRAWN} THEN value END), "
            f"COUNT(CASE WHEN NOT {DRAWN} THEN 1 END) FROM readings WHERE gateway = ?1 "
            "AND sensor = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 GROUP BY h",
            (gateway, sensor, first, last),
        )
        db.executemany(
            "INSERT OR IGNORE INTO rollup_1h (gateway, sensor, hour_ms, n, bad) "
            "VALUES (?, ?, ?, 0, 0)",
            [(gateway, sensor, h) for h in range(first, last, HOUR_MS)],
        )
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def unsettle(db: sqlite3.Connection, msg: ReadingsBatch) -> None:
    """A late reading in an hour that may have a roll-up: the roll-up goes (the next
    query that needs it makes it again). Live readings never touch a settled hour."""
    settled = wall_ms() - SETTLE_MS
    hours = {(r.sensor, r.ts_ms - r.ts_ms % HOUR_MS) for r in msg.readings if r.ts_ms < settled}
    if hours:
        db.executemany(
            "DELETE FROM rollup_1h WHERE gateway = ? AND sensor = ? AND hour_ms = ?",
            [(msg.gateway, sensor, hour) for sensor, hour in hours],
        )


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
