"""How the SQLite store inserts readings, inside the write transaction it holds.

A reading's identity is (gateway, sensor, ts_ms). A reading that a message repeats from
a copy of itself is dropped; a different reading at a stored sensor and time (a gateway
clock set back) is kept beside the first, numbered by ``dup``.

Finding out which rows collide used to cost a savepoint per message, whose statement
journal spills to disk and halves the insert rate. Instead this module reads the
series catalogue (``sensors``: each sensor's last stored time) once per gateway and
transaction; the transaction holds the write lock and updates the catalogue itself,
so while it is open the catalogue is exact. A message that is not a copy and whose
readings are each later than the one before of their sensor (the catalogue's last
time, then the message's own) cannot collide: it goes in as one plain multi-row
insert. Any other message (a backlog behind live data, a clock set back) goes in as
one multi-row insert that returns the rows it took, and the rest are kept beside; of
a copy, what is not taken is counted as duplicates. Should the fast path ever find a
collision after all (a catalogue behind its readings, from a hand-made or damaged
file), :class:`CatalogueBehind` makes the store roll the transaction back and write
the batch again the careful way.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from typing import Final

from coldchain.wire import ReadingsBatch

_COLUMNS: Final = (
    "gateway, sensor, ts_ms, site, quantity, value, q, fault, lat_deg, lon_deg, "
    "speed_kmh, received_ms, course_deg, sats, hdop"
)
_ONE_ROW: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: the same, numbered after the readings already stored at that sensor and time
_INSERT_BESIDE: Final = (
    f"INSERT INTO readings ({_COLUMNS}, dup) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(MAX(dup), -1) + 1 "
    "FROM readings "
    "WHERE gateway = ? AND sensor = ? AND ts_ms = ?"
)
#: rows per multi-row insert: 15 parameters each, well under SQLite's 32,766
_ROWS_PER_STATEMENT: Final = 500

Row = tuple[object, ...]


class CatalogueBehind(Exception):
    """A reading collided that the catalogue said could not: write the batch again
    without the fast path."""


class ReadingsWriter:
    """Writes the readings of one transaction, then the catalogue (:meth:`finish`)."""

    def __init__(self, db: sqlite3.Connection, *, careful: bool = False) -> None:
        self._db = db
        self._careful = careful
        #: gateway → sensor → last ts_ms stored, as loaded and as now in this transaction
        self._loaded: dict[str, dict[str, int]] = {}
        self._last: dict[str, dict[str, int]] = {}
        #: (gateway, sensor) → [site, quantity, first ts_ms] of a sensor new to the
        #: catalogue, or given a reading older than its last (its first may move back)
        self._firsts: dict[tuple[str, str], list[object]] = {}

    def add(self, msg: ReadingsBatch, received_ms: int, copy: bool) -> int:
        """Insert a message's readings; returns how many were new."""
        gateway, site = msg.gateway, msg.site
        last = self._last_of(gateway)
        # StrEnum members bind as their text; a boolean as 0/1, stored REAL by the
        # column's affinity
        rows: list[Row] = [
            (
                gateway,
                r.sensor,
                r.ts_ms,
                site,
                *r.measure(),
                r.q,
                r.fault,
                r.lat_deg,
                r.lon_deg,
                r.speed_kmh,
                received_ms,
                r.course_deg,
                r.sats,
                r.hdop,
            )
            for r in msg.readings
        ]
        # one pass: move each sensor's last time on, and see whether every reading is
        # later than the one before it of its sensor (then none can collide)
        later = True
        for row in rows:
            sensor, ts = row[1], row[2]
            assert isinstance(sensor, str) and isinstance(ts, int)
            prev = last.get(sensor)
            if prev is not None and ts > prev:
                last[sensor] = ts
                continue
            if prev is None:
                last[sensor] = ts
            else:
                later = False
            first = self._firsts.setdefault((gateway, sensor), [site, row[4], ts])
            if ts < first[2]:  # type: ignore[operator]
                first[2] = ts
        if copy:
            added = self._insert(rows)
        elif later and not self._careful:
            added = self._insert(rows)
            if added != len(rows):
                raise CatalogueBehind(f"gateway {gateway}: {len(rows) - added} collisions")
        else:
            added = self._insert_colliding(rows)
        return added

    def finish(self) -> None:
        """Move each sensor's span in the catalogue, once per transaction."""
        moved = [
            (ts, gateway, sensor)
            for gateway, last in self._last.items()
            for sensor, ts in last.items()
            if (gateway, sensor) not in self._firsts and self._loaded[gateway].get(sensor) != ts
        ]
        self._db.executemany(
            "UPDATE sensors SET last_ts_ms = max(last_ts_ms, ?) WHERE gateway = ? AND sensor = ?",
            moved,
        )
        self._db.executemany(
            "INSERT INTO sensors (gateway, sensor, site, quantity, first_ts_ms, last_ts_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, sensor) DO UPDATE SET "
            "first_ts_ms = min(first_ts_ms, excluded.first_ts_ms), "
            "last_ts_ms = max(last_ts_ms, excluded.last_ts_ms)",
            [(g, s, *first, self._last[g][s]) for (g, s), first in self._firsts.items()],
        )

    def _last_of(self, gateway: str) -> dict[str, int]:
        last = self._last.get(gateway)
        if last is None:
            loaded = self._loaded[gateway] = {
                sensor: int(ts)
                for sensor, ts in self._db.execute(
                    "SELECT sensor, last_ts_ms FROM sensors WHERE gateway = ?", (gateway,)
                )
            }
            last = self._last[gateway] = dict(loaded)
        return last

    def _insert(self, rows: list[Row]) -> int:
        """Insert-or-ignore in multi-row statements (a fifth faster than executemany);
        returns how many went in."""
        added = 0
        for chunk in _chunks(rows):
            added += self._db.execute(_insert_sql(len(chunk)), _flat(chunk)).rowcount
        return added

    def _insert_colliding(self, rows: list[Row]) -> int:
        """Rows of a message never seen before, some of which may share a sensor and
        time with stored readings or with each other: those are kept beside."""
        taken: Counter[tuple[object, object]] = Counter()
        for chunk in _chunks(rows):
            sql = _insert_sql(len(chunk)) + " RETURNING sensor, ts_ms"
            taken.update((s, t) for s, t in self._db.execute(sql, _flat(chunk)))
        for row in rows:  # in order: of repeats within the message, the first went in
            key = (row[1], row[2])
            if taken[key]:
                taken[key] -= 1
            else:
                self._db.execute(_INSERT_BESIDE, (*row, row[0], row[1], row[2]))
        return len(rows)


def _chunks(rows: list[Row]) -> list[list[Row]]:
    return [rows[i : i + _ROWS_PER_STATEMENT] for i in range(0, len(rows), _ROWS_PER_STATEMENT)]


def _flat(rows: list[Row]) -> list[object]:
    return [value for row in rows for value in row]


@functools.lru_cache(maxsize=64)
def _insert_sql(n: int) -> str:
    return f"INSERT OR IGNORE INTO readings ({_COLUMNS}) VALUES " + ", ".join([_ONE_ROW] * n)
