"""The custody pages, for a phone: receive a batch into a room (``/receive``) and print
its label; scan a batch's QR label with the camera (or type its id or code), see where
it is, and record its next move in one more tap (``/custody``). The forms call the same
API as everything else (``POST /api/batches``, ``POST /api/batches/{id}/handover``)."""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerts.models import Batch, Location, ProfileRow, User
from alerts.repo.scope import scope_of, sees_batch
from alerts.repo.users import Role
from api.deps import Services, ServicesDep
from api.pages import CST_MS, page_user, render
from api.routes import batches as batch_routes
from api.schemas import BatchOut

router = APIRouter(include_in_schema=False)

#: what a scanned label says: the public trace address ends in the code
TRACE_IN_URL = re.compile(r"/t/([0-9A-Z]{12})/?$")


def find_batch(svc: Services, user: User, typed: str) -> BatchOut | None:
    """The batch a typed id, trace code or scanned trace address names, if the user
    may see it."""
    text = typed.strip()
    found = TRACE_IN_URL.search(text)
    code = found.group(1) if found else text.upper()
    with Session(svc.engine) as s:
        batch = s.execute(
            select(Batch).where(or_(Batch.id == text, Batch.trace_code == code))
        ).scalar_one_or_none()
        if batch is None or not sees_batch(s, scope_of(s, user), batch.id):
            return None
        batch_id = batch.id
    return batch_routes.batch(batch_id, user, svc)


def moves(svc: Services, user: User, batch: BatchOut) -> list[dict[str, object]]:
    """The moves the user may record for the batch: each an event and the places it
    may go, in the order they are likely (a driver: their truck first)."""
    if batch.location_id is None:
        return []
    with Session(svc.engine) as s:
        scope = scope_of(s, user)
        places = list(s.execute(select(Location).order_by(Location.id)).scalars())
    here = batch.location_id
    on_truck = here in scope.truck_locations
    mine = [p for p in places if p.id != here and scope.site(p.site_id)]
    trucks = [p for p in places if p.kind == "truck_compartment" and p.id != here]
    stores = [p for p in mine if p.kind != "truck_compartment"]
    out: list[dict[str, object]] = []
    if Role(user.role) is Role.DRIVER:
        if not on_truck:
            out.append(
                {"event": "loaded", "to": [p for p in trucks if p.id in scope.truck_locations]}
            )
        else:
            out.append(
                {"event": "unloaded", "to": [p for p in places if p.kind != "truck_compartment"]}
            )
            out.append({"event": "delivered", "to": []})
        return [m for m in out if m["to"] or m["event"] == "delivered"]
    here_row = next((p for p in places if p.id == here), None)
    if here_row is not None and not scope.site(here_row.site_id):
        return []  # seen (it was here once), not theirs to move now
    out.append({"event": "transferred", "to": stores})
    out.append({"event": "loaded", "to": trucks})
    out.append({"event": "delivered", "to": []})
    return [m for m in out if m["to"] or m["event"] == "delivered"]


@router.get("/custody")
def custody_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """Scan or type a batch, then record its next move (drivers, warehouse staff)."""
    user = page_user(request, svc, Role.DRIVER)
    typed = request.query_params.get("code", "")[:200]
    batch = find_batch(svc, user, typed) if typed.strip() else None
    return render(
        request,
        "custody.html",
        user,
        typed=typed,
        batch=batch,
        moves=moves(svc, user, batch) if batch else [],
        can_label=Role(user.role).may(Role.OPERATOR),
    )


def new_batch_id(now_ms: int) -> str:
    """An id to offer for a batch being received: the county's day and four letters
    (the receiver may type their own, such as the producer's lot number)."""
    day = datetime.fromtimestamp((now_ms + CST_MS) / 1000, UTC).strftime("%Y%m%d")
    return f"B-{day}-{''.join(secrets.choice('ABCDEFGHJKLMNPQRSTUVWXYZ') for _ in range(4))}"


@router.get("/receive")
def receive_page(request: Request, svc: ServicesDep) -> HTMLResponse:
    """Receive a batch into a room of the user's sites (warehouse staff); the form posts
    to ``POST /api/batches`` and opens the batch's custody page, with its label."""
    user = page_user(request, svc, Role.OPERATOR)
    with Session(svc.engine) as s:
        scope = scope_of(s, user)
        rooms = [
            loc
            for loc in s.execute(select(Location).order_by(Location.site_id, Location.id)).scalars()
            if loc.kind != "truck_compartment" and scope.site(loc.site_id)
        ]
        profiles = list(s.execute(select(ProfileRow.id).order_by(ProfileRow.id)).scalars())
    return render(
        request,
        "receive.html",
        user,
        rooms=rooms,
        profiles=profiles,
        suggested_id=new_batch_id(time.time_ns() // 1_000_000),
    )
