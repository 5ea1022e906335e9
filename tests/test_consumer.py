"""The shared consumer (coldchain/mqtt.py) against a real broker: a handler that fails
acknowledges nothing and says so; the process runner takes a process with a dead worker
down instead of keeping it alive and green."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from coldchain.health import Health
from coldchain.mqtt import Consumer, Delivery, SessionSpec
from coldchain.runner import run_until_signalled
from coldchain.settings import MqttConfig
from tests.harness import Broker, wait_for


def publish(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_a_failing_handler_stops_its_worker_loudly_and_its_message_comes_again(
    running_broker,
    unique: str,  # type: ignore[no-untyped-def]
) -> None:
    topic = f"test/{unique}/in"
    session = SessionSpec(f"consumer-{unique}", clean_start=False, expiry_s=300)
    config = MqttConfig(port=running_broker.port)

    def failing(_batch: Sequence[Delivery]) -> bool:
        raise RuntimeError("the store went away")

    first = Consumer(config, session, [(topic, 1)], failing, name="failing")
    first.start()
    wait_for(lambda: first.connected, 10, "connected")
    publish(running_broker.port, topic, b"one")
    wait_for(lambda: not first.alive, 10, "the worker to stop")
    assert isinstance(first.failure, RuntimeError)
    assert first.handled == 0  # nothing acknowledged
    first.stop()

    seen: list[bytes] = []

    def storing(batch: Sequence[Delivery]) -> bool:
        seen.extend(item.payload for item in batch)
        return True

    second = Consumer(config, session, [(topic, 1)], storing, name="storing")
    second.start()
    try:
        wait_for(lambda: seen == [b"one"], 10, "the unacknowledged message again")
        assert second.alive
    finally:
        second.stop(end_session=True)


def test_the_runner_takes_a_process_with_a_dead_worker_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = tmp_path / "health"
    monkeypatch.setenv("COLDCHAIN_HEALTH_FILE", str(health))
    stopped: list[str] = []
    service = Health("service")

    def die_soon() -> None:
        threading.Timer(1.5, service.died, args=("an error",)).start()

    with pytest.raises(SystemExit) as exit_info:
        run_until_signalled(die_soon, lambda: stopped.append("stopped"), health=[service])
    assert exit_info.value.code == 1
    assert stopped == ["stopped"]
    assert health.exists()  # it was healthy while the worker ran


def test_a_consumer_is_caught_up_only_once_its_sessions_backlog_is_handled(
    running_broker: Broker, unique: str
) -> None:
    config = MqttConfig(port=running_broker.port)
    topic = f"test/{unique}/backlog"
    session = SessionSpec(f"c-{unique}", clean_start=False, expiry_s=300)
    handled: list[bytes] = []
    behind_while_handling: list[bool] = []

    def slow(batch: Sequence[Delivery]) -> bool:
        behind_while_handling.append(not first.caught_up)
        time.sleep(0.02)
        handled.extend(item.payload for item in batch)
        return True

    first = Consumer(config, session, [(topic, 1)], slow, name="slow")
    first.start()
    wait_for(lambda: first.caught_up, 10, "caught up on an empty session")
    first.stop()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect("127.0.0.1", running_broker.port)
    publisher.loop_start()
    for i in range(200):
        publisher.publish(topic, str(i).encode(), qos=1).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()
    first = Consumer(config, session, [(topic, 1)], slow, name="slow")
    first.start()
    try:
        wait_for(lambda: len(handled) == 200, 30, "the backlog handled")
        wait_for(lambda: first.caught_up, 10, "caught up once it is handled")
        assert behind_while_handling and all(behind_while_handling)
    finally:
        first.stop(end_session=True)
