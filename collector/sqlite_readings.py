"""How the SQLite store inserts readings, inside the write transaction it holds.

A reading's identity is (gateway, sensor, ts_ms). A reading that a message repeats from
a copy of itself is dropped; a different reading at a stored sensor and time (a gateway
clock set back) is kept beside the first, numbered by ``dup``.

Finding out which rows collide used to cost a savepoint per message, whose statement
journal spills to disk and halves the insert rate. Instead this module reads the
series catalogue (``sensors``: each sensor's last stored time) once per gateway and
transaction; the transaction holds the write lock and updates the catalogue itself,
so while it is open the catalogue is exact. A message that is not a copy, whose
readings are all later than their sensor's last time and that names no (sensor, time)
twice, cannot collide and goes in with one plain ``executemany``. Any other message (a
backlog behind live data, a clock set back, a copy) goes in as one multi-row insert
that returns the rows it took; the rest are kept beside or counted as duplicates.
Should the fast path ever find a collision after all (a catalogue behind its readings,
from a hand-made or damaged file), :class:`CatalogueBehind` makes the store roll the
transaction back and write the batch again the careful way.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Final

from coldchain.wire import ReadingsBatch

_COLUMNS: Final = (
    "gateway, sensor, ts_ms, site, quantity, value, q, fault, lat_deg, lon_deg, "
    "speed_kmh, received_ms"
)
_ONE_ROW: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_READING: Final = f"INSERT OR IGNORE INTO readings ({_COLUMNS}) VALUES {_ONE_ROW}"
#: the same, numbered after the readings already stored at that sensor and time
_INSERT_BESIDE: Final = (
    f"INSERT INTO readings ({_COLUMNS}, dup) "
    "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(MAX(dup), -1) + 1 FROM readings "
    "WHERE gateway = ? AND sensor = ? AND ts_ms = ?"
)
#: rows per multi-row insert: 12 parameters each, well under SQLite's 32,766
_ROWS_PER_STATEMENT: Final = 500
_BEFORE_ALL: Final = -(2**63)

Row = tuple[object, ...]
#: a sensor's span in the catalogue: site, quantity, first and last ts_ms
Span = list[object]


class CatalogueBehind(Exception):
    """A reading collided that the catalogue said could not: write the batch again
    without the fast path."""


class ReadingsWriter:
    """Writes the readings of one transaction, then the catalogue (:meth:`finish`)."""

    def __init__(self, db: sqlite3.Connection, *, careful: bool = False) -> None:
        self._db = db
        self._careful = careful
        #: gateway → sensor → last ts_ms stored, catalogue and this transaction
        self._last: dict[str, dict[str, int]] = {}
        #: (gateway, sensor) → span written by this transaction
        self._spans: dict[tuple[str, str], Span] = {}

    def add(self, msg: ReadingsBatch, received_ms: int, copy: bool) -> int:
        """Insert a message's readings; returns how many were new."""
        gateway, site = msg.gateway, msg.site
        last = self._last_of(gateway)
        rows: list[Row] = []
        later = True
        for r in msg.readings:
            quantity, value = r.measure()
            # StrEnum members bind as their text; a boolean as 0/1, stored REAL by the
            # column's affinity, as before
            rows.append(
                (
                    gateway,
                    r.sensor,
                    r.ts_ms,
                    site,
                    quantity,
                    value,
                    r.q,
                    r.fault,
                    r.lat_deg,
                    r.lon_deg,
                    r.speed_kmh,
                    received_ms,
                )
            )
            if later and r.ts_ms <= last.get(r.sensor, _BEFORE_ALL):
                later = False
        if copy:
            added = int(self._db.executemany(INSERT_READING, rows).rowcount)
        elif later and not self._careful and _distinct(rows):
            added = int(self._db.executemany(INSERT_READING, rows).rowcount)
            if added != len(rows):
                raise CatalogueBehind(f"gateway {gateway}: {len(rows) - added} collisions")
        else:
            added = self._insert_colliding(rows)
        self._extend(gateway, site, rows, last)
        return added

    def finish(self) -> None:
        """Extend each sensor's span in the catalogue, once per transaction."""
        self._db.executemany(
            "INSERT INTO sensors (gateway, sensor, site, quantity, first_ts_ms, last_ts_ms) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, sensor) DO UPDATE SET "
            "first_ts_ms = min(first_ts_ms, excluded.first_ts_ms), "
            "last_ts_ms = max(last_ts_ms, excluded.last_ts_ms)",
            [(g, s, *span) for (g, s), span in self._spans.items()],
        )

    def _last_of(self, gateway: str) -> dict[str, int]:
        last = self._last.get(gateway)
        if last is None:
            last = self._last[gateway] = {
                sensor: int(ts)
                for sensor, ts in self._db.execute(
                    "SELECT sensor, last_ts_ms FROM sensors WHERE gateway = ?", (gateway,)
                )
            }
        return last

    def _extend(self, gateway: str, site: str, rows: list[Row], last: dict[str, int]) -> None:
        spans = self._spans
        for row in rows:
            sensor, ts = row[1], row[2]
            assert isinstance(sensor, str) and isinstance(ts, int)
            span = spans.get((gateway, sensor))
            if span is None:
                spans[(gateway, sensor)] = [site, row[4], ts, ts]
            else:
                if ts < span[2]:  # type: ignore[operator]
                    span[2] = ts
                if ts > span[3]:  # type: ignore[operator]
                    span[3] = ts
            if ts > last.get(sensor, _BEFORE_ALL):
                last[sensor] = ts

    def _insert_colliding(self, rows: list[Row]) -> int:
        """Rows of a message never seen before, some of which may share a sensor and
        time with stored readings or with each other: those are kept beside."""
        taken: Counter[tuple[object, object]] = Counter()
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            sql = (
                f"INSERT OR IGNORE INTO readings ({_COLUMNS}) VALUES "
                + ", ".join([_ONE_ROW] * len(chunk))
                + " RETURNING sensor, ts_ms"
            )
            taken.update(
                (s, t) for s, t in self._db.execute(sql, [v for row in chunk for v in row])
            )
        for row in rows:  # in order: of repeats within the message, the first went in
            key = (row[1], row[2])
            if taken[key]:
                taken[key] -= 1
            else:
                self._db.execute(_INSERT_BESIDE, (*row, row[0], row[1], row[2]))
        return len(rows)


def _distinct(rows: list[Row]) -> bool:
    return len({(row[1], row[2]) for row in rows}) == len(rows)
