"""Operations on the alert service's store. Every change that matters is written together
with its audit row (same transaction): who, when, old value, new value, reason."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from alerts.audit import now_ms, record
from alerts.lifecycle import Alarm, State, acknowledge, clear
from alerts.models import (
    AlarmRow,
    Batch,
    BreachRow,
    Calibration,
    Location,
    ProfileRow,
    SensorAssignment,
    Site,
    Stay,
)
from alerts.profiles import ProductProfile
from alerts.rules import Breach, Level

TRACE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud, typed by hand


class RepoError(ValueError):
    """A change the data does not allow, with what is wrong."""


def new_trace_code() -> str:
    """The public code on a batch's QR label: 12 characters, unguessable (60 bits)."""
    return "".join(secrets.choice(TRACE_ALPHABET) for _ in range(12))


def save_profile(engine: Engine, profile: ProductProfile, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise RepoError("a profile change needs a reason")
    body = profile.model_dump_json()
    with Session(engine) as s, s.begin():
        row = s.get(ProfileRow, profile.id)
        old = None if row is None else json.loads(row.body)
        if row is None:
            s.add(ProfileRow(id=profile.id, body=body))
        else:
            row.body = body
        record(
            s,
            actor=actor,
            action="profile.save",
            entity="profile",
            entity_id=profile.id,
            old=old,
            new=json.loads(body),
            reason=reason,
        )


def load_profile(engine: Engine, profile_id: str) -> ProductProfile:
    with Session(engine) as s:
        row = s.get(ProfileRow, profile_id)
        if row is None:
            raise RepoError(f"no profile {profile_id!r}")
        return ProductProfile.model_validate_json(row.body)


def add_site(engine: Engine, site: Site, locations: list[Location], *, actor: str) -> None:
    with Session(engine) as s, s.begin():
        s.add(site)
        s.flush()  # the site row first: locations refer to it
        s.add_all(locations)
        record(
            s,
            actor=actor,
            action="site.add",
            entity="site",
            entity_id=site.id,
            new={"name": site.name, "locations": [loc.id for loc in locations]},
        )


def assign_sensor(
    engine: Engine,
    *,
    gateway: str,
    sensor: str,
    location_id: str,
    from_ms: int,
    actor: str,
    role: str = "air",
) -> None:
    """The sensor measures this location from ``from_ms`` on (its previous assignment
    ends there)."""
    with Session(engine) as s, s.begin():
        current = s.execute(
            select(SensorAssignment).where(
                SensorAssignment.gateway == gateway,
                SensorAssignment.sensor == sensor,
                SensorAssignment.until_ms.is_(None),
            )
        ).scalar_one_or_none()
        old = None
        if current is not None:
            if from_ms <= current.from_ms:
                raise RepoError(f"{gateway}/{sensor} is assigned since {current.from_ms}")
            current.until_ms = from_ms
            old = {"location": current.location_id}
        s.add(
            SensorAssignment(
                gateway=gateway, sensor=sensor, location_id=location_id, role=role, from_ms=from_ms
            )
        )
        record(
            s,
            actor=actor,
            action="sensor.assign",
            entity="sensor",
            entity_id=f"{gateway}/{sensor}",
            old=old,
            new={"location": location_id, "role": role, "from_ms": from_ms},
        )


def location_of(engine: Engine, gateway: str, sensor: str, at_ms: int) -> str | None:
    with Session(engine) as s:
        return _location_of(s, gateway, sensor, at_ms)


def _location_of(s: Session, gateway: str, sensor: str, at_ms: int) -> str | None:
    return s.execute(
        select(SensorAssignment.location_id).where(
            SensorAssignment.gateway == gateway,
            SensorAssignment.sensor == sensor,
            SensorAssignment.from_ms <= at_ms,
            or_(SensorAssignment.until_ms.is_(None), SensorAssignment.until_ms > at_ms),
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class NewBatch:
    id: str
    profile_id: str
    product: str
    quantity: float
    unit: str
    origin_producer: str
    origin_village: str | None = None
    origin_county: str | None = None


def create_batch(
    engine: Engine,
    batch: NewBatch,
    *,
    into_location: str,
    at_ms: int,
    by: str,
    temp_c: float | None,
) -> str:
    """Register a batch and its first stay (into store); returns its public trace code."""
    code = new_trace_code()
    with Session(engine) as s, s.begin():
        if s.get(ProfileRow, batch.profile_id) is None:
            raise RepoError(f"no profile {batch.profile_id!r}: save it first")
        s.add(
            Batch(
                id=batch.id,
                profile_id=batch.profile_id,
                product=batch.product,
                quantity=batch.quantity,
                unit=batch.unit,
                origin_producer=batch.origin_producer,
                origin_village=batch.origin_village,
                origin_county=batch.origin_county,
                trace_code=code,
                created_ms=at_ms,
            )
        )
        s.flush()
        s.add(
            Stay(
                batch_id=batch.id,
                location_id=into_location,
                from_ms=at_ms,
                handed_over_by=by,
                temp_at_handover_c=temp_c,
                event="into_store",
            )
        )
        record(
            s,
            actor=by,
            action="batch.create",
            entity="batch",
            entity_id=batch.id,
            new={**batch.__dict__, "location": into_location, "at_ms": at_ms, "temp_c": temp_c},
            ts_ms=None,
        )
    return code


def handover(
    engine: Engine,
    batch_id: str,
    *,
    to_location: str | None,
    at_ms: int,
    by: str,
    temp_c: float | None,
    event: str,
) -> None:
    """Custody moves: the current stay ends at ``at_ms`` and, unless the batch is
    delivered (``to_location`` None), a new one begins there. Records who, where, when and
    the temperature at that moment."""
    if not by.strip():
        raise RepoError("a handover needs the person who did it")
    with Session(engine) as s, s.begin():
        current = s.execute(
            select(Stay).where(Stay.batch_id == batch_id, Stay.until_ms.is_(None))
        ).scalar_one_or_none()
        if current is None:
            raise RepoError(f"batch {batch_id} is not in anyone's custody (delivered?)")
        if at_ms <= current.from_ms:
            raise RepoError(
                f"handover at {at_ms} is not after the batch arrived in "
                f"{current.location_id} at {current.from_ms}"
            )
        current.until_ms = at_ms
        if to_location is not None:
            s.add(
                Stay(
                    batch_id=batch_id,
                    location_id=to_location,
                    from_ms=at_ms,
                    handed_over_by=by,
                    temp_at_handover_c=temp_c,
                    event=event,
                )
            )
        record(
            s,
            actor=by,
            action=f"custody.{event}",
            entity="batch",
            entity_id=batch_id,
            old={"location": current.location_id},
            new={"location": to_location, "at_ms": at_ms, "temp_c": temp_c},
        )


def batches_in(engine: Engine, location_id: str, start_ms: int, end_ms: int | None) -> list[str]:
    """Batches that were in the location at any moment of [start, end)."""
    with Session(engine) as s:
        return _batches_in(s, location_id, start_ms, end_ms)


def _batches_in(s: Session, location_id: str, start_ms: int, end_ms: int | None) -> list[str]:
    query = select(Stay.batch_id).where(
        Stay.location_id == location_id, or_(Stay.until_ms.is_(None), Stay.until_ms > start_ms)
    )
    if end_ms is not None:
        query = query.where(Stay.from_ms < end_ms)
    return sorted(set(s.execute(query).scalars()))


def journey(engine: Engine, batch_id: str) -> list[Stay]:
    with Session(engine) as s:
        stays = list(
            s.execute(
                select(Stay).where(Stay.batch_id == batch_id).order_by(Stay.from_ms)
            ).scalars()
        )
        for stay in stays:
            s.expunge(stay)
        return stays


def upsert_breach(engine: Engine, gateway: str, breach: Breach) -> BreachRow:
    """Store a breach by its identity (a late re-evaluation updates, never duplicates),
    naming its location and the batches that were there during it."""
    with Session(engine) as s, s.begin():
        location = _location_of(s, gateway, breach.sensor, breach.start_ts_ms)
        batches = (
            []
            if location is None
            else _batches_in(s, location, breach.start_ts_ms, breach.end_ts_ms)
        )
        row = s.execute(
            select(BreachRow).where(
                BreachRow.gateway == gateway,
                BreachRow.sensor == breach.sensor,
                BreachRow.kind == breach.kind.value,
                BreachRow.level == breach.level.value,
                BreachRow.start_ms == breach.start_ts_ms,
            )
        ).scalar_one_or_none()
        if row is None:
            row = BreachRow(
                gateway=gateway,
                sensor=breach.sensor,
                kind=breach.kind.value,
                level=breach.level.value,
                start_ms=breach.start_ts_ms,
                raised_ms=breach.raised_ts_ms,
                settings=json.dumps(breach.settings, sort_keys=True),
            )
            s.add(row)
        row.end_ms, row.end_reason = breach.end_ts_ms, breach.end_reason
        row.min_value, row.max_value = breach.min_value, breach.max_value
        row.location_id, row.batches = location, json.dumps(batches)
        s.flush()
        s.expunge(row)
        return row


def record_calibration(engine: Engine, cal: Calibration, *, actor: str) -> None:
    with Session(engine) as s, s.begin():
        s.add(cal)
        record(
            s,
            actor=actor,
            action="calibration.record",
            entity="sensor",
            entity_id=f"{cal.gateway}/{cal.sensor}",
            new={
                "calibrated_ms": cal.calibrated_ms,
                "reference": cal.reference_instrument,
                "correction_c": cal.correction_c,
                "certificate": cal.certificate,
                "next_due_ms": cal.next_due_ms,
            },
        )


@dataclass(frozen=True)
class CalibrationInForce:
    correction_c: float
    calibration_id: int | None
    overdue: bool


def calibration_at(engine: Engine, gateway: str, sensor: str, at_ms: int) -> CalibrationInForce:
    """The correction in force at a reading's time (readings stay raw in the store), and
    whether the sensor was overdue then (reports flag such data)."""
    with Session(engine) as s:
        cal = s.execute(
            select(Calibration)
            .where(
                Calibration.gateway == gateway,
                Calibration.sensor == sensor,
                Calibration.calibrated_ms <= at_ms,
            )
            .order_by(Calibration.calibrated_ms.desc())
            .limit(1)
        ).scalar_one_or_none()
        if cal is None:
            return CalibrationInForce(0.0, None, overdue=True)
        return CalibrationInForce(cal.correction_c, cal.id, overdue=at_ms > cal.next_due_ms)


def calibrations_due(
    engine: Engine, now: int | None = None, within_ms: int = 14 * 86_400_000
) -> list[tuple[str, str, int]]:
    """(gateway, sensor, next_due_ms) of the latest calibrations coming due: reminders."""
    current = now_ms() if now is None else now
    with Session(engine) as s:
        latest: dict[tuple[str, str], Calibration] = {}
        for cal in s.execute(select(Calibration).order_by(Calibration.calibrated_ms)).scalars():
            latest[(cal.gateway, cal.sensor)] = cal
    return sorted(
        (g, sen, c.next_due_ms)
        for (g, sen), c in latest.items()
        if c.next_due_ms <= current + within_ms
    )


def alarm_of(row: AlarmRow) -> Alarm:
    return Alarm(
        id=str(row.id),
        level=Level(row.level),
        raised_ms=row.raised_ms,
        state=State(row.state),
        acknowledged_by=row.acknowledged_by,
        ack_comment=row.ack_comment,
        acknowledged_ms=row.acknowledged_ms,
        cleared_ms=row.cleared_ms,
        closed_ms=row.closed_ms,
    )


def _store_alarm(row: AlarmRow, alarm: Alarm) -> None:
    row.state, row.acknowledged_by, row.ack_comment = (
        alarm.state.value,
        alarm.acknowledged_by,
        alarm.ack_comment,
    )
    row.acknowledged_ms, row.cleared_ms, row.closed_ms = (
        alarm.acknowledged_ms,
        alarm.cleared_ms,
        alarm.closed_ms,
    )


def sync_alarm(engine: Engine, breach: BreachRow, now: int | None = None) -> tuple[AlarmRow, bool]:
    """The alarm of a stored breach: raised once (returns True the first time), cleared
    when the breach has ended."""
    current = now_ms() if now is None else now
    with Session(engine) as s, s.begin():
        row = s.execute(
            select(AlarmRow).where(AlarmRow.breach_id == breach.id)
        ).scalar_one_or_none()
        created = row is None
        if row is None:
            row = AlarmRow(
                breach_id=breach.id,
                level=breach.level,
                state=State.ACTIVE.value,
                raised_ms=breach.raised_ms,
            )
            s.add(row)
        if breach.end_ms is not None:
            alarm = clear(alarm_of(row), current)
            _store_alarm(row, alarm)
        s.flush()
        s.expunge(row)
        return row, created


def acknowledge_alarm(
    engine: Engine, alarm_id: int, *, user: str, comment: str, now: int | None = None
) -> AlarmRow:
    """A named user acknowledges with a comment (refused without one); audited."""
    current = now_ms() if now is None else now
    with Session(engine) as s, s.begin():
        row = s.get(AlarmRow, alarm_id)
        if row is None:
            raise RepoError(f"no alarm {alarm_id}")
        before = row.state
        alarm = acknowledge(alarm_of(row), user, comment, current)
        _store_alarm(row, alarm)
        record(
            s,
            actor=user,
            action="alarm.acknowledge",
            entity="alarm",
            entity_id=str(alarm_id),
            old={"state": before},
            new={"state": alarm.state.value, "comment": comment},
            ts_ms=current,
        )
        s.flush()
        s.expunge(row)
        return row
