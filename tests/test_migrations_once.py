"""Issue 12, measured: three API replicas started together on a fresh PostgreSQL
database, and one crashed on the start-up migration (UniqueViolation on pg_type).
Replicas and services that migrate at start must never crash on each other."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from alerts.db import make_engine

MIGRATE = "import sys; from alerts.db import upgrade; upgrade(sys.argv[1])"


def test_replicas_migrating_a_fresh_database_together_all_start(db_url: str) -> None:
    starts = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, db_url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = []
    for process in starts:
        try:
            _out, err = process.communicate(timeout=120)
        finally:
            process.kill()
        results.append((process.returncode, err))
    assert [code for code, _err in results] == [0, 0, 0, 0], [e for _c, e in results if e]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert len(versions) == 1  # one schema, at one head
