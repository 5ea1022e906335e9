"""The SQLite store's compaction and retention (docs/design-history.md, "The compact
store"): settled days move from the ``readings`` table into ``chunks``, one row per
sensor and day (collector.chunks), with the day's 1-minute roll-ups beside and its hourly
ones in ``rollup_1h``; past ``keep_raw_days`` a chunk keeps only its roll-ups; past
``keep_rollups_days`` the day goes.

Each sensor-day moves in one write transaction: the chunk is decoded again and compared
with the rows before they are deleted, so a coding fault keeps the rows where they were.
A late reading for a compacted day lands in ``readings`` as any other; the next
compaction merges it into the day's chunk (a copy of a reading the chunk holds is dropped,
a different one at the same time kept beside, as the primary key would).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from collector.buckets import DAY_MS, HOUR_MS
from collector.chunks import (
    DamagedChunk,
    Minute,
    Row,
    decode,
    decode_minutes,
    encode,
    encode_minutes,
    minutes_of,
)

HOT_COLUMNS = (
    "ts_ms, dup, site, quantity, value, q, fault, lat_deg, lon_deg, speed_kmh, received_ms, "
    "course_deg, sats, hdop"
)


@dataclass(frozen=True, slots=True)
class Moved:
    """What one sensor-day's compaction did."""

    readings: int  # rows moved out of ``readings``
    copies: int  # of those, copies of a reading the chunk already held (dropped)


def hot_rows(db: sqlite3.Connection, gateway: str, sensor: str, start: int, end: int) -> list[Row]:
    return [
        Row(*r)
        for r in db.execute(
            f"SELECT {HOT_COLUMNS} FROM readings WHERE gateway = ? AND sensor = ? "
            "AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, dup",
            (gateway, sensor, start, end),
        )
    ]


def _content(r: Row) -> tuple[object, ...]:
    return r._replace(dup=0, received_ms=0)


def merged(old: Sequence[Row], new: Sequence[Row]) -> tuple[list[Row], int]:
    """A chunk's rows and later rows of its day, in (ts_ms, dup) order: a later row that
    repeats one of the chunk's at its time is a copy (dropped, counted); a different one
    is kept beside, numbered after the others at that time."""
    if not old:
        return list(new), 0
    if not new:
        return list(old), 0
    at: dict[int, list[Row]] = {}
    for r in old:
        at.setdefault(r.ts_ms, []).append(r)
    out, copies = list(old), 0
    for r in new:
        same = at.setdefault(r.ts_ms, [])
        if any(_content(o) == _content(r) for o in same):
            copies += 1
            continue
        r = r._replace(dup=max((o.dup for o in same), default=-1) + 1)
        same.append(r)
        out.append(r)
    out.sort(key=lambda r: (r.ts_ms, r.dup))
    return out, copies


#: an hourly roll-up's row: hour_ms, n, lo, hi, total, bad
Hour = tuple[int, int, float | None, float | None, float | None, int]


def hours_of(minutes: Sequence[Minute], day: int) -> list[Hour]:
    """A day's 24 hourly roll-ups (hour, n, lo, hi, total, bad) from its minutes."""
    hours: dict[int, list[float | int | None]] = {
        h: [0, None, None, None, 0] for h in range(day, day + DAY_MS, HOUR_MS)
    }
    for m in minutes:
        h = hours[m.minute_ms - m.minute_ms % HOUR_MS]
        h[4] += m.bad  # type: ignore[operator]
        if not m.n:
            continue
        h[0] += m.n  # type: ignore[operator]
        h[1] = m.lo if h[1] is None else min(h[1], m.lo)  # type: ignore[type-var]
        h[2] = m.hi if h[2] is None else max(h[2], m.hi)  # type: ignore[type-var]
        h[3] = m.total if h[3] is None else h[3] + m.total  # type: ignore[operator]
    return [(h, *v) for h, v in hours.items()]  # type: ignore[misc]


def plan(db: sqlite3.Connection, horizon_ms: int) -> Iterator[tuple[str, str, int]]:
    """The sensor-days with rows in ``readings`` that ended before ``horizon_ms``: a
    primary-key seek per day found, no scan of the table."""
    sensors = db.execute("SELECT gateway, sensor FROM sensors ORDER BY gateway, sensor").fetchall()
    for gateway, sensor in sensors:
        after = None
        while True:
            (ts,) = db.execute(
                "SELECT MIN(ts_ms) FROM readings WHERE gateway = ? AND sensor = ? "
                "AND ts_ms >= ? AND ts_ms < ?",
                (gateway, sensor, -(2**62) if after is None else after, horizon_ms),
            ).fetchone()
            if ts is None:
                break
            day = ts - ts % DAY_MS
            if day + DAY_MS > horizon_ms:
                break
            yield gateway, sensor, day
            after = day + DAY_MS


