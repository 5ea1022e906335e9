"""The pages: alarm board, cab view, batch audit (with its PDF), public trace page (with
its QR code), monitoring wall. Server-rendered (Jinja2) so that the first paint needs
no script; a small script keeps them live through ``/api/live``. Chinese and English."""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import segno
from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.db import reading
from alerts.models import Batch, SensorAssignment, User
from alerts.repo.users import Role, session_user
from alerts.wording import disposition_text, reason_text
from api.deps import ServicesDep, token_of
from api.i18n import language, words
from api.live import LatestReading
from api.routes import alarms as alarm_routes
from api.routes import batches as batch_routes
from api.routes import public as public_routes
from api.routes import sites as site_routes
from api.schemas import AlarmOut
from coldchain.judging.breach import Kind

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
# what a verdict says, in the reader's language (alerts/wording.py)
templates.env.globals.update(reason_text=reason_text, disposition_text=disposition_text)


def place_name(item: Any, lang: str, field: str = "name") -> str:
    """A place's name in the reader's language (its Chinese name where it has one)."""
    chinese = getattr(item, f"{field}_zh", None) if lang == "zh" else None
    return str(chinese or getattr(item, field, "") or "")


templates.env.globals["place_name"] = place_name
TraceCode = Annotated[str, PathParam(pattern=r"^[0-9A-Z]{12}$")]

DAY_MS = 86_400_000
CST_MS = 8 * 3_600_000

#: where a sign-in may lead: a path of this site, in plain characters ("/\\host",
#: "//host" or a control character would let a browser leave it)
LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&+-]*")

#: "/a/{token}": a notification's link, which leads to its alarm's page (signed in)
PUBLIC_PAGES = {"/login", "/t/{code}", "/t/{code}/qr.svg", "/t/{code}/qr.png", "/", "/a/{token}"}


