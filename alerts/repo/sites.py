"""Product profiles, sites with their locations, and which sensor measures which location
when. Every change is written with its audit row in the caller's transaction."""

from __future__ import annotations

import json

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerts.audit import now_ms, record
from alerts.db import Base
from alerts.errors import Conflict, NotFound, Refused
from alerts.models import Gateway, Location, ProfileRow, SensorAssignment, Site
from alerts.profiles import ProductProfile


def save_profile(
    s: Session,
    profile: ProductProfile,
    *,
    actor: str,
    reason: str,
    from_ms: int | None = None,
    now: int | None = None,
) -> None:
    """Save a profile in force now, or (``from_ms`` later than now) schedule it to come
    in force then: the services apply it from that time (within their reload, a minute).
    One change is scheduled at a time; a new one scheduled takes its place."""
    if not reason.strip():
        raise Refused("a profile change needs a reason")
    current = now_ms() if now is None else now
    body = profile.model_dump_json()
    row = s.get(ProfileRow, profile.id)
    if row is not None and row.next_body is not None and row.body_at(current) == row.next_body:
        row.body, row.next_body, row.next_from_ms = row.next_body, None, None  # came in force
    old = None if row is None else json.loads(row.body)
    scheduled = from_ms is not None and from_ms > current
    if scheduled and row is None:
        raise Refused(f"no profile {profile.id!r} yet: a new profile is in force from now")
    if row is None:
        s.add(ProfileRow(id=profile.id, body=body))
    elif scheduled:
        row.next_body, row.next_from_ms = body, from_ms
    else:
        row.body = body
    record(
        s,
        actor=actor,
        action="profile.schedule" if scheduled else "profile.save",
        entity="profile",
        entity_id=profile.id,
        old=old,
        new={**json.loads(body), "in_force_from_ms": from_ms} if scheduled else json.loads(body),
        reason=reason,
    )


def load_profile(s: Session, profile_id: str, at_ms: int | None = None) -> ProductProfile:
    """The profile in force at that time (now by default)."""
    row = s.get(ProfileRow, profile_id)
    if row is None:
        raise NotFound(f"no profile {profile_id!r}")
    return ProductProfile.model_validate_json(row.body_at(now_ms() if at_ms is None else at_ms))


def profiles_in_force(s: Session, at_ms: int | None = None) -> dict[str, ProductProfile]:
    """Every profile as in force at that time (now by default), by id."""
    when = now_ms() if at_ms is None else at_ms
    return {
        row.id: ProductProfile.model_validate_json(row.body_at(when))
        for row in s.execute(select(ProfileRow).order_by(ProfileRow.id)).scalars()
    }


def add_site(s: Session, site: Site, locations: list[Location], *, actor: str) -> None:
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


def save_row(
    s: Session, model: type[Base], key: str, fields: dict[str, object], *, actor: str
) -> bool:
    """Create the site, location or gateway ``key`` with ``fields``, or change the
    fields that differ; audited as ``<entity>.add`` / ``<entity>.change`` with the old
    and new values of what changed. False if nothing differed (nothing written)."""
    entity = {Site: "site", Location: "location", Gateway: "gateway"}[model]
    row = s.get(model, key)
    if row is None:
        s.add(model(id=key, **fields))
        s.flush()  # in the order given: a location after its site
        record(s, actor=actor, action=f"{entity}.add", entity=entity, entity_id=key, new=fields)
        return True
    old = {k: getattr(row, k) for k, v in fields.items() if getattr(row, k) != v}
    if not old:
        return False
    for k in old:
        setattr(row, k, fields[k])
    record(
        s,
        actor=actor,
        action=f"{entity}.change",
        entity=entity,
        entity_id=key,
        old=old,
        new={k: fields[k] for k in old},
    )
    return True


def current_assignment(s: Session, gateway: str, sensor: str) -> SensorAssignment | None:
    return s.execute(
        select(SensorAssignment).where(
            SensorAssignment.gateway == gateway,
            SensorAssignment.sensor == sensor,
            SensorAssignment.until_ms.is_(None),
        )
    ).scalar_one_or_none()


def end_assignment(s: Session, gateway: str, sensor: str, *, at_ms: int, actor: str) -> None:
    """The sensor measures no location from ``at_ms`` on (its readings before stay with
    the location it measured)."""
    current = current_assignment(s, gateway, sensor)
    if current is None:
        raise NotFound(f"{gateway}/{sensor} measures no location now")
    if at_ms <= current.from_ms:
        raise Conflict(f"{gateway}/{sensor} is assigned since {current.from_ms}")
    current.until_ms = at_ms
    record(
        s,
        actor=actor,
        action="sensor.unassign",
        entity="sensor",
        entity_id=f"{gateway}/{sensor}",
        old={"location": current.location_id, "role": current.role},
        new={"until_ms": at_ms},
    )


def assign_sensor(
    s: Session,
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
    current = current_assignment(s, gateway, sensor)
    old = None
    if current is not None:
        if from_ms <= current.from_ms:
            raise Conflict(f"{gateway}/{sensor} is assigned since {current.from_ms}")
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


def location_of(s: Session, gateway: str, sensor: str, at_ms: int) -> str | None:
    """The location the sensor measured at that moment."""
    return s.execute(
        select(SensorAssignment.location_id).where(
            SensorAssignment.gateway == gateway,
            SensorAssignment.sensor == sensor,
            SensorAssignment.from_ms <= at_ms,
            or_(SensorAssignment.until_ms.is_(None), SensorAssignment.until_ms > at_ms),
        )
    ).scalar_one_or_none()


def gateway_locations(s: Session, gateway: str, start_ms: int, end_ms: int | None) -> list[str]:
    """The locations any sensor of the gateway measured during [start, end)."""
    query = select(SensorAssignment.location_id).where(
        SensorAssignment.gateway == gateway,
        or_(SensorAssignment.until_ms.is_(None), SensorAssignment.until_ms > start_ms),
    )
    if end_ms is not None:
        query = query.where(SensorAssignment.from_ms < end_ms)
    return sorted(set(s.execute(query).scalars()))
