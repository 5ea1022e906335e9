"""Delivery reports pushed by the SMS providers (Aliyun, Tencent Cloud): ``POST
/api/receipts/{provider}?key=…``. The providers cannot sign in, so the address carries a
secret of ours (COLDCHAIN_RECEIPTS_KEY, 32+ characters); without it the route is off."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, status

from alerts.db import transaction
from alerts.receipts import parse_reports, record_reports
from api.deps import ServicesDep
from api.schemas import Model

router = APIRouter(prefix="/api", tags=["notifications"])


class ReceiptsOut(Model):
    #: the reports that matched a notification we sent
    matched: int


@router.post(
    "/receipts/{provider}",
    responses={
        400: {"description": "not a delivery report push"},
        403: {"description": "not our key"},
        404: {"description": "delivery reports are not set up"},
    },
)
def receipts(
    provider: Literal["aliyun", "tencent"],
    svc: ServicesDep,
    key: Annotated[str, Query(max_length=200)] = "",
    body: Annotated[Any, Body()] = None,
) -> ReceiptsOut:
    """Record a provider's delivery reports on the notifications they are about."""
    ours = svc.settings.receipts_key
    if ours is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "delivery reports are not set up")
    if not hmac.compare_digest(key.encode(), ours.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not our key")
    try:
        reports = parse_reports(provider, body)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    with transaction(svc.engine) as s:
        return ReceiptsOut(matched=record_reports(s, provider, reports))
