"""Sign-in throttling that slows a guesser and locks nobody out (docs/design-security.md,
"Sign-in that cannot be turned against people").

Failures are counted under two keys, a user name with the address it came from, and the
address alone, in the database, so that every API replica sees the same counts. Each key
has a number of failures free; past them, an attempt must wait a delay that doubles with
each further failure, counted from the key's last failure, up to :data:`MAX_DELAY_S`.
Failures older than :data:`FORGET_MS` are forgotten; a good sign-in clears its pair. No
key is the account alone: the right person at another address is never held up.

Every refusal (a wrong password, an unknown name, an attempt held back) is an audit row
``auth.refused`` with the name tried, the address and the reason, in the caller's
transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from alerts.audit import record
from alerts.models import SignInFailure

FORGET_MS = 15 * 60_000
MAX_DELAY_S = 15 * 60


@dataclass(frozen=True, slots=True)
class Allowance:
    free: int  # failures allowed before any delay


PAIR = Allowance(free=5)
ADDRESS = Allowance(free=50)


class Refusal(enum.StrEnum):
    WRONG_PASSWORD = "wrong password"
    UNKNOWN_USER = "unknown or inactive user"
    HELD_BACK = "held back after repeated failures"


def _keys(username: str, address: str) -> tuple[tuple[str, Allowance], ...]:
    return ((f"pair:{username[:64]}|{address}", PAIR), (f"addr:{address}", ADDRESS))


def delay_s(failures: int, allowance: Allowance) -> float:
    """How long after its last failure a key must wait: 0 while failures are free, then
    1 s, 2 s, 4 s … up to MAX_DELAY_S."""
    over = failures - allowance.free
    return 0.0 if over < 0 else float(min(2**over, MAX_DELAY_S))


def wait_s(s: Session, username: str, address: str, now_ms: int) -> int:
    """Seconds this attempt must still wait (0: it may go ahead)."""
    wait = 0.0
    for key, allowance in _keys(username, address):
        count, last = s.execute(
            select(func.count(), func.max(SignInFailure.ts_ms)).where(
                SignInFailure.key == key, SignInFailure.ts_ms >= now_ms - FORGET_MS
            )
        ).one()
        if count and last is not None:
            wait = max(wait, last / 1000 + delay_s(count, allowance) - now_ms / 1000)
    return 0 if wait <= 0 else int(wait) + 1


def refused(
    s: Session, username: str, address: str, reason: Refusal, now_ms: int, *, count: bool = True
) -> None:
    """Audit the refusal; ``count``: it is a failure that counts toward the delays (an
    attempt held back does not: it was never checked)."""
    if count:
        s.execute(delete(SignInFailure).where(SignInFailure.ts_ms < now_ms - FORGET_MS))
        for key, _allowance in _keys(username, address):
            s.add(SignInFailure(key=key, ts_ms=now_ms))
    record(
        s,
        actor="anonymous",
        action="auth.refused",
        entity="user",
        entity_id=username[:64],
        new={"address": address, "reason": reason.value},
        ts_ms=now_ms,
    )


def succeeded(s: Session, username: str, address: str) -> None:
    """A good sign-in clears its pair (the address keeps its count)."""
    pair_key = _keys(username, address)[0][0]
    s.execute(delete(SignInFailure).where(SignInFailure.key == pair_key))
