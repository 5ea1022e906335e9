"""The alert service's evaluation against a real database (SQLite and PostgreSQL): door,
humidity and temperature rules wired to locations, calibration corrections, late data,
gateways going offline, per-site escalation and calibration reminders; and end to end
with a real gateway process killed under a real Mosquitto."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.calibration import record_calibration
from alerts.db import AuditRow, make_engine, transaction, upgrade
from alerts.escalation import Escalation, Route
from alerts.lifecycle import Policy, Step
from alerts.models import AlarmRow, BreachRow, Calibration, Location, Site
from alerts.notify import Message, NotificationRow
from alerts.profiles import load_profiles
from alerts.repo import NewBatch, add_site, assign_sensor, create_batch, load_profile, save_profile
from alerts.service import AlertService
from coldchain import wire
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Reading, ReadingsBatch, Status
from collector.sqlite_store import SqliteStore
from collector.store import Incoming
from tests.harness import Broker, wait_for
from tests.scenario import Setup

MIN = 60_000
T0 = 1_795_392_000_000  # 2026-11-21T00:00Z
GW = "store-gw"
DAY = 86_400_000


def seed(engine: Engine, gateway: str = GW, site: str = "store") -> None:
    """A frozen room with a temperature sensor and a door contact, a fruit room with a
    humidity sensor; a batch in each."""
    profiles = load_profiles()
    for pid in ("frozen-meat", "apples"):
        with transaction(engine) as s:
            save_profile(s, profiles[pid], actor="qa", reason="test")
    with transaction(engine) as s:
        add_site(
            s,
            Site(id=site, name="Store", kind="cold_store"),
            [
                Location(
                    id=f"{site}.room",
                    site_id=site,
                    name="Frozen room",
                    kind="cold_room",
                    profile_id="frozen-meat",
                    door_open_max_min=10.0,
                ),
                Location(
                    id=f"{site}.fruit",
                    site_id=site,
                    name="Fruit room",
                    kind="pre_cooling",
                    profile_id="apples",
                ),
            ],
            actor="qa",
        )
    for sensor, loc in (
        ("cr1-ctrl.air", "room"),
        ("cr1-th.temp", "room"),
        ("cr1-ctrl.door", "room"),
        ("pc-th.rh", "fruit"),
    ):
        with transaction(engine) as s:
            assign_sensor(
                s,
                gateway=gateway,
                sensor=sensor,
                location_id=f"{site}.{loc}",
                from_ms=T0 - DAY,
                actor="qa",
            )
    for batch_id, profile, loc in (("B-YAK", "frozen-meat", "room"), ("B-APL", "apples", "fruit")):
        with transaction(engine) as s:
            create_batch(
                s,
                NewBatch(batch_id, profile, batch_id, 100, "kg", "Gahai cooperative"),
                into_location=f"{site}.{loc}",
                at_ms=T0 - DAY,
                by="warehouse.li",
                temp_c=None,
            )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    e = make_engine(db_url)
    seed(e)
    yield e
    e.dispose()


def service(engine: Engine, **kwargs: object) -> AlertService:
    """The service, not connected: tests feed it batches and statuses directly."""
    return AlertService(engine, MqttConfig(port=1), on_alarm=lambda _line: None, **kwargs)  # type: ignore[arg-type]


def batch(readings: list[Reading], gateway: str = GW, seq: int = 1) -> ReadingsBatch:
    return ReadingsBatch(
        v=wire.SCHEMA_VERSION, gateway=gateway, site="store", epoch=1, seq=seq, readings=readings
    )


def temps(sensor: str, values: list[float], start: int = T0, step: int = 5 * MIN) -> list[Reading]:
    return [
        Reading(sensor=sensor, ts_ms=start + i * step, q=Quality.OK, temp_c=v)
        for i, v in enumerate(values)
    ]


def breaches(engine: Engine) -> list[BreachRow]:
    with Session(engine) as s:
        rows = list(s.execute(select(BreachRow).order_by(BreachRow.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def status(state: str, ts_ms: int, gateway: str = GW, **kw: object) -> Status:
    return Status(
        v=wire.SCHEMA_VERSION, gateway=gateway, site="store", state=state, ts_ms=ts_ms, **kw
    )  # type: ignore[arg-type]


# ---------------------------------------------------------------------- rules per location
def test_a_controller_s_own_alarm_is_a_breach_while_it_is_on(engine: Engine) -> None:
    """A controller's high-temperature alarm bit (issue 17) is evidence too: a breach
    on the room's batches from the first reading it is on until it goes off."""
    with transaction(engine) as s:
        assign_sensor(
            s, gateway=GW, sensor="cr1-ctrl.high_alarm", location_id="store.room",
            from_ms=T0 - DAY, actor="qa",
        )  # fmt: skip
    svc = service(engine)
    bits = [False, False, True, True, True, False, False]
    svc.process(
        batch(
            [
                Reading(sensor="cr1-ctrl.high_alarm", ts_ms=T0 + i * MIN, q=Quality.OK, alarm_on=on)
                for i, on in enumerate(bits)
            ]
        )
    )
    rows = breaches(engine)
    assert [(r.kind, r.level, r.start_ms, r.end_ms, r.end_reason) for r in rows] == [
        ("device_alarm", "warning", T0 + 2 * MIN, T0 + 5 * MIN, "closed")
    ]
    assert json.loads(rows[0].batches) == ["B-YAK"]


