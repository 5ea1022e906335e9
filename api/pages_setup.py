"""The set-up pages, for admins: the county's sites, rooms and compartments, gateways and
which sensor measures which location (``/setup``), and its users (``/setup/users``);
for quality staff, the product profiles, changed now or from a later time
(``/profiles``), and the sensors by calibration due date with a calibration recorded
with its certificate file (``/calibrations``); and anyone's own password (``/password``).
The forms call the API's own routes (``PUT /api/locations/{id}``, ``PUT
/api/sensors/{gateway}/{sensor}/assignment``, ``POST /api/users`` …), so a change made
here is the same audited change as one made by ``coldchain setup apply``, and
``coldchain setup export`` shows it."""

from __future__ import annotations

import time
import typing

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from alerts.county import LocationKind, SensorRole, SiteKind, export
from alerts.db import reading
from alerts.models import ProfileRow, SensorAssignment
from alerts.profiles import ProductProfile
from alerts.repo.users import Role, list_users, session_user
from api.deps import ServicesDep, token_of
from api.pages import SignInFirst, page_user, render
from api.routes import calibrations as calibration_routes
from api.routes import sites as site_routes
from api.schemas import UserOut

router = APIRouter(include_in_schema=False)


@router.get("/setup")
def setup_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """Places and sensors: what each site has, what each gateway delivers, and the
    sensors heard that measure no location yet (a new or replaced one)."""
    user = page_user(request, svc, Role.ADMIN)
    with reading(svc.engine) as s:
        county = export(s)
        ended: dict[str, list[SensorAssignment]] = {}  # a replaced sensor keeps its history
        for a in s.execute(
            select(SensorAssignment)
            .where(SensorAssignment.until_ms.is_not(None))
            .order_by(SensorAssignment.until_ms.desc())
        ).scalars():
            ended.setdefault(a.location_id, []).append(a)
    states = {
        g: state for site in site_routes.sites(user, svc) for g, state in site.gateways.items()
    }
    assigned = {sensor.key for _site, loc in county.locations() for sensor in loc.sensors}
    latest = dict(svc.hub.latest) if svc.hub else {}
    heard = [
        r for key, r in sorted(latest.items()) if key not in assigned and r.quantity != "position"
    ]
    last_heard: dict[str, int] = {}
    for (gateway, _sensor), r in latest.items():
        last_heard[gateway] = max(last_heard.get(gateway, 0), r.ts_ms)
    return render(
        request,
        "setup.html",
        user,
        county=county,
        states=states,
        heard=heard,
        ended=ended,
        last_heard=last_heard,
        location_kinds=typing.get_args(LocationKind),
        site_kinds=typing.get_args(SiteKind),
        sensor_roles=typing.get_args(SensorRole),
    )


@router.get("/setup/users")
def users_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """Users: add one (a one-time password shown once), change a role or the sites they
    may see, deactivate, reset a lost password."""
    user = page_user(request, svc, Role.ADMIN)
    with reading(svc.engine) as s:
        users = [UserOut.model_validate(u) for u in list_users(s)]
        county = export(s)
    fleet = {site.id: site.kind == "fleet" for site in county.sites}
    return render(
        request,
        "setup_users.html",
        user,
        users=users,
        roles=[r.value for r in Role],
        sites=county.sites,
        trucks=[g.id for g in county.gateways if fleet.get(g.site)],
    )


@router.get("/calibrations")
def calibrations_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """The sensors by due date (never calibrated first); quality staff record a
    calibration here with its certificate file (``POST /api/calibrations``)."""
    user = page_user(request, svc, Role.VIEWER)
    due = calibration_routes.calibrations_due(user, svc)
    return render(
        request,
        "calibrations.html",
        user,
        due=due,
        gateways=sorted({d.gateway for d in due}),
        can_record=Role(user.role).may(Role.QUALITY),
    )


@router.get("/profiles")
def profiles_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """The product profiles in force, each with the change scheduled for later if any;
    quality staff change one now or from a time (``PUT /api/profiles/{id}``)."""
    user = page_user(request, svc, Role.VIEWER)
    with reading(svc.engine) as s:
        rows = list(s.execute(select(ProfileRow).order_by(ProfileRow.id)).scalars())
        now = time.time_ns() // 1_000_000
        shown = [
            {
                "profile": ProductProfile.model_validate_json(row.body_at(now)),
                "next": ProductProfile.model_validate_json(row.next_body)
                if row.next_body and row.next_from_ms and row.next_from_ms > now
                else None,
                "next_from_ms": row.next_from_ms,
            }
            for row in rows
        ]
    return render(
        request,
        "profiles.html",
        user,
        profiles=shown,
        can_change=Role(user.role).may(Role.QUALITY),
        levels=("warning", "critical"),
        level_fields=("high_c", "low_c", "delay_min", "deadband_c", "clear_delay_min",
                      "cumulative_min", "window_h"),
        humidity_fields=("high_pct", "low_pct", "delay_min", "deadband_pct", "clear_delay_min"),
    )  # fmt: skip


@router.get("/password")
def password_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """Choose one's own password (after a one-time one, or at any time)."""
    token = token_of(request)
    with reading(svc.engine) as s:
        user = session_user(s, token) if token else None
    if user is None:
        raise SignInFirst(request.url.path)
    return render(request, "password.html", user, first=user.must_change_password)
