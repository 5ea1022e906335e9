"""The API served for real: uvicorn on a free port of 127.0.0.1 in a thread, over a real
database (SQLite or PostgreSQL) seeded with the simulated county, a readings store in
SQLite, and the live hub on the test broker."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from alerts.db import make_engine, transaction, upgrade
from alerts.repo import sync_alarm, upsert_breach
from alerts.repo.users import Role, create_user
from api.app import create_app
from api.settings import ApiSettings
from coldchain import wire
from coldchain.judging.breach import Breach, EndReason, Kind, Level
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector.sqlite_store import SqliteStore
from collector.store import Incoming
from simulator.seed import seed_county
from tests.harness import Broker

PASSWORD = "correct horse battery"
ALERTS_TOML = """
[escalation]
repeat_min = 30
quiet_start = "22:00"
quiet_end = "06:00"
[[escalation.steps]]
after_min = 0
notify = ["duty-operator"]
[[escalation.steps]]
after_min = 15
notify = ["shift-lead"]

[site_escalation.county-fleet]
[[site_escalation.county-fleet.steps]]
after_min = 0
notify = ["fleet-dispatcher"]

[[routes]]
recipient = "duty-operator"
channel = "hook"
address = "ops"
[[routes]]
recipient = "shift-lead"
channel = "hook"
address = "lead"
[[routes]]
recipient = "fleet-dispatcher"
channel = "hook"
address = "fleet"

[channels.hook]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret_env = "COLDCHAIN_WEBHOOK_SECRET"
"""
MIN = 60_000


@dataclass
class Api:
    url: str
    app: FastAPI
    engine: Engine
    readings_db: Path
    broker: Broker
    t0_ms: int

    def client(self, role: Role | None = None, *, other: bool = False) -> httpx.Client:
        """Signed in as the role's user of every site, or (``other``) of another site."""
        client = httpx.Client(base_url=self.url, timeout=20)
        if role is not None:
            client.headers["Authorization"] = f"Bearer {self.token(role, other=other)}"
        return client

    def token(self, role: Role, *, other: bool = False) -> str:
        reply = httpx.post(
            f"{self.url}/api/auth/login",
            json={"username": (other_of if other else user_of)(role), "password": PASSWORD},
            timeout=20,
        )
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["token"]
        return token


def an_alarm(
    api: Api,
    sensor: str = "cr2-ctrl.air",
    *,
    ended: bool = False,
    kind: Kind = Kind.HIGH,
    level: Level = Level.CRITICAL,
    start_ms: int | None = None,
    gateway: str = "store-gw",
) -> int:
    """A critical high breach in cold room 2 with its alarm, as the service stores it
    (by default); ``ended``: the room came back in range by itself (the alarm is
    cleared)."""
    start = api.t0_ms if start_ms is None else start_ms
    breach = Breach(sensor, kind, level, start, start + 15 * MIN)
    breach.max_value = 9.5
    if ended:
        breach.end_ts_ms = start + 40 * MIN
        breach.end_reason = EndReason.BACK_IN_RANGE
    with transaction(api.engine) as s:
        row = upsert_breach(s, gateway, breach)
    with transaction(api.engine) as s:
        alarm, _ = sync_alarm(s, row)
    return alarm.id


def user_of(role: Role) -> str:
    """A user of every site (a driver: of truck 01)."""
    return f"{role.value}.test"


#: the site the users of another site are given: nothing of the fixtures' is there
OTHER_SITE = "transfer-station"


def other_of(role: Role) -> str:
    """A user given only the transfer station (a driver: of truck 02)."""
    return f"{role.value}.other"


def write_readings(path: Path, t0_ms: int) -> None:
    """Two hours of cold room 2 (chilled) at 2-3 °C, every 5 minutes; truck 01's last
    two positions."""
    store = SqliteStore(path)
    readings = [
        Reading(sensor=sensor, ts_ms=t0_ms + m * MIN, q=Quality.OK, temp_c=2.0 + (m % 3) * 0.5)
        for m in range(0, 120, 5)
        for sensor in ("cr2-ctrl.air", "cr2-th.temp")
    ]
    store.write(
        [
            Incoming(
                ReadingsBatch(
                    v=wire.SCHEMA_VERSION,
                    gateway="store-gw",
                    site="county-store",
                    epoch=1,
                    seq=1,
                    readings=readings,
                ),
                t0_ms,
            )
        ],
        [],
    )
    # truck 01 on the road a minute ago and now (the map; county-fleet)
    positions = [
        Reading(
            sensor="truck-01-gps.pos",
            ts_ms=t0_ms + m * MIN,
            q=Quality.OK,
            lat_deg=35.6,
            lon_deg=103.2 + m / 1000,
            speed_kmh=40.0,
        )
        for m in (119, 120)
    ]
    batch = ReadingsBatch(
        v=wire.SCHEMA_VERSION, gateway="truck-01", site="county-fleet", epoch=1, seq=1,
        readings=positions,
    )  # fmt: skip
    store.write([Incoming(batch, t0_ms)], [])
    store.close()


@contextlib.contextmanager
def serve(db_url: str, tmp_path: Path, broker: Broker, **settings: Any) -> Iterator[Api]:
    """The seeded county's API; ``settings``: ApiSettings fields to set (e.g. the
    trusted proxies)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    now = time.time_ns() // 1_000_000
    seed_county(engine, at_ms=now)
    with transaction(engine) as s:
        for role in Role:
            truck = "truck-01" if role is Role.DRIVER else None
            create_user(s, user_of(role), PASSWORD, role, actor="test", truck=truck)
            truck = "truck-02" if role is Role.DRIVER else None
            create_user(
                s, other_of(role), PASSWORD, role, actor="test", sites=[OTHER_SITE], truck=truck
            )
    readings_db = tmp_path / "readings.sqlite"
    t0 = now - 2 * 3_600_000
    write_readings(readings_db, t0)
    alerts_config = tmp_path / "alerts.toml"
    alerts_config.write_text(ALERTS_TOML)
    api_settings = ApiSettings(
        db_url=db_url,
        readings_db=readings_db,
        alerts_config=alerts_config,
        mqtt=MqttConfig(port=broker.port),
        sites=("county-store", "county-fleet", "transfer-station"),
        **{"public_url": "https://trace.county.test", **settings},
    )
    app = create_app(api_settings)
    with running(app) as url:
        try:
            yield Api(url, app, engine, readings_db, broker, t0)
        finally:
            engine.dispose()


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free port of 127.0.0.1 in a thread: its address.
    Two of these over one database are two replicas."""
    # the listening socket is bound here and handed over: a port chosen and let go
    # could be taken by another test's process before uvicorn binds it
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def api(db_url: str, tmp_path: Path, running_broker: Broker) -> Iterator[Api]:
    """The API on SQLite and on PostgreSQL."""
    with serve(db_url, tmp_path, running_broker) as served:
        yield served


@pytest.fixture
def web(tmp_path: Path, running_broker: Broker) -> Iterator[Api]:
    """The API and pages on SQLite (the browser tests)."""
    with serve(f"sqlite:///{tmp_path / 'alerts.sqlite'}", tmp_path, running_broker) as served:
        yield served
