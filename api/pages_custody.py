"""The custody page, for a phone: scan a batch's QR label with the camera (or type its
id or code), see where it is, and record its next move in one more tap. The moves go
through the same API as everything else (``POST /api/batches/{id}/handover``)."""

from __future__ import annotations

import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerts.models import Batch, Location, User
from alerts.repo.scope import scope_of, sees_batch
from alerts.repo.users import Role
from api.deps import Services
from api.routes import batches as batch_routes
from api.schemas import BatchOut

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
