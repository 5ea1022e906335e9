"""The outbox's file on disk: one process at a time, and transactions on it."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO


class OutboxBusy(RuntimeError):
    """Another process holds this outbox: two gateways on one outbox would hand out the
    same sequence numbers and lose readings as duplicates."""


def hold_lock(path: Path) -> IO[str]:
    """One process per outbox: an exclusive lock on ``<outbox>.lock``, which names the
    holder's PID; a second process is refused, naming the first."""
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise OutboxBusy(
            f"outbox {path} is in use by process {holder}: one gateway process per outbox"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


class Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (nestable: inner levels no-op)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._outer = True
        return self._db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self._outer:
            return
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
