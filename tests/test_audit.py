"""The audit trail on real databases: SQLite files and a real PostgreSQL.

PostgreSQL is reached at COLDCHAIN_TEST_PG (default: the local server on 127.0.0.1:5432
with trust auth, which scripts/test.sh makes sure is up); each test gets a database of
its own, dropped afterwards. If the server cannot be reached the test fails: it is never
skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from alerts.audit import append, head, verify, write_checkpoint
from alerts.db import make_engine, transaction, upgrade
from alerts.repo import acknowledge_alarm, sync_alarm, upsert_breach
from alerts.seals import seal_of
from coldchain.judging.breach import Breach, Kind, Level

T0 = 1_795_392_000_000


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


def _acknowledged_alarm(engine: Engine) -> int:
    breach = Breach("cr1-th.temp", Kind.HIGH, Level.CRITICAL, T0, T0 + 15 * 60_000, max_value=-9.5)
    with transaction(engine) as s:
        alarm, _ = sync_alarm(s, upsert_breach(s, "store-gw", breach), now=T0 + 15 * 60_000)
    with transaction(engine) as s:
        acknowledge_alarm(s, alarm.id, user="li.wei", comment="门已关闭", now=T0 + 20 * 60_000)
    return alarm.id


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize(
    ("tamper", "table"),
    [
        ("UPDATE alarms SET ack_comment = 'checked, all fine'", "alarms"),
        ("UPDATE breaches SET max_value = -15.5", "breaches"),
        ("UPDATE alarms SET seal = NULL", "alarms"),
    ],
)
def test_a_regulated_record_edited_in_the_database_fails_verify(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tamper: str, table: str, keyed: bool
) -> None:
    """An acknowledgement's comment (the text the PDF shows) or a breach's worst value,
    changed by SQL and not through an audited operation, no longer matches its seal."""
    if keyed:
        monkeypatch.setenv("COLDCHAIN_AUDIT_KEY", "k" * 40)
    upgrade(db_url)
    engine = make_engine(db_url)
    alarm_id = _acknowledged_alarm(engine)
    assert verify(engine) == []
    with engine.begin() as conn:
        conn.execute(text(tamper))
    problems = [str(p) for p in verify(engine)]
    engine.dispose()
    expected_id = str(alarm_id) if table == "alarms" else "1"
    assert any(p.startswith(f"{table} {expected_id}:") for p in problems), problems


def test_with_the_key_set_a_seal_anyone_could_compute_is_refused(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner of the database recomputes a plain seal for the row they edited: while
    the audit key is set, only a seal made with it counts."""
    monkeypatch.setenv("COLDCHAIN_AUDIT_KEY", "k" * 40)
    upgrade(db_url)
    engine = make_engine(db_url)
    alarm_id = _acknowledged_alarm(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alarms SET ack_comment = 'all fine'"))
        row = conn.execute(text("SELECT * FROM alarms")).mappings().one()
        forged = seal_of("alarms", row, None)
        conn.execute(text("UPDATE alarms SET seal = :s"), {"s": forged})
    problems = [str(p) for p in verify(engine)]
    engine.dispose()
    assert problems == [
        f"alarms {alarm_id}: sealed without the audit key: written outside the application"
    ]


@pytest.mark.parametrize("keyed", [False, True])
def test_rows_taken_off_the_end_fail_verify_against_the_latest_checkpoint(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    """Deleting the trail's last rows leaves a chain that verifies on its own; the signed
    checkpoint kept in a file off the database still names the row that is gone."""
    if keyed:
        monkeypatch.setenv("COLDCHAIN_AUDIT_KEY", "k" * 40)
    filled(db_url)
    engine = make_engine(db_url)
    anchor = tmp_path / "anchor" / "audit.jsonl"
    first = write_checkpoint(engine, anchor)
    assert first is not None and first.row_id == 3
    assert write_checkpoint(engine, anchor) is None  # the head did not move
    assert verify(engine, anchor) == []
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id >= 2"))
    assert verify(engine) == []  # the chain alone cannot tell
    problems = [str(p) for p in verify(engine, anchor)]
    assert any("names row 3" in p and "no longer holds" in p for p in problems), problems
    engine.dispose()


def test_a_forged_checkpoint_line_is_named_and_not_believed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDCHAIN_AUDIT_KEY", "k" * 40)
    filled(db_url)
    engine = make_engine(db_url)
    anchor = tmp_path / "audit.jsonl"
    write_checkpoint(engine, anchor)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    _good, last_hash = head(engine)
    forged = {"row": 2, "hash": last_hash, "ts_ms": 2**40, "sig": "u:" + "0" * 64}
    with anchor.open("a") as out:
        out.write(json.dumps(forged) + "\n")  # an owner's attempt to move the anchor back
    problems = [str(p) for p in verify(engine, anchor)]
    engine.dispose()
    assert any("line 2: its signature does not hold" in p for p in problems), problems
    assert any("names row 3" in p for p in problems), problems


def test_the_audit_commands_checkpoint_and_verify_against_the_anchor(
    db_url: str, tmp_path: Path
) -> None:
    filled(db_url)
    env = {**os.environ, "COLDCHAIN_DB_URL": db_url, "COLDCHAIN_AUDIT_ANCHOR": str(tmp_path / "a")}
    cli = [sys.executable, "-m", "ops.cli", "audit"]
    made = subprocess.run([*cli, "checkpoint"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and "checkpoint: row 3" in made.stdout, made.stderr
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = 3"))
    engine.dispose()
    bad = subprocess.run([*cli, "verify"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "TAMPERED row 3" in bad.stderr
