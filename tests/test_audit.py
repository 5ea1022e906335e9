"""The audit trail on real databases: SQLite files and a real PostgreSQL.

PostgreSQL is reached at COLDCHAIN_TEST_PG (default: the local server on 127.0.0.1:5432
with trust auth, which scripts/test.sh makes sure is up); each test gets a database of
its own, dropped afterwards. If the server cannot be reached the test fails: it is never
skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from alerts.audit import append, head, verify
from alerts.db import make_engine, upgrade


def filled(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    append(
        engine,
        actor="admin",
        action="profile.change",
        entity="profile",
        entity_id="frozen-meat",
        old={"warning.high_c": -18.0},
        new={"warning.high_c": -17.0},
        reason="trial with the quality team",
    )
    append(
        engine,
        actor="li.wei",
        action="alarm.acknowledge",
        entity="alarm",
        entity_id="a17",
        new={"comment": "门已关闭，产品已检查"},
    )  # door closed, product checked
    append(
        engine,
        actor="wang.fang",
        action="custody.handover",
        entity="batch",
        entity_id="B-2026-0042",
        new={"to": "truck-01", "temp_c": -19.2},
    )
    engine.dispose()


def test_an_untouched_trail_verifies(db_url: str) -> None:
    filled(db_url)
    engine = make_engine(db_url)
    assert verify(engine) == []
    assert head(engine)[0] == 3
    engine.dispose()


@pytest.mark.parametrize(
    ("tamper", "row", "what"),
    [
        ('UPDATE audit_log SET new_value = \'{"comment":"ok"}\' WHERE id = 2', 2, "changed"),
        ("UPDATE audit_log SET actor = 'someone.else' WHERE id = 1", 1, "changed"),
        ("DELETE FROM audit_log WHERE id = 2", 3, "missing"),
        ("UPDATE audit_log SET id = id + 10 WHERE id = 1", 2, "does not follow"),
    ],
)
def test_verify_names_the_row_edited_directly_in_the_database(
    db_url: str, tamper: str, row: int, what: str
) -> None:
    filled(db_url)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(tamper))
    problems = verify(engine)
    engine.dispose()
    assert problems, "tampering went unnoticed"
    assert any(p.row_id == row and what in p.what for p in problems), problems


def test_audit_verify_command_exits_1_on_tampering(db_url: str) -> None:
    filled(db_url)
    env = {**os.environ, "COLDCHAIN_DB_URL": db_url}
    ok = subprocess.run(
        [sys.executable, "-m", "ops.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "audit trail intact: 3 rows" in ok.stdout
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET reason = 'nothing to see' WHERE id = 1"))
    engine.dispose()
    bad = subprocess.run(
        [sys.executable, "-m", "ops.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "TAMPERED row 1: its content was changed" in bad.stderr


def test_migrations_are_repeatable_and_give_the_schema_the_models_describe(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    import alerts.models
    import alerts.notify  # noqa: F401  (their tables are in Base.metadata)
    from alerts.db import Base, alembic_config

    upgrade(db_url)
    upgrade(db_url)  # already at head: nothing to do, nothing broken
    engine = make_engine(db_url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert version == ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert differences == []
