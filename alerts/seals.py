"""Seals on the regulated records (docs/design-alerts.md, "An audit trail that misses
nothing").

Every row of a regulated table (:data:`SEALED`: places, sensor assignments, profiles,
batches and custody, calibrations and their certificates, breaches, alarms and their
acknowledgements, users, signatures) carries ``seal``: an HMAC-SHA256, with the audit
key (``COLDCHAIN_AUDIT_KEY``, kept outside the database), of the row as stored. The
application reseals a row whenever it writes it (:func:`reseal`, after each flush, from
the row read back), so a change made any other way, an acknowledgement's comment
edited in the database for instance, no longer matches its seal, and
:func:`verify_seals` names it.

Without a key (the demo, a development machine) seals are plain SHA-256 (``u:``): they
show accidental changes, and a database owner could recompute them; production sets the
key (the services refuse to start without it there).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, MetaData, Table, and_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

KEY_ENV = "COLDCHAIN_AUDIT_KEY"
MIN_KEY_CHARS = 32

SEALED = (
    "sites",
    "gateways",
    "locations",
    "sensor_assignments",
    "profiles",
    "batches",
    "stays",
    "calibrations",
    "calibration_certificates",
    "breaches",
    "alarms",
    "users",
    "signatures",
)


class AuditKeyError(ValueError):
    """The audit key is set but unusable (too short)."""


def audit_key() -> bytes | None:
    value = os.environ.get(KEY_ENV, "")
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise AuditKeyError(f"{KEY_ENV} is shorter than {MIN_KEY_CHARS} characters")
    return value.encode()


def _plain(value: object) -> object:
    if isinstance(value, bytes | memoryview):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, float):
        return repr(value)
    return value


def canonical(table: str, row: Mapping[Any, Any]) -> bytes:
    """The row as sealed: its table and every column but the seal, in name order."""
    content = {str(k): _plain(v) for k, v in row.items() if str(k) != "seal"}
    ordered = dict(sorted(content.items()))
    return json.dumps([table, ordered], ensure_ascii=False, separators=(",", ":")).encode()


def seal_of(table: str, row: Mapping[Any, Any], key: bytes | None) -> str:
    content = canonical(table, row)
    if key is None:
        return "u:" + hashlib.sha256(content).hexdigest()
    return "k:" + hmac.new(key, content, hashlib.sha256).hexdigest()


def _where(table: Table, values: Sequence[object]) -> object:
    return and_(*(c == v for c, v in zip(table.primary_key.columns, values, strict=True)))


def reseal(session: Session, _context: object) -> None:
    """After a flush: seal each regulated row the flush wrote, as it is now stored."""
    changed = [o for o in (*session.new, *session.dirty) if _sealed(o)]
    if not changed:
        return
    key = audit_key()
    conn = session.connection()
    for obj in changed:
        table: Table = obj.__table__
        pk = [getattr(obj, c.key) for c in table.primary_key.columns]
        where = _where(table, pk)
        stored = conn.execute(select(table).where(where)).mappings().first()  # type: ignore[arg-type]
        if stored is None:
            continue  # deleted in the same flush
        value = seal_of(table.name, stored, key)
        if stored.get("seal") != value:
            conn.execute(update(table).where(where).values(seal=value))  # type: ignore[arg-type]
        set_committed_value(obj, "seal", value)


def reseal_table(bind: Connection, name: str) -> None:
    """Seal every row of a table as it is stored (a migration that changes a regulated
    table's columns changes what its seals cover: it seals the rows again)."""
    key = audit_key()
    table = Table(name, MetaData(), autoload_with=bind)
    for row in bind.execute(select(table)).mappings().all():
        where = _where(table, [row[c.name] for c in table.primary_key.columns])
        bind.execute(update(table).where(where).values(seal=seal_of(name, row, key)))  # type: ignore[arg-type]


def _sealed(obj: object) -> bool:
    table = getattr(obj, "__table__", None)
    return isinstance(table, Table) and table.name in SEALED and "seal" in table.c


@dataclass(frozen=True)
class Broken:
    table: str
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.what}"


def verify_seals(session: Session, tables: Mapping[str, Table]) -> list[Broken]:
    """Every regulated row whose seal does not match it. While a key is set, a row sealed
    without it is one too: anyone could have computed that seal."""
    key = audit_key()
    broken: list[Broken] = []
    for name in SEALED:
        table = tables.get(name)
        if table is None or "seal" not in table.c:
            continue
        for row in session.execute(select(table)).mappings():
            ident = "/".join(str(row[c.name]) for c in table.primary_key.columns)
            what = _check(name, row, key)
            if what is not None:
                broken.append(Broken(name, ident, what))
    return broken


def _check(name: str, row: Mapping[Any, Any], key: bytes | None) -> str | None:
    stored = str(row["seal"] or "")
    if not stored:
        return "has no seal: written outside the application"
    if stored.startswith("k:") and key is None:
        return f"sealed with the audit key, but {KEY_ENV} is not set here"
    if stored.startswith("u:") and key is not None:
        return "sealed without the audit key: written outside the application"
    if seal_of(name, row, key) != stored:
        return "changed outside the application: its seal does not match"
    return None