def compact_day(db: sqlite3.Connection, gateway: str, sensor: str, day: int) -> Moved:
    """Move a sensor-day's rows from ``readings`` into its chunk, in one transaction.
    DamagedChunk if its stored chunk does not decode (nothing changes)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        moved = _compact(db, gateway, sensor, day)
        db.execute("COMMIT")
        return moved
    except BaseException:
        rollback(db)
        raise


def _compact(db: sqlite3.Connection, gateway: str, sensor: str, day: int) -> Moved:
    new = hot_rows(db, gateway, sensor, day, day + DAY_MS)
    if not new:
        return Moved(0, 0)  # another collector compacted it meanwhile
    found = db.execute(
        "SELECT raw, minutes, n FROM chunks WHERE gateway = ? AND sensor = ? AND day_ms = ?",
        (gateway, sensor, day),
    ).fetchone()
    where = f"{gateway}/{sensor} {day}"
    if found is not None and found[0] is None:
        # past keep_raw_days already (a reading more than a year late): into the roll-ups
        rows, copies = new, 0
        minutes = _merge_minutes(_decoded_minutes(found[1], where), minutes_of(new))
        raw = None
        n = found[2] + len(rows)
    else:
        old = [] if found is None else _decoded(found[0], where)
        rows, copies = merged(old, new)
        raw = encode(rows)
        if repr(decode(raw)) != repr(rows):  # never delete what it would not give back
            raise DamagedChunk(f"{where}: the new chunk does not decode to its rows")
        minutes = minutes_of(rows)
        n = len(rows)
    first = min(r.ts_ms for r in rows)
    last = max(r.ts_ms for r in rows)
    db.execute(
        "INSERT INTO chunks (gateway, sensor, day_ms, n, first_ts, last_ts, raw, minutes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, sensor, day_ms) DO UPDATE SET "
        "n = excluded.n, first_ts = min(first_ts, excluded.first_ts), "
        "last_ts = max(last_ts, excluded.last_ts), raw = excluded.raw, "
        "minutes = excluded.minutes",
        (gateway, sensor, day, n, first, last, raw, encode_minutes(minutes)),
    )
    db.execute(
        "DELETE FROM readings WHERE gateway = ? AND sensor = ? AND ts_ms >= ? AND ts_ms < ?",
        (gateway, sensor, day, day + DAY_MS),
    )
    db.executemany(
        "INSERT OR REPLACE INTO rollup_1h (gateway, sensor, hour_ms, n, lo, hi, total, bad) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(gateway, sensor, *h) for h in hours_of(minutes, day)],
    )
    return Moved(len(new), copies)


def _decoded(blob: bytes, where: str) -> list[Row]:
    try:
        return decode(blob)
    except DamagedChunk as exc:
        raise DamagedChunk(f"{where}: {exc}") from None


def _decoded_minutes(blob: bytes, where: str) -> list[Minute]:
    try:
        return decode_minutes(blob)
    except DamagedChunk as exc:
        raise DamagedChunk(f"{where}: {exc}") from None


def _merge_minutes(a: Sequence[Minute], b: Sequence[Minute]) -> list[Minute]:
    out = {m.minute_ms: m for m in a}
    for m in b:
        o = out.get(m.minute_ms)
        if o is None:
            out[m.minute_ms] = m
            continue
        values = [v for v in (o.lo, o.hi, m.lo, m.hi) if v is not None]
        total = None if o.total is None and m.total is None else (o.total or 0.0) + (m.total or 0.0)
        out[m.minute_ms] = Minute(
            m.minute_ms, o.n + m.n, min(values, default=None), max(values, default=None),
            total, o.bad + m.bad,
        )  # fmt: skip
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True, slots=True)
class Pruned:
    raw_days: int  # chunks that kept only their roll-ups
    days: int  # sensor-days gone altogether


def prune(
    db: sqlite3.Connection, now_ms: int, keep_raw_days: int, keep_rollups_days: int
) -> Pruned:
    """Retention: readings older than ``keep_raw_days`` leave their chunks (the 1-minute
    and hourly roll-ups stay); days older than ``keep_rollups_days`` go."""
    raw_before = now_ms - keep_raw_days * DAY_MS
    days_before = now_ms - keep_rollups_days * DAY_MS
    db.execute("BEGIN IMMEDIATE")
    try:
        raw = db.execute(
            "UPDATE chunks SET raw = NULL WHERE day_ms + ? <= ? AND raw IS NOT NULL",
            (DAY_MS, raw_before),
        ).rowcount
        days = db.execute(
            "DELETE FROM chunks WHERE day_ms + ? <= ?", (DAY_MS, days_before)
        ).rowcount
        db.execute("DELETE FROM rollup_1h WHERE hour_ms + ? <= ?", (HOUR_MS, days_before))
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
    return Pruned(raw, days)


def rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
