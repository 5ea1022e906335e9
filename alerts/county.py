"""The county file: what a county is (profiles, sites and their locations, gateways,
which sensor measures which location), planned against the database and applied in one
transaction through the same audited operations the API uses (docs/design-county.md).
:func:`plan` compares a :class:`CountyFile` with the database and returns the changes it
would make, each as text for a person and an operation to run; :func:`apply` runs them
in one transaction; :func:`export` reads the database back into a CountyFile."""

from __future__ import annotations

import functools
import json
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tomli_w
from pydantic import Field, field_validator, model_validator
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.county_users import UserIn, export_users, not_in_file, user_steps
from alerts.db import transaction
from alerts.models import Gateway, Location, ProfileRow, SensorAssignment, Site
from alerts.profiles import ProductProfile, load_profiles
from alerts.repo.sites import (
    assign_sensor,
    end_assignment,
    profiles_in_force,
    save_profile,
    save_row,
)
from coldchain.settings import Strict, load_toml

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
SensorRole = Literal["air", "product", "humidity", "door"]
SiteKind = Literal["cold_store", "fleet", "station"]
LocationKind = Literal[
    "cold_room", "pre_cooling", "constant_temp", "truck_compartment", "station_store"
]


class SensorIn(Strict):
    #: ``gateway/sensor``, as the gateway publishes it
    sensor: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][^/\s]*$")]
    role: SensorRole = "air"

    @property
    def key(self) -> tuple[str, str]:
        gateway, sensor = self.sensor.split("/", 1)
        return gateway, sensor


class LocationFields(Strict):
    """A location as the API changes it (its id in the path, its site in the body)."""

    kind: LocationKind
    name: Annotated[str, Field(min_length=1, max_length=200)]
    name_zh: Annotated[str, Field(max_length=200)] | None = None  # for readers of Chinese
    profile: Id | None = None
    #: a door open longer than this is a breach
    door_open_max_min: Annotated[float, Field(gt=0)] = 10.0


class LocationIn(LocationFields):
    id: Id
    sensors: tuple[SensorIn, ...] = ()


class SiteFields(Strict):
    kind: SiteKind
    name: Annotated[str, Field(min_length=1, max_length=200)]
    name_zh: Annotated[str, Field(max_length=200)] | None = None
    county: Annotated[str, Field(max_length=100)] | None = None
    timezone: str = "Asia/Shanghai"
    address: Annotated[str, Field(max_length=300)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"an IANA time zone such as Asia/Shanghai, not {value!r}") from None
        return value


class SiteIn(SiteFields):
    id: Id
    locations: tuple[LocationIn, ...] = ()


class GatewayFields(Strict):
    site: Id
    name: Annotated[str, Field(max_length=200)] | None = None


class GatewayIn(GatewayFields):
    id: Id


class CountyFile(Strict):
    #: take the profiles shipped with coldchain (alerts/profiles.toml) as well; one of
    #: the same id under ``profiles`` takes its place
    default_profiles: bool = False
    profiles: tuple[ProductProfile, ...] = ()
    sites: tuple[SiteIn, ...] = ()
    gateways: tuple[GatewayIn, ...] = ()
    users: tuple[UserIn, ...] = ()

    @model_validator(mode="after")
    def _each_once(self) -> CountyFile:
        def once(kind: str, ids: list[str]) -> None:
            seen: set[str] = set()
            for i in ids:
                if i in seen:
                    raise ValueError(f"{kind} {i!r} is declared twice")
                seen.add(i)

        once("profile", [p.id for p in self.profiles])
        once("site", [s.id for s in self.sites])
        once("location", [loc.id for _, loc in self.locations()])
        once("gateway", [g.id for g in self.gateways])
        once("user", [u.username for u in self.users])
        measured: dict[str, str] = {}
        for _, loc in self.locations():
            for sensor in loc.sensors:
                if sensor.sensor in measured:
                    raise ValueError(
                        f"sensor {sensor.sensor} measures both {measured[sensor.sensor]} "
                        f"and {loc.id}: a sensor measures one location at a time"
                    )
                measured[sensor.sensor] = loc.id
        return self

    def all_profiles(self) -> list[ProductProfile]:
        own = {p.id: p for p in self.profiles}
        shipped = load_profiles() if self.default_profiles else {}
        return [*(p for i, p in shipped.items() if i not in own), *self.profiles]

    def locations(self) -> list[tuple[SiteIn, LocationIn]]:
        return [(site, loc) for site in self.sites for loc in site.locations]


def load(path: Path | str) -> CountyFile:
    """Read a county file; ConfigError names the file, the field and what was expected."""
    return load_toml(path, CountyFile)


