"""The outbox's file on disk: one process at a time, transactions on it, the errors a
disk gives, and a worker thread that keeps its fsyncs off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from gateway.outbox import Outbox

P = ParamSpec("P")
T = TypeVar("T")


class OutboxBusy(RuntimeError):
    """Another process holds this outbox: two gateways on one outbox would hand out the
    same sequence numbers and lose readings as duplicates."""


def hold_lock(path: Path) -> tuple[IO[str], dict[str, str]]:
    """One process per outbox: an exclusive lock on ``<outbox>.lock``, which names the
    holder's PID and the outbox's epoch; a second process is refused, naming the first.
    Returns the lock and what the file said before (the epoch of the outbox last used
    here: a missing outbox file is then news, not a first start)."""
    lock_path = path.with_name(path.name + ".lock")
    handle = lock_path.open("a+")
    handle.seek(0)
    before = dict(
        part.split("=", 1) for part in handle.read().split() if "=" in part
    )  # "pid=… epoch=…"
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutboxBusy(
            f"outbox {path} is in use by process {before.get('pid', 'unknown')}: one "
            "gateway process per outbox"
        ) from None
    _write_lock(handle, f"pid={os.getpid()}")
    return handle, before


def record_epoch(handle: IO[str], epoch: int) -> None:
    _write_lock(handle, f"pid={os.getpid()} epoch={epoch}")


def _write_lock(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def move_aside(path: Path, exc: sqlite3.DatabaseError) -> str:
    """Move an unusable outbox file (and its -wal, -shm) aside, kept for inspection;
    returns what happened and what it held as far as it can be read."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.unusable-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))
    return f"the outbox was unusable ({exc}); moved aside to {aside.name}; {_what_it_held(aside)}"


def _what_it_held(aside: Path) -> str:
    found: list[str] = []
    for label, sql in (
        ("epoch", "SELECT value FROM meta WHERE key = 'epoch'"),
        ("next readings seq", "SELECT value FROM meta WHERE key = 'next_seq.readings'"),
        ("unsent rows", "SELECT COUNT(*) FROM pending"),
        ("unconfirmed rows", "SELECT COALESCE(SUM(n), 0) FROM sealed"),
    ):
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{aside}?mode=ro&immutable=1", uri=True)
            ) as db:
                found.append(f"{label} {db.execute(sql).fetchone()[0]}")
        except (sqlite3.Error, TypeError):
            found.append(f"{label} unreadable")
    return "it held: " + ", ".join(found)


def open_checked(path: Path) -> sqlite3.Connection:
    """The outbox file in WAL mode, checked: sqlite3.DatabaseError if it is damaged."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def lost_epoch(before: dict[str, str], epoch: int, existed: bool) -> str | None:
    """What the lock file says became of the outbox last used here, when the outbox
    found now is not it: deleted (or lost with its disk), or gone back to before its
    epoch began (its -wal lost: a new file's first writes live in the -wal)."""
    last = before.get("epoch")
    if not last or int(last) == epoch:
        return None
    if not existed:
        return (
            f"the outbox of epoch {last} is gone (deleted, or lost with its disk): what it "
            "held is unknown"
        )
    return (
        f"the outbox of epoch {last} went back to before that epoch began (its -wal "
        "lost): what it held is unknown"
    )


def newest_time(db: sqlite3.Connection) -> int:
    """The newest edge time the outbox has seen: its newest row or message, or the time
    of the last seal (kept after its message is confirmed and gone)."""
    row = db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(ts_ms) FROM pending), 0), "
        "COALESCE((SELECT MAX(created_ms) FROM sealed), 0), "
        "COALESCE((SELECT value FROM meta WHERE key = 'clock_ms'), 0))"
    ).fetchone()
    return int(row[0])


def drop_oldest_sealed(db: sqlite3.Connection, rows: int) -> tuple[int, int | None]:
    """Drop the oldest sealed messages, up to ``rows`` rows or one message more (the
    store never confirmed them: given up, reported by the overflow event, never
    waited for: the next messages' ``held_from`` tells the store). Returns (rows
    dropped, the oldest one's created_ms)."""
    freed = 0
    oldest: int | None = None
    for stream, seq, n, created in db.execute(
        "SELECT stream, seq, n, created_ms FROM sealed ORDER BY created_ms, seq LIMIT ?",
        (rows,),  # each message holds one row at least
    ).fetchall():
        if freed >= rows:
            break
        db.execute("DELETE FROM sealed WHERE stream = ? AND seq = ?", (stream, seq))
        freed += int(n)
        oldest = int(created) if oldest is None else oldest
    return freed, oldest


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


def unwritable(exc: sqlite3.OperationalError) -> bool:
    """SQLite's "not now" for a file: a full or failing disk."""
    text = str(exc).lower()
    return "full" in text or "disk i/o" in text or "readonly" in text


class AsyncOutbox:
    """Runs an :class:`Outbox` on one worker thread, so fsyncs never block the loop."""

    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self.closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.sync.close()
        self.closed = True
