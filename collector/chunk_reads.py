"""Reading a sensor's history back from the SQLite store when part of it is compacted
(collector.compaction): the chunks of a range, decoded and merged with the rows still
in ``readings``; counts; and buckets for the charts from chunks (their readings, or
their 1-minute roll-ups once the readings are past ``keep_raw_days``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from collector.buckets import DAY_MS, DRAWN, Bucket, combined
from collector.chunks import (
    DamagedChunk,
    Minute,
    Row,
    decode,
    decode_minutes,
    minutes_of,
)
from collector.compaction import Hour, hot_rows, hours_of, merged
from collector.store import StoredReading

Chunk = tuple[int, bytes | None, bytes]  # day_ms, raw (None past keep_raw_days), minutes


def chunks(db: sqlite3.Connection, gateway: str, sensor: str, start: int, end: int) -> list[Chunk]:
    """The sensor's chunks of days that overlap ``[start, end)``, in time order."""
    return db.execute(
        "SELECT day_ms, raw, minutes FROM chunks WHERE gateway = ? AND sensor = ? "
        "AND day_ms > ? AND day_ms < ? ORDER BY day_ms",
        (gateway, sensor, start - DAY_MS, end),
    ).fetchall()


def any_chunk(
    db: sqlite3.Connection,
    gateway: str,
    sensor: str,
    start: int,
    end: int,
    *,
    raw_gone: bool = False,
) -> bool:
    """Whether a day of the range is compacted (``raw_gone``: keeps only its roll-ups)."""
    found = db.execute(
        "SELECT 1 FROM chunks WHERE gateway = ? AND sensor = ? AND day_ms > ? AND day_ms < ? "
        + ("AND raw IS NULL " if raw_gone else "")
        + "LIMIT 1",
        (gateway, sensor, start - DAY_MS, end),
    )
    return found.fetchone() is not None


def _where(gateway: str, sensor: str, day: int) -> str:
    return f"{gateway}/{sensor}, the day of {day} (epoch ms)"


def minutes_gone(
    db: sqlite3.Connection, gateway: str, sensor: str, start: int, end: int
) -> list[Minute]:
    """The 1-minute roll-ups of the range's days past keep_raw_days, in time order."""
    return [
        m
        for chunk in chunks(db, gateway, sensor, start, end)
        if chunk[1] is None
        for m in day_minutes(gateway, sensor, chunk)
        if start <= m.minute_ms < end
    ]


def chunk_rows(gateway: str, sensor: str, chunk: Chunk) -> list[Row]:
    """A chunk's own readings (none past keep_raw_days); DamagedChunk naming it."""
    day, raw, _minutes = chunk
    try:
        return [] if raw is None else decode(raw)
    except DamagedChunk as exc:
        raise DamagedChunk(f"{_where(gateway, sensor, day)}: {exc}") from None


def day_rows(db: sqlite3.Connection, gateway: str, sensor: str, chunk: Chunk) -> list[Row]:
    """A compacted day's readings, with any that came later still in ``readings``."""
    day = chunk[0]
    old = chunk_rows(gateway, sensor, chunk)
    return merged(old, hot_rows(db, gateway, sensor, day, day + DAY_MS))[0]


def day_minutes(gateway: str, sensor: str, chunk: Chunk) -> list[Minute]:
    day, _raw, blob = chunk
    try:
        return decode_minutes(blob)
    except DamagedChunk as exc:
        raise DamagedChunk(f"{_where(gateway, sensor, day)}: {exc}") from None


