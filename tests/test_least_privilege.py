"""The set-up steps that scope a county server's secrets: check-env, Grafana's read-only
PostgreSQL role (against the real PostgreSQL) and the per-service InfluxDB tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from alerts.db import upgrade
from tests.conftest import PG_ADMIN

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_check_env_refuses_empty_placeholder_and_short_admin_secrets() -> None:
    good = {
        "POSTGRES_PASSWORD": "a long postgres secret",
        "INFLUXDB_ADMIN_PASSWORD": "a long influx secret",
        "INFLUXDB_ADMIN_TOKEN": "a long influx admin token",
        "GRAFANA_ADMIN_PASSWORD": "a long grafana secret",
        "GRAFANA_DB_PASSWORD": "a long grafana db secret",
        "COLDCHAIN_AUDIT_KEY": "an audit key of at least 32 characters",
    }
    assert cli("deploy", "check-env", env=good).returncode == 0
    short_key = cli("deploy", "check-env", env={**good, "COLDCHAIN_AUDIT_KEY": "k" * 20})
    assert short_key.returncode != 0 and "at least 32" in short_key.stderr
    bad = {
        **good,
        "GRAFANA_ADMIN_PASSWORD": "",
        "INFLUXDB_ADMIN_PASSWORD": "CHANGE_ME_influx_admin_password",
        "INFLUXDB_ADMIN_TOKEN": "short",
    }
    refused = cli("deploy", "check-env", env=bad)
    assert refused.returncode == 2
    for variable in ("GRAFANA_ADMIN_PASSWORD", "INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_ADMIN_TOKEN"):
        assert variable in refused.stderr
    assert "POSTGRES_PASSWORD" not in refused.stderr and "Traceback" not in refused.stderr


@pytest.fixture
def reader_role(db_url: str) -> Iterator[tuple[str, str]]:
    role = f"grafana_reader_{uuid.uuid4().hex[:8]}"
    try:
        yield db_url, role
    finally:
        plain = db_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as owner:
            exists = owner.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if exists.fetchone():
                owner.execute(f'DROP OWNED BY "{role}"')
                owner.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_grafanas_role_reads_the_dashboards_tables_and_nothing_else(
    reader_role: tuple[str, str],
) -> None:
    db_url, role = reader_role
    upgrade(db_url)
    env = {"GRAFANA_DB_PASSWORD": "grafana reader secret"}
    for _ in range(2):  # running it again changes nothing
        made = cli("deploy", "grafana-role", "--db-url", db_url, "--role", role, env=env)
        assert made.returncode == 0, made.stderr
    assert f"altered role {role}" in made.stdout
    plain = db_url.replace("postgresql+psycopg://", "postgresql://")
    database = plain.rsplit("/", 1)[1]
    as_reader = PG_ADMIN.rsplit("/", 1)[0].replace("postgres@", f"{role}@") + f"/{database}"
    with psycopg.connect(as_reader, autocommit=True) as reader:
        for table in ("sites", "locations", "alarms", "breaches", "batches", "stays"):
            reader.execute(f"SELECT count(*) FROM {table}").fetchone()
        for table in ("users", "sessions", "audit_log", "notifications"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(f"SELECT * FROM {table}")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("INSERT INTO sites (id, name) VALUES ('x', 'x')")
        reader.execute("SET default_transaction_read_only = off")  # its own setting
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("UPDATE sites SET name = 'y'")


class FakeInflux(BaseHTTPRequestHandler):
    """Answers InfluxDB 2's bucket and authorization calls as its HTTP API documents them,
    and records what was asked (there is no InfluxDB on the test machine)."""

    created: ClassVar[list[dict[str, Any]]] = []

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        assert self.headers["Authorization"] == "Token admin-token-0123456789"
        if self.path.startswith("/api/v2/buckets"):
            bucket = {"id": "b1", "orgID": "o1", "name": "coldchain", "retentionRules": []}
            self._reply(200, {"buckets": [bucket]})
        else:
            self._reply(404, {"code": "not found", "message": self.path})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(FakeInflux.created) + 1
        made = {**body, "id": f"a{n}", "token": f"token-{n}", "status": "active"}
        FakeInflux.created.append(made)
        self._reply(201, made)

    def log_message(self, *_args: object) -> None:
        pass


def test_influx_tokens_are_write_only_for_collectors_and_read_only_for_the_rest() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeInflux)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "INFLUXDB_ADMIN_TOKEN": "admin-token-0123456789",
        "INFLUXDB_ORG": "county",
        "INFLUXDB_BUCKET": "coldchain",
    }
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        made = cli("deploy", "influx-tokens", "--url", url, env=env)
    finally:
        server.shutdown()
        thread.join(10)
    assert made.returncode == 0, made.stderr
    printed = dict(line.split("=", 1) for line in made.stdout.splitlines())
    assert set(printed) == {
        "INFLUXDB_COLLECTOR_TOKEN",
        "INFLUXDB_ALERTS_TOKEN",
        "INFLUXDB_API_TOKEN",
        "INFLUXDB_GRAFANA_TOKEN",
    }
    assert len(set(printed.values())) == 4  # one each
    actions = [[p["action"] for p in a["permissions"]] for a in FakeInflux.created]
    assert FakeInflux.created[0]["description"] == "coldchain collectors (write)"
    assert actions == [["write"], ["read"], ["read"], ["read"]]
    for auth in FakeInflux.created:
        (permission,) = auth["permissions"]
        assert permission["resource"] == {"type": "buckets", "id": "b1", "orgID": "o1"}
