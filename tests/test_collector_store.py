"""Validation and the SQLite store, on real SQLite files."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from coldchain import wire, wire_batch
from coldchain.wire import Quality, Quantity, Reading, ReadingsBatch
from collector.errors import Rejected, StoreUnavailable
from collector.influx_store import points_of
from collector.sqlite_schema import MIGRATIONS
from collector.sqlite_store import SqliteStore
from collector.store import Incoming, QuarantineItem
from collector.validate import Limits, validate

NOW = time.time_ns() // 1_000_000
TOPIC = "coldchain/v1/county-store/store-gw/readings"


def batch(seq: int, readings: list[Reading], gateway: str = "store-gw", epoch: int = 1) -> Incoming:
    return Incoming(
        ReadingsBatch(
            v=1, gateway=gateway, site="county-store", epoch=epoch, seq=seq, readings=readings
        ),
        NOW,
    )


def temp(ts: int, value: float = -18.0, sensor: str = "cr1-th.temp") -> Reading:
    return Reading(sensor=sensor, ts_ms=ts, q=Quality.OK, temp_c=value)


def test_schema_is_created_and_migrated_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    assert store.schema_version == 5
    store.close()
    again = SqliteStore(tmp_path / "s.sqlite")
    assert again.schema_version == 5

    def plan(sql: str) -> str:
        return " ".join(row[3] for row in again._db.execute("EXPLAIN QUERY PLAN " + sql))

    # one sensor over a time range: a primary-key range scan, never a table scan
    assert "USING PRIMARY KEY (gateway=? AND sensor=? AND ts_ms>? AND ts_ms<?)" in plan(
        "SELECT * FROM readings WHERE gateway = 'g' AND sensor = 's' AND ts_ms > 1 AND ts_ms < 2"
    )
    # a site's (or a bare sensor id's) series come from the indexed catalogue
    assert "USING INDEX sensors_site" in plan("SELECT * FROM sensors WHERE site = 'x'")
    assert "USING INDEX sensors_sensor" in plan("SELECT * FROM sensors WHERE sensor = 'x'")
    again.close()


def test_a_redelivered_message_is_stored_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    first = store.write([batch(1, [temp(NOW), temp(NOW + 1000)])], [])
    redelivered = store.write([batch(1, [temp(NOW), temp(NOW + 1000)])], [])
    assert (first.readings_stored, first.messages_duplicate) == (2, 0)
    assert (redelivered.readings_stored, redelivered.messages_duplicate) == (0, 1)
    assert len(list(store.readings(start_ms=0, end_ms=NOW + 10_000))) == 2
    store.close()


def test_a_different_reading_sharing_a_sensors_time_is_kept_beside_the_first(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([batch(1, [temp(NOW, -18.0), temp(NOW + 1000, -18.1)])], [])
    # the gateway's clock was set back: a new message, the same times, other values
    later = store.write([batch(2, [temp(NOW + 1000, -17.0), temp(NOW + 2000, -17.2)])], [])
    again = store.write([batch(2, [temp(NOW + 1000, -17.0), temp(NOW + 2000, -17.2)])], [])
    assert (later.readings_stored, later.readings_duplicate) == (2, 0)
    assert (again.readings_stored, again.messages_duplicate) == (0, 1)
    kept = [(r.ts_ms, r.value) for r in store.readings(start_ms=0, end_ms=NOW + 10_000)]
    assert sorted(kept) == sorted(
        [(NOW, -18.0), (NOW + 1000, -18.1), (NOW + 1000, -17.0), (NOW + 2000, -17.2)]
    )
    store.close()


def test_repeats_within_one_batch_and_one_message_are_kept_and_a_backlog_goes_in_behind(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    other = "cr2-th.temp"
    result = store.write(
        [
            batch(1, [temp(NOW + 5000), temp(NOW + 6000), temp(NOW + 5000, sensor=other)]),
            # the clock stepped back between two messages of one batch
            batch(2, [temp(NOW + 6000, -17.5), temp(NOW + 7000)]),
            # one message naming one sensor and time twice (a clock step inside it)
            batch(3, [temp(NOW + 8000, -16.0), temp(NOW + 8000, -16.5)]),
            # a backlog from before everything stored: nothing collides
            batch(4, [temp(NOW), temp(NOW + 1000), temp(NOW, sensor=other)]),
        ],
        [],
    )
    assert (result.readings_stored, result.readings_duplicate) == (10, 0)
    kept = sorted(
        (r.sensor, r.ts_ms, r.value) for r in store.readings(start_ms=0, end_ms=NOW + 10_000)
    )
    assert [k[:2] for k in kept] == [
        ("cr1-th.temp", NOW),
        ("cr1-th.temp", NOW + 1000),
        ("cr1-th.temp", NOW + 5000),
        ("cr1-th.temp", NOW + 6000),
        ("cr1-th.temp", NOW + 6000),
        ("cr1-th.temp", NOW + 7000),
        ("cr1-th.temp", NOW + 8000),
        ("cr1-th.temp", NOW + 8000),
        (other, NOW),
        (other, NOW + 5000),
    ]
    spans = store._db.execute(
        "SELECT sensor, first_ts_ms, last_ts_ms FROM sensors ORDER BY sensor"
    ).fetchall()
    assert spans == [("cr1-th.temp", NOW, NOW + 8000), (other, NOW, NOW + 5000)]
    store.close()


def test_a_catalogue_behind_its_readings_costs_a_retry_not_a_reading(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SqliteStore(path)
    store.write([batch(1, [temp(NOW)])], [])
    # a reading the catalogue does not know of (a file edited by hand, or damaged)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO readings (gateway, sensor, ts_ms, site, quantity, value, q, received_ms) "
        "VALUES ('store-gw', 'cr1-th.temp', ?, 'county-store', 'temp_c', -18.5, 'ok', ?)",
        (NOW + 1000, NOW),
    )
    db.commit()
    db.close()
    result = store.write([batch(2, [temp(NOW + 1000, -17.0), temp(NOW + 2000)])], [])
    assert (result.readings_stored, result.readings_duplicate) == (2, 0)
    kept = sorted((r.ts_ms, r.value) for r in store.readings(start_ms=0, end_ms=NOW + 10_000))
    assert kept == [(NOW, -18.0), (NOW + 1000, -18.5), (NOW + 1000, -17.0), (NOW + 2000, -18.0)]
    assert store._db.execute("SELECT last_ts_ms FROM sensors").fetchall() == [(NOW + 2000,)]
    store.close()


def test_a_store_of_schema_1_keeps_its_readings_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO readings (gateway, sensor, ts_ms, site, quantity, value, q, received_ms) "
        "VALUES ('store-gw', 'cr1-th.temp', ?, 'county-store', 'temp_c', -18.5, 'ok', ?)",
        (NOW, NOW),
    )
    db.execute(
        "INSERT INTO sensors VALUES ('store-gw', 'cr1-th.temp', 'county-store', 'temp_c', ?, ?)",
        (NOW, NOW),
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    assert [(r.ts_ms, r.value) for r in store.readings(start_ms=0, end_ms=NOW + 1)] == [
        (NOW, -18.5)
    ]
    store.write([batch(1, [temp(NOW, -17.0)])], [])  # a new message at that time: kept
    assert len(list(store.readings(start_ms=0, end_ms=NOW + 1))) == 2
    store.close()


def test_a_reading_from_a_clock_ahead_is_kept_marked_clock_suspect() -> None:
    payload = msgspec.json.encode(
        msgspec.structs.replace(batch(1, [temp(NOW - 1000), temp(NOW + 600_000)]).message, seq=1)
    )
    msg = validate(TOPIC, payload, Limits(), now_ms=NOW)
    assert isinstance(msg, ReadingsBatch)
    assert [r.q for r in msg.readings] == [Quality.OK, Quality.CLOCK_SUSPECT]


def test_watermark_advances_over_out_of_order_seqs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    for seq in (1, 3, 4, 2, 5):
        store.write([batch(seq, [temp(NOW + seq)])], [])
    upto = store._db.execute("SELECT upto FROM seq_watermark").fetchone()[0]
    left = store._db.execute("SELECT COUNT(*) FROM seq_seen").fetchone()[0]
    assert (upto, left) == (5, 0)
    assert store.write([batch(3, [temp(NOW + 3)])], []).messages_duplicate == 1
    store.close()


def held(seq: int, held_from: int | None) -> Incoming:
    one = batch(seq, [temp(NOW + seq)])
    assert isinstance(one.message, ReadingsBatch)
    return Incoming(msgspec.structs.replace(one.message, held_from=held_from), NOW)


def test_the_watermark_claims_only_seqs_the_store_holds(tmp_path: Path) -> None:
    """A first message seen at seq 3 (1 and 2 lost at the broker) must not tell the
    gateway that 1 and 2 are stored: it would free them."""
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([held(3, 1)], [])
    assert store.watermarks([("store-gw", 1)]) == {("store-gw", 1): {"readings": 0}}
    store.write([held(1, 1)], [])
    assert store.watermarks([("store-gw", 1)])[("store-gw", 1)] == {"readings": 1}
    store.write([held(2, 1)], [])  # the gap filled: over 2 and 3 at once
    assert store.watermarks([("store-gw", 1)])[("store-gw", 1)] == {"readings": 3}
    assert store.watermarks([("other-gw", 1)]) == {("other-gw", 1): {}}
    store.close()


def test_the_watermark_moves_past_what_the_gateway_gave_up(tmp_path: Path) -> None:
    """A gateway that dropped unconfirmed messages (its bound) says so with held_from;
    a store that starts late (a new database) starts where the gateway's outbox is."""
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([held(40, 37)], [])
    assert store.watermarks([("store-gw", 1)])[("store-gw", 1)] == {"readings": 36}
    store.write([held(37, 37), held(38, 37)], [])
    store.write([held(45, 44)], [])  # 39, 41–43 given up: not waited for; 44 still held
    assert store.watermarks([("store-gw", 1)])[("store-gw", 1)] == {"readings": 43}
    store.write([held(46, 46)], [])  # 44 given up too: over 45 (seen) to 46
    assert store.watermarks([("store-gw", 1)])[("store-gw", 1)] == {"readings": 46}
    assert store._db.execute("SELECT COUNT(*) FROM seq_seen").fetchone()[0] == 0
    store.close()


