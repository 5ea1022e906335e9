"""The alert service's relational store: SQLAlchemy 2 on SQLite (default) or PostgreSQL,
schema managed by Alembic (``alerts/migrations``).

It holds the audit trail, sites, locations, profiles, batches, custody, calibrations,
breaches, alarms, notifications and users (docs/design-alerts.md). The operations in
``alerts/repo/`` take a Session: the caller owns the transaction (:func:`transaction`),
so a breach and its alarm commit together.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    String,
    Text,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from alerts.seals import reseal

MIGRATIONS = Path(__file__).parent / "migrations"

# every session seals the regulated rows it writes (alerts/seals.py)
event.listen(Session, "after_flush", reseal)


class Base(DeclarativeBase):
    pass


class AuditRow(Base):
    """One entry of the append-only, hash-chained audit trail."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    entity: Mapped[str] = mapped_column(String(64), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(128), nullable=False)
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://…``."""
    # a connection the server terminated is found before use, not by the next statement
    engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def transient(exc: BaseException) -> bool:
    """A database error that means "not now" (the server refused or dropped the
    connection, the file is locked, the disk is full): the work is retried. Anything
    else is the work's own fault: its input is kept aside."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | DisconnectionError)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


#: the PostgreSQL advisory lock that one migration holds at a time (any fixed number)
MIGRATION_LOCK = 0x636F6C64  # "cold"


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision``, one process at a time: services and
    API replicas that start together wait for each other's migration (a PostgreSQL
    advisory lock; for SQLite an exclusive lock on a file beside the database), and the
    ones that come later find the schema at head and change nothing."""
    with _migration_lock(url):
        command.upgrade(alembic_config(url), revision)


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        finally:
            engine.dispose()
    elif parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        lock_path = Path(f"{parsed.database}.migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
    else:
        yield


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work, owned by the caller: ``with transaction(engine) as s:`` commits
    at the end and rolls back on an exception. Rows stay readable after the commit
    (expire_on_commit off), so a caller may answer with what it wrote."""
    with Session(engine, expire_on_commit=False) as s, s.begin():
        yield s


def reading(engine: Engine) -> Session:
    """A session for reads (``with reading(engine) as s:``); rows stay readable after."""
    return Session(engine, expire_on_commit=False)
