"""A batch's journey report against real databases: the readings from a collector SQLite
store, everything else from the alert service's store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.calibration import record_calibration
from alerts.db import make_engine, transaction, upgrade
from alerts.models import AlarmRow, Calibration, Location, Site
from alerts.profiles import load_profiles
from alerts.repo import (
    NewBatch,
    acknowledge_alarm,
    add_site,
    assign_sensor,
    create_batch,
    handover,
    save_profile,
    sync_alarm,
    upsert_breach,
)
from alerts.report import batch_report, render_text
from coldchain import wire
from coldchain.judging.breach import Breach, Kind, Level
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector.sqlite_store import SqliteStore
from collector.store import Incoming

MIN = 60_000
DAY = 86_400_000
T0 = 1_795_392_000_000


def readings(sensor: str, start: int, minutes: int, value: float) -> list[Reading]:
    return [
        Reading(sensor=sensor, ts_ms=start + m * MIN, q=Quality.OK, temp_c=value)
        for m in range(0, minutes, 5)
    ]


@pytest.fixture
def journey(db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """Chilled beef: two hours in cold room 2 (probe reads 3.0 °C raw, calibrated +0.5),
    then 30 minutes in a truck at 6 °C whose sensor was never calibrated."""
    upgrade(db_url)
    engine = make_engine(db_url)
    with transaction(engine) as s:
        save_profile(s, load_profiles()["chilled-meat"], actor="qa", reason="test")
    with transaction(engine) as s:
        add_site(
            s,
            Site(id="store", name="Store", kind="cold_store"),
            [
                Location(
                    id="cr2",
                    site_id="store",
                    name="Cold room 2",
                    kind="cold_room",
                    profile_id="chilled-meat",
                ),
                Location(
                    id="t1.rear",
                    site_id="store",
                    name="Truck 1 rear",
                    kind="truck_compartment",
                    profile_id="chilled-meat",
                ),
            ],
            actor="qa",
        )
    for gateway, sensor, loc, role in (
        ("store-gw", "cr2-ctrl.air", "cr2", "air"),
        ("store-gw", "cr2-probe.temp", "cr2", "product"),
        ("truck-1", "t1-rear.temp", "t1.rear", "air"),
    ):
        with transaction(engine) as s:
            assign_sensor(
                s,
                gateway=gateway,
                sensor=sensor,
                location_id=loc,
                from_ms=T0 - DAY,
                actor="qa",
                role=role,
            )
    with transaction(engine) as s:
        record_calibration(
            s,
            Calibration(
                gateway="store-gw",
                sensor="cr2-probe.temp",
                calibrated_ms=T0 - 30 * DAY,
                reference_instrument="reference thermometer",
                correction_c=0.5,
                certificate="CAL-2026-118.pdf",
                next_due_ms=T0 + 300 * DAY,
            ),
            actor="quality.wang",
        )
    with transaction(engine) as s:
        create_batch(
            s,
            NewBatch(
                "B-BEEF", "chilled-meat", "chilled beef", 620, "kg", "Linxia beef cooperative"
            ),
            into_location="cr2",
            at_ms=T0,
            by="warehouse.li",
            temp_c=3.4,
        )
    with transaction(engine) as s:
        handover(
            s,
            "B-BEEF",
            to_location="t1.rear",
            at_ms=T0 + 120 * MIN,
            by="driver.ma",
            temp_c=3.6,
            event="loaded",
        )
    with transaction(engine) as s:
        handover(
            s,
            "B-BEEF",
            to_location=None,
            at_ms=T0 + 150 * MIN,
            by="driver.ma",
            temp_c=6.1,
            event="delivered",
        )
    breach = Breach("cr2-ctrl.air", Kind.DOOR_OPEN, Level.WARNING, T0 + 30 * MIN, T0 + 40 * MIN)
    breach.end_ts_ms, breach.end_reason = T0 + 45 * MIN, "closed"
    with transaction(engine) as s:
        row = upsert_breach(s, "store-gw", breach)
    with transaction(engine) as s:
        alarm, _ = sync_alarm(s, row, now=T0 + 41 * MIN)
    with transaction(engine) as s:
        acknowledge_alarm(
            s, alarm.id, user="operator.zhang", comment="loading, door closed", now=T0 + 42 * MIN
        )
    engine.dispose()
    store = SqliteStore(tmp_path / "coldchain.sqlite")
    for seq, (gateway, rs) in enumerate(
        [
            ("store-gw", readings("cr2-probe.temp", T0, 120, 3.0)),
            ("store-gw", readings("cr2-ctrl.air", T0, 120, 2.0)),
            ("truck-1", readings("t1-rear.temp", T0 + 120 * MIN, 30, 6.0)),
        ],
        start=1,
    ):
        store.write(
            [
                Incoming(
                    ReadingsBatch(
                        v=wire.SCHEMA_VERSION,
                        gateway=gateway,
                        site="store",
                        epoch=1,
                        seq=seq,
                        readings=rs,
                    ),
                    T0,
                )
            ],
            [],
        )
    store.close()
    return db_url, tmp_path / "coldchain.sqlite"


def test_report_applies_the_calibration_in_force_and_flags_an_uncalibrated_sensor(
    journey: tuple[str, Path],
) -> None:
    db_url, readings_db = journey
    engine = make_engine(db_url)
    store = SqliteStore(readings_db)
    try:
        report = batch_report(engine, store, "B-BEEF", now_ms=T0 + DAY)
        again = batch_report(engine, store, "B-BEEF", now_ms=T0 + DAY)
    finally:
        store.close()
        engine.dispose()
    room, truck = report.stays
    # the product probe is the batch's temperature where there is one
    assert [(u.sensor, u.primary) for u in room.sensors] == [
        ("cr2-probe.temp", True),
        ("cr2-ctrl.air", False),
    ]
    assert {p.value for p in room.points} == {3.5}  # 3.0 raw + 0.5 correction
    assert room.sensors[0].calibration.certificate == "CAL-2026-118.pdf"
    assert not room.sensors[0].overdue
    assert truck.sensors[0].overdue and truck.sensors[0].calibration.calibration_id is None
    assert any("t1-rear.temp" in flag for flag in report.flags)
    assert (truck.handed_over_by, truck.temp_at_handover_c) == ("driver.ma", 3.6)
    # readings at 6 °C from 120 to 145 min, each standing for the time to the next: 25
    # minutes out of the warning range and in the 5-60 °C zone
    assert report.verdict.out_of_range_ms[Level.WARNING] == 25 * MIN
    assert report.verdict.danger_ms == 25 * MIN
    assert report.verdict.disposition is not None
    assert report.verdict.mkt_c is not None and 3.5 < report.verdict.mkt_c < 6.0
    (door,) = report.breaches
    assert (door.acknowledged_by, door.ack_comment) == ("operator.zhang", "loading, door closed")
    assert len(report.data_sha256) == 64 and report.data_sha256 == again.data_sha256
    text = render_text(report)
    assert "calibration #" in text and "OVERDUE" in text and "loading, door closed" in text


def test_report_command_prints_text_and_json(journey: tuple[str, Path]) -> None:
    db_url, readings_db = journey
    base = [sys.executable, "-m", "ops.cli", "report", "B-BEEF", "--db-url", db_url]
    text = subprocess.run(
        [*base, "--db", str(readings_db)], capture_output=True, text=True, timeout=60
    )
    assert text.returncode == 0, text.stderr
    assert "Batch B-BEEF: chilled beef" in text.stdout and "Verdict:" in text.stdout
    as_json = subprocess.run(
        [*base, "--db", str(readings_db), "--json"], capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["batch_id"] == "B-BEEF" and len(data["stays"]) == 2
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "report",
            "B-NONE",
            "--db-url",
            db_url,
            "--db",
            str(readings_db),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no batch 'B-NONE'" in missing.stderr


def test_alarm_rows_keep_the_acknowledgement_the_report_shows(journey: tuple[str, Path]) -> None:
    db_url, _ = journey
    engine = make_engine(db_url)
    with Session(engine) as s:
        alarm = s.execute(select(AlarmRow)).scalar_one()
        assert (alarm.state, alarm.acknowledged_by) == ("closed", "operator.zhang")
    engine.dispose()