class SignInFirst(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class NotForYourRole(Exception):
    pass


class OwnPasswordFirst(Exception):
    """Signed in with a one-time password: the password page before any other."""


@dataclass
class AlarmGroup:
    """The alarms of one place, kind, level and state, shown (and acknowledged) as one:
    two probes in a room that warms up are one thing to deal with, not two."""

    ids: list[int]
    sensors: list[str]
    level: str
    kind: str
    state: str
    location_name: str | None
    gateway: str
    start_ms: int
    min_value: float | None
    max_value: float | None
    batches: list[str]
    acknowledged_by: str | None
    ack_comment: str | None
    #: the settings in force with the first alarm (a clock's offset, the limits)
    settings: dict[str, object] = field(default_factory=dict)
    location_name_zh: str | None = None


def group_alarms(alarms: list[AlarmOut]) -> list[AlarmGroup]:
    groups: dict[tuple[str, str, str, str], AlarmGroup] = {}
    for a in alarms:  # already in board order: the first of a group sets its place
        key = (a.location_id or a.gateway, a.kind, a.level, a.state)
        g = groups.get(key)
        if g is None:
            groups[key] = AlarmGroup(
                [a.id],
                [a.sensor or a.gateway],
                a.level,
                a.kind,
                a.state,
                a.location_name,
                a.gateway,
                a.start_ms,
                a.min_value,
                a.max_value,
                list(a.batches),
                a.acknowledged_by,
                a.ack_comment,
                dict(a.settings),
                a.location_name_zh,
            )
            continue
        g.ids.append(a.id)
        g.sensors.append(a.sensor or a.gateway)
        g.start_ms = min(g.start_ms, a.start_ms)
        g.min_value = _either(min, g.min_value, a.min_value)
        g.max_value = _either(max, g.max_value, a.max_value)
        g.batches = sorted(set(g.batches) | set(a.batches))
    return list(groups.values())


def _either(pick: Any, x: float | None, y: float | None) -> float | None:
    return y if x is None else x if y is None else float(pick(x, y))


def page_user(request: Request, svc: ServicesDep, role: Role) -> User:
    token = token_of(request)
    with reading(svc.engine) as s:
        user = session_user(s, token) if token else None
    if user is None:
        raise SignInFirst(request.url.path)
    if user.must_change_password:
        raise OwnPasswordFirst()
    if not Role(user.role).may(role):
        raise NotForYourRole()
    return user


def render(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
    lang = language(request)
    tz = request.app.state.services.settings.timezone
    response = templates.TemplateResponse(
        request, name, {"lang": lang, "t": words(lang), "user": user, "tz": tz, **context}
    )
    if request.query_params.get("lang") == lang:
        response.set_cookie("lang", lang, max_age=365 * 86_400, samesite="lax")
    return response


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/board", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    next_path = request.query_params.get("next", "/board")
    if not LOCAL_PATH.fullmatch(next_path):
        next_path = "/board"  # never redirect off this site (//host, /\host, a tab…)
    return render(request, "login.html", None, next=next_path)


@router.get("/board")
def board(request: Request, svc: ServicesDep) -> HTMLResponse:
    user = page_user(request, svc, Role.VIEWER)
    return render(
        request,
        "board.html",
        user,
        alarms=group_alarms(alarm_routes.alarms(user, svc)),
        sites=site_routes.sites(user, svc),
        can_ack=Role(user.role).may(Role.OPERATOR),
        # a batch's page is for quality staff: others see its code, not a link to a 403
        batch_links=Role(user.role).may(Role.QUALITY),
    )


HISTORY_PAGE = 50
HISTORY_FILTERS = ("site", "location", "batch", "level", "kind", "state", "from", "to")


def _day_ms(text: str | None, *, end: bool = False) -> int | None:
    """A date (YYYY-MM-DD) of the county's day (UTC+8) as ms; ``end``: the next midnight."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a date: {text!r}"
        ) from None
    return int(day.timestamp() * 1000) - CST_MS + (DAY_MS if end else 0)


@router.get("/alarms")
def alarm_history(request: Request, svc: ServicesDep) -> HTMLResponse:
    """Every alarm, newest first, filtered (site, location, batch, level, kind, state,
    days), a page at a time, with its CSV."""
    user = page_user(request, svc, Role.VIEWER)
    q = {k: request.query_params.get(k) or None for k in HISTORY_FILTERS}
    if q["level"] not in (None, "warning", "critical"):
        q["level"] = None
    if q["state"] not in (None, "active", "cleared", "acknowledged", "closed"):
        q["state"] = None
    given = request.query_params.get("page", "0")
    page_no = int(given) if given.isdigit() and len(given) < 7 else 0
    level: Any = q["level"]  # checked above against the values the API takes
    state: Any = q["state"]
    filters = alarm_routes.AlarmFilter(
        site=q["site"], batch=q["batch"], location=q["location"], level=level, kind=q["kind"],
        state=state, from_ms=_day_ms(q["from"]), to_ms=_day_ms(q["to"], end=True),
    )  # fmt: skip
    found = alarm_routes.alarms(
        user, svc, filters, "all", HISTORY_PAGE + 1, page_no * HISTORY_PAGE, "newest"
    )
    api_query = {k: v for k, v in q.items() if v and k not in ("from", "to")}
    if q["from"]:
        api_query["from_ms"] = str(_day_ms(q["from"]))
    if q["to"]:
        api_query["to_ms"] = str(_day_ms(q["to"], end=True))
    return render(
        request,
        "alarms.html",
        user,
        alarms=found[:HISTORY_PAGE],
        more=len(found) > HISTORY_PAGE,
        page_no=page_no,
        q=q,
        kinds=[k.value for k in Kind],
        sites=site_routes.sites(user, svc),
        csv_query=urlencode(api_query),
        page_query=lambda n: urlencode({**{k: v for k, v in q.items() if v}, "page": n}),
        fmt=lambda ms: _fmt(None if ms is None else ms + CST_MS),
    )


@router.get("/wall")
def wall(request: Request, svc: ServicesDep) -> HTMLResponse:
    user = page_user(request, svc, Role.VIEWER)
    sites = site_routes.sites(user, svc)
    gateways = {g: state for s in sites for g, state in s.gateways.items()}
    # "today" is the county's day (China Standard Time, UTC+8)
    midnight_ms = ((time.time_ns() // 1_000_000 + CST_MS) // DAY_MS) * DAY_MS - CST_MS
    batches_count = len(batch_routes.batches(user, svc))
    today = alarm_routes.AlarmFilter(from_ms=midnight_ms)
    alarms_today = len(alarm_routes.alarms(user, svc, today, scope="all", limit=1000))
    latest = dict(svc.hub.latest) if svc.hub else {}
    trucks = [
        {
            "gateway": r.gateway,
            "state": gateways.get(r.gateway, "unknown"),
            "lat_deg": r.lat_deg,
            "lon_deg": r.lon_deg,
            "speed_kmh": r.speed_kmh,
            "ts_ms": r.ts_ms,
            "sensor": r.sensor,
        }
        for r in sorted(latest.values(), key=lambda r: r.gateway)
        if r.quantity == "position"
    ]
    return render(
        request,
        "wall.html",
        user,
        trucks=trucks,
        alarms_today=alarms_today,
        alarms=group_alarms(alarm_routes.alarms(user, svc)),
        sites=sites,
        gateways_online=sum(1 for state in gateways.values() if state != "offline"),
        gateways_total=len(gateways),
        batches_count=batches_count,
    )


@router.get("/cab/{gateway}")
def cab(gateway: str, request: Request, svc: ServicesDep) -> HTMLResponse:
    """A truck's compartments, large: temperature, setpoint, door, age, alarms, route."""
    user = page_user(request, svc, Role.VIEWER)
    latest: dict[tuple[str, str], LatestReading] = dict(svc.hub.latest) if svc.hub else {}
    sites = site_routes.sites(user, svc)
    with Session(svc.engine) as s:
        assignments = list(
            s.execute(
                select(SensorAssignment).where(
                    SensorAssignment.gateway == gateway, SensorAssignment.until_ms.is_(None)
                )
            ).scalars()
        )
    if not assignments:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway {gateway!r}")
    locations = {loc.id: loc for site in sites for loc in site.locations}
    if not all(a.location_id in locations for a in assignments):  # not at the user's sites
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway {gateway!r}")
    compartments = []
    for location_id in sorted({a.location_id for a in assignments}):
        loc = locations[location_id]
        mine = [a for a in assignments if a.location_id == location_id]
        temp = next((a.sensor for a in mine if a.role in ("air", "product")), "")
        door = next((a.sensor for a in mine if a.role == "door"), "")
        setpoint = temp.rsplit(".", 1)[0] + ".setpoint" if temp else ""
        compartments.append(
            {
                "id": location_id,
                "name": loc.name,
                "keep_low_c": loc.keep_low_c,
                "keep_high_c": loc.keep_high_c,
                "temp_sensor": temp,
                "temp": latest.get((gateway, temp)),
                "door_sensor": door,
                "door": latest.get((gateway, door)),
                "setpoint_sensor": setpoint,
                "setpoint": latest.get((gateway, setpoint)),
            }
        )
    gps = next(
        (r for (g, _s), r in latest.items() if g == gateway and r.quantity == "position"), None
    )
    open_alarms = [a for a in alarm_routes.alarms(user, svc) if a.gateway == gateway]
    return render(
        request,
        "cab.html",
        user,
        gateway=gateway,
        compartments=compartments,
        alarms=open_alarms,
        gps=gps,
        gps_sensor=gps.sensor if gps else f"{gateway}-gps.pos",
    )


@router.get("/batches")
def batches_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    user = page_user(request, svc, Role.VIEWER)
    return render(request, "batches.html", user, batches=batch_routes.batches(user, svc))


def _fmt(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@router.get("/t/{code}")
def trace_page(code: TraceCode, request: Request, svc: ServicesDep) -> HTMLResponse:
    """The public page behind the QR code: public fields only."""
    store = svc.open_store()
    try:
        trace = public_routes.trace(code, svc, store)
    finally:
        store.close()
    return render(request, "trace.html", None, trace=trace)


def _trace_url(request: Request, svc: ServicesDep, code: str) -> str:
    return f"{svc.settings.trace_base(str(request.base_url))}/t/{code}"


def _known(svc: ServicesDep, code: str) -> None:
    with Session(svc.engine) as s:
        if s.execute(select(Batch.id).where(Batch.trace_code == code)).first() is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no batch has this code")


@router.get("/t/{code}/qr.svg")
def trace_qr_svg(code: TraceCode, request: Request, svc: ServicesDep) -> Response:
    """The QR code for the product label, as SVG (print at any size)."""
    _known(svc, code)
    out = io.BytesIO()
    segno.make(_trace_url(request, svc, code), error="m").save(out, kind="svg", scale=4)
    return Response(out.getvalue(), media_type="image/svg+xml")


@router.get("/t/{code}/qr.png")
def trace_qr_png(code: TraceCode, request: Request, svc: ServicesDep) -> Response:
    _known(svc, code)
    out = io.BytesIO()
    segno.make(_trace_url(request, svc, code), error="m").save(out, kind="png", scale=8)
    return Response(out.getvalue(), media_type="image/png")
