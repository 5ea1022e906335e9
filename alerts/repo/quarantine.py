"""The alert service's quarantine: messages whose judging failed, with the reason.

Bounded: at most :data:`MAX_ROWS` rows and :data:`MAX_AGE_MS` old; what is trimmed to
keep it so is counted by the caller (``keep_aside`` returns how many it dropped)."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from alerts.models import QuarantineRow

MAX_ROWS = 10_000
MAX_AGE_MS = 30 * 86_400_000


def keep_aside(s: Session, topic: str, payload: bytes, reason: str, received_ms: int) -> int:
    """Keep a message aside; returns how many old ones were dropped to stay bounded."""
    s.add(QuarantineRow(received_ms=received_ms, topic=topic, payload=payload, reason=reason))
    s.flush()
    old = select(QuarantineRow.id).where(QuarantineRow.received_ms < received_ms - MAX_AGE_MS)
    count = s.scalar(select(func.count()).select_from(QuarantineRow)) or 0
    over = select(QuarantineRow.id).order_by(QuarantineRow.id).limit(max(0, count - MAX_ROWS))
    doomed = set(s.scalars(old)) | (set(s.scalars(over)) if count > MAX_ROWS else set())
    if doomed:
        s.execute(delete(QuarantineRow).where(QuarantineRow.id.in_(doomed)))
    return len(doomed)


def quarantined(s: Session, limit: int = 100) -> list[QuarantineRow]:
    """The newest messages kept aside, newest first."""
    return list(
        s.execute(select(QuarantineRow).order_by(QuarantineRow.id.desc()).limit(limit)).scalars()
    )


def quarantined_one(s: Session, row_id: int) -> QuarantineRow | None:
    return s.get(QuarantineRow, row_id)


def ask_replay(s: Session, row_ids: list[int], now_ms: int) -> int:
    """Mark messages to be put back (the running service replays them); returns how many."""
    rows = [r for r in (s.get(QuarantineRow, i) for i in row_ids) if r is not None]
    for row in rows:
        row.replay_ms = now_ms
    return len(rows)


def asked_replays(s: Session, limit: int = 100) -> list[QuarantineRow]:
    return list(
        s.execute(
            select(QuarantineRow)
            .where(QuarantineRow.replay_ms.is_not(None))
            .order_by(QuarantineRow.id)
            .limit(limit)
        ).scalars()
    )


def release(s: Session, row_id: int) -> None:
    """Take a message out of the quarantine (it was replayed)."""
    s.execute(delete(QuarantineRow).where(QuarantineRow.id == row_id))