def test_door_left_open_longer_than_allowed_is_one_breach_on_the_batches_in_the_room(
    engine: Engine,
) -> None:
    svc = service(engine)
    door = [(0, False), (1, True), (2, True), (3, False)]  # 5-minute opening: loading
    door += [(4, True), (5, True), (6, True), (7, True), (8, False)]  # 20 minutes: left open
    svc.process(
        batch(
            [
                Reading(sensor="cr1-ctrl.door", ts_ms=T0 + i * 5 * MIN, q=Quality.OK, door_open=o)
                for i, o in door
            ]
        )
    )
    rows = breaches(engine)
    assert [(r.kind, r.start_ms, r.end_ms, r.end_reason) for r in rows] == [
        ("door_open", T0 + 20 * MIN, T0 + 40 * MIN, "closed")
    ]
    assert json.loads(rows[0].batches) == ["B-YAK"]
    assert json.loads(rows[0].settings)["max_open_min"] == 10.0


def test_humidity_below_the_profile_limit_raises_a_humidity_breach(engine: Engine) -> None:
    svc = service(engine)
    # apples: RH low 85 %, delay 240 min; 5 hours at 80 %, then back to 90 %
    values = [90.0] + [80.0] * 61 + [90.0] * 4
    svc.process(
        batch(
            [
                Reading(sensor="pc-th.rh", ts_ms=T0 + i * 5 * MIN, q=Quality.OK, rh_pct=v)
                for i, v in enumerate(values)
            ]
        )
    )
    rows = breaches(engine)
    assert [(r.kind, r.level, r.location_id, r.min_value) for r in rows] == [
        ("rh_low", "warning", "store.fruit", 80.0)
    ]
    assert json.loads(rows[0].settings)["limit_pct"] == 85
    assert json.loads(rows[0].batches) == ["B-APL"]


