"""The alert service's store on SQLite and a real PostgreSQL: custody, which batches a
breach concerns, breach upserts, calibrations, and the audit trail behind every change."""

from __future__ import annotations

import json

import pytest

from alerts.audit import verify
from alerts.calibration import calibration_at, calibrations_due
from alerts.db import make_engine, transaction, upgrade
from alerts.errors import DomainError
from alerts.models import Calibration, Location, Site
from alerts.profiles import load_profiles
from alerts.repo import (
    NewBatch,
    add_site,
    assign_sensor,
    batches_in,
    create_batch,
    handover,
    journey,
    load_profile,
    save_profile,
    upsert_breach,
)
from coldchain.judging.breach import Level, Point
from coldchain.judging.rules import evaluate

MIN = 60_000
H = 60 * MIN
T0 = 1_795_392_000_000


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    upgrade(db_url)
    engine = make_engine(db_url)
    frozen = load_profiles()["frozen-meat"]
    with transaction(engine) as s:
        save_profile(s, frozen, actor="quality.zhao", reason="seed profiles (DOMAIN.md)")
    with transaction(engine) as s:
        add_site(
            s,
            Site(id="county-store", name="County cold store", kind="cold_store", county="Linxia"),
            [
                Location(
                    id="cr1",
                    site_id="county-store",
                    name="Cold room 1 (frozen)",
                    kind="cold_room",
                    door_open_max_min=10.0,
                )
            ],
            actor="admin",
        )
    with transaction(engine) as s:
        add_site(
            s,
            Site(id="county-fleet", name="Fleet", kind="fleet"),
            [
                Location(
                    id="truck-01.front",
                    site_id="county-fleet",
                    name="Truck 01 front",
                    kind="truck_compartment",
                    door_open_max_min=5.0,
                )
            ],
            actor="admin",
        )
    with transaction(engine) as s:
        assign_sensor(
            s,
            gateway="store-gw",
            sensor="cr1-th.temp",
            location_id="cr1",
            from_ms=T0 - 24 * H,
            actor="admin",
        )
    yield engine
    engine.dispose()


def yak_batch(batch_id: str) -> NewBatch:
    return NewBatch(
        id=batch_id,
        profile_id="frozen-meat",
        product="frozen yak meat",
        quantity=1200,
        unit="kg",
        origin_producer="Gahai yak cooperative",
        origin_village="Gahai",
        origin_county="Luqu",
    )


