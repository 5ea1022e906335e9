"""The SQLite store's hourly roll-ups for long chart ranges (issue 18): whole-hour
buckets from the roll-ups equal the same buckets computed from every reading, the
roll-up of an hour is made once, a late reading in a settled hour drops its roll-up and
the next query sees the reading, and unsettled hours always come from the readings.
A real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

from coldchain import wire
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector import rollups
from collector.buckets import HOUR_MS
from collector.sqlite_store import SqliteStore
from collector.store import Incoming

MIN = 60_000
DAY = 24 * HOUR_MS


def write(store: SqliteStore, readings: list[Reading], seq: int) -> None:
    for n in range(0, len(readings), 5000):
        chunk = readings[n : n + 5000]
        batch = ReadingsBatch(
            v=wire.SCHEMA_VERSION, gateway="gw", site="s", epoch=1, seq=seq + n, readings=chunk
        )
        store.write([Incoming(batch, chunk[-1].ts_ms)], [])


def test_whole_hour_buckets_from_the_roll_ups_equal_those_from_every_reading(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "r.sqlite")
    now = time.time_ns() // 1_000_000
    start = now - 10 * DAY
    readings = [
        Reading(sensor="a.t", ts_ms=t, q=Quality.OK, temp_c=round(-19 + (t // MIN % 17) / 10, 1))
        for t in range(start, now, MIN)
        if not (start + 3 * DAY <= t < start + 3 * DAY + 5 * HOUR_MS)  # five hours silent
    ]
    readings[4000] = Reading(
        sensor="a.t", ts_ms=readings[4000].ts_ms, q=Quality.FAULT, fault="sentinel",
        quantity=wire.Quantity.TEMP_C,
    )  # fmt: skip
    write(store, readings, 1)
    origin = start - start % (2 * HOUR_MS)
    for width in (HOUR_MS, 2 * HOUR_MS, DAY):
        origin = start - start % width
        rolled = store.buckets("gw", "a.t", start + 17, now, width, origin_ms=origin)
        every = rollups.grouped(store._db, "gw", "a.t", start + 17, now, width, origin)
        shown = [b for b in rolled if b.n or b.faults]  # an empty hour is a gap either way
        assert [(b.start_ms, b.n, b.min, b.max, b.faults) for b in shown] == [
            (b.start_ms, b.n, b.min, b.max, b.faults) for b in every
        ]
        assert all(
            abs((a.mean or 0) - (b.mean or 0)) < 1e-9 for a, b in zip(shown, every, strict=True)
        )
    made = store._db.execute("SELECT COUNT(*), SUM(n = 0) FROM rollup_1h").fetchone()
    assert made[0] >= 10 * 24 - 4 and made[1] >= 4  # settled hours, the silent ones too
    store.close()


def test_a_late_reading_in_a_settled_hour_drops_its_roll_up(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite")
    now = time.time_ns() // 1_000_000
    start = now - now % HOUR_MS - 2 * DAY
    write(store, [Reading(sensor="a.t", ts_ms=t, q=Quality.OK, temp_c=-19.0)
                  for t in range(start, now, MIN)], 1)  # fmt: skip
    before = store.buckets("gw", "a.t", start, now, DAY, origin_ms=start)
    assert before[0].max == -19.0
    late = start + 5 * HOUR_MS + 30_001  # a backlog: a door opened a day and a half ago
    write(store, [Reading(sensor="a.t", ts_ms=late, q=Quality.OK, temp_c=4.0)], 90_000)
    after = store.buckets("gw", "a.t", start, now, DAY, origin_ms=start)
    assert after[0].max == 4.0 and after[0].n == before[0].n + 1
    # a reading of the hour under way never touches a roll-up (there is none to touch)
    write(store, [Reading(sensor="a.t", ts_ms=now + 1, q=Quality.OK, temp_c=9.0)], 90_001)
    assert store.buckets("gw", "a.t", start, now + 2, DAY, origin_ms=start)[-1].max == 9.0
    store.close()
