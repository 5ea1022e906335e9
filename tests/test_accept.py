"""The one way in (coldchain.accept): what every consumer refuses, and what it keeps
with a mark instead of throwing the batch away."""

from __future__ import annotations

import json

import pytest

from coldchain.accept import Limits, accept, normalised
from coldchain.wire import Quality, Reading, ReadingsBatch, Status, WireError

NOW = 1_796_185_635_270
TOPIC = "coldchain/v1/county-store/store-gw/readings"


def batch(*readings: dict[str, object], **head: object) -> bytes:
    body = {"v": 1, "gateway": "store-gw", "site": "county-store", "epoch": 1, "seq": 7}
    return json.dumps({**body, **head, "readings": list(readings)}).encode()


def temp(sensor: str, ts_ms: int, value: float) -> dict[str, object]:
    return {"sensor": sensor, "ts_ms": ts_ms, "q": "ok", "temp_c": value}


def readings_of(payload: bytes) -> list[Reading]:
    msg = accept(TOPIC, payload, Limits(), NOW).message
    assert isinstance(msg, ReadingsBatch)
    return msg.readings


@pytest.mark.parametrize(
    ("why", "reading", "marked"),
    [
        ("probe line 999.9 °C", temp("a", NOW, 999.9), Quality.OUT_OF_RANGE),
        ("Modbus 0x7FFE as 3276.6 °C", temp("a", NOW, 3276.6), Quality.OUT_OF_RANGE),
        (
            "humidity -20 %",
            {"sensor": "a", "ts_ms": NOW, "q": "ok", "rh_pct": -20.0},
            Quality.OUT_OF_RANGE,
        ),
        (
            "latitude 99.99°",
            {"sensor": "gps", "ts_ms": NOW, "q": "ok", "lat_deg": 99.99, "lon_deg": 103.8},
            Quality.OUT_OF_RANGE,
        ),
        ("a plain -18 °C", temp("a", NOW, -18.0), Quality.OK),
        (
            "a fault stays a fault",
            {"sensor": "a", "ts_ms": NOW, "q": "fault", "quantity": "temp_c"},
            Quality.FAULT,
        ),
    ],
)
def test_a_value_past_its_physical_range_is_kept_marked_with_the_rest_of_its_batch(
    why: str, reading: dict[str, object], marked: Quality
) -> None:
    good = [temp(f"s{i}", NOW - 1000, -18.0 + i / 10) for i in range(27)]
    readings = readings_of(batch(*good, reading))
    assert len(readings) == 28, why
    odd = next(r for r in readings if r.sensor == reading["sensor"])
    assert odd.q is marked, why
    assert all(r.q is Quality.OK for r in readings if r is not odd)


def test_a_gateway_clock_ahead_keeps_its_readings_marked_and_says_by_how_much() -> None:
    ten_min = 10 * 60_000
    taken = accept(
        TOPIC,
        batch(
            temp("a", NOW + ten_min - 60_000, -18.0),
            temp("a", NOW + ten_min, -18.1),
            temp("b", NOW + ten_min, 999.9),  # out of range: that mark is the graver news
            {"sensor": "c", "ts_ms": NOW + ten_min, "q": "fault", "quantity": "temp_c"},
            temp("d", NOW + 60_000, -18.2),  # inside the tolerance
        ),
        Limits(future_tolerance_ms=5 * 60_000),
        NOW,
    )
    assert isinstance(taken.message, ReadingsBatch)
    marks = {(r.sensor, r.ts_ms): r.q for r in taken.message.readings}
    assert marks == {
        ("a", NOW + ten_min - 60_000): Quality.CLOCK_SUSPECT,
        ("a", NOW + ten_min): Quality.CLOCK_SUSPECT,
        ("b", NOW + ten_min): Quality.OUT_OF_RANGE,
        ("c", NOW + ten_min): Quality.FAULT,
        ("d", NOW + 60_000): Quality.OK,
    }
    assert (taken.clock_ahead_ms, taken.clock_suspect) == (ten_min, 2)
    # a status and events from that clock are kept too, with the same news
    status = json.dumps(
        {
            "v": 1,
            "gateway": "store-gw",
            "site": "county-store",
            "state": "online",
            "ts_ms": NOW + ten_min,
        }
    ).encode()
    assert (
        accept(TOPIC.replace("readings", "status"), status, Limits(), NOW).clock_ahead_ms == ten_min
    )
    on_time = accept(TOPIC, batch(temp("a", NOW, -18.0)), Limits(), NOW)
    assert (on_time.clock_ahead_ms, on_time.clock_suspect) == (0, 0)


