"""What a user may see and act on (docs/design-county.md, "Scope"): the sites given to
them (none given, or an admin: every site), and for a driver with a truck, the batches
on that truck. The API asks these questions on every route that touches a site's data;
something outside a user's scope is answered as if it did not exist."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.models import Gateway, Location, SensorAssignment, Stay, User
from alerts.repo.users import Role


@dataclass(frozen=True)
class Scope:
    username: str
    role: Role
    #: the site ids they may see; None: every site
    sites: frozenset[str] | None
    #: a driver's truck: the locations its sensors measure (its compartments)
    truck: str | None = None
    truck_locations: frozenset[str] = frozenset()

    @property
    def everywhere(self) -> bool:
        return self.sites is None

    def site(self, site_id: str | None) -> bool:
        return self.sites is None or (site_id is not None and site_id in self.sites)


def user_sites(user: User) -> list[str]:
    sites: list[str] = json.loads(user.sites or "[]")
    return sites


def scope_of(s: Session, user: User) -> Scope:
    role = Role(user.role)
    sites = user_sites(user)
    everywhere = role is Role.ADMIN or not sites
    truck_locations: frozenset[str] = frozenset()
    if role is Role.DRIVER and user.truck:
        truck_locations = frozenset(
            s.execute(
                select(SensorAssignment.location_id).where(
                    SensorAssignment.gateway == user.truck, SensorAssignment.until_ms.is_(None)
                )
            ).scalars()
        )
    return Scope(
        username=user.username,
        role=role,
        sites=None if everywhere else frozenset(sites),
        truck=user.truck if role is Role.DRIVER else None,
        truck_locations=truck_locations,
    )


def location_sites(s: Session) -> dict[str, str]:
    return dict(s.execute(select(Location.id, Location.site_id)).all())


def gateway_sites(s: Session) -> dict[str, str]:
    return dict(s.execute(select(Gateway.id, Gateway.site_id)).all())


def sees_sensor(s: Session, scope: Scope, gateway: str | None, sensor: str) -> bool:
    """A sensor belongs to the sites of the locations it has measured, and to its
    gateway's site."""
    if scope.everywhere:
        return True
    query = select(Location.site_id).join(
        SensorAssignment, SensorAssignment.location_id == Location.id
    )
    query = query.where(SensorAssignment.sensor == sensor)
    if gateway is not None:
        query = query.where(SensorAssignment.gateway == gateway)
    places = set(s.execute(query).scalars())
    if gateway is not None:
        places.add(gateway_sites(s).get(gateway, ""))
    return any(scope.site(p) for p in places)


def batch_places(s: Session, batch_id: str) -> tuple[list[str], str | None]:
    """Every location the batch has been in, and the one it is in now."""
    stays = s.execute(
        select(Stay.location_id, Stay.until_ms).where(Stay.batch_id == batch_id)
    ).all()
    now = next((loc for loc, until in stays if until is None), None)
    return [loc for loc, _ in stays], now


def sees_batch(
    s: Session, scope: Scope, batch_id: str, sites: dict[str, str] | None = None
) -> bool:
    """A batch is seen by the users of the sites it has been in, and by a driver whose
    truck it has been on. ``sites``: :func:`location_sites`, read once for a list."""
    if scope.everywhere:
        return True
    places, _now = batch_places(s, batch_id)
    if not places:  # received nowhere yet: only users of every site
        return False
    sites = location_sites(s) if sites is None else sites
    return any(loc in scope.truck_locations or scope.site(sites.get(loc)) for loc in places)


def acts_on_batch(s: Session, scope: Scope, batch_id: str, to_location: str | None) -> bool:
    """A custody move is recorded by someone on either side of it: a user of the site
    it leaves or the site it goes to; a driver only where one side is their truck."""
    _places, now = batch_places(s, batch_id)
    sides = [loc for loc in (now, to_location) if loc is not None]
    if not sides:  # a delivered batch delivered again: the move itself is refused
        return True
    if scope.role is Role.DRIVER:
        return any(loc in scope.truck_locations for loc in sides)
    if scope.everywhere:
        return True
    sites = location_sites(s)
    return any(scope.site(sites.get(loc)) for loc in sides)
