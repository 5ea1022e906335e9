"""What the collector accepts, and why not: the one way in (:mod:`coldchain.accept`),
its refusals translated into :class:`~collector.errors.Rejected` (quarantined)."""

from __future__ import annotations

from coldchain.accept import Limits, accept
from coldchain.wire import EventsBatch, ReadingsBatch, Stream, WireError
from collector.errors import Rejected

__all__ = ["Limits", "validate"]

_COLLECTED = frozenset({Stream.READINGS, Stream.EVENTS})


def validate(
    topic: str, payload: bytes, limits: Limits, now_ms: int | None = None
) -> ReadingsBatch | EventsBatch:
    """Decode and check one message; raises :class:`Rejected` with the reason."""
    try:
        msg = accept(topic, payload, limits, now_ms, streams=_COLLECTED).message
    except WireError as exc:
        raise Rejected(str(exc)) from None
    assert isinstance(msg, ReadingsBatch | EventsBatch)
    return msg