@dataclass(frozen=True)
class Change:
    #: for a person: what changes, e.g. "change location cr1: profile a -> b"
    text: str
    run: Callable[[Session], object]


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    #: what the database has and the file does not name (left as it is)
    not_in_file: list[str] = field(default_factory=list)
    #: filled by running it: the one-time password of each user it added
    passwords: dict[str, str] = field(default_factory=dict)


class Unresolved(Exception):
    """The file refers to what neither it nor the database has."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def plan(
    s: Session, county: CountyFile, *, at_ms: int, actor: str, deactivate_missing: bool = False
) -> Plan:
    """The changes that make the database say what the file says (nothing for what the
    file does not name, but with ``deactivate_missing`` its users not named are
    deactivated), in the order they can be made."""
    _check_references(s, county)
    out = Plan()
    for profile in county.all_profiles():
        row = s.get(ProfileRow, profile.id)
        if row is None or json.loads(row.body_at(at_ms)) != json.loads(profile.model_dump_json()):
            out.changes.append(
                Change(
                    f"{'add' if row is None else 'change'} profile {profile.id}",
                    functools.partial(
                        save_profile, profile=profile, actor=actor, reason="county file"
                    ),
                )
            )
    for site in county.sites:
        _row(s, out, Site, site.id, site_fields(site), actor)
    for gateway in county.gateways:
        _row(s, out, Gateway, gateway.id, {"site_id": gateway.site, "name": gateway.name}, actor)
    for site, loc in county.locations():
        _row(s, out, Location, loc.id, location_fields(site.id, loc), actor)
    _assignments(s, out, county, at_ms, actor)
    for text, step in user_steps(s, county.users, out.passwords):
        out.changes.append(Change(text, step))
    named = {
        "profile": {p.id for p in county.all_profiles()},
        "site": {x.id for x in county.sites},
        "gateway": {g.id for g in county.gateways},
        "location": {loc.id for _, loc in county.locations()},
    }
    for kind, model in (
        ("profile", ProfileRow),
        ("site", Site),
        ("gateway", Gateway),
        ("location", Location),
    ):
        for key in s.execute(select(model.id).order_by(model.id)).scalars():
            if key not in named[kind]:
                out.not_in_file.append(f"{kind} {key}")
    left, deactivations = not_in_file(s, county.users, deactivate=deactivate_missing)
    out.not_in_file += left
    out.changes += [Change(text, step) for text, step in deactivations]
    return out


def apply(
    engine: Engine,
    county: CountyFile,
    *,
    at_ms: int,
    actor: str,
    dry_run: bool,
    deactivate_missing: bool = False,
) -> Plan:
    """Plan, and unless ``dry_run`` make every change in one transaction (all or none)."""
    with transaction(engine) as s:
        planned = plan(s, county, at_ms=at_ms, actor=actor, deactivate_missing=deactivate_missing)
        if not dry_run:
            run(s, planned)
    return planned


def run(s: Session, planned: Plan) -> None:
    """Make the planned changes in the caller's transaction."""
    for change in planned.changes:
        change.run(s)


def _check_references(s: Session, county: CountyFile) -> None:
    profiles = {p.id for p in county.all_profiles()}
    profiles |= set(s.execute(select(ProfileRow.id)).scalars())
    sites = {x.id for x in county.sites} | set(s.execute(select(Site.id)).scalars())
    gateways = {g.id for g in county.gateways} | set(s.execute(select(Gateway.id)).scalars())
    problems = []
    for i, g in enumerate(county.gateways):
        if g.site not in sites:
            problems.append(f"gateways[{i}].site: no site {g.site!r} in the file or the database")
    for i, site in enumerate(county.sites):
        for j, loc in enumerate(site.locations):
            where = f"sites[{i}].locations[{j}]"
            if loc.profile is not None and loc.profile not in profiles:
                problems.append(
                    f"{where}.profile: no profile {loc.profile!r} in the file or the database"
                )
            for k, sensor in enumerate(loc.sensors):
                if sensor.key[0] not in gateways:
                    problems.append(
                        f"{where}.sensors[{k}]: no gateway {sensor.key[0]!r} in the file or "
                        "the database (declare it under [[gateways]])"
                    )
    for i, u in enumerate(county.users):
        problems += [
            f"users[{i}].sites: no site {site!r} in the file or the database"
            for site in u.sites
            if site not in sites
        ]
        if u.truck is not None and u.truck not in gateways:
            problems.append(f"users[{i}].truck: no gateway {u.truck!r} in the file or the database")
    if problems:
        raise Unresolved(problems)


