"""Fixtures that start real components (see tests/harness.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.api_server import api, web  # noqa: F401  (fixtures)
from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.harness import Broker, LoopThread
from tests.scenario import make_setup, setup  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Mosquitto per test session on a free port; tests may stop and restart it."""
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def running_broker(broker: Broker) -> Broker:
    """The session broker, started again if a previous test left it stopped."""
    if broker.proc is None or broker.proc.poll() is not None:
        broker.start()
    return broker


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def unique() -> str:
    """A unique id, so that tests never see each other's topics or sessions."""
    return f"t{uuid.uuid4().hex[:10]}"


PG_ADMIN = os.environ.get("COLDCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alerts.sqlite'}"
        return
    name = f"coldchain_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
