"""The compact SQLite store (issue 18, docs/design-history.md): the chunk codec gives every
row back as it was; compaction and retention keep every reading, count and bucket; a late
reading, a damaged chunk and a busy store; and a real collector compacting while a real
Mosquitto brings it readings, counted by sequence number end to end."""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from coldchain import wire
from coldchain.health import Health
from coldchain.settings import ConfigError
from coldchain.wire import Quality, Reading, ReadingsBatch, Stream
from collector.buckets import HOUR_MS, MINUTE_MS
from collector.chunks import DamagedChunk, Row, decode, encode
from collector.config import SqliteStoreConfig, load_collector_config
from collector.maintenance import Maintenance
from collector.sqlite_store import SqliteStore
from collector.store import Incoming
from ops.cli import main as cli
from tests.harness import Broker, CollectorProcess, wait_for
from tests.scenario import collector_config

DAY = 86_400_000
#: three whole days that ended well before now (settled), and the day after them
START = (time.time_ns() // 1_000_000 // DAY - 5) * DAY
GW, SITE = "store-gw", "county-store"


def row(ts: int, value: float | None = -18.5, **kw: object) -> Row:
    fields: dict[str, object] = dict(
        ts_ms=ts, dup=0, site=SITE, quantity="temp_c", value=value,
        q="ok" if value is not None else "fault", fault=None if value is not None else "open",
        lat_deg=None, lon_deg=None, speed_kmh=None, received_ms=ts + 350,
    )  # fmt: skip
    fields.update(kw)
    return Row(**fields)  # type: ignore[arg-type]


def position(ts: int, i: int) -> Row:
    fix = i % 5 != 0  # a position without its fix quality now and then
    return row(ts, None, quantity="position", q="ok", fault=None, lat_deg=36.617 + i / 3e5,
               lon_deg=101.7789 + i / 7e5, speed_kmh=i / 3, course_deg=(i * 7.3) % 360,
               sats=4 + i % 9 if fix else None, hdop=0.8 + i / 10 if fix else None)  # fmt: skip


STEADY = [row(START + i * MINUTE_MS, round(-18 + (i % 7) / 10, 1)) for i in range(1440)]
CASES = {
    "a steady beat at 0.1 °C": STEADY,
    "times jittered by the millisecond": [
        row(START + i * MINUTE_MS + (i * 7919) % 211, -18.25 + (i % 5) / 100) for i in range(500)
    ],
    "faults without a value, named": [
        row(START + i * 5000, None if i % 3 == 0 else 4.5, fault="open" if i % 3 == 0 else None)
        for i in range(100)
    ],
    "a door's states": [
        row(START + i * 1000, float(i % 2), quantity="door_open") for i in range(50)
    ],
    "positions as floats, with speeds": [position(START + i * 1000, i) for i in range(60)],
    "values no decimals give back": [row(START + i, 1 / 3 + i) for i in range(10)],
    "a -0.0, a huge value, a NaN": [
        row(START, -0.0),
        row(START + 1, 1e300),
        row(START + 2, math.nan),
        row(START + 3, 5.0),
    ],
    "readings kept beside at one time, of two sites": [
        row(START, 1.0),
        row(START, 2.0, dup=1),
        row(START, 3.0, dup=2, site="other-site"),
    ],
    "arrived as a backlog hours later": [
        row(START + i * MINUTE_MS, 2.5, received_ms=START + DAY) for i in range(300)
    ],
    "one reading": [row(START, 4.0, q="clock_suspect")],
}


@pytest.mark.parametrize("rows", CASES.values(), ids=CASES.keys())
def test_a_chunk_gives_back_every_row_as_it_was(rows: list[Row]) -> None:
    assert repr(decode(encode(rows))) == repr(rows)  # repr: a NaN and a -0.0 compared too


def test_a_steady_day_takes_under_two_bytes_a_reading() -> None:
    assert len(encode(STEADY)) < 2 * len(STEADY)


@pytest.mark.parametrize(
    "damage", [b"", b"not zlib", encode(STEADY)[:-9], encode(STEADY)[:40] + b"\0" * 8]
)
def test_a_damaged_chunk_is_refused_with_a_reason_never_misread(damage: bytes) -> None:
    with pytest.raises(DamagedChunk):
        decode(damage)


# ---------------------------------------------------------------------------- the store
def fill(store: SqliteStore, days: int = 3) -> int:
    """The messages of :func:`messages` written; returns how many readings."""
    found = messages(days)
    for msg in found:
        store.write([Incoming(msg, msg.readings[-1].ts_ms + 900)], [])
    return sum(len(msg.readings) for msg in found)


def messages(days: int) -> list[ReadingsBatch]:
    """Two sensors at one reading a minute (with faults), a door at each change, from
    START, in quarter-day messages, as a gateway's backlog would come."""
    out = []
    for part in range(days * 4):
        t0 = START + part * DAY // 4
        readings = []
        for i, t in enumerate(range(t0, t0 + DAY // 4, MINUTE_MS)):
            readings.append(Reading(sensor="cr1.air", ts_ms=t + i % 13, q=Quality.OK,
                                    temp_c=round(-18 + (t // MINUTE_MS % 23) / 10, 1)))  # fmt: skip
            if i % 97 == 0:
                fault = Reading(sensor="cr1.probe", ts_ms=t, q=Quality.FAULT, fault="open_circuit",
                                quantity=wire.Quantity.TEMP_C)  # fmt: skip
                readings.append(fault)
            else:
                readings.append(Reading(sensor="cr1.probe", ts_ms=t, q=Quality.OK,
                                        temp_c=-17.5 + (i % 40) / 20))  # fmt: skip
            if i % 45 == 0:
                readings.append(Reading(sensor="cr1.door", ts_ms=t + 30_000, q=Quality.OK,
                                        door_open=i % 90 == 0))  # fmt: skip
        out.append(batch(readings, part + 1))
    return out


def batch(readings: list[Reading], seq: int) -> ReadingsBatch:
    return ReadingsBatch(
        v=wire.SCHEMA_VERSION, gateway=GW, site=SITE, epoch=1, seq=seq, readings=readings
    )


def picture(store: SqliteStore, end: int) -> dict[str, object]:
    """Everything the store says of the range: readings of the site in order, counts,
    buckets of one width grouped and of whole hours (made again from scratch)."""
    store._db.execute("DELETE FROM rollup_1h")
    out: dict[str, object] = {
        "readings": list(store.readings(start_ms=START, end_ms=end, site=SITE)),
        "count": store.count_readings(),
    }
    for sensor in ("cr1.air", "cr1.probe", "cr1.door"):
        out[f"count {sensor}"] = store.count(GW, sensor, START + 7 * HOUR_MS, end - 5 * HOUR_MS)
        out[f"5 min {sensor}"] = store.buckets(GW, sensor, START + 999, end, 5 * MINUTE_MS, START)
        out[f"2 h {sensor}"] = store.buckets(GW, sensor, START, end, 2 * HOUR_MS)
    return out


def compact_all(store: SqliteStore) -> list[tuple[str, str, int]]:
    done = []
    for unit in list(store.compaction_plan(START + 3 * DAY)):
        store.compact_day(*unit)
        done.append(unit)
    return done


def test_compaction_keeps_every_reading_count_and_bucket(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "readings.sqlite")
    written = fill(store, days=4)  # the fourth day is not settled at START + 3 days
    end = START + 4 * DAY
    before = picture(store, end)
    assert before["count"] == written
    days = compact_all(store)
    assert len(days) == 3 * 3  # three sensors, three days
    assert store._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] < written / 3
    after = picture(store, end)
    assert after == before
    assert compact_all(store) == []  # nothing left to do


def test_a_late_reading_for_a_compacted_day_is_merged_a_copy_once_a_different_one_beside(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "readings.sqlite")
    fill(store, days=3)
    compact_all(store)
    at = START + MINUTE_MS  # the probe's first reading with a value
    (stored,) = [r for r in store.readings(start_ms=at, end_ms=at + 1, sensor="cr1.probe")]
    late_ts = START + DAY + 30 * MINUTE_MS + 1  # a time no reading had
    # a new message (seq 99): a copy of a stored reading, a different one at its time,
    # and one at a new time; the hour's roll-up goes, made again with all of them
    store.buckets(GW, "cr1.probe", START, START + 3 * DAY, 2 * HOUR_MS)
    late = [
        Reading(sensor="cr1.probe", ts_ms=at, q=Quality.OK, temp_c=stored.value),
        Reading(sensor="cr1.probe", ts_ms=at, q=Quality.OK, temp_c=30.0),
        Reading(sensor="cr1.probe", ts_ms=late_ts, q=Quality.OK, temp_c=31.0),
    ]
    store.write([Incoming(batch(late, 99), START + 3 * DAY)], [])

    def seen() -> list[tuple[int, object]]:
        return [
            (r.ts_ms, r.value)
            for r in store.readings(start_ms=START, end_ms=START + 3 * DAY, sensor="cr1.probe")
            if r.ts_ms in (at, late_ts)
        ]

    assert seen() == [(at, stored.value), (at, 30.0), (late_ts, 31.0)]
    (hour,) = [
        b
        for b in store.buckets(GW, "cr1.probe", START, START + 3 * DAY, 2 * HOUR_MS)
        if b.start_ms == START + DAY
    ]
    assert hour.max == 31.0  # the late reading is in its hour's roll-up
    (first,) = [
        b for b in store.buckets(GW, "cr1.probe", START, START + DAY, 2 * HOUR_MS)
        if b.start_ms == START
    ]  # fmt: skip
    assert first.max == 30.0
    moved = [store.compact_day(GW, "cr1.probe", d) for d in (START, START + DAY)]
    assert [(m.readings, m.copies) for m in moved] == [(2, 1), (1, 0)]
    assert seen() == [(at, stored.value), (at, 30.0), (late_ts, 31.0)]


def test_a_damaged_chunk_is_kept_and_named_and_its_days_late_readings_stay(
    tmp_path: Path,
) -> None:
    path = tmp_path / "readings.sqlite"
    store = SqliteStore(path)
    fill(store, days=3)
    compact_all(store)
    store._db.execute(
        "UPDATE chunks SET raw = x'00ff' WHERE sensor = 'cr1.air' AND day_ms = ?", (START + DAY,)
    )
    late = [Reading(sensor="cr1.air", ts_ms=START + DAY + 5, q=Quality.OK, temp_c=1.0)]
    store.write([Incoming(batch(late, 99), START + 3 * DAY)], [])
    upkeep = Maintenance(store, SqliteStoreConfig(kind="sqlite", path=path), Health("t"))
    upkeep._next = 0.0
    upkeep.run()
    assert upkeep.counters.compaction_failures == 1
    assert upkeep.health.has("compaction")
    assert store._db.execute("SELECT raw FROM chunks WHERE sensor = 'cr1.air' AND day_ms = ?",
                             (START + DAY,)).fetchone()[0] == b"\x00\xff"  # fmt: skip
    (kept,) = store._db.execute(
        "SELECT value FROM readings WHERE sensor = 'cr1.air' AND ts_ms = ?", (START + DAY + 5,)
    ).fetchone()
    assert kept == 1.0  # the late reading stays where it landed
    with pytest.raises(DamagedChunk, match=f"store-gw/cr1.air, the day of {START + DAY}"):
        list(store.readings(start_ms=START, end_ms=START + 3 * DAY, sensor="cr1.air"))
    store.close()
    found = CliRunner().invoke(cli, ["store", "check", "--db", str(path)])
    assert found.exit_code == 1
    assert f"damaged: store-gw/cr1.air day {START + DAY}" in found.output
    assert "9 chunks, 1 damaged" in found.output


def test_retention_keeps_the_roll_ups_past_keep_raw_days_and_drops_days_past_the_next(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "readings.sqlite")
    written = fill(store, days=3)
    end = START + 3 * DAY
    compact_all(store)
    width = 30 * MINUTE_MS
    before = {s: store.buckets(GW, s, START, end, width) for s in ("cr1.air", "cr1.probe")}
    pruned = store.prune(end + 10 * DAY, keep_raw_days=5, keep_rollups_days=20)
    assert (pruned.raw_days, pruned.days) == (9, 0)
    assert list(store.readings(start_ms=START, end_ms=end)) == []
    assert (
        store.count(GW, "cr1.air", START, end)
        + store.count(GW, "cr1.probe", START, end)
        + store.count(GW, "cr1.door", START, end)
        == written
    )  # as the roll-ups counted them
    for sensor, buckets in before.items():
        rolled = store.buckets(GW, sensor, START, end, width)
        assert [(b.start_ms, b.n, b.min, b.max, b.faults) for b in rolled] == [
            (b.start_ms, b.n, b.min, b.max, b.faults) for b in buckets
        ]
        assert all(abs(a.mean - b.mean) < 1e-9 for a, b in zip(rolled, buckets, strict=True) if a.n)
    store._db.execute("DELETE FROM rollup_1h")
    assert [b.max for b in store.buckets(GW, "cr1.air", START, end, 2 * HOUR_MS)] == [
        b.max for b in picture_2h(before["cr1.air"])
    ]
    pruned = store.prune(end + 30 * DAY, keep_raw_days=5, keep_rollups_days=20)
    assert pruned.days == 9
    assert store.buckets(GW, "cr1.air", START, end, width) == []


def picture_2h(buckets: list[object]) -> list[object]:
    from collector.buckets import Bucket, combined

    parts = [
        Bucket(b.start_ms - (b.start_ms - START) % (2 * HOUR_MS), b.n, b.min, b.mean, b.max,
               b.faults)  # type: ignore[attr-defined]
        for b in buckets
    ]  # fmt: skip
    return combined(parts)  # type: ignore[arg-type]


def test_a_busy_store_puts_compaction_off_and_says_so_then_it_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "readings.sqlite"
    store = SqliteStore(path, busy_timeout_ms=100)
    written = fill(store, days=3)
    upkeep = Maintenance(store, SqliteStoreConfig(kind="sqlite", path=path), Health("t"))
    upkeep._next = 0.0
    other = sqlite3.connect(path, timeout=1)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the file
    assert upkeep.step() is False
    assert upkeep.health.has("compaction")
    assert store.count_readings() == written
    other.rollback()
    other.close()
    upkeep._next = 0.0
    upkeep.run()
    assert not upkeep.health.has("compaction")
    assert upkeep.counters.days_compacted == 9
    assert store.count_readings() == written


def test_keep_rollups_days_below_keep_raw_days_is_refused_naming_the_file_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "collector.toml"
    path.write_text('[store]\nkind = "sqlite"\nkeep_raw_days = 400\nkeep_rollups_days = 30\n')
    with pytest.raises(ConfigError) as found:
        load_collector_config(path)
    text = str(found.value)
    assert str(path) in text and "store" in text and "keep_rollups_days (30)" in text


# ---------------------------------------------------------------------------- end to end
def test_a_collector_compacts_while_readings_come_and_every_seq_is_stored_once(
    tmp_path: Path, running_broker: Broker
) -> None:
    """Three settled days arrive as a backlog, the collector compacts them between
    batches (every second here), and more come meanwhile: late ones for the compacted
    days (one a copy) and live ones. Every seq is stored, every reading once."""
    store_path = tmp_path / "readings.sqlite"
    config = collector_config(
        tmp_path / "collector.toml", running_broker, store_path, "collector-c", "", SITE,
        extra_store=f'kind = "sqlite"\npath = "{store_path}"\ncompact_every_s = 1',
    )  # fmt: skip
    collector = CollectorProcess(config, tmp_path / "collector.log")
    collector.start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="compaction-test")
    client.connect("127.0.0.1", running_broker.port)
    client.loop_start()
    try:
        published = messages(days=3)
        expected = sum(len(msg.readings) for msg in published)
        time.sleep(1)  # the collector's session is there (clean_start=False)
        topic = wire.topic(SITE, GW, Stream.READINGS)
        for msg in published:
            client.publish(topic, wire.encode(msg), qos=1).wait_for_publish(10)

        def chunks() -> int:
            if not store_path.exists():
                return 0
            db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
            try:
                found = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'chunks'")
                if not found.fetchone()[0]:
                    return 0
                return int(db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
            finally:
                db.close()

        wait_for(lambda: chunks() >= 6, 60, "compacted days")
        seq = len(published) + 1
        copy = published[0].readings[0]
        late = [copy, Reading(sensor="cr1.air", ts_ms=START + DAY + 1, q=Quality.OK, temp_c=2.0)]
        now = time.time_ns() // 1_000_000
        live = [
            Reading(sensor="cr1.air", ts_ms=now - i, q=Quality.OK, temp_c=-18.0) for i in range(5)
        ]
        for readings in (late, live):
            client.publish(topic, wire.encode(batch(readings, seq)), qos=1).wait_for_publish(10)
            seq += 1
        expected += 1 + len(live)  # the copy is one reading already stored

        def stored() -> int:
            s = SqliteStore(store_path)
            try:
                return s.count_readings()
            finally:
                s.close()

        wait_for(lambda: chunks() == 9 and stored() == expected, 60, "every reading stored")
    finally:
        client.loop_stop()
        client.disconnect()
        collector.stop()
    store = SqliteStore(store_path)
    identities = [(r.sensor, r.ts_ms) for r in store.readings(start_ms=0, end_ms=2**62)]
    assert len(identities) == len(set(identities)) == expected
    (upto,) = store._db.execute(
        "SELECT MAX(upto) FROM seq_watermark WHERE gateway = ? AND stream = 'readings'", (GW,)
    ).fetchone()
    assert upto == seq - 1
    assert store._db.execute("SELECT COUNT(*) FROM seq_seen").fetchone()[0] == 0  # no gap
    log = (tmp_path / "collector.log").read_text()
    assert "Traceback" not in log


def test_a_scan_under_way_while_another_process_compacts_gives_every_reading_once(
    tmp_path: Path,
) -> None:
    """A report reads three days while the collector (another connection) compacts them
    between two of its steps: each day is read in one snapshot, so none goes missing and
    none comes twice."""
    path = tmp_path / "readings.sqlite"
    reader, compactor = SqliteStore(path), SqliteStore(path)
    fill(compactor, days=3)
    expected = [
        (r.sensor, r.ts_ms) for r in reader.readings(start_ms=START, end_ms=START + 3 * DAY)
    ]
    scan = reader.readings(start_ms=START, end_ms=START + 3 * DAY, site=SITE)
    seen = [next(scan) for _ in range(10)]  # under way in the first day
    compact_all(compactor)
    seen += list(scan)
    assert sorted((r.sensor, r.ts_ms) for r in seen) == sorted(expected)
    assert len(seen) == len(expected)


def test_a_truck_s_positions_keep_course_and_fix_quality_as_rows_and_compacted(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "readings.sqlite")
    fixes = [
        Reading(sensor="gps.pos", ts_ms=START + i * 10_000, q=Quality.OK,
                lat_deg=36.6 + i / 1e4, lon_deg=101.7 + i / 1e4, speed_kmh=52.5,
                course_deg=181.3, sats=None if i == 3 else 9, hdop=None if i == 3 else 0.9)
        for i in range(20)
    ]  # fmt: skip
    store.write([Incoming(batch(fixes, 1), START + DAY)], [])

    def kept() -> list[tuple[object, ...]]:
        return [
            (r.ts_ms, r.lat_deg, r.lon_deg, r.speed_kmh, r.course_deg, r.sats, r.hdop)
            for r in store.readings(start_ms=START, end_ms=START + DAY, sensor="gps.pos")
        ]

    sent = [
        (f.ts_ms, f.lat_deg, f.lon_deg, f.speed_kmh, f.course_deg, f.sats, f.hdop) for f in fixes
    ]
    assert kept() == sent
    compact_all(store)
    assert store._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == 0
    assert kept() == sent


def test_a_chunk_that_would_not_give_its_rows_back_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coding fault (here: a chunk that loses its last reading) is caught before the
    rows go: the transaction is rolled back, every reading stays in ``readings``."""
    import collector.compaction as compaction

    store = SqliteStore(tmp_path / "readings.sqlite")
    written = fill(store, days=2)
    monkeypatch.setattr(compaction, "encode", lambda rows: encode(rows[:-1]))
    (unit, *_rest) = list(store.compaction_plan(START + 2 * DAY))
    with pytest.raises(DamagedChunk, match="does not decode to its rows"):
        store.compact_day(*unit)
    assert store._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0
    assert store._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == written
    assert not store._db.in_transaction


def test_a_full_disk_puts_compaction_off_loses_nothing_and_it_goes_on_once_freed(
    tmp_path: Path,
) -> None:
    """Compaction on a disk filled to the last block: put off with backoff, health says
    so, every reading still there; with room again, the pass completes."""
    from tests.harness import fill as fill_disk
    from tests.harness import tmpfs

    with tmpfs(tmp_path / "disk", "4m") as disk:
        path = disk / "readings.sqlite"
        store = SqliteStore(path)
        written = fill(store, days=3)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        upkeep = Maintenance(store, SqliteStoreConfig(kind="sqlite", path=path), Health("t"))
        upkeep._next = 0.0
        ballast = fill_disk(disk)
        assert upkeep.step() is False
        assert upkeep.health.has("compaction")
        assert upkeep.counters.days_compacted < 9
        assert store.count_readings() == written
        ballast.unlink()
        upkeep._next = 0.0
        upkeep.run()
        assert not upkeep.health.has("compaction")
        assert store._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 9
        assert store.count_readings() == written
        store.close()
