"""The compact readings batch, schema version 2 (issue 17): golden payloads, a round
trip that keeps every reading as it was, and every way a broken one is refused with
its reason. Consumers read version 1 and 2 alike (coldchain.wire.decode)."""

from __future__ import annotations

import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldchain import wire, wire_batch
from coldchain.wire import Quality, Quantity, Reading, Stream

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", ["readings_store_poll", "readings_truck_backlog"])
def test_the_golden_batches_in_both_versions_carry_the_same_readings(name: str) -> None:
    v1 = wire.decode(Stream.READINGS, (GOLDEN / f"{name}.json").read_bytes())
    v2_json = (GOLDEN / f"{name}.v2.json").read_bytes().strip()
    built = wire_batch.compact(
        gateway=v1.gateway,
        site=v1.site,
        epoch=v1.epoch,
        seq=v1.seq,
        bodies=[wire.encode(r) for r in v1.readings],  # type: ignore[union-attr]
        held_from=v1.held_from,  # type: ignore[union-attr]
    )
    assert zlib.decompress(built) == v2_json  # what the gateway sends, byte for byte
    v2 = wire.decode(Stream.READINGS, zlib.compress(v2_json))
    assert (v2.v, v1.v) == (2, 1)
    assert v2.readings == v1.readings  # type: ignore[union-attr]
    assert (v2.gateway, v2.site, v2.epoch, v2.seq, v2.held_from) == (  # type: ignore[union-attr]
        v1.gateway,
        v1.site,
        v1.epoch,
        v1.seq,
        v1.held_from,  # type: ignore[union-attr]
    )
    assert len(built) < len((GOLDEN / f"{name}.json").read_bytes()) / 2


SENSORS = st.sampled_from(["cr1-ctrl.air", "cr1-th.rh", "cr1-ctrl.door", "t-02-gps.pos"])
VALUES = st.floats(-100, 150, allow_nan=False).map(lambda v: round(v, 2))


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    sensor = draw(SENSORS)
    ts = draw(st.integers(1_577_836_800_000, 1_577_836_800_000 + 10**9))
    kind = draw(st.sampled_from(["temp", "door", "pos", "fault", "out", "alarm", "status"]))
    if kind == "temp":
        return Reading(sensor=sensor, ts_ms=ts, q=Quality.OK, temp_c=draw(VALUES))
    if kind == "door":
        return Reading(sensor=sensor, ts_ms=ts, q=Quality.OK, door_open=draw(st.booleans()))
    if kind == "alarm":
        return Reading(sensor=sensor, ts_ms=ts, q=Quality.OK, alarm_on=draw(st.booleans()))
    if kind == "status":
        return Reading(
            sensor=sensor, ts_ms=ts, q=Quality.OK, status_code=float(draw(st.integers(0, 9)))
        )
    if kind == "out":
        return Reading(sensor=sensor, ts_ms=ts, q=Quality.OUT_OF_RANGE, temp_c=draw(VALUES))
    if kind == "fault":
        q = draw(st.sampled_from([Quantity.TEMP_C, Quantity.POSITION, Quantity.DOOR_OPEN]))
        return Reading(sensor=sensor, ts_ms=ts, q=Quality.FAULT, fault="no_response", quantity=q)
    optional = st.none() | st.floats(0, 200, allow_nan=False)
    return Reading(
        sensor=sensor,
        ts_ms=ts,
        q=Quality.OK,
        lat_deg=draw(st.floats(-90, 90, allow_nan=False)),
        lon_deg=draw(st.floats(-180, 180, allow_nan=False)),
        speed_kmh=draw(optional),
        course_deg=draw(optional),
        sats=draw(st.none() | st.integers(0, 40)),
        hdop=draw(st.none() | st.floats(0.5, 99.9, allow_nan=False)),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(readings(), min_size=1, max_size=60), st.none() | st.integers(1, 50))
def test_any_batch_comes_back_reading_for_reading(batch: list[Reading], held: int | None) -> None:
    payload = wire_batch.compact(
        gateway="truck-02", site="fleet", epoch=7, seq=51, bodies=[wire.encode(r) for r in batch],
        held_from=held,
    )  # fmt: skip
    back = wire.decode(Stream.READINGS, payload)
    assert back.readings == batch  # type: ignore[union-attr]
    assert back.held_from == held  # type: ignore[union-attr]


def v2(**change: object) -> bytes:
    good = msgspec.json.decode((GOLDEN / "readings_truck_backlog.v2.json").read_bytes())
    return zlib.compress(msgspec.json.encode(good | change))


# (why, payload, the kind of refusal)
BROKEN = [
    ("truncated stream", zlib.compress(b'{"v":2}')[:-3], "json"),
    ("not zlib", b"\x78\x00garbage", "json"),
    ("a bomb", zlib.compress(b" " * (wire.MAX_PAYLOAD_BYTES + 10)), "too_large"),
    ("another version", v2(v=3), "version"),
    ("columns of different lengths", v2(dt=[0]), "schema"),
    ("an index past the sensors", v2(i=[0, 1, 9, 0]), "schema"),
    ("a bool for a temperature", v2(val=[[35.4, 103.3], True, 3.4, None]), "schema"),
    ("a position without longitude", v2(val=[[35.4], -17.8, 3.4, None]), "schema"),
    ("a time before 1970", v2(t0=0, dt=[0, -5, 0, 0]), "schema"),
    ("a bad sensor id", v2(sensors=["BAD ID", "a.b", "a.c"]), "schema"),
    ("an unknown field", v2(extra=1), "schema"),
]


@pytest.mark.parametrize(("why", "payload", "kind"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_compact_batch_is_refused_with_its_reason(
    why: str, payload: bytes, kind: str
) -> None:
    with pytest.raises(wire.WireError) as info:
        wire.decode(Stream.READINGS, payload)
    assert info.value.kind == kind, (why, str(info.value))
