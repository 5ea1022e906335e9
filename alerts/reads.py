"""The judge's reads: breaches from the alert store, the recent record from the
readings store (when one is configured), or else the evaluation state the service saved."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from alerts.db import reading
from alerts.repo import GATEWAY_WIDE, breach_of, open_breach, open_breaches, stored_breaches
from alerts.repo.states import saved_state
from coldchain.judging.breach import Breach, Kind, Level
from collector.store import Store, StoredReading

log = logging.getLogger("coldchain.alerts")


class StoreReads:
    """The judge's reads: breaches from the alert store, the recent record from the
    readings store (when one is configured)."""

    def __init__(self, engine: Engine, history: Callable[[], Store] | None) -> None:
        self.engine = engine
        self.history = history

    def open_breaches(self, gateway: str, sensor: str) -> list[Breach]:
        with reading(self.engine) as s:
            return open_breaches(s, gateway, sensor)

    def stored_breaches(self, gateway: str, sensor: str, since_ms: int) -> list[Breach]:
        with reading(self.engine) as s:
            return stored_breaches(s, gateway, sensor, since_ms)

    def gateway_breach(self, gateway: str, kind: Kind, level: Level) -> Breach | None:
        """The ongoing gateway-wide breach of a kind and level, if any."""
        with reading(self.engine) as s:
            row = open_breach(s, gateway, GATEWAY_WIDE, kind, level)
            return None if row is None else breach_of(row)

    def saved_state(self, gateway: str, sensor: str) -> tuple[str, dict[str, Any]] | None:
        """The evaluation state saved for a sensor (its limits' signature and the
        state), when the service has no readings store to replay."""
        if self.history is not None:
            return None
        with reading(self.engine) as s:
            return saved_state(s, gateway, sensor)

    def recent(self, gateway: str, sensor: str, start_ms: int, end_ms: int) -> list[StoredReading]:
        if self.history is None:
            return []
        try:
            store = self.history()
            try:
                return list(
                    store.readings(start_ms=start_ms, end_ms=end_ms, sensor=sensor, gateway=gateway)
                )
            finally:
                store.close()
        except Exception as exc:  # any store's failure: judge from live data only, say so
            log.warning(
                "%s/%s: recent record unavailable (%s); judging from live data",
                gateway,
                sensor,
                exc,
            )
            return []
