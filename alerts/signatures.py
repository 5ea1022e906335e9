"""Electronic signatures on a batch's record: reviewed, released, rejected, held
(docs/design-alerts.md, "Electronic signatures").

A signature is made by re-entering one's password (each signing, 21 CFR Part 11
§11.200), states its meaning, keeps the signer's printed name and the time, and is bound
to the SHA-256 of the record as signed (:func:`record_hash` of the batch's report); it
is sealed like every regulated record and written with its audit row, so it cannot be
removed, copied to another record or changed without verify saying so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import passwords
from alerts.audit import record
from alerts.errors import Refused
from alerts.models import Signature, User
from alerts.report import BatchReport, as_dict

Meaning = Literal["reviewed", "released", "rejected", "held"]


class WrongPassword(Refused):
    """The password entered to sign is not the signer's."""


MEANINGS: tuple[Meaning, ...] = ("reviewed", "released", "rejected", "held")


def record_hash(report: BatchReport) -> str:
    """The record a signature is bound to: the batch's report as shown (its journey,
    readings digest, breaches and acknowledgements, verdict), without the time it was
    generated."""
    content = {k: v for k, v in as_dict(report).items() if k != "generated_ms"}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sign_batch(
    s: Session,
    *,
    signer: User,
    password: str,
    meaning: Meaning,
    batch_id: str,
    record_sha256: str,
    comment: str | None,
    now_ms: int,
) -> Signature:
    """The signature, with its audit row, in the caller's transaction; Refused if the
    password is not the signer's."""
    if meaning not in MEANINGS:
        raise Refused(f"a signature means one of {', '.join(MEANINGS)}")
    if not passwords.verify(signer.password_hash, password):
        raise WrongPassword("the password is not right: signing needs your own password")
    row = Signature(
        entity="batch",
        entity_id=batch_id,
        meaning=meaning,
        username=signer.username,
        printed_name=signer.display_name,
        signed_ms=now_ms,
        record_sha256=record_sha256,
        comment=comment,
    )
    s.add(row)
    s.flush()
    record(
        s,
        actor=signer.username,
        action="batch.sign",
        entity="batch",
        entity_id=batch_id,
        new={
            "signature": row.id,
            "meaning": meaning,
            "printed_name": signer.display_name,
            "record_sha256": record_sha256,
            "comment": comment,
        },
        reason=comment,
        ts_ms=now_ms,
    )
    return row


def signatures_of(s: Session, batch_id: str) -> Sequence[Signature]:
    return list(
        s.execute(
            select(Signature)
            .where(Signature.entity == "batch", Signature.entity_id == batch_id)
            .order_by(Signature.signed_ms, Signature.id)
        ).scalars()
    )