@pytest.mark.parametrize(
    ("raw_c", "correction_c", "breached"),
    [
        (-17.8, -0.5, False),  # reads warm, is -18.3 °C: inside
        (-18.3, +0.5, True),  # reads cold, is -17.8 °C: a warning breach
    ],
)
def test_the_calibration_in_force_corrects_the_reading_and_is_named_in_the_breach(
    engine: Engine, raw_c: float, correction_c: float, breached: bool
) -> None:
    with transaction(engine) as s:
        record_calibration(
            s,
            Calibration(
                gateway=GW,
                sensor="cr1-th.temp",
                calibrated_ms=T0 - 30 * DAY,
                reference_instrument="reference thermometer",
                correction_c=correction_c,
                certificate="CAL-7.pdf",
                next_due_ms=T0 + 300 * DAY,
            ),
            actor="quality.wang",
        )
    svc = service(engine)
    svc.process(batch(temps("cr1-th.temp", [raw_c] * 10)))  # 45 minutes
    rows = breaches(engine)
    assert bool(rows) is breached
    if breached:
        (row,) = rows
        assert row.max_value == pytest.approx(raw_c + correction_c)
        calibration = json.loads(row.settings)["calibration"]
        assert calibration["correction_c"] == correction_c
        assert calibration["certificate"] == "CAL-7.pdf"
        assert calibration["overdue"] is False


def test_a_profile_change_ends_the_ongoing_breach_and_the_new_limits_apply(
    engine: Engine,
) -> None:
    svc = service(engine)
    svc.process(batch(temps("cr1-th.temp", [-16.5] * 10)))  # warning (> -18 for 30 min)
    profile = load_profiles()["frozen-meat"]
    warmer = profile.model_copy(
        update={"warning": profile.warning.model_copy(update={"high_c": -16.0})}
    )
    with transaction(engine) as s:
        save_profile(s, warmer, actor="quality.wang", reason="supplier's spec allows -16")
    svc.reload()
    svc.process(batch(temps("cr1-th.temp", [-16.5] * 10, start=T0 + 50 * MIN), seq=2))
    (row,) = breaches(engine)
    assert (row.kind, row.level, row.end_reason) == ("high", "warning", "settings_changed")
    assert row.end_ms == T0 + 45 * MIN


