"""Batches and their custody: registration, handovers (who, where, when, the temperature
at that moment) and the journey. Every change is written with its audit row in the
caller's transaction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerts.audit import record
from alerts.errors import Conflict, NotFound, Refused
from alerts.models import Batch, Location, ProfileRow, Stay

TRACE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud, typed by hand


def new_trace_code() -> str:
    """The public code on a batch's QR label: 12 characters, unguessable (60 bits)."""
    return "".join(secrets.choice(TRACE_ALPHABET) for _ in range(12))


@dataclass(frozen=True)
class NewBatch:
    id: str
    profile_id: str
    product: str
    quantity: float
    unit: str
    origin_producer: str
    origin_village: str | None = None
    origin_county: str | None = None
    lot: str | None = None


def create_batch(
    s: Session,
    batch: NewBatch,
    *,
    into_location: str,
    at_ms: int,
    by: str,
    temp_c: float | None,
) -> str:
    """Register a batch and its first stay (into store); returns its public trace code."""
    code = new_trace_code()
    if s.get(ProfileRow, batch.profile_id) is None:
        raise NotFound(f"no profile {batch.profile_id!r}: save it first")
    if s.get(Batch, batch.id) is not None:
        raise Conflict(f"batch {batch.id} exists")
    if s.get(Location, into_location) is None:
        raise NotFound(f"no location {into_location!r}")
    s.add(
        Batch(
            id=batch.id,
            profile_id=batch.profile_id,
            product=batch.product,
            quantity=batch.quantity,
            unit=batch.unit,
            origin_producer=batch.origin_producer,
            origin_village=batch.origin_village,
            origin_county=batch.origin_county,
            trace_code=code,
            created_ms=at_ms,
            lot=batch.lot,
        )
    )
    _first_stay(s, batch.id, into_location, at_ms, by, temp_c, "into_store")
    record(
        s,
        actor=by,
        action="batch.create",
        entity="batch",
        entity_id=batch.id,
        new={**batch.__dict__, "location": into_location, "at_ms": at_ms, "temp_c": temp_c},
        ts_ms=None,
    )
    return code


def _first_stay(
    s: Session,
    batch_id: str,
    location_id: str,
    at_ms: int,
    by: str,
    temp_c: float | None,
    event: str,
) -> None:
    s.flush()  # the batch row first: the stay refers to it
    s.add(
        Stay(
            batch_id=batch_id,
            location_id=location_id,
            from_ms=at_ms,
            handed_over_by=by,
            temp_at_handover_c=temp_c,
            event=event,
        )
    )


def handover(
    s: Session,
    batch_id: str,
    *,
    to_location: str | None,
    at_ms: int,
    by: str,
    temp_c: float | None,
    event: str,
    receiver: str | None = None,
) -> None:
    """Custody moves: the current stay ends at ``at_ms`` and, unless the batch is
    delivered (``to_location`` None), a new one begins there. Records who, where, when and
    the temperature at that moment."""
    if not by.strip():
        raise Refused("a handover needs the person who did it")
    current = s.execute(
        select(Stay).where(Stay.batch_id == batch_id, Stay.until_ms.is_(None))
    ).scalar_one_or_none()
    if current is None:
        raise Conflict(f"batch {batch_id} is not in anyone's custody (delivered?)")
    if at_ms <= current.from_ms:
        raise Conflict(
            f"handover at {at_ms} is not after the batch arrived in "
            f"{current.location_id} at {current.from_ms}"
        )
    current.until_ms = at_ms
    if to_location is not None:
        s.add(
            Stay(
                batch_id=batch_id,
                location_id=to_location,
                from_ms=at_ms,
                handed_over_by=by,
                temp_at_handover_c=temp_c,
                event=event,
            )
        )
    record(
        s,
        actor=by,
        action=f"custody.{event}",
        entity="batch",
        entity_id=batch_id,
        old={"location": current.location_id},
        new={
            "location": to_location,
            "at_ms": at_ms,
            "temp_c": temp_c,
            **({"receiver": receiver} if receiver else {}),
        },
    )


def split_batch(
    s: Session, batch_id: str, *, new_id: str, quantity: float, at_ms: int, by: str
) -> str:
    """Take ``quantity`` off a batch as a new batch in the same place (a lot shared
    between two buyers): same product, profile and origin, its own trace code, and a
    stay that starts now; the journey before is the parent's (``split_from``).
    Returns the new batch's trace code."""
    parent = s.get(Batch, batch_id)
    if parent is None:
        raise NotFound(f"no batch {batch_id!r}")
    if s.get(Batch, new_id) is not None:
        raise Conflict(f"batch {new_id} exists")
    if not 0 < quantity < parent.quantity:
        raise Refused(
            f"a split takes more than nothing and less than the {parent.quantity} {parent.unit} "
            f"of {batch_id}"
        )
    current = s.execute(
        select(Stay).where(Stay.batch_id == batch_id, Stay.until_ms.is_(None))
    ).scalar_one_or_none()
    if current is None:
        raise Conflict(f"batch {batch_id} is not in anyone's custody (delivered?)")
    code = new_trace_code()
    parent.quantity = round(parent.quantity - quantity, 6)
    s.add(
        Batch(
            id=new_id,
            profile_id=parent.profile_id,
            product=parent.product,
            quantity=quantity,
            unit=parent.unit,
            origin_producer=parent.origin_producer,
            origin_village=parent.origin_village,
            origin_county=parent.origin_county,
            trace_code=code,
            created_ms=at_ms,
            lot=parent.lot,
            split_from=batch_id,
        )
    )
    _first_stay(s, new_id, current.location_id, at_ms, by, None, "split")
    record(
        s,
        actor=by,
        action="batch.split",
        entity="batch",
        entity_id=batch_id,
        old={"quantity": parent.quantity + quantity},
        new={"quantity": parent.quantity, "split_off": new_id, "split_quantity": quantity},
    )
    return code


def batches_in(s: Session, location_id: str, start_ms: int, end_ms: int | None) -> list[str]:
    """Batches that were in the location at any moment of [start, end)."""
    query = select(Stay.batch_id).where(
        Stay.location_id == location_id, or_(Stay.until_ms.is_(None), Stay.until_ms > start_ms)
    )
    if end_ms is not None:
        query = query.where(Stay.from_ms < end_ms)
    return sorted(set(s.execute(query).scalars()))


def journey(s: Session, batch_id: str) -> list[Stay]:
    stays = list(
        s.execute(select(Stay).where(Stay.batch_id == batch_id).order_by(Stay.from_ms)).scalars()
    )
    return stays
