"""Sites with their rooms and compartments: limits, latest readings, state; sensors'
latest readings; history through the readings store."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.models import AlarmRow, BreachRow, Location, SensorAssignment, Site, User
from alerts.repo import profiles_in_force
from alerts.repo.scope import Scope, sees_sensor
from api.deps import Operator, ServicesDep, StoreDep, Viewer, scope_of_user
from api.schemas import Latest, LocationOut, ReadingOut, SiteOut

router = APIRouter(prefix="/api", tags=["sites and sensors"])

MAX_HISTORY = 50_000


def _latest(svc: ServicesDep, now_s: float, scope: Scope) -> dict[tuple[str, str], Latest]:
    if svc.hub is None:
        return {}
    return {
        key: Latest(
            gateway=r.gateway,
            sensor=r.sensor,
            quantity=r.quantity,
            value=r.value,
            q=r.q,
            ts_ms=r.ts_ms,
            age_s=round(max(0.0, now_s - r.ts_ms / 1000), 1),
            raw_value=r.raw_value,
            correction_c=r.correction_c,
        )
        for key, r in list(svc.hub.latest.items())
        if scope.site(r.site)
    }


@router.get("/sites")
def sites(user: Viewer, svc: ServicesDep) -> list[SiteOut]:
    """The sites the user is given, with their locations and latest readings."""
    scope = scope_of_user(svc, user)
    now_s = time.time()
    latest = _latest(svc, now_s, scope)
    with Session(svc.engine) as s:
        profiles = profiles_in_force(s)
        assigned: dict[str, list[tuple[str, str]]] = {}
        temperatures: dict[str, list[str]] = {}
        for a in s.execute(
            select(SensorAssignment)
            .where(SensorAssignment.until_ms.is_(None))
            .order_by(SensorAssignment.gateway, SensorAssignment.sensor)
        ).scalars():
            assigned.setdefault(a.location_id, []).append((a.gateway, a.sensor))
            if a.role in ("air", "product"):
                temperatures.setdefault(a.location_id, []).append(f"{a.gateway}/{a.sensor}")
        open_alarms = dict(
            s.execute(
                select(BreachRow.location_id, func.count(AlarmRow.id))
                .join(AlarmRow, AlarmRow.breach_id == BreachRow.id)
                .where(AlarmRow.state.in_(("active", "acknowledged")))
                .group_by(BreachRow.location_id)
            ).all()
        )
        out = []
        for site in s.execute(select(Site).order_by(Site.id)).scalars():
            if not scope.site(site.id):
                continue
            locations = []
            gateways: dict[str, str] = {}
            for loc in s.execute(
                select(Location).where(Location.site_id == site.id).order_by(Location.id)
            ).scalars():
                profile = profiles.get(loc.profile_id or "")
                readings = [latest[k] for k in assigned.get(loc.id, []) if k in latest]
                for gateway, _sensor in assigned.get(loc.id, []):
                    gateways[gateway] = (
                        svc.hub.gateways.get(gateway, "unknown") if svc.hub else "unknown"
                    )
                alarms = int(open_alarms.get(loc.id, 0))
                state = (
                    "alarm"
                    if alarms
                    else "no_data"
                    if not readings
                    else "stale"
                    if min(r.age_s for r in readings) > svc.settings.stale_after_s
                    else "ok"
                )
                locations.append(
                    LocationOut(
                        id=loc.id,
                        name=loc.name,
                        name_zh=loc.name_zh,
                        kind=loc.kind,
                        profile_id=loc.profile_id,
                        keep_low_c=profile.keep_low_c if profile else None,
                        keep_high_c=profile.keep_high_c if profile else None,
                        door_open_max_min=loc.door_open_max_min,
                        readings=readings,
                        waiting_sensors=[
                            key
                            for key in temperatures.get(loc.id, [])
                            if tuple(key.split("/", 1)) not in latest
                        ],
                        open_alarms=alarms,
                        state=state,
                    )
                )
            out.append(
                SiteOut(
                    id=site.id,
                    name=site.name,
                    name_zh=site.name_zh,
                    kind=site.kind,
                    county=site.county,
                    locations=locations,
                    gateways=gateways,
                )
            )
        return out


@router.get("/sensors/latest")
def latest_readings(user: Viewer, svc: ServicesDep) -> list[Latest]:
    latest = _latest(svc, time.time(), scope_of_user(svc, user))
    return sorted(latest.values(), key=lambda r: (r.gateway, r.sensor))


def sensor_in_scope(svc: ServicesDep, user: User, gateway: str | None, sensor: str) -> None:
    with Session(svc.engine) as s:
        if not sees_sensor(s, scope_of_user(svc, user), gateway, sensor):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sensor {sensor!r} at your sites")


@router.get("/history", responses={404: {"description": "no such sensor at your sites"}})
def history(
    user: Operator,
    svc: ServicesDep,
    store: StoreDep,
    sensor: Annotated[str, Query(min_length=1, max_length=128)],
    gateway: Annotated[str | None, Query(max_length=64)] = None,
    from_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    to_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 10_000,
) -> list[ReadingOut]:
    """A sensor's stored readings in time order (gaps are gaps: nothing is filled in)."""
    sensor_in_scope(svc, user, gateway, sensor)
    end = to_ms if to_ms is not None else time.time_ns() // 1_000_000 + 1
    start = from_ms if from_ms is not None else end - 86_400_000
    out: list[ReadingOut] = []
    for r in store.readings(start_ms=start, end_ms=end, sensor=sensor, gateway=gateway):
        out.append(
            ReadingOut(
                gateway=r.gateway,
                sensor=r.sensor,
                ts_ms=r.ts_ms,
                quantity=r.quantity.value,
                value=r.value,
                q=r.q.value,
                fault=r.fault,
            )
        )
        if len(out) >= limit:
            break
    return out