def test_a_breach_names_the_batches_in_the_room_during_it(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        code = create_batch(
            s, yak_batch("B-0042"), into_location="cr1", at_ms=T0, by="li.wei", temp_c=-19.5
        )
    assert len(code) == 12
    with transaction(engine) as s:
        create_batch(
            s,
            yak_batch("B-0043"),
            into_location="cr1",
            at_ms=T0 + 3 * H,
            by="li.wei",
            temp_c=-19.8,
        )
    with transaction(engine) as s:
        handover(
            s,
            "B-0042",
            to_location="truck-01.front",
            at_ms=T0 + 2 * H,
            by="driver.ma",
            temp_c=-18.9,
            event="loaded",
        )
    with transaction(engine) as s:
        profile = load_profile(s, "frozen-meat")
    levels = {Level.WARNING: profile.warning, Level.CRITICAL: profile.critical}
    # compressor failure in cold room 1 from 1 h to 2 h 30
    readings = [Point(T0 + i * 5 * MIN, -20.0 if i < 12 or i >= 30 else -12.0) for i in range(48)]
    breaches = evaluate("cr1-th.temp", readings, levels)
    with transaction(engine) as s:
        rows = [upsert_breach(s, "store-gw", b) for b in breaches]
    assert {r.location_id for r in rows} == {"cr1"}
    # B-0042 left at 2 h (during the breach); B-0043 arrived at 3 h (after it)
    assert all(json.loads(r.batches) == ["B-0042"] for r in rows)
    with transaction(engine) as s:
        assert [(s.location_id, s.event) for s in journey(s, "B-0042")] == [
            ("cr1", "into_store"),
            ("truck-01.front", "loaded"),
        ]


def test_re_evaluation_updates_a_breach_and_never_duplicates_it(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        profile = load_profile(s, "frozen-meat")
    levels = {Level.WARNING: profile.warning, Level.CRITICAL: profile.critical}
    warm = [Point(T0 + i * 5 * MIN, -12.0) for i in range(12)]
    first = evaluate("cr1-th.temp", warm, levels)
    for b in first:
        with transaction(engine) as s:
            upsert_breach(s, "store-gw", b)
    later = warm + [Point(T0 + (12 + i) * 5 * MIN, -20.0) for i in range(6)]
    for b in evaluate("cr1-th.temp", later, levels):
        with transaction(engine) as s:
            upsert_breach(s, "store-gw", b)
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT level, end_ms FROM breaches ORDER BY level")).all()
    assert len(rows) == 2
    assert all(end is not None for _, end in rows)


def test_custody_rules_are_enforced(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        create_batch(
            s, yak_batch("B-0050"), into_location="cr1", at_ms=T0, by="li.wei", temp_c=-19.0
        )
    with pytest.raises(DomainError, match="not after"), transaction(engine) as s:
        handover(
            s,
            "B-0050",
            to_location="truck-01.front",
            at_ms=T0 - MIN,
            by="ma",
            temp_c=-19.0,
            event="loaded",
        )
    with pytest.raises(DomainError, match="needs the person"), transaction(engine) as s:
        handover(
            s,
            "B-0050",
            to_location="truck-01.front",
            at_ms=T0 + H,
            by=" ",
            temp_c=-19.0,
            event="loaded",
        )
    with transaction(engine) as s:
        handover(
            s,
            "B-0050",
            to_location=None,
            at_ms=T0 + H,
            by="buyer.sun",
            temp_c=-18.7,
            event="delivered",
        )
    with pytest.raises(DomainError, match="delivered"), transaction(engine) as s:
        handover(
            s,
            "B-0050",
            to_location="cr1",
            at_ms=T0 + 2 * H,
            by="li.wei",
            temp_c=None,
            event="returned",
        )
    with transaction(engine) as s:
        assert batches_in(s, "cr1", T0 + 2 * H, None) == []


def test_calibration_in_force_overdue_and_reminders(engine) -> None:  # type: ignore[no-untyped-def]
    from alerts.calibration import record_calibration

    day = 24 * H
    with transaction(engine) as s:
        record_calibration(
            s,
            Calibration(
                gateway="store-gw",
                sensor="cr1-th.temp",
                calibrated_ms=T0,
                reference_instrument="Fluke 1524 #A123",
                correction_c=-0.3,
                certificate="certs/2026-cr1.pdf",
                next_due_ms=T0 + 180 * day,
            ),
            actor="metrology.qian",
        )
    with transaction(engine) as s:
        before = calibration_at(s, "store-gw", "cr1-th.temp", T0 - day)
    assert before.calibration_id is None and before.overdue
    with transaction(engine) as s:
        during = calibration_at(s, "store-gw", "cr1-th.temp", T0 + 10 * day)
    assert (during.correction_c, during.overdue) == (-0.3, False)
    with transaction(engine) as s:
        after = calibration_at(s, "store-gw", "cr1-th.temp", T0 + 200 * day)
    assert after.overdue
    with transaction(engine) as s:
        assert calibrations_due(s, now=T0 + 170 * day) == [
            ("store-gw", "cr1-th.temp", T0 + 180 * day)
        ]
    with transaction(engine) as s:
        assert calibrations_due(s, now=T0 + 10 * day) == []


def test_every_change_is_in_an_intact_audit_trail(engine) -> None:  # type: ignore[no-untyped-def]
    with transaction(engine) as s:
        frozen = load_profile(s, "frozen-meat")
    changed = frozen.model_copy(
        update={"warning": frozen.warning.model_copy(update={"delay_min": 20.0})}
    )
    with pytest.raises(DomainError, match="needs a reason"), transaction(engine) as s:
        save_profile(s, changed, actor="quality.zhao", reason="")
    with transaction(engine) as s:
        save_profile(s, changed, actor="quality.zhao", reason="buyer contract 2027 asks 20 min")
    from sqlalchemy import text

    with engine.connect() as conn:
        old, new, reason = conn.execute(
            text(
                "SELECT old_value, new_value, reason FROM audit_log WHERE action = 'profile.save' "
                "ORDER BY id DESC LIMIT 1"
            )
        ).one()
        actions = [a for (a,) in conn.execute(text("SELECT action FROM audit_log ORDER BY id"))]
    assert json.loads(old)["warning"]["delay_min"] == 30.0
    assert json.loads(new)["warning"]["delay_min"] == 20.0
    assert reason == "buyer contract 2027 asks 20 min"
    assert actions[:4] == ["profile.save", "site.add", "site.add", "sensor.assign"]
    assert verify(engine) == []


def test_alarm_is_raised_once_acknowledged_with_a_comment_and_closed_when_cleared(
    engine,  # type: ignore[no-untyped-def]
) -> None:
    from alerts.lifecycle import LifecycleError
    from alerts.repo import acknowledge_alarm, sync_alarm

    with transaction(engine) as s:
        profile = load_profile(s, "frozen-meat")
    levels = {Level.WARNING: profile.warning, Level.CRITICAL: profile.critical}
    warm = [Point(T0 + i * 5 * MIN, -12.0) for i in range(8)]
    critical = next(b for b in evaluate("cr1-th.temp", warm, levels) if b.level is Level.CRITICAL)
    with transaction(engine) as s:
        alarm, created = sync_alarm(s, upsert_breach(s, "store-gw", critical), now=T0 + 40 * MIN)
    with transaction(engine) as s:
        again, created_again = sync_alarm(
            s, upsert_breach(s, "store-gw", critical), now=T0 + 41 * MIN
        )
    assert created and not created_again
    assert again.id == alarm.id and alarm.state == "active"
    with pytest.raises(LifecycleError, match="needs a comment"), transaction(engine) as s:
        acknowledge_alarm(s, alarm.id, user="li.wei", comment="", now=T0 + 45 * MIN)
    with transaction(engine) as s:
        acked = acknowledge_alarm(
            s,
            alarm.id,
            user="li.wei",
            comment="compressor restarted, product checked at -16 °C",
            now=T0 + 45 * MIN,
        )
    assert acked.state == "acknowledged"
    cooled = warm + [Point(T0 + (8 + i) * 5 * MIN, -20.0) for i in range(4)]
    critical = next(b for b in evaluate("cr1-th.temp", cooled, levels) if b.level is Level.CRITICAL)
    with transaction(engine) as s:
        closed, _ = sync_alarm(s, upsert_breach(s, "store-gw", critical), now=T0 + 60 * MIN)
    assert closed.state == "closed" and closed.acknowledged_by == "li.wei"
    from sqlalchemy import text

    with engine.connect() as conn:
        comment = conn.execute(
            text("SELECT new_value FROM audit_log WHERE action = 'alarm.acknowledge'")
        ).scalar_one()
    assert "compressor restarted" in json.loads(comment)["comment"]
    assert verify(engine) == []