def test_history_by_sensor_site_and_time_range_in_time_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    door = Reading(sensor="cr1-th.door", ts_ms=NOW + 5, q=Quality.OK, door_open=True)
    fault = Reading(
        sensor="cr1-th.temp",
        ts_ms=NOW + 20,
        q=Quality.FAULT,
        fault="sentinel",
        quantity=Quantity.TEMP_C,
    )
    store.write([batch(1, [temp(NOW + 10), door, fault, temp(NOW, sensor="cr2-th.temp")])], [])
    got = list(store.readings(start_ms=NOW, end_ms=NOW + 20, sensor="cr1-th.temp"))
    assert [(r.ts_ms, r.value) for r in got] == [(NOW + 10, -18.0)]  # end is exclusive
    site = list(store.readings(start_ms=NOW, end_ms=NOW + 100, site="county-store"))
    assert [r.sensor for r in site] == ["cr2-th.temp", "cr1-th.door", "cr1-th.temp", "cr1-th.temp"]
    assert site[1].value is True and site[1].quantity is Quantity.DOOR_OPEN
    assert site[3].value is None and site[3].q is Quality.FAULT
    store.close()


def test_locked_database_is_unavailable_not_an_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite", busy_timeout_ms=100)
    other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreUnavailable, match="locked"):
        store.write([batch(1, [temp(NOW)])], [])
    other.execute("ROLLBACK")
    other.close()
    assert store.write([batch(1, [temp(NOW)])], []).readings_stored == 1
    store.close()


