"""Operations on the alert service's store. Every change that matters is written together
with its audit row (same transaction): who, when, old value, new value, reason."""

from __future__ import annotations

import bisect
import json
import secrets
from collections.abc import Sequence
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
from alerts.rules import Breach, Kind, Level

#: the sensor name of a breach of a whole gateway (offline)
GATEWAY_WIDE = ""

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


def _gateway_locations(s: Session, gateway: str, start_ms: int, end_ms: int | None) -> list[str]:
    """The locations any sensor of the gateway measured during [start, end)."""
    query = select(SensorAssignment.location_id).where(
        SensorAssignment.gateway == gateway,
        or_(SensorAssignment.until_ms.is_(None), SensorAssignment.until_ms > start_ms),
    )
    if end_ms is not None:
        query = query.where(SensorAssignment.from_ms < end_ms)
    return sorted(set(s.execute(query).scalars()))


def _stored(s: Session, gateway: str, breach: Breach) -> BreachRow | None:
    """The stored row with the breach's identity, if any."""
    return s.execute(
        select(BreachRow).where(
            BreachRow.gateway == gateway,
            BreachRow.sensor == breach.sensor,
            BreachRow.kind == breach.kind.value,
            BreachRow.level == breach.level.value,
            BreachRow.start_ms == breach.start_ts_ms,
        )
    ).scalar_one_or_none()


def upsert_breach(engine: Engine, gateway: str, breach: Breach) -> BreachRow:
    """Store a breach by its identity (a late re-evaluation updates, never duplicates),
    naming its location, its site and the batches that were there during it. A
    gateway-wide breach (``sensor`` empty: the gateway went offline) names the batches in
    every location the gateway's sensors measure."""
    with Session(engine) as s, s.begin():
        if breach.sensor == GATEWAY_WIDE:
            location = None
            places = _gateway_locations(s, gateway, breach.start_ts_ms, breach.end_ts_ms)
        else:
            location = _location_of(s, gateway, breach.sensor, breach.start_ts_ms)
            places = [] if location is None else [location]
        batches = sorted(
            {b for p in places for b in _batches_in(s, p, breach.start_ts_ms, breach.end_ts_ms)}
        )
        site = None
        if places:
            site = s.execute(select(Location.site_id).where(Location.id == places[0])).scalar()
        row = _stored(s, gateway, breach)
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
        row.location_id, row.site_id, row.batches = location, site, json.dumps(batches)
        s.flush()
        s.expunge(row)
        return row


def supersede_breach(engine: Engine, gateway: str, breach: Breach, now: int | None = None) -> bool:
    """Late data showed a stored breach did not happen as judged (a gap that the backlog
    filled, a run that late readings split): it is kept, ended with reason
    ``superseded``, and its alarm cleared. Returns True if a stored breach changed."""
    with Session(engine) as s, s.begin():
        row = _stored(s, gateway, breach)
        if row is None or row.end_reason == "superseded":
            return False
        row.end_reason = "superseded"
        if row.end_ms is None:
            row.end_ms = row.start_ms
        alarm = s.execute(select(AlarmRow).where(AlarmRow.breach_id == row.id)).scalar()
        if alarm is not None and alarm.cleared_ms is None:
            _store_alarm(alarm, clear(alarm_of(alarm), now_ms() if now is None else now))
        record(
            s,
            actor="alerts.service",
            action="breach.supersede",
            entity="breach",
            entity_id=str(row.id),
            old={"end_ms": breach.end_ts_ms},
            new={"end_reason": "superseded"},
            reason="late readings re-evaluated: the breach is not in the complete record",
        )
        return True


def breach_of(row: BreachRow) -> Breach:
    return Breach(
        row.sensor,
        Kind(row.kind),
        Level(row.level),
        row.start_ms,
        row.raised_ms,
        row.end_ms,
        row.end_reason,
        row.min_value,
        row.max_value,
        json.loads(row.settings),
    )


