"""The trucks on a map (docs/design-history.md): each truck's latest position, the day's
track, where it stopped, and its breaches placed on the track."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import or_, select

from alerts.db import reading
from alerts.models import BreachRow, Gateway
from api.deps import Operator, ServicesDep, StoreDep, scope_of_user
from api.schemas import Model
from coldchain.wire import Quantity
from collector.sqlite_store import SqliteStore
from collector.store import Store, StoredReading

router = APIRouter(prefix="/api", tags=["trucks"])

#: a truck slower than this for at least STOP_MS has stopped
STOP_KMH = 3.0
STOP_MS = 5 * 60_000
#: the most track points sent for one truck and day (every n-th kept, the last always)
MAX_TRACK = 2000


class StopOut(Model):
    start_ms: int
    end_ms: int
    lat_deg: float
    lon_deg: float


class BreachMark(Model):
    sensor: str
    kind: str
    level: str
    start_ms: int
    end_ms: int | None
    #: where the truck was when it began (its nearest position)
    lat_deg: float
    lon_deg: float


class TruckOut(Model):
    gateway: str
    name: str
    sensor: str
    #: the latest position: [ts_ms, lat, lon, speed_kmh]
    latest: tuple[int, float, float, float | None]
    track: list[tuple[int, float, float, float | None]]
    stops: list[StopOut]
    breaches: list[BreachMark]


class TrucksOut(Model):
    from_ms: int
    to_ms: int
    trucks: list[TruckOut]


@router.get("/trucks")
def trucks(
    user: Operator,
    svc: ServicesDep,
    store: StoreDep,
    day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
) -> TrucksOut:
    """The trucks of the user's sites on a day of the county's calendar (default: today,
    up to now): latest position, track, stops, breaches."""
    zone = ZoneInfo(svc.settings.timezone)
    now = time.time_ns() // 1_000_000
    try:
        when = datetime.strptime(day, "%Y-%m-%d") if day else datetime.now(zone)
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no day {day!r}") from None
    midnight = datetime(when.year, when.month, when.day, tzinfo=zone)
    start = int(midnight.timestamp() * 1000)
    end = min(int((midnight + timedelta(days=1)).timestamp() * 1000), now + 1)
    scope = scope_of_user(svc, user)
    by_truck: dict[tuple[str, str], list[StoredReading]] = {}
    for r in _positions(store, start, end):
        if scope.site(r.site) and r.lat_deg is not None and r.lon_deg is not None:
            by_truck.setdefault((r.gateway, r.sensor), []).append(r)
    out: list[TruckOut] = []
    with reading(svc.engine) as s:
        names = {g.id: g.name or g.id for g in s.execute(select(Gateway)).scalars()}
        for (gateway, sensor), points in sorted(by_truck.items()):
            breaches = s.execute(
                select(BreachRow)
                .where(BreachRow.gateway == gateway, BreachRow.start_ms < end)
                .where(or_(BreachRow.end_ms.is_(None), BreachRow.end_ms > start))
                .where(BreachRow.end_reason.is_distinct_from("superseded"))
                .order_by(BreachRow.start_ms)
            ).scalars()
            track = [(p.ts_ms, p.lat_deg, p.lon_deg, p.speed_kmh) for p in points]
            out.append(
                TruckOut(
                    gateway=gateway,
                    name=names.get(gateway, gateway),
                    sensor=sensor,
                    latest=track[-1],
                    track=_thinned(track),  # type: ignore[arg-type]
                    stops=_stops(points),
                    breaches=[_mark(b, points) for b in breaches],
                )
            )
    return TrucksOut(from_ms=start, to_ms=end, trucks=out)


def _positions(store: Store, start: int, end: int) -> list[StoredReading]:
    if isinstance(store, SqliteStore):
        return store.of_quantity(Quantity.POSITION, start, end)
    every = store.readings(start_ms=start, end_ms=end)
    return [r for r in every if r.quantity is Quantity.POSITION]


def _thinned(track: list[tuple[int, float, float, float | None]]) -> list[object]:
    if len(track) <= MAX_TRACK:
        return list(track)
    step = math.ceil(len(track) / MAX_TRACK)
    return [*track[::step], track[-1]]


def _stops(points: list[StoredReading]) -> list[StopOut]:
    """Runs of positions slower than STOP_KMH lasting STOP_MS or more."""
    stops: list[StopOut] = []
    run: list[StoredReading] = []
    for p in [*points, None]:
        if p is not None and p.speed_kmh is not None and p.speed_kmh < STOP_KMH:
            run.append(p)
            continue
        if run and run[-1].ts_ms - run[0].ts_ms >= STOP_MS:
            stops.append(
                StopOut(
                    start_ms=run[0].ts_ms,
                    end_ms=run[-1].ts_ms,
                    lat_deg=run[0].lat_deg or 0.0,
                    lon_deg=run[0].lon_deg or 0.0,
                )
            )
        run = []
    return stops


def _mark(b: BreachRow, points: list[StoredReading]) -> BreachMark:
    nearest = min(points, key=lambda p: abs(p.ts_ms - b.start_ms))
    return BreachMark(
        sensor=b.sensor,
        kind=b.kind,
        level=b.level,
        start_ms=b.start_ms,
        end_ms=b.end_ms,
        lat_deg=nearest.lat_deg or 0.0,
        lon_deg=nearest.lon_deg or 0.0,
    )
