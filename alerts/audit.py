"""The audit trail: append-only, hash-chained, verifiable.

Every row carries the hash of the row before it and its own hash over its content
(SHA-256 of a canonical JSON of id, time, actor, action, entity, old and new value,
reason and the previous hash). :func:`verify` walks the chain and names each row that
was changed, removed or reordered. A row deleted at the very end leaves no trace in the
chain itself: :func:`head` gives the latest hash to record elsewhere (a printed report,
another system) as an anchor.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from alerts.db import AuditRow

GENESIS = "0" * 64


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json(value: object) -> str | None:
    return (
        None
        if value is None
        else json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    )


def row_hash(row: AuditRow) -> str:
    content = [
        row.id,
        row.ts_ms,
        row.actor,
        row.action,
        row.entity,
        row.entity_id,
        row.old_value,
        row.new_value,
        row.reason,
        row.prev_hash,
    ]
    canonical = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def append(
    engine: Engine,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    old: object = None,
    new: object = None,
    reason: str | None = None,
    ts_ms: int | None = None,
) -> AuditRow:
    """Add one entry at the end of the chain, in a transaction of its own."""
    with Session(engine) as session, session.begin():
        row = record(
            session,
            actor=actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            old=old,
            new=new,
            reason=reason,
            ts_ms=ts_ms,
        )
        session.flush()
        session.expunge(row)
    return row


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    old: object = None,
    new: object = None,
    reason: str | None = None,
    ts_ms: int | None = None,
) -> AuditRow:
    """Add an entry inside the caller's transaction, so that a change and its audit row
    commit together or not at all. One writer at a time: the chain has one end."""
    if not actor.strip():
        raise ValueError("an audit entry needs the actor who did it")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
    last = session.execute(
        select(AuditRow).order_by(AuditRow.id.desc()).limit(1)
    ).scalar_one_or_none()
    row = AuditRow(
        id=1 if last is None else last.id + 1,
        ts_ms=now_ms() if ts_ms is None else ts_ms,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        old_value=_json(old),
        new_value=_json(new),
        reason=reason,
        prev_hash=GENESIS if last is None else last.hash,
        hash="",
    )
    row.hash = row_hash(row)
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class Problem:
    row_id: int
    what: str

    def __str__(self) -> str:
        return f"row {self.row_id}: {self.what}"


def verify(engine: Engine) -> list[Problem]:
    """Every break in the chain, named by row. An empty list means the trail is intact."""
    problems: list[Problem] = []
    expected_prev = GENESIS
    expected_id = 1
    with Session(engine) as session:
        for row in session.execute(select(AuditRow).order_by(AuditRow.id)).scalars():
            if row.id != expected_id:
                problems.append(
                    Problem(row.id, f"rows {expected_id} to {row.id - 1} are missing (removed)")
                )
            if row.prev_hash != expected_prev:
                problems.append(
                    Problem(
                        row.id,
                        "does not follow the row before it "
                        "(a row was removed, inserted or reordered)",
                    )
                )
            if row_hash(row) != row.hash:
                problems.append(Problem(row.id, "its content was changed after it was written"))
            expected_prev, expected_id = row.hash, row.id + 1
    return problems


def head(engine: Engine) -> tuple[int, str]:
    """(last id, last hash): the anchor to keep outside the database."""
    with Session(engine) as session:
        last = session.execute(
            select(AuditRow).order_by(AuditRow.id.desc()).limit(1)
        ).scalar_one_or_none()
        return (0, GENESIS) if last is None else (last.id, last.hash)
