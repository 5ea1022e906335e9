"""What needs no sign-in: the public trace lookup behind a batch's QR code (public fields
only) and the health check."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.models import Batch, Location, Site
from alerts.report import batch_report
from api.deps import ServicesDep, StoreDep
from api.schemas import Health, PartHealth, ServiceBeatOut, TraceOut, TraceStay

router = APIRouter(prefix="/api", tags=["public"])

PUBLIC = {"/api/trace/{code}", "/api/health"}

#: a service heartbeat older than this is reported silent (they come every 5 s)
SILENT_S = 30.0


@router.get("/trace/{code}", responses={404: {"description": "no batch has this code"}})
def trace(
    code: Annotated[str, Path(pattern=r"^[0-9A-Z]{12}$")], svc: ServicesDep, store: StoreDep
) -> TraceOut:
    """A batch as a consumer or buyer sees it from the QR code on the label: product,
    origin, where it was kept (by place, never by person) and whether the cold chain
    held. No user names, no comments, no other batches."""
    with Session(svc.engine) as s:
        batch = s.execute(select(Batch).where(Batch.trace_code == code)).scalar_one_or_none()
        if batch is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no batch has this code")
        places = {
            loc.id: (site.name, loc.kind)
            for loc, site in s.execute(
                select(Location, Site).join(Site, Location.site_id == Site.id)
            ).all()
        }
        batch_id = batch.id
    report = batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000)
    delivered = bool(report.stays) and report.stays[-1].until_ms is not None
    outcome = report.verdict.outcome.value
    return TraceOut(
        trace_code=code,
        product=report.product,
        origin_producer=report.origin_producer,
        origin_village=report.origin_village,
        origin_county=report.origin_county,
        journey=[
            TraceStay(
                place=places.get(stay.location_id, ("", ""))[0],
                kind=places.get(stay.location_id, ("", stay.location_id))[1],
                from_ms=stay.from_ms,
                until_ms=stay.until_ms,
            )
            for stay in report.stays
        ],
        cold_chain_held=outcome == "accept",
        verdict=outcome if delivered or outcome != "accept" else "in_progress",
        mkt_c=report.verdict.mkt_c,
    )


@router.get("/health", responses={503: {"model": Health}})
def health(svc: ServicesDep, response: Response) -> Health:
    """Alive and making progress: 200 when every part is ok, 503 with the reasons when
    not (the database does not answer, the live hub is degraded, stalled or dead)."""
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        database = "unavailable"
    broker = (
        "off" if svc.hub is None else "connected" if svc.hub.broker_connected else "disconnected"
    )
    live, services = None, []
    if svc.hub is not None:
        status = svc.hub.health.status()
        live = PartHealth(state=status.state.value, reasons=list(status.reasons))
        now = time.monotonic()
        for name, (beat, at) in sorted(svc.hub.services.items()):
            age = now - at
            services.append(
                ServiceBeatOut(
                    service=name,
                    state="silent" if age > SILENT_S else beat.state,
                    reasons=list(beat.reasons),
                    age_s=round(age, 1),
                )
            )
    ok = database == "ok" and (live is None or live.state == "ok")
    if not ok:
        response.status_code = 503
    return Health(
        status="ok" if ok else "degraded",
        database=database,
        broker=broker,
        live=live,
        services=services,
    )