def site_fields(site: SiteFields) -> dict[str, object]:
    """The columns of a site row."""
    return {
        "name": site.name,
        "kind": site.kind,
        "county": site.county,
        "name_zh": site.name_zh,
        "timezone": site.timezone,
        "address": site.address,
    }


def location_fields(site_id: str, loc: LocationFields) -> dict[str, object]:
    """The columns of a location row."""
    return {
        "site_id": site_id,
        "name": loc.name,
        "name_zh": loc.name_zh,
        "kind": loc.kind,
        "profile_id": loc.profile,
        "door_open_max_min": loc.door_open_max_min,
    }


def _row(
    s: Session,
    out: Plan,
    model: type[Site | Gateway | Location],
    key: str,
    fields: dict[str, object],
    actor: str,
) -> None:
    kind = model.__tablename__.rstrip("s")
    row = s.get(model, key)
    if row is None:
        text = f"add {kind} {key}"
    else:
        differ = [
            f"{k} {getattr(row, k)!r} -> {v!r}" for k, v in fields.items() if getattr(row, k) != v
        ]
        if not differ:
            return
        text = f"change {kind} {key}: " + ", ".join(differ)
    out.changes.append(
        Change(text, functools.partial(save_row, model=model, key=key, fields=fields, actor=actor))
    )


def _assignments(s: Session, out: Plan, county: CountyFile, at_ms: int, actor: str) -> None:
    wanted = {
        sensor.key: (loc.id, sensor.role) for _, loc in county.locations() for sensor in loc.sensors
    }
    named = {loc.id for _, loc in county.locations()}
    current = {
        (a.gateway, a.sensor): (a.location_id, a.role)
        for a in s.execute(
            select(SensorAssignment).where(SensorAssignment.until_ms.is_(None))
        ).scalars()
    }
    for (gateway, sensor), (location, _role) in sorted(current.items()):
        if (gateway, sensor) not in wanted and location in named:
            out.changes.append(
                Change(
                    f"end assignment of {gateway}/{sensor} to {location}",
                    functools.partial(
                        end_assignment, gateway=gateway, sensor=sensor, at_ms=at_ms, actor=actor
                    ),
                )
            )
    for (gateway, sensor), (location, role) in wanted.items():
        now = current.get((gateway, sensor))
        if now == (location, role):
            continue
        was = "" if now is None else f" (was {now[0]}, {now[1]})"
        out.changes.append(
            Change(
                f"assign {gateway}/{sensor} to {location} as {role}{was}",
                functools.partial(
                    assign_sensor,
                    gateway=gateway,
                    sensor=sensor,
                    location_id=location,
                    from_ms=at_ms,
                    actor=actor,
                    role=role,
                ),
            )
        )


def export(s: Session) -> CountyFile:
    """The database's county as a file would say it (current assignments only)."""
    sensors: dict[str, list[SensorIn]] = {}
    for a in s.execute(
        select(SensorAssignment)
        .where(SensorAssignment.until_ms.is_(None))
        .order_by(SensorAssignment.gateway, SensorAssignment.sensor)
    ).scalars():
        sensors.setdefault(a.location_id, []).append(
            SensorIn(sensor=f"{a.gateway}/{a.sensor}", role=a.role)
        )
    locations: dict[str, list[LocationIn]] = {}
    for loc in s.execute(select(Location).order_by(Location.id)).scalars():
        locations.setdefault(loc.site_id, []).append(
            LocationIn(
                id=loc.id,
                kind=loc.kind,
                name=loc.name,
                name_zh=loc.name_zh,
                profile=loc.profile_id,
                door_open_max_min=loc.door_open_max_min,
                sensors=tuple(sensors.get(loc.id, [])),
            )
        )
    return CountyFile(
        profiles=tuple(profiles_in_force(s).values()),
        sites=tuple(
            SiteIn(
                id=site.id,
                kind=site.kind,
                name=site.name,
                name_zh=site.name_zh,
                county=site.county,
                timezone=site.timezone,
                address=site.address,
                locations=tuple(locations.get(site.id, [])),
            )
            for site in s.execute(select(Site).order_by(Site.id)).scalars()
        ),
        gateways=tuple(
            GatewayIn(id=g.id, site=g.site_id, name=g.name)
            for g in s.execute(select(Gateway).order_by(Gateway.id)).scalars()
        ),
        users=export_users(s),
    )


def to_toml(county: CountyFile) -> str:
    header = "# coldchain county file (coldchain setup export); apply with coldchain setup apply\n"
    return header + tomli_w.dumps(county.model_dump(mode="json", exclude_none=True))
