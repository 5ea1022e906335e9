"""The wire contract: golden payloads, topics, and what a consumer must reject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldchain import wire, wire_batch
from coldchain.wire import Quality, Quantity, Reading, Stream

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("readings_store_poll.json", Stream.READINGS),
        ("readings_truck_backlog.json", Stream.READINGS),
        ("events.json", Stream.EVENTS),
        ("status_online.json", Stream.STATUS),
        ("status_lwt.json", Stream.STATUS),
        ("status_heartbeat.json", Stream.STATUS),
    ],
)
def test_golden_payload_decodes_and_reencodes_to_the_same_json(name: str, stream: Stream) -> None:
    raw = (GOLDEN / name).read_bytes()
    msg = wire.decode(stream, raw)
    assert json.loads(wire.encode(msg)) == json.loads(raw)


def test_golden_stored_watermark_decodes_and_ignores_fields_it_does_not_know() -> None:
    raw = (GOLDEN / "stored.json").read_bytes()
    stored = wire.decode_stored(raw)
    assert (stored.gateway, stored.epoch, stored.readings, stored.events) == (
        "truck-02",
        1795430000000,
        76,
        12,
    )
    assert json.loads(wire.encode(stored)) == json.loads(raw)
    newer = json.loads(raw) | {"collector": "collector-3"}  # a newer collector's field
    assert wire.decode_stored(json.dumps(newer).encode()) == stored
    with pytest.raises(wire.WireError):
        wire.decode_stored(b'{"v":1,"gateway":"truck-02"}')


def test_a_backlog_chunk_says_the_lowest_seq_its_gateway_still_holds() -> None:
    msg = wire.decode(Stream.READINGS, (GOLDEN / "readings_truck_backlog.json").read_bytes())
    assert isinstance(msg, wire.ReadingsBatch)
    assert (msg.seq, msg.held_from) == (77, 61)


def test_golden_readings_carry_one_measurand_each() -> None:
    msg = wire.decode(Stream.READINGS, (GOLDEN / "readings_store_poll.json").read_bytes())
    assert isinstance(msg, wire.ReadingsBatch)
    by_sensor = {r.sensor: r for r in msg.readings}
    assert by_sensor["cr1-ctrl.air"].measurand() is Quantity.TEMP_C
    assert by_sensor["cr1-ctrl.air"].value() == -19.4
    assert by_sensor["cr1-ctrl.compressor"].value() is True
    assert by_sensor["cr1-th.temp"].measurand() is Quantity.TEMP_C
    assert by_sensor["cr1-th.temp"].value() is None
    assert by_sensor["pc-th.temp"].q is Quality.OUT_OF_RANGE


def test_assembled_batch_equals_encoded_struct() -> None:
    readings = [
        Reading(sensor="a.temp", ts_ms=1, q=Quality.OK, temp_c=-18.5),
        Reading(sensor="a.door", ts_ms=1, q=Quality.OK, door_open=True),
    ]
    assembled = wire_batch.assemble(
        Stream.READINGS,
        gateway="gw",
        site="s",
        epoch=9,
        seq=3,
        bodies=[wire.encode(r) for r in readings],
    )
    direct = wire.encode(
        wire.ReadingsBatch(v=1, gateway="gw", site="s", epoch=9, seq=3, readings=readings)
    )
    assert assembled == direct


def test_topics_round_trip() -> None:
    name = wire.topic("county-store", "store-gw", Stream.READINGS)
    assert name == "coldchain/v1/county-store/store-gw/readings"
    assert wire.parse_topic(name) == wire.TopicParts("county-store", "store-gw", Stream.READINGS)
    assert wire.subscription(Stream.EVENTS) == "coldchain/v1/+/+/events"


@pytest.mark.parametrize(
    "bad_topic",
    [
        "coldchain/v2/s/g/readings",
        "coldchain/v1/s/g/other",
        "coldchain/v1/s/readings",
        "coldchain/v1/S P/g/readings",
    ],
)
def test_malformed_topic_is_refused(bad_topic: str) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_topic(bad_topic)


BASE = {"v": 1, "gateway": "gw", "site": "s", "epoch": 1, "seq": 1}


@pytest.mark.parametrize(
    ("why", "payload"),
    [
        ("not json", b"{nope"),
        ("wrong schema version", json.dumps({**BASE, "v": 2, "readings": []}).encode()),
        (
            "missing seq",
            json.dumps({k: v for k, v in BASE.items() if k != "seq"} | {"readings": []}).encode(),
        ),
        ("seq zero", json.dumps({**BASE, "seq": 0, "readings": []}).encode()),
        ("unknown field", json.dumps({**BASE, "readings": [], "extra": 1}).encode()),
        (
            "two measurands",
            json.dumps(
                {
                    **BASE,
                    "readings": [
                        {"sensor": "a", "ts_ms": 1, "q": "ok", "temp_c": 1.0, "rh_pct": 2.0}
                    ],
                }
            ).encode(),
        ),
        (
            "no value and not a fault",
            json.dumps({**BASE, "readings": [{"sensor": "a", "ts_ms": 1, "q": "ok"}]}).encode(),
        ),
        (
            "half a position",
            json.dumps(
                {**BASE, "readings": [{"sensor": "a", "ts_ms": 1, "q": "ok", "lat_deg": 35.0}]}
            ).encode(),
        ),
        (
            "bad quality",
            json.dumps(
                {**BASE, "readings": [{"sensor": "a", "ts_ms": 1, "q": "great", "temp_c": 1.0}]}
            ).encode(),
        ),
        (
            "bad sensor id",
            json.dumps(
                {**BASE, "readings": [{"sensor": "A B", "ts_ms": 1, "q": "ok", "temp_c": 1.0}]}
            ).encode(),
        ),
        (
            "negative timestamp",
            json.dumps(
                {**BASE, "readings": [{"sensor": "a", "ts_ms": -5, "q": "ok", "temp_c": 1.0}]}
            ).encode(),
        ),
        (
            "string temperature",
            json.dumps(
                {**BASE, "readings": [{"sensor": "a", "ts_ms": 1, "q": "ok", "temp_c": "cold"}]}
            ).encode(),
        ),
    ],
)
def test_consumer_rejects_payload_with_a_reason(why: str, payload: bytes) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.decode(Stream.READINGS, payload)
    assert str(info.value), why
