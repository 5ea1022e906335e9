"""State of devices and sensors: an event and a log line on each change, never per poll."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from coldchain.wire import Event

log = logging.getLogger("coldchain.gateway")

EventKind = Literal["device", "sensor", "door", "outbox", "gateway", "gps", "clock", "alarm"]


@dataclass
class Health:
    """Remembers the last state of each (kind, source) and reports transitions.

    ``emit`` receives each transition as a wire :class:`Event`; the gateway queues it
    in the outbox. ``counts`` counts every report (not only transitions), by
    ``kind/state``: the number of failed polls, garbled lines and so on.
    """

    emit: Callable[[Event], None]
    states: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def report(
        self, kind: EventKind, source: str, state: str, ts_ms: int, detail: str | None = None
    ) -> bool:
        """Record the state; returns True (and emits) only when it changed."""
        self.counts[f"{kind}/{state}"] += 1
        key = (kind, source)
        previous = self.states.get(key)
        if previous == state:
            return False
        self.states[key] = state
        if (
            previous is None
            and kind in ("sensor", "door", "alarm")
            and state
            in (
                "ok",
                "closed",
                "off",
            )
        ):
            return False  # the normal first state of a sensor is not news
        level = (
            logging.INFO
            if state in ("ok", "closed", "off", "fix", "started", "stopping")
            else logging.WARNING
        )
        log.log(
            level,
            "%s %s: %s -> %s%s",
            kind,
            source,
            previous or "unknown",
            state,
            f" ({detail})" if detail else "",
        )
        self.emit(Event(ts_ms=ts_ms, kind=kind, source=source, state=state, detail=detail))
        return True
