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
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from alerts.db import AuditRow, Base
from alerts.seals import Broken, audit_key, verify_seals

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


def verify(engine: Engine, anchor: Path | None = None) -> list[Problem | Broken]:
    """Every break in the chain, named by row, every regulated record changed outside
    the application (its seal, alerts/seals.py), and, against the latest checkpoint in
    ``anchor``, rows taken off the end. An empty list: intact."""
    problems: list[Problem | Broken] = []
    if anchor is not None:
        problems += against_checkpoint(engine, anchor)
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
        import alerts.models  # noqa: F401  (the regulated tables, in Base.metadata)

        broken = verify_seals(session, Base.metadata.tables)
    return problems + broken


def head(engine: Engine) -> tuple[int, str]:
    """(last id, last hash): the anchor to keep outside the database."""
    with Session(engine) as session:
        last = session.execute(
            select(AuditRow).order_by(AuditRow.id.desc()).limit(1)
        ).scalar_one_or_none()
        return (0, GENESIS) if last is None else (last.id, last.hash)


# ---------------------------------------------------------------------- checkpoints
@dataclass(frozen=True)
class Checkpoint:
    """The head of the chain at a time, signed with the audit key (alerts/seals.py), to
    be kept where the database's owner cannot rewrite it: a file on another volume
    (``anchor``), and every report and export."""

    row_id: int
    hash: str
    ts_ms: int
    signature: str

    def line(self) -> str:
        return json.dumps(
            {"row": self.row_id, "hash": self.hash, "ts_ms": self.ts_ms, "sig": self.signature}
        )


def _signature(row_id: int, row_hash_: str, ts_ms: int) -> str:
    content = f"{row_id}|{row_hash_}|{ts_ms}".encode()
    key = audit_key()
    if key is None:
        return "u:" + hashlib.sha256(content).hexdigest()
    return "k:" + hmac.new(key, content, hashlib.sha256).hexdigest()


def checkpoint(engine: Engine) -> Checkpoint:
    row_id, last = head(engine)
    stamp = now_ms()
    return Checkpoint(row_id, last, stamp, _signature(row_id, last, stamp))


def write_checkpoint(engine: Engine, anchor: Path) -> Checkpoint | None:
    """Append the head to the anchor file if it moved since the last line; the new
    checkpoint, or None when nothing changed."""
    latest, _bad = read_checkpoints(anchor)
    current = checkpoint(engine)
    if latest and (latest[-1].row_id, latest[-1].hash) == (current.row_id, current.hash):
        return None
    anchor.parent.mkdir(parents=True, exist_ok=True)
    with anchor.open("a", encoding="utf-8") as out:
        out.write(current.line() + "\n")
        out.flush()
        os.fsync(out.fileno())
    return current


def read_checkpoints(anchor: Path) -> tuple[list[Checkpoint], list[str]]:
    """The checkpoints whose signature holds, and what is wrong with the other lines."""
    good: list[Checkpoint] = []
    bad: list[str] = []
    if not anchor.exists():
        return good, bad
    for number, text_line in enumerate(anchor.read_text(encoding="utf-8").splitlines(), 1):
        try:
            item = json.loads(text_line)
            found = Checkpoint(int(item["row"]), str(item["hash"]), int(item["ts_ms"]), item["sig"])
        except (ValueError, KeyError, TypeError):
            bad.append(f"{anchor} line {number}: not a checkpoint")
            continue
        if not hmac.compare_digest(
            _signature(found.row_id, found.hash, found.ts_ms), found.signature
        ):
            bad.append(f"{anchor} line {number}: its signature does not hold")
            continue
        good.append(found)
    return good, bad


def against_checkpoint(engine: Engine, anchor: Path) -> list[Problem]:
    """The trail must still hold the row the latest checkpoint names, with its hash: a
    deletion at the very end leaves no trace in the chain itself, but not here."""
    good, bad = read_checkpoints(anchor)
    problems = [Problem(0, what) for what in bad]
    if not good:
        return problems
    latest = max(good, key=lambda c: (c.row_id, c.ts_ms))
    with Session(engine) as session:
        row = session.get(AuditRow, latest.row_id)
    if row is None or row.hash != latest.hash:
        problems.append(
            Problem(
                latest.row_id,
                f"the checkpoint of {latest.ts_ms} names row {latest.row_id} with hash "
                f"{latest.hash[:12]}…, which the trail no longer holds (rows removed from "
                "its end, or rewritten)",
            )
        )
    return problems
