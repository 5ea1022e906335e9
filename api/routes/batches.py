"""Product batches: list, one batch with its journey, custody handovers (drivers record
loading and delivery), and the journey report (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.audit import head
from alerts.db import transaction
from alerts.models import Batch, Location, Stay, User
from alerts.repo import handover
from alerts.repo.scope import Scope, acts_on_batch, location_sites, sees_batch
from alerts.report import as_dict, batch_report
from alerts.wording import local_time
from api.deps import Driver, Quality, ServicesDep, StoreDep, Viewer, scope_of_user
from api.schemas import BatchOut, Handover, StayOut, from_row

router = APIRouter(prefix="/api/batches", tags=["batches"])


def _batch(s: Session, batch: Batch) -> BatchOut:
    names = {loc.id: loc.name for loc in s.execute(select(Location)).scalars()}
    stays = list(
        s.execute(select(Stay).where(Stay.batch_id == batch.id).order_by(Stay.from_ms)).scalars()
    )
    current = next((st.location_id for st in stays if st.until_ms is None), None)
    return from_row(
        BatchOut,
        batch,
        location_id=current,
        journey=[
            from_row(StayOut, st, location_name=names.get(st.location_id, st.location_id))
            for st in stays
        ],
    )


@router.get("")
def batches(
    user: Viewer,
    svc: ServicesDep,
    location: Annotated[str | None, Query(max_length=64)] = None,
) -> list[BatchOut]:
    """The batches the user may see, newest first; ``location``: those in it now."""
    scope = scope_of_user(svc, user)
    with Session(svc.engine) as s:
        query = select(Batch).order_by(Batch.created_ms.desc(), Batch.id)
        if location is not None:
            query = query.join(Stay, Stay.batch_id == Batch.id).where(
                Stay.location_id == location, Stay.until_ms.is_(None)
            )
        sites = None if scope.everywhere else location_sites(s)
        return [
            _batch(s, b) for b in s.execute(query).scalars() if sees_batch(s, scope, b.id, sites)
        ]


def _get(s: Session, batch_id: str, scope: Scope) -> Batch:
    """The batch, if the user may see it (else as if there were none)."""
    batch = s.get(Batch, batch_id)
    if batch is None or not sees_batch(s, scope, batch_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r} at your sites")
    return batch


def batch_out(svc: ServicesDep, batch_id: str) -> BatchOut:
    with Session(svc.engine) as s:
        found = s.get(Batch, batch_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r}")
        return _batch(s, found)


def check(svc: ServicesDep, user: User, batch_id: str) -> None:
    """404 unless the batch exists and the user may see it."""
    with Session(svc.engine) as s:
        _get(s, batch_id, scope_of_user(svc, user))


@router.get("/{batch_id}", responses={404: {"description": "no such batch at your sites"}})
def batch(batch_id: str, user: Viewer, svc: ServicesDep) -> BatchOut:
    with Session(svc.engine) as s:
        return _batch(s, _get(s, batch_id, scope_of_user(svc, user)))


@router.post(
    "/{batch_id}/handover",
    responses={
        403: {"description": "neither side of the move is yours"},
        404: {"description": "no such batch or location"},
        409: {"description": "not possible now"},
    },
)
def record_handover(batch_id: str, body: Handover, user: Driver, svc: ServicesDep) -> BatchOut:
    """Custody moves: who (the signed-in user), where, when (now), the temperature.
    Recorded by someone on either side of the move: a user of the site the batch leaves
    or the one it goes to; a driver where one side is their truck."""
    scope = scope_of_user(svc, user)
    with Session(svc.engine) as s:
        _get(s, batch_id, scope)
        if body.to_location is not None and s.get(Location, body.to_location) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no location {body.to_location!r}")
        if not acts_on_batch(s, scope, batch_id, body.to_location):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "a driver moves the batches of their own truck"
                if scope.role.value == "driver"
                else "neither side of this move is at your sites",
            )
    if (body.to_location is None) != (body.event == "delivered"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "a delivery has no next location; every other handover has one",
        )
    with transaction(svc.engine) as s:
        handover(
            s,
            batch_id,
            to_location=body.to_location,
            at_ms=time.time_ns() // 1_000_000,
            by=user.username,
            temp_c=body.temp_c,
            event=body.event,
            receiver=body.receiver,
        )
    with Session(svc.engine) as s:
        return _batch(s, _get(s, batch_id, scope))


@router.get("/{batch_id}/report", responses={404: {"description": "no such batch"}})
def report(batch_id: str, user: Quality, svc: ServicesDep, store: StoreDep) -> dict[str, object]:
    """The journey report: stays, sensors and the calibrations applied, breaches with
    their acknowledgements, the verdict, flags, a hash of the data."""
    check(svc, user, batch_id)
    result = batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000)
    data: dict[str, object] = json.loads(json.dumps(as_dict(result), default=str))
    return data


@router.get(
    "/{batch_id}/report.csv",
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such batch"}},
    response_class=Response,
)
def report_csv(batch_id: str, user: Quality, svc: ServicesDep, store: StoreDep) -> Response:
    """The temperatures the verdict used, corrected, one row per reading, by stay."""
    check(svc, user, batch_id)
    result = batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["batch", "location", "sensor", "timestamp_utc", "time_local", "ts_ms", "temp_c", "fault"]
    )
    for stay in result.stays:
        primary = next((u for u in stay.sensors if u.primary), None)
        for p in stay.points:
            writer.writerow(
                [
                    result.batch_id,
                    stay.location_id,
                    f"{primary.gateway}/{primary.sensor}" if primary else "",
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.ts_ms / 1000)),
                    local_time(p.ts_ms),  # as the county reads it, with the date and offset
                    p.ts_ms,
                    "" if p.value is None else p.value,
                    "fault" if p.value is None else "",
                ]
            )
    writer.writerow([])
    writer.writerow(["# verdict", result.verdict.outcome.value, "MKT", result.verdict.mkt_c])
    writer.writerow(["# data sha256", result.data_sha256])
    last_row, last_hash = head(svc.engine)  # the trail's head, kept with every export
    writer.writerow(["# audit trail head", last_row, last_hash])
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{result.batch_id}.csv"'},
    )
