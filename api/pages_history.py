"""History pages (docs/design-history.md): a chart of one or more sensors (``/history``),
of a room or compartment (``/history/location/{id}``), and the trucks on a map
(``/map``). The charts draw ``/api/series`` with dygraphs and the map ``/api/trucks``
with Leaflet, both Debian's packages served by the app (no CDN)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from alerts.db import reading
from alerts.models import Location, SensorAssignment
from alerts.repo.users import Role
from api.deps import ServicesDep, scope_of_user
from api.i18n import language
from api.pages import page_user, place_name, render
from api.routes.sites import sensor_in_scope
from coldchain.http_headers import CSP

router = APIRouter(include_in_schema=False)

DAY_MS = 86_400_000


def chart_spec(
    series: list[dict[str, Any]], from_ms: int | None = None, to_ms: int | None = None
) -> dict[str, Any]:
    """What history.js draws: the series (gateway, sensor, label and, for a batch, the
    window each one covers) and the range shown first (default: the last 24 hours)."""
    return {"series": series, "from_ms": from_ms, "to_ms": to_ms}


@router.get("/history")
def sensor_history(request: Request, svc: ServicesDep) -> HTMLResponse:
    """``?s=GATEWAY/SENSOR`` once or more (overlaid), ``&from_ms=&to_ms=`` optionally."""
    user = page_user(request, svc, Role.OPERATOR)
    series = []
    for given in request.query_params.getlist("s")[:8]:
        gateway, _, sensor = given.partition("/")
        if not gateway or not sensor:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "s is GATEWAY/SENSOR")
        sensor_in_scope(svc, user, gateway, sensor)
        series.append({"gateway": gateway, "sensor": sensor, "label": sensor})
    if not series:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "name a sensor: ?s=GATEWAY/SENSOR"
        )
    spec = chart_spec(series, _int(request, "from_ms"), _int(request, "to_ms"))
    title = ", ".join(s["sensor"] for s in series)
    return render(request, "history.html", user, title=title, spec=spec)


@router.get("/history/location/{location_id}")
def location_history(location_id: str, request: Request, svc: ServicesDep) -> HTMLResponse:
    """Every temperature or humidity sensor that measures the place now, overlaid."""
    user = page_user(request, svc, Role.OPERATOR)
    scope = scope_of_user(svc, user)
    with reading(svc.engine) as s:
        location = s.get(Location, location_id)
        if location is None or not scope.site(location.site_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no place {location_id!r}")
        assigned = s.execute(
            select(SensorAssignment)
            .where(SensorAssignment.location_id == location_id)
            .where(SensorAssignment.until_ms.is_(None), SensorAssignment.role != "door")
            .order_by(SensorAssignment.sensor)
        ).scalars()
        series = [
            {"gateway": a.gateway, "sensor": a.sensor, "label": f"{a.sensor} ({a.role})"}
            for a in assigned
        ]
    lang = language(request)
    spec = chart_spec(series, _int(request, "from_ms"), _int(request, "to_ms"))
    return render(request, "history.html", user, title=place_name(location, lang), spec=spec)


def batch_chart_spec(stays: list[Any], now_ms: int) -> dict[str, Any]:
    """A batch's journey on one chart: each stay's sensors over the stay's own window."""
    series = [
        {
            "gateway": use.gateway,
            "sensor": use.sensor,
            "label": f"{stay.location_name} · {use.sensor}",
            "from_ms": stay.from_ms,
            "to_ms": stay.until_ms or now_ms,
        }
        for stay in stays
        for use in stay.sensors
        if use.role != "door"
    ]
    start = min((s["from_ms"] for s in series), default=now_ms - DAY_MS)
    end = max((s["to_ms"] for s in series), default=now_ms)
    return chart_spec(series, start, end + 1)


@router.get("/map")
def truck_map(request: Request, svc: ServicesDep) -> HTMLResponse:
    """The trucks of the user's sites: live positions, the day's tracks, stops and
    breaches, on the county's tiles or on a plain background."""
    user = page_user(request, svc, Role.OPERATOR)
    settings = svc.settings
    spec = {"tiles": settings.map_tiles, "attribution": settings.map_attribution}
    today = datetime.now(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d")  # the county's
    response = render(request, "map.html", user, spec=spec, today=today)
    if settings.map_tiles:  # the county's tile server: its images, nothing else of it
        parts = urlsplit(settings.map_tiles)
        origin = f"{parts.scheme}://{parts.netloc}"
        response.headers["Content-Security-Policy"] = CSP.replace(
            "img-src 'self' data: blob:", f"img-src 'self' data: blob: {origin}"
        )
    return response


def _int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() else None
