"""Which alert service instance writes: hot standby (docs/design-supervision.md).

Every instance receives every reading and judges it; only the holder of the lead writes
breaches and alarms, escalates and sends. On PostgreSQL the lead is a session-level
advisory lock held on a connection of its own: when the holder dies, its connection
closes and the server frees the lock, and a standby takes it on its next try. On SQLite
(one machine) it is an exclusive lock on a file beside the database, freed by the
kernel when the holder's process ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("coldchain.alerts")

#: the advisory lock of the alert service's lead (any fixed number, apart from the
#: migration lock)
LEAD_LOCK = 0x636F6C6463

#: how often a holder checks that its lock connection still lives
CHECK_S = 2.0


class Lead:
    """Try for the lead, keep it, and say when it was won or lost."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._conn: Connection | None = None
        self._file: IO[bytes] | None = None
        self._checked = 0.0
        self.held = False

    def poll(self) -> tuple[bool, bool]:
        """Try for the lead (or check it is still held); returns (held, just won)."""
        was = self.held
        try:
            self.held = self._check() if was else self._try()
        except (SQLAlchemyError, OSError) as exc:
            self._drop()
            if was:
                log.error("%s: lost the lead: %s", self.name, str(exc).splitlines()[0])
            self.held = False
        if self.held and not was:
            log.warning("%s: took the lead; this instance now writes and notifies", self.name)
        elif was and not self.held:
            log.error("%s: lost the lead; judging in standby", self.name)
        return self.held, self.held and not was

    def release(self) -> None:
        """Give the lead up now: on PostgreSQL the lock is freed by an explicit unlock,
        answered before this returns (a closed connection frees it only when the server
        gets round to ending its backend, which a successor starting at once can beat)."""
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEAD_LOCK})
                self._conn.commit()
        self._drop()
        self.held = False

    # ------------------------------------------------------------------ locks
    def _try(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            won = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEAD_LOCK}).scalar()
            )
            conn.commit()
            if not won:
                conn.close()
                return False
            self._conn, self._checked = conn, time.monotonic()
            return True
        path = Path(str(self.engine.url.database) + ".lead.lock")
        handle = path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def _check(self) -> bool:
        if self._conn is None or time.monotonic() - self._checked < CHECK_S:
            return True
        self._conn.execute(text("SELECT 1"))
        self._conn.commit()
        self._checked = time.monotonic()
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                # closed for real, not back to the pool: the server frees the lock
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()  # frees the flock
            self._file = None