def test_each_sensors_readings_come_sorted_and_an_exact_copy_once() -> None:
    readings = readings_of(
        batch(
            temp("b", NOW - 2000, 2.0),
            temp("a", NOW - 1000, 1.5),
            temp("a", NOW - 3000, 1.0),
            temp("a", NOW - 1000, 1.5),  # the same reading twice
            temp("b", NOW - 2000, 9.0),  # a second value for the same sensor and time
        )
    )
    assert [(r.sensor, r.ts_ms, r.temp_c) for r in readings] == [
        ("a", NOW - 3000, 1.0),
        ("a", NOW - 1000, 1.5),
        ("b", NOW - 2000, 2.0),
    ]


def test_an_ordered_batch_comes_back_as_it_came() -> None:
    readings = [
        Reading("a", NOW - 1, Quality.OK, temp_c=1.0),
        Reading("b", NOW - 1, Quality.OK, temp_c=2.0),
    ]
    assert normalised(readings) == (readings, 0, 0)
    assert normalised(readings)[0] is readings


@pytest.mark.parametrize(
    ("why", "topic", "payload", "reason"),
    [
        (
            "a gateway naming another in its payload",
            TOPIC,
            batch(temp("a", NOW, 1.0), gateway="truck-1"),
            "topic says county-store/store-gw",
        ),
        (
            "another site in its payload",
            TOPIC,
            batch(temp("a", NOW, 1.0), site="township"),
            "topic says county-store/store-gw",
        ),
        ("a reading stamped 1970", TOPIC, batch(temp("a", 60_000, 1.0)), "before 2020"),
        ("seq 2^63", TOPIC, batch(temp("a", NOW, 1.0), seq=2**63), "<= 9007199254740991"),
        ("5,001 readings", TOPIC, batch(*[temp("a", NOW - i, 1.0) for i in range(5001)]), "length"),
        (
            "an event count past 2^63",
            "coldchain/v1/county-store/store-gw/events",
            json.dumps(
                {
                    "v": 1,
                    "gateway": "store-gw",
                    "site": "county-store",
                    "epoch": 1,
                    "seq": 1,
                    "events": [
                        {
                            "ts_ms": NOW,
                            "kind": "outbox",
                            "source": "store-gw",
                            "state": "overflow",
                            "count": 2**63,
                        }
                    ],
                }
            ).encode(),
            "<= 9007199254740991",
        ),
        (
            "a status of another gateway",
            "coldchain/v1/county-store/store-gw/status",
            json.dumps(
                {
                    "v": 1,
                    "gateway": "truck-1",
                    "site": "county-store",
                    "state": "offline",
                    "ts_ms": NOW,
                }
            ).encode(),
            "topic says",
        ),
        (
            "a status stamped 10^400 ms",
            "coldchain/v1/county-store/store-gw/status",
            b'{"v":1,"gateway":"store-gw","site":"county-store","state":"online","ts_ms":1'
            + b"0" * 400
            + b"}",
            "<= 9007199254740991",
        ),
        (
            "a heartbeat count past 2^53",
            "coldchain/v1/county-store/store-gw/status",
            json.dumps(
                {
                    "v": 1,
                    "gateway": "store-gw",
                    "site": "county-store",
                    "state": "online",
                    "ts_ms": NOW,
                    "stats": {"backlog": 2**60},
                }
            ).encode(),
            "<= 9007199254740991",
        ),
    ],
)
def test_a_message_that_breaks_the_contract_is_refused_with_its_reason(
    why: str, topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(WireError) as info:
        accept(topic, payload, Limits(), NOW)
    assert reason in str(info.value), (why, str(info.value))


def test_a_status_on_its_own_topic_is_taken() -> None:
    payload = json.dumps(
        {"v": 1, "gateway": "store-gw", "site": "county-store", "state": "online", "ts_ms": NOW}
    ).encode()
    taken = accept("coldchain/v1/county-store/store-gw/status", payload, Limits(), NOW)
    assert isinstance(taken.message, Status) and taken.parts.gateway == "store-gw"