def test_a_profile_change_scheduled_for_later_comes_in_force_at_its_time(
    engine: Engine,
) -> None:
    svc = service(engine)
    profile = load_profiles()["frozen-meat"]
    warmer = profile.model_copy(
        update={"warning": profile.warning.model_copy(update={"high_c": -16.0})}
    )
    in_force_ms = time.time_ns() // 1_000_000 + 1500
    with transaction(engine) as s:
        save_profile(s, warmer, actor="quality.wang", reason="summer season", from_ms=in_force_ms)
    with Session(engine) as s:
        assert load_profile(s, "frozen-meat").warning.high_c == profile.warning.high_c
        assert load_profile(s, "frozen-meat", in_force_ms).warning.high_c == -16.0
        (scheduled,) = [
            r for r in s.execute(select(AuditRow)).scalars() if r.action == "profile.schedule"
        ]
        assert json.loads(scheduled.new_value)["in_force_from_ms"] == in_force_ms
    svc.reload()  # before its time: the limits in force now
    svc.process(batch(temps("cr1-th.temp", [-16.5] * 10)))
    (row,) = breaches(engine)
    assert (row.kind, row.level, row.end_ms) == ("high", "warning", None)
    time.sleep(max(0.0, (in_force_ms - time.time_ns() // 1_000_000) / 1000) + 0.1)
    svc.reload()  # its time has come
    svc.process(batch(temps("cr1-th.temp", [-16.5] * 10, start=T0 + 50 * MIN), seq=2))
    (row,) = breaches(engine)
    assert row.end_reason == "settings_changed"
    with Session(engine) as s:
        assert load_profile(s, "frozen-meat").warning.high_c == -16.0


def test_a_restart_mid_breach_keeps_one_breach_that_ends_when_back_in_range(
    engine: Engine,
) -> None:
    before = service(engine)
    before.process(batch(temps("cr1-th.temp", [-14.0] * 6)))  # critical from 15 min on
    door = [
        Reading(sensor="cr1-ctrl.door", ts_ms=T0 + i * 5 * MIN, q=Quality.OK, door_open=True)
        for i in range(4)
    ]
    before.process(batch(door, seq=2))
    assert {(r.kind, r.level, r.end_ms) for r in breaches(engine)} == {
        ("high", "critical", None),
        ("door_open", "warning", None),
    }
    before.stop()
    after = service(engine)  # the service restarts; its memory is gone
    after.process(
        batch(
            [
                *temps("cr1-th.temp", [-13.0, -13.0] + [-20.0] * 4, start=T0 + 30 * MIN),
                Reading(sensor="cr1-ctrl.door", ts_ms=T0 + 30 * MIN, q=Quality.OK, door_open=False),
            ],
            seq=3,
        )
    )
    rows = breaches(engine)
    high = [r for r in rows if r.kind == "high" and r.level == "critical"]
    assert len(high) == 1 and high[0].start_ms == T0
    assert (high[0].max_value, high[0].end_reason) == (-13.0, "back_in_range")
    (door_row,) = [r for r in rows if r.kind == "door_open"]
    assert (door_row.end_ms, door_row.end_reason) == (T0 + 30 * MIN, "closed")


def test_a_delay_under_way_when_the_service_stops_still_counts_after_the_restart(
    engine: Engine, tmp_path: Path
) -> None:
    """The collector stored what the service had seen; the restarted service replays
    that record, so the 30-minute warning delay counts from the first warm reading."""
    readings_db = tmp_path / "readings.sqlite"
    t0 = (time.time_ns() // 1_000_000 // MIN - 120) * MIN  # the record is the last 48 h
    warm = temps("cr1-th.temp", [-16.5] * 5, start=t0)  # 0 … 20 min
    store = SqliteStore(readings_db)
    store.write([Incoming(batch(warm), T0)], [])
    store.close()
    before = service(engine, history=lambda: SqliteStore(readings_db))
    before.process(batch(warm))
    assert breaches(engine) == []  # 20 minutes: under the delay
    before.stop()
    after = service(engine, history=lambda: SqliteStore(readings_db))
    after.process(batch(temps("cr1-th.temp", [-16.5] * 3, start=t0 + 25 * MIN), seq=2))
    (row,) = breaches(engine)
    assert (row.kind, row.level, row.start_ms) == ("high", "warning", t0)
    assert row.raised_ms == t0 + 30 * MIN


def test_a_silent_sensor_s_open_breaches_end_at_its_last_reading_when_no_data_begins(
    engine: Engine,
) -> None:
    """A critical excursion under way, then nothing more from the sensor: when the
    no-data breach starts, the temperature breaches end at the last reading (reason
    no_data) and their alarms clear; nothing stays open for a sensor that never comes
    back (the service restarts too: still nothing open)."""
    svc = service(engine)
    warm = temps("cr1-th.temp", [-14.0] * 10)  # 0 … 45 min: warning and critical
    svc.process(batch(warm))
    last = warm[-1].ts_ms
    assert {(r.kind, r.end_ms) for r in breaches(engine)} == {("high", None)}
    svc.watch(last + 60 * MIN)  # not yet the no-data time (66 min)
    assert all(r.end_ms is None for r in breaches(engine))
    svc.watch(last + 67 * MIN)
    rows = breaches(engine)
    ended = {(r.kind, r.level): (r.end_ms, r.end_reason) for r in rows if r.kind == "high"}
    assert ended == {
        ("high", "warning"): (last, "no_data"),
        ("high", "critical"): (last, "no_data"),
    }
    (silence,) = [r for r in rows if r.kind == "no_data"]
    assert silence.start_ms == last and silence.end_ms is None
    with Session(engine) as s:
        alarms = {a.breach_id: a for a in s.execute(select(AlarmRow)).scalars()}
    assert all(alarms[r.id].cleared_ms is not None for r in rows if r.kind == "high")
    svc.stop()
    again = service(engine)  # a restart does not bring them back
    again.watch(last + 3 * 60 * MIN)
    assert [r.kind for r in breaches(engine) if r.end_ms is None] == ["no_data"]


def test_an_excursion_whose_readings_go_on_after_a_wall_clock_silence_is_one_breach(
    engine: Engine,
) -> None:
    """The silence was the network's, not the sensor's: its readings arrive afterwards,
    without a gap in edge time; the breach ended at the silence goes on (one breach)."""
    svc = service(engine)
    warm = temps("cr1-th.temp", [-14.0] * 10)
    svc.process(batch(warm))
    svc.watch(warm[-1].ts_ms + 67 * MIN)
    more = temps("cr1-th.temp", [-13.0] * 4, start=warm[-1].ts_ms + 5 * MIN)
    svc.process(batch(more, seq=2))
    critical = [r for r in breaches(engine) if (r.kind, r.level) == ("high", "critical")]
    assert len(critical) == 1 and critical[0].end_ms is None and critical[0].max_value == -13.0


def test_without_a_readings_store_a_delay_under_way_survives_a_restart(engine: Engine) -> None:
    """The demo's way of running: no readings store to replay. What is under way and not
    yet a breach (the warning's 30-minute delay, the door's open time, the minutes
    toward the cumulative allowance) is saved and goes on after the restart."""
    before = service(engine)
    before.process(batch(temps("cr1-th.temp", [-16.5] * 5)))  # 0 … 20 min: under the delay
    door = [
        Reading(sensor="cr1-ctrl.door", ts_ms=T0 + i * 2 * MIN, q=Quality.OK, door_open=True)
        for i in range(3)
    ]
    before.process(batch(door, seq=2))  # open 4 of its 10 minutes
    assert breaches(engine) == []
    before.stop()  # saves what is under way
    after = service(engine)
    after.process(batch(temps("cr1-th.temp", [-16.5] * 3, start=T0 + 25 * MIN), seq=3))
    door = [
        Reading(sensor="cr1-ctrl.door", ts_ms=T0 + (6 + i * 2) * MIN, q=Quality.OK, door_open=True)
        for i in range(3)
    ]
    after.process(batch(door, seq=4))
    rows = {r.kind: r for r in breaches(engine)}
    assert (rows["high"].level, rows["high"].start_ms) == ("warning", T0)
    assert rows["high"].raised_ms == T0 + 30 * MIN
    assert (rows["door_open"].start_ms, rows["door_open"].raised_ms) == (T0, T0 + 10 * MIN)


def test_without_a_readings_store_minutes_toward_the_cumulative_allowance_survive(
    engine: Engine,
) -> None:
    def excursion(start_min: int, seq: int, svc: AlertService) -> None:
        values = [-16.5] * 4 + [-20.0] * 8  # 20 minutes out, then back for 40
        svc.process(batch(temps("cr1-th.temp", values, start=T0 + start_min * MIN), seq=seq))

    before = service(engine)
    for n in range(3):  # 60 minutes: the allowance, not past it
        excursion(n * 60, n + 1, before)
    before.stop()
    after = service(engine)
    excursion(180, 4, after)
    (row,) = breaches(engine)
    assert (row.kind, row.level, row.start_ms) == ("cumulative_high", "warning", T0 + 180 * MIN)


# ---------------------------------------------------------------------- late data and gaps
def test_a_late_backlog_that_fills_a_gap_supersedes_the_no_data_breach(engine: Engine) -> None:
    svc = service(engine)
    live = temps("cr1-th.temp", [-20.0] * 3) + temps(
        "cr1-th.temp", [-20.0] * 3, start=T0 + 100 * MIN
    )
    svc.process(batch(live))
    (gap,) = breaches(engine)
    assert (gap.kind, gap.end_reason) == ("no_data", "data_back")
    backlog = temps("cr1-th.temp", [-20.0] * 17, start=T0 + 15 * MIN)  # 15 … 95 min
    svc.process(batch(backlog, seq=2))
    (row,) = breaches(engine)
    assert row.end_reason == "superseded"  # kept, never deleted
    with Session(engine) as s:
        alarm = s.execute(select(AlarmRow).where(AlarmRow.breach_id == row.id)).scalar_one()
        assert alarm.cleared_ms is not None
    assert svc.counters.superseded == 1


def test_a_gap_while_the_gateway_back_fills_is_judged_only_once_it_has_caught_up(
    engine: Engine,
) -> None:
    svc = service(engine)
    svc.on_status(status("online", T0, stats={"backlog": 0}), now_ms=T0)
    svc.process(batch(temps("cr1-th.temp", [-20.0] * 3)))
    svc.on_status(status("offline", T0, reason="lwt"), now_ms=T0 + 12 * MIN)
    svc.on_status(status("online", T0 + 100 * MIN), now_ms=T0 + 100 * MIN)
    # live readings arrive first; the buffered ones follow through the backlog lane
    svc.process(batch(temps("cr1-th.temp", [-20.0] * 3, start=T0 + 100 * MIN), seq=2))
    svc.process(batch(temps("cr1-th.temp", [-20.0] * 4, start=T0 + 15 * MIN), seq=3))
    assert not [r for r in breaches(engine) if r.kind == "no_data"]  # held, not judged
    svc.on_status(status("online", T0 + 101 * MIN, stats={"backlog": 0}), now_ms=T0 + 101 * MIN)
    # the backlog ended at 30 min: 30 -> 100 min is a real hole in the record (> 66 min)
    (gap,) = [r for r in breaches(engine) if r.kind == "no_data"]
    assert (gap.start_ms, gap.end_ms) == (T0 + 30 * MIN, T0 + 100 * MIN)


def test_a_gateway_offline_too_long_is_one_breach_across_a_restart_and_ends_when_back(
    engine: Engine,
) -> None:
    svc = service(engine)
    svc.on_status(status("online", T0 - MIN, stats={"backlog": 0}), now_ms=T0)
    svc.process(batch(temps("cr1-th.temp", [-20.0] * 3)))  # last heard at T0 + 10 min
    svc.on_status(status("offline", T0 - MIN, reason="lwt"), now_ms=T0 + 11 * MIN)
    svc.watch(T0 + 15 * MIN)
    assert breaches(engine) == []  # 5 minutes: not yet
    svc.watch(T0 + 21 * MIN)
    (row,) = breaches(engine)
    assert (row.kind, row.level, row.sensor, row.start_ms) == (
        "gateway_offline",
        "warning",
        "",
        T0 + 10 * MIN,
    )
    assert json.loads(row.batches) == ["B-APL", "B-YAK"]  # every room the gateway serves
    assert row.site_id == "store"
    svc.stop()
    restarted = service(engine)  # the retained offline status arrives again
    restarted.on_status(status("offline", T0 - MIN, reason="lwt"), now_ms=T0 + 40 * MIN)
    restarted.watch(T0 + 41 * MIN)
    assert len(breaches(engine)) == 1
    restarted.on_status(status("online", T0 + 50 * MIN), now_ms=T0 + 50 * MIN)
    (row,) = breaches(engine)
    assert (row.end_ms, row.end_reason) == (T0 + 50 * MIN, "back_online")


# ---------------------------------------------------------------------- notifications
class Outbox:
    name = "test"

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def send(self, message: Message, recipients: tuple[str, ...]) -> None:
        self.sent.append((message.subject, recipients))


def test_alarms_follow_their_site_policy_and_calibrations_coming_due_are_reminded_once(
    engine: Engine,
) -> None:
    with transaction(engine) as s:
        add_site(
            s,
            Site(id="fleet", name="Fleet", kind="fleet"),
            [
                Location(
                    id="fleet.t1",
                    site_id="fleet",
                    name="Truck 1",
                    kind="truck_compartment",
                    profile_id="frozen-meat",
                )
            ],
            actor="qa",
        )
    with transaction(engine) as s:
        assign_sensor(
            s, gateway="truck-1", sensor="t1.air", location_id="fleet.t1", from_ms=0, actor="qa"
        )
    with transaction(engine) as s:
        record_calibration(
            s,
            Calibration(
                gateway=GW,
                sensor="cr1-th.temp",
                calibrated_ms=T0 - 360 * DAY,
                reference_instrument="reference thermometer",
                correction_c=0.0,
                next_due_ms=T0 + 5 * DAY,
            ),
            actor="quality.wang",
        )
    outbox = Outbox()
    routes = {
        name: (Route("test", name, "en"),) for name in ("operator", "dispatcher", "quality", "lead")
    }
    svc = service(
        engine,
        escalation=Escalation(
            policy=Policy(steps=(Step(0, ("operator",)),), repeat_min=None),
            routes=routes,
            channels={"test": outbox},
            site_policies={"fleet": Policy(steps=(Step(0, ("dispatcher",)),), repeat_min=None)},
        ),
    )
    svc.process(batch(temps("cr1-th.temp", [-14.0] * 5)))  # critical: > -15 °C for 15 min
    svc.process(batch(temps("t1.air", [-14.0] * 5), gateway="truck-1"))
    svc._tick()
    svc._next_tick = 0.0
    svc._tick()  # a second tick queues nothing again
    subjects = sorted(outbox.sent)
    assert [s for s in subjects if s[0].startswith("[Critical]")] == [
        ("[Critical] High · Frozen room", ("operator",)),
        ("[Critical] High · Truck 1", ("dispatcher",)),
    ]
    reminders = [s for s in subjects if s[0].startswith("CALIBRATION")]
    assert reminders == [(reminders[0][0], ("operator",))]
    assert "store-gw/cr1-th.temp" in reminders[0][0]
    with Session(engine) as s:
        keys = list(s.execute(select(NotificationRow.key)).scalars())
    assert len([k for k in keys if k.startswith("calibration|")]) == 1


# ---------------------------------------------------------------------- end to end
@pytest.fixture
def alerts_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    upgrade(url)
    return url


@pytest.mark.e2e
def test_a_gateway_killed_under_a_real_broker_is_one_offline_breach_that_ends_when_it_is_back(
    make_setup: Callable[[Broker], Setup], running_broker: Broker, alerts_url: str, unique: str
) -> None:
    setup = make_setup(running_broker, record=False)
    engine = make_engine(alerts_url)
    seed(engine, gateway=setup.gw, site=setup.site)
    alarms: list[str] = []
    svc = AlertService(
        engine,
        MqttConfig(port=running_broker.port),
        client_id=f"alerts-{unique}",
        sites=(setup.site,),
        time_scale=60.0,  # the 10-minute offline delay is 10 s here
        on_alarm=alarms.append,
    )
    svc.start()
    try:
        setup.gateway.start()
        wait_for(lambda: svc.counters.readings > 20, 30, "readings evaluated")
        setup.gateway.kill9()  # the broker sends its will after 1.5 x keepalive (5 s)
        wait_for(
            lambda: any(r.kind == "gateway_offline" for r in breaches(engine)),
            40,
            "gateway offline breach",
        )
        (row,) = [r for r in breaches(engine) if r.kind == "gateway_offline"]
        assert row.end_ms is None and json.loads(row.batches) == ["B-APL", "B-YAK"]
        wait_for(  # the alarm is announced right after its breach is stored
            lambda: any("gateway_offline" in line and "B-YAK" in line for line in alarms),
            10,
            "the offline alarm announced",
        )
        setup.gateway.start()
        wait_for(lambda: all(r.end_ms is not None for r in breaches(engine)), 40, "breaches ended")
        offline = [r for r in breaches(engine) if r.kind == "gateway_offline"]
        assert len(offline) == 1 and offline[0].end_reason == "back_online"
        assert offline[0].end_ms is not None and offline[0].end_ms > offline[0].start_ms
    finally:
        svc.stop()
        engine.dispose()
