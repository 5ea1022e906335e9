"""Fixtures that start real components (see tests/harness.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

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