def test_quarantine_keeps_topic_raw_bytes_and_reason(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([], [QuarantineItem(TOPIC, b"\xff{", "not JSON", NOW)])
    assert store.quarantined() == [(TOPIC, b"\xff{", "not JSON")]
    store.close()


GOOD = {
    "v": 1,
    "gateway": "store-gw",
    "site": "county-store",
    "epoch": 1,
    "seq": 1,
    "readings": [{"sensor": "cr1-th.temp", "ts_ms": NOW, "q": "ok", "temp_c": -18.0}],
}


def mutate(**changes: object) -> bytes:
    msg = json.loads(json.dumps(GOOD))
    reading = changes.pop("reading", None)
    if reading is not None:
        msg["readings"][0].update(reading)
    for key, value in changes.items():
        if value is None:
            msg.pop(key)
        else:
            msg[key] = value
    return json.dumps(msg).encode()


MALFORMED = [
    ("bad JSON", TOPIC, b'{"v": 1, "gateway": ', "not valid JSON"),
    ("not UTF-8", TOPIC, b"\xff\xfe\x00", "not valid JSON"),
    ("wrong schema version", TOPIC, mutate(v=2), "schema version 2"),
    ("missing field", TOPIC, mutate(seq=None), "missing required field `seq`"),
    ("seq past 2^53", TOPIC, mutate(seq=2**63), "Expected `int` <= 9007199254740991"),
    ("epoch past 2^53", TOPIC, mutate(epoch=2**64), "Expected `int` <= 9007199254740991"),
    ("time of 10^400 ms", TOPIC, mutate(reading={"ts_ms": 10**400}), "<= 9007199254740991"),
    ("megabyte fault text", TOPIC, mutate(reading={"q": "fault", "fault": "x" * 10**6}), "length"),
    ("dead clock", TOPIC, mutate(reading={"ts_ms": 86_400_000}), "before 2020"),
    (
        "topic says another gateway",
        "coldchain/v1/county-store/other-gw/readings",
        mutate(),
        "topic says",
    ),
    ("unknown topic", "coldchain/v1/county-store/store-gw/junk", mutate(), "unknown stream"),
    ("empty batch", TOPIC, mutate(readings=[]), "empty batch"),
    ("two values", TOPIC, mutate(reading={"rh_pct": 50.0}), "one measurand only"),
]


@pytest.mark.parametrize(
    ("why", "topic", "payload", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_validation_rejects_with_a_reason(
    why: str, topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(Rejected) as info:
        validate(topic, payload, Limits(), now_ms=NOW)
    assert reason in info.value.reason, (why, info.value.reason)


def test_validation_accepts_the_golden_payloads() -> None:
    golden = Path(__file__).parent / "golden"
    for name, topic in (
        ("readings_store_poll.json", TOPIC),
        ("events.json", "coldchain/v1/county-store/store-gw/events"),
    ):
        payload = (golden / name).read_bytes()
        msg = wire.decode(wire.parse_topic(topic).stream, payload)
        latest = max(
            r.ts_ms for r in (msg.readings if isinstance(msg, ReadingsBatch) else msg.events)
        )  # type: ignore[union-attr]
        assert validate(topic, payload, Limits(), now_ms=latest) is not None


def test_influxdb_answers_are_classified_retryable_or_refused_with_the_servers_message(
    tmp_path: Path,
) -> None:
    """A real HTTP server answering the write API as InfluxDB does when it cannot take
    a batch now (503, 429 with Retry-After) and when it never will (400, 413)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from collector.errors import StoreRefused
    from collector.influx_store import InfluxStore

    answers: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code, headers, body = answers.pop(0)
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = InfluxStore(
        url=f"http://127.0.0.1:{server.server_address[1]}",
        org="county",
        bucket="coldchain",
        token="t",
        quarantine_path=tmp_path / "q.sqlite",
    )
    msg = validate(TOPIC, mutate(), Limits(), now_ms=NOW)
    try:
        answers.append((503, {}, b'{"code":"unavailable","message":"starting"}'))
        with pytest.raises(StoreUnavailable) as unavailable:
            store.write([Incoming(msg, NOW)], [])
        assert unavailable.value.retry_after_s is None and "503" in str(unavailable.value)
        answers.append((429, {"Retry-After": "7"}, b'{"code":"too many requests"}'))
        with pytest.raises(StoreUnavailable) as limited:
            store.write([Incoming(msg, NOW)], [])
        assert limited.value.retry_after_s == 7.0
        for code, text in (
            (400, b"unable to parse 'temp_c,site=x value=': missing field"),
            (413, b"request too large"),
        ):
            answers.append((code, {}, b'{"code":"invalid","message":"' + text + b'"}'))
            with pytest.raises(StoreRefused) as refused:
                store.write([Incoming(msg, NOW)], [])
            assert str(code) in refused.value.reason and text.decode() in refused.value.reason
    finally:
        store.close()
        server.shutdown()
        server.server_close()


def test_influx_points_of_two_messages_at_one_millisecond_stay_two_and_a_copy_stays_one() -> None:
    first = batch(7, [temp(NOW, -18.0)], epoch=1_796_000_000_123)
    other = batch(8, [temp(NOW, -17.0)], epoch=1_796_000_000_123)  # a clock set back
    copy = batch(7, [temp(NOW, -18.0)], epoch=1_796_000_000_123)

    def line(item: Incoming) -> str:
        (point,), _, _ = points_of([item])
        return str(point.to_line_protocol())

    assert line(first) == line(copy)
    times = {int(line(i).rsplit(" ", 1)[1]) for i in (first, other)}
    assert len(times) == 2
    assert {t // 1_000_000 for t in times} == {NOW}  # the same millisecond, read back
    suspect = batch(9, [msgspec.structs.replace(temp(NOW), q=Quality.CLOCK_SUSPECT)])
    assert "received_ms=" in line(suspect) and "q_code=3i" in line(suspect)


def test_a_large_refused_payload_is_kept_cut_with_its_length_and_digest(tmp_path: Path) -> None:
    import hashlib

    from collector import quarantine

    big = b"{" + b"x" * (3 * quarantine.MAX_KEPT_BYTES)
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write([], [QuarantineItem(TOPIC, big, "too large", NOW)])
    [(topic, payload, reason)] = store.quarantined()
    store.close()
    assert topic == TOPIC and payload == big[: quarantine.MAX_KEPT_BYTES]
    assert f"{len(big)} bytes" in reason and hashlib.sha256(big).hexdigest() in reason


def test_the_quarantine_keeps_the_newest_within_its_byte_bound_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector import quarantine

    monkeypatch.setattr(quarantine, "MAX_BYTES", 10 * 1000)
    store = SqliteStore(tmp_path / "s.sqlite")
    dropped = 0
    for n in range(30):
        item = QuarantineItem(TOPIC, b"%04d" % n + b"x" * 996, "bad", NOW + n)
        dropped += store.write([], [item]).quarantine_dropped
    kept = [payload[:4] for _t, payload, _r in store.quarantined()]
    store.close()
    assert kept == [b"%04d" % n for n in range(20, 30)]
    assert dropped == 20


def test_a_payload_past_the_wire_bound_is_refused_unread() -> None:
    payload = b'{"v": 1, ' + b" " * wire.MAX_PAYLOAD_BYTES + b"}"
    with pytest.raises(wire.WireError) as refused:
        wire.decode(wire.Stream.READINGS, payload)
    assert refused.value.kind == "too_large"


def test_a_batch_of_long_readings_is_cut_to_stay_under_the_wire_bound() -> None:
    body = msgspec.json.encode(
        Reading(
            sensor="cr1-th.temp",
            ts_ms=NOW,
            q=Quality.FAULT,
            fault="字" * 256,
            quantity=Quantity.TEMP_C,
        )
    )
    bodies = [body] * wire.MAX_ITEMS
    fit = wire_batch.bodies_that_fit(bodies)
    assert 0 < fit < wire.MAX_ITEMS
    payload = wire_batch.assemble(
        wire.Stream.READINGS,
        gateway="g",
        site="s",
        epoch=1,
        seq=1,
        bodies=bodies[:fit],
        held_from=1,
    )
    assert len(payload) <= wire.MAX_PAYLOAD_BYTES
    assert len(wire.decode(wire.Stream.READINGS, payload).readings) == fit  # type: ignore[union-attr]
    assert wire_batch.bodies_that_fit(bodies[:3]) == 3
