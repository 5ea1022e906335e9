"""A county's set-up through the API (admins): sites, locations, gateways and which sensor
measures which location, each change through the same audited operations as
``coldchain setup apply`` (docs/design-county.md); the whole set-up as a county file."""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from pydantic import Field
from sqlalchemy.orm import Session

from alerts.county import (
    CountyFile,
    GatewayFields,
    Id,
    LocationFields,
    SensorRole,
    SiteFields,
    export,
    location_fields,
    site_fields,
)
from alerts.db import transaction
from alerts.errors import Refused
from alerts.models import Gateway, Location, ProfileRow, Site
from alerts.repo.sites import assign_sensor, end_assignment, save_row
from api import imports
from api.deps import Admin, SameOrigin, ServicesDep
from api.schemas import ImportOut, Model

router = APIRouter(prefix="/api", tags=["set-up"])

PathId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
SensorId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][^/\s]*$", max_length=128)]


class LocationBody(LocationFields):
    site: Id


class AssignmentBody(Model):
    location: Id
    role: SensorRole = "air"
    #: when the sensor started measuring there (epoch ms; default now)
    from_ms: Annotated[int, Field(ge=0)] | None = None


class Saved(Model):
    id: str
    #: False when it already said this (nothing written, nothing audited)
    changed: bool


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _must_exist(s: Session, model: type[Site | ProfileRow | Location], key: str) -> None:
    if s.get(model, key) is None:
        kind = {Site: "site", ProfileRow: "profile", Location: "location"}[model]
        raise Refused(f"no {kind} {key!r}")


@router.get("/setup")
def county_file(_user: Admin, svc: ServicesDep) -> CountyFile:
    """The county as a county file says it (``coldchain setup export``)."""
    with Session(svc.engine) as s:
        return export(s)


@router.put("/sites/{site_id}", responses={400: {"description": "invalid"}})
def put_site(site_id: PathId, body: SiteFields, user: Admin, svc: ServicesDep) -> Saved:
    """Create or change a site; audited."""
    with transaction(svc.engine) as s:
        changed = save_row(s, Site, site_id, site_fields(body), actor=user.username)
    return Saved(id=site_id, changed=changed)


@router.put("/locations/{location_id}", responses={400: {"description": "no such site"}})
def put_location(location_id: PathId, body: LocationBody, user: Admin, svc: ServicesDep) -> Saved:
    """Create or change a room, compartment or store (its profile and door limit); the
    alert service applies a new profile from then on. Audited."""
    with transaction(svc.engine) as s:
        _must_exist(s, Site, body.site)
        if body.profile is not None:
            _must_exist(s, ProfileRow, body.profile)
        fields = location_fields(body.site, body)
        changed = save_row(s, Location, location_id, fields, actor=user.username)
    return Saved(id=location_id, changed=changed)


@router.put("/gateways/{gateway_id}", responses={400: {"description": "no such site"}})
def put_gateway(gateway_id: PathId, body: GatewayFields, user: Admin, svc: ServicesDep) -> Saved:
    """Declare a gateway at a site (its broker account comes from ``coldchain broker
    add-gateway``). Audited."""
    with transaction(svc.engine) as s:
        _must_exist(s, Site, body.site)
        fields: dict[str, object] = {"site_id": body.site, "name": body.name}
        changed = save_row(s, Gateway, gateway_id, fields, actor=user.username)
    return Saved(id=gateway_id, changed=changed)


@router.put(
    "/sensors/{gateway}/{sensor}/assignment",
    responses={400: {"description": "no such location"}, 409: {"description": "later one"}},
)
def put_assignment(
    gateway: PathId, sensor: SensorId, body: AssignmentBody, user: Admin, svc: ServicesDep
) -> Saved:
    """The sensor measures this location from then on; its assignment before ends there
    (a sensor moved or replaced keeps its history). Audited."""
    with transaction(svc.engine) as s:
        _must_exist(s, Location, body.location)
        if s.get(Gateway, gateway) is None:
            raise Refused(f"no gateway {gateway!r}: declare it first (PUT /api/gateways/…)")
        assign_sensor(
            s,
            gateway=gateway,
            sensor=sensor,
            location_id=body.location,
            from_ms=_now_ms() if body.from_ms is None else body.from_ms,
            actor=user.username,
            role=body.role,
        )
    return Saved(id=f"{gateway}/{sensor}", changed=True)


@router.delete(
    "/sensors/{gateway}/{sensor}/assignment",
    responses={404: {"description": "not assigned"}, 409: {"description": "later one"}},
)
def end_sensor_assignment(
    gateway: PathId,
    sensor: SensorId,
    user: Admin,
    svc: ServicesDep,
    at_ms: Annotated[int | None, Query(ge=0)] = None,
) -> Saved:
    """The sensor measures no location from then on (taken out of service). Audited."""
    with transaction(svc.engine) as s:
        end_assignment(
            s, gateway, sensor, at_ms=_now_ms() if at_ms is None else at_ms, actor=user.username
        )
    return Saved(id=f"{gateway}/{sensor}", changed=True)


@router.post(
    "/sensors/import",
    dependencies=[SameOrigin],
    responses={400: {"description": "refused: each problem by row and column"}},
)
def import_sensors(
    user: Admin,
    svc: ServicesDep,
    file: Annotated[UploadFile, File(description="CSV or .xlsx: gateway, sensor, location, role")],
    dry_run: Annotated[bool, Form()] = False,
) -> ImportOut:
    """Assign the sensors of a spreadsheet to their locations from now on, all or none;
    those already measuring the location the sheet says are left as they are."""
    name = file.filename or "sheet"
    data = imports.read_upload(name, file.file)
    done = imports.import_sensors(svc.engine, name, data, actor=user.username, dry_run=dry_run)
    return ImportOut(**dataclasses.asdict(done))