@contextlib.contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """Several reads as of one moment (a read transaction: WAL gives it a snapshot), so
    that a compaction committing between them can neither hide a day nor show it twice.
    Inside a transaction already, that one."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def scan(
    db: sqlite3.Connection, gateway: str, sensor: str, start: int, end: int
) -> Iterator[StoredReading]:
    """A sensor's readings in ``[start, end)`` in time order, a day at a time: each day
    read in one snapshot (its chunk, merged with its rows in ``readings``), the days
    without data skipped by two index seeks. A day's rows are given after the snapshot
    ends: the scans of several sensors interleave on one connection."""
    at = start
    while at < end:
        with snapshot(db):
            day = _next_day(db, gateway, sensor, at, end)
            if day is None:
                return
            lo, hi = max(at, day), min(end, day + DAY_MS)
            found = db.execute(
                "SELECT day_ms, raw, minutes FROM chunks WHERE gateway = ? AND sensor = ? "
                "AND day_ms = ?",
                (gateway, sensor, day),
            ).fetchone()
            if found is None:
                rows = hot_rows(db, gateway, sensor, lo, hi)
            else:
                rows = [r for r in day_rows(db, gateway, sensor, found) if lo <= r.ts_ms < hi]
        yield from _restored(gateway, sensor, rows)
        at = hi


def _next_day(db: sqlite3.Connection, gateway: str, sensor: str, at: int, end: int) -> int | None:
    """The first day at or after ``at`` with a reading or a chunk, if before ``end``."""
    (hot,) = db.execute(
        "SELECT MIN(ts_ms) FROM readings WHERE gateway = ? AND sensor = ? AND ts_ms >= ? "
        "AND ts_ms < ?",
        (gateway, sensor, at, end),
    ).fetchone()
    (cold,) = db.execute(
        "SELECT MIN(day_ms) FROM chunks WHERE gateway = ? AND sensor = ? AND day_ms > ? "
        "AND day_ms < ?",
        (gateway, sensor, at - DAY_MS, end),
    ).fetchone()
    found = [t - t % DAY_MS for t in (hot, cold) if t is not None]
    return min(found, default=None)


def _restored(gateway: str, sensor: str, rows: list[Row]) -> Iterator[StoredReading]:
    for r in rows:
        yield StoredReading.restore(
            r.site, gateway, sensor, r.ts_ms, r.quantity, r.value, r.q, r.fault,
            r.lat_deg, r.lon_deg, r.speed_kmh, r.course_deg, r.sats, r.hdop,
        )  # fmt: skip


def counted(db: sqlite3.Connection, gateway: str, sensor: str, start: int, end: int) -> int:
    """Readings of the range held in chunks (past keep_raw_days: as their roll-ups
    counted them)."""
    (whole,) = db.execute(
        "SELECT COALESCE(SUM(n), 0) FROM chunks WHERE gateway = ? AND sensor = ? "
        "AND day_ms >= ? AND day_ms + ? <= ?",
        (gateway, sensor, start, DAY_MS, end),
    ).fetchone()
    total = int(whole)
    # the days the range cuts (the first and the last), each read and counted in part
    ends = {t - t % DAY_MS for t in (start, end - 1)}
    cut = [d for d in ends if not (start <= d and d + DAY_MS <= end)]
    found: list[Chunk] = []
    if cut:
        found = db.execute(
            "SELECT day_ms, raw, minutes FROM chunks WHERE gateway = ? AND sensor = ? "
            f"AND day_ms IN ({', '.join('?' * len(cut))})",
            (gateway, sensor, *cut),
        ).fetchall()
    for chunk in found:
        if chunk[1] is None:
            minutes = day_minutes(gateway, sensor, chunk)
            total += sum(m.n + m.bad for m in minutes if start <= m.minute_ms < end)
        else:
            total += sum(1 for r in chunk_rows(gateway, sensor, chunk) if start <= r.ts_ms < end)
    return total


def buckets(
    db: sqlite3.Connection,
    gateway: str,
    sensor: str,
    start: int,
    end: int,
    width: int,
    origin: int,
) -> list[Bucket]:
    """The parts of buckets that the chunks of the range hold (the rows still in
    ``readings`` are grouped by the caller)."""
    acc: dict[int, list[float]] = {}  # bucket → [n, lo, hi, total, bad]
    for chunk in chunks(db, gateway, sensor, start, end):
        if chunk[1] is not None:
            for r in chunk_rows(gateway, sensor, chunk):
                if start <= r.ts_ms < end:
                    good = r.value is not None and r.q in DRAWN
                    _add(acc, (r.ts_ms - origin) // width, good, r.value, r.value, r.value, 1)
            continue
        for m in day_minutes(gateway, sensor, chunk):
            if start <= m.minute_ms < end:
                k = (m.minute_ms - origin) // width
                if m.n:
                    _add(acc, k, True, m.lo, m.hi, m.total, m.n)
                if m.bad:
                    _add(acc, k, False, None, None, None, m.bad)
    return [
        Bucket(origin + k * width, int(n), lo if n else None, total / n if n else None,
               hi if n else None, int(bad))
        for k, (n, lo, hi, total, bad) in sorted(acc.items())
    ]  # fmt: skip


def _add(
    acc: dict[int, list[float]],
    k: int,
    good: bool,
    lo: float | None,
    hi: float | None,
    total: float | None,
    count: int,
) -> None:
    b = acc.get(k)
    if b is None:
        b = acc[k] = [0, float("inf"), float("-inf"), 0.0, 0]
    if not good:
        b[4] += count
        return
    assert lo is not None and hi is not None and total is not None
    b[0] += count
    b[1] = min(b[1], lo)
    b[2] = max(b[2], hi)
    b[3] += total


def compacted_days(
    db: sqlite3.Connection, gateway: str, sensor: str, first: int, last: int
) -> set[int]:
    return {
        day
        for (day,) in db.execute(
            "SELECT day_ms FROM chunks WHERE gateway = ? AND sensor = ? AND day_ms > ? "
            "AND day_ms < ?",
            (gateway, sensor, first - DAY_MS, last),
        )
    }


def hour_rollups(db: sqlite3.Connection, gateway: str, sensor: str, hours: set[int]) -> list[Hour]:
    """Hourly roll-ups (hour, n, lo, hi, total, bad) of hours in compacted days, from
    their chunks and the rows that came later (a late reading dropped the hour's row)."""
    out = []
    days = sorted({h - h % DAY_MS for h in hours})
    for day in days:
        (chunk,) = chunks(db, gateway, sensor, day, day + 1)
        if chunk[1] is None:
            hot = hot_rows(db, gateway, sensor, day, day + DAY_MS)
            minutes = sorted(day_minutes(gateway, sensor, chunk) + minutes_of(hot))
        else:
            minutes = minutes_of(day_rows(db, gateway, sensor, chunk))
        out += [h for h in hours_of(minutes, day) if h[0] in hours]
    return out


def combine(hot: list[Bucket], cold: list[Bucket]) -> list[Bucket]:
    return combined([*hot, *cold]) if cold else hot
