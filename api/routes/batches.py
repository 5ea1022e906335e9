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

from alerts.db import transaction
from alerts.models import Batch, Location, Stay
from alerts.repo import handover
from alerts.report import as_dict, batch_report
from api.deps import Driver, Quality, ServicesDep, StoreDep, Viewer
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
    _user: Viewer,
    svc: ServicesDep,
    location: Annotated[str | None, Query(max_length=64)] = None,
) -> list[BatchOut]:
    """Batches, newest first; ``location``: those in it now."""
    with Session(svc.engine) as s:
        query = select(Batch).order_by(Batch.created_ms.desc(), Batch.id)
        if location is not None:
            query = query.join(Stay, Stay.batch_id == Batch.id).where(
                Stay.location_id == location, Stay.until_ms.is_(None)
            )
        return [_batch(s, b) for b in s.execute(query).scalars()]


def _get(s: Session, batch_id: str) -> Batch:
    batch = s.get(Batch, batch_id)
    if batch is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r}")
    return batch


@router.get("/{batch_id}", responses={404: {"description": "no such batch"}})
def batch(batch_id: str, _user: Viewer, svc: ServicesDep) -> BatchOut:
    with Session(svc.engine) as s:
        return _batch(s, _get(s, batch_id))


@router.post(
    "/{batch_id}/handover",
    responses={
        404: {"description": "no such batch or location"},
        409: {"description": "not possible now"},
    },
)
def record_handover(batch_id: str, body: Handover, user: Driver, svc: ServicesDep) -> BatchOut:
    """Custody moves: who (the signed-in user), where, when (now), the temperature."""
    with Session(svc.engine) as s:
        _get(s, batch_id)
        if body.to_location is not None and s.get(Location, body.to_location) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no location {body.to_location!r}")
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
        )
    with Session(svc.engine) as s:
        return _batch(s, _get(s, batch_id))


@router.get("/{batch_id}/report", responses={404: {"description": "no such batch"}})
def report(batch_id: str, _user: Quality, svc: ServicesDep, store: StoreDep) -> dict[str, object]:
    """The journey report: stays, sensors and the calibrations applied, breaches with
    their acknowledgements, the verdict, flags, a hash of the data."""
    with Session(svc.engine) as s:
        _get(s, batch_id)
    result = batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000)
    data: dict[str, object] = json.loads(json.dumps(as_dict(result), default=str))
    return data


@router.get(
    "/{batch_id}/report.csv",
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such batch"}},
    response_class=Response,
)
def report_csv(batch_id: str, _user: Quality, svc: ServicesDep, store: StoreDep) -> Response:
    """The temperatures the verdict used, corrected, one row per reading, by stay."""
    with Session(svc.engine) as s:
        _get(s, batch_id)
    result = batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["batch", "location", "sensor", "timestamp_utc", "ts_ms", "temp_c", "fault"])
    for stay in result.stays:
        primary = next((u for u in stay.sensors if u.primary), None)
        for p in stay.points:
            writer.writerow(
                [
                    result.batch_id,
                    stay.location_id,
                    f"{primary.gateway}/{primary.sensor}" if primary else "",
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.ts_ms / 1000)),
                    p.ts_ms,
                    "" if p.value is None else p.value,
                    "fault" if p.value is None else "",
                ]
            )
    writer.writerow([])
    writer.writerow(["# verdict", result.verdict.outcome.value, "MKT", result.verdict.mkt_c])
    writer.writerow(["# data sha256", result.data_sha256])
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{result.batch_id}.csv"'},
    )
