"""Electronic signatures on a batch's record (quality staff): release, reject, hold or
review it by entering one's password again (docs/design-alerts.md, "Electronic
signatures"). Each is bound to the hash of the report as signed, sealed and audited."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy.orm import Session

from alerts.db import transaction
from alerts.models import Signature, User
from alerts.repo import signin
from alerts.repo.signin import Refusal
from alerts.report import batch_report
from alerts.signatures import WrongPassword, record_hash, sign_batch, signatures_of
from api.deps import Quality, ServicesDep, StoreDep, client_address
from api.routes.batches import check
from api.schemas import SignatureOut, SignBatch

router = APIRouter(prefix="/api/batches", tags=["signatures"])


def signed_out(row: Signature, current: str) -> SignatureOut:
    return SignatureOut(
        id=row.id,
        meaning=row.meaning,
        username=row.username,
        printed_name=row.printed_name,
        signed_ms=row.signed_ms,
        record_sha256=row.record_sha256,
        comment=row.comment,
        matches_record=row.record_sha256 == current,
    )


@router.post(
    "/{batch_id}/signatures",
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {"description": "the password is not right"},
        404: {"description": "no such batch at your sites"},
        429: {"description": "too many wrong passwords from here"},
    },
)
def sign(
    batch_id: str,
    body: SignBatch,
    request: Request,
    user: Quality,
    svc: ServicesDep,
    store: StoreDep,
) -> SignatureOut:
    """Sign the batch's record as it is now. A wrong password counts like a failed
    sign-in (a stolen session cannot guess it)."""
    check(svc, user, batch_id)
    now = time.time_ns() // 1_000_000
    address = client_address(request, svc.settings.proxies)
    with transaction(svc.engine) as s:
        wait = signin.wait_s(s, user.username, address, now)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many wrong passwords from here: wait and try again",
            headers={"Retry-After": str(wait)},
        )
    digest = record_hash(batch_report(svc.engine, store, batch_id, now))
    try:
        with transaction(svc.engine) as s:
            signer = s.get(User, user.username)
            assert signer is not None  # signed in
            row = sign_batch(
                s,
                signer=signer,
                password=body.password,
                meaning=body.meaning,
                batch_id=batch_id,
                record_sha256=digest,
                comment=body.comment,
                now_ms=now,
            )
            return signed_out(row, digest)
    except WrongPassword:
        with transaction(svc.engine) as failed:  # counted like a failed sign-in, audited
            signin.refused(failed, user.username, address, Refusal.WRONG_PASSWORD, now)
        raise


@router.get("/{batch_id}/signatures", responses={404: {"description": "no such batch"}})
def signatures(
    batch_id: str, user: Quality, svc: ServicesDep, store: StoreDep
) -> list[SignatureOut]:
    """The batch's signatures, oldest first, each saying whether the record is still
    what was signed."""
    check(svc, user, batch_id)
    current = record_hash(batch_report(svc.engine, store, batch_id, time.time_ns() // 1_000_000))
    with Session(svc.engine) as s:
        return [signed_out(row, current) for row in signatures_of(s, batch_id)]