def stored_breaches(engine: Engine, gateway: str, sensor: str, since_ms: int) -> list[Breach]:
    """A sensor's stored breaches that started at or after ``since_ms`` (not superseded)."""
    with Session(engine) as s:
        rows = s.execute(
            select(BreachRow).where(
                BreachRow.gateway == gateway,
                BreachRow.sensor == sensor,
                BreachRow.start_ms >= since_ms,
                or_(BreachRow.end_reason.is_(None), BreachRow.end_reason != "superseded"),
            )
        ).scalars()
        return [breach_of(row) for row in rows]


def open_breaches(engine: Engine, gateway: str, sensor: str) -> list[Breach]:
    """A sensor's breaches still in progress (a restarted service takes them over)."""
    with Session(engine) as s:
        rows = s.execute(
            select(BreachRow).where(
                BreachRow.gateway == gateway,
                BreachRow.sensor == sensor,
                BreachRow.end_ms.is_(None),
            )
        ).scalars()
        return [breach_of(row) for row in rows]


def open_breach(
    engine: Engine, gateway: str, sensor: str, kind: Kind, level: Level
) -> BreachRow | None:
    """The ongoing breach of that kind and level, if any (a restarted service adopts it)."""
    with Session(engine) as s:
        row = s.execute(
            select(BreachRow)
            .where(
                BreachRow.gateway == gateway,
                BreachRow.sensor == sensor,
                BreachRow.kind == kind.value,
                BreachRow.level == level.value,
                BreachRow.end_ms.is_(None),
            )
            .order_by(BreachRow.start_ms.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is not None:
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
    certificate: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.calibration_id,
            "correction_c": self.correction_c,
            "certificate": self.certificate,
            "overdue": self.overdue,
        }


def in_force(calibrations: Sequence[Calibration], at_ms: int) -> CalibrationInForce:
    """The correction in force at a reading's time among one sensor's calibrations
    (oldest first), and whether the sensor was overdue then. A sensor never calibrated
    is overdue and uncorrected."""
    i = bisect.bisect_right([c.calibrated_ms for c in calibrations], at_ms)
    if i == 0:
        return CalibrationInForce(0.0, None, overdue=True)
    cal = calibrations[i - 1]
    return CalibrationInForce(
        cal.correction_c, cal.id, overdue=at_ms > cal.next_due_ms, certificate=cal.certificate
    )


def calibration_at(engine: Engine, gateway: str, sensor: str, at_ms: int) -> CalibrationInForce:
    """The correction in force at a reading's time (readings stay raw in the store)."""
    return in_force(calibrations_by_sensor(engine).get((gateway, sensor), []), at_ms)


def calibrations_by_sensor(engine: Engine) -> dict[tuple[str, str], list[Calibration]]:
    """Every calibration, per (gateway, sensor), oldest first (the service's lookup)."""
    out: dict[tuple[str, str], list[Calibration]] = {}
    with Session(engine) as s:
        for cal in s.execute(select(Calibration).order_by(Calibration.calibrated_ms)).scalars():
            s.expunge(cal)
            out.setdefault((cal.gateway, cal.sensor), []).append(cal)
    return out


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


def assign_alarm(
    engine: Engine, alarm_id: int, *, assignee: str | None, actor: str, now: int | None = None
) -> AlarmRow:
    """Give an alarm to someone to deal with (or take it back); audited."""
    with Session(engine) as s, s.begin():
        row = s.get(AlarmRow, alarm_id)
        if row is None:
            raise RepoError(f"no alarm {alarm_id}")
        old = row.assigned_to
        row.assigned_to = assignee
        record(
            s,
            actor=actor,
            action="alarm.assign",
            entity="alarm",
            entity_id=str(alarm_id),
            old={"assigned_to": old},
            new={"assigned_to": assignee},
            ts_ms=now,
        )
        s.flush()
        s.expunge(row)
        return row
