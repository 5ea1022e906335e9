"""Calibrations (GB 31605): quality staff record one with its certificate file; everyone
sees the sensors by due date, at their sites (docs/design-county.md, "Calibrations")."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import Response
from sqlalchemy.orm import Session

from alerts.calibration import (
    MAX_CERTIFICATE_BYTES,
    CertificateFile,
    certificate_type,
    due_list,
    new_calibration,
)
from alerts.db import reading, transaction
from alerts.models import Calibration, CalibrationCertificate
from alerts.repo.scope import sees_sensor
from api.deps import Quality, SameOrigin, ServicesDep, Viewer, scope_of_user
from api.schemas import FromRow, Model

router = APIRouter(prefix="/api", tags=["calibrations"])

DAY_MS = 86_400_000
GatewayId = Annotated[str, Form(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
SensorId = Annotated[str, Form(pattern=r"^[A-Za-z0-9][^/\s]*$", max_length=128)]


class CalibrationOut(FromRow):
    id: int
    gateway: str
    sensor: str
    calibrated_ms: int
    reference_instrument: str
    #: added to the raw reading from ``calibrated_ms`` on
    correction_c: float
    #: the certificate's number
    certificate: str | None
    #: valid until
    next_due_ms: int


class SensorDueOut(Model):
    gateway: str
    sensor: str
    location_id: str
    location_name: str
    site_id: str
    #: never: not calibrated; overdue; due: within the asked days; valid
    state: Literal["never", "overdue", "due", "valid"]
    latest: CalibrationOut | None
    #: the latest calibration's certificate file is kept (``…/certificate``)
    certificate_file: bool


@router.get("/calibrations")
def calibrations_due(
    user: Viewer,
    svc: ServicesDep,
    within_days: Annotated[int, Query(ge=0, le=3660)] = 30,
) -> list[SensorDueOut]:
    """Every sensor measuring a location now at the user's sites, with its latest
    calibration: never calibrated first, then by due date."""
    now = time.time_ns() // 1_000_000
    scope = scope_of_user(svc, user)
    with reading(svc.engine) as s:
        rows = [d for d in due_list(s) if scope.site(d.site_id)]
    out = []
    for d in rows:
        due = d.due_ms
        state: Literal["never", "overdue", "due", "valid"] = (
            "never"
            if due is None
            else "overdue"
            if due < now
            else "due"
            if due < now + within_days * DAY_MS
            else "valid"
        )
        out.append(
            SensorDueOut(
                gateway=d.gateway,
                sensor=d.sensor,
                location_id=d.location_id,
                location_name=d.location_name,
                site_id=d.site_id,
                state=state,
                latest=None if d.latest is None else CalibrationOut.model_validate(d.latest),
                certificate_file=d.has_file,
            )
        )
    return out


@router.post(
    "/calibrations",
    dependencies=[SameOrigin],
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {"description": "refused"},
        404: {"description": "no such sensor at your sites"},
        413: {"description": "file too large"},
        415: {"description": "not a PDF, PNG or JPEG"},
    },
)
def record(
    user: Quality,
    svc: ServicesDep,
    gateway: GatewayId,
    sensor: SensorId,
    calibrated_ms: Annotated[int, Form(ge=0)],
    reference_instrument: Annotated[str, Form(min_length=1, max_length=200)],
    correction_c: Annotated[float, Form(ge=-10, le=10)],
    next_due_ms: Annotated[int, Form(ge=0)],
    certificate: Annotated[str | None, Form(max_length=100)] = None,
    file: Annotated[
        UploadFile | None, File(description="the certificate: PDF, PNG or JPEG")
    ] = None,
) -> CalibrationOut:
    """Record a calibration with its certificate file; its correction applies to the
    sensor's readings from ``calibrated_ms`` on. Audited, with the file's SHA-256."""
    upload = None
    if file is not None:
        body = file.file.read(MAX_CERTIFICATE_BYTES + 1)
        if len(body) > MAX_CERTIFICATE_BYTES:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"the certificate file is over {MAX_CERTIFICATE_BYTES // 2**20} MB",
            )
        if certificate_type(body) is None:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                "the certificate file must be a PDF, PNG or JPEG",
            )
        upload = CertificateFile(file.filename or "certificate", body)
    scope = scope_of_user(svc, user)
    with transaction(svc.engine) as s:
        if not sees_sensor(s, scope, gateway, sensor):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such sensor at your sites")
        cal = Calibration(
            gateway=gateway,
            sensor=sensor,
            calibrated_ms=calibrated_ms,
            reference_instrument=reference_instrument.strip(),
            correction_c=correction_c,
            certificate=(certificate or "").strip() or None,
            next_due_ms=next_due_ms,
        )
        new_calibration(s, cal, actor=user.username, file=upload)
        s.flush()
        return CalibrationOut.model_validate(cal)


@router.get(
    "/calibrations/{calibration_id}/certificate",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "image/png": {}, "image/jpeg": {}}}},
)
def certificate_file(calibration_id: int, user: Viewer, svc: ServicesDep) -> Response:
    """The certificate file, as it was recorded (an attachment, never shown as a page)."""
    scope = scope_of_user(svc, user)
    with Session(svc.engine) as s:
        cal = s.get(Calibration, calibration_id)
        kept = s.get(CalibrationCertificate, calibration_id)
        if cal is None or kept is None or not sees_sensor(s, scope, cal.gateway, cal.sensor):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such certificate")
        name = "".join(c for c in kept.filename if c.isalnum() or c in "._-") or "certificate"
        return Response(
            kept.body,
            media_type=kept.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Content-Type-Options": "nosniff",
            },
        )
