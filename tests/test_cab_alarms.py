"""The cab's own alarms (issue 17): the limits the alert service sends down, kept on
disk, and the truck's readings judged by the alert service's own rules, so that the
driver sees a breach with no signal. The messages are built by the alert service's own
code from a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alerts.db import make_engine, transaction, upgrade
from alerts.downlink import Downlink, limits_by_gateway
from alerts.judge import Assigned
from alerts.models import Gateway, Location
from alerts.profiles import load_profiles
from coldchain.judging.breach import SeriesSettings
from coldchain.wire import Quality, Quantity, Reading
from coldchain.wire_limits import Limits, SensorLimits, decode_limits, encode_limits
from gateway.cab_alarms import CabAlarms
from tests.test_alerts_service import GW, seed

MIN = 60_000
T0 = 1_796_000_000_000
FROZEN = load_profiles()["frozen-meat"]


def limits(**change: object) -> Limits:
    sensor = SensorLimits(
        sensor="t02-reefer.air",
        location="Truck 02 front",
        location_zh="02号车前厢",
        profile="frozen-meat",
        warning=FROZEN.warning.model_dump(exclude_none=True),
        critical=FROZEN.critical.model_dump(exclude_none=True),
        correction_c=0.0,
    )
    door = SensorLimits(
        sensor="t02-reefer.door",
        location="Truck 02 front",
        profile="frozen-meat",
        warning=sensor.warning,
        critical=sensor.critical,
        door_max_min=20.0,
    )
    fields: dict[str, object] = {
        "v": 1, "gateway": "truck-02", "site": "fleet", "ts_ms": T0, "sensors": [sensor, door],
        "max_gap_ms": 30 * MIN, "fault_ms": 10 * MIN,
    }  # fmt: skip
    return Limits(**(fields | change))  # type: ignore[arg-type]


def air(minute: float, value: float | None) -> Reading:
    if value is None:
        return Reading(
            sensor="t02-reefer.air", ts_ms=T0 + int(minute * MIN), q=Quality.FAULT,
            fault="sentinel", quantity=Quantity.TEMP_C,
        )  # fmt: skip
    return Reading(
        sensor="t02-reefer.air", ts_ms=T0 + int(minute * MIN), q=Quality.OK, temp_c=value
    )


SENSORS = ["t02-reefer.air", "t02-reefer.door"]


def test_a_compartment_turns_warning_then_critical_by_the_profile_s_delays(tmp_path: Path) -> None:
    cab = CabAlarms(tmp_path / "limits.json")
    cab.take(encode_limits(limits()))
    cab.feed([air(m, -19.0) for m in range(0, 5)])
    assert cab.state(SENSORS)["level"] is None
    assert cab.state(SENSORS)["limits"] == {
        "low_c": None, "high_c": -18.0, "critical_low_c": None, "critical_high_c": -15.0,
    }  # fmt: skip
    cab.feed([air(5 + m, -14.0) for m in range(0, 14)])  # above both, 13 min: delays run
    state = cab.state(SENSORS)
    assert (state["level"], state["outside"]) == (None, True)
    cab.feed([air(m, -14.0) for m in (19, 20, 21)])  # 15 min above critical
    state = cab.state(SENSORS)
    assert (state["level"], state["kind"], state["since_ms"]) == ("critical", "high", T0 + 5 * MIN)
    cab.feed([air(22 + m, -16.5) for m in range(0, 20)])  # back under critical, above warning
    state = cab.state(SENSORS)
    assert (state["level"], state["kind"], state["since_ms"]) == ("warning", "high", T0 + 5 * MIN)
    cab.feed([air(42 + m, -19.5) for m in range(0, 10)])  # back inside for the clear delay
    assert cab.state(SENSORS)["level"] is None


def test_the_calibration_correction_applies_and_a_fault_is_no_temperature(tmp_path: Path) -> None:
    cab = CabAlarms(tmp_path / "limits.json")
    corrected = limits()
    corrected.sensors[0].correction_c = 3.5
    cab.take(encode_limits(corrected))
    cab.feed([air(0, -19.0)])  # -15.5 corrected: outside the warning limit
    assert cab.state(SENSORS)["outside"] is True
    cab.feed([air(1, None)])
    assert cab.state(SENSORS)["outside"] is False


def test_a_door_left_open_past_the_allowance_is_a_warning(tmp_path: Path) -> None:
    cab = CabAlarms(tmp_path / "limits.json")
    cab.take(encode_limits(limits()))
    cab.feed(
        [
            Reading(sensor="t02-reefer.door", ts_ms=T0 + m * MIN, q=Quality.OK, door_open=True)
            for m in range(0, 22)
        ]
    )
    state = cab.state(SENSORS)
    assert (state["level"], state["kind"]) == ("warning", "door_open")


def test_the_limits_survive_a_restart_in_a_dead_zone_and_a_bad_message_changes_nothing(
    tmp_path: Path,
) -> None:
    kept = tmp_path / "limits.json"
    CabAlarms(kept).take(encode_limits(limits()))
    restarted = CabAlarms(kept)  # no broker: what it last had
    assert restarted.made_ms == T0 and set(restarted.judged) == set(SENSORS)
    restarted.take(b'{"v":1,"gateway":"truck-02"}')
    restarted.take(b"\xff not json")
    broken = json.loads(encode_limits(limits()))
    broken["sensors"][0]["warning"] = {"delay_min": 5}  # no limit at all
    restarted.take(json.dumps(broken).encode())
    assert restarted.counters.limits_refused == 3
    assert restarted.made_ms == T0 and decode_limits(kept.read_bytes()) == limits()


def test_the_same_limits_again_keep_the_evaluation_going(tmp_path: Path) -> None:
    cab = CabAlarms(tmp_path / "limits.json")
    cab.take(encode_limits(limits()))
    cab.feed([air(m, -14.0) for m in range(0, 10)])
    cab.take(encode_limits(limits(ts_ms=T0 + 10 * MIN)))  # a reload at the alert service
    cab.feed([air(m, -14.0) for m in range(10, 16)])
    assert cab.state(SENSORS)["level"] == "critical"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    e = make_engine(db_url)
    seed(e)
    with transaction(e) as s:
        s.add(Gateway(id=GW, site_id="store", name="Store gateway"))
    yield e
    e.dispose()


def test_the_alert_service_sends_each_gateway_its_compartments_limits_once(engine: Engine) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from alerts.calibration import calibrations_by_sensor
    from alerts.models import SensorAssignment
    from alerts.repo import profiles_in_force

    with Session(engine) as s:
        assigned = Assigned(
            profiles=profiles_in_force(s),
            locations={loc.id: loc for loc in s.execute(select(Location)).scalars()},
            sensors={
                (a.gateway, a.sensor): a.location_id
                for a in s.execute(select(SensorAssignment)).scalars()
            },
            calibrations=calibrations_by_sensor(s),
            gateway_sites={GW: "store"},
        )
    built = limits_by_gateway(assigned, SeriesSettings(), 60.0, T0)
    message = built[GW]
    by_sensor = {x.sensor: x for x in message.sensors}
    assert set(by_sensor) == {"cr1-ctrl.air", "cr1-th.temp", "cr1-ctrl.door", "pc-th.rh"}
    frozen = by_sensor["cr1-ctrl.air"]
    assert (frozen.location, frozen.profile) == ("Frozen room", "frozen-meat")
    assert frozen.critical["high_c"] == -15.0 and frozen.critical["delay_min"] == 15 / 60
    assert frozen.door_max_min == 10 / 60
    sent: list[tuple[str, bytes]] = []
    downlink = Downlink(lambda topic, payload: sent.append((topic, payload)))
    assert downlink.update(built) == 1
    assert sent[0][0] == "coldchain/v1/store/store-gw/limits"
    assert decode_limits(sent[0][1]) == message
    assert downlink.update(limits_by_gateway(assigned, SeriesSettings(), 60.0, T0 + 5)) == 0
    downlink.everything = True
    assert downlink.send(assigned, SeriesSettings(), 60.0) == 1  # after a reconnect
    # the broker goes away mid-send: the limits stay due, the next tick sends them
    calls: list[str] = []

    def flaky(topic: str, _payload: bytes) -> None:
        calls.append(topic)
        if len(calls) == 1:
            raise OSError("the broker went away")

    failing = Downlink(flaky, due=True)
    with pytest.raises(OSError, match="went away"):
        failing.send(assigned, SeriesSettings(), 60.0)
    assert failing.due is True and failing.sent == {}
    assert failing.send(assigned, SeriesSettings(), 60.0) == 1 and failing.due is False


def test_a_failing_cab_judgement_never_costs_a_reading(tmp_path: Path) -> None:
    """The cab's judge is told every reading before it is written: when it fails, the
    readings are kept all the same, the failure is counted and health names it."""
    import asyncio

    from gateway.outbox import Outbox
    from gateway.outbox_file import AsyncOutbox
    from gateway.sink import Sink

    broken = True

    def judge(_readings: list[Reading]) -> None:
        if broken:
            raise RuntimeError("a bug in the cab's judgement")

    async def scenario() -> tuple[int, int, str | None, str | None]:
        outbox = AsyncOutbox(
            Outbox(tmp_path / "o.sqlite", gateway="g", site="s", max_rows=999, max_age_h=9999)
        )
        sink = Sink(outbox, lambda: None)
        sink.watchers.append(judge)
        try:
            await sink.add_readings([air(0, -19.0), air(1, -19.1)])
            failing = sink.watcher_failing
            nonlocal broken
            broken = False
            await sink.add_readings([air(2, -19.2)])
            pending = (await outbox.call(outbox.sync.stats)).pending
            return pending, sink.counters.watcher_failures, failing, sink.watcher_failing
        finally:
            outbox.close()

    pending, failures, failing, after = asyncio.run(scenario())
    assert pending == 3 and failures == 1
    assert failing == "RuntimeError: a bug in the cab's judgement" and after is None
