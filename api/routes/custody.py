"""Receiving a batch into a room, splitting a lot, and the QR label sheet to stick on
them (operators, at the sites given to them). The moves after that are handovers
(api/routes/batches.py)."""

from __future__ import annotations

import base64
import dataclasses
import io
import time
from pathlib import Path
from typing import Annotated

import segno
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from alerts.db import transaction
from alerts.models import Batch, Location
from alerts.repo import NewBatch, create_batch, split_batch
from alerts.repo.scope import acts_on_batch
from api import imports
from api.deps import Driver, Operator, SameOrigin, ServicesDep, scope_of_user
from api.i18n import language, words
from api.routes.batches import batch_out, check
from api.schemas import BatchOut, ImportOut, Receive, Scanned, Split

router = APIRouter(prefix="/api", tags=["batches"])
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")

MAX_LABELS = 200


@router.post(
    "/batches",
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "the room is not at your sites"},
        404: {"description": "no such room or profile"},
        409: {"description": "a batch of that id exists"},
    },
)
def receive(body: Receive, user: Operator, svc: ServicesDep) -> BatchOut:
    """Receive a batch into a room: its first custody event (who, when, where, the
    temperature), and its public trace code for the label."""
    scope = scope_of_user(svc, user)
    with Session(svc.engine) as s:
        room = s.get(Location, body.into_location)
        if room is None or not scope.site(room.site_id):
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no location {body.into_location!r} at your sites"
            )
    fields = body.model_dump(exclude={"into_location", "temp_c"})
    with transaction(svc.engine) as s:
        create_batch(
            s,
            NewBatch(**fields),
            into_location=body.into_location,
            at_ms=time.time_ns() // 1_000_000,
            by=user.username,
            temp_c=body.temp_c,
        )
    return batch_out(svc, body.id)


@router.post(
    "/batches/import",
    dependencies=[SameOrigin],
    responses={400: {"description": "refused: each problem by row and column"}},
)
def import_batches(
    user: Operator,
    svc: ServicesDep,
    file: Annotated[UploadFile, File(description="CSV or .xlsx; the columns: POST /api/batches")],
    dry_run: Annotated[bool, Form()] = False,
) -> ImportOut:
    """Receive every batch of a spreadsheet into its room, all or none; batches already
    received are left as they are."""
    name = file.filename or "sheet"
    data = imports.read_upload(name, file.file)
    done = imports.import_batches(
        svc.engine,
        name,
        data,
        actor=user.username,
        scope=scope_of_user(svc, user),
        dry_run=dry_run,
    )
    return ImportOut(**dataclasses.asdict(done))


@router.post(
    "/batches/{batch_id}/split",
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "not at your sites"},
        404: {"description": "no such batch at your sites"},
        409: {"description": "delivered, or the new id exists"},
        400: {"description": "not less than the batch"},
    },
)
def split(batch_id: str, body: Split, user: Operator, svc: ServicesDep) -> BatchOut:
    """Take part of a batch off as a new batch where it is (its own label and code)."""
    scope = scope_of_user(svc, user)
    check(svc, user, batch_id)
    with Session(svc.engine) as s:
        if not acts_on_batch(s, scope, batch_id, None):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the batch is not at your sites")
    with transaction(svc.engine) as s:
        split_batch(
            s,
            batch_id,
            new_id=body.new_id,
            quantity=body.quantity,
            at_ms=time.time_ns() // 1_000_000,
            by=user.username,
        )
    return batch_out(svc, body.new_id)


@router.get(
    "/labels.pdf",
    responses={200: {"content": {"application/pdf": {}}}, 404: {"description": "no such batch"}},
    response_class=Response,
)
def labels(
    request: Request,
    user: Operator,
    svc: ServicesDep,
    batch: Annotated[list[str], Query(min_length=1, max_length=MAX_LABELS)],
) -> Response:
    """A sheet of QR labels (A4, 3 × 8), one per batch named: the code a phone scans
    (the public trace address), the batch id, product, quantity and origin."""
    from weasyprint import HTML

    base = svc.settings.trace_base(str(request.base_url))
    items = []
    for batch_id in batch:
        check(svc, user, batch_id)
        with Session(svc.engine) as s:
            row = s.get(Batch, batch_id)
            assert row is not None  # checked
            svg = segno.make(f"{base}/t/{row.trace_code}", error="m").svg_inline(scale=3)
            items.append(
                {
                    "batch": row,
                    "qr": "data:image/svg+xml;base64,"
                    + base64.b64encode(svg.encode()).decode("ascii"),
                }
            )
    lang = language(request)
    html = templates.get_template("labels_pdf.html").render(lang=lang, t=words(lang), items=items)
    return Response(
        HTML(string=html).write_pdf(),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="labels.pdf"'},
    )


#: a phone's photo of a label is at most this big, and this many pixels
MAX_PHOTO_BYTES = 12 * 2**20
MAX_PHOTO_PIXELS = 50_000_000


@router.post(
    "/scan",
    dependencies=[SameOrigin],
    responses={
        413: {"description": "photo too large"},
        415: {"description": "not a JPEG, PNG or WebP picture"},
        422: {"description": "no QR code found in the picture"},
    },
)
def scan(
    _user: Driver,
    image: Annotated[UploadFile, File(description="a photo of the batch's label")],
) -> Scanned:
    """What the QR code in a photo of a label says: for phones whose browser cannot read
    one from the camera itself (the page then finds the batch by it)."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    data = image.file.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the photo is over 12 MB")
    try:
        picture = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        picture = None
    if picture is None or picture.format not in ("JPEG", "PNG", "WEBP"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "the photo must be a JPEG, PNG or WebP"
        )
    if picture.width * picture.height > MAX_PHOTO_PIXELS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the photo has too many pixels")
    picture.thumbnail((2400, 2400))  # a phone's 12 MP photo decodes as well, faster
    found = zxingcpp.read_barcodes(
        picture.convert("L"), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    if not found:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "no QR code found in the photo: hold the label flat, closer, in good light",
        )
    return Scanned(text=found[0].text)
